"""Both functions that sync load the DRS, EC2 and STS service models in their init phase, so a
sync's first clients read no model from disk inside an invocation ("Initialize SDK clients ...
outside of the function handler": https://docs.aws.amazon.com/lambda/latest/dg/best-practices.html).
Checked in a fresh interpreter: the models stay loaded in a test process once any test built a client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHECK = """
import asyncio, json, sys
import {module}
from syncengine.aws.clients import botocore_session_of, shared_session

session = shared_session()
loader = botocore_session_of(session).get_component("data_loader")
loaded = []
real_load = loader.file_loader.load_file

def counted_load(path):
    loaded.append(path)
    return real_load(path)

loader.file_loader.load_file = counted_load
keys = {{"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "example"}}  # not a secret

async def clients():
    for service in ("drs", "ec2", "sts"):
        async with session.client(service, region_name="us-east-1", **keys):
            pass

asyncio.run(clients())
print(json.dumps([path for path in loaded if path.endswith(("/service-2", "/endpoint-rule-set-1"))]))
"""


@pytest.mark.parametrize("module", ["handlers.data_management", "handlers.refresh"])
def test_init_phase_loads_the_models_a_sync_builds_its_clients_from(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    command = [sys.executable, "-c", CHECK.format(module=module)]  # our own interpreter and code
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)  # noqa: S603
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
