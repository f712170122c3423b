"""The theoretical lower bound of a full sync, from the simulator's parameters alone.

What any implementation of the batched algorithm must do in one scope holding ``N`` recovery
instances (pages and filters cap at 200):

* ``P = max(1, ceil(N / 200))`` DescribeRecoveryInstances pages, one after another (each page's
  token comes from the previous answer);
* ``ceil(N / 200)`` DescribeSourceServers calls and ``ceil(N / 200)`` EC2 DescribeInstances calls,
  each needing the ids of a page it follows;
* before any of that, in a target account, one STS AssumeRole round trip (STS is not rate
  limited by the simulator).

The simulator's faults (``devtools/simulator/faults.py``):

* every call waits ``latency`` before it is answered, and the rate check happens after that wait;
* a token bucket per (account, region, service) refills at ``tps`` tokens/s up to a capacity of
  ``burst`` (0 means ``max(1, tps)``), and starts full when the scope's first call of that service
  is checked. So with ``n`` calls of one service, the last one cannot be checked earlier than
  ``(n - capacity) / tps`` seconds after the first one was.

The bound of a scope is the latest of three things that must all have happened:

* the dependency chain: ``setup + (P + 1) * latency`` (``P`` pages then the last page's lookups);
* the DRS bucket: ``setup + latency + max(0, n_drs - capacity) / tps``, where the first DRS check
  cannot come before ``setup + latency``;
* the EC2 bucket: ``setup + 2 * latency + max(0, n_ec2 - capacity) / tps`` (its first call needs
  the first page's ids).

The estate's bound is the slowest scope's (scopes are independent). It leaves out DynamoDB and all
CPU work, so it is a bound no implementation can beat on any machine, not a prediction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from benchmarks.harness import EstateSpec, Faults

PAGE_SIZE = 200
FILTER_MAX_IDS = 200


@dataclass(frozen=True)
class ScopeCalls:
    """The calls one scope needs, by service."""

    drs_pages: int
    drs_lookups: int
    ec2_lookups: int

    @property
    def drs_calls(self) -> int:
        return self.drs_pages + self.drs_lookups

    @classmethod
    def for_instances(cls, instances: int) -> ScopeCalls:
        lookups = math.ceil(instances / FILTER_MAX_IDS)
        return cls(drs_pages=max(1, math.ceil(instances / PAGE_SIZE)), drs_lookups=lookups, ec2_lookups=lookups)


def bucket_capacity(tps: float, burst: float) -> float:
    """The simulator's bucket capacity: ``burst``, or one second's worth (at least one token)."""
    return burst or max(1.0, tps)


def _rate_wait(calls: int, tps: float, capacity: float) -> float:
    if tps <= 0 or calls <= capacity:
        return 0.0
    return (calls - capacity) / tps


@dataclass(frozen=True)
class ScopeBound:
    seconds: float
    chain_s: float
    drs_rate_s: float
    ec2_rate_s: float
    calls: ScopeCalls

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "calls": asdict(self.calls)}


def scope_lower_bound(
    instances: int, *, latency_s: float, tps: float = 0.0, burst: float = 0.0, assume_role: bool = True
) -> ScopeBound:
    """The earliest time one scope's discovery can be complete (see the module docstring)."""
    calls = ScopeCalls.for_instances(instances)
    setup = latency_s if assume_role else 0.0
    capacity = bucket_capacity(tps, burst)
    chain = setup + (calls.drs_pages + (1 if calls.drs_lookups else 0)) * latency_s
    drs_rate = setup + latency_s + _rate_wait(calls.drs_calls, tps, capacity)
    ec2_rate = setup + 2 * latency_s + _rate_wait(calls.ec2_lookups, tps, capacity) if calls.ec2_lookups else 0.0
    return ScopeBound(max(chain, drs_rate, ec2_rate), chain, drs_rate, ec2_rate, calls)


def estate_lower_bound(
    *, accounts: int, instances_per_scope: int, latency_s: float, tps: float = 0.0, burst: float = 0.0
) -> ScopeBound:
    """The slowest scope of a uniform estate: a target account's (it needs AssumeRole) when there
    is one besides the hub."""
    return scope_lower_bound(instances_per_scope, latency_s=latency_s, tps=tps, burst=burst, assume_role=accounts > 1)


def bound_for(spec: EstateSpec, faults: Faults) -> ScopeBound:
    """``estate_lower_bound`` of a benchmark estate under its simulator faults."""
    return estate_lower_bound(
        accounts=spec.accounts,
        instances_per_scope=spec.instances_per_scope,
        latency_s=faults.latency_ms / 1000,
        tps=faults.tps_per_scope,
        burst=faults.burst_per_scope,
    )
