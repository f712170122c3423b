"""What a process keeps between synchronous calls into the engine (a Lambda container between
invocations): one event loop, and the AWS clients opened on it.

Lambda runs one invocation at a time per container and freezes the container in between. A new
event loop, new clients and new connections for every invocation cost a warm check-existing
more than its three DynamoDB calls. So ``run_blocking`` runs every call on the process's one
``asyncio.Runner`` and lends it a ``ClientPool``: clients of our own account (DynamoDB, STS) and
the regional DRS/EC2 clients every account signs through, opened on that loop once and reused
by every later run. What a run must not inherit it does not: each call runs in a fresh copy of
the caller's context (contextvars such as the log context start clean), per-run state (call
counters, assumed-role credentials, remembered failures) lives in the run's ``AwsClients``, and a
run that fails with anything but the engine's own errors discards the pool, so the next
invocation starts with new clients.

Credentials: own-account clients sign with botocore's credential chain, which re-reads
refreshable credentials before each request (a long-lived client never signs with an expired
one); assumed-role credentials are per run and refreshed near expiry (``syncengine.aws.clients``).

Closing: at interpreter exit (``atexit``) and, in Lambda, on SIGTERM, which Lambda sends before
shutting an execution environment down when an extension is registered (the runtime then has
up to 500 ms to clean up).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from syncengine.core.errors import SyncEngineError

_CURRENT_POOL: contextvars.ContextVar[ClientPool | None] = contextvars.ContextVar(
    "syncengine_client_pool", default=None
)


def current_pool() -> ClientPool | None:
    """The pool lent to the running call (None outside ``run_blocking``)."""
    return _CURRENT_POOL.get()


class ClientPool:
    """Opened clients by key, each with the async context manager that closes it."""

    def __init__(self) -> None:
        self._clients: dict[Hashable, tuple[Any, Any]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    def __len__(self) -> int:
        return len(self._clients)

    async def client(self, key: Hashable, open_client: Callable[[], Awaitable[tuple[Any, Any]]]) -> Any:
        """The client under ``key``, opened with ``open_client()`` -> (client, closer) the first time."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            entry = self._clients.get(key)
            if entry is None:
                entry = self._clients[key] = await open_client()
            return entry[0]

    async def aclose(self) -> None:
        entries, self._clients, self._locks = list(self._clients.values()), {}, {}
        for _client, closer in entries:
            with contextlib.suppress(Exception):
                await closer.__aexit__(None, None, None)


class Resident:
    """The process's event loop and client pool; one call at a time."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()
        self._pool = ClientPool()
        self._lock = threading.Lock()
        self.closed = False

    @property
    def pool(self) -> ClientPool:
        return self._pool

    def run(self, function: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        if _loop_running():
            # Checked before the lock: a call from inside a running call would wait for itself.
            raise RuntimeError("run_blocking cannot be called from a running event loop; await the function")
        with self._lock:
            if self.closed:
                raise RuntimeError("the resident event loop is closed")
            return self._runner.run(self._call(function, args, kwargs), context=contextvars.copy_context())

    async def _call(self, function: Callable[..., Awaitable[Any]], args: Any, kwargs: Any) -> Any:
        _CURRENT_POOL.set(self._pool)
        try:
            return await function(*args, **kwargs)
        except BaseException as exc:
            if not isinstance(exc, SyncEngineError):
                # The engine's errors (a bad request, AWS said no) leave the clients sound; after a
                # bug, a cancellation or an interrupted close their state is unknown.
                await self._discard_pool()
            raise

    async def _discard_pool(self) -> None:
        pool, self._pool = self._pool, ClientPool()
        with contextlib.suppress(Exception):
            await asyncio.shield(pool.aclose())

    def close(self) -> None:
        """Close the pooled clients and the loop (idempotent; a call in progress finishes first)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(Exception):
                self._runner.run(self._pool.aclose())
            self._runner.close()


_resident: Resident | None = None
_resident_lock = threading.Lock()


def resident() -> Resident:
    """The process's resident loop, created on first use (and closed at exit)."""
    global _resident
    with _resident_lock:
        if _resident is None or _resident.closed:
            _resident = Resident()
            _install_shutdown_hooks()
        return _resident


def close_resident() -> None:
    """Close the resident loop and its clients; the next ``run_blocking`` starts a new one."""
    with _resident_lock:
        current = _resident
    if current is not None:
        current.close()


_hooks_installed = False


def _install_shutdown_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(close_resident)
    in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    main_thread = threading.current_thread() is threading.main_thread()
    if in_lambda and main_thread and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, _frame: Any) -> None:
    """Lambda's shutdown: close the clients (between invocations, so the loop is idle), then die
    of the signal as the runtime expects."""
    current = _resident
    if current is not None and not current._lock.locked():
        close_resident()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def run_blocking(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run an async engine function from synchronous code (a Lambda handler) on the process's
    resident event loop, with its client pool (see the module docstring)."""
    return resident().run(function, *args, **kwargs)


def _loop_running() -> bool:
    """Whether this thread is inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
