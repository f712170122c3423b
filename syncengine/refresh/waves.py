"""A completed wave -> the scopes and servers it launched -> one targeted sync of each.

The wave as the execution handler received it, completed where it lacks servers, account or
region by the execution item's wave and then by its protection groups (``syncengine.plans.check_existing``
resolves groups to scopes the same way for check-existing). Servers a wave names are synced
alone; a tag-selected group whose servers the wave does not list syncs its whole scope.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aioboto3

from syncengine.core.config import SyncSettings
from syncengine.core.errors import ExecutionNotFoundError, InvalidRequestError
from syncengine.core.logging import get_logger
from syncengine.core.models import Scope, SyncReport
from syncengine.plans.check_existing import (
    ScopeResolver,
    first_of,
    group_ids_of,
    selection_tags,
    string_list,
    validate_identifier,
    wave_server_ids,
)
from syncengine.runtime import Runtime, open_runtime
from syncengine.sync.engine import sync_scope
from syncengine.sync.execution_sync import refresh_quietly
from syncengine.sync.run import deadline_skipped_report
from syncengine.tables.accounts import SOURCE_SERVER_ID_PATTERN
from syncengine.tables.orchestration import load_execution_items, load_groups

log = get_logger(__name__)


@dataclass(frozen=True)
class WaveTarget:
    """One scope a wave touched; ``server_ids`` None means the whole scope (a tag-selected group
    whose servers the wave item does not list: the cache cannot know servers that just launched
    their first instance, so the whole account/region is synced instead)."""

    scope: Scope
    server_ids: tuple[str, ...] | None


@dataclass(frozen=True)
class WaveSyncResult:
    execution_id: str
    plan_id: str | None
    wave_number: int | None
    targets: tuple[WaveTarget, ...]
    reports: tuple[SyncReport, ...]

    @property
    def ok(self) -> bool:
        return all(r.scopes_failed == 0 and not r.errors for r in self.reports)

    def to_dict(self) -> dict[str, Any]:
        if not self.targets:
            status = "SKIPPED"
        elif self.ok:
            status = "SYNCED"
        elif any(r.scopes_synced for r in self.reports):
            status = "PARTIAL"
        else:
            status = "FAILED"
        return {
            "status": status,
            "executionId": self.execution_id,
            "planId": self.plan_id,
            "waveNumber": self.wave_number,
            "scopes": [
                {
                    "accountId": t.scope.account_id,
                    "region": t.scope.region,
                    "serverCount": None if t.server_ids is None else len(t.server_ids),
                }
                for t in self.targets
            ],
            "instancesUpdated": sum(r.instances_updated for r in self.reports),
            "instancesDeleted": sum(r.instances_deleted for r in self.reports),
            "errors": [e.to_dict() for r in self.reports for e in r.errors],
        }


def _wave_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _find_wave(
    items: Sequence[Mapping[str, Any]], plan_id: str | None, number: int | None
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(execution item, wave) for the wave numbered ``number`` ({} when absent)."""
    if number is None:
        return (items[0] if items else {}), {}
    for item in items:
        if plan_id and item.get("planId") not in (None, plan_id):
            continue
        for wave in item.get("waves") or []:
            if isinstance(wave, Mapping) and _wave_number(wave.get("waveNumber")) == number:
                return item, wave
    return (items[0] if items else {}), {}


def _present(value: Any) -> bool:
    return value not in (None, "", [], {})


