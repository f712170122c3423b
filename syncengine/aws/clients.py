"""All AWS I/O goes through here: one shared aioboto3 Session, per-account credentials from STS
AssumeRole (ExternalId, a session policy and name per purpose: ``syncengine.aws.sessions``; cached
until near expiry), clients opened inside the run and closed with it, and one ``call`` that
applies the limiters and the retry policy. Partitions and DRS regions: ``syncengine.aws.partitions``.

DRS and EC2 clients are shared by every account of a region, our own included: a client is bound
to a region and an endpoint, not to an account, except through the credentials its signer holds.
Building one costs CPU (botocore builds a client class with a method per operation, EC2 has
hundreds, and the connector loads the CA bundle) and a connection pool; a large estate would build
two per account and region. So each (service, region) gets one client whose credentials are those
of the account the *calling task* acts for: the client comes from a session whose credential
provider (a public session component) hands it ``CallScopedCredentials``, bound per call by
``AccountClient``; every account's requests to a regional endpoint share its connections, as they
share its host in AWS.

Clients are never kept at module scope: a client bound to a dead loop fails in confusing ways.
The Session (its loaded service models are the costly part) lives for the process; clients live for the run, except
on the resident loop of ``syncengine.core.resident.run_blocking`` (a Lambda container), whose pool
keeps our own account's clients and the shared DRS/EC2 clients across runs.
"""

from __future__ import annotations

import contextlib
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from syncengine.aws.credentials import AccountClient, CallScopedCredentialResolver, Credentials, OwnCredentials
from syncengine.aws.fastpath import FastResponseParserFactory
from syncengine.aws.partitions import drs_regions, hub_partition, partition_of, role_arn_for  # noqa: F401 (re-exported)
from syncengine.aws.sdk_internals import HostCheckingHTTPSession
from syncengine.aws.sessions import ASSUME_ROLE_DURATION_SECONDS, SessionPurpose, session_name, session_policy
from syncengine.core.callstats import CallStats
from syncengine.core.config import NO_SDK_RETRIES, SyncSettings
from syncengine.core.errors import AccessDeniedError, AwsError, MalformedResponseError
from syncengine.core.logging import get_logger
from syncengine.core.models import AccountTarget
from syncengine.core.resident import current_pool
from syncengine.core.retry import CallContext, call_with_retry

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import AsyncIterator

log = get_logger(__name__)

# Services whose clients every account of a region shares. Only services whose endpoint rules
# do not depend on the caller's account (no ``AccountId`` parameter, unlike DynamoDB's):
# tests/integration/test_shared_clients.py checks botocore's rules still say so.
SHARED_CLIENT_SERVICES = frozenset({"drs", "ec2"})

# The process's one Session, and the botocore session of each Session built here (aioboto3 keeps
# it in a private attribute: we keep our own reference instead).
_shared_session: aioboto3.Session | None = None
_botocore_sessions: weakref.WeakKeyDictionary[aioboto3.Session, AioSession] = weakref.WeakKeyDictionary()
# A Session's companion for shared DRS/EC2 clients (see ``account_scoped_session``).
_scoped_sessions: weakref.WeakKeyDictionary[AioSession, aioboto3.Session] = weakref.WeakKeyDictionary()


def new_session() -> aioboto3.Session:
    """An aioboto3 Session whose clients parse the estate-sized answers with the engine's parsers
    (``syncengine.aws.fastpath``, a registered ``response_parser_factory``)."""
    botocore_session = AioSession()
    botocore_session.register_component("response_parser_factory", FastResponseParserFactory())
    session = aioboto3.Session(botocore_session=botocore_session)
    _botocore_sessions[session] = botocore_session
    return session


def shared_session() -> aioboto3.Session:
    """The process's one aioboto3 Session (a Session loads its service models again)."""
    global _shared_session
    if _shared_session is None:
        _shared_session = new_session()
    return _shared_session


def botocore_session_of(session: aioboto3.Session) -> AioSession:
    """The botocore session of a Session built by ``new_session`` (else the shared Session's)."""
    found = _botocore_sessions.get(session)
    return found if found is not None else _botocore_sessions[shared_session()]


