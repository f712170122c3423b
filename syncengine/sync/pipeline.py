"""One scope's sync: lease -> discover -> build -> write -> reconcile -> status.

``sync_one_scope`` returns a ``ScopeResult`` whatever happens; one failing scope never cancels
another (only bugs escape). The steps, each a short function:

1. checks that need no lease: the account's configuration, whether the region is enabled;
2. ``scope_lease``: the scope's lease, so syncs of one scope write in the order they observed;
3. ``discover_and_read_cache``: DRS/EC2 discovery, and the cache's view of the scope beside it;
   a scope describes its instances only once admitted to the run's bound on instances in flight
   (``Runtime.in_flight``), which it leaves when its writes are done: a run's memory follows the
   bound, not the estate, while every scope still lists (and waits out its rate limits) at once;
4. ``build_records``: one cache record per recovery instance;
5. ``write_and_reconcile``: changed records written, then (only after discovery and writes
   succeeded for the whole scope) cached records DRS no longer reports deleted, so a throttled
   or unreachable region never loses cached data.

``scope_recorded`` wraps it all: an AWS error becomes the scope's result, and the scope's status
is written at the end (shielded: a run cut short by its deadline still records the scope and
frees its lease).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from syncengine.aws.regions import is_disabled_region_error
from syncengine.core.concurrency import run_concurrently
from syncengine.core.errors import AwsError
from syncengine.core.logging import get_logger, structlog
from syncengine.core.models import (
    AccountTarget,
    RecoveryInstanceRecord,
    Scope,
    ScopeError,
    ScopeOutcome,
    ScopeResult,
    utc_now_iso,
)
from syncengine.runtime import Runtime, SyncProgress, lease_seconds, shielded_cleanup
from syncengine.sync.attribution import NOT_ATTRIBUTED, ScopeAttribution
from syncengine.sync.discovery import ScopeDiscovery, discover_scope
from syncengine.sync.enrich import build_record
from syncengine.tables.cache import CachedEntry, newest_per_server
from syncengine.tables.execution_index.lookup import ExecutionIndex, ExecutionSource

log = get_logger(__name__)

BUSY_MESSAGE = "another sync of this scope did not finish in time"
BUSY_ERROR_TYPE = "ScopeBusy"


def is_busy(result: ScopeResult) -> bool:
    """A scope skipped because another sync held its lease: not a failure (its holder syncs it)."""
    return result.error is not None and result.error.error_type == BUSY_ERROR_TYPE


@dataclass
class ScopeAttempt:
    """One scope's sync in progress: what it will report, and whether it may hold the lease."""

    scope: Scope
    server_ids: list[str] | None
    run_id: str
    started: float = field(default_factory=time.monotonic)
    result: ScopeResult = field(init=False)
    # While acquiring, whether the lease is ours is unknown (a cancelled acquisition may still
    # have been granted), so the status write releases it conditionally on our run id.
    may_hold_lease: bool = False
    # When the scope's records were last attributed, as its status item said (from the lease).
    attributed_at: float | None = None

    def __post_init__(self) -> None:
        self.result = self.failed(
            ScopeOutcome.SKIPPED, "DeadlineExceeded", "the run's deadline passed before this scope finished"
        )

    @property
    def targeted(self) -> bool:
        return self.server_ids is not None

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def failed(self, outcome: ScopeOutcome, error_type: str, message: str) -> ScopeResult:
        error = ScopeError(self.scope.account_id, self.scope.region, error_type, message)
        return ScopeResult(self.scope, outcome, duration_ms=self.elapsed_ms(), error=error, targeted=self.targeted)

    def not_enabled(self) -> ScopeResult:
        return ScopeResult(self.scope, ScopeOutcome.NOT_ENABLED, duration_ms=self.elapsed_ms())


async def sync_one_scope(
    rt: Runtime,
    scope: Scope,
    account: AccountTarget,
    executions: ExecutionSource,
    *,
    run_id: str,
    server_ids: list[str] | None,
) -> ScopeResult:
    attempt = ScopeAttempt(scope, server_ids, run_id)
    async with scope_recorded(rt, attempt):
        try:
            attempt.result = await _checked_sync(rt, attempt, account, executions)
        finally:
            await rt.aws.release(("drs", "ec2"), scope.region, account)
    return attempt.result


