"""The HTTP face of the simulator: one aiohttp port for DRS, EC2 and STS (routed by the SigV4
credential scope's service) plus the ``/_simulator/*`` control routes, and the ways to run it:
``run_simulator`` in the current event loop, ``SimulatorThread`` in a background thread.

aiohttp's low-level server is used on purpose: one handler and no router or middleware keeps a
DRS call at a few hundred microseconds, so benchmarks measure the engine, not the simulator.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import ModuleType, TracebackType
from typing import Any

from aiohttp import web

from . import drs, ec2, policy, sts
from .calls import SUCCESS, CallCounter
from .config import EstateConfig
from .context import Backend, Call, Reply
from .errors import AwsError
from .estate import Estate
from .faults import FaultConfig, FaultInjector
from .identity import CredentialStore, auth_error
from .sigv4 import parse_authorization

log = logging.getLogger(__name__)

_PROTOCOLS: dict[str, ModuleType] = {"drs": drs, "ec2": ec2, "sts": sts}
_JSON = {"Content-Type": "application/json"}


def _json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(), headers=_JSON)


class Simulator:
    """The simulated estate behind one HTTP endpoint."""

    def __init__(self, config: EstateConfig | Estate | None = None, faults: FaultConfig | None = None) -> None:
        self.estate = config if isinstance(config, Estate) else Estate(config)
        self.calls = CallCounter()
        self._faults = FaultInjector(faults)
        self.credentials = CredentialStore(self.estate.hub_account_id)
        self.backend = Backend(self.estate, self._faults, self.credentials)
        self.endpoint_url: str | None = None
        self._runner: web.ServerRunner | None = None
        self._control: dict[tuple[str, str], Callable[[web.BaseRequest], Awaitable[web.Response]]] = {
            ("GET", "/_simulator/health"): self._health,
            ("GET", "/_simulator/estate"): self._get_estate,
            ("GET", "/_simulator/calls"): self._get_calls,
            ("GET", "/_simulator/sessions"): self._get_sessions,
            ("POST", "/_simulator/calls/reset"): self._reset_calls,
            ("GET", "/_simulator/faults"): self._get_faults,
            ("POST", "/_simulator/faults"): self._post_faults,
            ("POST", "/_simulator/faults/reset"): self._reset_faults,
            ("POST", "/_simulator/launch"): self._launch,
            ("POST", "/_simulator/relaunch"): self._relaunch,
            ("POST", "/_simulator/terminate"): self._terminate,
            ("POST", "/_simulator/ec2"): self._update_ec2,
            ("POST", "/_simulator/scopes"): self._set_scope,
            ("POST", "/_simulator/regions"): self._set_region,
            ("POST", "/_simulator/credentials/expire"): self._expire_credentials,
            ("GET", "/_simulator/events"): self._get_events,
            ("POST", "/_simulator/events/drain"): self._drain_events,
        }

    # ---------------------------------------------------------------- Python API

    @property
    def faults(self) -> FaultConfig:
        return self._faults.config

    def set_faults(self, **changes: Any) -> FaultConfig:
        """Merge fault settings (snake_case or camelCase keys); resets buckets and counters."""
        return self._faults.update(changes)

    def reset_faults(self) -> FaultConfig:
        return self._faults.reset()

    def expire_credentials(self) -> int:
        """Expire every session AssumeRole issued so far; returns how many."""
        return self.credentials.expire_all()

    def events(self, *, drain: bool = False) -> list[dict[str, Any]]:
        """The EventBridge events AWS would have sent for the estate's changes so far."""
        return self.estate.events(drain=drain)

    # ------------------------------------------------------------------- serving

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        server = web.Server(self.handle, access_log=None)
        # A short shutdown: stalled (timeout-fault) requests must not hold up test teardown.
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        self._runner = runner
        bound_host, bound_port = sock.getsockname()[:2]
        self.endpoint_url = f"http://{bound_host}:{bound_port}"
        return self.endpoint_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_simulator"):
            return await self._handle_control(request)
        headers = request.headers
        scope = parse_authorization(headers.get("Authorization"))
        if scope is None:
            return web.Response(
                status=403,
                body=b'{"message":"Missing Authentication Token"}',
                headers={**_JSON, "x-amzn-ErrorType": "MissingAuthenticationTokenException"},
            )
        protocol = _PROTOCOLS.get(scope.service)
        if protocol is None:
            return web.Response(
                status=404,
                body=json.dumps({"message": f"service {scope.service!r} is not simulated"}).encode(),
                headers={**_JSON, "x-amzn-ErrorType": "UnknownServiceException"},
            )
        body = await request.read()
        if protocol is drs:
            operation, params = drs.parse(path, body)
        else:
            operation, params = protocol.parse(body)
        request_id = str(uuid.uuid4())
        account_id = self.estate.hub_account_id
        faults = self._faults
        try:
            delay = faults.delay()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            identity = self.credentials.authenticate(
                scope,
                headers.get("X-Amz-Security-Token"),
                headers.get("X-Amz-Date"),
                now,
                faults.config.signature_ttl_seconds,
            )
            account_id = identity.account_id
            if not self.estate.region_enabled(account_id, scope.region):
                # AWS does not recognise an account's credentials in a region it has not enabled.
                raise auth_error(scope.service, "invalid")
            faults.check_permission(scope.service, operation, identity.session is not None)
            session = identity.session
            if session is not None and session.policy is not None:
                action = f"{scope.service}:{operation}"
                if not policy.allows(session.policy, action):
                    raise policy.denied(scope.service, action, identity.arn)
            faults.check(scope.service, account_id, scope.region, time.monotonic())
            call = Call(scope.service, operation, identity, scope.region, request_id, now, self.backend)
            reply: Reply = faults.tamper(
                scope.service, operation, f"{account_id}#{scope.region}", params, protocol.dispatch(call, params)
            )
            outcome = SUCCESS
        except AwsError as error:
            reply = protocol.render_error(error, request_id)
            outcome = error.code
        except Exception:  # a simulator bug must surface as a 500, never as a hung client
            log.exception("simulator failed on %s %s", scope.service, operation)
            reply = protocol.render_error(AwsError("InternalFailure", "simulator error", 500, sender=False), request_id)
            outcome = "SimulatorError"
        self.calls.record(scope.service, operation, account_id, scope.region, outcome)
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)

    # ----------------------------------------------------------- control routes

    async def _handle_control(self, request: web.BaseRequest) -> web.Response:
        handler = self._control.get((request.method, request.path.rstrip("/")))
        if handler is None:
            return _json_response({"error": f"no route {request.method} {request.path}"}, 404)
        try:
            return await handler(request)
        except (ValueError, KeyError, TypeError) as exc:
            return _json_response({"error": str(exc) or type(exc).__name__}, 400)

    @staticmethod
    async def _body(request: web.BaseRequest) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data

    async def _health(self, request: web.BaseRequest) -> web.Response:
        return _json_response({"status": "ok", "hubAccountId": self.estate.hub_account_id})

    async def _get_estate(self, request: web.BaseRequest) -> web.Response:
        return _json_response(self.estate.summary(self._faults.hidden_scopes()))

    async def _get_calls(self, request: web.BaseRequest) -> web.Response:
        return _json_response(self.calls.snapshot())

    async def _get_sessions(self, request: web.BaseRequest) -> web.Response:
        """Every AssumeRole that issued a session: account, role, session name, session policy."""
        return _json_response(
            [
                {"accountId": a.account_id, "roleName": a.role_name, "sessionName": a.session_name, "policy": a.policy}
                for a in self.credentials.assumed_roles()
            ]
        )

    async def _reset_calls(self, request: web.BaseRequest) -> web.Response:
        self.calls.reset()
        return _json_response({"reset": True})

    async def _get_faults(self, request: web.BaseRequest) -> web.Response:
        return _json_response(self.faults.to_json())

    async def _post_faults(self, request: web.BaseRequest) -> web.Response:
        return _json_response(self._faults.update(await self._body(request)).to_json())

    async def _reset_faults(self, request: web.BaseRequest) -> web.Response:
        return _json_response(self._faults.reset().to_json())

    async def _launch(self, request: web.BaseRequest) -> web.Response:
        data = await self._body(request)
        ids = self.estate.launch(
            data["accountId"],
            data["region"],
            int(data.get("count", 1)),
            is_drill=bool(data.get("isDrill", True)),
        )
        return _json_response({"recoveryInstanceIds": ids})

    async def _relaunch(self, request: web.BaseRequest) -> web.Response:
        data = await self._body(request)
        return _json_response({"recoveryInstanceId": self.estate.relaunch(data["sourceServerId"])})

    async def _terminate(self, request: web.BaseRequest) -> web.Response:
        data = await self._body(request)
        return _json_response({"jobId": self.estate.terminate(data["recoveryInstanceId"])})

    async def _update_ec2(self, request: web.BaseRequest) -> web.Response:
        data = await self._body(request)
        self.estate.update_ec2(data["instanceId"], **data.get("changes", {}))
        return _json_response({"instance": self.estate.ec2_instance(data["instanceId"])})

    async def _set_scope(self, request: web.BaseRequest) -> web.Response:
        data = await self._body(request)
        self.estate.set_scope_initialized(data["accountId"], data["region"], bool(data.get("initialized", True)))
        return _json_response({"accountId": data["accountId"], "region": data["region"]})

    async def _set_region(self, request: web.BaseRequest) -> web.Response:
        data = await self._body(request)
        self.estate.set_region_enabled(data["accountId"], data["region"], bool(data.get("enabled", True)))
        return _json_response({"accountId": data["accountId"], "region": data["region"]})

    async def _get_events(self, request: web.BaseRequest) -> web.Response:
        return _json_response({"events": self.estate.events()})

    async def _drain_events(self, request: web.BaseRequest) -> web.Response:
        return _json_response({"events": self.estate.events(drain=True)})

    async def _expire_credentials(self, request: web.BaseRequest) -> web.Response:
        return _json_response({"expired": self.expire_credentials()})


