"""The records of a simulated estate and their wire shapes.

Records are mutable (the estate changes between syncs) and cache their serialised form: a page
of 200 recovery instances is then a join of cached bytes, not 200 ``json.dumps`` calls. Any
change goes through ``Estate``, which drops the caches it affects (``invalidate``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .ids import iso_z
from .regions import partition_of

EC2_STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}
# DRS reports the EC2 state in its own enum (EC2InstanceState).
DRS_EC2_STATE = {
    "pending": "PENDING",
    "running": "RUNNING",
    "shutting-down": "SHUTTING-DOWN",
    "terminated": "TERMINATED",
    "stopping": "STOPPING",
    "stopped": "STOPPED",
}

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def to_json_bytes(value: Any) -> bytes:
    return _dumps(value).encode()


def derived_id(prefix: str, source_id: str) -> str:
    """A secondary ID (reservation, volume) that follows from a unique 17-hex ID: unique too,
    stable, and free at generation time."""
    return prefix + source_id[-17:][::-1]


def derived_mac(source_id: str) -> str:
    h = source_id[-10:]
    return f"02:{h[0:2]}:{h[2:4]}:{h[4:6]}:{h[6:8]}:{h[8:10]}"


@dataclass(frozen=True)
class Account:
    account_id: str
    role_name: str
    external_id: str
    regions: tuple[str, ...]
    is_hub: bool
    name: str

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.role_name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "accountId": self.account_id,
            "accountName": self.name,
            "roleName": self.role_name,
            "roleArn": self.role_arn,
            "externalId": self.external_id,
            "regions": list(self.regions),
            "isHub": self.is_hub,
        }


@dataclass(slots=True)
class Ec2Instance:
    instance_id: str
    account_id: str
    region: str
    availability_zone: str
    instance_type: str
    state: str
    private_ip: str | None
    public_ip: str | None
    launch_time: float
    vpc_id: str | None
    subnet_id: str | None
    security_groups: tuple[tuple[str, str], ...]
    iam_instance_profile: str | None
    image_id: str
    tags: dict[str, str]
    platform_details: str = "Linux/UNIX"
    # The recovery instance whose cached JSON embeds this instance's state and IPs.
    recovery_instance: RecoveryInstance | None = None
    xml: bytes | None = None

    @property
    def name(self) -> str | None:
        return self.tags.get("Name")

    @property
    def reservation_id(self) -> str:
        # Derived, not drawn: nothing reads it but the XML, and every draw costs generation time.
        return derived_id("r-", self.instance_id)

    def invalidate(self) -> None:
        self.xml = None
        if self.recovery_instance is not None:
            self.recovery_instance.json = None

    def to_dict(self) -> dict[str, Any]:
        """boto3's DescribeInstances shape (LaunchTime as an ISO string)."""
        item: dict[str, Any] = {
            "InstanceId": self.instance_id,
            "ImageId": self.image_id,
            "InstanceType": self.instance_type,
            "State": {"Code": EC2_STATE_CODES[self.state], "Name": self.state},
            "LaunchTime": iso_z(self.launch_time),
            "Placement": {"AvailabilityZone": self.availability_zone, "Tenancy": "default"},
            "SecurityGroups": [{"GroupId": gid, "GroupName": name} for gid, name in self.security_groups],
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
        }
        for key, value in (
            ("PrivateIpAddress", self.private_ip),
            ("PublicIpAddress", self.public_ip),
            ("VpcId", self.vpc_id),
            ("SubnetId", self.subnet_id),
        ):
            if value is not None:
                item[key] = value
        if self.iam_instance_profile:
            item["IamInstanceProfile"] = {"Arn": self.iam_instance_profile}
        return item


@dataclass(slots=True)
class Host:
    """What a source server and its recovery instance share: the machine being protected."""

    hostname: str
    fqdn: str
    os_name: str
    cpu_cores: int
    cpu_model: str
    ram_bytes: int
    disk_bytes: int
    recommended_instance_type: str


@dataclass(slots=True)
class LastLaunch:
    job_id: str
    launch_type: str  # RECOVERY | DRILL
    api_call_time: float
    status: str  # LAUNCHED | TERMINATED | ...


