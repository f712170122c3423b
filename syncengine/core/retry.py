"""The only retry layer: tenacity with full-jitter exponential backoff.

botocore's own retries are off (``max_attempts=1`` in ``syncengine.aws.clients``), so every AWS and
DynamoDB call is retried here, once, with one policy:

* throttling (HTTP 429, ``ThrottlingException``, ``RequestLimitExceeded``,
  ``ProvisionedThroughputExceededException``, ``TooManyRequestsException``, ...) and transient
  failures (5xx, connection resets, timeouts) are retried;
* a ``Retry-After`` header is honoured: the next attempt waits at least that long;
* attempts are bounded by ``RetrySettings.max_attempts`` and by the caller's deadline (the
  nearest anyio cancel-scope deadline): a retry that would sleep past it gives up at once;
* clock-skew answers (``RequestTimeTooSkewed``, an expired signature) are retried with a freshly
  signed request;
* AccessDenied, validation errors, missing roles and malformed 2xx answers are permanent and
  raised immediately.

``classify`` is the single place where botocore/aiohttp exceptions become the engine's tree;
``error_from_response`` classifies an error answer by its code and status (for botocore's
``ClientError`` and for the read path's own DynamoDB client, ``syncengine.dynamodb.client``, which is
why botocore and aiohttp are imported only once an exception needs them).
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from syncengine.core.config import DEFAULT_RETRY, RetrySettings
from syncengine.core.errors import (
    AccessDeniedError,
    AwsError,
    ClockSkewError,
    MalformedResponseError,
    PermanentAwsError,
    ThrottledError,
    TransientAwsError,
    ValidationError,
)

T = TypeVar("T")

# Error texts may quote what a service sent back (a body, a parameter): keep them short.
MAX_ECHO = 500

THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceededException",
        "TransactionInProgressException",
        "SlowDown",
        "EC2ThrottledException",
        "BandwidthLimitExceeded",
        # EC2's resource-rate throttle (too many resources named in a window), not a bad request:
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/throttling.html
        "RequestResourceCountExceeded",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalServerException",
        "InternalServerError",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "IDPCommunicationError",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "MissingAuthenticationToken",
        "OptInRequired",
    }
)
# Clock-skew answers: the request was signed too long ago (queued behind a full pool, or a host
# clock gone astray) or in the future. A new attempt signs a new request with the current time
# (each attempt calls the client again), so they are transient. EC2 says RequestExpired; S3-style
# services RequestTimeTooSkewed; DRS (InvalidSignatureException) and STS (SignatureDoesNotMatch)
# use signature codes that also mean a wrong key, so for those the message decides.
CLOCK_SKEW_CODES = frozenset({"RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture"})
SIGNATURE_CODES = frozenset({"InvalidSignatureException", "SignatureDoesNotMatch", "AuthFailure"})
_SKEW_MESSAGE = re.compile(r"signature (?:has )?expired|signature not yet current|time.{0,20}skew", re.IGNORECASE)
VALIDATION_CODES = frozenset(
    {"ValidationException", "ValidationError", "InvalidParameterValue", "InvalidParameterCombination"}
)


@functools.cache
def _library_errors() -> Any:
    """botocore's and aiohttp's exception classes, imported on the first exception to classify
    (the read path's light client raises the engine's errors and never needs them)."""
    import aiohttp
    from botocore import exceptions
    from botocore.parsers import ResponseParserError

    transport = (
        exceptions.EndpointConnectionError,
        exceptions.ConnectionClosedError,
        exceptions.ConnectTimeoutError,
        exceptions.ReadTimeoutError,
        exceptions.HTTPClientError,
        aiohttp.ClientError,
        asyncio.TimeoutError,
        ConnectionError,
    )
    return exceptions.ClientError, exceptions.SSLError, ResponseParserError, transport


@dataclass(frozen=True)
class CallContext:
    """Where a call went: attached to every error raised from it."""

    operation: str
    account_id: str = ""
    region: str = ""


def _retry_after_seconds(headers: dict[str, str]) -> float | None:
    raw = headers.get("retry-after") or headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        # An HTTP-date form is legal but no AWS service we call sends it; ignore it.
        return None


def classify(exc: BaseException, context: CallContext) -> AwsError | None:
    """Translate a botocore/transport exception into the engine's tree; None when it is not one
    (a bug, which must propagate unchanged)."""
    where = {"operation": context.operation, "account_id": context.account_id, "region": context.region}
    if isinstance(exc, AwsError):
        return exc
    client_error, ssl_error, parser_error, transport_errors = _library_errors()
    if isinstance(exc, client_error):
        error = exc.response.get("Error", {}) or {}
        metadata = exc.response.get("ResponseMetadata", {}) or {}
        headers = {str(k).lower(): str(v) for k, v in (metadata.get("HTTPHeaders") or {}).items()}
        message = str(error.get("Message") or exc)
        return error_from_response(
            str(error.get("Code") or ""), message, metadata.get("HTTPStatusCode"), headers, context
        )
    if isinstance(exc, ssl_error):
        # A certificate that does not verify (wrong host name, unknown CA) will not verify on the
        # next attempt either; its scope fails with a clear type instead of taking down the run.
        return PermanentAwsError(str(exc)[:MAX_ECHO], code="SSLError", **where)
    if isinstance(exc, parser_error):
        # A 2xx body botocore could not parse (the fast paths fall back to botocore first).
        return MalformedResponseError(
            f"the response could not be parsed: {str(exc)[:MAX_ECHO]}", code="ResponseParseError", **where
        )
    if isinstance(exc, transport_errors):
        return TransientAwsError(str(exc) or type(exc).__name__, code=type(exc).__name__, **where)
    return None


def error_from_response(
    code: str, message: str, status: int | None, headers: Mapping[str, str], context: CallContext
) -> AwsError:
    """An AWS error answer (its code, message, HTTP status and lower-case headers) as the engine's
    error: throttles (with Retry-After), clock skew, access, validation, transient, permanent."""
    where = {"operation": context.operation, "account_id": context.account_id, "region": context.region}
    message = message[:MAX_ECHO]
    if code in THROTTLE_CODES or status == 429:
        return ThrottledError(
            message,
            retry_after=_retry_after_seconds(dict(headers)),
            code=code or "TooManyRequests",
            status_code=status,
            **where,
        )
    if code in CLOCK_SKEW_CODES or (code in SIGNATURE_CODES and _SKEW_MESSAGE.search(message)):
        return ClockSkewError(message, code=code, status_code=status, **where)
    if code in ACCESS_DENIED_CODES:
        return AccessDeniedError(message, code=code, status_code=status, **where)
    if code in VALIDATION_CODES:
        return ValidationError(message, code=code, status_code=status, **where)
    if code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
        return TransientAwsError(message, code=code or f"HTTP{status}", status_code=status, **where)
    return PermanentAwsError(message, code=code, status_code=status, **where)


def full_jitter(settings: RetrySettings, retries_so_far: int) -> float:
    """AWS's "full jitter": uniform(0, min(cap, base * 2**retries_so_far)) seconds."""
    return random.uniform(0, min(settings.max_delay, settings.base_delay * (2**retries_so_far)))


