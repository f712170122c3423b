"""The latency_bound scenario's lower bound: the formula on tiny estates, and the token-bucket
term checked against the simulator's own bucket."""

from __future__ import annotations

import pytest

from benchmarks.lower_bound import ScopeCalls, bucket_capacity, estate_lower_bound, scope_lower_bound
from devtools.simulator.errors import AwsError
from devtools.simulator.faults import FaultConfig, FaultInjector


@pytest.mark.parametrize(
    ("instances", "calls"),
    [
        pytest.param(0, ScopeCalls(drs_pages=1, drs_lookups=0, ec2_lookups=0), id="empty-scope-still-pages-once"),
        pytest.param(1, ScopeCalls(drs_pages=1, drs_lookups=1, ec2_lookups=1), id="one-instance"),
        pytest.param(200, ScopeCalls(drs_pages=1, drs_lookups=1, ec2_lookups=1), id="one-full-page"),
        pytest.param(201, ScopeCalls(drs_pages=2, drs_lookups=2, ec2_lookups=2), id="second-page"),
    ],
)
def test_scope_calls_count_pages_and_200_id_lookups(instances: int, calls: ScopeCalls) -> None:
    assert ScopeCalls.for_instances(instances) == calls


def test_scope_lower_bound_rate_limited_scope() -> None:
    """250 instances, 100 ms, 1 request/s, burst 1: 4 DRS calls, the last 3 s after the first check."""
    bound = scope_lower_bound(250, latency_s=0.1, tps=1.0, burst=1.0)
    assert bound.calls.drs_calls == 4
    assert bound.chain_s == pytest.approx(0.1 + 3 * 0.1)  # AssumeRole, 2 pages, the last lookup
    assert bound.drs_rate_s == pytest.approx(0.1 + 0.1 + 3.0)
    assert bound.ec2_rate_s == pytest.approx(0.1 + 0.2 + 1.0)
    assert bound.seconds == pytest.approx(3.2)


def test_scope_lower_bound_without_rate_limit_is_the_dependency_chain() -> None:
    bound = scope_lower_bound(450, latency_s=0.05, tps=0.0)
    assert bound.seconds == pytest.approx(0.05 + 4 * 0.05)


def test_scope_lower_bound_hub_scope_skips_assume_role() -> None:
    assert scope_lower_bound(10, latency_s=0.2, assume_role=False).seconds == pytest.approx(0.4)


def test_estate_lower_bound_issue_example_is_latency_only() -> None:
    """200 scopes at 2 requests/s and 200 ms: a bucket of 2 absorbs a small scope's 2 DRS calls."""
    bound = estate_lower_bound(accounts=50, instances_per_scope=20, latency_s=0.2, tps=2.0)
    assert bound.seconds == pytest.approx(0.6)


def test_bucket_capacity_defaults_to_one_second_of_tokens() -> None:
    assert bucket_capacity(2.0, 0.0) == 2.0
    assert bucket_capacity(0.05, 0.0) == 1.0
    assert bucket_capacity(5.0, 1.0) == 1.0


@pytest.mark.parametrize(("tps", "burst"), [(2.0, 0.0), (1.0, 1.0), (4.0, 2.0)])
def test_rate_term_matches_the_simulator_bucket(tps: float, burst: float) -> None:
    """Polling the simulator's bucket every millisecond, the n-th call passes (n - capacity) / tps
    after the first: the term the bound uses."""
    injector = FaultInjector(FaultConfig(tps_per_scope=tps, burst_per_scope=burst, fault_services=("drs",)))
    capacity = bucket_capacity(tps, burst)
    granted: list[float] = []
    for step in range(int(1000 * (6 / tps + 1))):
        now = step / 1000
        try:
            injector.check("drs", "111122223333", "us-east-1", now)
        except AwsError:  # throttled: no token yet
            continue
        granted.append(now)
        if len(granted) == 6:
            break
    for n, at in enumerate(granted, start=1):
        assert at == pytest.approx(max(0.0, (n - capacity) / tps), abs=0.0011)
