"""Client-level fast paths: one SSL context per process, client classes once per service, the
User-Agent built once per feature set, and DynamoDB batch requests serialised by ``json.dumps``.

- aiobotocore loads the CA bundle into a new SSL context for every client's connector (~35 ms
  each); connectors here share one verified context.
- botocore builds a new client class for every client (one method object per operation: ~700
  for EC2), although the class depends only on the service.
- botocore builds the User-Agent header twice per request (~0.3 ms: a dozen components sanitised
  character by character), though only the request's feature ids can change it.
- botocore's JSON serializer walks the request shape of every attribute value of every
  BatchWriteItem item (~200 µs per item) to end with the JSON ``json.dumps`` writes in ~20 µs.
"""

from __future__ import annotations

import functools
import json
import ssl
from typing import Any

from aiobotocore.client import AioClientCreator
from aiobotocore.httpsession import AIOHTTPSession
from botocore.context import get_context
from botocore.httpsession import get_cert_path

# DynamoDB requests that carry the estate (every cache write) or a plan's worth of keys.
FAST_SERIALIZE_OPERATIONS = frozenset({"BatchWriteItem", "BatchGetItem"})


# -- one SSL context per process --------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _shared_ssl_context(ca_bundle: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    from botocore.httpsession import create_urllib3_context

    context = create_urllib3_context()
    # urllib3 checks host names itself, so botocore's helper turns the SSL module's check off;
    # aiohttp relies on the context for it. Without this, any certificate the CA bundle trusts
    # would be accepted for any host.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    if ca_bundle:
        context.load_verify_locations(ca_bundle, None, None)
    return context


class SharedSSLSession(AIOHTTPSession):
    """aiobotocore's HTTP session, but connectors share one verified SSL context instead of
    loading the CA bundle again for every client."""

    def _create_connector(self, proxy_url: str | None) -> Any:
        if not self._verify or proxy_url:
            return super()._create_connector(proxy_url)
        import aiohttp

        context = _shared_ssl_context(get_cert_path(self._verify), self._cert_file, self._key_file)
        return aiohttp.TCPConnector(limit=self._max_pool_connections, ssl=context, **self._connector_args)


# -- client classes, once per service --------------------------------------------------------------

CLASS_CACHE_ATTRIBUTE = "_syncengine_client_classes"
_original_create_client_class = AioClientCreator._create_client_class


async def _cached_create_client_class(self: AioClientCreator, service_name: str, service_model: Any) -> Any:
    """The class depends only on the service model and the session's class-creation hooks, so a
    session that opted in (its event emitter carries a cache) builds it once per service."""
    cache = getattr(self._event_emitter, CLASS_CACHE_ATTRIBUTE, None)
    if cache is None:
        return await _original_create_client_class(self, service_name, service_model)
    key = (service_name, service_model.api_version)
    if key not in cache:
        cache[key] = await _original_create_client_class(self, service_name, service_model)
    return cache[key]


def enable_client_class_cache(botocore_session: Any) -> None:
    """Opt ``botocore_session`` in to the per-service client class cache."""
    AioClientCreator._create_client_class = _cached_create_client_class  # type: ignore[method-assign]
    setattr(botocore_session.get_component("event_emitter"), CLASS_CACHE_ATTRIBUTE, {})


# -- DynamoDB batch requests -------------------------------------------------------------------


class FastJSONSerializer:
    """Wraps a JSON-protocol client's serializer: BatchWriteItem and BatchGetItem requests are
    already DynamoDB JSON (member names are the wire names, attribute values are typed dicts), so
    the body is ``json.dumps`` of the parameters, with the headers botocore's ``JSONSerializer``
    sets. A request json cannot encode as is (binary ``B`` values are bytes, which botocore
    base64-encodes), an operation with a host prefix, and every other operation go to botocore."""

    def __init__(self, inner: Any):
        self._inner = inner

    def serialize_to_request(self, parameters: dict[str, Any], operation_model: Any) -> dict[str, Any]:
        if operation_model.name in FAST_SERIALIZE_OPERATIONS and not operation_model.endpoint:
            try:
                body = json.dumps(parameters, separators=(",", ":")).encode("utf-8")
            except (TypeError, ValueError):
                pass
            else:
                metadata = operation_model.metadata
                headers = {
                    "X-Amz-Target": f"{metadata['targetPrefix']}.{operation_model.name}",
                    "Content-Type": f"application/x-amz-json-{metadata['jsonVersion']}",
                }
                if operation_model.service_model.is_query_compatible:
                    headers["x-amzn-query-mode"] = "true"
                return {
                    "url_path": "/",
                    "query_string": "",
                    "method": operation_model.http.get("method", "POST"),
                    "headers": headers,
                    "body": body,
                }
        return self._inner.serialize_to_request(parameters, operation_model)


def install_fast_serializer(client: Any) -> Any:
    """Give a DynamoDB client the batch-request fast path (other services keep their serializer)."""
    if client.meta.service_model.service_name == "dynamodb" and not isinstance(client._serializer, FastJSONSerializer):
        client._serializer = FastJSONSerializer(client._serializer)
    return client


# -- User-Agent -----------------------------------------------------------------------------------


def cache_user_agent(client: Any) -> Any:
    """Build a client's User-Agent once per feature set instead of twice per request. Everything
    in the header is fixed per client except the feature ids of the client and of the request's
    context, so the cache key is exactly those: the header sent is the one botocore would build."""
    creator = client._user_agent_creator
    if getattr(creator, "_syncengine_cached", False):
        return client
    build = creator.to_string
    built: dict[tuple[frozenset[str], frozenset[str]], str] = {}

    def to_string() -> str:
        context = get_context()
        key = (
            frozenset(context.features) if context is not None else frozenset(),
            frozenset(creator._client_features or ()),
        )
        text = built.get(key)
        if text is None:
            text = built[key] = build()
        return text

    # An instance attribute: the handler botocore registered (rebuild_and_replace_user_agent_handler)
    # and the request path both call ``self.to_string()``, so both get the cached string.
    creator.to_string = to_string
    creator._syncengine_cached = True
    return client