async def _checked_sync(
    rt: Runtime, attempt: ScopeAttempt, account: AccountTarget, executions: ExecutionSource
) -> ScopeResult:
    scope = attempt.scope
    if account.config_error:
        message = f"target-accounts item of {scope.account_id}: {account.config_error}"
        return attempt.failed(ScopeOutcome.FAILED, "InvalidConfiguration", message)
    if await rt.regions.is_enabled(account, scope.region) is False:
        return attempt.not_enabled()
    async with scope_lease(rt, attempt, account) as granted:
        if not granted:
            return attempt.failed(ScopeOutcome.SKIPPED, BUSY_ERROR_TYPE, BUSY_MESSAGE)
        observed_at = int(time.time() * 1000)
        # A targeted sync attributes all of its few servers again (a wave's sync refreshed the
        # index just before it); a whole-scope sync only what changed since its last success.
        stamp = None if attempt.targeted else attempt.attributed_at
        attribution = ScopeAttribution(executions, executions.recheck(stamp), scope.region)
        # Admitted to the run's instances in flight with its first page, until its writes are done.
        async with rt.in_flight.hold() as in_flight:
            discovery, cached = await discover_and_read_cache(rt, attempt, account, attribution, in_flight.take)
            records = newest_per_server(build_records(scope, discovery, NOT_ATTRIBUTED, observed_at))
            log.debug("scope_discovered", initialized=discovery.initialized, found=len(records))
            changed = await attribution.attribute(rt, records, discovery)
            del discovery  # the raw DRS/EC2 data is not needed while the writes wait
            stamp = attribution.recheck.stamp
            return await write_and_reconcile(rt, attempt, changed, records, cached, observed_at, stamp)


@contextlib.asynccontextmanager
async def scope_recorded(rt: Runtime, attempt: ScopeAttempt) -> AsyncIterator[None]:
    """Around a scope's sync: an AWS error becomes its result; at the end, however it ended (a
    result, an error, the deadline's cancellation), its status is written from
    ``attempt.result``, shielded and bounded by the cleanup budget."""
    try:
        yield
    except AwsError as exc:
        attempt.result = _aws_failure(rt, attempt, exc)
    finally:
        with shielded_cleanup(rt.settings):
            await _write_status(rt, attempt)


def _aws_failure(rt: Runtime, attempt: ScopeAttempt, exc: AwsError) -> ScopeResult:
    # The auth failure of a disabled region stands in for DescribeRegions only when that did not
    # answer: in a region it lists as enabled, the same error is a real failure (credentials the
    # region rejects) and must show, not hide as NOT_ENABLED. EC2 DescribeRegions with
    # AllRegions=false lists "the Regions that are enabled for your account"
    # (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeRegions.html).
    scope = attempt.scope
    if is_disabled_region_error(exc, scope.region) and rt.regions.listed(scope.account_id, scope.region) is None:
        log.info("scope_not_enabled", error_type=exc.error_type, operation=exc.operation)
        return attempt.not_enabled()
    log.warning("scope_failed", error_type=exc.error_type, error=str(exc), operation=exc.operation)
    return attempt.failed(ScopeOutcome.FAILED, exc.error_type, str(exc))


async def _write_status(rt: Runtime, attempt: ScopeAttempt) -> None:
    """Record the scope's outcome: with our lease, in the conditional write that releases it;
    otherwise (never granted) record the attempt and leave the lease alone. A scope found busy
    records nothing: its holder is syncing it and writes its own outcome (a busy scope is no
    failure, and must not overwrite the holder's result when it finished first)."""
    if is_busy(attempt.result) and not attempt.may_hold_lease:
        return
    try:
        released = attempt.may_hold_lease and await rt.status.finish_scope(attempt.result, owner=attempt.run_id)
        if not released:
            await rt.status.finish_scope(attempt.result, owner=None)
    except AwsError as exc:
        log.warning("scope_status_write_failed", error=str(exc))
    except anyio.get_cancelled_exc_class():
        log.warning("scope_status_write_timed_out", lease_seconds=rt.settings.lease_seconds)
        raise


@contextlib.asynccontextmanager
async def scope_lease(rt: Runtime, attempt: ScopeAttempt, account: AccountTarget) -> AsyncIterator[bool]:
    """The scope's lease for the body, until the holder's deadline plus a margin; yields whether
    it was granted (another sync of the scope may hold it past ``scope_lease_wait``). The lease is
    released by the status write of ``scope_recorded``, in the same conditional write. The
    account's credentials are fetched meanwhile (``prefetch_credentials``)."""
    expires_at = time.time() + lease_seconds(rt.settings)
    attempt.may_hold_lease = True

    async def acquire() -> None:
        lease = await rt.status.take_scope_lease(
            attempt.scope,
            attempt.run_id,
            wait=rt.settings.scope_lease_wait,
            expires_at=expires_at,
            whole_scope=not attempt.targeted,
        )
        attempt.may_hold_lease = lease is not None
        attempt.attributed_at = lease.attributed_at if lease is not None else None

    await run_concurrently((acquire, lambda: prefetch_credentials(rt, account)))
    yield attempt.may_hold_lease


