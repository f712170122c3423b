"""Index of the orchestration's execution history (in memory; ``syncengine.tables.execution_index.table``
persists it).

Answers "which execution launched this recovery instance?" by three rules, in order, and says
which rule answered (the ``Attribution``):
1. the recovery instance's ``jobID`` equals a wave's ``jobId`` (``job``);
2. a wave's ``serverStatuses[].recoveryInstanceId`` names the recovery instance
   (``recoveryInstance``);
3. the most recent execution (by ``startTime``) with a wave in the same region listing the server
   (``inferred``: the execution planned the server, which proves nothing about who launched this
   instance; terminate never acts on it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from syncengine.core.models import Attribution

# Execution statuses of the orchestration that mean "still running" (the contract's list).
ACTIVE_STATUSES = frozenset(
    {"PENDING", "POLLING", "INITIATED", "LAUNCHING", "STARTED", "IN_PROGRESS", "RUNNING", "PAUSED", "CANCELLING"}
)


def is_active(item: Mapping[str, Any]) -> bool:
    """An execution item whose status says it is still running: the one rule behind terminate's
    refusal, the execution index's ``activeExecutions`` and the fan-out sweep's running scopes."""
    return str(item.get("status") or "").upper() in ACTIVE_STATUSES


@dataclass(frozen=True)
class ExecutionRef:
    execution_id: str
    plan_name: str | None
    start_time: float = 0.0


@dataclass(frozen=True)
class ExecutionMatch:
    """The execution of a recovery instance and how it was found."""

    ref: ExecutionRef
    attribution: Attribution

    @property
    def execution_id(self) -> str:
        return self.ref.execution_id

    @property
    def plan_name(self) -> str | None:
        return self.ref.plan_name


@dataclass
class ExecutionIndex:
    by_job: dict[str, ExecutionRef] = field(default_factory=dict)
    by_recovery_instance: dict[str, ExecutionRef] = field(default_factory=dict)
    by_server_region: dict[tuple[str, str], ExecutionRef] = field(default_factory=dict)

    @classmethod
    def from_items(cls, items: Iterable[Mapping[str, Any]]) -> ExecutionIndex:
        index = cls()
        for item in items:
            execution_id = item.get("executionId")
            if not execution_id:
                continue
            ref = ExecutionRef(str(execution_id), item.get("planName") or None, _number(item.get("startTime")))
            for wave in item.get("waves") or []:
                if not isinstance(wave, Mapping):
                    continue
                region = str(wave.get("region") or "")
                job_id = wave.get("jobId")
                if job_id:
                    index._keep_latest(index.by_job, str(job_id), ref)
                for status in wave.get("serverStatuses") or []:
                    if not isinstance(status, Mapping):
                        continue
                    recovery_instance_id = status.get("recoveryInstanceId")
                    if recovery_instance_id:
                        index._keep_latest(index.by_recovery_instance, str(recovery_instance_id), ref)
                    server_id = status.get("sourceServerId")
                    if server_id and region:
                        index._keep_latest(index.by_server_region, (str(server_id), region), ref)
                for server_id in wave.get("serverIds") or wave.get("sourceServerIds") or []:
                    if server_id and region:
                        index._keep_latest(index.by_server_region, (str(server_id), region), ref)
        return index

    @staticmethod
    def _keep_latest(mapping: dict[Any, ExecutionRef], key: Any, ref: ExecutionRef) -> None:
        current = mapping.get(key)
        if current is None or (ref.start_time, ref.execution_id) > (current.start_time, current.execution_id):
            mapping[key] = ref

    def resolve(
        self, *, job_id: str | None, recovery_instance_id: str, source_server_id: str, region: str
    ) -> ExecutionMatch | None:
        if job_id and job_id in self.by_job:
            return ExecutionMatch(self.by_job[job_id], Attribution.JOB)
        if recovery_instance_id in self.by_recovery_instance:
            return ExecutionMatch(self.by_recovery_instance[recovery_instance_id], Attribution.RECOVERY_INSTANCE)
        ref = self.by_server_region.get((source_server_id, region))
        return None if ref is None else ExecutionMatch(ref, Attribution.INFERRED)

    async def for_instances(
        self, dynamo: Any, region: str, recovery_instances: Sequence[Mapping[str, Any]]
    ) -> ExecutionIndex:
        """This index is whole already (``ExecutionSource``)."""
        return self

    def recheck(self, stamp: float | None) -> Recheck:
        """Everything: resolving against an index in memory reads nothing."""
        return Recheck()

    def __len__(self) -> int:
        refs = (*self.by_job.values(), *self.by_recovery_instance.values(), *self.by_server_region.values())
        return len({r.execution_id for r in refs})


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Recheck:
    """Which cached records a scope attributes again although DRS and EC2 report them unchanged:
    those with an index key in ``keys`` (None: every record), and those not attributed by job
    written (observed) after ``pending_after`` (epoch seconds: their job may be an unknown one
    whose early rebuild is still to come). ``stamp``: what the scope records, once it succeeds,
    as the time its records were last attributed (None: it keeps the one it had)."""

    keys: frozenset[str] | None = None
    pending_after: float = 0.0
    stamp: float | None = None


class ExecutionSource(Protocol):
    """Where a scope's sync gets the index that resolves its recovery instances: a whole
    ``ExecutionIndex``, or ``syncengine.tables.execution_index.table.StoredExecutions`` (read by key)."""

    async def for_instances(
        self, dynamo: Any, region: str, recovery_instances: Sequence[Mapping[str, Any]]
    ) -> ExecutionIndex: ...

    def recheck(self, stamp: float | None) -> Recheck:
        """What to attribute again of a scope last attributed at ``stamp``."""
        ...
