"""Draws realistic records (hosts, source servers, EC2 instances, recovery instances, jobs) from
the estate's seeded random generator. Used for the initial estate and for launches at run time,
so both look alike. Kept cheap: 100,000 instances must generate in seconds."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .ids import IdFactory
from .model import Ec2Instance, Host, Job, LastLaunch, Participant, RecoveryInstance, SourceServer

# Small fixed vocabularies so tag-based server selection (protection groups) is testable.
APPLICATIONS = ("billing", "crm", "erp", "inventory", "payments", "portal", "reporting", "search")
ENVIRONMENTS = ("production", "staging", "development", "dr-test")
TIERS = ("web", "app", "db", "cache", "batch")
COST_CENTERS = ("CC-1001", "CC-1002", "CC-2001", "CC-3001")
INSTANCE_TYPES = ("t3.medium", "t3.large", "m5.large", "m5.xlarge", "c5.xlarge", "r5.large", "r5.2xlarge")
OPERATING_SYSTEMS = (
    ("Amazon Linux 2", "Linux/UNIX"),
    ("Red Hat Enterprise Linux 8.9", "Red Hat Enterprise Linux"),
    ("Ubuntu 22.04.4 LTS", "Linux/UNIX"),
    ("Microsoft Windows Server 2019 Datacenter", "Windows"),
    ("Microsoft Windows Server 2022 Datacenter", "Windows"),
)
CPU_MODELS = ("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", "AMD EPYC 7R32")
AZ_SUFFIXES = ("a", "b", "c")
# EC2 tags DRS puts on the instances it launches.
DRS_MANAGED_TAG = "AWSElasticDisasterRecoveryManaged"
DRS_SOURCE_TAG = "AWSElasticDisasterRecoverySourceServerID"
INSTANCE_PROFILE_NAME = "AWSElasticDisasterRecoveryRecoveryInstanceRole"
GIB = 1024**3


@dataclass(slots=True)
class ScopeNetwork:
    """The VPCs, subnets and security groups recovery instances of one scope land in."""

    vpc_ids: tuple[str, ...]
    # (subnet id, vpc id, availability zone)
    subnets: tuple[tuple[str, str, str], ...]
    security_groups: tuple[tuple[str, str], ...]
    image_ids: tuple[str, ...]
    # Second octet of the scope's private range, so IPs are unique within an estate.
    octet: int
    next_host: int = field(default=0)

    def next_private_ip(self) -> str:
        n = self.next_host
        self.next_host += 1
        return f"10.{self.octet}.{(n // 250) % 256}.{n % 250 + 4}"


@dataclass(frozen=True, slots=True)
class Fractions:
    drill: float
    stopped: float
    public_ip: float
    instance_profile: float
    aws_origin: float
    extended: float


def _fraction(bits: int) -> float:
    """A uniform value in [0, 1) from the low 16 bits of a draw."""
    return (bits & 0xFFFF) / 65536.0


class RecordFactory:
    def __init__(
        self, rng: random.Random, ids: IdFactory, fractions: Fractions, staging_accounts: tuple[str, ...]
    ) -> None:
        self.rng = rng
        self.ids = ids
        self.fractions = fractions
        self.staging_accounts = staging_accounts
        self.serial = 0  # global host counter: unique hostnames across the estate

    def network(self, region: str, octet: int) -> ScopeNetwork:
        ids = self.ids
        vpcs = tuple(ids.hex17("vpc-") for _ in range(2))
        subnets = tuple((ids.hex17("subnet-"), vpc, f"{region}{suffix}") for vpc in vpcs for suffix in AZ_SUFFIXES[:2])
        groups = tuple((ids.hex17("sg-"), name) for name in ("drs-recovery-default", "app-servers", "db-servers"))
        images = tuple(ids.hex17("ami-") for _ in range(2))
        return ScopeNetwork(vpcs, subnets, groups, images, octet)

    def host(self) -> tuple[Host, dict[str, str]]:
        # One 64-bit draw feeds every choice: random.choice costs a microsecond per call, and
        # generating 100,000 instances must take seconds.
        bits = self.rng.getrandbits(64)
        self.serial += 1
        app = APPLICATIONS[bits & 7]
        tier = TIERS[(bits >> 3) % 5]
        env = ENVIRONMENTS[(bits >> 6) & 3]
        hostname = f"{app}-{tier}-{self.serial:05d}"
        cores = (2, 4, 8, 16)[(bits >> 8) & 3]
        host = Host(
            hostname=hostname,
            fqdn=f"{hostname}.corp.example.com",
            os_name=OPERATING_SYSTEMS[(bits >> 10) % 5][0],
            cpu_cores=cores,
            cpu_model=CPU_MODELS[(bits >> 13) & 1],
            ram_bytes=cores * 4 * GIB,
            disk_bytes=(50, 100, 200, 500)[(bits >> 14) & 3] * GIB,
            recommended_instance_type=INSTANCE_TYPES[(bits >> 16) % 7],
        )
        tags = {
            "Name": hostname,
            "Application": app,
            "Environment": env,
            "Tier": tier,
            "CostCenter": COST_CENTERS[(bits >> 19) & 3],
        }
        return host, tags

    def source_server(self, account_id: str, region: str, added_time: float) -> SourceServer:
        fractions = self.fractions
        host, tags = self.host()
        sid = self.ids.hex17("s-")
        bits = self.rng.getrandbits(64)
        origin = None
        network_id = None
        if _fraction(bits) < fractions.aws_origin:
            environment = "AWS"
            # An AWS-hosted source in another region of the same account (cross-region DR).
            origin_region = "us-east-2" if region != "us-east-2" else "us-west-1"
            origin = (account_id, origin_region, f"{origin_region}a", self.ids.hex17("i-"))
            network_id = self.ids.hex17("sn-")
            ips: tuple[str, ...] = (f"172.31.{(bits >> 16) & 255}.{(bits >> 24) % 250 + 4}",)
        else:
            environment = "ON_PREMISES"
            ips = (f"192.168.{(bits >> 16) & 255}.{(bits >> 24) % 250 + 4}",)
        extended = _fraction(bits >> 32) < fractions.extended
        staging = self.staging_accounts[(bits >> 48) % len(self.staging_accounts)] if extended else account_id
        return SourceServer(
            source_server_id=sid,
            account_id=account_id,
            region=region,
            host=host,
            tags=tags,
            ips=ips,
            origin_environment=environment,
            origin=origin,
            staging_account_id=staging,
            extended=extended,
            source_network_id=network_id,
            added_time=added_time,
        )

    def launch_job(self, account_id: str, region: str, is_drill: bool, when: float) -> Job:
        return Job(
            job_id=self.ids.hex17("drsjob-"),
            account_id=account_id,
            region=region,
            job_type="LAUNCH",
            initiated_by="START_DRILL" if is_drill else "START_RECOVERY",
            creation_time=when,
            end_time=when + 600,
            status="COMPLETED",
            participants=[],
        )

    def recovery_instance(
        self,
        server: SourceServer,
        job: Job,
        network: ScopeNetwork,
        distinct_ec2_id: bool,
        stopped: bool | None = None,
    ) -> RecoveryInstance:
        """A recovery instance of ``server`` launched by ``job``, with its EC2 instance; links
        the server and the job to it."""
        fractions = self.fractions
        bits = self.rng.getrandbits(128)
        is_drill = job.initiated_by == "START_DRILL"
        launch_time = job.creation_time + 60 + (bits & 255)
        ri_id = self.ids.hex17("i-")
        ec2_id = self.ids.hex17("i-") if distinct_ec2_id else ri_id
        subnets = network.subnets
        subnet_id, vpc_id, az = subnets[(bits >> 8) % len(subnets)]
        groups = network.security_groups
        chosen_groups = (groups[0], groups[1 + (bits >> 16) % (len(groups) - 1)])
        if stopped is None:
            stopped = _fraction(bits >> 24) < fractions.stopped
        state = "stopped" if stopped else "running"
        public_ip = None
        if not stopped and _fraction(bits >> 40) < fractions.public_ip:
            public_ip = (
                f"{(3, 18, 34, 52, 54)[(bits >> 56) % 5]}.{(bits >> 64) & 255}."
                f"{(bits >> 72) & 255}.{(bits >> 80) % 254 + 1}"
            )
        profile = None
        if _fraction(bits >> 88) < fractions.instance_profile:
            profile = f"arn:aws:iam::{server.account_id}:instance-profile/{INSTANCE_PROFILE_NAME}"
        platform = "Windows" if server.host.os_name.startswith("Microsoft") else "Linux/UNIX"
        # DRS copies the source server's tags to the instance ("copy tags") and adds its own.
        ec2_tags = {
            **server.tags,
            DRS_MANAGED_TAG: "drs.amazonaws.com",
            DRS_SOURCE_TAG: server.source_server_id,
        }
        ec2 = Ec2Instance(
            instance_id=ec2_id,
            account_id=server.account_id,
            region=server.region,
            availability_zone=az,
            instance_type=server.host.recommended_instance_type,
            state=state,
            private_ip=network.next_private_ip(),
            public_ip=public_ip,
            launch_time=launch_time,
            vpc_id=vpc_id,
            subnet_id=subnet_id,
            security_groups=chosen_groups,
            iam_instance_profile=profile,
            image_id=network.image_ids[(bits >> 104) % len(network.image_ids)],
            tags=ec2_tags,
            platform_details=platform,
        )
        instance = RecoveryInstance(
            recovery_instance_id=ri_id,
            account_id=server.account_id,
            region=server.region,
            source_server_id=server.source_server_id,
            ec2=ec2,
            job_id=job.job_id,
            is_drill=is_drill,
            point_in_time=job.creation_time - 60 * (1 + (bits >> 112) % 29),
            origin_environment=server.origin_environment,
            host=server.host,
            # Shared with the server: tags are never changed in place, only replaced.
            tags=server.tags,
        )
        ec2.recovery_instance = instance
        server.recovery_instance_id = ri_id
        server.last_launch = LastLaunch(
            job_id=job.job_id,
            launch_type="DRILL" if is_drill else "RECOVERY",
            api_call_time=job.creation_time,
            status="LAUNCHED",
        )
        server.json = None
        job.participants.append(Participant(server.source_server_id, ri_id, "LAUNCHED"))
        job.json = None
        return instance
