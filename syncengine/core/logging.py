"""structlog configuration: JSON lines in Lambda (CloudWatch Logs Insights parses them), readable
console output on a terminal. Context (account, region, run id) is bound with contextvars.

Other modules take ``structlog`` from here (``from syncengine.core.logging import structlog``), so it is
always imported the light way (``_import_structlog``)."""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

# Optional packages structlog imports eagerly when they are installed, for its development console
# (pretty tracebacks): rich and pygments lengthen every cold start, although the engine renders
# JSON in Lambda and plain text on a terminal. rich stays installed
# for the CLI's progress bar, which imports it itself.
_STRUCTLOG_OPTIONAL = ("rich",)


def _import_structlog() -> ModuleType:
    """structlog, imported with its optional console extras hidden (once per process)."""
    if "structlog" in sys.modules:
        return sys.modules["structlog"]
    hidden = [name for name in _STRUCTLOG_OPTIONAL if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes ``import rich`` raise ImportError
    try:
        return importlib.import_module("structlog")
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


structlog = _import_structlog()

_SECRET_KEYS = frozenset(
    {
        "aws_secret_access_key",
        "secretaccesskey",
        "aws_session_token",
        "sessiontoken",
        "secret_access_key",
        "session_token",
        "credentials",
        "authorization",
        "x-amz-security-token",
        "signature",
        # Not a credential, but the shared secret that keeps a confused deputy out of the roles.
        "externalid",
        "external_id",
    }
)

_configured = False


REDACTED = "[REDACTED]"
# A SigV4 signature inside free text (an error message quoting a header, say).
_SIGNATURE = re.compile(r"(Signature=)[0-9a-fA-F]{16,}")
# A secret named inside free text: a formatted traceback, a repr of request parameters
# ("'ExternalId': 'x'"), a query string ("ExternalId=x&..."): the value after the name goes.
_NAMED_SECRET = re.compile(
    r"((?:ExternalId|external_id|SecretAccessKey|secret_access_key|SessionToken|session_token"
    r"|X-Amz-Security-Token)['\"]?\s*[:=]\s*['\"]?)([^'\"\s,;&}\)]+)",
    re.IGNORECASE,
)
_MAX_DEPTH = 12


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: REDACTED if str(k).lower() in _SECRET_KEYS else _redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, str):
        if "Signature=" in value:
            value = _SIGNATURE.sub(r"\1" + REDACTED, value)
        return _NAMED_SECRET.sub(r"\1" + REDACTED, value)
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Never let a credential, session token or signature reach a log line, at any depth."""
    return _redact(event_dict)


def configure_logging(*, json: bool | None = None, level: str | None = None, force: bool = False) -> None:
    """Configure structlog once per process (Lambda container or CLI run)."""
    global _configured
    if _configured and not force:
        return
    if json is None:
        json = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) or not sys.stderr.isatty()
    level_name = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    numeric_level = getattr(logging, level_name, logging.INFO)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        # Last before rendering: tracebacks and stacks are text by now, and redacted with the rest.
        redact_secrets,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # botocore and aiohttp are chatty at DEBUG; keep them at WARNING unless asked otherwise.
    for noisy in ("botocore", "aiobotocore", "aiohttp", "urllib3"):
        logging.getLogger(noisy).setLevel(max(numeric_level, logging.WARNING))
    _configured = True


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
