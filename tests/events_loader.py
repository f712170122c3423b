"""Real-shaped Lambda events from ``tests/events/*.json``, loaded by name, plus small helpers to
vary them (body, path parameter), to read API Gateway responses back, and the fakes (Lambda
context, engine) the handlers are driven with in unit tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from handlers.dependencies import Dependencies, EngineFunctions, configure
from syncengine.core.config import SyncSettings
from syncengine.core.models import HealthStatus, SyncReport, SyncStatus
from syncengine.plans.check_existing import validate_identifier
from syncengine.refresh.waves import WaveSyncResult
from syncengine.tables.accounts import validate_account_id, validate_region
from syncengine.terminate.instances import no_instances_body

EVENTS_DIR = Path(__file__).resolve().parent / "events"


def event_names(prefix: str = "") -> list[str]:
    return sorted(p.stem for p in EVENTS_DIR.glob(f"{prefix}*.json"))


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``tests/events/<name>.json`` (tests may change it freely)."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    """The event with ``body``: a str is sent as is, None removes it, anything else as JSON."""
    changed = dict(event)
    changed["isBase64Encoded"] = False
    changed["body"] = body if body is None or isinstance(body, str) else json.dumps(body)
    return changed


def with_path_parameter(event: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    """The event addressed to another ``{name}``: path, pathParameters and request context."""
    changed = json.loads(json.dumps(event))
    if changed.get("version") == "2.0":
        template = changed["routeKey"].split(" ", 1)[1]
    else:
        template = changed["resource"]
    path = template.replace("{" + name + "}", quote(value, safe="", errors="surrogatepass"))
    changed["pathParameters"] = {**(changed.get("pathParameters") or {}), name: value}
    if changed.get("version") == "2.0":
        changed["rawPath"] = path
        changed["requestContext"]["http"]["path"] = path
    else:
        changed["path"] = path
        changed["requestContext"]["path"] = f"/{changed['requestContext']['stage']}{path}"
    return changed


def response_json(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def response_headers(response: dict[str, Any]) -> dict[str, str]:
    """Headers of an API Gateway response (``headers`` or REST's ``multiValueHeaders``),
    lower-cased names, first value."""
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(key.lower(), values[0] if isinstance(values, list) else values)
    return headers


@dataclass
class FakeLambdaContext:
    """What handlers read of a Lambda context."""

    function_name: str = "drs-orchestration-data-management-dev"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:111122223333:function:drs-orchestration-data-management-dev"
    aws_request_id: str = "6f0b2a3e-0000-4000-8000-000000000001"
    memory_limit_in_mb: int = 512
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


# -- fakes the handlers are driven with (injected through handlers.dependencies.configure) ------


@dataclass
class FakeEngine:
    """Stands in for the engine: records each call, answers with canned values, or raises what a
    test put in ``errors`` (keyed by function name)."""

    report: Any = None
    status: Any = None
    check_body: dict[str, Any] | None = None
    terminate_body: dict[str, Any] | None = None
    preview_body: dict[str, Any] | None = None
    wave_result: Any = None
    errors: dict[str, BaseException] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    invocations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _called(self, name: str, **arguments: Any) -> None:
        self.calls.append((name, arguments))
        if name in self.errors:
            raise self.errors[name]

    def called(self, name: str) -> list[dict[str, Any]]:
        return [arguments for called, arguments in self.calls if called == name]

    # Like the engine, each use case validates its input before doing anything (the handlers
    # validate nothing themselves): the same validators, so a bad value is the engine's 400.

    async def sync_all(self, settings: Any, *, account_id: Any = None, region: Any = None) -> Any:
        if account_id is not None:
            validate_account_id(account_id)
        if region is not None:
            validate_region(region)
        self._called("sync_all", settings=settings, account_id=account_id, region=region)
        return self.report or SyncReport.from_results([], duration_ms=5, run_id="run-1")

    async def get_sync_status(self, settings: Any) -> Any:
        self._called("get_sync_status", settings=settings)
        return self.status or SyncStatus(HealthStatus.HEALTHY)

    async def check_existing_instances(self, settings: Any, plan_id: Any) -> dict[str, Any]:
        validate_identifier("planId", plan_id)
        self._called("check_existing_instances", settings=settings, plan_id=plan_id)
        if self.check_body is not None:
            return self.check_body
        return {"hasExistingInstances": False, "existingInstances": [], "instanceCount": 0, "planId": plan_id}

    async def terminate_execution_instances(
        self, settings: Any, execution_id: Any, options: Any = None
    ) -> dict[str, Any]:
        validate_identifier("executionId", execution_id)
        self._called("terminate_execution_instances", settings=settings, execution_id=execution_id, options=options)
        return self.terminate_body if self.terminate_body is not None else no_instances_body(execution_id)

    async def get_execution_recovery_instances(self, settings: Any, execution_id: Any) -> dict[str, Any]:
        validate_identifier("executionId", execution_id)
        self._called("get_execution_recovery_instances", settings=settings, execution_id=execution_id)
        if self.preview_body is not None:
            return self.preview_body
        return {
            "executionId": execution_id,
            "executionStatus": "COMPLETED",
            "message": "No recovery instances of this execution were found.",
            "instances": [],
            "totalInstances": 0,
            "skipped": [],
        }

    async def sync_wave(self, settings: Any, execution_id: Any, plan_id: Any = None, **kwargs: Any) -> Any:
        self._called("sync_wave", settings=settings, execution_id=execution_id, plan_id=plan_id, **kwargs)
        if self.wave_result is not None:
            return self.wave_result
        return WaveSyncResult(str(execution_id), plan_id, kwargs.get("wave_number"), (), ())

    async def invoke_self(self, function: str, payload: Any, settings: Any) -> None:
        self.invocations.append((function, dict(payload)))
        if "invoke_self" in self.errors:
            raise self.errors["invoke_self"]

    def install(self, settings: SyncSettings | None = None) -> Dependencies:
        """Make the handlers use this fake (undo with ``handlers.dependencies.reset()``)."""
        return configure(
            settings=settings or SyncSettings(),
            engine=EngineFunctions(
                sync_all=self.sync_all,
                get_sync_status=self.get_sync_status,
                check_existing_instances=self.check_existing_instances,
                terminate_execution_instances=self.terminate_execution_instances,
                sync_wave=self.sync_wave,
                get_execution_recovery_instances=self.get_execution_recovery_instances,
            ),
            invoke_self=self.invoke_self,
        )
