"""The private SDK names of syncengine.aws.sdk_internals still exist and still do what the engine
relies on: an upgrade that renames, removes or changes one fails here first."""

from __future__ import annotations

import inspect
import ssl

from aiobotocore.httpsession import AIOHTTPSession

from syncengine.aws.sdk_internals import HostCheckingHTTPSession


def test_sdk_internals_get_ssl_context_is_a_plain_method_returning_a_context() -> None:
    """``_get_ssl_context`` exists, takes no argument and is synchronous (the connector builder
    calls it so); if aiobotocore turns it async or renames it, our override stops applying."""
    method = AIOHTTPSession.__dict__.get("_get_ssl_context")
    assert method is not None and not inspect.iscoroutinefunction(method)
    assert list(inspect.signature(method).parameters) == ["self"]
    assert isinstance(AIOHTTPSession()._get_ssl_context(), ssl.SSLContext)


def test_sdk_internals_host_checking_session_contexts_check_host_names() -> None:
    """What the override returns (end to end, through a real TLS server: tests/integration/
    test_tls.py)."""
    context = HostCheckingHTTPSession()._get_ssl_context()
    assert context.check_hostname is True
    assert context.verify_mode is ssl.CERT_REQUIRED


def test_sdk_internals_aiobotocore_still_leaves_host_names_unchecked() -> None:
    """The reason for the override: when aiobotocore checks host names itself, drop it."""
    assert AIOHTTPSession()._get_ssl_context().check_hostname is False
