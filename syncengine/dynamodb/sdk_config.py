"""Where a DynamoDB request goes and as whom, resolved as botocore resolves it, without importing
botocore where the environment says enough (a Lambda function's: keys and region): credentials
(the environment's keys, else botocore's credential chain), the endpoint (overrides, the
regional endpoint, else botocore's endpoint rules for FIPS, dual-stack and isolated partitions)
and the proxy. Used by ``syncengine.dynamodb.client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from syncengine.core.errors import ConfigurationError, PermanentAwsError
from syncengine.core.retry import CallContext

SERVICE = "dynamodb"
# Regions whose endpoints are not ``dynamodb.<region>.<suffix>``: botocore resolves them.
ISOLATED_REGION_PREFIXES = ("us-iso", "eu-iso", "us-isob", "us-isof")
# Environment switches for endpoint variants: botocore resolves the endpoint when one is on.
ENDPOINT_VARIANT_SETTINGS = ("AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT")


@dataclass(frozen=True)
class EnvCredentials:
    access_key: str
    secret_key: str
    token: str | None = None


def env_credentials(environ: Mapping[str, str] | None = None) -> EnvCredentials | None:
    """The credentials botocore's environment provider would use (the first of its chain)."""
    env = os.environ if environ is None else environ
    access_key, secret_key = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        return None
    return EnvCredentials(access_key, secret_key, env.get("AWS_SESSION_TOKEN") or None)


class CredentialSource:
    """The credentials of each request: the environment's keys when it has them (no botocore
    import: a Lambda function's execution role), else botocore's credential chain, loaded once in
    a worker thread (its providers may call a network endpoint) and refreshed through the public
    ``get_frozen_credentials`` (in a worker thread when a refresh is due)."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self._environ = environ
        self._chain: Any = None

    async def current(self, context: CallContext) -> EnvCredentials:
        found = env_credentials(self._environ)
        if found is not None:
            return found
        if self._chain is None:
            self._chain = await asyncio.to_thread(chain_credentials)
        if self._chain is None:
            raise PermanentAwsError(
                "no AWS credentials found", code="NoCredentials", operation=context.operation, region=context.region
            )
        refresh_needed = getattr(self._chain, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            frozen = await asyncio.to_thread(self._chain.get_frozen_credentials)
        else:
            frozen = self._chain.get_frozen_credentials()
        return EnvCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)


def chain_credentials() -> Any:
    """botocore's credential chain (None: it found nothing)."""
    import botocore.session

    return botocore.session.Session().get_credentials()


def endpoint_for(region: str, explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """DynamoDB's endpoint as botocore resolves it for our settings: the explicit override, then
    ``AWS_ENDPOINT_URL_DYNAMODB`` and ``AWS_ENDPOINT_URL`` (unless
    ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS``), then the regional endpoint. FIPS and dual-stack
    endpoints and isolated partitions are resolved by botocore (``botocore_endpoint``)."""
    env = os.environ if environ is None else environ
    if explicit:
        return explicit
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true":
        configured = env.get("AWS_ENDPOINT_URL_DYNAMODB") or env.get("AWS_ENDPOINT_URL")
        if configured:
            return configured
    variants = tuple(env.get(name, "").lower() == "true" for name in ENDPOINT_VARIANT_SETTINGS)
    from_profile = env_credentials(env) is None  # botocore's configuration is read anyway
    if any(variants) or from_profile or region.startswith(ISOLATED_REGION_PREFIXES):
        resolved = botocore_endpoint(region)
        if resolved is not None:
            return resolved
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://dynamodb.{region}.{suffix}"


def botocore_endpoint(region: str) -> str | None:
    """The endpoint botocore's public resolution (its endpoint rules, as for a real request) gives
    a DynamoDB call in ``region`` with this process's configuration (FIPS and dual-stack variants,
    partitions); None where that is the plain regional one. A configuration botocore refuses (no
    such variant in the partition) becomes a ``ConfigurationError`` naming it."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    session = botocore.session.Session()
    uses_variant = any(session.get_config_variable(name) for name in ("use_fips_endpoint", "use_dualstack_endpoint"))
    if not uses_variant and not region.startswith(ISOLATED_REGION_PREFIXES):
        return None
    # Placeholder keys: resolving an endpoint needs no credentials, and none is looked up.
    placeholder = {"aws_access_key_id": "-", "aws_secret_access_key": "-"}  # not a secret

    def resolved(request: Any, **_: Any) -> None:
        raise _Resolved(request.url)

    try:
        client = session.create_client(
            SERVICE, region_name=region, config=Config(retries={"total_max_attempts": 1}), **placeholder
        )
        # The request is stopped before it is sent (``before-send``, a public event), its URL kept.
        client.meta.events.register("before-send.dynamodb", resolved)
        with contextlib.closing(client):
            client.list_tables(Limit=1)
    except _Resolved as found:
        url = urlsplit(found.args[0])
        return f"{url.scheme}://{url.netloc}{url.path.rstrip('/')}"
    except BotoCoreError as exc:
        raise ConfigurationError(f"DynamoDB has no endpoint in {region} with this configuration: {exc}") from exc
    raise ConfigurationError(f"botocore resolved no DynamoDB endpoint in {region}")  # pragma: no cover


class _Resolved(Exception):
    """Carries the URL botocore resolved out of the request it stops (``botocore_endpoint``)."""


def proxy_for(endpoint: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL the environment names for ``endpoint`` (``HTTPS_PROXY``/``HTTP_PROXY``,
    ``NO_PROXY`` honoured), as botocore's proxy configuration reads it from the environment."""
    from urllib.request import getproxies_environment, proxy_bypass_environment

    env = os.environ if environ is None else environ
    if environ is None:
        proxies = getproxies_environment()
    else:
        proxies = {name[:-6].lower(): value for name, value in env.items() if name.lower().endswith("_proxy") and value}
    parts = urlsplit(endpoint)
    proxy = proxies.get(parts.scheme)
    if not proxy:
        return None
    if proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxy
