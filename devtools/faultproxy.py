"""A DynamoDB fault proxy: forwards DynamoDB JSON requests to a real backend (moto, dynalite) and
injects the failures DynamoDB produces under load, so tests can prove the engine loses nothing.

Faults (``FaultKind``), chosen per request by rules (``FaultRule``: kind, rate, operations,
tables, a text the request must contain, a limit on how often):

* ``UNPROCESSED``: a BatchWriteItem forwards only part of its writes and returns the rest as
  ``UnprocessedItems``; a BatchGetItem reads only part of its keys and returns the rest as
  ``UnprocessedKeys``. Never the whole batch (DynamoDB throws instead), so one-item batches pass.
* ``THROUGHPUT``: HTTP 400 ``ProvisionedThroughputExceededException``, nothing forwarded.
* ``SERVER_ERROR``: HTTP 500 ``InternalServerError``, nothing forwarded.
* ``LATENCY``: the answer waits ``FaultRule.seconds`` (added to any other fault); with
  ``after_forward=True`` the backend applies the request at once and only the answer is late.
* ``DROP``: the connection closes without a response, before forwarding (the request is lost)
  or, with ``after_forward=True``, after it (the write happened but the caller cannot know).

Responses are DynamoDB's wire format: ``application/x-amz-json-1.0``, ``__type`` error codes and
a correct ``x-amz-crc32`` over every body the proxy rewrites, so aiobotocore parses them as it
parses AWS's. The proxy listens on a free loopback port; use it in-process
(``async with DynamoFaultProxy(url) as proxy``) or from synchronous code in a background thread
(``with FaultProxyThread(url) as proxy``). Rules change at run time (``set_rules``) from any
thread; ``injected`` counts what was injected, ``requests`` what was asked, and with
``record=True`` every request body is kept for inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiohttp
from aiohttp import web

LOOPBACK = "127.0.0.1"
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
TARGET_PREFIX = "DynamoDB_20120810."
BATCH_OPERATIONS = frozenset({"BatchWriteItem", "BatchGetItem"})
# Request headers the backend must compute itself (or that would make it compress the answer).
_HOP_REQUEST_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "expect"}
)
_HOP_RESPONSE_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive", "date", "server"}
)
DEFAULT_STOP_TIMEOUT = 5.0


class FaultKind(StrEnum):
    UNPROCESSED = "unprocessed"
    THROUGHPUT = "throughput"
    SERVER_ERROR = "server_error"
    LATENCY = "latency"
    DROP = "drop"


@dataclass(frozen=True)
class FaultRule:
    """Inject ``kind`` into a matching request with probability ``rate``.

    ``operations`` / ``tables`` narrow the match (empty = any), ``contains`` to requests whose
    body holds that text (a scope key, an account id); ``limit`` caps how many times this rule
    fires (None = no cap); ``fraction`` is the share of a batch left unprocessed; ``seconds`` is
    the latency added; ``after_forward`` makes a drop or a delay happen after the backend applied
    the request.
    """

    kind: FaultKind
    rate: float = 1.0
    operations: frozenset[str] = frozenset()
    tables: frozenset[str] = frozenset()
    contains: str = ""
    limit: int | None = None
    fraction: float = 0.5
    seconds: float = 0.0
    after_forward: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        object.__setattr__(self, "operations", frozenset(_as_names(self.operations)))
        object.__setattr__(self, "tables", frozenset(_as_names(self.tables)))
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within 0..1, got {self.rate}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be within (0, 1], got {self.fraction}")
        if self.seconds < 0:
            raise ValueError("seconds must not be negative")
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must not be negative")
        if self.kind is FaultKind.UNPROCESSED and self.operations - BATCH_OPERATIONS:
            raise ValueError("unprocessed faults apply to BatchWriteItem and BatchGetItem only")

    def matches(self, operation: str, tables: frozenset[str], raw: str) -> bool:
        if self.operations and operation not in self.operations:
            return False
        if self.tables and not (self.tables & tables):
            return False
        if self.contains and self.contains not in raw:
            return False
        return not (self.kind is FaultKind.UNPROCESSED and operation not in BATCH_OPERATIONS)


def _as_names(values: Iterable[str] | str) -> Iterable[str]:
    return (values,) if isinstance(values, str) else values


@dataclass(frozen=True)
class RecordedRequest:
    operation: str
    body: dict[str, Any]


@dataclass
class _Decision:
    operation: str
    delay: float = 0.0
    delay_after: float = 0.0
    fault: FaultRule | None = None
    fault_index: int = -1


@dataclass
class _State:
    rules: tuple[FaultRule, ...]
    fired: Counter[int] = field(default_factory=Counter)


def _crc32(body: bytes) -> str:
    return str(zlib.crc32(body) & 0xFFFFFFFF)


def json_response(payload: dict[str, Any], *, status: int = 200, request_id: str = "") -> web.Response:
    """A response exactly as DynamoDB shapes it (content type, request id, body checksum)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": JSON_CONTENT_TYPE,
        "x-amzn-RequestId": request_id or uuid.uuid4().hex.upper(),
        "x-amz-crc32": _crc32(body),
    }
    return web.Response(body=body, status=status, headers=headers)


