"""The EventBridge events AWS would emit for what the simulator changes, recorded so tests and
benchmarks can feed them to the refresh function (``Estate.events()``, ``GET /_simulator/events``).

Shapes follow the AWS documentation:
- ``aws.drs`` ``DRS Source Server Launch Result`` (``resources``: the source server's ARN;
  ``detail``: ``state``, ``job-id``), https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-drs.html
  (DRS sends it when a launch finishes, after EC2 already reports the instance running);
- ``aws.ec2`` ``EC2 Instance State-change Notification`` (``resources``: the instance's ARN;
  ``detail``: ``instance-id``, ``state``),
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-instance-state-changes.html.
Real EC2 also sends the intermediate ``pending`` and ``shutting-down`` states; the simulator
records the final ``running`` / ``stopped`` / ``terminated`` only (one event per change).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from typing import Any

from .regions import partition_of

LAUNCH_SUCCEEDED = "RECOVERY_LAUNCH_SUCCEEDED"
# Enough for any test or benchmark between two drains; older events fall off.
MAX_RECORDED_EVENTS = 100_000


def _event_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _envelope(source: str, detail_type: str, account_id: str, region: str, when: float) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),  # not from the estate's RNG: events must not change the estate's draws
        "detail-type": detail_type,
        "source": source,
        "account": account_id,
        "time": _event_time(when),
        "region": region,
    }


def launch_result(
    account_id: str, region: str, source_server_id: str, job_id: str, when: float, state: str = LAUNCH_SUCCEEDED
) -> dict[str, Any]:
    event = _envelope("aws.drs", "DRS Source Server Launch Result", account_id, region, when)
    event["resources"] = [f"arn:{partition_of(region)}:drs:{region}:{account_id}:source-server/{source_server_id}"]
    event["detail"] = {"state": state, "job-id": job_id}
    return event


def ec2_state_change(account_id: str, region: str, instance_id: str, state: str, when: float) -> dict[str, Any]:
    event = _envelope("aws.ec2", "EC2 Instance State-change Notification", account_id, region, when)
    event["resources"] = [f"arn:{partition_of(region)}:ec2:{region}:{account_id}:instance/{instance_id}"]
    event["detail"] = {"instance-id": instance_id, "state": state}
    return event


class EventLog:
    """Recorded events in order; safe across the server thread and test threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDED_EVENTS)

    def record(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def drain(self) -> list[dict[str, Any]]:
        """The recorded events, forgotten once returned (each is handed out once)."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
            return events
