"""``syncengine simulate``: serve a simulated estate until SIGINT/SIGTERM.

With ``--ready-file`` the endpoint is written as JSON once the port listens, so a benchmark or
a demo can start the simulator in another process and wait for that file instead of polling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .config import DEFAULT_REGIONS, DEFAULT_ROLE_NAME, EstateConfig
from .faults import FaultConfig
from .server import run_simulator


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="serve a simulated AWS estate (DRS, EC2, STS) on loopback",
        description="Serve a seeded, simulated AWS estate (DRS rest-json, EC2 and STS query/XML) "
        "on one HTTP port until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    parser.add_argument("--accounts", type=int, default=3, help="accounts including the hub (default 3)")
    parser.add_argument("--regions", default=",".join(DEFAULT_REGIONS), help="comma-separated regions of every account")
    parser.add_argument("--instances-per-scope", type=int, default=30, help="recovery instances per scope")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated estate")
    parser.add_argument("--role-name", default=DEFAULT_ROLE_NAME, help="role every account trusts")
    parser.add_argument("--uninitialized-fraction", type=float, default=0.0, help="fraction of scopes without DRS")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every AWS call")
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="probability a call is throttled")
    parser.add_argument("--tps-per-scope", type=float, default=0.0, help="token-bucket rate per account/region/service")
    parser.add_argument("--error-rate", type=float, default=0.0, help="probability of a 5xx")
    parser.add_argument("--ready-file", type=Path, help="write {endpointUrl, pid, hubAccountId} here when ready")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    try:
        config = EstateConfig(
            accounts=args.accounts,
            regions=regions,
            instances_per_scope=args.instances_per_scope,
            seed=args.seed,
            role_name=args.role_name,
            uninitialized_fraction=args.uninitialized_fraction,
        )
        faults = FaultConfig(
            latency_ms=args.latency_ms,
            throttle_rate=args.throttle_rate,
            tps_per_scope=args.tps_per_scope,
            error_rate=args.error_rate,
        )
    except ValueError as exc:
        print(f"syncengine simulate: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(config, faults, args.host, args.port, args.ready_file))
    finally:
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)


async def _serve(config: EstateConfig, faults: FaultConfig, host: str, port: int, ready_file: Path | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_simulator(config, faults, port=port, host=host) as simulator:
        estate = simulator.estate
        print(
            f"simulator listening on {simulator.endpoint_url}: {len(estate.accounts)} accounts, "
            f"{len(config.regions)} regions, {estate.total_recovery_instances()} recovery instances "
            f"(hub {estate.hub_account_id})",
            flush=True,
        )
        if ready_file is not None:
            _write_ready_file(ready_file, simulator.endpoint_url or "", estate.hub_account_id)
        await stop.wait()
    return 0


def _write_ready_file(path: Path, endpoint_url: str, hub_account_id: str) -> None:
    # Write then rename: a reader polling for the file never sees half of it.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"endpointUrl": endpoint_url, "pid": os.getpid(), "hubAccountId": hub_account_id}))
    tmp.replace(path)
