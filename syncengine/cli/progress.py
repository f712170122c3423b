"""Progress reporting for the CLI: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from syncengine.core.models import ScopeResult, SyncReport


class RichProgress:
    """``SyncProgress`` as a rich bar: scopes done / total, instances found, failures."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]Syncing scopes"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[instances]} instances, {task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("sync", total=None, instances=0, failed=0)
        self.instances = 0
        self.failed = 0

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, total_scopes: int) -> None:
        self.progress.update(self.task, total=total_scopes)

    def advance(self, result: ScopeResult) -> None:
        self.instances += result.instances_found
        self.failed += 0 if result.ok or result.not_enabled else 1
        self.progress.update(self.task, advance=1, instances=self.instances, failed=self.failed)


class LineProgress:
    """``SyncProgress`` for pipes and CI logs: a line every tenth of the way."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stderr
        self.total = 0
        self.done = 0
        self.instances = 0
        self.next_report = 0

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def start(self, total_scopes: int) -> None:
        self.total = total_scopes
        self.stream.write(f"syncing {total_scopes} scopes\n")

    def advance(self, result: ScopeResult) -> None:
        self.done += 1
        self.instances += result.instances_found
        if not result.ok and result.error is not None:
            self.stream.write(
                f"  scope {result.scope.key} {result.outcome.value}: {result.error.error_type}: "
                f"{result.error.message}\n"
            )
        if self.done >= self.next_report or self.done == self.total:
            self.stream.write(f"  {self.done}/{self.total} scopes, {self.instances} instances\n")
            self.next_report = self.done + max(1, self.total // 10)


def make_progress(console: Console) -> RichProgress | LineProgress:
    return RichProgress(console) if console.is_terminal else LineProgress(console.file)


def report_table(report: SyncReport, *, title: str = "Sync summary") -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("status", report.status.value),
        ("scopes synced", str(report.scopes_synced)),
        ("scopes failed / skipped", str(report.scopes_failed)),
        ("scopes not enabled (opt-in regions)", str(report.scopes_not_enabled)),
        ("scopes removed from the configuration", str(report.scopes_removed)),
        ("instances found", str(report.instances_found)),
        ("records written", str(report.instances_updated)),
        ("records unchanged", str(report.instances_unchanged)),
        ("records deleted", str(report.instances_deleted)),
        ("duration", f"{report.duration_ms / 1000:.2f} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def errors_table(report: SyncReport, limit: int = 20) -> Table | None:
    if not report.errors:
        return None
    table = Table(title="Scope errors (cached data of these scopes was kept)", header_style="bold")
    for column in ("account", "region", "error", "message"):
        table.add_column(column)
    for error in report.errors[:limit]:
        table.add_row(error.account_id, error.region, error.error_type, error.message[:120])
    return table
