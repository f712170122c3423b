"""A light DynamoDB client: DynamoDB's JSON protocol over the standard library, so a cold
read-only handler needs neither aiohttp nor botocore's client machinery (~200 ms of imports and
~40 ms of service-model loading before the first call; see benchmarks/scenarios/cold_read.py), and
a sync spends ~0.1 ms of CPU a call instead of aiobotocore's ~0.6 ms (a fan-out worker makes
seven DynamoDB calls a scope; fast path 7 of ``syncengine.fastpath``).

Reads (GetItem, BatchGetItem, Query, Scan) and, for the engine only (``writes=True``), its writes
(PutItem, UpdateItem, DeleteItem, BatchWriteItem), with the same parameters and answers as the
low-level aiobotocore client, so ``syncengine.dynamo.Dynamo`` drives either. The wire format
follows AWS:

* DynamoDB low-level API (POST ``/``, ``X-Amz-Target: DynamoDB_20120810.<Operation>``,
  ``Content-Type: application/x-amz-json-1.0``, errors as ``{"__type": "...#Code", "message"}``,
  ``x-amz-crc32`` over the body):
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.LowLevelAPI.html
* Signature Version 4 (canonical request, string to sign, derived key):
  https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
  (tests/unit/test_dynamodb_http.py checks the signature equals botocore's ``SigV4Auth``).

Requests run on keep-alive HTTP/1.1 connections over asyncio streams, pooled per client (the
resident loop's pool keeps them across a Lambda container's invocations): cancellable by the
run's deadline, concurrent like aiobotocore's calls, and without a thread hop per call (blocking
``http.client`` calls in worker threads cost ~1 ms more per call on the read benchmark). Errors
become the engine's tree
through ``syncengine.retry.error_from_response``, the same classification as botocore's
``ClientError``; retries stay with the one retry layer.

``light_client_usable`` decides when it may be used: credentials in the environment (Lambda's
execution role), nothing that only botocore would honour (profiles, FIPS or dual-stack endpoints,
proxies, isolated partitions); else the aiobotocore client is used. The read path uses it unless
``SYNC_LIGHT_READS`` is off, the engine unless ``SYNC_FAST_PATHS`` is.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import os
import ssl
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from syncengine.errors import AwsError, MalformedResponseError, PermanentAwsError, TransientAwsError
from syncengine.http1 import Answer, Connection, read_answer
from syncengine.retry import CallContext, error_from_response

SERVICE = "dynamodb"
TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
USER_AGENT = "recovery-instance-sync/light-dynamodb"
# The read operations this client serves: method name (as on the aiobotocore client) -> operation.
OPERATIONS = {"get_item": "GetItem", "batch_get_item": "BatchGetItem", "query": "Query", "scan": "Scan"}
# And, for the engine's runtime only (``writes=True``), the writes the engine makes.
WRITE_OPERATIONS = {
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "batch_write_item": "BatchWriteItem",
}
# Environment settings only botocore honours: with any of them set, the read path uses it.
BOTOCORE_ONLY_SETTINGS = (
    "AWS_PROFILE",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)
# Regions whose endpoints are not ``dynamodb.<region>.<suffix>`` with a suffix known here.
ISOLATED_REGION_PREFIXES = ("us-iso", "eu-iso", "us-isob", "us-isof")
# A reused keep-alive connection the server closed while idle (a Lambda container is frozen
# between invocations) fails like this before any answer: sent once more on a new connection.
STALE_CONNECTION_ERRORS = (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError)
# Called with the operation name of every request sent (retries included): what botocore's
# ``before-call`` event is to its clients, for benchmarks and tests that count calls.
REQUEST_LISTENERS: list[Callable[[str], None]] = []


@dataclass(frozen=True)
class EnvCredentials:
    access_key: str
    secret_key: str
    token: str | None = None


def env_credentials(environ: Mapping[str, str] | None = None) -> EnvCredentials | None:
    """The credentials botocore's environment provider would use (the first of its chain)."""
    env = os.environ if environ is None else environ
    access_key, secret_key = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        return None
    return EnvCredentials(access_key, secret_key, env.get("AWS_SESSION_TOKEN") or None)


