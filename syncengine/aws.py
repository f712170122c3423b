"""All AWS I/O goes through here: one shared aioboto3 Session, per-account credentials from STS
AssumeRole (ExternalId, a session policy and name per purpose: ``syncengine.sessions``; cached
until near expiry), clients opened inside the run and closed with it, and one ``call`` that
applies the limiters and the retry policy. Partitions and DRS regions: ``syncengine.partitions``.

DRS and EC2 clients are shared by every account of a region (building one costs ~5 ms of CPU and
a connection pool): each (service, region) gets one client whose signer reads the credentials of
the account the *calling task* acts for (``CallScopedCredentials``, set per call by
``AccountClient``). Clients are never kept at module scope (a client bound to a dead loop fails in
confusing ways). The Session (~20 MB, ~0.35 s to build) lives for the process; clients live for
the run, except on the resident loop of ``syncengine.resident.run_blocking`` (a Lambda
container), whose pool keeps our own account's clients and the shared DRS/EC2 clients.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from syncengine.callstats import CallStats
from syncengine.concurrency import RequestSlots
from syncengine.config import NO_SDK_RETRIES, SyncSettings
from syncengine.credentials import AccountClient, CallScopedCredentials, Credentials
from syncengine.errors import AccessDeniedError, AwsError, MalformedResponseError
from syncengine.fastpath import (
    FastResponseParserFactory,
    SharedSSLSession,
    cache_user_agent,
    enable_client_class_cache,
    install_fast_serializer,
)
from syncengine.fastpath.parsers import StrictResponseParserFactory
from syncengine.logging import get_logger
from syncengine.models import AccountTarget
from syncengine.partitions import drs_regions, hub_partition, partition_of, role_arn_for  # noqa: F401 (re-exported)
from syncengine.resident import current_pool
from syncengine.retry import CallContext, call_with_retry
from syncengine.sessions import ASSUME_ROLE_DURATION_SECONDS, SessionPurpose, session_name, session_policy

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import AsyncIterator

log = get_logger(__name__)

# Services whose clients every account of a region shares. Only services whose endpoint rules
# do not depend on the caller's account (no ``AccountId`` parameter, unlike DynamoDB's):
# tests/integration/test_shared_clients.py checks botocore's rules still say so.
SHARED_CLIENT_SERVICES = frozenset({"drs", "ec2"})

# The process's sessions: with the fast paths (True) and without (False).
_shared_sessions: dict[bool, aioboto3.Session] = {}


def new_session(*, fast_paths: bool = True) -> aioboto3.Session:
    """An aioboto3 Session; with ``fast_paths`` its clients use the engine's parser fast paths and
    cached client classes (syncengine.fastpath), without them botocore's own."""
    botocore_session = AioSession()
    if fast_paths:
        botocore_session.register_component("response_parser_factory", FastResponseParserFactory())
        enable_client_class_cache(botocore_session)
    else:  # not a fast path: a DRS body that is not JSON fails, never reads as an empty page
        botocore_session.register_component("response_parser_factory", StrictResponseParserFactory())
    return aioboto3.Session(botocore_session=botocore_session)


def shared_session(*, fast_paths: bool = True) -> aioboto3.Session:
    """The process's one aioboto3 Session (per-account Sessions cost ~20 MB and ~0.35 s each)."""
    if fast_paths not in _shared_sessions:
        _shared_sessions[fast_paths] = new_session(fast_paths=fast_paths)
    return _shared_sessions[fast_paths]


