"""One exception tree for the whole engine.

::

    SyncEngineError
    ├── ConfigurationError            settings or environment are unusable (a bug to fix, not to retry)
    ├── InvalidRequestError           caller input is malformed (HTTP 400)
    ├── NotFoundError                 a referenced item does not exist (HTTP 404)
    │   ├── RecoveryPlanNotFoundError
    │   └── ExecutionNotFoundError
    ├── SyncInProgressError           a full sync holds the lease (HTTP 409)
    ├── ExecutionInProgressError      terminate asked of an execution still running (HTTP 409)
    └── AwsError                      an AWS call failed; carries account, region, operation, code
        ├── TransientAwsError         worth retrying: throttling, 5xx, connection resets, timeouts
        │   ├── ThrottledError        the service asked us to slow down (may carry Retry-After)
        │   └── ClockSkewError        the request's signature was too old or too new: sign afresh
        └── PermanentAwsError         retrying cannot help
            ├── AccessDeniedError     missing permission, or a role that cannot be assumed
            ├── ValidationError       the request itself was rejected
            └── MalformedResponseError  a 2xx answer we cannot trust: unparsable, without its
                                      items, or repeating a pagination token (fails its scope only)

Only ``TransientAwsError`` is retried (``syncengine.core.retry``). ``ClientError`` and transport
exceptions are translated into this tree at one place, ``syncengine.core.retry.classify``, chained with
``from exc`` so the original stays visible in logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class CallPlace(Protocol):
    """Where a call went (``syncengine.core.retry.CallContext`` is one; named here so errors import nothing)."""

    operation: str
    account_id: str
    region: str


class SyncEngineError(Exception):
    """Root of every error the engine raises on purpose."""

    error_code = "SYNC_ENGINE_ERROR"


class ConfigurationError(SyncEngineError):
    error_code = "CONFIGURATION_ERROR"


class InvalidRequestError(SyncEngineError):
    error_code = "INVALID_REQUEST"


class NotFoundError(SyncEngineError):
    error_code = "NOT_FOUND"


class RecoveryPlanNotFoundError(NotFoundError):
    error_code = "RECOVERY_PLAN_NOT_FOUND"


class ExecutionNotFoundError(NotFoundError):
    error_code = "EXECUTION_NOT_FOUND"


class SyncInProgressError(SyncEngineError):
    error_code = "SYNC_IN_PROGRESS"

    def __init__(self, message: str, *, holder: str | None = None, expires_at: float | None = None):
        super().__init__(message)
        self.holder = holder
        self.expires_at = expires_at


class ExecutionInProgressError(SyncEngineError):
    error_code = "EXECUTION_IN_PROGRESS"

    def __init__(self, message: str, *, execution_id: str, execution_status: str):
        super().__init__(message)
        self.execution_id = execution_id
        self.execution_status = execution_status


class AwsError(SyncEngineError):
    """An AWS call failed. ``code`` is the service's error code (or the transport error's name)."""

    error_code = "AWS_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        operation: str = "",
        account_id: str = "",
        region: str = "",
        status_code: int | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.operation = operation
        self.account_id = account_id
        self.region = region
        self.status_code = status_code

    @property
    def error_type(self) -> str:
        """What callers see in reports: the AWS code when there is one, else the class name."""
        return self.code or type(self).__name__


class TransientAwsError(AwsError):
    error_code = "AWS_TRANSIENT_ERROR"


class ThrottledError(TransientAwsError):
    error_code = "AWS_THROTTLED"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object):
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ClockSkewError(TransientAwsError):
    """Signature expired or not yet valid (a request signed, then queued; or a skewed clock).
    Every attempt of ``syncengine.core.retry`` calls the client again, which signs a new request."""

    error_code = "AWS_CLOCK_SKEW"


class PermanentAwsError(AwsError):
    error_code = "AWS_PERMANENT_ERROR"


class AccessDeniedError(PermanentAwsError):
    error_code = "ACCESS_DENIED"


class ValidationError(PermanentAwsError):
    error_code = "AWS_VALIDATION_ERROR"


class MalformedResponseError(PermanentAwsError):
    """A successful (2xx) answer that cannot be trusted. ``code`` says how: ``ResponseParseError``,
    ``MissingItems``, ``RepeatedPaginationToken``. Treating it as "nothing there" would delete
    records, so the scope fails instead, and keeps its cache."""

    error_code = "AWS_MALFORMED_RESPONSE"

    @classmethod
    def unless_list_of_maps(cls, value: Any, context: CallPlace, what: str) -> list[Any]:
        """``value`` when it is a list of objects; else the answer lacks its list (``MissingItems``):
        one we cannot read, never "nothing there"."""
        if isinstance(value, list) and all(isinstance(item, Mapping) for item in value):
            return value
        raise cls(
            f"{context.operation} answered without a list of {what}",
            code="MissingItems",
            operation=context.operation,
            account_id=context.account_id,
            region=context.region,
        )


__all__ = [
    "AccessDeniedError",
    "AwsError",
    "ClockSkewError",
    "ConfigurationError",
    "ExecutionInProgressError",
    "ExecutionNotFoundError",
    "InvalidRequestError",
    "MalformedResponseError",
    "NotFoundError",
    "PermanentAwsError",
    "RecoveryPlanNotFoundError",
    "SyncEngineError",
    "SyncInProgressError",
    "ThrottledError",
    "TransientAwsError",
    "ValidationError",
]