def endpoint_for(region: str, explicit: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """DynamoDB's endpoint as botocore resolves it for our settings: the explicit override, then
    ``AWS_ENDPOINT_URL_DYNAMODB`` and ``AWS_ENDPOINT_URL`` (unless
    ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS``), then the regional endpoint; None where the rules
    need botocore (an isolated partition)."""
    env = os.environ if environ is None else environ
    if explicit:
        return explicit
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true":
        configured = env.get("AWS_ENDPOINT_URL_DYNAMODB") or env.get("AWS_ENDPOINT_URL")
        if configured:
            return configured
    if region.startswith(ISOLATED_REGION_PREFIXES):
        return None
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://dynamodb.{region}.{suffix}"


def light_reads_enabled(settings: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the read path may use this client instead of aiobotocore's (``SYNC_LIGHT_READS``)."""
    return bool(settings.light_reads) and light_client_usable(settings, environ)


def light_client_usable(settings: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this client can stand in for aiobotocore's: credentials in the environment and
    nothing only botocore honours."""
    env = os.environ if environ is None else environ
    if env_credentials(env) is None:
        return False
    if any(env.get(name) for name in BOTOCORE_ONLY_SETTINGS):
        return False
    if env.get("AWS_CA_BUNDLE") and not os.path.isfile(env["AWS_CA_BUNDLE"]):
        return False
    return endpoint_for(settings.home_region, settings.endpoint_url(SERVICE), env) is not None


# -- Signature Version 4 --------------------------------------------------------------------------


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sigv4_headers(
    credentials: EnvCredentials, region: str, host: str, target: str, body: bytes, timestamp: str
) -> dict[str, str]:
    """The headers of a signed DynamoDB POST ``/`` (``timestamp`` as ``YYYYMMDDTHHMMSSZ``): every
    header but ``User-Agent`` is signed, as botocore signs them."""
    headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": target, "X-Amz-Date": timestamp}
    if credentials.token:
        headers["X-Amz-Security-Token"] = credentials.token
    signed = {"host": host, **{name.lower(): value.strip() for name, value in headers.items()}}
    names = sorted(signed)
    canonical_request = "\n".join(
        [
            "POST",
            "/",
            "",
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{timestamp[:8]}/{region}/{SERVICE}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", timestamp, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()]
    )
    key = _hmac(f"AWS4{credentials.secret_key}".encode(), timestamp[:8])
    for part in (region, SERVICE, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


# -- the client ------------------------------------------------------------------------------------


class DynamoDBHttpClient:
    """DynamoDB calls (reads; with ``writes``, the engine's writes too) on pooled keep-alive
    connections. ``async with`` closes them."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        environ: Mapping[str, str] | None = None,
        writes: bool = False,
    ):
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an HTTP endpoint: {endpoint!r}")
        self.endpoint = endpoint
        self.region = region
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        default_port = 443 if self._https else 80
        self._port = parts.port or default_port
        # The Host header (and signed host): the port only when it is not the scheme's default.
        self._host_header = self._host if self._port == default_port else f"{self._host}:{self._port}"
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._environ = environ
        self._operations = {**OPERATIONS, **WRITE_OPERATIONS} if writes else OPERATIONS
        self._idle: list[Connection] = []
        self._ssl: ssl.SSLContext | None = None

    async def __aenter__(self) -> DynamoDBHttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_") or method not in self._operations:
            # Unless asked for writes (the engine), reads only: the query role cannot write anyway.
            raise AttributeError(f"{type(self).__name__} does not serve {method!r}")

        async def call(**params: Any) -> dict[str, Any]:
            return await self.request(method, params)

        return call

    async def request(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One DynamoDB call (``method`` as the aiobotocore client names it): the parsed answer,
        or the engine's error for it."""
        context = CallContext(f"dynamodb:{method}", region=self.region)
        credentials = env_credentials(self._environ)
        if credentials is None:
            raise PermanentAwsError("no AWS credentials in the environment", code="NoCredentials", **_where(context))
        operation = self._operations[method]
        target = TARGET_PREFIX + operation
        body = json.dumps(params, separators=(",", ":")).encode("utf-8")
        timestamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = sigv4_headers(credentials, self.region, self._host_header, target, body, timestamp)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        message = (
            f"POST / HTTP/1.1\r\nHost: {self._host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n"
        ).encode("latin-1") + body
        for listener in REQUEST_LISTENERS:
            listener(operation)
        return parse_answer(await self._exchange(message, context), context)

    async def _exchange(self, message: bytes, context: CallContext) -> Answer:
        """Send ``message`` and read the answer; transport failures as TransientAwsError."""
        try:
            connection, reused = await self._connection()
            try:
                return await self._round_trip(connection, message)
            except STALE_CONNECTION_ERRORS:
                if not reused:
                    raise
                connection = await self._new_connection()
                return await self._round_trip(connection, message)
        except ssl.SSLCertVerificationError as exc:
            # A certificate that does not verify will not on the next attempt either.
            raise PermanentAwsError(str(exc)[:500], code="SSLError", **_where(context)) from exc
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
            # OSError covers resets, refusals and timeouts; EOFError an answer cut short
            # (IncompleteReadError); ValueError a garbled status line or length.
            name = type(exc).__name__
            raise TransientAwsError(str(exc)[:500] or name, code=name, **_where(context)) from exc

    async def _round_trip(self, connection: Connection, message: bytes) -> Answer:
        """One request on ``connection``; it goes back to the pool only after a whole answer that
        keeps it open (a cancelled or failed exchange closes it: its state is unknown)."""
        done = False
        try:
            connection.writer.write(message)
            async with asyncio.timeout(self._read_timeout):
                await connection.writer.drain()
                answer, keep_alive = await read_answer(connection.reader)
            done = True
        finally:
            if done and keep_alive:
                self._idle.append(connection)
            else:
                connection.close()
        return answer

    async def _connection(self) -> tuple[Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if not (connection.reader.at_eof() or connection.writer.is_closing()):
                return connection, True
            connection.close()
        return await self._new_connection(), False

    async def _new_connection(self) -> Connection:
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(
                self._host, self._port, ssl=self._ssl_context() if self._https else None
            )
        return Connection(reader, writer)

    def _ssl_context(self) -> ssl.SSLContext:
        """Built on the first HTTPS connection (loading CA certificates costs milliseconds):
        ``AWS_CA_BUNDLE`` when set, as botocore honours it, else the system's trust store."""
        if self._ssl is None:
            env = os.environ if self._environ is None else self._environ
            self._ssl = ssl.create_default_context(cafile=env.get("AWS_CA_BUNDLE") or None)
        return self._ssl


def _where(context: CallContext) -> dict[str, str]:
    return {"operation": context.operation, "region": context.region}


def parse_answer(answer: Answer, context: CallContext) -> dict[str, Any]:
    """A 2xx body as the client's result (with botocore's ``ResponseMetadata``); any other status
    as the engine's error, classified as botocore's ``ClientError`` would be. A body whose
    ``x-amz-crc32`` does not match is transient (botocore retries it too)."""
    expected = answer.headers.get("x-amz-crc32")
    if expected is not None and expected.isdigit() and int(expected) != zlib.crc32(answer.body):
        raise TransientAwsError(
            "the response body does not match its x-amz-crc32 checksum",
            code="CRC32CheckFailed",
            operation=context.operation,
            region=context.region,
            status_code=answer.status,
        )
    metadata = {"HTTPStatusCode": answer.status, "HTTPHeaders": answer.headers}
    if "x-amzn-requestid" in answer.headers:
        metadata["RequestId"] = answer.headers["x-amzn-requestid"]
    if 200 <= answer.status < 300:
        try:
            parsed = json.loads(answer.body) if answer.body else {}
        except ValueError as exc:
            raise _malformed(context, f"the response is not JSON: {answer.body[:200]!r}") from exc
        if not isinstance(parsed, dict):
            raise _malformed(context, "the response is not a JSON object")
        parsed["ResponseMetadata"] = metadata
        return parsed
    code, message = error_code_and_message(answer)
    raise error_from_response(code, message, answer.status, answer.headers, context)


def error_code_and_message(answer: Answer) -> tuple[str, str]:
    """The error code and message of a non-2xx answer, read as botocore's JSON protocol parser
    reads them: ``__type`` after its ``#``, ``message`` or ``Message``; the HTTP status as the
    code when the body says nothing (a proxy's HTML page, an empty 5xx)."""
    try:
        body = json.loads(answer.body) if answer.body.strip() else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("__type") or answer.status)
    code = code.split(":", 1)[0].rsplit("#", 1)[-1]
    message = body.get("message", body.get("Message", "")) or http.client.responses.get(answer.status, "")
    return code, str(message)


def _malformed(context: CallContext, message: str) -> AwsError:
    return MalformedResponseError(
        message, code="ResponseParseError", operation=context.operation, region=context.region
    )
