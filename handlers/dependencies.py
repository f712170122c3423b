"""What the handlers depend on, in one replaceable place: settings, the engine's functions and
the self-invoke seam.

Built once per container from the environment (``current()``); tests call ``configure(...)``
to point the handlers at local tables, a simulator or fakes, and ``reset()`` afterwards. No
import is patched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.invoke import SelfInvoker, invoke_self_async
from syncengine import engine, plans, refresh, terminate
from syncengine.config import SyncSettings
from syncengine.models import SyncReport, SyncStatus


@dataclass(frozen=True)
class EngineFunctions:
    """The engine functions the handlers call (each opens and closes its own clients)."""

    sync_all: Callable[..., Awaitable[SyncReport]] = engine.sync_all
    get_sync_status: Callable[..., Awaitable[SyncStatus]] = engine.get_sync_status
    check_existing_instances: Callable[..., Awaitable[dict[str, Any]]] = plans.check_existing_instances
    terminate_execution_instances: Callable[..., Awaitable[dict[str, Any]]] = (
        terminate.terminate_execution_instances
    )
    sync_wave: Callable[..., Awaitable[plans.WaveSyncResult]] = plans.sync_wave
    get_execution_recovery_instances: Callable[..., Awaitable[dict[str, Any]]] = (
        terminate.execution_recovery_instances
    )
    refresh: Callable[..., Awaitable[refresh.RefreshResult]] = refresh.refresh


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
    """Forget configured dependencies: the next ``current()`` reads the environment again."""
    global _current
    _current = None
