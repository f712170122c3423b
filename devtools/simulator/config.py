"""What estate to generate. Everything that shapes the generated data is here, so a seed plus
this object reproduces an estate exactly."""

from __future__ import annotations

from dataclasses import dataclass

from .regions import is_opt_in

DEFAULT_ROLE_NAME = "DRSOrchestrationRole"
DEFAULT_REGIONS = ("us-east-1", "us-west-2")
# A fixed anchor (not "now") so two runs with one seed produce identical timestamps.
DEFAULT_ANCHOR_TIME = "2025-06-01T00:00:00Z"


@dataclass(frozen=True)
class EstateConfig:
    """A seeded estate: ``accounts`` counts the hub, so 3 means the hub plus 2 targets."""

    accounts: int = 3
    regions: tuple[str, ...] = DEFAULT_REGIONS
    instances_per_scope: int = 30
    seed: int = 0
    role_name: str = DEFAULT_ROLE_NAME
    # One ExternalId for every account (the orchestration's create_target_account writes one
    # shared value, "drs-orchestration-cross-account", by default); None: one drawn per account.
    external_id: str | None = None
    # "account#region" entries where DRS was never initialised. The account part is an
    # account id or a small index ("0" = hub, "1" = first target) because ids come from the seed.
    uninitialized_scopes: tuple[str, ...] = ()
    # "account#region" entries naming an opt-in region the account has NOT enabled (account part
    # as above): every call there fails as AWS fails it (see simulator/regions.py).
    disabled_regions: tuple[str, ...] = ()
    # Fraction of the remaining scopes drawn (with the seed) to be uninitialised.
    uninitialized_fraction: float = 0.0
    # Explicit account ids (first = hub); missing ones are drawn from the seed.
    account_ids: tuple[str, ...] = ()
    # Source servers that replicate but never launched (no recovery instance), per scope.
    idle_servers_per_scope: int = 0
    drill_fraction: float = 0.8
    stopped_fraction: float = 0.1
    public_ip_fraction: float = 0.3
    instance_profile_fraction: float = 0.7
    aws_origin_fraction: float = 0.3
    # Servers replicated through a separate staging account (DRS "extended" source servers).
    extended_fraction: float = 0.1
    # Recovery instances per LAUNCH job (one job per wave of a plan).
    max_servers_per_job: int = 20
    anchor_time: str = DEFAULT_ANCHOR_TIME
    # The DRS model gives recoveryInstanceID and ec2InstanceID the same pattern but two fields;
    # distinct values by default catch code that queries EC2 with the recovery instance id.
    distinct_ec2_ids: bool = True

    def __post_init__(self) -> None:
        # Accept lists from callers and the CLI; store tuples so the config stays hashable.
        object.__setattr__(self, "regions", tuple(self.regions))
        object.__setattr__(self, "uninitialized_scopes", tuple(self.uninitialized_scopes))
        object.__setattr__(self, "disabled_regions", tuple(self.disabled_regions))
        for spec in self.disabled_regions:
            region = spec.partition("#")[2]
            if not is_opt_in(region):
                raise ValueError(f"only an opt-in region can be disabled, got {spec!r}")
        object.__setattr__(self, "account_ids", tuple(self.account_ids))
        if self.accounts < 1:
            raise ValueError("accounts must be at least 1 (the hub)")
        if not self.regions:
            raise ValueError("at least one region is required")
        if self.instances_per_scope < 0 or self.idle_servers_per_scope < 0:
            raise ValueError("instance counts must not be negative")
        if not 0.0 <= self.uninitialized_fraction <= 1.0:
            raise ValueError("uninitialized_fraction must be within 0..1")
        if len(self.account_ids) > self.accounts:
            raise ValueError("more account_ids than accounts")
        if self.max_servers_per_job < 1:
            raise ValueError("max_servers_per_job must be at least 1")
