"""TLS through the engine's own client stacks (aiobotocore's, with syncengine.aws.sdk_internals'
host-checking session, and the DynamoDB client of syncengine.dynamodb.client): host names are
verified. A local HTTPS server presents a certificate the CA bundle trusts; only the name it was
issued for differs.
Certificates are made here with the ``cryptography`` package (already a dependency of moto)."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from syncengine.aws.clients import AwsClients, new_session
from syncengine.core.config import RetrySettings, SyncSettings
from syncengine.core.errors import AwsError
from syncengine.dynamodb.client import DynamoDBHttpClient

ACCOUNT = "111122223333"
CALLER_IDENTITY = (
    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
    f"<Arn>arn:aws:iam::{ACCOUNT}:user/tls-test</Arn><UserId>AIDATLSTEST</UserId><Account>{ACCOUNT}</Account>"
    "</GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>"
    "</GetCallerIdentityResponse>"
)


def self_signed(directory: Path, host_name: str) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for ``host_name`` only, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{host_name}.pem", directory / f"{host_name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def https_server(cert_path: Path, key_path: Path) -> AsyncIterator[int]:
    async def answer(request: web.Request) -> web.Response:
        if request.headers.get("X-Amz-Target", "").startswith("DynamoDB_"):
            return web.Response(text="{}", content_type="application/x-amz-json-1.0")
        return web.Response(text=CALLER_IDENTITY, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/", answer)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def caller_account(port: int, ca_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """STS GetCallerIdentity through AwsClients (the engine's config and SSL context)."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_bundle))
    settings = SyncSettings(endpoint_urls=(("sts", f"https://localhost:{port}"),), retry=RetrySettings(max_attempts=1))
    async with AwsClients(settings, session=new_session()) as aws:
        return await aws.current_account_id()


@pytest.fixture
async def server_for(tmp_path: Path):
    servers = []

    async def start(host_name: str) -> tuple[int, Path]:
        cert_path, key_path = self_signed(tmp_path, host_name)
        generator = https_server(cert_path, key_path)
        servers.append(generator)
        return await generator.__anext__(), cert_path

    yield start
    for generator in servers:
        await generator.aclose()


async def test_tls_certificate_for_the_host_is_accepted(server_for, monkeypatch) -> None:
    """Control: the same set-up with a certificate issued for ``localhost`` works."""
    port, ca_bundle = await server_for("localhost")

    assert await caller_account(port, ca_bundle, monkeypatch) == ACCOUNT


async def test_tls_certificate_for_another_host_is_refused(server_for, monkeypatch) -> None:
    """A trusted certificate issued for another name: the handshake fails, nothing is read."""
    port, ca_bundle = await server_for("wrong.example")

    with pytest.raises(AwsError) as raised:
        await caller_account(port, ca_bundle, monkeypatch)

    assert raised.value.error_type == "SSLError"
    assert "hostname mismatch" in str(raised.value).lower()


async def dynamodb_get(port: int, ca_bundle: Path) -> dict:
    """One GetItem through the engine's DynamoDB client, trusting ``ca_bundle`` (AWS_CA_BUNDLE)."""
    environ = {"AWS_ACCESS_KEY_ID": "AKIATLSTEST", "AWS_SECRET_ACCESS_KEY": "s", "AWS_CA_BUNDLE": str(ca_bundle)}
    endpoint = f"https://localhost:{port}"
    async with DynamoDBHttpClient(endpoint, "us-east-1", connect_timeout=5, read_timeout=5, environ=environ) as client:
        return await client.get_item(TableName="t", Key={"pk": {"S": "1"}})


async def test_tls_dynamodb_client_accepts_the_certificate_for_the_host(server_for) -> None:
    port, ca_bundle = await server_for("localhost")

    answer = await dynamodb_get(port, ca_bundle)

    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


async def test_tls_dynamodb_client_refuses_a_certificate_for_another_host(server_for) -> None:
    port, ca_bundle = await server_for("wrong.example")

    with pytest.raises(AwsError) as raised:
        await dynamodb_get(port, ca_bundle)

    assert raised.value.code == "SSLError"
    assert "hostname mismatch" in str(raised.value).lower()
