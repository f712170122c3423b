"""What a protocol handler gets: the call (who, where, which operation) and the backend (estate,
faults, sessions). Handlers return a ``Reply`` and raise ``AwsError``; the server turns both into
HTTP responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .estate import Estate
from .faults import FaultInjector
from .identity import CredentialStore, Identity


class Reply(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Backend:
    estate: Estate
    faults: FaultInjector
    credentials: CredentialStore


@dataclass(frozen=True, slots=True)
class Call:
    service: str
    operation: str
    identity: Identity
    region: str
    request_id: str
    now: float
    backend: Backend

    @property
    def account_id(self) -> str:
        return self.identity.account_id

    @property
    def scope_key(self) -> str:
        return f"{self.identity.account_id}#{self.region}"
