"""A simulated AWS estate on loopback: DRS (rest-json), EC2 (query/XML) and STS (query/XML) on
one aiohttp port, so unmodified boto3/aiobotocore clients work against it via ``endpoint_url``.

    async with run_simulator(EstateConfig(accounts=3, instances_per_scope=40, seed=1)) as sim:
        session.client("drs", endpoint_url=sim.endpoint_url, region_name="us-east-1", ...)

The caller's account comes from the access key (keys the simulator did not issue belong to the
hub; AssumeRole issues keys bound to the target account), the region and service from the SigV4
credential scope. Faults (latency, throttling, 5xx, failing scopes, AccessDenied accounts,
uninitialised regions) can be set at construction, with ``set_faults`` or over HTTP
(``POST /_simulator/faults``); every call is counted (``calls``, ``GET /_simulator/calls``); the
EventBridge events of the estate's changes are recorded (``events()``, ``GET /_simulator/events``).
"""

from __future__ import annotations

from .calls import CallCounter
from .config import DEFAULT_REGIONS, DEFAULT_ROLE_NAME, EstateConfig
from .errors import AwsError
from .estate import Estate
from .faults import FaultConfig
from .server import Simulator, SimulatorThread, run_simulator

__all__ = [
    "DEFAULT_REGIONS",
    "DEFAULT_ROLE_NAME",
    "AwsError",
    "CallCounter",
    "Estate",
    "EstateConfig",
    "FaultConfig",
    "Simulator",
    "SimulatorThread",
    "run_simulator",
]