def account_scoped_session(session: aioboto3.Session) -> aioboto3.Session:
    """The Session that builds ``session``'s shared DRS/EC2 clients: its credential provider (the
    public ``credential_provider`` component) gives every client ``CallScopedCredentials``, which
    sign as the account bound to each call. It shares ``session``'s loaded service models and
    parsers, so it costs no model loading of its own."""
    base = botocore_session_of(session)
    scoped = _scoped_sessions.get(base)
    if scoped is None:
        botocore_session = AioSession()
        botocore_session.register_component("data_loader", base.get_component("data_loader"))
        botocore_session.register_component("response_parser_factory", base.get_component("response_parser_factory"))
        botocore_session.register_component("credential_provider", CallScopedCredentialResolver())
        scoped = _scoped_sessions[base] = aioboto3.Session(botocore_session=botocore_session)
    return scoped


def preload_service_models(settings: SyncSettings) -> None:
    """Load what this process's first DRS, EC2 and STS clients would load on creation (service
    models, endpoint rules, endpoint data: most of it EC2's model) into the shared
    session's loader, so a Lambda function pays it in its init phase, not in its first invocation:
    "Initialize SDK clients ... outside of the function handler"
    (https://docs.aws.amazon.com/lambda/latest/dg/best-practices.html)."""
    botocore_session = botocore_session_of(shared_session())
    loader = botocore_session.get_component("data_loader")
    for service in ("drs", "ec2", "sts"):
        for model in ("service-2", "endpoint-rule-set-1"):
            loader.load_service_model(service, model)
    botocore_session.get_component("endpoint_resolver")
    drs_regions()