def full_jitter_wait(settings: RetrySettings) -> Callable[[RetryCallState], float]:
    """``full_jitter`` between attempts; at least Retry-After."""

    def wait(state: RetryCallState) -> float:
        delay = full_jitter(settings, state.attempt_number - 1)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ThrottledError) and exc.retry_after is not None:
            # Spread the herd a little beyond the server's hint instead of all waking at once.
            delay = exc.retry_after + random.uniform(0, settings.base_delay)
        return delay

    return wait


def _stop_at_deadline(state: RetryCallState) -> bool:
    """Give up when the upcoming sleep would end past the enclosing cancel scope's deadline."""
    deadline = anyio.current_effective_deadline()
    if deadline == float("inf"):
        return False
    return anyio.current_time() + (state.upcoming_sleep or 0.0) >= deadline


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    context: CallContext,
    *,
    settings: RetrySettings = DEFAULT_RETRY,
    on_retry: Callable[[AwsError], None] | None = None,
    retry_on: type[AwsError] = TransientAwsError,
) -> T:
    """Run ``call`` until it succeeds, a permanent error occurs, attempts run out or the deadline
    nears. Raises the engine's ``AwsError`` subclasses (chained to the original).

    ``retry_on`` narrows what is retried: a call that is not idempotent passes ``ThrottledError``
    (only errors that prove the service did not act), see ``syncengine.terminate.instances``."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is not None and isinstance(exc, AwsError):
            on_retry(exc)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        stop=stop_after_attempt(settings.max_attempts) | _stop_at_deadline,
        wait=full_jitter_wait(settings),
        before_sleep=before_sleep,
        reraise=True,
        sleep=anyio.sleep,
    )
    async for attempt in retrying:
        with attempt:
            try:
                return await call()
            except Exception as exc:
                translated = classify(exc, context)
                if translated is None or translated is exc:
                    raise
                raise translated from exc
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


__all__ = [
    "ACCESS_DENIED_CODES",
    "CLOCK_SKEW_CODES",
    "THROTTLE_CODES",
    "TRANSIENT_CODES",
    "CallContext",
    "call_with_retry",
    "classify",
    "error_from_response",
    "full_jitter",
    "full_jitter_wait",
]
