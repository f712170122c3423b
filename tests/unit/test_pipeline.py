"""syncengine.pipeline: one scope's result and records, without I/O."""

from __future__ import annotations

from syncengine.discovery import ScopeDiscovery
from syncengine.executions import ExecutionIndex
from syncengine.models import Scope, ScopeOutcome
from syncengine.pipeline import ScopeAttempt, build_records

SCOPE = Scope("123456789012", "us-east-1")


def test_pipeline_attempt_reports_the_deadline_until_it_knows_better() -> None:
    """A scope cancelled before any step finished is reported skipped by the deadline."""
    attempt = ScopeAttempt(SCOPE, None, "run-1")
    assert attempt.result.outcome is ScopeOutcome.SKIPPED
    assert attempt.result.error is not None
    assert attempt.result.error.error_type == "DeadlineExceeded"


def test_pipeline_attempt_failure_names_its_scope() -> None:
    result = ScopeAttempt(SCOPE, None, "run-1").failed(ScopeOutcome.FAILED, "AccessDenied", "no")
    assert result.error is not None
    assert (result.error.account_id, result.error.region, result.error.error_type) == (
        "123456789012",
        "us-east-1",
        "AccessDenied",
    )


def test_pipeline_attempt_of_some_servers_is_targeted() -> None:
    assert ScopeAttempt(SCOPE, ["s-0123456789abcdef0"], "run-1").targeted
    assert not ScopeAttempt(SCOPE, None, "run-1").targeted


def test_pipeline_attempt_holds_no_lease_before_asking() -> None:
    assert ScopeAttempt(SCOPE, None, "run-1").may_hold_lease is False


def test_pipeline_build_records_skips_instances_without_ids() -> None:
    discovery = ScopeDiscovery(
        recovery_instances=[
            {"recoveryInstanceID": "i-0123456789abcdef0", "sourceServerID": "s-0123456789abcdef0"},
            {"recoveryInstanceID": "i-0123456789abcdef1"},
        ]
    )
    records = build_records(SCOPE, discovery, ExecutionIndex.from_items([]), observed_at=1)
    assert [r.source_server_id for r in records] == ["s-0123456789abcdef0"]


def test_pipeline_build_records_joins_the_ec2_instance() -> None:
    discovery = ScopeDiscovery(
        recovery_instances=[
            {
                "recoveryInstanceID": "i-0123456789abcdef0",
                "sourceServerID": "s-0123456789abcdef0",
                "ec2InstanceID": "i-0fedcba9876543210",
            }
        ],
        ec2_instances={"i-0fedcba9876543210": {"InstanceType": "m5.large"}},
    )
    (record,) = build_records(SCOPE, discovery, ExecutionIndex.from_items([]), observed_at=1)
    assert record.instance_type == "m5.large"