async def prefetch_credentials(rt: Runtime, account: AccountTarget) -> None:
    """The account's assumed-role credentials, fetched while the scope's lease is acquired: the
    AssumeRole round trip and the lease's DynamoDB write are independent, and both precede the
    scope's first DRS call. Credentials are per account and per run (``AwsClients``), so a scope
    that then finds its lease busy wasted nothing another scope of the account would not use. A
    failure is remembered there and raised when discovery asks for its client (the scope fails
    then, as it would have without the prefetch)."""
    with contextlib.suppress(AwsError):
        await rt.aws.credentials_for(account)


async def discover_and_read_cache(
    rt: Runtime,
    attempt: ScopeAttempt,
    account: AccountTarget,
    attribution: ScopeAttribution,
    admit: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[ScopeDiscovery, dict[str, CachedEntry]]:
    """DRS/EC2 discovery, the cache's view of the scope (the scope lease keeps other writers out
    meanwhile) and the execution index's entries of the recovery instances that DRS's listing and
    the cache already show need them (new ones, those the index's change log names: see
    ``ScopeAttribution``). The reads overlap discovery, off the scope's critical path (under a
    rate limit, inside the wait). ``admit``: see ``discover_scope``."""
    found: dict[str, Any] = {}
    cache_read = anyio.Event()

    async def lookup(recovery_instances: list[dict[str, Any]]) -> None:
        await cache_read.wait()
        await attribution.read(rt, [ri for ri in recovery_instances if attribution.wanted_from_listing(ri)])

    async def discover() -> None:
        found["discovery"] = await discover_scope(
            rt.aws,
            attempt.scope,
            account,
            limiter=anyio.CapacityLimiter(rt.settings.per_scope_concurrency),
            server_ids=attempt.server_ids,
            on_listed=lookup,
            admit=admit,
        )

    async def read_cache() -> None:
        try:
            cached = await rt.store.scope_entries(attempt.scope)
            if attempt.server_ids is not None:
                wanted = set(attempt.server_ids)
                cached = {sid: entry for sid, entry in cached.items() if sid in wanted}
            found["cached"] = attribution.cached = cached
        finally:
            cache_read.set()

    await run_concurrently((discover, read_cache))
    return found["discovery"], found["cached"]


def build_records(
    scope: Scope, discovery: ScopeDiscovery, executions: ExecutionIndex, observed_at: int
) -> list[RecoveryInstanceRecord]:
    """One record per recovery instance DRS reported (those it cannot describe are skipped)."""
    records = (
        build_record(
            scope,
            ri,
            discovery.source_servers.get(ri.get("sourceServerID", "")),
            discovery.ec2_instances.get(ri.get("ec2InstanceID", "")),
            executions,
            observed_at,
        )
        for ri in discovery.recovery_instances
    )
    return [record for record in records if record is not None]


async def write_and_reconcile(
    rt: Runtime,
    attempt: ScopeAttempt,
    changed: list[RecoveryInstanceRecord],
    records: list[RecoveryInstanceRecord],
    cached: dict[str, CachedEntry],
    observed_at: int,
    attributed_at: float | None = None,
) -> ScopeResult:
    """Write what changed (``changed``, attributed; the rest of ``records`` is as cached), then
    delete what DRS no longer reports (observed before this sync)."""
    outcome = await rt.store.write_records(changed, cached, last_sync_time=utc_now_iso())
    seen = {record.source_server_id for record in records}
    stale = [entry for sid, entry in cached.items() if sid not in seen and entry.observed_at <= observed_at]
    deleted = await rt.store.delete_stale(attempt.scope, stale)
    log.debug("scope_synced", found=len(seen), updated=outcome.updated, deleted=deleted)
    return ScopeResult(
        attempt.scope,
        ScopeOutcome.SUCCESS,
        instances_found=len(seen),
        updated=outcome.updated,
        unchanged=outcome.unchanged + len(records) - len(changed),
        deleted=deleted,
        duration_ms=attempt.elapsed_ms(),
        reconciled=not attempt.targeted,
        targeted=attempt.targeted,
        attributed_at=attributed_at,
    )


async def sync_scopes(
    rt: Runtime,
    planned: list[tuple[Scope, AccountTarget]],
    executions: ExecutionSource,
    *,
    run_id: str,
    server_ids: list[str] | None = None,
    progress: SyncProgress | None = None,
    results: dict[Scope, ScopeResult],
) -> None:
    """Every planned scope concurrently in this event loop, each result put in ``results`` as it
    finishes (so a deadline that cuts the rest short loses none of the finished ones)."""

    async def run_scope(scope: Scope, account: AccountTarget) -> None:
        with structlog.contextvars.bound_contextvars(account_id=scope.account_id, region=scope.region):
            result = await sync_one_scope(rt, scope, account, executions, run_id=run_id, server_ids=server_ids)
        results[scope] = result
        if progress is not None:
            progress.advance(result)

    async with anyio.create_task_group() as tg:
        for scope, account in planned:
            tg.start_soon(run_scope, scope, account)
