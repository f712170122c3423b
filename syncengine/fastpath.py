"""CPU fast paths for the three calls that carry every instance of the estate.

Profiling a cold sync (benchmarks/RESULTS.md) showed the engine's CPU going to three places that
scale with the estate, none of them our own code:

1. botocore's shape-driven XML parser on EC2 DescribeInstances (~1 ms per instance: it walks all
   ~60 members of the ``Instance`` shape for every instance, and parses every timestamp with
   dateutil);
2. botocore's shape-driven JSON parser on DRS DescribeRecoveryInstances / DescribeSourceServers
   (DRS dates are strings, so the walk converts nothing) and on DynamoDB's Query/Scan/Get reads
   (attribute values are JSON already);
3. aiobotocore loading the CA bundle into a new SSL context for every client's connector
   (~35 ms each; a sync opens two clients per account/region);
4. botocore building a new client class for every client (one method object per operation:
   ~700 for EC2), although the class depends only on the service.

5. botocore building the User-Agent header twice per request (~0.3 ms: a dozen components
   sanitised character by character), though only the request's feature ids can change it;
6. botocore's JSON *serializer* on DynamoDB BatchWriteItem (~200 µs per item: it walks the
   request shape member by member for every attribute value of every item, to end with the same
   JSON ``json.dumps`` writes in ~20 µs).

So: one SSL context per process, shared by every connector; client classes cached per service
for sessions built by ``syncengine.aws.new_session``; and, for exactly those three
operations, a parser that decodes the body once (ElementTree's C parser, ``json.loads``) and
keeps the fields the engine reads; for DynamoDB's batch operations, a serializer that dumps the
request (already DynamoDB JSON) as it is. Every other operation, and every error response, goes
through botocore's own parsers and serializers unchanged. ``tests/unit/test_fastpath.py`` checks
the fast output against botocore's on the same input.
"""

from __future__ import annotations

import functools
import json
import ssl
import xml.etree.ElementTree as ET
from typing import Any

from aiobotocore.client import AioClientCreator
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.parsers import AioEC2QueryParser, AioJSONParser, AioResponseParserFactory, AioRestJSONParser
from botocore.context import get_context
from botocore.httpsession import get_cert_path
from botocore.parsers import ResponseParserError

FAST_JSON_SHAPES = frozenset(
    {"DescribeRecoveryInstancesResponse", "DescribeSourceServersResponse", "DescribeJobsResponse"}
)
FAST_EC2_SHAPES = frozenset({"DescribeInstancesResult"})
# DynamoDB reads: items are attribute-value JSON already; botocore's walk only re-types them
# (and turns B values into bytes: the engine's tables hold no binary attributes).
FAST_DYNAMODB_SHAPES = frozenset({"QueryOutput", "ScanOutput", "BatchGetItemOutput", "GetItemOutput"})
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


# -- EC2 DescribeInstances ----------------------------------------------------------------------


def _text(element: ET.Element | None, tag: str, ns: str) -> str | None:
    if element is None:
        return None
    child = element.find(ns + tag)
    return child.text if child is not None and child.text is not None else None


def _instance(item: ET.Element, ns: str) -> dict[str, Any]:
    instance: dict[str, Any] = {}
    for tag in ("instanceId", "instanceType", "privateIpAddress", "ipAddress", "launchTime", "vpcId", "subnetId"):
        value = _text(item, tag, ns)
        if value is not None:
            # botocore's names: ipAddress is PublicIpAddress; the rest capitalise.
            key = "PublicIpAddress" if tag == "ipAddress" else tag[0].upper() + tag[1:]
            instance[key] = value
    state = item.find(ns + "instanceState")
    if state is not None:
        code = _text(state, "code", ns)
        instance["State"] = {"Code": int(code) if code is not None else 0, "Name": _text(state, "name", ns)}
    placement = item.find(ns + "placement")
    if placement is not None and _text(placement, "availabilityZone", ns):
        instance["Placement"] = {"AvailabilityZone": _text(placement, "availabilityZone", ns)}
    profile = item.find(ns + "iamInstanceProfile")
    if profile is not None:
        instance["IamInstanceProfile"] = {
            k: v for k, v in (("Arn", _text(profile, "arn", ns)), ("Id", _text(profile, "id", ns))) if v is not None
        }
    groups = item.find(ns + "groupSet")
    if groups is not None:
        instance["SecurityGroups"] = [
            {k: v for k, v in (("GroupId", _text(g, "groupId", ns)), ("GroupName", _text(g, "groupName", ns))) if v}
            for g in groups.findall(ns + "item")
        ]
    tags = item.find(ns + "tagSet")
    if tags is not None:
        instance["Tags"] = [
            {"Key": _text(t, "key", ns) or "", "Value": _text(t, "value", ns) or ""} for t in tags.findall(ns + "item")
        ]
    return instance


