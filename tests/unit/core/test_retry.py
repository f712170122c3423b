"""The one retry layer: classification, backoff, Retry-After, attempts and deadline."""

from __future__ import annotations

import anyio
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.parsers import ResponseParserError

from syncengine.core.config import RetrySettings
from syncengine.core.errors import (
    AccessDeniedError,
    ClockSkewError,
    MalformedResponseError,
    PermanentAwsError,
    ThrottledError,
    TransientAwsError,
    ValidationError,
)
from syncengine.core.retry import CallContext, call_with_retry, classify

CTX = CallContext("drs:DescribeRecoveryInstances", "111122223333", "us-east-1")
FAST = RetrySettings(max_attempts=4, base_delay=0.001, max_delay=0.002)


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
        },
        "DescribeRecoveryInstances",
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        pytest.param("ThrottlingException", 429, ThrottledError, id="drs-throttle"),
        pytest.param("RequestLimitExceeded", 503, ThrottledError, id="ec2-throttle"),
        pytest.param("ProvisionedThroughputExceededException", 400, ThrottledError, id="dynamodb-throughput"),
        pytest.param("TooManyRequestsException", 429, ThrottledError, id="too-many-requests"),
        pytest.param("SomethingNew", 429, ThrottledError, id="bare-429"),
        pytest.param("InternalServerException", 500, TransientAwsError, id="drs-500"),
        pytest.param("Whatever", 503, TransientAwsError, id="any-5xx"),
        pytest.param("AccessDenied", 403, AccessDeniedError, id="sts-access-denied"),
        pytest.param("AccessDeniedException", 403, AccessDeniedError, id="drs-access-denied"),
        pytest.param("ValidationException", 400, ValidationError, id="validation"),
        pytest.param("UninitializedAccountException", 400, PermanentAwsError, id="uninitialized"),
        pytest.param("RequestResourceCountExceeded", 400, ThrottledError, id="ec2-resource-count"),
        pytest.param("RequestTimeTooSkewed", 403, ClockSkewError, id="time-too-skewed"),
        pytest.param("RequestExpired", 400, ClockSkewError, id="ec2-request-expired"),
    ],
)
def test_classify_client_errors(code: str, status: int, expected: type) -> None:
    """Each AWS error code lands on the right branch of the tree, with its context attached."""
    error = classify(client_error(code, status), CTX)
    assert type(error) is expected
    assert error.code == code
    assert (error.account_id, error.region) == ("111122223333", "us-east-1")


def test_classify_reads_retry_after() -> None:
    """A throttle's Retry-After header becomes ``retry_after`` seconds."""
    error = classify(client_error("ThrottlingException", 429, {"Retry-After": "3"}), CTX)
    assert isinstance(error, ThrottledError)
    assert error.retry_after == 3.0


def test_classify_transport_errors_are_transient() -> None:
    """Connection failures are worth retrying."""
    error = classify(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), CTX)
    assert isinstance(error, TransientAwsError)


def test_classify_leaves_bugs_alone() -> None:
    """A KeyError is a bug, not an AWS error: classify refuses it."""
    assert classify(KeyError("x"), CTX) is None


async def test_call_with_retry_retries_throttles_until_success() -> None:
    """Two throttles then a success: three attempts, two retries reported."""
    attempts: list[int] = []
    retried: list[Exception] = []

    async def call() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise client_error("ThrottlingException", 429)
        return "ok"

    assert await call_with_retry(call, CTX, settings=FAST, on_retry=retried.append) == "ok"
    assert len(attempts) == 3
    assert all(isinstance(e, ThrottledError) for e in retried)


async def test_call_with_retry_does_not_retry_access_denied() -> None:
    """Permanent errors are raised on the first attempt."""
    attempts: list[int] = []

    async def call() -> None:
        attempts.append(1)
        raise client_error("AccessDeniedException", 403)

    with pytest.raises(AccessDeniedError):
        await call_with_retry(call, CTX, settings=FAST)
    assert len(attempts) == 1


async def test_call_with_retry_gives_up_after_max_attempts() -> None:
    """A scope that keeps throttling fails after max_attempts, raising the engine's error."""
    attempts: list[int] = []

    async def call() -> None:
        attempts.append(1)
        raise client_error("ThrottlingException", 429)

    with pytest.raises(ThrottledError) as info:
        await call_with_retry(call, CTX, settings=FAST)
    assert len(attempts) == FAST.max_attempts
    assert isinstance(info.value.__cause__, ClientError)


async def test_call_with_retry_honours_retry_after() -> None:
    """The wait after a throttle is at least the server's Retry-After."""
    slept: list[float] = []
    attempts: list[int] = []

    async def call() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise client_error("ThrottlingException", 429, {"retry-after": "0.2"})
        return "ok"

    started = anyio.current_time()
    await call_with_retry(call, CTX, settings=FAST)
    slept.append(anyio.current_time() - started)
    assert slept[0] >= 0.2


async def test_call_with_retry_stops_at_deadline() -> None:
    """A retry whose sleep would end past the enclosing deadline is not attempted."""
    attempts: list[int] = []
    slow = RetrySettings(max_attempts=50, base_delay=5.0, max_delay=5.0)

    async def call() -> None:
        attempts.append(1)
        raise client_error("ThrottlingException", 429, {"retry-after": "5"})

    with anyio.move_on_after(1.0):
        with pytest.raises(ThrottledError):
            await call_with_retry(call, CTX, settings=slow)
    assert len(attempts) == 1


async def test_call_with_retry_propagates_bugs_unchanged() -> None:
    """Non-AWS exceptions are not retried or wrapped."""

    async def call() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        await call_with_retry(call, CTX, settings=FAST)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        pytest.param(
            "InvalidSignatureException",
            "Signature expired: 20261129T170000Z is now earlier than 20261129T170500Z (20261129T171000Z - 5 min.)",
            ClockSkewError,
            id="drs-signature-expired",
        ),
        pytest.param(
            "SignatureDoesNotMatch",
            "Signature not yet current: 20261129T180000Z is still later than 20261129T175500Z",
            ClockSkewError,
            id="sts-not-yet-current",
        ),
        pytest.param(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
            AccessDeniedError,
            id="wrong-key-stays-denied",
        ),
    ],
)
def test_classify_signature_errors_by_message(code: str, message: str, expected: type) -> None:
    """A signature code means clock skew (re-sign and retry) only when the message says so."""
    exc = ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "X")
    assert type(classify(exc, CTX)) is expected


async def test_call_with_retry_signs_each_clock_skew_attempt_afresh() -> None:
    """A skewed signature is retried by calling the client again (a new, newly signed request),
    never by resending the old one."""
    attempts: list[int] = []

    async def call() -> str:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise client_error("RequestTimeTooSkewed", 403)
        return "ok"

    assert await call_with_retry(call, CTX, settings=FAST) == "ok"
    assert attempts == [0, 1]


def test_classify_parser_errors_as_malformed_responses() -> None:
    """botocore's ResponseParserError is a malformed answer of this scope, not a bug."""
    error = classify(ResponseParserError("Unable to parse response (not well-formed)"), CTX)
    assert type(error) is MalformedResponseError
    assert (error.error_type, error.account_id) == ("ResponseParseError", "111122223333")


def test_classify_truncates_long_messages() -> None:
    """A service message quoting our input back is cut to a bounded length."""
    exc = ClientError(
        {
            "Error": {"Code": "ValidationException", "Message": "x" * 10_000},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "X",
    )
    assert len(str(classify(exc, CTX))) <= 500
