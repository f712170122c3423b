"""CLI subcommands ``sync`` and ``status``: the operator's commands (the dev tools register their own).

They print with rich, the ``cli`` extra (``pip install 'recovery-instance-sync[cli]'``; the dev
install has it). rich is imported when a command runs, never by the engine: the Lambda package
does not carry it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from syncengine.aws.sessions import CLI_CALLER
from syncengine.core.config import SyncSettings
from syncengine.core.errors import SyncEngineError
from syncengine.core.logging import configure_logging
from syncengine.core.models import RunStatus
from syncengine.sync.engine import get_sync_status, sync_all, sync_scope

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

CLI_EXTRA_MISSING = "syncengine: this command prints with rich: pip install 'recovery-instance-sync[cli]'"


def console(**options: Any) -> Console:
    """A rich console; a clear exit (not a traceback) when the ``cli`` extra is not installed."""
    try:
        from rich.console import Console
    except ModuleNotFoundError as exc:
        raise SystemExit(CLI_EXTRA_MISSING) from exc
    return Console(**options)


def register(subparsers: Any) -> None:
    sync = subparsers.add_parser("sync", help="sync the cache with DRS (all accounts and regions, or a scope)")
    sync.add_argument("--account-id", help="only this 12-digit account")
    sync.add_argument("--region", help="only this region")
    sync.add_argument(
        "--server-id",
        action="append",
        dest="server_ids",
        help="only these source servers (needs --account-id and --region); repeatable",
    )
    sync.add_argument("--json", action="store_true", help="print the report as JSON")
    sync.set_defaults(func=run_sync_command)

    status = subparsers.add_parser("status", help="show the last sync and per-scope status")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=run_status_command)


def run_sync_command(args: argparse.Namespace) -> int:
    configure_logging(json=args.json or None, level="WARNING")
    settings = SyncSettings.from_env(caller=CLI_CALLER)
    err = console(stderr=True)
    from syncengine.cli.progress import errors_table, make_progress, report_table

    try:
        if args.server_ids:
            if not (args.account_id and args.region):
                err.print("--server-id needs --account-id and --region")
                return 2
            report = asyncio.run(sync_scope(settings, args.account_id, args.region, args.server_ids))
        else:
            with make_progress(err) as progress:
                report = asyncio.run(
                    sync_all(settings, account_id=args.account_id, region=args.region, progress=progress)
                )
    except SyncEngineError as exc:
        if args.json:
            print(json.dumps({"error": exc.error_code, "message": str(exc)}))
        else:
            err.print(f"[red]{exc.error_code}[/red]: {exc}")
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        out = console()
        out.print(report_table(report))
        table = errors_table(report)
        if table is not None:
            out.print(table)
    return 0 if report.status is RunStatus.SUCCESS else 1


def run_status_command(args: argparse.Namespace) -> int:
    configure_logging(level="WARNING")
    settings = SyncSettings.from_env(caller=CLI_CALLER)
    try:
        status = asyncio.run(get_sync_status(settings))
    except SyncEngineError as exc:
        print(json.dumps({"error": exc.error_code, "message": str(exc)}), file=sys.stderr)
        return 1
    body = status.to_dict()
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    out = console()
    out.print(f"[bold]status[/bold] {body['status']}   last sync {body['lastSyncTime'] or '-'}")
    out.print(
        f"scopes synced {body['scopesSynced']}, failed {body['scopesFailed']}; "
        f"updated {body['instancesUpdated']}, unchanged {body['instancesUnchanged']}, "
        f"deleted {body['instancesDeleted']} in {body['durationMs']} ms"
    )
    for scope in body["scopes"]:
        error = f"  ({scope['lastError']})" if scope.get("lastError") else ""
        out.print(
            f"  {scope['accountId']} {scope['region']:<15} {scope['status']:<8} "
            f"{scope['instanceCount']:>6} instances{error}"
        )
    return 0
