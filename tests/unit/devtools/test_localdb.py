"""Choosing and configuring the embedded DynamoDB, without starting a server."""

from __future__ import annotations

import pytest

from devtools import localdb
from devtools.localdb import LocalDynamoDB, LocalDynamoDBError, choose_backend, dynalite_arguments


@pytest.mark.parametrize(
    ("installed", "expected"),
    [pytest.param(True, "dynalite", id="installed"), pytest.param(False, "moto", id="missing")],
)
def test_choose_backend_auto_takes_dynalite_only_when_installed(
    monkeypatch: pytest.MonkeyPatch, installed: bool, expected: str
) -> None:
    """ "auto" falls back to moto, which needs nothing beyond Python."""
    monkeypatch.setattr(localdb, "dynalite_available", lambda: installed)
    assert choose_backend("auto") == expected


def test_choose_backend_explicit_choice_ignores_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit backend is never swapped for another behind the caller's back."""
    monkeypatch.setattr(localdb, "dynalite_available", lambda: False)
    assert choose_backend("dynalite") == "dynalite"
    assert choose_backend("moto") == "moto"


def test_choose_backend_unknown_name_rejected() -> None:
    """A typo in the backend name is an error, not a silent default."""
    with pytest.raises(ValueError, match="dynamo-local"):
        choose_backend("dynamo-local")


def test_dynalite_arguments_listen_on_loopback_without_table_delays() -> None:
    """dynalite binds 127.0.0.1 only, and tables change state at once."""
    args = dynalite_arguments(4567)
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options == {
        "--port": "4567",
        "--host": "127.0.0.1",
        "--createTableMs": "0",
        "--deleteTableMs": "0",
        "--updateTableMs": "0",
    }


def test_dynalite_server_not_installed_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for dynalite without it installed fails with a hint, before spawning anything."""
    monkeypatch.setattr(localdb, "dynalite_executable", lambda: None)
    with pytest.raises(LocalDynamoDBError, match="make dynalite"), localdb.dynalite_server():
        pass


def test_local_dynamodb_env_sets_the_standard_sdk_variable() -> None:
    """The endpoint is handed to clients through botocore's own per-service variable."""
    db = LocalDynamoDB(endpoint_url="http://127.0.0.1:1234", backend="moto")
    assert db.env() == {"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:1234"}
