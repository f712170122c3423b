"""The engine's DynamoDB client: its SigV4 signature is botocore's, its answers and errors read as
botocore's JSON protocol parser reads them, and it resolves the endpoint and credentials botocore
would. Behaviour on real servers: tests/integration/test_dynamodb_http.py."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from syncengine.core.errors import (
    AccessDeniedError,
    ConfigurationError,
    MalformedResponseError,
    PermanentAwsError,
    ThrottledError,
    TransientAwsError,
    ValidationError,
)
from syncengine.core.retry import CallContext
from syncengine.dynamodb import sdk_config
from syncengine.dynamodb.client import (
    Answer,
    DynamoDBHttpClient,
    error_code_and_message,
    host_header,
    parse_answer,
    read_answer,
    sigv4_headers,
)
from syncengine.dynamodb.sdk_config import CredentialSource, EnvCredentials, endpoint_for, proxy_for

TIMESTAMP = "20261129T203000Z"
BODY = b'{"TableName":"cache","Key":{"sourceServerId":{"S":"s-1"}}}'
CONTEXT = CallContext("dynamodb:get_item", region="eu-west-1")
ENV = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}


def botocore_authorization(credentials: EnvCredentials, host: str, headers: dict[str, str], path: str = "/") -> str:
    """botocore's SigV4Auth over the same request, at the same timestamp (set as add_auth sets it)."""
    request = AWSRequest(method="POST", url=f"https://{host}{path}", data=BODY, headers=headers)
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


@pytest.mark.parametrize("path", ["/dynamodb", "/prefix/dynamo%20db/", "/a~b"])
def test_sigv4_headers_sign_an_endpoint_path_prefix_as_botocore(path: str) -> None:
    credentials = EnvCredentials("AKIAEXAMPLE", "secret")
    host = "gateway.example:8443"
    headers = sigv4_headers(credentials, "eu-west-1", host, "DynamoDB_20120810.GetItem", BODY, TIMESTAMP, path)
    unsigned = {"Content-Type": headers["Content-Type"], "X-Amz-Target": headers["X-Amz-Target"], "Host": host}
    assert headers["Authorization"] == botocore_authorization(credentials, host, unsigned, path)


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
        pytest.param("eu-west-1", None, ENV, "https://dynamodb.eu-west-1.amazonaws.com", id="regional"),
        pytest.param("cn-north-1", None, ENV, "https://dynamodb.cn-north-1.amazonaws.com.cn", id="china"),
        pytest.param(
            "eu-west-1", "http://x:1", {"AWS_ENDPOINT_URL_DYNAMODB": "http://y:2"}, "http://x:1", id="explicit"
        ),
        pytest.param(
            "eu-west-1",
            None,
            {"AWS_ENDPOINT_URL_DYNAMODB": "http://y:2/prefix", "AWS_ENDPOINT_URL": "http://z:3"},
            "http://y:2/prefix",
            id="service-variable",
        ),
        pytest.param("eu-west-1", None, {"AWS_ENDPOINT_URL": "http://z:3"}, "http://z:3", id="global-variable"),
        pytest.param(
            "eu-west-1",
            None,
            {**ENV, "AWS_ENDPOINT_URL": "http://z:3", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"},
            "https://dynamodb.eu-west-1.amazonaws.com",
            id="ignored-variables",
        ),
    ],
)
def test_endpoint_for_resolves_as_botocore(
    region: str, explicit: str | None, environ: dict[str, str], expected: str
) -> None:
    assert endpoint_for(region, explicit, environ) == expected


