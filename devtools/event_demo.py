"""``make demo``'s event-driven refresh: after the sync, one recovery instance is terminated in the
simulator; its EC2 state-change event goes onto a work queue on moto's SQS, the local event
source mapping (``devtools.event_source``) hands it to the refresh function, and the cache drops
the record. Prints how long it took from the termination to the updated cache."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import boto3
from rich.console import Console

from devtools.event_source import EventSourcePoller, create_work_queue
from devtools.localdb import moto_server
from syncengine.core.config import SyncSettings
from syncengine.sync.engine import get_cached_records


def run_event_refresh(settings: SyncSettings, sim: Any, console: Console) -> bool:
    """One event-driven refresh through SQS; True when the cache followed the termination."""
    from handlers import dependencies
    from handlers.refresh import lambda_handler

    account, region = sim.estate.hub_account_id, settings.regions[0]
    victim = sorted(sim.estate.recovery_instances(account, region), key=lambda ri: ri["sourceServerID"])[0]
    server = victim["sourceServerID"]
    sim.events(drain=True)  # only this demo's event goes onto the queue
    dependencies.configure(settings=settings)
    try:
        with moto_server() as sqs_server:
            sqs = boto3.client("sqs", endpoint_url=sqs_server.endpoint_url, region_name=region)
            queue = create_work_queue(sqs, "demo-recovery-instance-work")
            started = time.perf_counter()
            sim.estate.terminate(victim["recoveryInstanceID"])
            for event in sim.events(drain=True):
                sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(event))
            outcomes = EventSourcePoller(sqs, queue, lambda_handler, batch_window_s=0.1).run_until_idle()
            elapsed_ms = (time.perf_counter() - started) * 1000
    finally:
        dependencies.reset()
    cached = asyncio.run(get_cached_records(settings, [server]))
    ok = not cached and all(not o.failed for o in outcomes)
    console.print(
        f"event-driven refresh: terminated {victim['recoveryInstanceID']} ({victim['ec2InstanceID']}, "
        f"server {server}); its EC2 event went through SQS to the refresh function in "
        f"{sum(len(o.message_ids) for o in outcomes)} message(s) and the cache "
        + ("[green]dropped its record[/green]" if ok else "[red]still holds its record[/red]")
        + f" {elapsed_ms:.0f} ms after the termination"
    )
    return ok
