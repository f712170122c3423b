"""DRS discovery of one scope: recovery instances (paginated) and their source servers (filtered
by up to 200 ids a call). No call per instance.

Pages are pipelined: as soon as a page of recovery instances arrives, its source servers
and its EC2 instances are requested while the next page is fetched, so a scope costs about one round
trip per page plus one. Before its first page is described a scope may wait to be admitted
(``admit``: the run's bound on instances in flight), holding only that page's slim items.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from syncengine.aws.clients import AwsClients
from syncengine.core.concurrency import leaf_exceptions
from syncengine.core.config import DRS_FILTER_MAX_IDS
from syncengine.core.errors import AwsError, MalformedResponseError
from syncengine.core.models import AccountTarget, Scope
from syncengine.core.retry import CallContext
from syncengine.dynamodb.seam import chunked
from syncengine.sync.enrich import describe_ec2_instances

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
    """The fields record building reads; a field DRS answered as ``null`` is absent."""
    return {key: item[key] for key in _RECOVERY_INSTANCE_FIELDS if item.get(key) is not None}


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
    """A page's item list. DRS's model does not require ``items``: a page without it (or with
    ``null``) is an empty page, and a following ``nextToken`` still continues the listing. What
    stays untrusted: something other than a list of objects there (``MissingItems``), a body
    that is not JSON (``ResponseParseError``, ``fastpath.parsers.StrictRestJSONParser``) and a
    repeated page token (``AwsClients.pages``): never "no instances", which would delete the
    scope's records."""
    value = page.get(key)
    if value is None:
        return []
    return MalformedResponseError.unless_list_of_maps(value, context, key)


class _Uninitialized(Exception):
    """DRS answered the scope's first DescribeRecoveryInstances with UninitializedAccountException."""


async def _drs_pages(
    aws: AwsClients,
    drs: Any,
    scope: Scope,
    limiter: anyio.CapacityLimiter,
    server_ids: list[str] | None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of DescribeRecoveryInstances, slim (``slim_recovery_instance``); with
    ``server_ids``, only those servers' instances."""
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
                slim = [slim_recovery_instance(ri) for ri in page_items(page, context)]
                del page  # not kept while the consumer waits (to be admitted: ``discover_scope``)
                yield slim
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
) -> dict[str, dict[str, Any]]:
    """Source servers by id, slim (``slim_source_server``): one filtered call per 200 ids
    (paginated in case DRS pages it)."""
    context = CallContext("drs:DescribeSourceServers", scope.account_id, scope.region)
    found: dict[str, dict[str, Any]] = {}
    for batch in chunked(dict.fromkeys(server_ids), DRS_FILTER_MAX_IDS):
        pages = aws.pages(
            drs,
            "describe_source_servers",
            context,
            cursor="nextToken",
            scope_limiter=limiter,
            filters={"sourceServerIDs": batch},
            maxResults=DRS_PAGE_SIZE,
        )
        async for page in pages:
            for server in page_items(page, context):
                if server.get("sourceServerID"):
                    found[server["sourceServerID"]] = slim_source_server(server)
    return found


async def _enrich_page(
    aws: AwsClients,
    clients: tuple[Any, Any],
    scope: Scope,
    limiter: anyio.CapacityLimiter,
    page: list[dict[str, Any]],
    result: ScopeDiscovery,
) -> None:
    """The source servers and EC2 instances of one page of recovery instances, into ``result``."""
    drs, ec2 = clients
    server_batch = [ri["sourceServerID"] for ri in page if ri.get("sourceServerID")]
    ec2_batch = [ri["ec2InstanceID"] for ri in page if ri.get("ec2InstanceID")]

    async def servers() -> None:
        result.source_servers.update(await describe_source_servers(aws, drs, scope, limiter, server_batch))

    async def instances() -> None:
        result.ec2_instances.update(await describe_ec2_instances(aws, ec2, scope, limiter, ec2_batch))

    async with anyio.create_task_group() as inner:
        if server_batch:
            inner.start_soon(servers)
        if ec2_batch:
            inner.start_soon(instances)


async def discover_scope(
    aws: AwsClients,
    scope: Scope,
    account: AccountTarget,
    *,
    limiter: anyio.CapacityLimiter,
    server_ids: list[str] | None = None,
    on_listed: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
    admit: Callable[[int], Awaitable[None]] | None = None,
) -> ScopeDiscovery:
    """Recovery instances of ``scope`` with their source servers and EC2 instances.

    ``admit`` is awaited with each page's size before the page is described: the run's bound on
    the instances in flight (``Budget``) makes a scope wait there, once, holding one page of
    listing, never its descriptions. ``on_listed`` runs
    with the recovery instances once every page of them arrived, beside the rest of discovery
    (under a rate limit, while the source-server lookups wait out their ``Retry-After``); its
    failure fails the discovery.

    Raises the engine's ``AwsError`` on failure (the whole scope fails: partial discovery must
    never drive reconciliation). An uninitialised region is an empty, successful scope.
    """
    result = ScopeDiscovery()
    drs = await aws.client("drs", scope.region, account)
    ec2 = await aws.client("ec2", scope.region, account)

    uninitialized = False
    try:
        async with anyio.create_task_group() as tg:
            async for page in _drs_pages(aws, drs, scope, limiter, server_ids):
                if page:
                    if admit is not None:
                        await admit(len(page))
                    result.recovery_instances.extend(page)
                    tg.start_soon(_enrich_page, aws, (drs, ec2), scope, limiter, page, result)
            if result.recovery_instances and on_listed is not None:
                tg.start_soon(on_listed, result.recovery_instances)
    except* _Uninitialized:
        uninitialized = True
    except* AwsError as group:
        # Report the first failure; the rest are the same scope failing on sibling calls.
        raise leaf_exceptions(group)[0] from None
    if uninitialized:
        return ScopeDiscovery(initialized=False)
    return result
