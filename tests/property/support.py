"""What the property tests share: strategies for estates and for changes to them, a ``world``
(a simulated estate served in-process + fresh tables on a real DynamoDB server + seeded engine
settings, optionally behind the fault proxy), and the truth the cache must converge to."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from devtools.faultproxy import DynamoFaultProxy
from devtools.simulator import EstateConfig, Simulator, run_simulator
from syncengine.core.config import RetrySettings, SyncSettings
from syncengine.core.models import Scope
from tests.fixtures.dynamodb import fresh_tables
from tests.integration.engine_support import cache_items, engine_settings, seed

REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2")
EC2_STATES = ("running", "stopped", "stopping", "pending")
QUICK_RETRY = RetrySettings(max_attempts=3, base_delay=0.001, max_delay=0.01)

estates = st.builds(
    EstateConfig,
    accounts=st.integers(1, 3),
    regions=st.lists(st.sampled_from(REGIONS), min_size=1, max_size=3, unique=True).map(tuple),
    instances_per_scope=st.integers(0, 8),
    seed=st.integers(0, 2**16),
    idle_servers_per_scope=st.integers(0, 2),
    uninitialized_fraction=st.sampled_from((0.0, 0.0, 0.3)),
    max_servers_per_job=st.integers(1, 4),
    stopped_fraction=st.sampled_from((0.0, 0.5)),
    public_ip_fraction=st.sampled_from((0.0, 0.5, 1.0)),
    instance_profile_fraction=st.sampled_from((0.0, 1.0)),
    extended_fraction=st.sampled_from((0.0, 0.5)),
)

# A change to the estate, resolved against whatever is live when it is applied: an index picks a
# recovery instance (or scope) modulo how many there are, so every drawn change applies.
mutations = st.one_of(
    st.tuples(st.just("terminate"), st.integers(0, 999)),
    st.tuples(st.just("launch"), st.integers(0, 999), st.integers(1, 3)),
    st.tuples(st.just("relaunch"), st.integers(0, 999)),
    st.tuples(st.just("ip"), st.integers(0, 999), st.integers(1, 254)),
    st.tuples(st.just("public_ip"), st.integers(0, 999), st.booleans()),
    st.tuples(st.just("state"), st.integers(0, 999), st.sampled_from(EC2_STATES)),
)


@dataclass
class World:
    sim: Simulator
    settings: SyncSettings
    proxy: DynamoFaultProxy | None = None

    @property
    def estate(self) -> Any:
        return self.sim.estate

    def scopes(self) -> list[Scope]:
        """Every configured (account, region), initialised or not."""
        return [Scope(a.account_id, r) for a in self.estate.accounts for r in a.regions]

    def live_scopes(self) -> list[Scope]:
        return [s for s in self.scopes() if self.estate.is_initialized(s.account_id, s.region)]


@contextlib.asynccontextmanager
async def world(
    config: EstateConfig, backend: tuple[str, str], *, proxy: bool = False, **overrides: Any
) -> AsyncIterator[World]:
    """An estate served in this loop, fresh tables, seeded; DynamoDB behind a proxy if asked."""
    endpoint, name = backend
    async with run_simulator(config) as sim, fresh_tables(endpoint, name) as tables:
        values: dict[str, Any] = {"retry": QUICK_RETRY, "scope_lease_wait": 30.0, **overrides}
        settings = engine_settings(tables, sim, **values)
        await seed(settings, sim.estate)
        if not proxy:
            yield World(sim, settings)
            return
        async with DynamoFaultProxy(endpoint, record=True) as running:
            urls = tuple(
                (service, running.endpoint_url if service == "dynamodb" else url)
                for service, url in settings.endpoint_urls
            )
            yield World(sim, settings.with_changes(endpoint_urls=urls), running)


def apply(estate: Any, mutation: tuple[Any, ...]) -> None:
    """Apply one drawn change (a no-op when there is nothing it could apply to)."""
    kind, index, *rest = mutation
    live = sorted(estate.recovery_instances(), key=lambda ri: ri["recoveryInstanceID"])
    if kind == "launch":
        scopes = [
            (a.account_id, r) for a in estate.accounts for r in a.regions if estate.is_initialized(a.account_id, r)
        ]
        if scopes:
            account_id, region = scopes[index % len(scopes)]
            estate.launch(account_id, region, rest[0])
        return
    if not live:
        return
    ri = live[index % len(live)]
    if kind == "terminate":
        estate.terminate(ri["recoveryInstanceID"])
    elif kind == "relaunch":
        estate.relaunch(ri["sourceServerID"])
    elif kind == "ip":
        estate.update_ec2(ri["ec2InstanceID"], private_ip=f"10.222.{index % 250}.{rest[0]}")
    elif kind == "public_ip":
        estate.update_ec2(ri["ec2InstanceID"], public_ip=f"54.0.{index % 250}.1" if rest[0] else None)
    elif kind == "state":
        estate.update_ec2(ri["ec2InstanceID"], state=rest[0])


def truth(estate: Any, scope: Scope | None = None) -> dict[str, tuple[Any, ...]]:
    """sourceServerId -> what a converged cache says about it."""
    account_id, region = (scope.account_id, scope.region) if scope else (None, None)
    result = {}
    for ri in estate.recovery_instances(account_id, region):
        ec2 = estate.ec2_instance(ri["ec2InstanceID"]) or {}
        result[ri["sourceServerID"]] = (
            ri["recoveryInstanceID"],
            ri["ec2InstanceID"],
            (ec2.get("State") or {}).get("Name"),
            ec2.get("PrivateIpAddress"),
            ec2.get("PublicIpAddress"),
        )
    return result


def view(cached: dict[str, dict[str, Any]], scope: Scope | None = None) -> dict[str, tuple[Any, ...]]:
    return {
        sid: (
            item["recoveryInstanceId"],
            item["ec2InstanceId"],
            item.get("ec2InstanceState"),
            item.get("privateIp"),
            item.get("publicIp"),
        )
        for sid, item in cached.items()
        if scope is None or item.get("scopeKey") == scope.key
    }


async def cache_of(w: World) -> dict[str, dict[str, Any]]:
    return await cache_items(w.settings)
