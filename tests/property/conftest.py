"""Hypothesis profiles for the property tests, chosen by ``HYPOTHESIS_PROFILE`` (default ``ci``).

* ``ci``: few examples, derandomized (the same examples every run, so a red build is
  reproducible and the suite's time is predictable), no per-example deadline (examples talk to
  real HTTP servers, whose latency is not the property under test).
* ``dev``: five times the examples, random each run, with the example database on, for hunting.

Properties over real servers (simulator + DynamoDB) use the profile's ``max_examples``; pure
properties multiply it (``PURE_EXAMPLES``) because each example costs microseconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from devtools.localdb import dynalite_available

_COMMON = {
    "deadline": None,
    # Fixtures here are session-scoped servers; each example builds its own tables and estate.
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}
settings.register_profile("ci", max_examples=6, derandomize=True, database=None, **_COMMON)
settings.register_profile("dev", max_examples=30, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SERVER_EXAMPLES = settings.default.max_examples
PURE_EXAMPLES = SERVER_EXAMPLES * 25


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(endpoint URL, name) of one DynamoDB backend for every example: dynalite when installed
    (faster to create tables on, and always installed on CI), else moto."""
    name = "dynalite" if dynalite_available() else "moto"
    yield request.getfixturevalue(f"{name}_endpoint"), name