@pytest.mark.parametrize(
    ("variable", "region", "expected"),
    [
        pytest.param("X_NO_VARIANT", "us-iso-east-1", "https://dynamodb.us-iso-east-1.c2s.ic.gov", id="isolated"),
        pytest.param("AWS_USE_FIPS_ENDPOINT", "us-east-1", "https://dynamodb-fips.us-east-1.amazonaws.com", id="fips"),
        pytest.param("AWS_USE_DUALSTACK_ENDPOINT", "eu-west-1", "https://dynamodb.eu-west-1.api.aws", id="dualstack"),
    ],
)
def test_endpoint_for_variants_resolve_through_botocore(
    monkeypatch: pytest.MonkeyPatch, variable: str, region: str, expected: str
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv(variable, "true")
    assert endpoint_for(region, None, {**ENV, variable: "true"}) == expected


def test_endpoint_for_a_variant_botocore_refuses_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    monkeypatch.setenv("AWS_USE_DUALSTACK_ENDPOINT", "true")
    with pytest.raises(ConfigurationError, match="eu-isoe-west-1"):
        endpoint_for("eu-isoe-west-1", None, {**ENV, "AWS_USE_FIPS_ENDPOINT": "true"})


@pytest.mark.parametrize(
    ("host", "port", "default", "expected"),
    [
        pytest.param("dynamodb.eu-west-1.amazonaws.com", 443, 443, "dynamodb.eu-west-1.amazonaws.com", id="default"),
        pytest.param("127.0.0.1", 8000, 80, "127.0.0.1:8000", id="port"),
        pytest.param("::1", 8000, 80, "[::1]:8000", id="ipv6-port"),
        pytest.param("fd00::5", 443, 443, "[fd00::5]", id="ipv6"),
    ],
)
def test_host_header_brackets_ipv6_and_omits_the_default_port(
    host: str, port: int, default: int, expected: str
) -> None:
    assert host_header(host, port, default) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128", id="https-proxy"),
        pytest.param({"https_proxy": "http://proxy:3128", "NO_PROXY": ".amazonaws.com"}, None, id="no-proxy"),
        pytest.param({"HTTP_PROXY": "http://proxy:3128"}, None, id="only-for-http"),
        pytest.param({}, None, id="none"),
    ],
)
def test_proxy_for_reads_the_environment_as_botocore(environ: dict[str, str], expected: str | None) -> None:
    assert proxy_for("https://dynamodb.eu-west-1.amazonaws.com", environ) == expected


def _isolate_from_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, credentials_file: str = "") -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "credentials").write_text(credentials_file)
    (tmp_path / "config").write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)


async def test_credentials_without_environment_keys_come_from_botocores_chain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A profile (here from the shared credentials file) signs, as botocore's chain finds it."""
    profile = "[dev]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n"
    _isolate_from_profiles(monkeypatch, tmp_path, profile)
    monkeypatch.setenv("AWS_PROFILE", "dev")
    found = await CredentialSource().current(CONTEXT)
    assert found == EnvCredentials("AKIAPROFILE", "profile-secret")


async def test_credentials_from_the_environment_come_before_the_chain(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    _isolate_from_profiles(monkeypatch, tmp_path, "[default]\naws_access_key_id = A\naws_secret_access_key = B\n")
    assert await CredentialSource(ENV).current(CONTEXT) == EnvCredentials("AKIAEXAMPLE", "secret")


async def test_credentials_refreshable_are_refreshed_when_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expiring credentials (SSO, container, assumed role) are refreshed through botocore."""
    from datetime import UTC, datetime, timedelta

    from botocore.credentials import RefreshableCredentials

    issued: list[str] = []

    def refresh() -> dict[str, str]:
        issued.append(f"ASIA{len(issued)}")
        expiry = datetime.now(UTC) + (timedelta(seconds=30) if len(issued) == 1 else timedelta(hours=1))
        return {"access_key": issued[-1], "secret_key": "s", "token": "t", "expiry_time": expiry.isoformat()}

    chain = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    monkeypatch.setattr(sdk_config, "chain_credentials", lambda: chain)
    source = CredentialSource({})
    assert (await source.current(CONTEXT)).access_key == "ASIA1"
    assert (await source.current(CONTEXT)).access_key == "ASIA1"


async def test_credentials_none_anywhere_is_a_permanent_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    _isolate_from_profiles(monkeypatch, tmp_path)
    with pytest.raises(PermanentAwsError, match="no AWS credentials"):
        await CredentialSource().current(CONTEXT)


async def test_request_sends_identity_encoding_to_the_endpoints_path_with_a_bracketed_ipv6_host() -> None:
    """What goes on the wire: the endpoint's path, the Host as botocore writes it, no compression."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    try:
        server = await asyncio.start_server(serve, "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = server.sockets[0].getsockname()[1]
    async with (
        server,
        DynamoDBHttpClient(
            f"http://[::1]:{port}/prefix", "eu-west-1", connect_timeout=2, read_timeout=2, environ=ENV
        ) as client,
    ):
        await client.get_item(TableName="t", Key={"pk": {"S": "1"}})
    head = seen[0].decode("latin-1").split("\r\n")
    assert head[0] == "POST /prefix HTTP/1.1"
    assert f"Host: [::1]:{port}" in head
    assert "Accept-Encoding: identity" in head
