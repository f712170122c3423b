"""The engine's DynamoDB client: DynamoDB's JSON protocol over the standard library, for every
DynamoDB call the engine makes (reads, and with ``writes=True`` the engine's writes). A cold
read-only handler needs neither aiohttp nor botocore's client machinery, and a call costs a
fraction of aiobotocore's CPU (benchmarks/RESULTS.md, cold_read and dynamodb_costs).

Its calls take the same parameters and give the same answers as the low-level aiobotocore
client's, so ``syncengine.dynamodb.seam.Dynamo`` drives it as it would drive that client. The wire format
follows AWS:

* DynamoDB low-level API (POST to the endpoint's path, ``X-Amz-Target:
  DynamoDB_20120810.<Operation>``, ``Content-Type: application/x-amz-json-1.0``, errors as
  ``{"__type": "...#Code", "message"}``, ``x-amz-crc32`` over the body):
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.LowLevelAPI.html
* Signature Version 4: https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
  (tests/unit/dynamodb/test_client.py checks the signature equals botocore's ``SigV4Auth``).

What it honours, as botocore does (resolved in ``syncengine.dynamodb.sdk_config``):

* credentials: the environment's keys (botocore's first provider), else botocore's own credential
  chain (``botocore.session.Session().get_credentials()``: profiles, SSO, web identity, container
  and instance credentials), refreshed through its public ``get_frozen_credentials``;
* the endpoint: an explicit override or ``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL``
  (path prefix kept), else the regional endpoint; with FIPS or dual-stack endpoints asked for
  (``AWS_USE_FIPS_ENDPOINT`` / ``AWS_USE_DUALSTACK_ENDPOINT``, or a profile's
  ``use_fips_endpoint`` / ``use_dualstack_endpoint`` when the credentials come from botocore's
  chain) and in isolated partitions, the endpoint botocore's public endpoint resolution gives a
  DynamoDB client (``client.meta.endpoint_url``);
* ``AWS_CA_BUNDLE``, certificate and host name verification (tests/integration/test_tls.py);
* ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` (a CONNECT tunnel for HTTPS).

Requests run on keep-alive HTTP/1.1 connections over asyncio streams, pooled per client (the
resident loop's pool keeps them across a Lambda container's invocations), cancellable by the run's
deadline. Bodies are asked for uncompressed (``Accept-Encoding: identity``: ``x-amz-crc32`` covers
the bytes as sent). Errors become the engine's tree through ``syncengine.core.retry.error_from_response``,
the same classification as botocore's ``ClientError``; retries stay with the one retry layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import ssl
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from syncengine.core.errors import (
    AwsError,
    ConfigurationError,
    MalformedResponseError,
    PermanentAwsError,
    TransientAwsError,
)
from syncengine.core.retry import CallContext, error_from_response
from syncengine.dynamodb.http1 import Answer, Connection, read_answer
from syncengine.dynamodb.sdk_config import CredentialSource, EnvCredentials, proxy_for

SERVICE = "dynamodb"
TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
USER_AGENT = "recovery-instance-sync/dynamodb"
# The read operations this client serves: method name (as on the aiobotocore client) -> operation.
OPERATIONS = {"get_item": "GetItem", "batch_get_item": "BatchGetItem", "query": "Query", "scan": "Scan"}
# And, for the engine's runtime only (``writes=True``), the writes the engine makes.
WRITE_OPERATIONS = {
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "batch_write_item": "BatchWriteItem",
}
# A reused keep-alive connection the server closed while idle (a Lambda container is frozen
# between invocations) fails like this before any answer: sent once more on a new connection.
STALE_CONNECTION_ERRORS = (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError)
# Called with the operation name and parameters of every request before it is sent (retries
# included; the parameters may be changed), and with the parsed answer after: what botocore's
# ``provide-client-params`` and ``after-call`` events are to its clients, for benchmarks and
# tests that count calls.
REQUEST_LISTENERS: list[Callable[[str], None]] = []
CALL_OBSERVERS: list[CallObserver] = []


class CallObserver:
    """Sees every call's parameters before it is sent and its answer after (``CALL_OBSERVERS``)."""

    def before(self, operation: str, params: dict[str, Any]) -> None: ...

    def after(self, operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> None: ...

    @contextlib.contextmanager
    def observing(self) -> Iterator[None]:
        """Registered in ``CALL_OBSERVERS`` for the block."""
        CALL_OBSERVERS.append(self)
        try:
            yield
        finally:
            CALL_OBSERVERS.remove(self)


# -- Signature Version 4 --------------------------------------------------------------------------


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sigv4_headers(
    credentials: EnvCredentials,
    region: str,
    host: str,
    target: str,
    body: bytes,
    timestamp: str,
    path: str = "/",
) -> dict[str, str]:
    """The headers of a signed DynamoDB POST to ``path`` (``timestamp`` as ``YYYYMMDDTHHMMSSZ``):
    every header but ``User-Agent`` and ``Accept-Encoding`` is signed, as botocore signs them."""
    headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": target, "X-Amz-Date": timestamp}
    if credentials.token:
        headers["X-Amz-Security-Token"] = credentials.token
    signed = {"host": host, **{name.lower(): value.strip() for name, value in headers.items()}}
    names = sorted(signed)
    canonical_request = "\n".join(
        [
            "POST",
            quote(path, safe="/~"),
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


def host_header(host: str, port: int, default_port: int) -> str:
    """The Host header (and signed host): IPv6 literals in brackets, the port only when it is not
    the scheme's default (as botocore and RFC 9110 write it)."""
    name = f"[{host}]" if ":" in host else host
    return name if port == default_port else f"{name}:{port}"


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
            raise ConfigurationError(f"not an HTTP endpoint: {endpoint!r}")
        self.endpoint = endpoint
        self.region = region
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        default_port = 443 if self._https else 80
        self._port = parts.port or default_port
        self._host_header = host_header(self._host, self._port, default_port)
        # An endpoint's path prefix is kept, as botocore joins it with the operation's path ("/").
        self._path = parts.path or "/"
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._environ = environ
        self._credentials = CredentialSource(environ)
        proxy = proxy_for(endpoint, environ)
        self._proxy = urlsplit(proxy) if proxy else None
        if self._proxy is not None and not self._proxy.hostname:
            raise ConfigurationError(f"not a proxy URL: {proxy!r}")
        self._operations = {**OPERATIONS, **WRITE_OPERATIONS} if writes else OPERATIONS
        self._idle: list[Connection] = []
        self._ssl: ssl.SSLContext | None = None
        self.closed = False

    async def __aenter__(self) -> DynamoDBHttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True
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
        credentials = await self._credentials.current(context)
        operation = self._operations[method]
        if CALL_OBSERVERS:
            params = dict(params)
            for observer in CALL_OBSERVERS:
                observer.before(operation, params)
        target = TARGET_PREFIX + operation
        body = json.dumps(params, separators=(",", ":")).encode("utf-8")
        timestamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = sigv4_headers(credentials, self.region, self._host_header, target, body, timestamp, self._path)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        # Through a proxy, plain HTTP asks for the absolute URI (RFC 9112, 3.2.2); HTTPS tunnels.
        target_uri = self._path if self._https or self._proxy is None else self.endpoint
        message = (
            f"POST {target_uri} HTTP/1.1\r\nHost: {self._host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Accept-Encoding: identity\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        ).encode("latin-1") + body
        for listener in REQUEST_LISTENERS:
            listener(operation)
        parsed = parse_answer(await self._exchange(message, context), context)
        for observer in CALL_OBSERVERS:
            observer.after(operation, params, parsed)
        return parsed

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
            if self._proxy is None:
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, ssl=self._ssl_context() if self._https else None
                )
                return Connection(reader, writer)
            proxy = self._proxy
            proxy_port = proxy.port or (443 if proxy.scheme == "https" else 80)
            reader, writer = await asyncio.open_connection(
                proxy.hostname, proxy_port, ssl=self._ssl_context() if proxy.scheme == "https" else None
            )
            if self._https:
                await self._tunnel(reader, writer)
                await writer.start_tls(self._ssl_context(), server_hostname=self._host)
            return Connection(reader, writer)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Ask the proxy for a tunnel to the endpoint (HTTP CONNECT, RFC 9110 9.3.6)."""
        authority = host_header(self._host, self._port, -1)
        writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("latin-1"))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b""
        if not status.startswith(b"2"):
            writer.close()
            raise ConnectionRefusedError(f"the proxy refused a tunnel to {authority}: {head.splitlines()[0]!r}")

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
