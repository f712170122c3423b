"""Per-account credentials on clients that every account of a region shares.

A shared DRS/EC2 client (``syncengine.aws.clients``) signs each request with the credentials of the
account the *calling task* acts for: ``AccountClient`` binds them for the duration of one call
(a ContextVar, so only that task sees them) and ``CallScopedCredentials``, the shared client's
credentials, reads them, refusing to sign when none are bound. The client gets them the public
way, from its session's credential provider (``CallScopedCredentialResolver``, registered as the
session's ``credential_provider`` component); botocore's signer asks credentials for
``get_frozen_credentials()`` before every signature.

Our own account binds the session's own credentials object (botocore's credential chain), so it
signs through the same clients and they refresh as they always do.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiobotocore.credentials import AioCredentials
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError

# Refresh assumed-role credentials this long before they expire, so no call signs with a
# credential that lapses in flight.
CREDENTIAL_REFRESH_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime

    def fresh(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) + CREDENTIAL_REFRESH_MARGIN < self.expiration


class OwnCredentials:
    """Our own account's credentials: the session's credential chain (None: it found none, and a
    call fails as botocore fails it, ``NoCredentialsError``)."""

    __slots__ = ("chain",)

    def __init__(self, chain: AioCredentials | None):
        self.chain = chain

    async def frozen(self) -> ReadOnlyCredentials:
        if self.chain is None:
            raise NoCredentialsError()
        frozen: ReadOnlyCredentials = await self.chain.get_frozen_credentials()
        return frozen


Signer = Credentials | OwnCredentials

# The credentials of the account the current task's AWS call acts for (see AccountClient).
_CALL_CREDENTIALS: ContextVar[Signer | None] = ContextVar("syncengine_call_credentials", default=None)


class CallScopedCredentials(AioCredentials):
    """A shared client's credentials: whichever account's ``AccountClient`` made the call being
    signed. With none bound it refuses to sign, so a request can never go out signed for an
    account other than the one its caller named."""

    def __init__(self) -> None:
        super().__init__(access_key="", secret_key="")

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        current = _CALL_CREDENTIALS.get()
        if current is None:
            raise RuntimeError("a shared client was called without an account (use AwsClients.client)")
        if isinstance(current, OwnCredentials):
            return await current.frozen()
        return ReadOnlyCredentials(current.access_key_id, current.secret_access_key, current.session_token, None)


class CallScopedCredentialResolver:
    """A session's credential provider (what botocore's ``CredentialResolver`` is to a session)
    whose clients sign as the account bound to each call."""

    async def load_credentials(self) -> CallScopedCredentials:
        return CallScopedCredentials()


class AccountClient:
    """One account's handle on a client shared by every account of a (service, region): its API
    methods bind the account's credentials for the duration of the call (a ContextVar, so only
    the calling task sees them); every other attribute is the shared client's."""

    __slots__ = ("_client", "_credentials")

    def __init__(self, client: Any, credentials: Signer):
        self._client = client
        self._credentials = credentials

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self._client.meta.method_to_api_mapping:
            return attribute
        credentials = self._credentials

        async def call_as_account(*args: Any, **kwargs: Any) -> Any:
            token = _CALL_CREDENTIALS.set(credentials)
            try:
                return await attribute(*args, **kwargs)
            finally:
                _CALL_CREDENTIALS.reset(token)

        return call_as_account
