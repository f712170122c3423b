"""Real-shaped Lambda events from ``tests/events/*.json``, loaded by name, plus small helpers to
vary them (body, path parameter) and to read API Gateway responses back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
    path = template.replace("{" + name + "}", quote(value, safe=""))
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
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:111122223333:function:drs-orchestration-data-management-dev"
    )
    aws_request_id: str = "6f0b2a3e-0000-4000-8000-000000000001"
    memory_limit_in_mb: int = 512
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
