"""Where DRS is in use in an account whose item lists no regions, without the orchestration's
region-status table: a cheap probe per account, at most once per ``region_probe_seconds``
(default an hour), kept in the status table (``REGIONS`` / ``<account>``), so the syncs between
probes visit only those regions instead of every DRS region every five minutes.

The probe, per configured region (every DRS region by default):

* a region whose scope holds cached instances is in use, without a call (DRS held them there);
* an opt-in region EC2 DescribeRegions (``AllRegions`` false, once per account per run, shared
  with the scope syncs: ``syncengine.aws.regions``) does not list is not in use;
* otherwise one DRS ``DescribeSourceServers`` with ``maxResults=1``: an answer means DRS is
  initialised there (in use); ``UninitializedAccountException`` means it never was; the auth
  failure of a disabled opt-in region (when DescribeRegions did not answer) means not enabled;
  any other failure keeps the region (it is synced, and fails or succeeds visibly there).

Between probes a region stays while its scope holds cached instances, whatever the probe said,
so no region's records are reconciled away because a probe failed or DRS said no. An account
whose probe learned nothing (its role cannot be assumed, every call failed) keeps its last probe,
or without one every configured region, as before. Only the full sync probes (under its lease);
scoped syncs and refresh workers read the stored probe. The full sync also deletes the probe of an
account the target-accounts table no longer lists as active (removed or inactive): re-added, it is
probed again.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

import anyio

from syncengine.aws.clients import AwsClients, drs_regions, partition_of
from syncengine.aws.regions import EnabledRegions, is_disabled_region_error
from syncengine.core.concurrency import gather
from syncengine.core.config import SyncSettings
from syncengine.core.errors import AwsError
from syncengine.core.logging import get_logger
from syncengine.core.models import AccountTarget, ScopeStatus
from syncengine.core.retry import CallContext
from syncengine.dynamodb.seam import Dynamo
from syncengine.tables.status import AccountRegions, StatusStore

log = get_logger(__name__)

UNINITIALIZED_CODE = "UninitializedAccountException"
PROBE_OPERATION = "drs:DescribeSourceServers"


class Probed(Enum):
    IN_USE = "in use"
    NOT_IN_USE = "not in use"
    FAILED = "failed"


@dataclass(frozen=True)
class KnownRegions:
    """The stored probes by account, and the regions where each account's scopes hold cached
    instances (``instanceCount > 0`` at their last whole-scope sync, or a targeted sync since)."""

    probes: Mapping[str, AccountRegions]
    cached: Mapping[str, frozenset[str]]


async def read_known(dynamo: Dynamo, settings: SyncSettings) -> KnownRegions | None:
    """The stored probes and cached regions (two Queries of the status table, at once); None when
    they cannot be read (logged): the configured regions apply then, dropping none."""
    store = StatusStore(dynamo, settings.tables.status)
    try:
        probes, statuses = await gather(store.account_regions, store.scope_statuses)
    except AwsError as exc:
        log.warning("region_probes_unreadable", error_type=exc.error_type, error=str(exc))
        return None
    cached: dict[str, set[str]] = {}
    for status in statuses:
        if status.instance_count > 0 or targeted_since_reconciled(status):
            cached.setdefault(status.account_id, set()).add(status.region)
    return KnownRegions(probes, {account: frozenset(regions) for account, regions in cached.items()})


def targeted_since_reconciled(status: ScopeStatus) -> bool:
    """A wave or event sync wrote records there after its last whole-scope sync (which its
    ``instanceCount`` describes): DRS is in use there now, whatever the last probe said, and the
    full sync must not remove the scope's records as unconfigured."""
    targeted = status.last_targeted_time
    return bool(targeted) and (not status.last_success_time or targeted > status.last_success_time)


def probe_spread(account_id: str, settings: SyncSettings) -> float:
    """How much sooner than ``region_probe_seconds`` this account's probe goes stale: up to half
    the interval, fixed per account, so accounts first probed by one sync are probed again over
    the next half interval, not all by one sync an hour later."""
    return settings.region_probe_seconds * (zlib.crc32(account_id.encode()) / 2**32) / 2


def configured_regions(settings: SyncSettings) -> tuple[str, ...]:
    """The regions of an account whose item lists none, before any probe: ``SYNC_REGIONS``, else
    every region where DRS exists (in the hub's partition)."""
    return settings.regions or tuple(sorted(drs_regions(partition_of(settings.home_region))))


def is_stale(probe: AccountRegions | None, candidates: Iterable[str], settings: SyncSettings, now: float) -> bool:
    """No probe yet, one older than ``region_probe_seconds`` (less the account's spread), or one
    that did not ask about a region configured since."""
    if probe is None:
        return True
    if now - probe.checked_at >= settings.region_probe_seconds - probe_spread(probe.account_id, settings):
        return True
    return not set(candidates) <= set(probe.checked)


def regions_in_use(probe: AccountRegions, candidates: Iterable[str], cached: frozenset[str]) -> tuple[str, ...]:
    """The configured regions to sync after ``probe``: found in use (or failed), holding cached
    instances, or not asked about (configured since: unknown, so synced)."""
    found, checked = set(probe.regions), set(probe.checked)
    return tuple(sorted(r for r in candidates if r in found or r in cached or r not in checked))