def parse_describe_instances(body: bytes) -> dict[str, Any]:
    """DescribeInstances XML -> botocore's structure, restricted to the fields the engine reads
    (LaunchTime stays the ISO string EC2 sent)."""
    # Same trust as botocore, which parses these responses with xml.etree too: EC2 over TLS.
    root = ET.fromstring(body)  # noqa: S314
    # The namespace is EC2's API version URI; take it from the document rather than assume it.
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    reservations = []
    reservation_set = root.find(ns + "reservationSet")
    if reservation_set is None:
        # EC2 always sends the set, empty when nothing matched: this is some other document.
        raise UnexpectedBody("DescribeInstances response without a reservationSet")
    for reservation in reservation_set.findall(ns + "item"):
        instances_set = reservation.find(ns + "instancesSet")
        entry: dict[str, Any] = {
            "Instances": [_instance(i, ns) for i in instances_set.findall(ns + "item")]
            if instances_set is not None
            else []
        }
        for tag, key in (("reservationId", "ReservationId"), ("ownerId", "OwnerId")):
            value = _text(reservation, tag, ns)
            if value is not None:
                entry[key] = value
        reservations.append(entry)
    parsed: dict[str, Any] = {"Reservations": reservations}
    token = _text(root, "nextToken", ns)
    if token:
        parsed["NextToken"] = token
    return parsed


# -- falling back to botocore ------------------------------------------------------------------


class UnexpectedBody(ValueError):
    """A body a fast path does not recognise: botocore's own parser gets it instead."""


# What a fast path raises on a body it cannot read: bad JSON or XML (ParseError is a
# SyntaxError), bad UTF-8 (a ValueError), or a document of another shape.
FAST_PATH_FAILURES: tuple[type[Exception], ...] = (ValueError, SyntaxError, TypeError, AttributeError, KeyError)
_fallbacks_logged: set[str] = set()


def note_fallback(shape_name: str, exc: Exception) -> None:
    """Say once per shape and process that a fast path handed a body to botocore."""
    if shape_name in _fallbacks_logged:
        return
    _fallbacks_logged.add(shape_name)
    from syncengine.logging import get_logger

    get_logger(__name__).warning(
        "fastpath_fallback", shape=shape_name, error_type=type(exc).__name__, error=str(exc)[:200]
    )


def json_members(body: bytes | None, shape: Any) -> dict[str, Any]:
    """A JSON object body restricted to the shape's members; ``UnexpectedBody`` if it is not one."""
    decoded = json.loads(body or b"{}")
    if not isinstance(decoded, dict):
        raise UnexpectedBody(f"{shape.name}: the body is not a JSON object")
    members = shape.members
    return {key: value for key, value in decoded.items() if key in members}


def parse_failure(shape: Any, exc: Exception) -> ResponseParserError:
    """botocore's parsers fail on some bodies with a bare AttributeError or KeyError (a JSON list
    where an object belongs, say); as ``ResponseParserError`` the retry layer classifies it, and
    the scope fails instead of the whole run."""
    name = shape.name if shape is not None else "response"
    return ResponseParserError(f"{name} could not be parsed: {type(exc).__name__}: {str(exc)[:200]}")


class FastEC2QueryParser(AioEC2QueryParser):
    def _do_parse(self, response: dict[str, Any], shape: Any) -> dict[str, Any]:
        if shape is not None and shape.name in FAST_EC2_SHAPES:
            try:
                parsed = parse_describe_instances(response["body"])
            except FAST_PATH_FAILURES as exc:
                note_fallback(shape.name, exc)
            else:
                parsed["ResponseMetadata"] = {}
                return parsed
        try:
            return super()._do_parse(response, shape)
        except FAST_PATH_FAILURES as exc:
            raise parse_failure(shape, exc) from exc


class FastRestJSONParser(AioRestJSONParser):
    def _do_parse(self, response: dict[str, Any], shape: Any) -> dict[str, Any]:
        if shape is not None and shape.name in FAST_JSON_SHAPES:
            try:
                return json_members(response["body"], shape)
            except FAST_PATH_FAILURES as exc:
                note_fallback(shape.name, exc)
        try:
            return super()._do_parse(response, shape)
        except FAST_PATH_FAILURES as exc:
            raise parse_failure(shape, exc) from exc


class FastJSONParser(AioJSONParser):
    async def _do_parse(self, response: dict[str, Any], shape: Any) -> dict[str, Any]:
        if shape is not None and shape.name in FAST_DYNAMODB_SHAPES and not shape.event_stream_name:
            try:
                parsed = json_members(response["body"], shape)
            except FAST_PATH_FAILURES as exc:
                note_fallback(shape.name, exc)
            else:
                self._inject_response_metadata(parsed, response["headers"])
                return parsed
        try:
            return await super()._do_parse(response, shape)
        except FAST_PATH_FAILURES as exc:
            raise parse_failure(shape, exc) from exc


class FastResponseParserFactory(AioResponseParserFactory):
    """botocore's parsers, with the fast paths above for the estate-sized operations."""

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "ec2":
            return FastEC2QueryParser()
        if protocol_name == "rest-json":
            return FastRestJSONParser()
        if protocol_name == "json":
            return FastJSONParser()
        return super().create_parser(protocol_name)


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
