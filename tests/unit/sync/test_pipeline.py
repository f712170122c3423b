"""syncengine.sync.pipeline: one scope's result and records, without I/O."""

from __future__ import annotations

import anyio
import anyio.lowlevel

from syncengine.core.config import SyncSettings
from syncengine.core.errors import AccessDeniedError
from syncengine.core.models import AccountTarget, Scope, ScopeOutcome
from syncengine.sync.discovery import ScopeDiscovery
from syncengine.sync.pipeline import ScopeAttempt, build_records, scope_lease
from syncengine.tables.execution_index.lookup import ExecutionIndex
from syncengine.tables.status import ScopeLease

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


class _LeaseAndRole:
    """Stand-ins for a runtime's status store and AWS clients: the lease write notes whether the
    account's role was already being assumed while it waited for DynamoDB's answer."""

    def __init__(self, *, role_error: Exception | None = None) -> None:
        self.settings = SyncSettings()
        self.status = self
        self.aws = self
        self.role_error = role_error
        self.role_asked = False
        self.asked_during_lease: bool | None = None

    async def credentials_for(self, account: AccountTarget) -> None:
        self.role_asked = True
        await anyio.lowlevel.checkpoint()
        if self.role_error is not None:
            raise self.role_error

    async def take_scope_lease(self, scope: Scope, owner: str, **_: object) -> ScopeLease:
        await anyio.wait_all_tasks_blocked()
        self.asked_during_lease = self.role_asked
        return ScopeLease()


ACCOUNT = AccountTarget(account_id=SCOPE.account_id, role_arn="arn:aws:iam::123456789012:role/R")


async def test_pipeline_scope_lease_assumes_the_role_while_the_lease_is_written() -> None:
    """The AssumeRole round trip and the lease's write both precede the first DRS call: they overlap."""
    rt = _LeaseAndRole()
    attempt = ScopeAttempt(SCOPE, None, "run-1")
    async with scope_lease(rt, attempt, ACCOUNT) as granted:  # type: ignore[arg-type]
        assert granted is True
    assert rt.asked_during_lease is True


async def test_pipeline_scope_lease_leaves_a_role_failure_to_discovery() -> None:
    """A role that cannot be assumed does not fail the lease: the failure is remembered by the
    clients and raised when discovery asks for them (the scope then fails with it)."""
    denied = AccessDeniedError("cannot assume", code="AccessDenied", operation="AssumeRole")
    rt = _LeaseAndRole(role_error=denied)
    attempt = ScopeAttempt(SCOPE, None, "run-1")
    async with scope_lease(rt, attempt, ACCOUNT) as granted:  # type: ignore[arg-type]
        assert granted is True
    assert attempt.may_hold_lease is True
