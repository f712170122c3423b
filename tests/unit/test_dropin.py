"""recovery_instance_sync keeps the orchestration's names and signatures (its
lambda/shared/recovery_instance_sync.py at commit 8857e560) and answers with the seed's keys."""

from __future__ import annotations

import inspect

import pytest

import recovery_instance_sync as ris

# The seed's functions and their positional parameters, as its callers pass them.
SEED_SIGNATURES = {
    "sync_all_recovery_instances": [],
    "sync_recovery_instances_for_account": ["account_id", "region", "account_context"],
    "get_recovery_instances_for_region": ["account_id", "region", "account_context"],
    "enrich_with_ec2_details": ["ec2_instance_id", "region", "account_id", "account_context"],
    "find_source_execution": ["source_server_id", "launch_time"],
    "get_recovery_instance_sync_status": [],
    # API-CONTRACT.md, "The orchestration's shared module (drop-in)".
    "check_existing_recovery_instances": ["plan_id"],
    "get_recovery_instances": ["execution_id"],
    "terminate_recovery_instances": ["execution_id", "include_non_drill"],
}
SEED_ERRORS = ("RecoveryInstanceSyncError", "RecoveryInstanceSyncTimeoutError", "RecoveryInstanceSyncValidationError")


@pytest.mark.parametrize("name", sorted(SEED_SIGNATURES))
def test_dropin_function_takes_the_seeds_positional_parameters(name: str) -> None:
    parameters = inspect.signature(getattr(ris, name)).parameters.values()
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == SEED_SIGNATURES[name]
    # Only optional keyword-only additions: every call the seed's callers make still binds.
    assert all(p.default is not inspect.Parameter.empty for p in parameters if p.kind is p.KEYWORD_ONLY)


def test_dropin_exports_the_seeds_names_and_error_tree() -> None:
    assert set(SEED_SIGNATURES) | set(SEED_ERRORS) <= set(ris.__all__)
    assert all(issubclass(getattr(ris, name), ris.RecoveryInstanceSyncError) for name in ris.__all__ if "Error" in name)
    error = ris.RecoveryInstanceSyncValidationError("accountId must be 12 digits.")
    assert (error.status_code, error.body) == (
        400,
        {"error": "INVALID_REQUEST", "message": "accountId must be 12 digits."},
    )


def test_dropin_report_has_the_seeds_keys_beside_ours() -> None:
    """``errors`` as the seed's sentences (ours kept as ``errorDetails``), ``regionsScanned``."""
    report = {
        "status": "PARTIAL",
        "instancesUpdated": 3,
        "scopesSynced": 2,
        "scopesFailed": 1,
        "errors": [{"accountId": "111122223333", "region": "eu-west-1", "errorType": "AccessDenied", "message": "no"}],
    }
    seed = ris._seed_report(report)
    assert (seed["instancesUpdated"], seed["regionsScanned"]) == (3, 3)
    assert seed["errors"] == ["111122223333/eu-west-1: AccessDenied: no"]
    assert seed["errorDetails"] == report["errors"]


def test_dropin_timeout_before_any_scope_raises_the_seeds_timeout_error() -> None:
    report = {"scopesSynced": 0, "errors": [{"accountId": "", "region": "", "errorType": "DeadlineExceeded"}]}
    with pytest.raises(ris.RecoveryInstanceSyncTimeoutError) as raised:
        ris._require_timely(report)
    assert raised.value.status_code == 504 and raised.value.body["error"] == "SYNC_TIMEOUT"
