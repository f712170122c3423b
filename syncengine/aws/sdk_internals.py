"""Every private botocore/aiobotocore name the engine relies on, and why no public hook serves.

Verified against botocore 1.40.61 and aiobotocore 2.25.1 (``requirements-dev.lock``, the newest
aiobotocore aioboto3 15.5 admits); ``tests/unit/aws/test_sdk_internals.py`` fails on the upgrade that
breaks one of them. Nothing else private is read or patched in ``syncengine`` or ``handlers``.

1. ``aiobotocore.httpsession.AIOHTTPSession._get_ssl_context`` (overridden by
   ``HostCheckingHTTPSession``, which AWS clients get through the public ``AioConfig``
   option ``http_session_cls``). aiobotocore builds its connectors' SSL context with urllib3's
   helper, which leaves ``check_hostname`` off because urllib3 matches host names itself; aiohttp
   does not, so without this a certificate the CA bundle trusts would be accepted for any host
   (``tests/integration/test_tls.py``). aiobotocore has no public option for it.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiobotocore.httpsession import AIOHTTPSession


class HostCheckingHTTPSession(AIOHTTPSession):
    """aiobotocore's HTTP session, its SSL contexts checking the server's host name."""

    def _get_ssl_context(self) -> Any:
        context = super()._get_ssl_context()
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        return context
