"""The execution index's items: their keys and the mapping to and from ``ExecutionIndex`` (one
mapping for every reader and writer of the table; ``syncengine.tables.execution_index.table`` owns the table).

Keys: ``job#<jobId>``, ``ri#<recoveryInstanceId>``, ``srv#<sourceServerId>#<region>``; each item
names one execution (``executionId``, ``planName``, ``startTime``).
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import Any

from syncengine.dynamodb.seam import to_item
from syncengine.tables.execution_index.lookup import ExecutionIndex, ExecutionRef

KEY = "indexKey"


def job_key(job_id: str) -> str:
    return f"job#{job_id}"


def recovery_instance_key(recovery_instance_id: str) -> str:
    return f"ri#{recovery_instance_id}"


def server_key(source_server_id: str, region: str) -> str:
    return f"srv#{source_server_id}#{region}"


def order(ref: ExecutionRef) -> tuple[float, str]:
    """The "most recent wins" order of ``ExecutionIndex._keep_latest``."""
    return (ref.start_time, ref.execution_id)


def entries(index: ExecutionIndex) -> dict[str, ExecutionRef]:
    """The index as table keys -> execution."""
    found = {job_key(job): ref for job, ref in index.by_job.items()}
    found.update((recovery_instance_key(rid), ref) for rid, ref in index.by_recovery_instance.items())
    found.update((server_key(sid, region), ref) for (sid, region), ref in index.by_server_region.items())
    return found


def entry_item(key: str, ref: ExecutionRef) -> dict[str, Any]:
    return to_item({KEY: key, "executionId": ref.execution_id, "planName": ref.plan_name, "startTime": ref.start_time})


def entry_ref(item: Mapping[str, Any]) -> ExecutionRef:
    return ExecutionRef(str(item["executionId"]), item.get("planName") or None, float(item.get("startTime") or 0))


def index_of(found: Mapping[str, ExecutionRef]) -> ExecutionIndex:
    """An ``ExecutionIndex`` of the keys read (the inverse of ``entries``)."""
    index = ExecutionIndex()
    for key, ref in found.items():
        kind, _, rest = key.partition("#")
        if kind == "job":
            index.by_job[rest] = ref
        elif kind == "ri":
            index.by_recovery_instance[rest] = ref
        elif kind == "srv":
            server_id, _, region = rest.rpartition("#")
            index.by_server_region[(server_id, region)] = ref
    return index


def fallback_keys(recovery_instance: Mapping[str, Any], region: str) -> list[str]:
    """The keys of rules 2 and 3 (recovery instance, then server and region)."""
    recovery_instance_id = recovery_instance.get("recoveryInstanceID")
    server_id = recovery_instance.get("sourceServerID")
    keys = [recovery_instance_key(str(recovery_instance_id))] if recovery_instance_id else []
    return [*keys, server_key(str(server_id), region)] if server_id else keys


def first_keys(region: str, recovery_instances: Sequence[Mapping[str, Any]]) -> list[str]:
    """What a scope reads first: the job key of each recovery instance that names its job; the
    keys of rules 2 and 3 of those that name none."""
    keys: list[str] = []
    for ri in recovery_instances:
        job = ri.get("jobID")
        keys.extend([job_key(str(job))] if job else fallback_keys(ri, region))
    return keys


def second_keys(region: str, recovery_instances: Sequence[Mapping[str, Any]], found: Container[str]) -> list[str]:
    """What a scope reads next: the keys of rules 2 and 3 of the recovery instances whose job
    the index does not know (``found``: the keys the first read returned)."""
    return [
        key
        for ri in recovery_instances
        if ri.get("jobID") and job_key(str(ri["jobID"])) not in found
        for key in fallback_keys(ri, region)
    ]
