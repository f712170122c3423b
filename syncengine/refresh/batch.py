"""Event-driven refresh: a batch of DRS/EC2 events and scope messages -> one targeted sync per
(account, region) for the union of the servers they name.

1. Parse every message (``syncengine.refresh.events``; a scope group message names several scopes); a
   malformed or unsupported one is logged and acknowledged (retrying never makes it valid).
2. Coalesce by scope.
3. Map what only the cache can map, DynamoDB only: an EC2 instance id through the cache's EC2
   instance index, a recovery instance id through the scope index. An instance the cache does
   not hold maps to nothing: a scope left with no server costs no AWS call at all (a new
   instance's own launch-result event, or the scheduled sweep, brings it in).
4. Sync each scope with the engine's targeted path (DRS filtered by those source server ids, EC2
   for their instances), under the scope lease like every sync; reconciliation then touches only
   the named servers. Scope messages without ids sync the whole scope.
A scope whose sync did not succeed reports its messages as failed, so SQS delivers them again.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aioboto3
import anyio
import structlog

from syncengine.core.concurrency import run_concurrently
from syncengine.core.config import SyncSettings
from syncengine.core.errors import AwsError, InvalidRequestError
from syncengine.core.logging import get_logger
from syncengine.core.models import AccountTarget, RunStatus, Scope, ScopeOutcome, ScopeResult, SyncReport
from syncengine.refresh.events import RefreshRequest, ScopeWork, coalesce, parse_refresh_requests
from syncengine.refresh.sqs import RefreshMessage, newest_event_ms, retry_busy_soon
from syncengine.runtime import Runtime, open_runtime
from syncengine.sync.engine import sync_scope_in_runtime
from syncengine.sync.execution_sync import SyncExecutions, open_for_sync
from syncengine.sync.pipeline import is_busy
from syncengine.tables.accounts import load_targets, plan_scopes
from syncengine.tables.status import lease_family

log = get_logger(__name__)


class RefreshStatus(StrEnum):
    SYNCED = "SYNCED"
    FAILED = "FAILED"
    # Another sync held the scope's lease (the sweep, say): not a failure, retried soon
    # (``retry_after``), never counted in SyncErrors.
    BUSY = "BUSY"
    # Another whole-scope sync held the lease and its read started after the events happened:
    # its fresh read covers them; acknowledged.
    COVERED = "COVERED"
    # Nothing the cache knows was named (e.g. an EC2 instance that is no recovery instance).
    NOTHING_TO_SYNC = "NOTHING_TO_SYNC"
    # The scope is not one a full sync covers (no active target account, or region not configured).
    NOT_CONFIGURED = "NOT_CONFIGURED"


@dataclass(frozen=True)
class ScopeRefresh:
    scope: Scope
    status: RefreshStatus
    message_ids: tuple[str, ...]
    server_ids: tuple[str, ...] | None = None  # None: the whole scope
    report: SyncReport | None = None
    error: str | None = None
    # Fan-out messages whose scope was counted in their run: acknowledged even when the scope
    # failed (the run reports it; the next sweep retries it, as an in-process full sync would).
    acknowledged: tuple[str, ...] = ()
    # BUSY: seconds until its messages come back (None: the queue's visibility timeout).
    retry_after: int | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "accountId": self.scope.account_id,
            "region": self.scope.region,
            "status": self.status.value,
            "messages": len(self.message_ids),
            "serverIds": None if self.server_ids is None else list(self.server_ids),
        }
        if self.report is not None:
            body["report"] = self.report.to_dict()
        if self.error is not None:
            body["error"] = self.error
        if self.retry_after is not None:
            body["retryAfterSeconds"] = self.retry_after
        return body


@dataclass(frozen=True)
class RefreshResult:
    scopes: tuple[ScopeRefresh, ...] = ()
    rejected: tuple[str, ...] = ()  # malformed or unsupported messages, acknowledged

    @property
    def failed_message_ids(self) -> list[str]:
        """Each message once: a scope group message fails when any of its scopes failed or was
        busy uncounted (SQS then delivers it again; its other scopes sync again, counted once)."""
        failed = (
            mid
            for s in self.scopes
            if s.status in (RefreshStatus.FAILED, RefreshStatus.BUSY)
            for mid in s.message_ids
            if mid not in s.acknowledged
        )
        return list(dict.fromkeys(failed))

    def to_dict(self) -> dict[str, Any]:
        statuses = {s.status for s in self.scopes}
        status = (
            "FAILED" if RefreshStatus.FAILED in statuses else "BUSY" if RefreshStatus.BUSY in statuses else "SUCCESS"
        )
        return {
            "status": status,
            "scopes": [s.to_dict() for s in self.scopes],
            "rejectedMessages": len(self.rejected),
        }


def _parse(messages: Sequence[RefreshMessage]) -> tuple[list[tuple[str, RefreshRequest]], list[str]]:
    requests: list[tuple[str, RefreshRequest]] = []
    rejected: list[str] = []
    for message in messages:
        try:
            requests += [(message.message_id, r) for r in parse_refresh_requests(message.body)]
        except InvalidRequestError as exc:
            rejected.append(message.message_id)
            log.warning("refresh_message_rejected", message_id=message.message_id, error=str(exc))
    return requests, rejected


def _failed(work: ScopeWork, error: str) -> ScopeRefresh:
    return ScopeRefresh(work.scope, RefreshStatus.FAILED, tuple(work.message_ids), error=error)


@dataclass(frozen=True)
class _Batch:
    """What the batch's scopes share, read once: the targets and the execution index; and the
    batch's messages (their send times decide whether a busy scope's holder covers them)."""

    targets: list[AccountTarget]
    executions: SyncExecutions
    messages: dict[str, RefreshMessage]


async def _busy(
    rt: Runtime, work: ScopeWork, named: tuple[str, ...] | None, report: SyncReport, batch: _Batch
) -> ScopeRefresh:
    """The scope's lease was held past ``scope_lease_wait``. Not a failure: satisfied when the
    holder syncs the whole scope and its read started after every event of this work happened
    (only events and plain scope messages: a fan-out slice must be counted by its own run);
    else its messages come back in ``busy_retry_seconds`` (a second copy of the same fan-out
    message gives way for the queue's visibility timeout, as before)."""
    scope, ids = work.scope, tuple(work.message_ids)
    try:
        holder = await rt.status.scope_lease_holder(scope)
    except AwsError as exc:
        log.warning("refresh_lease_holder_unreadable", error_type=exc.error_type, error=str(exc))
        holder = None
    newest = newest_event_ms(work, batch.messages)
    if (
        holder is not None
        and not work.run_messages
        and holder.whole_scope
        and holder.acquired_at_ms is not None
        and newest is not None
        and holder.acquired_at_ms >= newest
    ):
        log.info("refresh_covered_by_holder", holder=holder.owner, holder_acquired_at_ms=holder.acquired_at_ms)
        return ScopeRefresh(scope, RefreshStatus.COVERED, ids, named, report=report)
    duplicate = holder is not None and lease_family(holder.owner) in set(work.run_messages.values())
    retry_after = None if duplicate else rt.settings.busy_retry_seconds
    log.info("refresh_scope_busy", holder=holder.owner if holder else None, retry_after_s=retry_after)
    return ScopeRefresh(scope, RefreshStatus.BUSY, ids, named, report=report, retry_after=retry_after)


def _busy_delays(scopes: Iterable[ScopeRefresh]) -> dict[str, int]:
    """Message id -> how soon it should come back, for the messages of busy scopes."""
    delays: dict[str, int] = {}
    for done in scopes:
        if done.status is RefreshStatus.BUSY and done.retry_after is not None:
            for mid in done.message_ids:
                if mid not in done.acknowledged:
                    delays[mid] = min(delays.get(mid, done.retry_after), done.retry_after)
    return delays


async def _servers_of(rt: Runtime, work: ScopeWork) -> list[str] | None:
    """The source servers the scope's events name (None: the whole scope), from the cache only."""
    if work.whole_scope:
        return None
    servers = set(work.server_ids)
    if work.ec2_instance_ids:
        owners = await rt.store.owners_of_ec2_instances(work.ec2_instance_ids)
        servers |= {o.source_server_id for o in owners if o.scope_key == work.scope.key}
    if work.recovery_instance_ids:
        # Failback events are rare: one read of the scope index beats a second index on the table.
        entries = await rt.store.scope_entries(work.scope)
        servers |= {sid for sid, e in entries.items() if e.recovery_instance_id in work.recovery_instance_ids}
    return sorted(servers)


async def _sync(rt: Runtime, work: ScopeWork, server_ids: list[str] | None, batch: _Batch) -> ScopeRefresh:
    scope = work.scope
    ids = tuple(work.message_ids)
    named = None if server_ids is None else tuple(server_ids)
    if not plan_scopes(batch.targets, rt.settings, account_id=scope.account_id, region=scope.region):
        log.warning("refresh_scope_not_configured", messages=len(ids))
        return ScopeRefresh(scope, RefreshStatus.NOT_CONFIGURED, ids, named)
    # Only fan-out messages: a slice of a full run, which its run record reports.
    fanout_only = len(work.run_messages) == len(ids)
    fanout_runs = set(work.run_messages.values())
    report = await sync_scope_in_runtime(
        rt,
        scope,
        server_ids,
        targets=batch.targets,
        executions=batch.executions,
        record_run=not fanout_only,
        fanout_run=fanout_runs.pop() if fanout_only and len(fanout_runs) == 1 else None,
    )
    if report.scopes and is_busy(report.scopes[0]):
        return await _busy(rt, work, named, report, batch)
    status = RefreshStatus.SYNCED if report.status is RunStatus.SUCCESS else RefreshStatus.FAILED
    return ScopeRefresh(scope, status, ids, named, report=report)


def _fanout_result(done: ScopeRefresh) -> ScopeResult | None:
    """What a fan-out run counts for a scope; None: not to be counted (skipped: busy or the
    deadline; or never synced), so its message comes back."""
    if done.status is RefreshStatus.NOT_CONFIGURED:  # no longer configured: neither synced nor failed
        return ScopeResult(done.scope, ScopeOutcome.NOT_ENABLED)
    result = done.report.scopes[0] if done.report is not None and done.report.scopes else None
    if result is None or result.outcome is ScopeOutcome.SKIPPED:
        return None
    return result


async def _count_in_fanout_runs(rt: Runtime, work: dict[Scope, ScopeWork], done: dict[Scope, ScopeRefresh]) -> None:
    """Count the batch's scopes in the fan-out runs whose messages asked for them
    (syncengine.sync.fanout), a run's scopes together; a counted scope's fan-out messages are
    acknowledged even if its sync failed (the run reports it; the next sweep retries it, as an
    in-process full sync would). A scope not counted (skipped, or the count failed) is not: its
    message comes back."""
    from syncengine.sync.fanout import finish_scopes

    by_part: dict[tuple[str, int], list[ScopeResult]] = {}
    for scope, item in work.items():
        result = _fanout_result(done[scope]) if item.run_messages and scope in done else None
        for run_id in dict.fromkeys(item.run_messages.values()) if result is not None else ():
            by_part.setdefault((run_id, item.run_parts.get(run_id, 0)), []).append(result)
    counted: set[Scope] = set()
    uncounted: set[Scope] = set()  # a scope asked for by two runs is settled only when both counted it
    for (run_id, part), results in by_part.items():
        try:
            await finish_scopes(rt, run_id, results, part=part)
        except AwsError as exc:
            log.warning("fanout_count_failed", run_id=run_id, error_type=exc.error_type, error=str(exc))
            uncounted |= {r.scope for r in results}
            continue
        counted |= {r.scope for r in results}
    for scope in counted - uncounted:
        done[scope] = dataclasses.replace(done[scope], acknowledged=tuple(work[scope].run_messages))


async def _resolve_and_sync(
    rt: Runtime, work: dict[Scope, ScopeWork], messages: dict[str, RefreshMessage], done: dict[Scope, ScopeRefresh]
) -> None:
    """The batch's work under its deadline: map the events to servers, read the targets and the
    execution index, sync each scope. What it finishes lands in ``done``."""
    servers: dict[Scope, list[str] | None] = {}

    async def resolve(item: ScopeWork) -> None:
        with structlog.contextvars.bound_contextvars(account_id=item.scope.account_id, region=item.scope.region):
            try:
                servers[item.scope] = await _servers_of(rt, item)
            except AwsError as exc:
                log.warning("refresh_lookup_failed", error_type=exc.error_type, error=str(exc))
                done[item.scope] = _failed(item, str(exc))
                return
            if servers[item.scope] == []:
                done[item.scope] = ScopeRefresh(item.scope, RefreshStatus.NOTHING_TO_SYNC, tuple(item.message_ids), ())

    await run_concurrently(functools.partial(resolve, item) for item in work.values())
    pending = [item for scope, item in work.items() if scope not in done]
    if pending:
        await _sync_pending(rt, pending, servers, done, messages)


async def _sync_pending(
    rt: Runtime,
    pending: list[ScopeWork],
    servers: dict[Scope, list[str] | None],
    done: dict[Scope, ScopeRefresh],
    messages: dict[str, RefreshMessage],
) -> None:
    # Read once for the batch, not once per scope: a batch of fan-out messages holds many scopes.
    try:
        # Not narrowed by the stored region probes (two Queries a batch): a fan-out message names
        # scopes the sweep planned from them, and an event names a region where DRS is in use.
        targets = await load_targets(rt.aws, rt.dynamo, rt.settings, stored_probes=False)
        executions = await open_for_sync(rt.dynamo, rt.settings)
    except AwsError as exc:
        log.warning("refresh_targets_failed", error_type=exc.error_type, error=str(exc))
        for item in pending:
            done[item.scope] = _failed(item, str(exc))
        return

    batch = _Batch(targets, executions, messages)

    async def sync(item: ScopeWork) -> None:
        with structlog.contextvars.bound_contextvars(account_id=item.scope.account_id, region=item.scope.region):
            done[item.scope] = await _sync(rt, item, servers[item.scope], batch)

    await run_concurrently(functools.partial(sync, item) for item in pending)


# The batch's last work (fan-out counts, busy messages' visibility) gets this long after the
# deadline of its syncs (at most a quarter of the whole deadline).
REFRESH_TAIL_SECONDS = 5.0
DEADLINE_MESSAGE = "the refresh's deadline passed before this scope was synced"


def _work_and_tail(settings: SyncSettings) -> tuple[float | None, float | None]:
    """Seconds for the batch's work and for its tail, within ``deadline_seconds`` (None: none)."""
    if settings.deadline_seconds is None:
        return None, None
    tail = min(REFRESH_TAIL_SECONDS, settings.deadline_seconds / 4)
    return settings.deadline_seconds - tail, tail


async def refresh(
    settings: SyncSettings, messages: Sequence[RefreshMessage], *, session: aioboto3.Session | None = None
) -> RefreshResult:
    """Refresh what a batch of events and scope messages names: one targeted sync per scope.

    The whole batch is bounded by ``deadline_seconds``: the runtime's setup, the cache lookups,
    the targets' and execution index's reads and the scopes' syncs by its work part, the fan-out
    counts and the busy messages' visibility by a shielded tail (``REFRESH_TAIL_SECONDS``, at most
    a quarter); a scope the deadline left unsynced fails (its messages come back)."""
    requests, rejected = _parse(messages)
    work = coalesce(requests)
    if not work:
        return RefreshResult((), tuple(rejected))
    by_id = {m.message_id: m for m in messages}
    work_seconds, tail_seconds = _work_and_tail(settings)
    done: dict[Scope, ScopeRefresh] = {}
    with anyio.move_on_after(None if work_seconds is None else work_seconds + (tail_seconds or 0.0)):
        async with open_runtime(settings, session=session) as rt:
            with anyio.move_on_after(work_seconds) as deadline:
                await _resolve_and_sync(rt, work, by_id, done)
            if deadline.cancelled_caught:
                log.warning("refresh_deadline_passed", unfinished=sum(1 for scope in work if scope not in done))
            with anyio.CancelScope(shield=True), anyio.move_on_after(tail_seconds):
                await _count_in_fanout_runs(rt, work, done)
                await retry_busy_soon(rt, _busy_delays(done.values()), by_id)
    for scope, item in work.items():
        done.setdefault(scope, _failed(item, DEADLINE_MESSAGE))
    result = RefreshResult(tuple(done[scope] for scope in work), tuple(rejected))
    log.info(
        "refresh_finished",
        messages=len(messages),
        rejected=len(rejected),
        scopes=len(work),
        failed_messages=len(result.failed_message_ids),
        statuses=[s.status.value for s in result.scopes],
    )
    return result


__all__ = ["RefreshMessage", "RefreshResult", "RefreshStatus", "ScopeRefresh", "refresh"]
