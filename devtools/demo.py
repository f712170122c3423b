"""``make demo``: a full sync of a simulated estate on an embedded DynamoDB.

Starts the simulator (DRS, EC2 and STS on loopback) and an embedded DynamoDB, creates the tables
from cfn/database-stack.yaml, seeds target accounts and some execution history, runs a cold full
sync with a progress bar, a second (steady-state) sync, and shows a summary and a sample cache
read, then one event-driven refresh through a local SQS queue (devtools.event_demo). Nothing
reaches AWS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from devtools.localdb import embedded_dynamodb
from devtools.seed import execution_items, put_items, target_account_items
from devtools.tables import create_tables
from syncengine.cli.progress import errors_table, make_progress, report_table
from syncengine.core.config import SyncSettings, TableNames
from syncengine.core.logging import configure_logging
from syncengine.core.models import RunStatus
from syncengine.sync.engine import get_cached_records, get_sync_status, open_runtime, sync_all

DEMO_ENVIRONMENT = {
    # The demo's own fake hub credentials: real ones are never used, not even against loopback.
    "AWS_ACCESS_KEY_ID": "AKIADEMOHUBACCESSKEY",
    "AWS_SECRET_ACCESS_KEY": "demo-secret-access-key",
    # Any client without an explicit endpoint fails fast on a closed loopback port.
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def register(subparsers: Any) -> None:
    """Add ``demo`` to the ``syncengine`` command."""
    demo = subparsers.add_parser("demo", help="full sync of a simulated estate on an embedded DynamoDB")
    demo.add_argument("--accounts", type=int, default=8)
    demo.add_argument("--regions", default="us-east-1,us-west-2,eu-west-1")
    demo.add_argument("--instances-per-scope", type=int, default=100)
    demo.add_argument("--latency-ms", type=float, default=20.0)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--dynamodb",
        choices=("auto", "moto", "dynalite"),
        default="auto",
        help="embedded DynamoDB: dynalite when installed (closest to DynamoDB's per-request cost; moto "
        "answers index queries by scanning the table), else moto",
    )
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from devtools.simulator import EstateConfig, SimulatorThread

    os.environ.update(DEMO_ENVIRONMENT)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    configure_logging(level="WARNING")
    console = Console()
    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    config = EstateConfig(
        accounts=args.accounts,
        regions=regions,
        instances_per_scope=args.instances_per_scope,
        seed=args.seed,
        # One scope where DRS was never initialised: an empty, successful scope, not an error.
        uninitialized_scopes=(f"1#{regions[-1]}",) if args.accounts > 1 else (),
    )
    console.rule("[bold]Recovery Instance Sync demo")
    started = time.perf_counter()
    with SimulatorThread(config) as sim, embedded_dynamodb(prefer=args.dynamodb) as local:
        console.print(
            f"simulated estate: {len(sim.estate.accounts)} accounts x {len(regions)} regions, "
            f"{sim.estate.total_recovery_instances()} recovery instances at {sim.endpoint_url} "
            f"({args.latency_ms:.0f} ms latency per call)"
        )
        console.print(f"embedded DynamoDB: {local.backend} at {local.endpoint_url}")
        sim.set_faults(latencyMs=args.latency_ms)
        settings = SyncSettings(
            tables=TableNames.for_project("demo", "local"),
            home_region=regions[0],
            regions=regions,
            endpoint_urls=(
                ("drs", sim.endpoint_url),
                ("dynamodb", local.endpoint_url),
                ("ec2", sim.endpoint_url),
                ("sts", sim.endpoint_url),
            ),
        )
        asyncio.run(_prepare(settings, sim, local.endpoint_url, console))
        console.print(f"setup took {time.perf_counter() - started:.1f} s\n")

        with make_progress(console) as progress:
            cold = asyncio.run(sync_all(settings, progress=progress))
        console.print(report_table(cold, title="Cold full sync"))
        table = errors_table(cold)
        if table is not None:
            console.print(table)

        steady = asyncio.run(sync_all(settings))
        console.print(report_table(steady, title="Second sync (nothing changed in DRS)"))
        asyncio.run(_sample_read(settings, sim, console))
        from devtools.event_demo import run_event_refresh  # issue 14: one event-driven refresh

        refreshed = run_event_refresh(settings, sim, console)
    ok = cold.status is RunStatus.SUCCESS and steady.status is RunStatus.SUCCESS and refreshed
    console.print("[green]demo finished[/green]" if ok else "[red]demo finished with failed scopes[/red]")
    return 0 if ok else 1


async def _prepare(settings: SyncSettings, sim: object, endpoint_url: str, console: Console) -> None:
    estate = sim.estate  # type: ignore[attr-defined]
    await create_tables(settings.tables, endpoint_url=endpoint_url, region=settings.home_region)
    accounts = [account.to_json() for account in estate.accounts]
    jobs = [
        {**job, "accountId": account["accountId"], "region": region}
        for account in accounts
        for region in account["regions"]
        for job in estate.jobs(account["accountId"], region)
        if job.get("type") == "LAUNCH"
    ]
    async with open_runtime(settings) as rt:
        await put_items(rt.dynamo, settings.tables.target_accounts, target_account_items(accounts))
        # Half of the launch jobs belong to recorded executions; the rest were launched by hand.
        executions = execution_items(jobs[::2])
        await put_items(rt.dynamo, settings.tables.execution_history, executions)
    console.print(f"seeded {len(accounts)} target accounts and {len(executions)} executions")


async def _sample_read(settings: SyncSettings, sim: object, console: Console) -> None:
    estate = sim.estate  # type: ignore[attr-defined]
    hub = estate.hub_account_id
    servers = [s["sourceServerID"] for s in estate.source_servers(hub, settings.regions[0])][:5]
    started = time.perf_counter()
    records = await get_cached_records(settings, servers)
    elapsed_ms = (time.perf_counter() - started) * 1000
    table = Table(title=f"Sample cache read: {len(servers)} servers in {elapsed_ms:.1f} ms", header_style="bold")
    for column in ("sourceServerId", "name", "recoveryInstanceId", "state", "privateIp", "sourceExecutionId"):
        table.add_column(column)
    for record in records:
        table.add_row(
            record["sourceServerId"],
            record.get("sourceServerName", "-"),
            record["recoveryInstanceId"],
            record["ec2InstanceState"],
            record.get("privateIp", "-"),
            record.get("sourceExecutionId", "-"),
        )
    console.print(table)
    status = await get_sync_status(settings)
    console.print(
        f"status endpoint would answer: [bold]{status.status.value}[/bold], {len(status.scopes)} scopes tracked"
    )
