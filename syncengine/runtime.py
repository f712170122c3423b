"""What one run works with: its clients, limiters, stores and time budget.

``open_runtime`` opens everything a run needs inside the run (never at import time) and closes it
with the run: the AWS clients (``AwsClients``: own-account clients and one regional DRS/EC2
client per region, signing as the account bound to each call), the DynamoDB access with its
concurrency limiter, the cache and status stores, the call counters, the metrics emitter and the
bound on the instances a sync holds at once (``in_flight``).

Time: a run's deadline is a cancel scope (``deadline_scope``); leases live as long as their
holder plus a margin (``lease_seconds``); cleanup that must happen after the deadline (status
writes, lease release) runs shielded within ``cleanup_budget``.

Every runtime reads and writes DynamoDB through ``syncengine.dynamodb.client``. The read path
(status, check-existing, the terminate preview) needs only this module: the sync's discovery and
record building are imported by ``syncengine.sync.pipeline`` and ``syncengine.sync.run``, which it never
loads. A ``read_only`` runtime builds the aiobotocore clients only if something asks for one (the
current account, for a plan without an account), so a cold read-only handler never imports
aiobotocore.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from syncengine.aws.regions import EnabledRegions
from syncengine.core import metrics as m
from syncengine.core.callstats import CallStats
from syncengine.core.concurrency import Budget
from syncengine.core.config import DEFAULT_CLEANUP_SECONDS, LEASE_MARGIN_SECONDS, SyncSettings
from syncengine.core.gctune import relaxed_gc
from syncengine.core.models import ScopeResult
from syncengine.core.resident import current_pool
from syncengine.dynamodb.seam import Dynamo
from syncengine.tables.cache import CacheStore
from syncengine.tables.status import StatusStore

if TYPE_CHECKING:  # pragma: no cover
    import aioboto3

    from syncengine.aws.clients import AwsClients

# Shielded cleanup (status writes, lease release) gets this long even after the deadline, unless
# the settings say less (``SyncSettings.cleanup_seconds``).
CLEANUP_SECONDS = DEFAULT_CLEANUP_SECONDS
# Status and lease calls have their own limiter of this size (see open_runtime).
STATUS_CONCURRENCY = 8


class SyncProgress(Protocol):
    """Receives progress of a run (the CLI's progress bar implements it)."""

    def start(self, total_scopes: int) -> None: ...

    def advance(self, result: ScopeResult) -> None: ...


@dataclass
class Runtime:
    """Resources of one run, opened inside it and closed with it."""

    settings: SyncSettings
    aws: AwsClients
    dynamo: Dynamo
    store: CacheStore
    status: StatusStore
    stats: CallStats
    metrics: m.MetricsEmitter = field(repr=False)
    regions: EnabledRegions = field(repr=False)
    # The sync's instances in flight, run-wide (``syncengine.sync.pipeline``).
    in_flight: Budget = field(repr=False)


@contextlib.asynccontextmanager
async def open_runtime(
    settings: SyncSettings, *, session: aioboto3.Session | None = None, read_only: bool = False
) -> AsyncIterator[Runtime]:
    """The run's resources; ``read_only``: for the read path (see the module docstring)."""
    stats = CallStats()
    with relaxed_gc():
        async with contextlib.AsyncExitStack() as stack:
            if read_only:
                aws: Any = await stack.enter_async_context(DeferredAwsClients(settings, session, stats))
            else:
                aws = await stack.enter_async_context(_aws_clients(settings, session, stats))
            client = await _dynamodb_client(settings, stack, writes=not read_only)
            # One limiter for the cache's writes and the run's other reads (accounts, executions).
            dynamo = _dynamo(client, settings, stats, max(settings.write_concurrency, 4))
            yield Runtime(
                settings=settings,
                aws=aws,
                dynamo=dynamo,
                store=CacheStore(dynamo, settings.tables.cache, write_concurrency=settings.write_concurrency),
                # Status and lease calls get their own limiter: behind a cold sync's record batches they
                # would queue past the cleanup budget and leave scope leases held.
                status=StatusStore(
                    _dynamo(client, settings, stats, STATUS_CONCURRENCY),
                    settings.tables.status,
                    lease_seconds=settings.lease_seconds,
                    stale_after_seconds=settings.stale_after_seconds,
                ),
                stats=stats,
                metrics=m.MetricsEmitter(
                    enabled=settings.emit_metrics,
                    namespace=settings.metrics_namespace,
                    environment=settings.environment,
                ),
                regions=EnabledRegions(aws, settings.home_region),
                in_flight=Budget(settings.max_instances_in_flight),
            )


def _aws_clients(settings: SyncSettings, session: aioboto3.Session | None, stats: CallStats) -> AwsClients:
    from syncengine.aws.clients import AwsClients

    return AwsClients(settings, session=session, stats=stats)


class DeferredAwsClients:
    """``AwsClients`` built on first use: a read-only run needs aiobotocore only for the rare STS
    question (the current account)."""

    def __init__(self, settings: SyncSettings, session: aioboto3.Session | None, stats: CallStats):
        self._arguments = (settings, session, stats)
        self._clients: AwsClients | None = None

    def __getattr__(self, name: str) -> Any:
        if self._clients is None:
            self._clients = _aws_clients(*self._arguments)
        return getattr(self._clients, name)

    async def __aenter__(self) -> DeferredAwsClients:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._clients is not None:
            await self._clients.__aexit__(*exc_info)


async def _dynamodb_client(settings: SyncSettings, stack: contextlib.AsyncExitStack, *, writes: bool) -> Any:
    """The DynamoDB client of this run (``writes``: the engine's, which writes too; else reads
    only): the resident pool's when there is one (its keep-alive connections serve the
    container's next invocations too), else a new one closed with the run (``stack``)."""
    from syncengine.dynamodb.client import DynamoDBHttpClient
    from syncengine.dynamodb.sdk_config import endpoint_for

    endpoint = endpoint_for(settings.home_region, settings.endpoint_url("dynamodb"))

    async def open_client() -> tuple[Any, Any]:
        client = DynamoDBHttpClient(
            endpoint,
            settings.home_region,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            writes=writes,
        )
        return client, client

    pool = current_pool()
    if pool is None:
        return await stack.enter_async_context((await open_client())[0])
    key = ("dynamodb-http", settings.home_region, endpoint, settings.connect_timeout, settings.read_timeout, writes)
    return await pool.client(key, open_client)


def _dynamo(client: Any, settings: SyncSettings, stats: CallStats, concurrency: int) -> Dynamo:
    return Dynamo(client, retry=settings.retry, stats=stats, concurrency=concurrency, region=settings.home_region)


def deadline_scope(settings: SyncSettings, *, at: float | None = None) -> anyio.CancelScope:
    """The run's deadline as a cancel scope: ``at`` (an instant of ``anyio.current_time()``, set
    by a caller whose deadline began before the run: its setup counts too), else
    ``deadline_seconds`` from now (none without it)."""
    if at is not None:
        return anyio.CancelScope(deadline=at)
    if settings.deadline_seconds is None:
        return anyio.CancelScope()
    return anyio.move_on_after(settings.deadline_seconds)


def deadline_at(settings: SyncSettings) -> float | None:
    """The instant ``deadline_seconds`` from now (None without a deadline)."""
    if settings.deadline_seconds is None:
        return None
    return anyio.current_time() + settings.deadline_seconds


def cleanup_budget(settings: SyncSettings) -> float | None:
    """How long shielded cleanup may take: bounded only when there is a deadline to honour;
    otherwise a busy loop must not turn a slow status write into a lease left held."""
    return settings.cleanup_seconds if settings.deadline_seconds is not None else None


def shielded_cleanup(settings: SyncSettings) -> contextlib.ExitStack:
    """A shielded scope bounded by ``cleanup_budget``: work in it survives the run's deadline."""
    stack = contextlib.ExitStack()
    stack.enter_context(anyio.CancelScope(shield=True))
    stack.enter_context(anyio.move_on_after(cleanup_budget(settings)))
    return stack


def lease_seconds(settings: SyncSettings, remaining: float | None = None) -> float:
    """How long a lease taken now lives: the holder's remaining time (``remaining``, else the
    enclosing deadline's) plus a margin that covers its shielded cleanup and, in Lambda, the time
    until it is killed. A lease never outlives its holder by more, so an invocation killed at its
    timeout frees its scopes a few seconds later. Without any deadline (the CLI), the configured
    ``lease_seconds``."""
    if remaining is None:
        deadline = anyio.current_effective_deadline()
        if deadline != float("inf"):
            remaining = max(deadline - anyio.current_time(), 0.0)
    if remaining is None:
        return settings.lease_seconds
    return remaining + LEASE_MARGIN_SECONDS