def preload_service_models(settings: SyncSettings) -> None:
    """Load what this process's first DRS, EC2 and STS clients would load on creation (service
    models, endpoint rules, endpoint data: ~0.1 s of CPU, most of it EC2's model) into the shared
    session's loader, so a Lambda function pays it in its init phase, not in its first invocation:
    "Initialize SDK clients ... outside of the function handler"
    (https://docs.aws.amazon.com/lambda/latest/dg/best-practices.html)."""
    botocore_session = shared_session(fast_paths=settings.fast_paths)._session
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
        self.session = session or shared_session(fast_paths=settings.fast_paths)
        self.stats = stats or CallStats()
        # The process's resident pool (syncengine.resident) when this run is on its loop and uses
        # the shared Session its clients were built from; None: every client is closed with the run.
        pool = current_pool()
        shared = _shared_sessions.get(settings.fast_paths)
        self._pool = pool if pool is not None and self.session is shared else None
        # Bounded at or below the connection pool: aiobotocore signs before it waits for a
        # connection, and a request queued past ~5 minutes fails with "Signature expired".
        self.limiter = RequestSlots(settings.max_concurrency)
        self._config = AioConfig(
            retries=dict(NO_SDK_RETRIES),
            max_pool_connections=settings.max_pool_connections,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            **({"http_session_cls": SharedSSLSession} if settings.fast_paths else {}),
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
        # Per (account, purpose): a terminate session is never a sync's (syncengine.sessions).
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
        """Drop the clients a finished scope used. An account's DRS/EC2 handle is only a reference
        to its region's shared client; a client of our own account holds a connection pool and
        ~0.4 MB, and is closed."""
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
        through a session of ``purpose`` (syncengine.sessions: what it may do, its name)."""
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
            if credentials is not None and service in SHARED_CLIENT_SERVICES:
                handle = AccountClient(await self._shared_client(service, region), credentials)
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
        """A new client (and the context manager that closes it) with the engine's config, endpoint
        override and fast paths; ``keys`` are explicit credentials, none: the session's own;
        ``shared``: signed per call by ``CallScopedCredentials``."""
        kwargs: dict[str, Any] = {"region_name": region, "config": self._config, **keys}
        endpoint = self.settings.endpoint_url(service)
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        context = self.session.client(service, **kwargs)
        client = await context.__aenter__()
        if self.settings.fast_paths:
            client = cache_user_agent(install_fast_serializer(client))
        if shared:
            client._request_signer._credentials = CallScopedCredentials()
        return client, context

    async def _shared_client(self, service: str, region: str) -> Any:
        """The one ``service`` client of ``region`` that every assumed-role account signs through."""
        key = (service, region)
        async with self._shared_locks.setdefault(key, anyio.Lock()):
            entry = self._shared.get(key)
            if entry is None:
                # Placeholder keys so botocore does not search for credentials; the signer's
                # credentials are replaced below and never sign with these.
                placeholder = {"aws_access_key_id": "-", "aws_secret_access_key": "-"}  # not a secret
                client, context = await self._open(service, region, shared=True, **placeholder)
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
        answered: anyio.Event | None = None,
        follow_up: bool = False,
        **params: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a paginated call, each page its own retried call (a throttle on page 7
        retries page 7, not the whole listing). ``cursor`` names the pagination token in the service's spelling
        (``nextToken`` for DRS, ``NextToken`` for EC2). ``answered`` is set once the first page's
        first attempt has an answer (see ``call``). Pages after the first are ``follow_up``s."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = await self.call(
                client,
                method,
                context,
                scope_limiter=scope_limiter,
                answered=answered,
                follow_up=follow_up,
                **params,
                **({cursor: token} if token else {}),
            )
            answered, follow_up = None, True
            yield page
            token = page.get(cursor)
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
        answered: anyio.Event | None = None,
        follow_up: bool = False,
        **params: Any,
    ) -> Any:
        """Call ``client.<method>(**params)`` under the limiters, retried by the one retry layer.

        The limiters are held per attempt, never across a backoff sleep, so a throttled scope does
        not starve the others of connection slots. ``answered``, when given, is set as soon as the
        first attempt has an answer (a result, a throttle, an error): callers use it to hold back
        work that would only compete for CPU while this call is still being decided.
        ``follow_up``: it continues a scope under way, so it waits ahead of others (``RequestSlots``).
        """
        operation = getattr(client, method)

        async def attempt() -> Any:
            self.stats.calls[context.operation] += 1
            try:
                async with scope_limiter or contextlib.nullcontext(), self.limiter.lane(follow_up=follow_up):
                    return await operation(**params)
            finally:
                if answered is not None:
                    answered.set()

        return await call_with_retry(attempt, context, settings=self.settings.retry, on_retry=self.stats.record_retry)
