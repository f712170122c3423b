"""syncengine.aws.selfinvoke: the self-invocation really is an asynchronous (Event) Lambda Invoke, sent to
a loopback stand-in for the Lambda API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from syncengine.aws.selfinvoke import invoke_self_async, region_of
from syncengine.core.config import RetrySettings, SyncSettings
from syncengine.core.errors import AwsError

FUNCTION_ARN = "arn:aws:lambda:eu-west-1:111122223333:function:drs-orchestration-data-management-dev"


class LambdaStandIn:
    """Answers Invoke like Lambda does for InvocationType=Event (202, empty body)."""

    def __init__(self, status: int = 202) -> None:
        self.status = status
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "path": request.path,
                "invocation_type": request.headers.get("X-Amz-Invocation-Type"),
                "authorization": request.headers.get("Authorization", ""),
                "payload": json.loads(await request.read()),
            }
        )
        if self.status >= 400:
            body = json.dumps({"Type": "User", "message": "denied"})
            headers = {"x-amzn-ErrorType": "AccessDeniedException"}
            return web.Response(status=self.status, text=body, headers=headers, content_type="application/json")
        return web.Response(status=self.status, body=b"")


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[LambdaStandIn, str]]:
    lambda_api = LambdaStandIn()
    app = web.Application()
    app.router.add_post("/2015-03-31/functions/{name}/invocations", lambda_api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield lambda_api, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def settings_for(url: str) -> SyncSettings:
    return SyncSettings(endpoint_urls=(("lambda", url),), retry=RetrySettings(max_attempts=1))


async def test_invoke_self_sends_an_event_invocation(stand_in: tuple[LambdaStandIn, str]) -> None:
    lambda_api, url = stand_in

    await invoke_self_async(FUNCTION_ARN, {"operation": "sync_recovery_instances"}, settings_for(url))

    (request,) = lambda_api.requests
    assert request["invocation_type"] == "Event"
    assert request["payload"] == {"operation": "sync_recovery_instances"}
    assert "drs-orchestration-data-management-dev" in request["path"]
    assert "/eu-west-1/lambda/" in request["authorization"]


async def test_invoke_self_failure_raises_the_engines_error(stand_in: tuple[LambdaStandIn, str]) -> None:
    lambda_api, url = stand_in
    lambda_api.status = 403

    with pytest.raises(AwsError) as caught:
        await invoke_self_async(FUNCTION_ARN, {"operation": "sync_recovery_instances"}, settings_for(url))

    assert caught.value.error_type == "AccessDeniedException"


@pytest.mark.parametrize(
    ("function", "region"),
    [
        pytest.param(FUNCTION_ARN, "eu-west-1", id="arn"),
        pytest.param(FUNCTION_ARN + ":live", "eu-west-1", id="qualified-arn"),
        pytest.param("drs-orchestration-data-management-dev", "us-east-1", id="name"),
    ],
)
def test_region_of_reads_the_arn(function: str, region: str) -> None:
    assert region_of(function, "us-east-1") == region