@dataclass(slots=True)
class RecoveryInstance:
    recovery_instance_id: str
    account_id: str
    region: str
    source_server_id: str
    ec2: Ec2Instance
    job_id: str
    is_drill: bool
    point_in_time: float
    origin_environment: str
    host: Host
    tags: dict[str, str]
    json: bytes | None = None

    def arn(self) -> str:
        partition = partition_of(self.region)
        return f"arn:{partition}:drs:{self.region}:{self.account_id}:recovery-instance/{self.recovery_instance_id}"

    @property
    def mac(self) -> str:
        return derived_mac(self.ec2.instance_id)

    @property
    def volume_id(self) -> str:
        return derived_id("vol-", self.recovery_instance_id)

    def to_wire(self) -> dict[str, Any]:
        ec2 = self.ec2
        ips = [ip for ip in (ec2.private_ip, ec2.public_ip) if ip]
        host = self.host
        return {
            "arn": self.arn(),
            "recoveryInstanceID": self.recovery_instance_id,
            "sourceServerID": self.source_server_id,
            "ec2InstanceID": ec2.instance_id,
            "ec2InstanceState": DRS_EC2_STATE[ec2.state],
            "jobID": self.job_id,
            "isDrill": self.is_drill,
            "pointInTimeSnapshotDateTime": iso_z(self.point_in_time),
            "originEnvironment": self.origin_environment,
            "originAvailabilityZone": ec2.availability_zone,
            "agentVersion": "4.5.2",
            "tags": dict(self.tags),
            "dataReplicationInfo": {"dataReplicationState": "NOT_STARTED", "replicatedDisks": []},
            "failback": {"state": "FAILBACK_NOT_STARTED"},
            "recoveryInstanceProperties": {
                "lastUpdatedDateTime": iso_z(ec2.launch_time + 120),
                "identificationHints": {
                    "hostname": host.hostname,
                    "fqdn": host.fqdn,
                    "awsInstanceID": ec2.instance_id,
                },
                "networkInterfaces": [{"ips": ips, "isPrimary": True, "macAddress": self.mac}],
                "cpus": [{"cores": host.cpu_cores, "modelName": host.cpu_model}],
                "ramBytes": host.ram_bytes,
                "os": {"fullString": host.os_name},
                "disks": [
                    {
                        "bytes": host.disk_bytes,
                        "ebsVolumeID": self.volume_id,
                        "internalDeviceName": "/dev/xvda",
                    }
                ],
            },
        }

    def wire_bytes(self) -> bytes:
        if self.json is None:
            self.json = to_json_bytes(self.to_wire())
        return self.json