async def with_regions_in_use(
    aws: AwsClients,
    dynamo: Dynamo,
    settings: SyncSettings,
    targets: list[AccountTarget],
    known: KnownRegions,
    *,
    probe_with: EnabledRegions | None,
) -> list[AccountTarget]:
    """``targets`` with each item without ``regions`` narrowed to the regions in use (``known``:
    ``read_known``'s). With ``probe_with`` (the full sync's), stale probes are made again first
    and stored."""
    probes = dict(known.probes)
    now = time.time()
    candidates = configured_regions(settings)
    open_targets = [t for t in targets if not t.regions and not t.config_error]
    if probe_with is not None:
        stale = [t for t in open_targets if is_stale(probes.get(t.account_id), candidates, settings, now)]
        listed = {t.account_id for t in targets}
        gone = sorted(account for account in probes if account not in listed)
        made, _ = await gather(
            lambda: probe_accounts(aws, dynamo, settings, stale, candidates, known.cached, probe_with),
            lambda: forget_probes(dynamo, settings, gone),
        )
        probes.update(made)
    narrowed: dict[str, AccountTarget] = {}
    for target in open_targets:
        probe = probes.get(target.account_id)
        if probe is not None:
            cached = known.cached.get(target.account_id, frozenset())
            regions = regions_in_use(probe, candidates, cached)
            narrowed[target.account_id] = replace(target, regions=regions, regions_found=True)
    return [narrowed.get(t.account_id, t) for t in targets]


async def probe_accounts(
    aws: AwsClients,
    dynamo: Dynamo,
    settings: SyncSettings,
    targets: list[AccountTarget],
    candidates: tuple[str, ...],
    cached: Mapping[str, frozenset[str]],
    enabled: EnabledRegions,
) -> dict[str, AccountRegions]:
    """Probe these accounts in the ``candidates`` regions (at most ``max_concurrency`` accounts at
    once; every call under the run's limiter and retries) and store each probe that learned
    something."""
    store = StatusStore(dynamo, settings.tables.status)
    limiter = anyio.CapacityLimiter(settings.max_concurrency)
    found: dict[str, AccountRegions] = {}

    async def one(target: AccountTarget) -> None:
        async with limiter:
            probe = await probe_account(aws, enabled, target, candidates, cached.get(target.account_id, frozenset()))
            if probe is None:
                return
            found[target.account_id] = probe
            try:
                await store.put_account_regions(probe)
            except AwsError as exc:  # used this run all the same; the next full sync probes again
                log.warning("region_probe_not_stored", account_id=target.account_id, error_type=exc.error_type)

    async with anyio.create_task_group() as tg:
        for target in targets:
            tg.start_soon(one, target)
    return found


async def forget_probes(dynamo: Dynamo, settings: SyncSettings, account_ids: list[str]) -> None:
    """Delete the stored probes of accounts no longer configured (beside the probes, not after
    them); a failure leaves them to the next full sync (a stale row only costs its bytes on the
    probes' Query)."""
    if not account_ids:
        return
    try:
        await StatusStore(dynamo, settings.tables.status).remove_account_regions(account_ids)
    except AwsError as exc:
        log.warning("region_probes_not_removed", accounts=len(account_ids), error_type=exc.error_type)
        return
    log.info("region_probes_removed", account_ids=account_ids)


async def probe_account(
    aws: AwsClients,
    enabled: EnabledRegions,
    target: AccountTarget,
    candidates: Iterable[str],
    cached: frozenset[str],
) -> AccountRegions | None:
    """One account's probe (see the module docstring); None when it learned nothing."""
    candidates = tuple(candidates)
    try:
        await aws.credentials_for(target)
    except AwsError as exc:
        log.warning("region_probe_failed", account_id=target.account_id, error_type=exc.error_type, error=str(exc))
        return None
    answers: dict[str, Probed] = {}

    async def one(region: str) -> None:
        answers[region] = await probe_region(aws, enabled, target, region, cached)

    async with anyio.create_task_group() as tg:
        for region in candidates:
            tg.start_soon(one, region)
    failed = tuple(sorted(r for r, answer in answers.items() if answer is Probed.FAILED))
    if candidates and len(failed) == len(candidates):
        log.warning("region_probe_failed", account_id=target.account_id, error_type="EveryRegionFailed")
        return None
    in_use = tuple(sorted(r for r, answer in answers.items() if answer is not Probed.NOT_IN_USE))
    log.info("regions_probed", account_id=target.account_id, in_use=list(in_use), failed=list(failed))
    return AccountRegions(target.account_id, in_use, tuple(sorted(candidates)), failed, time.time())


async def probe_region(
    aws: AwsClients, enabled: EnabledRegions, target: AccountTarget, region: str, cached: frozenset[str]
) -> Probed:
    """Whether DRS is in use in one region of the account: at most one call."""
    if region in cached:
        return Probed.IN_USE
    try:
        if await enabled.is_enabled(target, region) is False:
            return Probed.NOT_IN_USE
        drs = await aws.client("drs", region, target)
        context = CallContext(PROBE_OPERATION, target.account_id, region)
        await aws.call(drs, "describe_source_servers", context, filters={}, maxResults=1)
    except AwsError as exc:
        disabled = is_disabled_region_error(exc, region) and enabled.listed(target.account_id, region) is None
        if exc.code == UNINITIALIZED_CODE or disabled:
            # Nothing of this account will be synced here: its client handle goes now.
            await aws.release(("drs",), region, target)
            return Probed.NOT_IN_USE
        log.warning("region_probe_call_failed", account_id=target.account_id, region=region, error_type=exc.error_type)
        return Probed.FAILED
    return Probed.IN_USE
