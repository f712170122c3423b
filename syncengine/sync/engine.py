"""The engine's public API: sync everything, a scope or some servers; read the status and cache.

How it is arranged (each module one concern, no import cycle):

- ``syncengine.runtime``: what a run works with (clients, limiters, stores, deadline, cleanup);
- ``syncengine.sync.pipeline``: one scope's sync (lease, discover, build, write, reconcile, status);
- ``syncengine.sync.run``: one run (plan the scopes once, sync them, finish the run);
- ``syncengine.reads``: the read use cases, which open a runtime and nothing of the sync.

Every scope returns a ``ScopeResult``; one failing scope never cancels another. A scope's cache
is reconciled only after its discovery and writes succeeded, so a throttled or unreachable
region never loses cached data. Synchronous callers (Lambda handlers) run these functions with
``syncengine.core.resident.run_blocking``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import aioboto3

from syncengine.core.config import SyncSettings
from syncengine.core.errors import InvalidRequestError, SyncEngineError
from syncengine.core.models import AccountTarget, Scope, SyncReport
from syncengine.core.retry import CallContext
from syncengine.reads import get_cached_records, get_records_by_execution, get_sync_status
from syncengine.runtime import Runtime, SyncProgress, deadline_at, deadline_scope, open_runtime
from syncengine.sync.execution_sync import SyncExecutions
from syncengine.sync.run import RunRequest, require_configured_scope, run, setup_deadline_report
from syncengine.tables.accounts import (
    target_from_item,
    targets_by_id,
    validate_account_id,
    validate_region,
    validate_source_server_id,
)

EC2_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}", re.ASCII)


async def sync_all(
    settings: SyncSettings,
    *,
    account_id: str | None = None,
    region: str | None = None,
    progress: SyncProgress | None = None,
    session: aioboto3.Session | None = None,
) -> SyncReport:
    """Sync every account and region (a full sync, holding the full-sync lease), or only those
    matching ``account_id`` and/or ``region`` (a scoped sync, which takes scope leases only).

    Raises ``SyncInProgressError`` when another full sync holds the lease.
    """
    if account_id is not None:
        validate_account_id(account_id)
    if region is not None:
        validate_region(region)
    full = account_id is None and region is None
    # The deadline counts from here: the runtime's setup and the scope's check are inside it, so
    # an API request (setup, run and its shielded cleanup) fits API Gateway's limit.
    ends_at = deadline_at(settings)
    request = RunRequest(full=full, account_id=account_id, region=region, progress=progress, deadline_at=ends_at)
    async with contextlib.AsyncExitStack() as stack:
        with deadline_scope(settings, at=ends_at) as setup:
            rt = await stack.enter_async_context(open_runtime(settings, session=session))
            if full and settings.fanout != "off":
                from syncengine.sync.fanout import start_fanout

                if (fanned_out := await start_fanout(rt)) is not None:
                    return fanned_out
            targets = None if full else await require_configured_scope(rt, account_id, region)
        if setup.cancelled_caught:
            return setup_deadline_report(account_id, region)
        return await run(rt, request, targets=targets)
    raise AssertionError("unreachable")  # pragma: no cover (the stack's body always returns)


async def sync_scope(
    settings: SyncSettings,
    account_id: str,
    region: str,
    server_ids: Iterable[str] | None = None,
    *,
    account: Mapping[str, Any] | None = None,
    session: aioboto3.Session | None = None,
) -> SyncReport:
    """Sync one account/region; with ``server_ids`` only those servers (a wave's), and
    reconciliation then touches only those servers' records.

    ``account``: how to reach the account, as a target-accounts item or the orchestration's
    ``accountContext`` (``accountId``, ``roleArn`` or ``assumeRoleName``, ``externalId``) reads;
    the scope then need not be configured. Without it the scope must be configured."""
    validate_account_id(account_id)
    validate_region(region)
    ids = None if server_ids is None else [validate_source_server_id(sid) for sid in dict.fromkeys(server_ids)]
    ends_at = deadline_at(settings)
    request = RunRequest(full=False, account_id=account_id, region=region, server_ids=ids, deadline_at=ends_at)
    async with contextlib.AsyncExitStack() as stack:
        with deadline_scope(settings, at=ends_at) as setup:
            rt = await stack.enter_async_context(open_runtime(settings, session=session))
            targets = await _scope_targets(rt, account_id, region, account)
        if setup.cancelled_caught:
            return setup_deadline_report(account_id, region)
        return await run(rt, request, targets=targets)
    raise AssertionError("unreachable")  # pragma: no cover (the stack's body always returns)


async def _scope_targets(
    rt: Runtime, account_id: str, region: str, account: Mapping[str, Any] | None
) -> list[AccountTarget]:
    """The scope's account as ``account`` describes it, else as configured (which it must be)."""
    if account is None:
        return await require_configured_scope(rt, account_id, region)
    if str(account.get("accountId") or account_id) != account_id:
        raise InvalidRequestError("The account context names another account than accountId.")
    current = await rt.aws.current_account_id()
    return [target_from_item({**account, "accountId": account_id}, rt.settings, current)]


async def sync_and_read_scope(
    settings: SyncSettings,
    account_id: str,
    region: str,
    *,
    account: Mapping[str, Any] | None = None,
    session: aioboto3.Session | None = None,
) -> tuple[SyncReport, list[dict[str, Any]]]:
    """Sync one whole account/region, then read its cached records (the scope's recovery
    instances as DRS and EC2 just described them)."""
    validate_account_id(account_id)
    validate_region(region)
    async with open_runtime(settings, session=session) as rt:
        targets = await _scope_targets(rt, account_id, region, account)
        report = await run(rt, RunRequest(full=False, account_id=account_id, region=region), targets=targets)
        return report, await rt.store.scope_records(Scope(account_id, region))


async def describe_ec2_instance(
    settings: SyncSettings,
    instance_id: str,
    region: str,
    account_id: str,
    *,
    account: Mapping[str, Any] | None = None,
    session: aioboto3.Session | None = None,
) -> dict[str, Any] | None:
    """One EC2 instance's ``Name`` tag, IPs, type and launch time (None when EC2 does not know
    it), described in its account with the account's sync role."""
    validate_account_id(account_id)
    validate_region(region)
    if not isinstance(instance_id, str) or not EC2_INSTANCE_ID.fullmatch(instance_id):
        raise InvalidRequestError(f"ec2_instance_id must look like i-0123456789abcdef0, got {str(instance_id)[:40]!r}.")
    async with open_runtime(settings, session=session) as rt:
        if account is None:
            target = (await targets_by_id(rt.aws, rt.dynamo, settings, [account_id]))[account_id]
        else:
            (target,) = await _scope_targets(rt, account_id, region, account)
        ec2 = await rt.aws.client("ec2", region, target)
        context = CallContext("ec2:DescribeInstances", account_id, region)
        answer = await rt.aws.call(ec2, "describe_instances", context, InstanceIds=[instance_id])
    instances = [i for r in answer.get("Reservations") or [] for i in r.get("Instances") or []]
    if not instances:
        return None
    instance = instances[0]
    name = next((t.get("Value") for t in instance.get("Tags") or [] if t.get("Key") == "Name"), None)
    launched = instance.get("LaunchTime")
    return {
        "Name": name or f"Recovery instance {instance_id}",
        "PrivateIpAddress": instance.get("PrivateIpAddress"),
        "PublicIpAddress": instance.get("PublicIpAddress"),
        "InstanceType": instance.get("InstanceType", "unknown"),
        "LaunchTime": launched.isoformat() if hasattr(launched, "isoformat") else launched,
    }


async def sync_scope_in_runtime(
    rt: Runtime,
    scope: Scope,
    server_ids: list[str] | None,
    *,
    targets: list[AccountTarget],
    executions: SyncExecutions | None = None,
    record_run: bool = True,
    fanout_run: str | None = None,
) -> SyncReport:
    """``sync_scope`` inside an open runtime, with the targets (and the execution history's
    index, when given) already read: the refresh function syncs every scope of one batch in one
    runtime and reads them once. Same lease, same reconciliation. ``record_run`` False: not
    reported as the newest scoped sync (a fan-out slice of a full run); ``fanout_run``: the fan-out
    run it is a slice of (see ``RunRequest``)."""
    request = RunRequest(
        full=False,
        account_id=scope.account_id,
        region=scope.region,
        server_ids=server_ids,
        record_run=record_run,
        fanout_run=fanout_run,
    )
    return await run(rt, request, targets=targets, executions=executions)


__all__ = [
    "Runtime",
    "SyncEngineError",
    "SyncProgress",
    "describe_ec2_instance",
    "get_cached_records",
    "get_records_by_execution",
    "get_sync_status",
    "open_runtime",
    "sync_all",
    "sync_and_read_scope",
    "sync_scope",
    "sync_scope_in_runtime",
]
