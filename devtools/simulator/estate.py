"""The simulated estate: accounts, scopes and their records, generated from a seed and changed
between syncs through the methods here.

Thread safety: every public method holds ``lock`` (an RLock), and the protocol handlers hold it
while they read, so a test thread may launch or terminate while the server thread serves.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from . import events as aws_events
from .config import EstateConfig
from .factory import Fractions, RecordFactory, ScopeNetwork
from .ids import IdFactory, parse_iso
from .model import (
    EC2_STATE_CODES,
    Account,
    Ec2Instance,
    Job,
    Participant,
    RecoveryInstance,
    SourceServer,
)
from .regions import ALL_REGIONS, is_opt_in


class UnknownRecoveryInstancesError(LookupError):
    """Some IDs of a terminate request are unknown in the scope or already terminated."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(", ".join(missing))
        self.missing = missing


@dataclass(slots=True)
class ScopeData:
    """One (account, region). ID lists are kept sorted: pagination tokens carry the last ID
    returned, so a page boundary survives launches and terminations between pages."""

    account_id: str
    region: str
    initialized: bool
    network: ScopeNetwork
    recovery_instances: dict[str, RecoveryInstance] = field(default_factory=dict)
    ri_ids: list[str] = field(default_factory=list)
    source_servers: dict[str, SourceServer] = field(default_factory=dict)
    server_ids: list[str] = field(default_factory=list)
    ec2_instances: dict[str, Ec2Instance] = field(default_factory=dict)
    ec2_ids: list[str] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    job_ids: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.account_id}#{self.region}"


def _remove_sorted(values: list[str], value: str) -> None:
    index = bisect_left(values, value)
    if index < len(values) and values[index] == value:
        del values[index]


_EC2_FIELDS = {
    "state",
    "private_ip",
    "public_ip",
    "instance_type",
    "name",
    "tags",
    "vpc_id",
    "subnet_id",
    "security_groups",
    "iam_instance_profile",
    "launch_time",
}


