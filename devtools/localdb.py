"""Embedded DynamoDB for the demo, the tests and the benchmarks: a real DynamoDB-compatible server
over HTTP on 127.0.0.1, so aiobotocore talks to it exactly as it talks to AWS.

Two backends:

* **moto** (``moto[server]``): runs in a thread of this process. The default, because it needs
  nothing beyond the Python dev dependencies. moto's in-process ``mock_aws`` patches botocore's
  synchronous HTTP layer and does not work with aiobotocore, hence server mode.
* **dynalite** (npm): a separate node process, faster, and it enforces DynamoDB's request limits
  that moto lets through (more than 25 items per BatchWriteItem, duplicate keys in a batch).

Callers choose by argument (``embedded_dynamodb(prefer=...)``); nothing here reads the
environment to switch backends behind their back.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from syncengine.core.errors import SyncEngineError

Backend = Literal["moto", "dynalite"]
Preference = Literal["auto", "moto", "dynalite"]

LOOPBACK = "127.0.0.1"
ENV_ENDPOINT_DYNAMODB = "AWS_ENDPOINT_URL_DYNAMODB"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DYNALITE_LOCAL_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "dynalite"
# node starts in well under a second; the margin covers a loaded CI machine.
DYNALITE_START_TIMEOUT = 20.0
DYNALITE_STOP_TIMEOUT = 5.0
# Another process may grab the free port between our probe and dynalite's bind.
DYNALITE_START_ATTEMPTS = 3


class LocalDynamoDBError(SyncEngineError):
    """An embedded DynamoDB could not be found or started."""

    error_code = "LOCAL_DYNAMODB_ERROR"


@dataclass(frozen=True)
class LocalDynamoDB:
    """A running embedded DynamoDB. ``pid`` is set for backends that run as their own process."""

    endpoint_url: str
    backend: Backend
    pid: int | None = None

    def env(self) -> dict[str, str]:
        """The standard AWS SDK variable that points every DynamoDB client at this server."""
        return {ENV_ENDPOINT_DYNAMODB: self.endpoint_url}


@contextlib.contextmanager
def moto_server() -> Iterator[LocalDynamoDB]:
    """moto's server in a daemon thread on a free loopback port; stopped on exit."""
    # Imported here: moto is a dev dependency, and production code never reaches this module.
    from moto.server import ThreadedMotoServer

    _quiet_werkzeug()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield LocalDynamoDB(endpoint_url=f"http://{host}:{port}", backend="moto")
    finally:
        server.stop()


def _quiet_werkzeug() -> None:
    # werkzeug attaches its own stderr handler at INFO on first use unless the logger already has
    # a level: without this, every DynamoDB request of the demo would print an access-log line.
    logger = logging.getLogger("werkzeug")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def dynalite_executable() -> str | None:
    """The project's npm-installed dynalite, else one on PATH, else None."""
    if DYNALITE_LOCAL_BIN.exists():
        return str(DYNALITE_LOCAL_BIN)
    return shutil.which("dynalite")


def dynalite_available() -> bool:
    """True when dynalite and the node runtime it needs are both installed."""
    return dynalite_executable() is not None and shutil.which("node") is not None


@contextlib.contextmanager
def dynalite_server() -> Iterator[LocalDynamoDB]:
    """dynalite in its own process on a free loopback port, in memory; terminated on exit."""
    executable = dynalite_executable()
    if executable is None or shutil.which("node") is None:
        raise LocalDynamoDBError("dynalite is not installed (run `make dynalite`, which needs npm)")
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process, port = _start_dynalite(executable, stderr)
        try:
            yield LocalDynamoDB(endpoint_url=f"http://{LOOPBACK}:{port}", backend="dynalite", pid=process.pid)
        finally:
            _stop(process)


def _start_dynalite(executable: str, stderr: IO[str]) -> tuple[subprocess.Popen[bytes], int]:
    last_error = ""
    for _ in range(DYNALITE_START_ATTEMPTS):
        port = free_port()
        process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
            [executable, *dynalite_arguments(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        if _wait_until_listening(process, port, DYNALITE_START_TIMEOUT):
            return process, port
        _stop(process)
        stderr.seek(0)
        last_error = stderr.read().strip()[-2000:]
    raise LocalDynamoDBError(f"dynalite did not start: {last_error or 'no output'}")


def dynalite_arguments(port: int) -> list[str]:
    """In memory, loopback only, and tables ACTIVE at once so tests never wait on table states."""
    return [
        "--port",
        str(port),
        "--host",
        LOOPBACK,
        "--createTableMs",
        "0",
        "--deleteTableMs",
        "0",
        "--updateTableMs",
        "0",
    ]


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=DYNALITE_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def embedded_dynamodb(prefer: Preference = "moto") -> Iterator[LocalDynamoDB]:
    """An embedded DynamoDB of the chosen backend.

    ``"moto"`` (the default, needs only Python) and ``"dynalite"`` (fails when it is not installed)
    are explicit; ``"auto"`` takes dynalite when it is installed, else moto: what benchmarks want.
    """
    backend = choose_backend(prefer)
    server = dynalite_server() if backend == "dynalite" else moto_server()
    with server as db:
        yield db


def choose_backend(prefer: str) -> Backend:
    """Resolve a preference into the backend that will actually run."""
    if prefer == "moto":
        return "moto"
    if prefer == "dynalite":
        return "dynalite"
    if prefer == "auto":
        return "dynalite" if dynalite_available() else "moto"
    raise ValueError(f"unknown DynamoDB backend {prefer!r}: expected 'auto', 'moto' or 'dynalite'")