async def resolve_wave_targets(
    rt: Runtime,
    execution_id: str,
    plan_id: str | None,
    wave: Mapping[str, Any] | None,
    wave_number: int | None,
) -> tuple[int | None, list[WaveTarget]]:
    """The scopes and servers a wave touched: from the wave dict, completed (when it lacks
    servers, account or region) by the execution item's wave, then by its protection groups."""
    given = {k: v for k, v in (wave or {}).items() if _present(v)}
    number = _wave_number(given.get("waveNumber", wave_number))
    execution: Mapping[str, Any] = {}
    if not (wave_server_ids(given) and given.get("region") and given.get("accountId")):
        describes_itself = bool(wave_server_ids(given) or group_ids_of(given))
        try:
            items = await load_execution_items(rt.dynamo, rt.settings.tables.execution_history, execution_id)
        except ExecutionNotFoundError:
            # A wave that names its servers or groups needs the execution item only to fill gaps.
            if not describes_itself:
                raise
            items = []
        execution, stored = _find_wave(items, plan_id, number)
        if not stored and not describes_itself:
            raise InvalidRequestError(f"Execution {execution_id!r} has no wave {number!r}.")
        given = {**stored, **given}
    groups_by_id = await load_groups(rt.dynamo, rt.settings.tables.protection_groups, group_ids_of(given))
    groups = [groups_by_id[gid] for gid in group_ids_of(given) if gid in groups_by_id]
    resolver = ScopeResolver(rt, fallback_account=first_of([execution], "accountId"), fallback_region=None)
    targets: dict[Scope, set[str] | None] = {}

    def add(scope: Scope, ids: Iterable[str] | None) -> None:
        current = targets.get(scope, set())
        targets[scope] = None if ids is None or current is None else current | set(ids)

    named = wave_server_ids(given)
    if named:
        # The wave lists what it launched: exactly those servers, in the wave's scope.
        add(await resolver.scope(given, *groups[:1]), named)
    else:
        for group in groups:
            scope = await resolver.scope(group, given)
            explicit = string_list(group.get("sourceServerIds"))
            if explicit:
                add(scope, explicit)
            elif selection_tags(group.get("serverSelectionTags")):
                add(scope, None)
    if any(not t.region for t in targets):
        raise InvalidRequestError(f"Wave {number!r} of execution {execution_id!r} names no region.")
    return number, [WaveTarget(s, None if ids is None else tuple(sorted(ids))) for s, ids in targets.items()]


async def sync_wave(
    settings: SyncSettings,
    execution_id: str,
    plan_id: str | None = None,
    *,
    wave: Mapping[str, Any] | None = None,
    wave_number: int | None = None,
    session: aioboto3.Session | None = None,
) -> WaveSyncResult:
    """Sync what one completed wave launched: its account/region, its servers only.

    Raises like ``sync_scope`` (and ``ExecutionNotFoundError`` when the wave has to be read from
    an execution that does not exist); the execution handler turns every failure into a count.
    ``settings.deadline_seconds`` bounds the whole wave, every target together: each target gets
    what is left, and targets it leaves no time for are reported skipped (``DeadlineExceeded``).
    """
    execution_id = validate_identifier("executionId", execution_id)
    ends_at = None if settings.deadline_seconds is None else time.monotonic() + settings.deadline_seconds
    async with open_runtime(settings, session=session) as rt:
        number, targets = await resolve_wave_targets(rt, execution_id, plan_id, wave, wave_number)
        # The execution read by key into the execution index, so the wave's instances are
        # attributed by their job at once (not at the index's next rebuild).
        await refresh_quietly(rt.dynamo, settings, execution_id)
    reports = []
    for target in targets:
        server_ids = target.server_ids
        if server_ids is not None:
            # The ids come from the orchestration's tables: skip a malformed one (with a warning)
            # rather than fail the whole wave's sync on it.
            valid = tuple(sid for sid in server_ids if SOURCE_SERVER_ID_PATTERN.fullmatch(str(sid)))
            if len(valid) != len(server_ids):
                log.warning(
                    "wave_server_ids_skipped",
                    execution_id=execution_id,
                    skipped=sorted(set(server_ids) - set(valid))[:20],
                )
            server_ids = valid
        # Sequential: a wave touches one scope in practice, and scopes of one account share
        # its rate limits.
        target_settings = settings
        if ends_at is not None:
            remaining = ends_at - time.monotonic()
            if remaining <= 0:
                reports.append(deadline_skipped_report(target.scope, "the wave sync's deadline passed first"))
                continue
            target_settings = settings.with_changes(deadline_seconds=remaining)
        reports.append(
            await sync_scope(target_settings, target.scope.account_id, target.scope.region, server_ids, session=session)
        )
    return WaveSyncResult(execution_id, plan_id, number, tuple(targets), tuple(reports))


__all__ = ["WaveSyncResult", "WaveTarget", "resolve_wave_targets", "sync_wave"]
