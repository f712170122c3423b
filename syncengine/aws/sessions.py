"""What each assumed-role session may do, and its name.

Every AssumeRole into a target account passes a session policy (an inline ``Policy``): the
session's effective permissions are the intersection of the role's policies and this one
(https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session), so a
sync, refresh or wave session can only describe, whatever the target role allows, and only the
terminate path's session can terminate. Its ``RoleSessionName`` says which function and which
purpose, so CloudTrail names the caller: ``ris-<function>-sync`` / ``ris-<function>-terminate``
(the function is ``AWS_LAMBDA_FUNCTION_NAME``; a CLI run says ``cli``, anything else ``local``).
A terminate session is cached apart from a sync's, even in the same function and run.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum

SESSION_NAME_PREFIX = "ris"
# STS: RoleSessionName is 2 to 64 characters of [\w+=,.@-]; an inline session policy at most
# 2,048 characters (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html).
MAX_SESSION_NAME = 64
MAX_SESSION_POLICY = 2048
_NOT_ALLOWED = re.compile(r"[^\w+=,.@-]", re.ASCII)
LOCAL_CALLER = "local"
ASSUME_ROLE_DURATION_SECONDS = 3600
CLI_CALLER = "cli"


class SessionPurpose(StrEnum):
    # Sync, refresh, fan-out and wave paths: DRS and EC2 describes only.
    SYNC = "sync"
    # The terminate path: TerminateRecoveryInstances and the describes its look needs.
    TERMINATE = "terminate"


_DESCRIBE = {
    "Sid": "Describe",
    "Effect": "Allow",
    "Action": [
        "drs:DescribeRecoveryInstances",
        "drs:DescribeSourceServers",
        "drs:DescribeJobs",
        "ec2:DescribeInstances",
        "ec2:DescribeRegions",
    ],
    "Resource": "*",
}
_TERMINATE = [
    {
        "Sid": "Terminate",
        "Effect": "Allow",
        "Action": ["drs:TerminateRecoveryInstances", "drs:DescribeRecoveryInstances", "drs:DescribeJobs"],
        "Resource": "*",
    },
    # DRS terminates the instance and its volumes with the caller's credentials forwarded (the
    # service authorization reference lists these as TerminateRecoveryInstances' dependent
    # actions); as in the target role, only through DRS and only on what DRS tags as its own.
    {"Sid": "TerminateDependentDescribe", "Effect": "Allow", "Action": "ec2:DescribeVolumes", "Resource": "*"},
    {
        "Sid": "TerminateDependentActions",
        "Effect": "Allow",
        "Action": ["ec2:TerminateInstances", "ec2:DeleteVolume"],
        "Resource": "*",
        "Condition": {
            "Null": {"aws:ResourceTag/AWSElasticDisasterRecoveryManaged": "false"},
            "Bool": {"aws:ViaAWSService": "true"},
        },
    },
]
_POLICIES = {
    SessionPurpose.SYNC: {"Version": "2012-10-17", "Statement": [_DESCRIBE]},
    SessionPurpose.TERMINATE: {"Version": "2012-10-17", "Statement": _TERMINATE},
}


def session_policy(purpose: SessionPurpose) -> str:
    """The inline session policy of ``purpose`` (compact JSON, within STS's 2,048 characters)."""
    return json.dumps(_POLICIES[purpose], separators=(",", ":"))


def session_name(purpose: SessionPurpose, caller: str) -> str:
    """``ris-<caller>-<purpose>``: STS's characters only, at most 64; a caller too long for it is
    cut and keeps a short hash of its full name, so two long function names stay apart."""
    caller = _NOT_ALLOWED.sub("-", caller or LOCAL_CALLER)
    suffix = f"-{purpose.value}"
    room = MAX_SESSION_NAME - len(SESSION_NAME_PREFIX) - 1 - len(suffix)
    if len(caller) > room:
        digest = hashlib.sha256(caller.encode()).hexdigest()[:8]
        caller = f"{caller[: room - len(digest) - 1]}-{digest}"
    return f"{SESSION_NAME_PREFIX}-{caller}{suffix}"


__all__ = ["CLI_CALLER", "LOCAL_CALLER", "SessionPurpose", "session_name", "session_policy"]
