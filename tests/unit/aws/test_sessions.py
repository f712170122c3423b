"""syncengine.aws.sessions: each assumed-role session's policy and name, within STS's limits."""

from __future__ import annotations

import json
import re

import pytest

from devtools.simulator import policy as sim_policy
from syncengine.aws.sessions import MAX_SESSION_POLICY, SessionPurpose, session_name, session_policy
from syncengine.core.config import SyncSettings

STS_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
LONGEST_FUNCTION = "f" * 64  # Lambda function names are at most 64 characters


@pytest.mark.parametrize("purpose", list(SessionPurpose))
@pytest.mark.parametrize("caller", ["local", "cli", "drs-orchestration-refresh-prod", LONGEST_FUNCTION, "a b/c:d"])
def test_session_names_fit_sts_and_say_caller_and_purpose(purpose: SessionPurpose, caller: str) -> None:
    name = session_name(purpose, caller)
    assert STS_SESSION_NAME.fullmatch(name)
    assert name.startswith("ris-") and name.endswith(f"-{purpose.value}")


def test_long_callers_stay_apart_and_purposes_are_named_apart() -> None:
    a, b = "x" * 60 + "-refresh", "x" * 60 + "-datamgmt"
    assert session_name(SessionPurpose.SYNC, a) != session_name(SessionPurpose.SYNC, b)
    assert session_name(SessionPurpose.SYNC, "fn") == "ris-fn-sync"
    assert session_name(SessionPurpose.TERMINATE, "fn") == "ris-fn-terminate"


def test_sync_policy_only_describes_and_terminate_policy_terminates() -> None:
    sync, terminate = (json.loads(session_policy(p)) for p in (SessionPurpose.SYNC, SessionPurpose.TERMINATE))
    assert all(len(session_policy(p)) <= MAX_SESSION_POLICY for p in SessionPurpose)
    for action in ("drs:DescribeRecoveryInstances", "drs:DescribeSourceServers", "ec2:DescribeInstances"):
        assert sim_policy.allows(sync, action)
    for action in ("drs:TerminateRecoveryInstances", "ec2:TerminateInstances", "drs:StartRecovery", "iam:PassRole"):
        assert not sim_policy.allows(sync, action)
    assert sim_policy.allows(terminate, "drs:TerminateRecoveryInstances")
    assert sim_policy.allows(terminate, "drs:DescribeJobs")
    # Dependent EC2 actions only through DRS: never as a direct call.
    assert not sim_policy.allows(terminate, "ec2:TerminateInstances")
    assert not sim_policy.allows(terminate, "drs:DescribeSourceServers")


def test_caller_is_the_lambda_function_else_local() -> None:
    assert SyncSettings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "ris-refresh"}).caller == "ris-refresh"
    assert SyncSettings.from_env({}).caller == "local"


def test_simulated_session_policy_deny_wins_and_wildcards_match() -> None:
    document = sim_policy.parse_policy(
        json.dumps(
            {
                "Statement": [
                    {"Effect": "Allow", "Action": "drs:Describe*", "Resource": "*"},
                    {"Effect": "Deny", "Action": "drs:DescribeJobs", "Resource": "*"},
                ]
            }
        )
    )
    assert sim_policy.allows(document, "drs:describerecoveryinstances")
    assert not sim_policy.allows(document, "drs:DescribeJobs")
    with pytest.raises(Exception, match="policy"):
        sim_policy.parse_policy("{not json")
