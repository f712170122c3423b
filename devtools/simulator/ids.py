"""Identifier and timestamp formats of the simulated services.

Real DRS and EC2 IDs are a prefix plus 17 lowercase hex digits (``s-``, ``i-``, ``drsjob-``,
``sn-``, ``vpc-``, ``subnet-``, ``sg-``, ``vol-``, ``r-``, ``ami-``). Drawing 68 random bits from
the estate's seeded ``random.Random`` keeps a whole estate reproducible from its seed.
"""

from __future__ import annotations

import random
import re
import time
from calendar import timegm

SOURCE_SERVER_ID = re.compile(r"^s-[0-9a-zA-Z]{17}$")
# The DRS model's pattern for both recoveryInstanceID and ec2InstanceID.
RECOVERY_INSTANCE_ID = re.compile(r"^i-[0-9a-fA-F]{8,}$")
JOB_ID = re.compile(r"^drsjob-[0-9a-zA-Z]{17}$")
ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
# EC2 accepts the old 8-digit and the current 17-digit form.
EC2_INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")


class IdFactory:
    """Unique, seeded IDs: one factory per estate so two estates never share state."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def hex17(self, prefix: str) -> str:
        while True:
            value = f"{prefix}{self._rng.getrandbits(68):017x}"
            if value not in self._used:
                self._used.add(value)
                return value

    def hex8(self, prefix: str) -> str:
        while True:
            value = f"{prefix}{self._rng.getrandbits(32):08x}"
            if value not in self._used:
                self._used.add(value)
                return value

    def account_id(self) -> str:
        # 12 digits, no leading zero, so the value never looks like an index or loses a digit.
        while True:
            value = str(self._rng.randrange(100_000_000_000, 1_000_000_000_000))
            if value not in self._used:
                self._used.add(value)
                return value

    def reserve(self, value: str) -> None:
        self._used.add(value)


def iso_z(epoch: float) -> str:
    """DRS's ISO8601DatetimeString: UTC, milliseconds, ``Z`` (the model's pattern)."""
    millis = round(epoch * 1000)
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


_ISO_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_iso(value: str) -> float:
    """Epoch seconds of an ISO-8601 timestamp; raises ValueError on anything else."""
    match = _ISO_RE.match(value.strip())
    if not match:
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    epoch = float(timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    if match.group(7):
        epoch += float(match.group(7))
    zone = match.group(8)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        epoch -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return epoch


def parse_amz_date(value: str) -> float:
    """Epoch seconds of SigV4's ``X-Amz-Date`` (``20250101T000000Z``)."""
    return float(timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
