"""Invoking a Lambda function asynchronously: how the data-management function runs a full sync
past API Gateway's 29-second limit (it invokes itself, ``InvocationType=Event``). Engine-side, so
``handlers/`` makes no AWS call of its own.

A seam (``SelfInvoker``): tests pass a recorder instead, so no test needs a real Lambda (moto's
server runs Lambda invocations only with docker). The client is opened inside the call, on the
engine's shared aioboto3 Session: never at module scope, where it would outlive its event loop.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiobotocore.config import AioConfig

from syncengine.aws.clients import shared_session
from syncengine.core.config import NO_SDK_RETRIES, SyncSettings
from syncengine.core.errors import AwsError
from syncengine.core.retry import CallContext, call_with_retry

SelfInvoker = Callable[[str, Mapping[str, Any], SyncSettings], Awaitable[None]]
"""``(function name or ARN, payload, settings) -> None``; raises the engine's ``AwsError``."""


def region_of(function_arn: str, default: str) -> str:
    """``arn:aws:lambda:<region>:<account>:function:<name>`` -> region (else ``default``)."""
    parts = function_arn.split(":")
    return parts[3] if len(parts) > 4 and parts[0] == "arn" and parts[3] else default


async def invoke_self_async(function_name: str, payload: Mapping[str, Any], settings: SyncSettings) -> None:
    """Invoke ``function_name`` with ``InvocationType=Event`` (Lambda queues it and answers 202)."""
    region = region_of(function_name, settings.home_region)
    config = AioConfig(
        retries=dict(NO_SDK_RETRIES),
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )
    kwargs: dict[str, Any] = {"region_name": region, "config": config}
    endpoint = settings.endpoint_url("lambda")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    async with shared_session().client("lambda", **kwargs) as client:
        response = await call_with_retry(
            lambda: client.invoke(
                FunctionName=function_name,
                InvocationType="Event",
                Payload=json.dumps(dict(payload)).encode(),
            ),
            CallContext("lambda:Invoke", region=region),
            settings=settings.retry,
        )
    status = response.get("StatusCode")
    if status != 202:
        raise AwsError(f"Lambda did not queue the invocation (status {status}).", operation="lambda:Invoke")