class AwsClients:
    """Clients and credentials of one run. Use as ``async with AwsClients(settings) as aws``."""

    def __init__(
        self,
        settings: SyncSettings,
        *,
        session: aioboto3.Session | None = None,
        stats: CallStats | None = None,
    ):
        self.settings = settings
        self.session = session or shared_session()
        self.stats = stats or CallStats()
        # The process's resident pool (syncengine.core.resident) when this run is on its loop and uses
        # the shared Session its clients were built from; None: every client is closed with the run.
        pool = current_pool()
        self._pool = pool if pool is not None and self.session is _shared_session else None
        # Bounded at or below the connection pool: aiobotocore signs before it waits for a
        # connection, and a request queued past ~5 minutes fails with "Signature expired".
        self.limiter = anyio.CapacityLimiter(settings.max_concurrency)
        self._config = AioConfig(
            retries=dict(NO_SDK_RETRIES),
            max_pool_connections=settings.max_pool_connections,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            # Host names checked on TLS (syncengine.aws.sdk_internals: aiobotocore leaves it off).
            http_session_cls=HostCheckingHTTPSession,
            # botocore re-validates every attribute of every BatchWriteItem against the model
            # (the largest CPU cost of a cold sync in profiles); the engine builds its requests
            # from typed code and the services validate them anyway.
            parameter_validation=False,
        )
        # key -> (client, its credentials, its context manager to close it with: None for an
        # AccountClient, whose shared client is closed with the run)
        self._clients: dict[tuple[str, str, str], tuple[Any, Credentials | None, Any]] = {}
        self._client_locks: dict[tuple[str, str, str], anyio.Lock] = {}
        # (service, region) -> (shared client, its context manager)
        self._shared: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._shared_locks: dict[tuple[str, str], anyio.Lock] = {}
        # Per (account, purpose): a terminate session is never a sync's (syncengine.aws.sessions).
        self._credentials: dict[tuple[str, SessionPurpose], Credentials] = {}
        self._credential_failures: dict[tuple[str, SessionPurpose], AwsError] = {}
        self._account_locks: dict[tuple[str, SessionPurpose], anyio.Lock] = {}
        self._current_account_id: str | None = None

    async def __aenter__(self) -> AwsClients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Closing clients must finish even when the run is being cancelled.
        with anyio.CancelScope(shield=True):
            for key in list(self._clients):
                await self._close(key)
            for shared_key in list(self._shared):
                _, context = self._shared.pop(shared_key)
                if context is not None:
                    with contextlib.suppress(Exception):
                        await context.__aexit__(None, None, None)

    async def _close(self, key: tuple[str, str, str]) -> None:
        entry = self._clients.pop(key, None)
        if entry is not None and entry[2] is not None:
            with contextlib.suppress(Exception):
                await entry[2].__aexit__(None, None, None)

    @staticmethod
    def _account_key(account: AccountTarget | None, purpose: SessionPurpose) -> str:
        """ "" for our own account; else the account, and the purpose unless it is a sync's."""
        if account is None or not account.role_arn:
            return ""
        return account.account_id if purpose is SessionPurpose.SYNC else f"{account.account_id}/{purpose.value}"

    async def release(self, services: tuple[str, ...], region: str, account: AccountTarget | None = None) -> None:
        """Drop the clients a finished scope used: a DRS/EC2 handle is only a reference to its
        region's shared client; any other client holds a connection pool and is closed."""
        account_key = self._account_key(account, SessionPurpose.SYNC)  # syncs release their clients
        with anyio.CancelScope(shield=True):
            for service in services:
                await self._close((service, region, account_key))

    async def client(
        self,
        service: str,
        region: str,
        account: AccountTarget | None = None,
        purpose: SessionPurpose = SessionPurpose.SYNC,
    ) -> Any:
        """A client for ``service`` in ``region`` acting in ``account`` (None: our own account),
        through a session of ``purpose`` (syncengine.aws.sessions: what it may do, its name)."""
        account_key = self._account_key(account, purpose)
        key = (service, region, account_key)
        lock = self._client_locks.setdefault(key, anyio.Lock())
        async with lock:
            cached = self._clients.get(key)
            credentials = await self.credentials_for(account, purpose) if account and account_key else None
            if cached is not None and cached[1] == credentials:
                return cached[0]
            if cached is not None:
                await self._close(key)
            if service in SHARED_CLIENT_SERVICES:
                signer = credentials if credentials is not None else await self._own_credentials()
                handle = AccountClient(await self._shared_client(service, region), signer)
                self._clients[key] = (handle, credentials, None)
                return handle
            keys: dict[str, Any] = {}
            if credentials is not None:
                keys = {
                    "aws_access_key_id": credentials.access_key_id,
                    "aws_secret_access_key": credentials.secret_access_key,
                    "aws_session_token": credentials.session_token,
                }
            client, context = await self._open(service, region, **keys)
            self._clients[key] = (client, credentials, context)
            return client

    async def _open(self, service: str, region: str, *, shared: bool = False, **keys: Any) -> tuple[Any, Any]:
        """A client and the context manager that closes it (None: the resident pool's, which
        outlives this run). Clients of our own account (no ``keys``) and ``shared`` DRS/EC2
        clients come from the pool when there is one; a client holding an account's explicit
        credentials never does."""
        if self._pool is None or (keys and not shared):
            return await self._open_new(service, region, shared=shared, **keys)
        settings = self.settings
        key = (
            service,
            region,
            shared,
            settings.endpoint_url(service),
            settings.max_pool_connections,
            settings.connect_timeout,
            settings.read_timeout,
        )
        client = await self._pool.client(key, lambda: self._open_new(service, region, shared=shared, **keys))
        return client, None

    async def _open_new(self, service: str, region: str, *, shared: bool = False, **keys: Any) -> tuple[Any, Any]:
        """A new client (and the context manager that closes it) with the engine's config and
        endpoint override; ``keys`` are explicit credentials, none: the session's own; ``shared``:
        from ``account_scoped_session``, signed per call as the bound account."""
        kwargs: dict[str, Any] = {"region_name": region, "config": self._config, **keys}
        endpoint = self.settings.endpoint_url(service)
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        session = account_scoped_session(self.session) if shared else self.session
        context = session.client(service, **kwargs)
        client = await context.__aenter__()
        return client, context

    async def _own_credentials(self) -> OwnCredentials:
        """Our own account's credentials for the shared clients: the session's credential chain
        (resolved once per session, refreshed by botocore as it refreshes any client's)."""
        return OwnCredentials(await self.session.get_credentials())  # aioboto3's: a coroutine

    async def _shared_client(self, service: str, region: str) -> Any:
        """The one ``service`` client of ``region`` that every assumed-role account signs through."""
        key = (service, region)
        async with self._shared_locks.setdefault(key, anyio.Lock()):
            entry = self._shared.get(key)
            if entry is None:
                client, context = await self._open(service, region, shared=True)
                entry = self._shared[key] = (client, context)
            return entry[0]

    async def credentials_for(
        self, account: AccountTarget, purpose: SessionPurpose = SessionPurpose.SYNC
    ) -> Credentials | None:
        """Assumed-role credentials of ``account`` for ``purpose``: one AssumeRole per account and
        purpose per run, refreshed only when near expiry; a failure is remembered so the
        account's other scopes do not retry a role that cannot be assumed."""
        if not account.role_arn:
            return None
        key = (account.account_id, purpose)
        lock = self._account_locks.setdefault(key, anyio.Lock())
        async with lock:
            failure = self._credential_failures.get(key)
            if failure is not None:
                raise failure
            cached = self._credentials.get(key)
            if cached is not None and cached.fresh():
                return cached
            try:
                credentials = await self._assume_role(account, purpose)
            except AwsError as exc:
                self._credential_failures[key] = exc
                raise
            self._credentials[key] = credentials
            return credentials

    async def _assume_role(self, account: AccountTarget, purpose: SessionPurpose) -> Credentials:
        sts = await self.client("sts", self.settings.home_region)
        params: dict[str, Any] = {
            "RoleArn": account.role_arn,
            "RoleSessionName": session_name(purpose, self.settings.caller),
            "Policy": session_policy(purpose),
            "DurationSeconds": ASSUME_ROLE_DURATION_SECONDS,
        }
        if account.external_id:
            params["ExternalId"] = account.external_id
        self.stats.assume_role_calls += 1
        context = CallContext("AssumeRole", account.account_id, self.settings.home_region)
        try:
            response = await self.call(sts, "assume_role", context, **params)
        except AccessDeniedError as exc:
            raise AccessDeniedError(
                f"cannot assume {account.role_arn}: {exc}",
                code=exc.code,
                operation="AssumeRole",
                account_id=account.account_id,
                region=self.settings.home_region,
                status_code=exc.status_code,
            ) from exc
        raw = response["Credentials"]
        expiration = raw["Expiration"]
        if isinstance(expiration, str):
            expiration = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        log.debug("assumed_role", account_id=account.account_id, role_arn=account.role_arn)
        return Credentials(raw["AccessKeyId"], raw["SecretAccessKey"], raw["SessionToken"], expiration)

    async def current_account_id(self) -> str:
        if self._current_account_id is None:
            sts = await self.client("sts", self.settings.home_region)
            response = await self.call(sts, "get_caller_identity", CallContext("GetCallerIdentity"))
            self._current_account_id = str(response["Account"])
        return self._current_account_id

    async def pages(
        self,
        client: Any,
        method: str,
        context: CallContext,
        *,
        cursor: str,
        scope_limiter: anyio.CapacityLimiter | None = None,
        **params: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a paginated call, each page its own retried call (a throttle on page 7
        retries page 7, not the whole listing). ``cursor`` names the pagination token in the service's spelling
        (``nextToken`` for DRS, ``NextToken`` for EC2)."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            received = [
                await self.call(
                    client,
                    method,
                    context,
                    scope_limiter=scope_limiter,
                    **params,
                    **({cursor: token} if token else {}),
                )
            ]
            token = received[0].get(cursor)
            # Handed over, not kept here while the consumer holds on (it may wait long: a scope
            # waiting to be admitted, ``syncengine.sync.discovery``).
            yield received.pop()
            if not token:
                return
            if token in seen:
                # Following it would loop forever or, worse, end on a listing we take for whole
                # (botocore's own paginator refuses the same way: "The same next token was
                # received twice").
                raise MalformedResponseError(
                    f"{context.operation} returned the same pagination token twice",
                    code="RepeatedPaginationToken",
                    operation=context.operation,
                    account_id=context.account_id,
                    region=context.region,
                )
            seen.add(token)

    async def call(
        self,
        client: Any,
        method: str,
        context: CallContext,
        *,
        scope_limiter: anyio.CapacityLimiter | None = None,
        **params: Any,
    ) -> Any:
        """Call ``client.<method>(**params)`` under the limiters, retried by the one retry layer.

        The limiters are held per attempt, never across a backoff sleep, so a throttled scope does
        not starve the others of connection slots."""
        operation = getattr(client, method)

        async def attempt() -> Any:
            self.stats.calls[context.operation] += 1
            async with scope_limiter or contextlib.nullcontext(), self.limiter:
                return await operation(**params)

        return await call_with_retry(attempt, context, settings=self.settings.retry, on_retry=self.stats.record_retry)
