"""Security properties that need no server: id validation, log redaction, credentials that never
print themselves, and botocore's chatty loggers kept quiet at DEBUG."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from syncengine.aws.clients import Credentials
from syncengine.core.errors import InvalidRequestError
from syncengine.core.logging import configure_logging, redact_secrets
from syncengine.tables.accounts import validate_account_id, validate_region

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKENdGhpcyBpcyBhIHRva2Vu"
SIGNATURE = "Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
EXTERNAL_ID = "ext-7f3c1a9e2b"
NOISY_LOGGERS = ("botocore", "aiobotocore", "aiohttp", "urllib3")


@pytest.mark.parametrize("account_id", ["123456789012", "000000000000", "999999999999"])
def test_validate_account_id_accepts_12_ascii_digits(account_id: str) -> None:
    assert validate_account_id(account_id) == account_id


@pytest.mark.parametrize(
    "account_id",
    [
        pytest.param("12345678901", id="11-digits"),
        pytest.param("1234567890123", id="13-digits"),
        pytest.param("12345678901a", id="letter"),
        pytest.param(" 123456789012", id="leading-space"),
        pytest.param("123456789012 ", id="trailing-space"),
        pytest.param("123456789012\n", id="trailing-newline"),
        pytest.param("".join(chr(0x0660 + int(d)) for d in "123456789012"), id="arabic-indic-digits"),
        pytest.param("".join(chr(0xFF10 + int(d)) for d in "123456789012"), id="full-width-digits"),
        pytest.param("", id="empty"),
        pytest.param(123456789012, id="int"),
        pytest.param(None, id="none"),
        pytest.param(["123456789012"], id="list"),
    ],
)
def test_validate_account_id_rejects_everything_else(account_id: Any) -> None:
    """An account id becomes part of a role ARN, a scope key and a DynamoDB key: only exactly twelve
    ASCII digits may pass (a trailing newline or non-ASCII digits must not slip through)."""
    with pytest.raises(InvalidRequestError):
        validate_account_id(account_id)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2"])
def test_validate_region_accepts_drs_regions(region: str) -> None:
    assert validate_region(region) == region


@pytest.mark.parametrize(
    "region",
    [
        pytest.param("us-east-1\n", id="trailing-newline"),
        pytest.param("US-EAST-1", id="upper-case"),
        pytest.param(" us-east-1", id="leading-space"),
        pytest.param("moon-1", id="unknown"),
        pytest.param("", id="empty"),
        pytest.param("us-east-1/../eu-west-1", id="path"),
        pytest.param(None, id="none"),
        pytest.param(1, id="int"),
    ],
)
def test_validate_region_rejects_everything_else(region: Any) -> None:
    with pytest.raises(InvalidRequestError):
        validate_region(region)


@pytest.mark.parametrize(
    "key",
    [
        "aws_secret_access_key",
        "SecretAccessKey",
        "aws_session_token",
        "SessionToken",
        "Credentials",
        "Authorization",
        "X-Amz-Security-Token",
        "signature",
    ],
)
def test_redact_secrets_hides_secret_keys_of_the_event(key: str) -> None:
    event = redact_secrets(None, "info", {"event": "x", key: SECRET})
    assert SECRET not in json.dumps(event)


def test_redact_secrets_hides_secrets_nested_in_values() -> None:
    """A secret inside a logged structure (an AssumeRole response, request params, headers) is as
    secret as a top-level one: the processor must redact it at any depth."""
    event = {
        "event": "assumed_role",
        "response": {"Credentials": {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": SECRET, "SessionToken": TOKEN}},
        "headers": [{"Authorization": f"AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host, {SIGNATURE}"}],
    }
    rendered = json.dumps(redact_secrets(None, "info", event))
    for secret in (SECRET, TOKEN, SIGNATURE):
        assert secret not in rendered


def test_redact_secrets_hides_external_ids_at_any_depth() -> None:
    """A target account's ExternalId, as a key at any depth or named inside a text."""
    event = {
        "event": "x",
        "account": {"accountId": "111122223333", "externalId": EXTERNAL_ID},
        "params": [{"ExternalId": EXTERNAL_ID}],
        "error": f"AssumeRole failed for {{'RoleArn': 'arn:aws:iam::1:role/r', 'ExternalId': '{EXTERNAL_ID}'}}",
    }
    rendered = json.dumps(redact_secrets(None, "info", event))
    assert EXTERNAL_ID not in rendered and "111122223333" in rendered


def test_rendered_log_redacts_secrets_inside_a_formatted_traceback(restored_logging) -> None:
    """Redaction runs after the traceback is formatted: a secret in an exception's text (which
    only exists once format_exc_info ran) never reaches the line."""
    stream = io.StringIO()
    configure_logging(json=True, level="INFO", force=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))

    try:
        raise RuntimeError(f"AssumeRole(ExternalId={EXTERNAL_ID}, SessionToken={TOKEN})")
    except RuntimeError:
        structlog.get_logger("t").exception("assume_failed")

    line = stream.getvalue()
    assert "RuntimeError" in line and "Traceback" in line
    assert EXTERNAL_ID not in line and TOKEN not in line


def test_credentials_never_print_their_secret_or_token() -> None:
    credentials = Credentials("ASIAEXAMPLE", SECRET, TOKEN, datetime(2030, 1, 1, tzinfo=UTC))
    for text in (repr(credentials), str(credentials), f"{credentials}"):
        assert SECRET not in text and TOKEN not in text


def test_configure_logging_at_debug_keeps_botocore_quiet(restored_logging) -> None:
    """botocore logs canonical requests and signatures at DEBUG: the engine's DEBUG must not turn that
    on."""
    configure_logging(json=True, level="DEBUG", force=True)

    for name in ("botocore", "aiobotocore", "botocore.auth", "aiohttp"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name


def test_rendered_json_log_redacts_secret_keys(restored_logging) -> None:
    """End to end through the configured processor chain: the rendered line carries no secret."""
    stream = io.StringIO()
    configure_logging(json=True, level="DEBUG", force=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))

    structlog.get_logger("t").info("creds", aws_secret_access_key=SECRET, session_token=TOKEN)

    line = stream.getvalue()
    assert "creds" in line
    assert SECRET not in line and TOKEN not in line


def test_capture_logs_sees_the_raw_event() -> None:
    """capture_logs replaces the processor chain: tests that assert on captured events check what
    the engine passed in, so the engine must not pass secrets in the first place."""
    with capture_logs() as logs:
        structlog.get_logger("t").info("plain", account_id="123456789012")
    assert logs == [{"event": "plain", "account_id": "123456789012", "log_level": "info"}]
