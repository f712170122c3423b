"""Recovery plans and waves -> source servers -> cached recovery instances.

Answers the Recovery Plans page's question ("which of this plan's servers already have a
recovery instance?") from DynamoDB alone: the plan item, its protection groups (one
BatchGetItem), the cache's scope index for tag-selected groups, then BatchGetItem on the cache.
No DRS or EC2 call.

What a completed wave launched is resolved from the same items by ``syncengine.refresh.waves``.

Where a protection group's servers come from, in order:
1. the group's ``sourceServerIds``;
2. else the wave's ``serverIds``;
3. else the group's ``serverSelectionTags`` (a tag map), matched (every tag equal) against the
   cached ``sourceServerTags`` of the group's scope. A server without a recovery instance is not
   in the cache, but then it has no instance to report either.

A group's scope is its own ``accountId`` and ``region``; when it has no ``accountId`` the plan's
(or, for a wave, the execution's) ``accountId`` is used, and failing that the current account
(STS GetCallerIdentity, asked only in that case). A group without a ``region`` takes the wave's,
then the plan's, then the home region.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from syncengine.core import metrics as m
from syncengine.core.config import SyncSettings
from syncengine.core.errors import InvalidRequestError
from syncengine.core.logging import get_logger
from syncengine.core.models import Scope, utc_now_iso
from syncengine.runtime import Runtime, open_runtime
from syncengine.tables.orchestration import load_groups, load_plan
from syncengine.tables.records import confirmed_sync_time

if TYPE_CHECKING:  # pragma: no cover
    import aioboto3

log = get_logger(__name__)

# Plan and execution ids are UUIDs in practice; DynamoDB allows 2 KB keys. The bound keeps junk
# input (and its echo in error bodies) small.
MAX_IDENTIFIER_LENGTH = 256
# Cache misses are logged with a sample of ids, not all of them.
MISS_LOG_SAMPLE = 20
# Fields every entry of ``existingInstances`` carries (None when the cache does not know them).
ALWAYS_PRESENT_FIELDS = (
    "sourceServerId",
    "recoveryInstanceId",
    "ec2InstanceId",
    "ec2InstanceState",
    "sourceExecutionId",
    "sourcePlanName",
    "region",
    "accountId",
    "lastSyncTime",
)


def validate_identifier(name: str, value: Any) -> str:
    """A plan or execution id as a key value: a non-empty, bounded, encodable string."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"{name} must be a non-empty string.")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise InvalidRequestError(f"{name} must be at most {MAX_IDENTIFIER_LENGTH} characters long.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidRequestError(f"{name} must not contain control characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(f"{name} must be valid Unicode text.") from exc
    return value


# -- reading the orchestration's items ------------------------------------------------------------


def string_list(values: Any) -> list[str]:
    """A list attribute as non-empty strings (a lone string counts as a one-item list)."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple):
        return []
    return [str(v) for v in values if isinstance(v, str | int) and str(v)]


def group_ids_of(wave: Mapping[str, Any]) -> list[str]:
    """A wave's protection groups: ``protectionGroupId`` and/or ``protectionGroupIds``."""
    ids = string_list(wave.get("protectionGroupId")) + string_list(wave.get("protectionGroupIds"))
    return list(dict.fromkeys(ids))


def selection_tags(raw: Any) -> dict[str, str]:
    """``serverSelectionTags`` as a map. A list of ``{"Key", "Value"}`` pairs is accepted too:
    some groups were written in the EC2 tag shape."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items() if str(k)}
    tags: dict[str, str] = {}
    if isinstance(raw, list):
        for pair in raw:
            if isinstance(pair, Mapping):
                key = pair.get("Key", pair.get("key"))
                value = pair.get("Value", pair.get("value"))
                if key:
                    tags[str(key)] = "" if value is None else str(value)
    return tags


def tags_match(selection: Mapping[str, str], server_tags: Mapping[str, Any]) -> bool:
    """Every selection tag present with an equal value. An empty selection selects nothing."""
    return bool(selection) and all(str(server_tags.get(k, "\0")) == v for k, v in selection.items())


def wave_server_ids(wave: Mapping[str, Any]) -> list[str]:
    """Servers a wave names itself: ``serverStatuses[].sourceServerId``, ``serverIds``,
    ``sourceServerIds``."""
    ids = [
        str(status["sourceServerId"])
        for status in wave.get("serverStatuses") or []
        if isinstance(status, Mapping) and status.get("sourceServerId")
    ]
    ids += string_list(wave.get("serverIds")) + string_list(wave.get("sourceServerIds"))
    return list(dict.fromkeys(ids))


# -- scopes ---------------------------------------------------------------------------------------


class ScopeResolver:
    """Picks the scope of a group, asking STS for the current account at most once."""

    def __init__(self, rt: Runtime, *, fallback_account: str | None, fallback_region: str | None):
        self._rt = rt
        self._fallback_account = fallback_account
        self._fallback_region = fallback_region

    async def scope(self, *sources: Mapping[str, Any]) -> Scope:
        """The first ``accountId`` and ``region`` among ``sources``, then the fallbacks."""
        account = first_of(sources, "accountId") or self._fallback_account
        if not account:
            account = self._fallback_account = await self._rt.aws.current_account_id()
        region = first_of(sources, "region") or self._fallback_region or self._rt.settings.home_region
        return Scope(str(account), str(region))


def first_of(sources: Sequence[Mapping[str, Any]], key: str) -> str | None:
    for source in sources:
        value = source.get(key)
        if isinstance(value, str) and value:
            return value
    return None


# -- check existing instances ---------------------------------------------------------------------


@dataclass
class _PlanServers:
    # server id -> the scope of the group (or wave) that names it
    explicit: dict[str, Scope] = field(default_factory=dict)
    # scope -> the tag selections to match in it
    tagged: dict[Scope, list[dict[str, str]]] = field(default_factory=dict)

    def add(self, server_ids: Iterable[str], scope: Scope) -> None:
        for sid in server_ids:
            self.explicit.setdefault(sid, scope)


async def plan_servers(rt: Runtime, plan: Mapping[str, Any]) -> dict[str, Scope]:
    """Every source server of a plan with its scope (its protection group's account and region),
    in wave order, without duplicates."""
    waves = [w for w in plan.get("waves") or [] if isinstance(w, Mapping)]
    groups = await load_groups(
        rt.dynamo, rt.settings.tables.protection_groups, (gid for w in waves for gid in group_ids_of(w))
    )
    resolver = ScopeResolver(
        rt, fallback_account=first_of([plan], "accountId"), fallback_region=first_of([plan], "region")
    )
    selected = _PlanServers()
    for wave in waves:
        wave_ids = string_list(wave.get("serverIds"))
        group_ids = group_ids_of(wave)
        if not group_ids and wave_ids:
            selected.add(wave_ids, await resolver.scope(wave))
        for gid in group_ids:
            group = groups.get(gid, {})
            explicit = string_list(group.get("sourceServerIds")) or wave_ids
            tags = selection_tags(group.get("serverSelectionTags"))
            if explicit:
                selected.add(explicit, await resolver.scope(group, wave))
            elif tags:
                scope = await resolver.scope(group, wave)
                selected.tagged.setdefault(scope, []).append(tags)
    matched: dict[Scope, list[str]] = {}

    async def match(scope: Scope, selections: list[dict[str, str]]) -> None:
        cached = await rt.store.scope_server_tags(scope)
        matched[scope] = sorted(sid for sid, tags in cached.items() if any(tags_match(sel, tags) for sel in selections))

    async with anyio.create_task_group() as tg:
        for scope, selections in selected.tagged.items():
            tg.start_soon(match, scope, selections)
    for scope in selected.tagged:
        selected.add(matched.get(scope, []), scope)
    return selected.explicit


def unverified_server_ids(
    servers: Mapping[str, Scope],
    records: Sequence[Mapping[str, Any]],
    reconciled_at: Mapping[Scope, str],
    *,
    stale_after_seconds: float,
    now: datetime | None = None,
) -> list[str]:
    """The plan servers the cache cannot vouch for (API-CONTRACT.md: a cache miss).

    A server with a record is vouched for when a successful sync confirmed the record within
    ``stale_after_seconds`` (its ``lastSyncTime`` after ``confirmed_sync_time``); a server without
    one when its scope was reconciled by a successful full-scope sync within that time: then it
    simply has no recovery instance."""
    threshold = utc_now_iso((now or datetime.now(UTC)) - timedelta(seconds=stale_after_seconds))
    by_server = {str(r.get("sourceServerId")): r for r in records}
    unverified = []
    for server_id, scope in servers.items():
        record = by_server.get(server_id)
        confirmed = record.get("lastSyncTime") if record is not None else reconciled_at.get(scope)
        if not isinstance(confirmed, str) or confirmed < threshold:
            unverified.append(server_id)
    return unverified


def existing_instance(record: Mapping[str, Any]) -> dict[str, Any]:
    """A cached record as an entry of ``existingInstances``: the contract's always-present
    fields (None when unknown), then whatever else the cache knows."""
    entry: dict[str, Any] = {name: record.get(name) for name in ALWAYS_PRESENT_FIELDS}
    entry.update({k: v for k, v in record.items() if k not in entry})
    return entry


def existing_instances_body(
    plan_id: str, records: Sequence[Mapping[str, Any]], unverified: Sequence[str] = ()
) -> dict[str, Any]:
    """The 200 body of ``GET /recovery-plans/{planId}/check-existing-instances``."""
    return {
        "hasExistingInstances": bool(records),
        "instanceCount": len(records),
        "planId": plan_id,
        "existingInstances": [existing_instance(r) for r in records],
        "unverifiedServerIds": list(unverified),
    }


async def confirmed_records(
    rt: Runtime, records: Sequence[Mapping[str, Any]], scopes: Iterable[Scope]
) -> tuple[list[dict[str, Any]], dict[Scope, str]]:
    """The records with ``lastSyncTime`` meaning "last confirmed" (``records.confirmed_sync_time``),
    and when each scope (of ``scopes`` and of the records) was last reconciled."""
    record_scopes = [Scope(str(r.get("accountId", "")), str(r.get("region", ""))) for r in records]
    reconciled = await rt.status.scope_reconciled_times([*scopes, *record_scopes])
    confirmed = [{**r, "lastSyncTime": confirmed_sync_time(r, reconciled)} for r in records]
    return confirmed, reconciled


async def check_existing_instances(
    settings: SyncSettings, plan_id: str, *, session: aioboto3.Session | None = None
) -> dict[str, Any]:
    """Which of the plan's servers have a recovery instance, from the cache alone (and which
    servers the cache cannot vouch for: ``unverifiedServerIds``).

    Raises ``InvalidRequestError`` for a malformed id, ``RecoveryPlanNotFoundError`` for an
    unknown plan, and the engine's ``AwsError`` when DynamoDB fails.
    """
    plan_id = validate_identifier("planId", plan_id)
    started = time.monotonic()
    async with open_runtime(settings, session=session, read_only=True) as rt:
        plan = await load_plan(rt.dynamo, settings.tables.recovery_plans, plan_id)
        servers = await plan_servers(rt, plan)
        records, reconciled = await confirmed_records(rt, await rt.store.get_records(servers), set(servers.values()))
        unverified = unverified_server_ids(
            servers, records, reconciled, stale_after_seconds=settings.stale_after_seconds
        )
        _report_lookups(rt, plan_id, len(servers), len(records), unverified, int((time.monotonic() - started) * 1000))
    return existing_instances_body(plan_id, records, unverified)


def _report_lookups(
    rt: Runtime, plan_id: str, lookups: int, found: int, unverified: Sequence[str], latency_ms: int
) -> None:
    """Lookups and misses as metrics (the miss-rate alarm divides their sums), and one log line."""
    misses = len(unverified)
    miss_rate = 100.0 * misses / lookups if lookups else 0.0
    rt.metrics.emit(
        {
            m.CACHE_QUERY_LATENCY: latency_ms,
            m.CACHE_LOOKUPS: lookups,
            m.CACHE_HITS: lookups - misses,
            m.CACHE_MISSES: misses,
            m.CACHE_MISS_RATE: miss_rate,
        },
        planId=plan_id,
    )
    log.info(
        "check_existing_instances",
        plan_id=plan_id,
        servers=lookups,
        instances_found=found,
        cache_misses=misses,
        cache_miss_rate=round(miss_rate, 1),
        unverified_server_ids=list(unverified[:MISS_LOG_SAMPLE]),
        latency_ms=latency_ms,
    )


__all__ = [
    "check_existing_instances",
    "existing_instances_body",
    "plan_servers",
    "selection_tags",
    "tags_match",
    "unverified_server_ids",
    "validate_identifier",
    "wave_server_ids",
]
