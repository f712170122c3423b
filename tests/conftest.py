"""Shared fixtures. DynamoDB backends live in tests/fixtures/dynamodb.py, the simulated AWS
estate in tests/fixtures/simulator.py; both are plain pytest plugins registered here."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import structlog

from syncengine.core import logging as engine_logging

NOISY_LOGGERS = ("botocore", "aiobotocore", "aiohttp", "urllib3")

# No test may ever reach real AWS, whatever the shell holds (no credentials, empty variables, or
# real ones): every AWS_* variable of the shell is dropped, then fake credentials, no profile and
# no config file, and a fixed home region are set for every client (and every subprocess).
for _name in [name for name in os.environ if name.startswith("AWS_")]:
    del os.environ[_name]
os.environ["AWS_ACCESS_KEY_ID"] = "AKIATESTHUBACCESSKEY"
os.environ["AWS_SECRET_ACCESS_KEY"] = "test-secret-access-key"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_REGION"] = "us-east-1"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# Safety net: a client built without an explicit endpoint goes to a closed loopback port and
# fails at once, instead of resolving a real AWS endpoint. Service-specific variables
# (AWS_ENDPOINT_URL_DYNAMODB, ...) set by a test still take precedence.
os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"

pytest_plugins = [
    "tests.fixtures.dynamodb",
    "tests.fixtures.simulator",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules holding a ``slow`` test run first, in collection order otherwise. ``make test``
    hands each xdist worker a module whole (``--dist=loadfile``) in this order: a half-minute
    module handed out last keeps the run waiting on one worker while the others sit idle."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow") and item.module}
    items.sort(key=lambda item: not (item.module and item.module.__name__ in slow))


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Let a test configure the engine's logging for real, then put structlog and the stdlib
    levels of the chatty libraries back."""
    saved = structlog.get_config()
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    configured = engine_logging._configured
    yield
    structlog.configure(**saved)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    engine_logging._configured = configured
