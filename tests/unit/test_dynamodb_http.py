"""The read path's light DynamoDB client: its SigV4 signature is botocore's, its answers and errors
read as botocore's JSON protocol parser reads them, and it is used only where botocore would
resolve the same endpoint and credentials. Behaviour on real servers: tests/integration/
test_dynamodb_http.py."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from syncengine.config import SyncSettings
from syncengine.dynamodb_http import (
    Answer,
    DynamoDBHttpClient,
    EnvCredentials,
    endpoint_for,
    error_code_and_message,
    light_reads_enabled,
    parse_answer,
    read_answer,
    sigv4_headers,
)
from syncengine.errors import (
    AccessDeniedError,
    MalformedResponseError,
    PermanentAwsError,
    ThrottledError,
    TransientAwsError,
    ValidationError,
)
from syncengine.retry import CallContext

TIMESTAMP = "20261129T203000Z"
BODY = b'{"TableName":"cache","Key":{"sourceServerId":{"S":"s-1"}}}'
CONTEXT = CallContext("dynamodb:get_item", region="eu-west-1")
ENV = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}


def botocore_authorization(credentials: EnvCredentials, host: str, headers: dict[str, str]) -> str:
    """botocore's SigV4Auth over the same request, at the same timestamp (set as add_auth sets it)."""
    request = AWSRequest(method="POST", url=f"https://{host}/", data=BODY, headers=headers)
    request.context["timestamp"] = TIMESTAMP
    auth = SigV4Auth(
        Credentials(credentials.access_key, credentials.secret_key, credentials.token), "dynamodb", "eu-west-1"
    )
    auth._modify_request_before_signing(request)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    auth._inject_signature_to_request(request, signature)
    return request.headers["Authorization"]


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param(EnvCredentials("AKIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG"), id="long-term-keys"),
        pytest.param(EnvCredentials("ASIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "IQoJb3JpZ2luX2Vj+token=="), id="session"),
    ],
)
@pytest.mark.parametrize("host", ["dynamodb.eu-west-1.amazonaws.com", "127.0.0.1:8000"])
def test_sigv4_headers_sign_as_botocore_sigv4auth(credentials: EnvCredentials, host: str) -> None:
    headers = sigv4_headers(credentials, "eu-west-1", host, "DynamoDB_20120810.GetItem", BODY, TIMESTAMP)
    unsigned = {"Content-Type": headers["Content-Type"], "X-Amz-Target": headers["X-Amz-Target"], "Host": host}
    assert headers["Authorization"] == botocore_authorization(credentials, host, unsigned)
    assert headers["X-Amz-Date"] == TIMESTAMP
    assert headers.get("X-Amz-Security-Token") == credentials.token


def test_sigv4_headers_signature_changes_with_the_body() -> None:
    credentials = EnvCredentials("AKIAEXAMPLE", "secret")
    first = sigv4_headers(credentials, "eu-west-1", "h", "DynamoDB_20120810.GetItem", BODY, TIMESTAMP)
    second = sigv4_headers(credentials, "eu-west-1", "h", "DynamoDB_20120810.GetItem", BODY + b" ", TIMESTAMP)
    assert first["Authorization"] != second["Authorization"]


def answer(status: int, body: Any, **headers: str) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status, {name.replace("_", "-"): value for name, value in headers.items()}, raw)


@pytest.mark.parametrize(
    ("reply", "code", "message"),
    [
        pytest.param(
            answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException", "message": "gone"}),
            "ResourceNotFoundException",
            "gone",
            id="namespaced-type",
        ),
        pytest.param(answer(400, {"__type": "ValidationException", "Message": "bad"}), "ValidationException", "bad"),
        pytest.param(answer(503, b"<html><body>Service Unavailable</body></html>"), "503", "Service Unavailable"),
        pytest.param(answer(500, b""), "500", "Internal Server Error", id="empty-5xx"),
    ],
)
def test_error_code_and_message_read_as_botocore_json_parser(reply: Answer, code: str, message: str) -> None:
    assert error_code_and_message(reply) == (code, message)


@pytest.mark.parametrize(
    ("reply", "error_class"),
    [
        pytest.param(
            answer(400, {"__type": "x#ProvisionedThroughputExceededException", "message": "slow down"}),
            ThrottledError,
            id="throughput",
        ),
        pytest.param(answer(400, {"__type": "x#ThrottlingException"}), ThrottledError, id="throttling"),
        pytest.param(answer(500, {"__type": "x#InternalServerError"}), TransientAwsError, id="internal"),
        pytest.param(answer(400, {"__type": "x#AccessDeniedException"}), AccessDeniedError, id="access-denied"),
        pytest.param(answer(400, {"__type": "x#ValidationException"}), ValidationError, id="validation"),
        pytest.param(answer(400, {"__type": "x#ResourceNotFoundException"}), PermanentAwsError, id="not-found"),
    ],
)
def test_parse_answer_error_becomes_engine_error(reply: Answer, error_class: type[Exception]) -> None:
    with pytest.raises(error_class) as raised:
        parse_answer(reply, CONTEXT)
    assert type(raised.value) is error_class
    assert (raised.value.operation, raised.value.region) == ("dynamodb:get_item", "eu-west-1")


def test_parse_answer_throttle_keeps_retry_after() -> None:
    reply = answer(400, {"__type": "x#ThrottlingException"}, retry_after="3")
    with pytest.raises(ThrottledError) as raised:
        parse_answer(reply, CONTEXT)
    assert raised.value.retry_after == 3.0


def test_parse_answer_success_adds_response_metadata() -> None:
    body = {"Item": {"pk": {"S": "a"}}}
    parsed = parse_answer(answer(200, body, x_amzn_requestid="r-1"), CONTEXT)
    assert parsed["Item"] == body["Item"]
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert parsed["ResponseMetadata"]["RequestId"] == "r-1"


