"""Response parsers for the operations that carry every instance of the estate.

botocore's shape-driven parsers walk every member of every shape: EC2 DescribeInstances (XML,
~60 members, every timestamp through dateutil) and a walk that converts nothing for DRS's
describes (JSON already). For exactly those shapes these parsers decode a successful body once
(ElementTree's C parser, ``json.loads``); EC2 instances keep the fields the engine reads
(``syncengine.aws.fastpath.fields``). Every other operation, every error response and any body a fast
path does not recognise go through botocore's own parsers.

They hang on public extension points only: a parser factory registered as the session's
``response_parser_factory`` component, whose parsers override the public ``parse()``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from aiobotocore.parsers import AioEC2QueryParser, AioResponseParserFactory, AioRestJSONParser
from botocore.parsers import ResponseParserError

from syncengine.aws.fastpath.fields import EC2_INSTANCE_SCALARS
from syncengine.core.logging import get_logger

log = get_logger(__name__)

FAST_JSON_SHAPES = frozenset(
    {"DescribeRecoveryInstancesResponse", "DescribeSourceServersResponse", "DescribeJobsResponse"}
)
FAST_EC2_SHAPES = frozenset({"DescribeInstancesResult"})
# botocore answers with an error (parsed by botocore) from this status on.
ERROR_STATUS = 301


# -- EC2 DescribeInstances ----------------------------------------------------------------------


def _text(element: ET.Element | None, tag: str, ns: str) -> str | None:
    if element is None:
        return None
    child = element.find(ns + tag)
    return child.text if child is not None and child.text is not None else None


def _instance(item: ET.Element, ns: str) -> dict[str, Any]:
    instance: dict[str, Any] = {}
    for key, tag in EC2_INSTANCE_SCALARS.items():
        value = _text(item, tag, ns)
        if value is not None:
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
    log.warning("fastpath_fallback", shape=shape_name, error_type=type(exc).__name__, error=str(exc)[:200])


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


def _metadata(response: dict[str, Any]) -> dict[str, Any]:
    """The ``ResponseMetadata`` botocore's ``parse()`` adds to a successful answer."""
    return {
        "HTTPStatusCode": response["status_code"],
        "HTTPHeaders": {str(k).lower(): v for k, v in response["headers"].items()},
    }


class FastEC2QueryParser(AioEC2QueryParser):
    async def parse(self, response: dict[str, Any], shape: Any) -> Any:
        if shape is not None and shape.name in FAST_EC2_SHAPES and response["status_code"] < ERROR_STATUS:
            try:
                parsed = parse_describe_instances(response["body"])
            except FAST_PATH_FAILURES as exc:
                note_fallback(shape.name, exc)
            else:
                parsed["ResponseMetadata"] = _metadata(response)
                return parsed
        try:
            return await super().parse(response, shape)
        except FAST_PATH_FAILURES as exc:
            raise parse_failure(shape, exc) from exc


class FastRestJSONParser(AioRestJSONParser):
    """DRS's describes decoded once, and every rest-json answer strict: a 2xx body that is not a
    JSON object is a ``ResponseParserError``. botocore turns an undecodable body into
    ``{"message": body}`` and then an answer without a single member, which a describe would read
    as an empty page (a missing ``items`` is one: DRS's model does not require it)."""

    async def parse(self, response: dict[str, Any], shape: Any) -> Any:
        body = response["body"]
        # Only a JSON document body: not an output whose payload is a member (Lambda's Invoke
        # streams its Payload), nor a body still to be read.
        if (
            shape is not None
            and response["status_code"] < ERROR_STATUS
            and shape.members
            and not shape.serialization.get("payload")
            and isinstance(body, bytes | bytearray)
        ):
            try:
                decoded = json.loads(body or b"")
            except ValueError as exc:
                raise ResponseParserError(f"{shape.name}: the body is not JSON: {str(exc)[:200]}") from exc
            if not isinstance(decoded, dict):
                raise ResponseParserError(f"{shape.name}: the body is not a JSON object")
            if shape.name in FAST_JSON_SHAPES:
                parsed = {key: value for key, value in decoded.items() if key in shape.members}
                parsed["ResponseMetadata"] = _metadata(response)
                return parsed
        try:
            return await super().parse(response, shape)
        except FAST_PATH_FAILURES as exc:
            raise parse_failure(shape, exc) from exc


class FastResponseParserFactory(AioResponseParserFactory):
    """botocore's parsers, with the fast paths above for the estate-sized operations."""

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "ec2":
            return FastEC2QueryParser()
        if protocol_name == "rest-json":
            return FastRestJSONParser()
        return super().create_parser(protocol_name)
