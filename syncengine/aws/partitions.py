"""AWS partitions: which partition the hub is in, the DRS regions of a partition and role ARNs
in it, from botocore's partition and endpoint data (no network call). A GovCloud hub
(``aws-us-gov``) syncs, validates and assumes roles in GovCloud only: credentials of one
partition are not valid in another.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import botocore.session

DEFAULT_PARTITION = "aws"


@functools.cache
def _endpoint_resolver() -> Any:
    return botocore.session.get_session().get_component("endpoint_resolver")


@functools.cache
def partition_of(region: str) -> str:
    """The AWS partition of a region (``aws``, ``aws-us-gov``, ...), from botocore's endpoint
    data (no network call); an unknown region is in the commercial partition."""
    try:
        return str(_endpoint_resolver().get_partition_for_region(region))
    except Exception:  # botocore raises a bare exception for a region no partition matches
        return DEFAULT_PARTITION


def hub_partition(environ: Mapping[str, str] | None = None) -> str:
    """The partition of the hub: its home region's (``AWS_REGION``, as ``SyncSettings`` reads it).
    A GovCloud hub (``aws-us-gov``) syncs and accepts only GovCloud's DRS regions: credentials of
    one partition are not valid in another."""
    from syncengine.core.config import DEFAULT_HOME_REGION, ENV_HOME_REGION, ENV_HOME_REGION_FALLBACK

    env = os.environ if environ is None else environ
    return partition_of(env.get(ENV_HOME_REGION) or env.get(ENV_HOME_REGION_FALLBACK) or DEFAULT_HOME_REGION)


def drs_regions(partition: str | None = None) -> frozenset[str]:
    """Every region of ``partition`` (default: the hub's, ``hub_partition``) where DRS exists,
    from botocore's partition and endpoint data (no network call)."""
    return _drs_regions(partition or hub_partition())


@functools.cache
def _drs_regions(partition: str) -> frozenset[str]:
    return frozenset(botocore.session.get_session().get_available_regions("drs", partition_name=partition))


def role_arn_for(account_id: str, role_name: str, partition: str | None = None) -> str:
    return f"arn:{partition or hub_partition()}:iam::{account_id}:role/{role_name}"


__all__ = ["DEFAULT_PARTITION", "drs_regions", "hub_partition", "partition_of", "role_arn_for"]
