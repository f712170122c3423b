"""Splitting a sync's scopes across worker processes."""

from __future__ import annotations

from syncengine.config import SyncSettings
from syncengine.models import AccountTarget, Scope
from syncengine.shards import MIN_SCOPES_PER_WORKER, shard_by_account, worker_count


def planned(accounts: dict[str, int]) -> list[tuple[Scope, AccountTarget]]:
    return [
        (Scope(account, f"region-{i}"), AccountTarget(account))
        for account, regions in accounts.items()
        for i in range(regions)
    ]


def test_shard_by_account_never_splits_an_account() -> None:
    """Each account's scopes land in one shard, so each account is assumed once per run."""
    shards = shard_by_account(planned({f"{n:012d}": 1 + n % 4 for n in range(30)}), 3)
    owners = [{scope.account_id for scope, _ in shard} for shard in shards]
    assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1 :])
    assert sum(len(shard) for shard in shards) == sum(1 + n % 4 for n in range(30))


def test_shard_by_account_balances_sizes() -> None:
    """Shards differ by at most one account's worth of scopes."""
    shards = shard_by_account(planned({f"{n:012d}": 4 for n in range(25)}), 2)
    sizes = sorted(len(shard) for shard in shards)
    assert sizes[-1] - sizes[0] <= 4


def test_worker_count_keeps_small_runs_in_process() -> None:
    """A second process is only worth it with enough scopes to share."""
    settings = SyncSettings(workers=4)
    assert worker_count(settings, MIN_SCOPES_PER_WORKER - 1) == 1
    assert worker_count(settings, MIN_SCOPES_PER_WORKER * 2) == 2
    assert worker_count(SyncSettings(), 1000) == 1