@dataclass(slots=True)
class SourceServer:
    source_server_id: str
    account_id: str
    region: str
    host: Host
    tags: dict[str, str]
    ips: tuple[str, ...]
    origin_environment: str  # ON_PREMISES | AWS
    # (account, region, availability zone, instance id) of an AWS-hosted source.
    origin: tuple[str, str, str, str] | None
    staging_account_id: str
    extended: bool
    source_network_id: str | None
    added_time: float
    recovery_instance_id: str | None = None
    last_launch: LastLaunch | None = None
    json: bytes | None = None

    def arn(self) -> str:
        partition = partition_of(self.region)
        return f"arn:{partition}:drs:{self.region}:{self.account_id}:source-server/{self.source_server_id}"

    @property
    def mac(self) -> str:
        return derived_mac(self.source_server_id)

    def to_wire(self) -> dict[str, Any]:
        host = self.host
        hints: dict[str, Any] = {"hostname": host.hostname, "fqdn": host.fqdn}
        if self.origin is not None:
            hints["awsInstanceID"] = self.origin[3]
        life_cycle: dict[str, Any] = {
            "addedToServiceDateTime": iso_z(self.added_time),
            "firstByteDateTime": iso_z(self.added_time + 300),
            "lastSeenByServiceDateTime": iso_z(self.added_time + 86_400),
            "elapsedReplicationDuration": "P30D",
        }
        if self.last_launch is not None:
            launch = self.last_launch
            life_cycle["lastLaunch"] = {
                "initiated": {
                    "jobID": launch.job_id,
                    "type": launch.launch_type,
                    "apiCallDateTime": iso_z(launch.api_call_time),
                },
                "status": launch.status,
            }
        staging: dict[str, Any] = {
            "stagingAccountID": self.staging_account_id,
            "status": "EXTENDED" if self.extended else "NOT_EXTENDED",
        }
        if self.extended:
            staging["stagingSourceServerArn"] = (
                f"arn:{partition_of(self.region)}:drs:{self.region}:{self.staging_account_id}:source-server/{self.source_server_id}"
            )
        item: dict[str, Any] = {
            "sourceServerID": self.source_server_id,
            "arn": self.arn(),
            "tags": dict(self.tags),
            "agentVersion": "4.5.2",
            "replicationDirection": "FAILOVER",
            "lastLaunchResult": "SUCCEEDED" if self.last_launch is not None else "NOT_STARTED",
            "lifeCycle": life_cycle,
            "dataReplicationInfo": {
                "dataReplicationState": "CONTINUOUS",
                "lagDuration": "PT0S",
                "replicatedDisks": [
                    {
                        "deviceName": "/dev/sda",
                        "totalStorageBytes": host.disk_bytes,
                        "replicatedStorageBytes": host.disk_bytes,
                        "backloggedStorageBytes": 0,
                        "rescannedStorageBytes": 0,
                    }
                ],
            },
            "sourceProperties": {
                "lastUpdatedDateTime": iso_z(self.added_time + 86_400),
                "recommendedInstanceType": host.recommended_instance_type,
                "identificationHints": hints,
                "networkInterfaces": [{"ips": list(self.ips), "isPrimary": True, "macAddress": self.mac}],
                "disks": [{"deviceName": "/dev/sda", "bytes": host.disk_bytes}],
                "cpus": [{"cores": host.cpu_cores, "modelName": host.cpu_model}],
                "ramBytes": host.ram_bytes,
                "os": {"fullString": host.os_name},
                "supportsNitroInstances": True,
            },
            "stagingArea": staging,
        }
        if self.recovery_instance_id is not None:
            item["recoveryInstanceId"] = self.recovery_instance_id
        if self.source_network_id is not None:
            item["sourceNetworkID"] = self.source_network_id
        if self.origin is not None:
            item["sourceCloudProperties"] = {
                "originAccountID": self.origin[0],
                "originRegion": self.origin[1],
                "originAvailabilityZone": self.origin[2],
            }
        return item

    def wire_bytes(self) -> bytes:
        if self.json is None:
            self.json = to_json_bytes(self.to_wire())
        return self.json


@dataclass(slots=True)
class Participant:
    source_server_id: str
    recovery_instance_id: str | None
    launch_status: str


@dataclass(slots=True)
class Job:
    job_id: str
    account_id: str
    region: str
    job_type: str  # LAUNCH | TERMINATE
    initiated_by: str  # START_DRILL | START_RECOVERY | TERMINATE_RECOVERY_INSTANCES
    creation_time: float
    end_time: float | None
    status: str  # PENDING | STARTED | COMPLETED
    participants: list[Participant]
    tags: dict[str, str] = field(default_factory=dict)
    json: bytes | None = None

    def arn(self) -> str:
        return f"arn:{partition_of(self.region)}:drs:{self.region}:{self.account_id}:job/{self.job_id}"

    def to_wire(self, status: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "jobID": self.job_id,
            "arn": self.arn(),
            "type": self.job_type,
            "initiatedBy": self.initiated_by,
            "creationDateTime": iso_z(self.creation_time),
            "status": status or self.status,
            "participatingServers": [
                {
                    "sourceServerID": p.source_server_id,
                    "launchStatus": p.launch_status,
                    **({"recoveryInstanceID": p.recovery_instance_id} if p.recovery_instance_id else {}),
                }
                for p in self.participants
            ],
            "tags": dict(self.tags),
        }
        if self.end_time is not None and (status is None or status == "COMPLETED"):
            item["endDateTime"] = iso_z(self.end_time)
        return item

    def wire_bytes(self) -> bytes:
        if self.json is None:
            self.json = to_json_bytes(self.to_wire())
        return self.json
