"""DRS discovery of one scope: recovery instances (paginated) and their source servers (filtered
by up to 200 ids a call). No call per instance.

Pages are pipelined: as soon as a page of recovery instances arrives, its source servers are
requested while the next page is fetched, and its EC2 instances once DRS has answered that
request (``DrsFirst``: DRS is the scarce quota, so its requests go out before EC2 parsing takes the
event loop), so a scope costs about one round trip per page plus two.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from syncengine.aws import AwsClients
from syncengine.concurrency import leaf_exceptions
from syncengine.config import DRS_FILTER_MAX_IDS
from syncengine.dynamo import chunked
from syncengine.enrich import describe_ec2_instances
from syncengine.errors import AwsError, MalformedResponseError
from syncengine.models import AccountTarget, Scope
from syncengine.retry import CallContext

UNINITIALIZED_CODE = "UninitializedAccountException"
DRS_PAGE_SIZE = 200


@dataclass
class ScopeDiscovery:
    """Everything DRS and EC2 said about one scope."""

    initialized: bool = True
    recovery_instances: list[dict[str, Any]] = field(default_factory=list)
    source_servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    ec2_instances: dict[str, dict[str, Any]] = field(default_factory=dict)


# What record building reads of DRS's (large) items. Keeping only this while a scope waits for
# its writes keeps memory proportional to the scopes in flight, not to their full DRS payloads.
_RECOVERY_INSTANCE_FIELDS = (
    "recoveryInstanceID",
    "sourceServerID",
    "ec2InstanceID",
    "ec2InstanceState",
    "jobID",
    "isDrill",
    "pointInTimeSnapshotDateTime",
    "originEnvironment",
)


def slim_recovery_instance(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item[key] for key in _RECOVERY_INSTANCE_FIELDS if key in item}


def slim_source_server(item: dict[str, Any]) -> dict[str, Any]:
    hints = (item.get("sourceProperties") or {}).get("identificationHints") or {}
    staging = item.get("stagingArea") or {}
    return {
        "sourceServerID": item.get("sourceServerID"),
        "tags": item.get("tags") or {},
        "sourceProperties": {"identificationHints": {k: hints[k] for k in ("hostname", "fqdn") if k in hints}},
        "stagingArea": {k: staging[k] for k in ("stagingAccountID",) if k in staging},
    }


def is_uninitialized(exc: BaseException) -> bool:
    return isinstance(exc, AwsError) and exc.code == UNINITIALIZED_CODE


def page_items(page: dict[str, Any], context: CallContext, key: str = "items") -> list[dict[str, Any]]:
    """A page's item list. DRS always sends ``items`` (the service model marks it so, and an empty
    scope answers ``{"items": []}``): a 2xx body without it, or with something else there, is an
    answer we cannot read, never "no instances" (that would delete the scope's records)."""
    return MalformedResponseError.unless_list_of_maps(page.get(key), context, key)


class _Uninitialized(Exception):
    """DRS answered the scope's first DescribeRecoveryInstances with UninitializedAccountException."""


async def _drs_pages(
    aws: AwsClients,
    drs: Any,
    scope: Scope,
    limiter: anyio.CapacityLimiter,
    server_ids: list[str] | None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of DescribeRecoveryInstances; with ``server_ids``, only those servers' instances."""
    context = CallContext("drs:DescribeRecoveryInstances", scope.account_id, scope.region)
    filter_sets: Iterable[dict[str, Any]] = (
        [{}]
        if server_ids is None
        else ({"sourceServerIDs": batch} for batch in chunked(server_ids, DRS_FILTER_MAX_IDS))
    )
    first = True
    for filters in filter_sets:
        pages = aws.pages(
            drs,
            "describe_recovery_instances",
            context,
            cursor="nextToken",
            scope_limiter=limiter,
            filters=filters,
            maxResults=DRS_PAGE_SIZE,
        )
        try:
            async for page in pages:
                first = False
                yield page_items(page, context)
        except AwsError as exc:
            # Only the scope's very first call may say "DRS is not initialised here" (an empty
            # scope); said later, the scope was readable a moment ago: a failure, which keeps
            # the cached records instead of emptying the scope.
            if first and is_uninitialized(exc):
                raise _Uninitialized from exc
            raise


async def describe_source_servers(
    aws: AwsClients,
    drs: Any,
    scope: Scope,
    limiter: anyio.CapacityLimiter,
    server_ids: list[str],
    *,
    answered: anyio.Event | None = None,
) -> dict[str, dict[str, Any]]:
    """Source servers by id: one filtered call per 200 ids (paginated in case DRS pages it).
    ``answered`` is set when DRS has answered the first call (or there was none to make)."""
    context = CallContext("drs:DescribeSourceServers", scope.account_id, scope.region)
    found: dict[str, dict[str, Any]] = {}
    for batch in chunked(dict.fromkeys(server_ids), DRS_FILTER_MAX_IDS):
        pages = aws.pages(
            drs,
            "describe_source_servers",
            context,
            cursor="nextToken",
            scope_limiter=limiter,
            answered=answered,
            follow_up=True,  # the scope is under way: ahead of other scopes' first pages
            filters={"sourceServerIDs": batch},
            maxResults=DRS_PAGE_SIZE,
        )
        answered = None
        async for page in pages:
            for server in page_items(page, context):
                if server.get("sourceServerID"):
                    found[server["sourceServerID"]] = server
    if answered is not None:
        answered.set()
    return found


# How long a scope's follow-up work (EC2 lookups, its cache read) waits for the rest of the run's
# scopes to hear from DRS, after hearing itself. Bounded so that one slow scope (a busy lease, a
# slow role) delays the others' follow-ups by at most this much.
DRS_FIRST_MAX_WAIT = 2.0


class DrsFirst:
    """Run-wide ordering: every scope's first DRS answer before anyone's follow-up work.

    DRS is each account's scarce quota (a few requests a second) and, when it throttles, a scope
    learns how long to back off only from DRS's answer. The event loop runs ready work in arrival
    order, so EC2 parsing and cache reads of scopes that already heard from DRS would delay other
    scopes' DRS requests, and with them the start of their back-off clocks. Follow-ups therefore
    wait until every scope of the run has had its first DRS answer, or ``max_wait`` after their
    own scope's, whichever comes first. Unthrottled, this only reorders the same CPU work."""

    def __init__(self, scopes: int, *, max_wait: float = DRS_FIRST_MAX_WAIT):
        self._pending = scopes
        self._all_answered = anyio.Event()
        self.max_wait = max_wait
        if scopes <= 0:
            self._all_answered.set()

    def scope(self) -> FirstAnswer:
        return FirstAnswer(self)

    async def everyone_answered(self, *, max_wait: float) -> None:
        """Until every scope of the run has had its first DRS answer, or ``max_wait`` passed: for
        run-wide work that is not any scope's (the first sync's index write)."""
        with anyio.move_on_after(max_wait):
            await self._all_answered.wait()

    def release(self) -> None:
        """No scope of this event loop will answer (they run in worker processes): nobody waits."""
        self._all_answered.set()

    def _answered(self) -> None:
        self._pending -= 1
        if self._pending <= 0:
            self._all_answered.set()


class FirstAnswer:
    """One scope's side of ``DrsFirst``: ``set()`` once DRS has answered the scope's first call
    (or the scope will make none: it must be set on every path), ``follow()`` before follow-up
    work."""

    def __init__(self, gate: DrsFirst | None = None):
        self._gate = gate
        self._event = anyio.Event()
        self._follow_after = 0.0

    def set(self) -> None:
        if self._event.is_set():
            return
        self._event.set()
        if self._gate is not None:
            self._follow_after = anyio.current_time() + self._gate.max_wait
            self._gate._answered()

    async def follow(self) -> None:
        await self._event.wait()
        if self._gate is not None:
            with anyio.move_on_after(self._follow_after - anyio.current_time()):
                await self._gate._all_answered.wait()


async def _enrich_page(
    aws: AwsClients,
    clients: tuple[Any, Any],
    scope: Scope,
    limiter: anyio.CapacityLimiter,
    page: list[dict[str, Any]],
    result: ScopeDiscovery,
    first_answer: FirstAnswer,
) -> None:
    """The source servers and EC2 instances of one page of recovery instances, into ``result``."""
    drs, ec2 = clients
    server_batch = [ri["sourceServerID"] for ri in page if ri.get("sourceServerID")]
    ec2_batch = [ri["ec2InstanceID"] for ri in page if ri.get("ec2InstanceID")]
    drs_answered = anyio.Event()

    async def servers() -> None:
        servers = await describe_source_servers(aws, drs, scope, limiter, server_batch, answered=drs_answered)
        result.source_servers.update((sid, slim_source_server(server)) for sid, server in servers.items())

    async def instances() -> None:
        result.ec2_instances.update(await describe_ec2_instances(aws, ec2, scope, limiter, ec2_batch))

    async with anyio.create_task_group() as inner:
        if server_batch:
            inner.start_soon(servers)
            # DRS first (see DrsFirst): the EC2 lookup follows DRS's answer to this page's
            # source servers; unthrottled that costs one round trip per page.
            await drs_answered.wait()
        first_answer.set()
        await first_answer.follow()
        if ec2_batch:
            inner.start_soon(instances)


async def discover_scope(
    aws: AwsClients,
    scope: Scope,
    account: AccountTarget,
    *,
    limiter: anyio.CapacityLimiter,
    server_ids: list[str] | None = None,
    first_answer: FirstAnswer | None = None,
    on_listed: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
) -> ScopeDiscovery:
    """Recovery instances of ``scope`` with their source servers and EC2 instances.

    ``first_answer`` is set once DRS has answered the scope's first source-server call (or
    discovery ended without one); EC2 lookups follow it (see ``DrsFirst``). ``on_listed`` runs
    with the recovery instances once every page of them arrived, beside the rest of discovery
    (under a rate limit, while the source-server lookups wait out their ``Retry-After``); its
    failure fails the discovery.

    Raises the engine's ``AwsError`` on failure (the whole scope fails: partial discovery must
    never drive reconciliation). An uninitialised region is an empty, successful scope.
    """
    result = ScopeDiscovery()
    first_answer = first_answer or FirstAnswer()
    drs = await aws.client("drs", scope.region, account)
    ec2 = await aws.client("ec2", scope.region, account)

    uninitialized = False
    try:
        async with anyio.create_task_group() as tg:
            async for page in _drs_pages(aws, drs, scope, limiter, server_ids):
                if page:
                    slim = [slim_recovery_instance(ri) for ri in page]
                    result.recovery_instances.extend(slim)
                    # The page's enrichment waits out its rate limits holding the slim items, not
                    # DRS's full page (which then dominated a cold sync's memory).
                    tg.start_soon(_enrich_page, aws, (drs, ec2), scope, limiter, slim, result, first_answer)
            if not result.recovery_instances:
                first_answer.set()
            elif on_listed is not None:
                tg.start_soon(on_listed, result.recovery_instances)
    except* _Uninitialized:
        uninitialized = True
    except* AwsError as group:
        # Report the first failure; the rest are the same scope failing on sibling calls.
        raise leaf_exceptions(group)[0] from None
    if uninitialized:
        return ScopeDiscovery(initialized=False)
    return result