def error_response(code: str, message: str, status: int) -> web.Response:
    return json_response({"__type": ERROR_PREFIX + code, "message": message}, status=status)


def _request_tables(body: dict[str, Any]) -> frozenset[str]:
    names = set(body.get("RequestItems") or {})
    if isinstance(body.get("TableName"), str):
        names.add(body["TableName"])
    return frozenset(names)


def _split(values: list[Any], fraction: float, rng: random.Random) -> tuple[list[Any], list[Any]]:
    """(forwarded, held back): hold back ``fraction`` of the values, at least one, never all."""
    if len(values) < 2:
        return values, []
    held_count = min(len(values) - 1, max(1, round(len(values) * fraction)))
    held_indexes = set(rng.sample(range(len(values)), held_count))
    forwarded = [v for i, v in enumerate(values) if i not in held_indexes]
    held = [v for i, v in enumerate(values) if i in held_indexes]
    return forwarded, held


class DynamoFaultProxy:
    """The proxy server. ``async with DynamoFaultProxy(backend_url) as proxy: proxy.endpoint_url``."""

    def __init__(
        self,
        backend_url: str,
        *,
        rules: Iterable[FaultRule] = (),
        seed: int | None = None,
        record: bool = False,
        host: str = LOOPBACK,
        port: int = 0,
    ) -> None:
        if host not in {LOOPBACK, "localhost", "::1"}:
            raise ValueError("the fault proxy listens on loopback only")
        self.backend_url = backend_url.rstrip("/")
        self.host = host
        self.port = port
        self.record = record
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._state = _State(tuple(rules))
        self._injected: Counter[tuple[str, str]] = Counter()
        self._requests: Counter[str] = Counter()
        self._held_back = 0
        self._recorded: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.endpoint_url = ""

    # -- configuration (thread-safe) --------------------------------------------------------------

    def set_rules(self, *rules: FaultRule) -> None:
        """Replace the rules (and their fire counts); no rules = a transparent proxy."""
        with self._lock:
            self._state = _State(tuple(rules))

    def clear(self) -> None:
        self.set_rules()

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        return self._state.rules

    def reset_counts(self) -> None:
        with self._lock:
            self._injected.clear()
            self._requests.clear()
            self._held_back = 0
            self._recorded.clear()

    def injected(self, kind: FaultKind | str | None = None, operation: str | None = None) -> int:
        """How many faults were injected (of this kind, into this operation)."""
        with self._lock:
            return sum(
                n
                for (k, op), n in self._injected.items()
                if (kind is None or k == kind) and (operation is None or op == operation)
            )

    def requests(self, operation: str | None = None) -> int:
        with self._lock:
            return sum(self._requests.values()) if operation is None else self._requests[operation]

    @property
    def held_back(self) -> int:
        """Writes and keys returned as unprocessed so far."""
        with self._lock:
            return self._held_back

    @property
    def recorded(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._recorded)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        # A short shutdown: handlers still sleeping on an injected delay must not hold up a test.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or ()
        self.port = sockets[0].getsockname()[1]
        self._client = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=60),
            connector=aiohttp.TCPConnector(limit=64),
        )
        self.endpoint_url = f"http://{self.host}:{self.port}"
        return self.endpoint_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> DynamoFaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- request handling -------------------------------------------------------------------------

    def _decide(self, operation: str, tables: frozenset[str], raw: str) -> _Decision:
        decision = _Decision(operation)
        with self._lock:
            self._requests[operation] += 1
            state = self._state
            for index, rule in enumerate(state.rules):
                if not rule.matches(operation, tables, raw):
                    continue
                if rule.limit is not None and state.fired[index] >= rule.limit:
                    continue
                if rule.kind is not FaultKind.LATENCY and decision.fault is not None:
                    continue
                if self._rng.random() >= rule.rate:
                    continue
                if rule.kind is FaultKind.LATENCY:
                    if rule.after_forward:
                        decision.delay_after += rule.seconds
                    else:
                        decision.delay += rule.seconds
                    state.fired[index] += 1
                    self._injected[(rule.kind.value, operation)] += 1
                else:
                    # Counted when applied: an UNPROCESSED roll on a one-item batch injects nothing.
                    decision.fault = rule
                    decision.fault_index = index
        return decision

    def _count(self, decision: _Decision, held: int = 0) -> None:
        assert decision.fault is not None
        with self._lock:
            self._state.fired[decision.fault_index] += 1
            self._injected[(decision.fault.kind.value, decision.operation)] += 1
            self._held_back += held

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else target
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return await self._forward(request, raw)
        if self.record:
            with self._lock:
                self._recorded.append(RecordedRequest(operation, body))
        decision = self._decide(operation, _request_tables(body), raw.decode("utf-8", "replace"))
        if decision.delay:
            await asyncio.sleep(decision.delay)
        fault = decision.fault
        if fault is None:
            response = await self._forward(request, raw)
            if decision.delay_after:
                await asyncio.sleep(decision.delay_after)
            return response
        if fault.kind is FaultKind.THROUGHPUT:
            self._count(decision)
            return error_response(
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded. "
                "Consider increasing your provisioning level with the UpdateTable API.",
                400,
            )
        if fault.kind is FaultKind.SERVER_ERROR:
            self._count(decision)
            return error_response("InternalServerError", "Internal server error", 500)
        if fault.kind is FaultKind.DROP:
            self._count(decision)
            if fault.after_forward:
                await self._forward(request, raw)
            return self._drop(request)
        if operation == "BatchWriteItem":
            return await self._partial_batch_write(request, body, decision)
        return await self._partial_batch_get(request, body, decision)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()
        # Nothing can be written to an aborted transport; aiohttp discards this response.
        return web.Response(status=500)

    async def _partial_batch_write(
        self, request: web.Request, body: dict[str, Any], decision: _Decision
    ) -> web.StreamResponse:
        assert decision.fault is not None
        fraction = decision.fault.fraction
        forwarded: dict[str, list[Any]] = {}
        held: dict[str, list[Any]] = {}
        with self._lock:
            for table, writes in (body.get("RequestItems") or {}).items():
                sent, kept = _split(list(writes), fraction, self._rng)
                forwarded[table] = sent
                if kept:
                    held[table] = kept
        if not held:
            return await self._forward(request, json.dumps(body).encode())
        self._count(decision, held=sum(len(v) for v in held.values()))
        response = await self._forward_json(request, {**body, "RequestItems": forwarded})
        if isinstance(response, web.Response):
            return response
        unprocessed = dict(response.get("UnprocessedItems") or {})
        for table, writes in held.items():
            unprocessed[table] = list(unprocessed.get(table) or []) + writes
        return json_response({**response, "UnprocessedItems": unprocessed})

    async def _partial_batch_get(
        self, request: web.Request, body: dict[str, Any], decision: _Decision
    ) -> web.StreamResponse:
        assert decision.fault is not None
        fraction = decision.fault.fraction
        forwarded: dict[str, dict[str, Any]] = {}
        held: dict[str, dict[str, Any]] = {}
        with self._lock:
            for table, spec in (body.get("RequestItems") or {}).items():
                sent, kept = _split(list(spec.get("Keys") or []), fraction, self._rng)
                forwarded[table] = {**spec, "Keys": sent}
                if kept:
                    held[table] = {**spec, "Keys": kept}
        if not held:
            return await self._forward(request, json.dumps(body).encode())
        self._count(decision, held=sum(len(v["Keys"]) for v in held.values()))
        response = await self._forward_json(request, {**body, "RequestItems": forwarded})
        if isinstance(response, web.Response):
            return response
        unprocessed = dict(response.get("UnprocessedKeys") or {})
        for table, spec in held.items():
            previous = (unprocessed.get(table) or {}).get("Keys") or []
            unprocessed[table] = {**spec, "Keys": list(previous) + spec["Keys"]}
        return json_response({**response, "UnprocessedKeys": unprocessed})

    async def _send(self, request: web.Request, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self._client is not None, "proxy not started"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_REQUEST_HEADERS}
        url = self.backend_url + request.rel_url.path_qs
        async with self._client.post(url, data=raw, headers=headers) as upstream:
            payload = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_RESPONSE_HEADERS}
            return upstream.status, kept, payload

    async def _forward(self, request: web.Request, raw: bytes) -> web.Response:
        """Send the request on unchanged and answer with the backend's response."""
        status, headers, payload = await self._send(request, raw)
        return web.Response(body=payload, status=status, headers=headers)

    async def _forward_json(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any] | web.Response:
        """The backend's decoded success body, or its error response unchanged."""
        status, headers, payload = await self._send(request, json.dumps(body).encode())
        if status != 200:
            return web.Response(body=payload, status=status, headers=headers)
        decoded = json.loads(payload or b"{}")
        return decoded if isinstance(decoded, dict) else {}


class FaultProxyThread:
    """The proxy on its own event loop in a daemon thread, for synchronous callers.

    ``with FaultProxyThread(url) as proxy`` yields the running ``DynamoFaultProxy``; its
    configuration and counters are thread-safe, so tests change rules from their own loop.
    """

    def __init__(self, backend_url: str, **options: Any) -> None:
        self.proxy = DynamoFaultProxy(backend_url, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dynamodb-fault-proxy", daemon=True)

    def start(self) -> DynamoFaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(DEFAULT_STOP_TIMEOUT)
        return self.proxy

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(DEFAULT_STOP_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(DEFAULT_STOP_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> DynamoFaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


__all__ = [
    "DynamoFaultProxy",
    "FaultKind",
    "FaultProxyThread",
    "FaultRule",
    "RecordedRequest",
    "error_response",
    "json_response",
]