def test_parse_answer_crc32_mismatch_is_transient() -> None:
    raw = json.dumps({"Item": {}}).encode()
    reply = Answer(200, {"x-amz-crc32": str(zlib.crc32(raw) ^ 1)}, raw)
    with pytest.raises(TransientAwsError, match="x-amz-crc32"):
        parse_answer(reply, CONTEXT)


def test_parse_answer_crc32_match_is_accepted() -> None:
    raw = json.dumps({"Count": 0}).encode()
    assert parse_answer(Answer(200, {"x-amz-crc32": str(zlib.crc32(raw))}, raw), CONTEXT)["Count"] == 0


@pytest.mark.parametrize("raw", [b"<html>proxy</html>", b"[1, 2]"])
def test_parse_answer_2xx_that_is_no_json_object_is_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        parse_answer(Answer(200, {}, raw), CONTEXT)


async def parsed_answer(raw: bytes) -> tuple[Answer, bool]:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    return await read_answer(reader)


async def test_read_answer_by_content_length_keeps_the_connection() -> None:
    reply, keep_alive = await parsed_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Amz-Crc32: 1\r\n\r\n{}extra")
    assert (reply.status, reply.body, reply.headers["x-amz-crc32"], keep_alive) == (200, b"{}", "1", True)


async def test_read_answer_chunked_joins_the_chunks() -> None:
    raw = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n5;x=y\r\n": 1}\r\n0\r\nT: v\r\n\r\n'
    reply, keep_alive = await parsed_answer(raw)
    assert (json.loads(reply.body), keep_alive) == ({"a": 1}, True)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", id="connection-close"),
        pytest.param(b"HTTP/1.0 200 OK\r\n\r\n{}", id="until-eof"),
    ],
)
async def test_read_answer_closing_answer_releases_no_connection(raw: bytes) -> None:
    reply, keep_alive = await parsed_answer(raw)
    assert (reply.body, keep_alive) == (b"{}", False)


def test_client_serves_only_reads() -> None:
    client = DynamoDBHttpClient("http://127.0.0.1:9", "us-east-1", connect_timeout=1, read_timeout=1)
    assert callable(client.batch_get_item)
    with pytest.raises(AttributeError, match="put_item"):
        _ = client.put_item


def test_client_with_writes_serves_the_engines_writes_and_nothing_else() -> None:
    client = DynamoDBHttpClient("http://127.0.0.1:9", "us-east-1", connect_timeout=1, read_timeout=1, writes=True)
    for method in ("put_item", "update_item", "delete_item", "batch_write_item", "query"):
        assert callable(getattr(client, method))
    with pytest.raises(AttributeError, match="delete_table"):
        _ = client.delete_table


@pytest.mark.parametrize(
    ("region", "explicit", "environ", "expected"),
    [
        pytest.param("eu-west-1", None, {}, "https://dynamodb.eu-west-1.amazonaws.com", id="regional"),
        pytest.param("cn-north-1", None, {}, "https://dynamodb.cn-north-1.amazonaws.com.cn", id="china"),
        pytest.param("us-iso-east-1", None, {}, None, id="isolated"),
        pytest.param(
            "eu-west-1", "http://x:1", {"AWS_ENDPOINT_URL_DYNAMODB": "http://y:2"}, "http://x:1", id="explicit"
        ),
        pytest.param(
            "eu-west-1",
            None,
            {"AWS_ENDPOINT_URL_DYNAMODB": "http://y:2", "AWS_ENDPOINT_URL": "http://z:3"},
            "http://y:2",
            id="service-variable",
        ),
        pytest.param("eu-west-1", None, {"AWS_ENDPOINT_URL": "http://z:3"}, "http://z:3", id="global-variable"),
        pytest.param(
            "eu-west-1",
            None,
            {"AWS_ENDPOINT_URL": "http://z:3", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"},
            "https://dynamodb.eu-west-1.amazonaws.com",
            id="ignored-variables",
        ),
    ],
)
def test_endpoint_for_resolves_as_botocore(
    region: str, explicit: str | None, environ: dict[str, str], expected: str
) -> None:
    assert endpoint_for(region, explicit, environ) == expected


def test_light_reads_enabled_with_environment_credentials() -> None:
    assert light_reads_enabled(SyncSettings(home_region="eu-west-1"), ENV) is True


@pytest.mark.parametrize(
    ("settings", "environ"),
    [
        pytest.param(SyncSettings(light_reads=False), ENV, id="switched-off"),
        pytest.param(SyncSettings(), {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"}, id="no-secret"),
        pytest.param(SyncSettings(), {}, id="no-credentials"),
        pytest.param(SyncSettings(), {**ENV, "AWS_PROFILE": "dev"}, id="profile"),
        pytest.param(SyncSettings(), {**ENV, "AWS_USE_FIPS_ENDPOINT": "true"}, id="fips"),
        pytest.param(SyncSettings(), {**ENV, "HTTPS_PROXY": "http://proxy:3128"}, id="proxy"),
        pytest.param(SyncSettings(), {**ENV, "AWS_CA_BUNDLE": "/no/such/bundle.pem"}, id="missing-ca-bundle"),
        pytest.param(SyncSettings(home_region="us-iso-east-1"), ENV, id="isolated-partition"),
    ],
)
def test_light_reads_enabled_leaves_other_setups_to_aiobotocore(
    settings: SyncSettings, environ: dict[str, str]
) -> None:
    assert light_reads_enabled(settings, environ) is False


def test_sync_settings_light_reads_from_environment() -> None:
    assert SyncSettings.from_env({}).light_reads is True
    assert SyncSettings.from_env({"SYNC_LIGHT_READS": "false"}).light_reads is False