@asynccontextmanager
async def run_simulator(
    config: EstateConfig | Estate | None = None,
    faults: FaultConfig | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
) -> AsyncIterator[Simulator]:
    """Serve a simulator in the running event loop for the duration of the block."""
    simulator = Simulator(config, faults)
    await simulator.start(host, port)
    try:
        yield simulator
    finally:
        await simulator.stop()


class SimulatorThread:
    """The same server on its own event loop in a daemon thread, for synchronous tests and
    for async tests that must not share their loop with the server. Estate and fault changes
    from the calling thread are safe: both are guarded by locks."""

    def __init__(
        self,
        config: EstateConfig | Estate | None = None,
        faults: FaultConfig | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.simulator = Simulator(config, faults)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # Same attributes as Simulator, so fixtures and helpers take either.
    @property
    def endpoint_url(self) -> str:
        assert self.simulator.endpoint_url is not None, "simulator not started"
        return self.simulator.endpoint_url

    @property
    def estate(self) -> Estate:
        return self.simulator.estate

    @property
    def calls(self) -> CallCounter:
        return self.simulator.calls

    @property
    def faults(self) -> FaultConfig:
        return self.simulator.faults

    @property
    def credentials(self) -> CredentialStore:
        return self.simulator.credentials

    def set_faults(self, **changes: Any) -> FaultConfig:
        return self.simulator.set_faults(**changes)

    def reset_faults(self) -> FaultConfig:
        return self.simulator.reset_faults()

    def expire_credentials(self) -> int:
        return self.simulator.expire_credentials()

    def events(self, *, drain: bool = False) -> list[dict[str, Any]]:
        return self.simulator.events(drain=drain)

    def start(self, timeout: float = 30.0) -> SimulatorThread:
        self._thread = threading.Thread(target=self._run, name="drs-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("simulator did not start")
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.simulator.start(self._host, self._port))
        except BaseException as exc:  # reported to start() in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.simulator.stop())
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
