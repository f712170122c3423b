"""Which accounts and regions to sync: the target-accounts table, plus the current account."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from syncengine.aws.clients import AwsClients, drs_regions, partition_of, role_arn_for
from syncengine.aws.regions import EnabledRegions
from syncengine.core.concurrency import gather
from syncengine.core.config import SyncSettings
from syncengine.core.errors import AwsError, InvalidRequestError
from syncengine.core.logging import get_logger
from syncengine.core.models import AccountTarget, Scope
from syncengine.dynamodb.seam import BATCH_GET_MAX, Dynamo, chunked, to_item
from syncengine.tables.region_discovery import KnownRegions, configured_regions, read_known, with_regions_in_use
from syncengine.tables.status import StatusStore

log = get_logger(__name__)

# [0-9], not \d (which admits other scripts' digits), and fullmatch, not $ (which admits a trailing newline).
ACCOUNT_ID_PATTERN = re.compile(r"[0-9]{12}")
ACTIVE = "active"


def validate_account_id(account_id: Any) -> str:
    if not isinstance(account_id, str) or not ACCOUNT_ID_PATTERN.fullmatch(account_id):
        raise InvalidRequestError(f"accountId must be a 12-digit AWS account id, got {account_id!r}.")
    return account_id


# The DRS model's patterns, anchored whole (fullmatch) and ASCII-only.
SOURCE_SERVER_ID_PATTERN = re.compile(r"s-[0-9a-zA-Z]{17}", re.ASCII)
RECOVERY_INSTANCE_ID_PATTERN = re.compile(r"i-[0-9a-fA-F]{8,17}", re.ASCII)


def _validate_id(value: Any, pattern: re.Pattern[str], what: str, example: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidRequestError(f"{what} must look like {example}, got {value!r}.")
    return value


def validate_source_server_id(value: Any) -> str:
    return _validate_id(value, SOURCE_SERVER_ID_PATTERN, "a source server id", "s-0123456789abcdef0")


def validate_recovery_instance_id(value: Any) -> str:
    return _validate_id(value, RECOVERY_INSTANCE_ID_PATTERN, "a recovery instance id", "i-0123456789abcdef0")


def validate_region(region: Any) -> str:
    if not isinstance(region, str) or region not in drs_regions():
        raise InvalidRequestError(f"region must be a region where AWS DRS is available, got {region!r}.")
    return region


def role_name_of(item: Mapping[str, Any], default: str) -> str:
    """``roleArn``'s last segment, else ``assumeRoleName``, else ``crossAccountRoleArn``'s."""
    for key in ("roleArn", "assumeRoleName", "crossAccountRoleArn"):
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().rsplit("/", 1)[-1]
    return default


def item_regions(raw: Any) -> tuple[tuple[str, ...], str | None]:
    """An item's ``regions``: (the DRS regions it names, None) when valid, else (the DRS regions
    it still names, which may be none, and a sentence saying what is wrong)."""
    if raw is None or raw == [] or raw == ():
        return (), None
    if isinstance(raw, str):
        named = tuple(r for r in re.split(r"[\s,]+", raw) if r in drs_regions())
        return named, f"regions must be a list of region names, got the string {raw[:60]!r}."
    if not isinstance(raw, list | tuple | set | frozenset):
        return (), f"regions must be a list of region names, got {type(raw).__name__}."
    values = sorted(raw, key=str) if isinstance(raw, set | frozenset) else list(raw)
    unknown = [v for v in values if not isinstance(v, str) or v not in drs_regions()]
    named = tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v in drs_regions()))
    if unknown:
        shown = ", ".join(repr(v)[:40] for v in unknown[:5])
        return named, f"regions names what is not a region where AWS DRS is available: {shown}."
    return named, None


def target_from_item(item: Mapping[str, Any], settings: SyncSettings, current_account_id: str | None) -> AccountTarget:
    account_id = str(item["accountId"])
    # Own credentials (no AssumeRole) only for the caller's own account: an item's
    # isCurrentAccount flag naming another account must not turn its sync into one of the hub.
    is_current = account_id == current_account_id
    if item.get("isCurrentAccount") and not is_current:
        log.warning("is_current_account_ignored", account_id=account_id, reason="not the caller's account")
    regions, config_error = item_regions(item.get("regions"))
    if config_error:
        log.warning("target_account_invalid", account_id=account_id, error=config_error)
    external_id = item.get("externalId")
    return AccountTarget(
        account_id=account_id,
        account_name=str(item.get("accountName") or ""),
        role_arn=None
        if is_current
        else role_arn_for(
            account_id, role_name_of(item, settings.default_role_name), partition_of(settings.home_region)
        ),
        external_id=str(external_id) if external_id else None,
        regions=regions,
        is_current_account=is_current,
        config_error=config_error,
    )


def targets_from_items(
    items: Iterable[Mapping[str, Any]], settings: SyncSettings, current_account_id: str | None
) -> list[AccountTarget]:
    targets: dict[str, AccountTarget] = {}
    for item in items:
        account_id = str(item.get("accountId", ""))
        if not ACCOUNT_ID_PATTERN.fullmatch(account_id):
            log.warning("target_account_skipped", account_id=account_id, reason="not a 12-digit account id")
            continue
        if str(item.get("status", ACTIVE)).lower() != ACTIVE:
            continue
        targets[account_id] = target_from_item(item, settings, current_account_id)
    if settings.include_current_account and current_account_id and current_account_id not in targets:
        targets[current_account_id] = AccountTarget(
            account_id=current_account_id, account_name="current", is_current_account=True
        )
    return sorted(targets.values(), key=lambda t: t.account_id)


async def load_targets(
    aws: AwsClients,
    dynamo: Dynamo,
    settings: SyncSettings,
    *,
    probe_with: EnabledRegions | None = None,
    stored_probes: bool = True,
) -> list[AccountTarget]:
    """The active targets. The table's scan and STS's GetCallerIdentity run at once (the caller's
    account id is needed either way: to add the current account, and to use our own credentials,
    no AssumeRole, for an item that names it); both are on every sync's critical path. Beside them
    is read where DRS is in use, for items without ``regions``: the orchestration's region-status
    table when configured (``in_use_regions``), else our stored region probes
    (``syncengine.tables.region_discovery``), which the full sync passes ``probe_with`` (its
    ``EnabledRegions``) to make again when stale; ``stored_probes`` False skips them (every
    configured region)."""

    async def scan() -> list[dict[str, Any]]:
        items = await dynamo.scan_all(settings.tables.target_accounts)
        drs_regions()  # botocore's endpoint data (loaded once) loads while STS answers
        return items

    async def in_use() -> dict[str, tuple[str, ...]] | KnownRegions | None:
        if settings.drs_region_status_table:
            return await in_use_regions(dynamo, settings)
        return await read_known(dynamo, settings) if stored_probes else None

    items, current, in_use_by_account = await gather(scan, aws.current_account_id, in_use)
    targets = targets_from_items(items, settings, current)
    if isinstance(in_use_by_account, KnownRegions):
        return await with_regions_in_use(aws, dynamo, settings, targets, in_use_by_account, probe_with=probe_with)
    if not in_use_by_account:
        return targets
    shared = in_use_by_account.get("", ())
    return [
        t if t.regions else replace(t, regions=tuple(sorted({*shared, *in_use_by_account.get(t.account_id, ())})))
        for t in targets
    ]


async def in_use_regions(dynamo: Dynamo, settings: SyncSettings) -> dict[str, tuple[str, ...]]:
    """Where DRS is in use, for accounts whose item lists no regions: {"": regions}, the regions
    the orchestration's region-status table lists with ``serverCount > 0`` (as its own
    ``get_active_regions`` reads it: lambda/shared/active_region_filter.py), and per account the
    regions its scopes held instances in at their last sync (our status table). The second part
    keeps a region synced while it holds recovery instances: the orchestration keys that table by
    region alone, so the last account it wrote decides a region's ``serverCount`` (its
    handle_sync_source_server_inventory), and a region must not be dropped, its records deleted,
    because another account has no servers there.

    Empty when the table is not configured, is empty, or cannot be read (logged): the configured
    regions apply then, as before."""
    table = settings.drs_region_status_table
    if not table:
        return {}
    try:
        rows = await dynamo.scan_all(
            table,
            ProjectionExpression="#region, #count",
            FilterExpression="#count > :zero",
            ExpressionAttributeNames={"#region": "region", "#count": "serverCount"},
            ExpressionAttributeValues={":zero": {"N": "0"}},
        )
    except AwsError as exc:
        log.warning("region_status_unreadable", table=table, error_type=exc.error_type, error=str(exc))
        return {}
    known = drs_regions(partition_of(settings.home_region))
    listed = tuple(sorted({str(r["region"]) for r in rows if str(r.get("region")) in known}))
    if not listed:
        return {}
    by_account: dict[str, set[str]] = {"": set(listed)}
    try:
        for status in await StatusStore(dynamo, settings.tables.status).scope_statuses():
            if status.instance_count > 0 and status.region in known:
                by_account.setdefault(status.account_id, set()).add(status.region)
    except AwsError as exc:
        # Without it a region could be dropped whose records are still cached: use every
        # configured region this time instead.
        log.warning("scope_status_unreadable", error_type=exc.error_type, error=str(exc))
        return {}
    return {account: tuple(sorted(regions)) for account, regions in by_account.items()}


def regions_for(target: AccountTarget, settings: SyncSettings) -> tuple[str, ...]:
    """The item's regions (or those found in use, possibly none), else the configured ones, else
    every region where DRS exists (in the hub's partition)."""
    if target.regions_found:
        return target.regions
    return target.regions or configured_regions(settings)


def plan_scopes(
    targets: Iterable[AccountTarget],
    settings: SyncSettings,
    *,
    account_id: str | None = None,
    region: str | None = None,
) -> list[tuple[Scope, AccountTarget]]:
    scopes: list[tuple[Scope, AccountTarget]] = []
    for target in targets:
        if account_id and target.account_id != account_id:
            continue
        for scope_region in regions_for(target, settings):
            if region and scope_region != region:
                continue
            scopes.append((Scope(target.account_id, scope_region), target))
    return scopes


async def targets_by_id(
    aws: AwsClients, dynamo: Dynamo, settings: SyncSettings, account_ids: Sequence[str]
) -> dict[str, AccountTarget]:
    """These accounts' targets from their target-accounts items (BatchGetItem), read as a sync
    reads them. An account without an item is the current account (own credentials) or gets the
    default role name."""
    items: dict[str, dict[str, Any]] = {}
    for batch in chunked(account_ids, BATCH_GET_MAX):
        keys = [to_item({"accountId": a}) for a in batch]
        for item in await dynamo.batch_get(settings.tables.target_accounts, keys):
            items[str(item["accountId"])] = item
    current = await aws.current_account_id()
    targets: dict[str, AccountTarget] = {}
    for account_id in account_ids:
        item = items.get(account_id)
        if item is None:
            if account_id != current:
                log.warning("terminate_account_not_configured", account_id=account_id)
            item = {"accountId": account_id}
        targets[account_id] = target_from_item(item, settings, current)
    return targets
