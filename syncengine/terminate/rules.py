"""What terminate may touch: the request's options, the execution's state, and per instance
whether it is terminable (API-CONTRACT.md, "POST /executions/{executionId}/terminate-instances").

A DR tool must never terminate what it did not launch. The attribution of each cached instance is
checked again against the execution's own items (never taken on the cache's word alone):
``job`` and ``recoveryInstance`` are proof; ``inferred`` is a guess and is skipped. A real
recovery (``isDrill`` not true) is skipped unless the caller says ``includeNonDrill``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncengine.core.errors import ExecutionInProgressError, InvalidRequestError
from syncengine.core.models import Attribution
from syncengine.tables.execution_index.lookup import ExecutionIndex, is_active

TERMINABLE_ATTRIBUTIONS = frozenset({Attribution.JOB, Attribution.RECOVERY_INSTANCE})
INCLUDE_NON_DRILL = "includeNonDrill"
BODY_KEYS = frozenset({INCLUDE_NON_DRILL})

REASON_INFERRED = (
    "Attributed by inference only: a wave of this execution planned the server, but neither the "
    "instance's launch job nor its id is recorded on the execution, so it may not be this "
    "execution's instance."
)
REASON_NOT_DRILL = (
    'A recovery instance of a real recovery (isDrill is not true); send {"includeNonDrill": true} to terminate it.'
)


@dataclass(frozen=True)
class TerminateOptions:
    """What the caller asked for, and on whose behalf (validated once, here)."""

    include_non_drill: bool = False
    # The caller identity API Gateway passed (IAM ARN or Cognito sub); None for direct calls.
    requested_by: str | None = None
    # Stop starting DRS calls after this many seconds (API: 25 s); None: no own budget.
    budget_seconds: float | None = None


def parse_terminate_body(data: Any, *, ignored: frozenset[str] = frozenset()) -> bool:
    """``includeNonDrill`` from a request body (None or an object); unknown keys and a
    non-boolean flag are refused with a sentence. ``ignored`` keys belong to the envelope
    (a direct invocation's ``operation`` and ``executionId``)."""
    if data is None:
        return False
    if not isinstance(data, Mapping):
        raise InvalidRequestError('The request body must be a JSON object such as {"includeNonDrill": true}.')
    unknown = sorted(str(k)[:40] for k in data if k not in BODY_KEYS and k not in ignored)
    if unknown:
        raise InvalidRequestError(
            f"Unknown field(s) {', '.join(unknown)}: the only field accepted is {INCLUDE_NON_DRILL!r}."
        )
    flag = data.get(INCLUDE_NON_DRILL, False)
    if not isinstance(flag, bool):
        raise InvalidRequestError(f"{INCLUDE_NON_DRILL} must be true or false.")
    return flag


def execution_status(executions: Sequence[Mapping[str, Any]]) -> str | None:
    """The execution's status; an active one wins when its plan items disagree."""
    statuses = [str(item.get("status") or "").upper() for item in executions]
    active = [status for status, item in zip(statuses, executions, strict=True) if is_active(item)]
    present = [s for s in statuses if s]
    return (active or present or [None])[0]


def refuse_if_active(execution_id: str, executions: Sequence[Mapping[str, Any]]) -> None:
    status = execution_status(executions)
    if any(is_active(item) for item in executions):
        raise ExecutionInProgressError(
            f"Execution {execution_id!r} is still {status}: its recovery instances are terminated "
            "only once it has finished.",
            execution_id=execution_id,
            execution_status=str(status),
        )


# The preview's per-instance ``status``: the orchestration's own ``get_recovery_instances`` says
# ``"LAUNCHED"`` of every instance it lists (lambda/execution-handler/index.py, get_recovery_instances).
LAUNCHED = "LAUNCHED"


@dataclass(frozen=True)
class Candidate:
    record: Mapping[str, Any]
    attribution: Attribution
    reason: str | None  # None: terminable
    wave: Mapping[str, Any] | None = None  # the execution's wave that launched or planned it

    @property
    def terminable(self) -> bool:
        return self.reason is None

    def _common(self) -> dict[str, Any]:
        r = self.record
        return {
            # The orchestration's terminate dialog reads ``instanceId`` (the EC2 id) and
            # ``serverName || hostname`` (frontend/src/components/TerminateInstancesDialog.tsx).
            "instanceId": r.get("ec2InstanceId"),
            "recoveryInstanceId": r.get("recoveryInstanceId"),
            "sourceServerId": r.get("sourceServerId"),
            "region": r.get("region"),
            "accountId": r.get("accountId"),
            "serverName": r.get("sourceServerName") or r.get("name") or r.get("sourceServerId"),
            "isDrill": r.get("isDrill"),
            "attribution": self.attribution.value,
        }

    def preview(self) -> dict[str, Any]:
        """An entry of the preview's ``instances`` (what terminate would end)."""
        entry = {
            **self._common(),
            "jobId": self.record.get("jobId"),
            "status": LAUNCHED,
            "ec2InstanceState": self.record.get("ec2InstanceState"),
        }
        if self.wave is not None:
            if self.wave.get("waveName") is not None:
                entry["waveName"] = self.wave.get("waveName")
            if self.wave.get("waveNumber") is not None:
                entry["waveNumber"] = self.wave.get("waveNumber")
        return entry

    def skipped(self) -> dict[str, Any]:
        """An entry of the preview's ``skipped`` (related to the execution, left alone)."""
        return {**self._common(), "reason": self.reason}


def wave_of(executions: Sequence[Mapping[str, Any]], record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The wave of these execution items that launched the record's instance (its job, then its
    recovery instance id), else the last wave listing its server in its region."""
    waves = [w for item in executions for w in (item.get("waves") or []) if isinstance(w, Mapping)]
    job_id = record.get("jobId")
    recovery_instance_id = record.get("recoveryInstanceId")
    server_id, region = record.get("sourceServerId"), record.get("region")
    for wave in waves:
        if job_id and wave.get("jobId") == job_id:
            return wave
    planned = None
    for wave in waves:
        statuses = [s for s in wave.get("serverStatuses") or [] if isinstance(s, Mapping)]
        if recovery_instance_id and any(s.get("recoveryInstanceId") == recovery_instance_id for s in statuses):
            return wave
        servers = {s.get("sourceServerId") for s in statuses} | set(wave.get("serverIds") or [])
        if server_id in servers and wave.get("region") == region:
            planned = wave
    return planned


def attribution_of(index: ExecutionIndex, execution_id: str, record: Mapping[str, Any]) -> Attribution:
    """How this execution's own items prove it launched the record's instance."""
    match = index.resolve(
        job_id=record.get("jobId") or None,
        recovery_instance_id=str(record.get("recoveryInstanceId") or ""),
        source_server_id=str(record.get("sourceServerId") or ""),
        region=str(record.get("region") or ""),
    )
    if match is None or match.execution_id != execution_id:
        return Attribution.INFERRED
    return match.attribution


def candidates(
    execution_id: str,
    executions: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    *,
    include_non_drill: bool,
) -> list[Candidate]:
    index = ExecutionIndex.from_items(executions)
    chosen = []
    for record in records:
        attribution = attribution_of(index, execution_id, record)
        reason = None
        if attribution not in TERMINABLE_ATTRIBUTIONS:
            reason = REASON_INFERRED
        elif record.get("isDrill") is not True and not include_non_drill:
            reason = REASON_NOT_DRILL
        chosen.append(Candidate(record, attribution, reason, wave_of(executions, record)))
    return chosen


def preview_body(
    execution_id: str, executions: Sequence[Mapping[str, Any]], chosen: Sequence[Candidate]
) -> dict[str, Any]:
    """The 200 body of ``GET /executions/{executionId}/recovery-instances``: shaped as the
    orchestration's own ``get_recovery_instances`` answers (its terminate dialog counts
    ``instances.length``), ``instances`` holding exactly what a terminate would end."""
    instances = [c.preview() for c in chosen if c.terminable]
    skipped = [c.skipped() for c in chosen if not c.terminable]
    if instances:
        message = f"Found {len(instances)} recovery instances to terminate."
    elif skipped:
        message = "No recovery instance of this execution would be terminated (see 'skipped')."
    else:
        message = "No recovery instances of this execution were found."
    if instances and skipped:
        message += f" {len(skipped)} more are related to it and would be left alone (see 'skipped')."
    return {
        "executionId": execution_id,
        "executionStatus": execution_status(executions),
        "message": message,
        "instances": instances,
        "totalInstances": len(instances),
        "skipped": skipped,
    }
