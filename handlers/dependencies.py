"""What the handlers depend on, in one replaceable place: settings, the engine's functions and
the self-invoke seam.

Built once per container from the environment (``current()``); tests call ``configure(...)``
to point the handlers at local tables, a simulator or fakes, and ``reset()`` afterwards. No
import is patched.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syncengine.core.config import SyncSettings
from syncengine.core.resident import close_resident

if TYPE_CHECKING:  # pragma: no cover
    from syncengine.aws.selfinvoke import SelfInvoker
    from syncengine.core.models import SyncReport, SyncStatus
    from syncengine.refresh.batch import RefreshResult
    from syncengine.refresh.waves import WaveSyncResult


def lazy(module: str, name: str) -> Callable[..., Awaitable[Any]]:
    """``module.name``, imported on its first call: a handler imports only what the operations it
    serves use (the query handler never loads the sync, terminate or Lambda machinery; see
    tests/unit/test_import_graph.py)."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        return await getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported on first use."
    return call


_SYNC_ALL = lazy("syncengine.sync.engine", "sync_all")
_GET_SYNC_STATUS = lazy("syncengine.reads", "get_sync_status")
_CHECK_EXISTING = lazy("syncengine.plans.check_existing", "check_existing_instances")
_TERMINATE = lazy("syncengine.terminate.instances", "terminate_execution_instances")
_SYNC_WAVE = lazy("syncengine.refresh.waves", "sync_wave")
_PREVIEW = lazy("syncengine.terminate.instances", "execution_recovery_instances")
_REFRESH = lazy("syncengine.refresh.batch", "refresh")
invoke_self_async: SelfInvoker = lazy("syncengine.aws.selfinvoke", "invoke_self_async")


@dataclass(frozen=True)
class EngineFunctions:
    """The engine functions the handlers call (each opens and closes its own clients)."""

    sync_all: Callable[..., Awaitable[SyncReport]] = _SYNC_ALL
    get_sync_status: Callable[..., Awaitable[SyncStatus]] = _GET_SYNC_STATUS
    check_existing_instances: Callable[..., Awaitable[dict[str, Any]]] = _CHECK_EXISTING
    terminate_execution_instances: Callable[..., Awaitable[dict[str, Any]]] = _TERMINATE
    sync_wave: Callable[..., Awaitable[WaveSyncResult]] = _SYNC_WAVE
    get_execution_recovery_instances: Callable[..., Awaitable[dict[str, Any]]] = _PREVIEW
    refresh: Callable[..., Awaitable[RefreshResult]] = _REFRESH


@dataclass(frozen=True)
class Dependencies:
    settings: SyncSettings
    engine: EngineFunctions = field(default_factory=EngineFunctions)
    invoke_self: SelfInvoker = invoke_self_async


_current: Dependencies | None = None


def current() -> Dependencies:
    """The container's dependencies; settings are read from the environment on first use."""
    global _current
    if _current is None:
        _current = Dependencies(settings=SyncSettings.from_env())
    return _current


def configure(
    *,
    settings: SyncSettings | None = None,
    engine: EngineFunctions | None = None,
    invoke_self: SelfInvoker | None = None,
    environ: Mapping[str, str] | None = None,
) -> Dependencies:
    """Replace some dependencies (the rest keep their defaults); returns the new set."""
    global _current
    _current = Dependencies(
        settings=settings or SyncSettings.from_env(environ),
        engine=engine or EngineFunctions(),
        invoke_self=invoke_self or invoke_self_async,
    )
    return _current


def reset() -> None:
    """Forget configured dependencies: the next ``current()`` reads the environment again, and
    the next engine call opens new clients on a new resident loop (syncengine.core.resident)."""
    global _current
    _current = None
    close_resident()


def deadline_from_lambda(settings: SyncSettings, context: Any) -> SyncSettings:
    """Settings whose deadline is the invocation's remaining time minus a safety margin. Lambda
    glue, so it lives here: the engine only knows a deadline in seconds."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return settings
    seconds = remaining() / 1000.0 - settings.lambda_deadline_margin
    if settings.deadline_seconds is not None:
        seconds = min(seconds, settings.deadline_seconds)
    return settings.with_changes(deadline_seconds=max(seconds, 1.0))