class Estate:
    def __init__(self, config: EstateConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config or EstateConfig()
        self.lock = threading.RLock()
        self._clock = clock
        self._rng = random.Random(self.config.seed)
        self._ids = IdFactory(self._rng)
        self._accounts: list[Account] = []
        self._scopes: dict[tuple[str, str], ScopeData] = {}
        self._ri_scope: dict[str, ScopeData] = {}
        self._server_scope: dict[str, ScopeData] = {}
        self._ec2_scope: dict[str, ScopeData] = {}
        # (account, opt-in region) pairs the account has not enabled although its estate is there.
        self._disabled: set[tuple[str, str]] = set()
        # The EventBridge events of changes made after generation (launches, terminations, EC2 states).
        self.event_log = aws_events.EventLog()
        self._generate()

    # ----------------------------------------------------------------- generation

    def _generate(self) -> None:
        # Generation allocates millions of small objects and no cycles worth collecting; the
        # cyclic collector would otherwise rescan the growing heap again and again.
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._generate_records()
        finally:
            if enabled:
                gc.enable()

    def _generate_records(self) -> None:
        config = self.config
        rng = self._rng
        ids = self._ids
        for explicit in config.account_ids:
            ids.reserve(explicit)
        account_ids = list(config.account_ids)
        while len(account_ids) < config.accounts:
            account_ids.append(ids.account_id())
        staging = tuple(ids.account_id() for _ in range(2))
        fractions = Fractions(
            drill=config.drill_fraction,
            stopped=config.stopped_fraction,
            public_ip=config.public_ip_fraction,
            instance_profile=config.instance_profile_fraction,
            aws_origin=config.aws_origin_fraction,
            extended=config.extended_fraction,
        )
        self._factory = RecordFactory(rng, ids, fractions, staging)
        for index, account_id in enumerate(account_ids):
            drawn_external_id = f"drs-ext-{rng.getrandbits(64):016x}"  # drawn either way: same estate
            self._accounts.append(
                Account(
                    account_id=account_id,
                    role_name=config.role_name,
                    external_id=config.external_id or drawn_external_id,
                    regions=config.regions,
                    is_hub=index == 0,
                    name="hub" if index == 0 else f"target-{index:02d}",
                )
            )
        uninitialized = self._resolve_scope_specs(config.uninitialized_scopes, account_ids)
        self._disabled = self._resolve_scope_specs(config.disabled_regions, account_ids)
        anchor = parse_iso(config.anchor_time)
        for account_id in account_ids:
            for region in config.regions:
                # A region the account has not enabled holds nothing of it.
                initialized = (account_id, region) not in uninitialized | self._disabled
                if initialized and config.uninitialized_fraction > 0:
                    initialized = rng.random() >= config.uninitialized_fraction
                scope = self._new_scope(account_id, region, initialized)
                if initialized:
                    self._populate(scope, anchor)
        for scope in self._scopes.values():
            scope.ri_ids.sort()
            scope.server_ids.sort()
            scope.ec2_ids.sort()
            scope.job_ids.sort()

    @staticmethod
    def _resolve_scope_specs(specs: Iterable[str], account_ids: list[str]) -> set[tuple[str, str]]:
        resolved: set[tuple[str, str]] = set()
        for spec in specs:
            account, sep, region = spec.partition("#")
            if not sep or not region:
                raise ValueError(f"scope must be 'account#region': {spec!r}")
            if account == "*":
                resolved.update((a, region) for a in account_ids)
            elif len(account) < 12 and account.isdigit():
                resolved.add((account_ids[int(account)], region))
            else:
                resolved.add((account, region))
        return resolved

    def _new_scope(self, account_id: str, region: str, initialized: bool) -> ScopeData:
        network = self._factory.network(region, len(self._scopes) % 256)
        scope = ScopeData(account_id, region, initialized, network)
        self._scopes[(account_id, region)] = scope
        return scope

    def _populate(self, scope: ScopeData, anchor: float) -> None:
        config = self.config
        rng = self._rng
        factory = self._factory
        remaining = config.instances_per_scope
        while remaining > 0:
            size = min(remaining, rng.randint(1, config.max_servers_per_job))
            remaining -= size
            when = anchor - rng.randrange(3600, 30 * 86_400)
            job = factory.launch_job(scope.account_id, scope.region, rng.random() < config.drill_fraction, when)
            self._add_job(scope, job, sort=False)
            for _ in range(size):
                server = factory.source_server(scope.account_id, scope.region, when - 40 * 86_400)
                self._add_server(scope, server, sort=False)
                instance = factory.recovery_instance(server, job, scope.network, config.distinct_ec2_ids)
                self._add_instance(scope, instance, sort=False)
        for _ in range(config.idle_servers_per_scope):
            server = factory.source_server(scope.account_id, scope.region, anchor - 40 * 86_400)
            self._add_server(scope, server, sort=False)

    def _add_job(self, scope: ScopeData, job: Job, sort: bool = True) -> None:
        scope.jobs[job.job_id] = job
        if sort:
            insort(scope.job_ids, job.job_id)
        else:
            scope.job_ids.append(job.job_id)

    def _add_server(self, scope: ScopeData, server: SourceServer, sort: bool = True) -> None:
        scope.source_servers[server.source_server_id] = server
        self._server_scope[server.source_server_id] = scope
        if sort:
            insort(scope.server_ids, server.source_server_id)
        else:
            scope.server_ids.append(server.source_server_id)

    def _add_instance(self, scope: ScopeData, instance: RecoveryInstance, sort: bool = True) -> None:
        ri_id = instance.recovery_instance_id
        ec2_id = instance.ec2.instance_id
        scope.recovery_instances[ri_id] = instance
        scope.ec2_instances[ec2_id] = instance.ec2
        self._ri_scope[ri_id] = scope
        self._ec2_scope[ec2_id] = scope
        if sort:
            insort(scope.ri_ids, ri_id)
            insort(scope.ec2_ids, ec2_id)
        else:
            scope.ri_ids.append(ri_id)
            scope.ec2_ids.append(ec2_id)

    # ------------------------------------------------------------------ accessors

    @property
    def accounts(self) -> tuple[Account, ...]:
        with self.lock:
            return tuple(self._accounts)

    @property
    def hub_account_id(self) -> str:
        return self._accounts[0].account_id

    def account(self, account_id: str) -> Account | None:
        with self.lock:
            for account in self._accounts:
                if account.account_id == account_id:
                    return account
            return None

    def scope(self, account_id: str, region: str) -> ScopeData | None:
        """The scope's live data (hold ``lock`` while reading it), or None if it does not exist."""
        return self._scopes.get((account_id, region))

    def scopes(self) -> Iterator[ScopeData]:
        return iter(list(self._scopes.values()))

    def region_enabled(self, account_id: str, region: str) -> bool:
        """Whether the account can use the region (see simulator/regions.py): always for the
        regions enabled everywhere; for an opt-in region, when the account's estate operates there
        and it is not disabled for the account."""
        with self.lock:
            if not is_opt_in(region):
                return True
            if (account_id, region) in self._disabled:
                return False
            account = next((a for a in self._accounts if a.account_id == account_id), None)
            return account is not None and region in account.regions

    def enabled_regions(self, account_id: str) -> list[str]:
        """Every region the account can use, as DescribeRegions lists them (AllRegions false)."""
        with self.lock:
            known = dict.fromkeys([*ALL_REGIONS, *self.config.regions])
            return [region for region in known if self.region_enabled(account_id, region)]

    def set_region_enabled(self, account_id: str, region: str, enabled: bool) -> None:
        """Enable or disable an opt-in region for an account (between syncs)."""
        if not is_opt_in(region):
            raise ValueError(f"{region} is enabled in every account and cannot be disabled")
        with self.lock:
            index = next((i for i, a in enumerate(self._accounts) if a.account_id == account_id), None)
            if index is None:
                raise KeyError(account_id)
            account = self._accounts[index]
            if enabled:
                self._disabled.discard((account_id, region))
                if region not in account.regions:
                    self._accounts[index] = replace(account, regions=(*account.regions, region))
            else:
                self._disabled.add((account_id, region))

    def is_initialized(self, account_id: str, region: str) -> bool:
        scope = self._scopes.get((account_id, region))
        return scope is not None and scope.initialized

    def _visible_scopes(self, account_id: str | None, region: str | None) -> Iterator[ScopeData]:
        for scope in list(self._scopes.values()):
            if not scope.initialized:
                continue
            if account_id is not None and scope.account_id != account_id:
                continue
            if region is not None and scope.region != region:
                continue
            yield scope

    def recovery_instances(self, account_id: str | None = None, region: str | None = None) -> list[dict[str, Any]]:
        """Recovery instances as DescribeRecoveryInstances returns them (initialised scopes)."""
        with self.lock:
            return [
                scope.recovery_instances[ri_id].to_wire()
                for scope in self._visible_scopes(account_id, region)
                for ri_id in scope.ri_ids
            ]

    def recovery_instance(self, recovery_instance_id: str) -> dict[str, Any] | None:
        with self.lock:
            scope = self._ri_scope.get(recovery_instance_id)
            return None if scope is None else scope.recovery_instances[recovery_instance_id].to_wire()

    def source_servers(self, account_id: str | None = None, region: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                scope.source_servers[sid].to_wire()
                for scope in self._visible_scopes(account_id, region)
                for sid in scope.server_ids
            ]

    def source_server(self, source_server_id: str) -> dict[str, Any] | None:
        with self.lock:
            scope = self._server_scope.get(source_server_id)
            return None if scope is None else scope.source_servers[source_server_id].to_wire()

    def jobs(self, account_id: str | None = None, region: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                scope.jobs[job_id].to_wire()
                for scope in self._visible_scopes(account_id, region)
                for job_id in scope.job_ids
            ]

    def set_job_status(self, account_id: str, region: str, job_id: str, status: str) -> None:
        """What DescribeJobs says of a job from now on (PENDING | STARTED | COMPLETED)."""
        with self.lock:
            job = self._scopes[(account_id, region)].jobs[job_id]
            job.status = status
            job.json = None

    def ec2_instance(self, instance_id: str) -> dict[str, Any] | None:
        """The EC2 instance in boto3's DescribeInstances shape, or None."""
        with self.lock:
            scope = self._ec2_scope.get(instance_id)
            return None if scope is None else scope.ec2_instances[instance_id].to_dict()

    def total_recovery_instances(self, hidden_scopes: Iterable[str] = ()) -> int:
        """Live recovery instances DRS would report, leaving out ``hidden_scopes`` keys."""
        hidden = set(hidden_scopes)
        with self.lock:
            return sum(len(scope.ri_ids) for scope in self._visible_scopes(None, None) if scope.key not in hidden)

    def summary(self, hidden_scopes: Iterable[str] = ()) -> dict[str, Any]:
        """The ``GET /_simulator/estate`` document."""
        hidden = set(hidden_scopes)
        with self.lock:
            scopes = [
                {
                    "accountId": scope.account_id,
                    "region": scope.region,
                    "initialized": scope.initialized and scope.key not in hidden,
                    "regionEnabled": self.region_enabled(scope.account_id, scope.region),
                    "recoveryInstances": len(scope.ri_ids),
                    "sourceServers": len(scope.server_ids),
                }
                for scope in self._scopes.values()
            ]
            return {
                "hubAccountId": self.hub_account_id,
                "seed": self.config.seed,
                "accounts": [account.to_json() for account in self._accounts],
                "recoveryInstances": self.total_recovery_instances(hidden),
                "scopes": scopes,
            }

    # ------------------------------------------------------------------ mutations

    def _require_scope(self, account_id: str, region: str) -> ScopeData:
        scope = self._scopes.get((account_id, region))
        if scope is None or not scope.initialized:
            raise ValueError(f"DRS is not initialised in {account_id}#{region}")
        return scope

    def launch(self, account_id: str, region: str, count: int = 1, *, is_drill: bool = True) -> list[str]:
        """New source servers, each with a recovery instance and EC2 instance, launched by one
        new LAUNCH job. Returns the new recovery instance IDs."""
        if count < 1:
            raise ValueError("count must be at least 1")
        with self.lock:
            scope = self._require_scope(account_id, region)
            now = self._clock()
            job = self._factory.launch_job(account_id, region, is_drill, now)
            job.end_time = now + 1  # launches here complete at once
            self._add_job(scope, job)
            created = []
            for _ in range(count):
                server = self._factory.source_server(account_id, region, now - 86_400)
                self._add_server(scope, server)
                instance = self._factory.recovery_instance(
                    server, job, scope.network, self.config.distinct_ec2_ids, stopped=False
                )
                instance.ec2.launch_time = now
                self._add_instance(scope, instance)
                self._emit_launched(instance, now)
                created.append(instance.recovery_instance_id)
            return created

    def relaunch(self, source_server_id: str, *, is_drill: bool = True) -> str:
        """A newer recovery instance replaces the server's current one (DRS terminates the
        previous instance of a server it launches again). Returns the new recovery instance ID."""
        with self.lock:
            scope = self._server_scope.get(source_server_id)
            if scope is None:
                raise KeyError(source_server_id)
            server = scope.source_servers[source_server_id]
            now = self._clock()
            if server.recovery_instance_id is not None:
                self._retire(scope, scope.recovery_instances[server.recovery_instance_id])
            job = self._factory.launch_job(scope.account_id, scope.region, is_drill, now)
            job.end_time = now + 1
            self._add_job(scope, job)
            instance = self._factory.recovery_instance(
                server, job, scope.network, self.config.distinct_ec2_ids, stopped=False
            )
            instance.ec2.launch_time = now
            self._add_instance(scope, instance)
            self._emit_launched(instance, now)
            return instance.recovery_instance_id

    def terminate(self, recovery_instance_id: str) -> str:
        """Terminate one recovery instance as TerminateRecoveryInstances would; returns the job ID."""
        with self.lock:
            scope = self._ri_scope.get(recovery_instance_id)
            if scope is None:
                raise KeyError(recovery_instance_id)
            return self.terminate_many(scope.account_id, scope.region, [recovery_instance_id]).job_id

    def terminate_many(self, account_id: str, region: str, recovery_instance_ids: list[str]) -> Job:
        """All or nothing: unknown or already terminated IDs raise UnknownRecoveryInstancesError."""
        with self.lock:
            scope = self._require_scope(account_id, region)
            unique = list(dict.fromkeys(recovery_instance_ids))
            missing = [ri_id for ri_id in unique if ri_id not in scope.recovery_instances]
            if missing:
                raise UnknownRecoveryInstancesError(missing)
            now = self._clock()
            job = Job(
                job_id=self._ids.hex17("drsjob-"),
                account_id=account_id,
                region=region,
                job_type="TERMINATE",
                initiated_by="TERMINATE_RECOVERY_INSTANCES",
                creation_time=now,
                end_time=now + 1,
                status="COMPLETED",
                participants=[],
            )
            for ri_id in unique:
                instance = scope.recovery_instances[ri_id]
                job.participants.append(Participant(instance.source_server_id, ri_id, "TERMINATED"))
                self._retire(scope, instance)
            self._add_job(scope, job)
            return job

    def _retire(self, scope: ScopeData, instance: RecoveryInstance) -> None:
        ri_id = instance.recovery_instance_id
        del scope.recovery_instances[ri_id]
        _remove_sorted(scope.ri_ids, ri_id)
        self._ri_scope.pop(ri_id, None)
        ec2 = instance.ec2
        ec2.recovery_instance = None
        ec2.state = "terminated"
        ec2.public_ip = None
        ec2.private_ip = None
        ec2.invalidate()
        self.event_log.record(
            aws_events.ec2_state_change(scope.account_id, scope.region, ec2.instance_id, "terminated", self._clock())
        )
        server = scope.source_servers.get(instance.source_server_id)
        if server is not None and server.recovery_instance_id == ri_id:
            server.recovery_instance_id = None
            if server.last_launch is not None:
                server.last_launch.status = "TERMINATED"
            server.json = None

    def _emit_launched(self, instance: RecoveryInstance, now: float) -> None:
        """EC2 reports the new instance running; DRS then reports the server's launch result."""
        account_id, region = instance.account_id, instance.region
        self.event_log.record(aws_events.ec2_state_change(account_id, region, instance.ec2.instance_id, "running", now))
        self.event_log.record(
            aws_events.launch_result(account_id, region, instance.source_server_id, instance.job_id, now)
        )

    def events(self, *, drain: bool = False) -> list[dict[str, Any]]:
        """The EventBridge events of the changes so far (``drain``: and forget them)."""
        return self.event_log.drain() if drain else self.event_log.snapshot()

    def update_ec2(self, instance_id: str, **changes: Any) -> None:
        """Change an EC2 instance between syncs: state, private_ip, public_ip, instance_type,
        name, tags, vpc_id, subnet_id, security_groups, iam_instance_profile, launch_time."""
        unknown = set(changes) - _EC2_FIELDS
        if unknown:
            raise TypeError(f"unknown EC2 fields: {sorted(unknown)}")
        if "state" in changes and changes["state"] not in EC2_STATE_CODES:
            raise ValueError(f"unknown EC2 state {changes['state']!r}")
        with self.lock:
            scope = self._ec2_scope.get(instance_id)
            if scope is None:
                raise KeyError(instance_id)
            ec2 = scope.ec2_instances[instance_id]
            previous_state = ec2.state
            for key, value in changes.items():
                if key == "name":
                    ec2.tags["Name"] = value
                elif key == "tags":
                    ec2.tags = dict(value)
                elif key == "security_groups":
                    ec2.security_groups = tuple(tuple(group) for group in value)  # type: ignore[misc]
                else:
                    setattr(ec2, key, value)
            ec2.invalidate()
            if ec2.state != previous_state:
                self.event_log.record(
                    aws_events.ec2_state_change(scope.account_id, scope.region, instance_id, ec2.state, self._clock())
                )

    def set_scope_initialized(self, account_id: str, region: str, initialized: bool = True) -> None:
        """Mark DRS (un)initialised in a scope; a new region is added to the account."""
        with self.lock:
            index = next((i for i, a in enumerate(self._accounts) if a.account_id == account_id), None)
            if index is None:
                raise KeyError(account_id)
            scope = self._scopes.get((account_id, region))
            if scope is None:
                scope = self._new_scope(account_id, region, initialized)
                account = self._accounts[index]
                self._accounts[index] = replace(account, regions=(*account.regions, region))
            scope.initialized = initialized
