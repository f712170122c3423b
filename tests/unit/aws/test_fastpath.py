"""The parser fast paths return what botocore's own parsers return, for the fields the engine reads."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime

import pytest
import structlog.testing
from aiobotocore.parsers import AioResponseParserFactory
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.parsers import ResponseParserError

from syncengine.aws.fastpath import (
    EC2_INSTANCE_FIELDS,
    FastResponseParserFactory,
    UnexpectedBody,
    parse_describe_instances,
)
from syncengine.aws.fastpath import parsers as fastpath
from tests.cfn_yaml import ROOT

EC2_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r-1</requestId>
  <reservationSet><item>
    <reservationId>r-0123</reservationId><ownerId>111122223333</ownerId>
    <instancesSet><item>
      <instanceId>i-0123456789abcdef0</instanceId><imageId>ami-1</imageId>
      <instanceState><code>16</code><name>running</name></instanceState>
      <privateIpAddress>10.0.0.5</privateIpAddress><ipAddress>54.1.2.3</ipAddress>
      <instanceType>m5.large</instanceType><launchTime>2026-11-25T10:05:00.000Z</launchTime>
      <placement><availabilityZone>us-east-1a</availabilityZone></placement>
      <subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId>
      <iamInstanceProfile><arn>arn:aws:iam::1:instance-profile/p</arn><id>AIPA1</id></iamInstanceProfile>
      <groupSet><item><groupId>sg-1</groupId><groupName>web</groupName></item></groupSet>
      <tagSet><item><key>Name</key><value>web-01</value></item></tagSet>
    </item></instancesSet>
  </item></reservationSet>
  <nextToken>tok</nextToken>
</DescribeInstancesResponse>"""


def _model(service: str, version: str) -> ServiceModel:
    return ServiceModel(Loader().load_service_model(service, "service-2", version), service_name=service)


def _response(body: bytes) -> dict:
    return {"status_code": 200, "headers": {}, "body": body, "context": {"operation_name": "x"}}


async def _parse(factory, protocol: str, shape, body: bytes) -> dict:
    parsed = await factory.create_parser(protocol).parse(_response(body), shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


async def test_fast_ec2_describe_instances_matches_botocore() -> None:
    """Every field the fast EC2 parser keeps equals botocore's value (LaunchTime as ISO text)."""
    shape = _model("ec2", "2016-11-15").operation_model("DescribeInstances").output_shape
    fast = await _parse(FastResponseParserFactory(), "ec2", shape, EC2_XML)
    slow = await _parse(AioResponseParserFactory(), "ec2", shape, EC2_XML)
    assert fast["NextToken"] == slow["NextToken"]
    fast_instance = fast["Reservations"][0]["Instances"][0]
    slow_instance = slow["Reservations"][0]["Instances"][0]
    for key, value in fast_instance.items():
        expected = slow_instance[key]
        if key == "LaunchTime":
            assert datetime.fromisoformat(value.replace("Z", "+00:00")) == expected.astimezone(UTC)
        else:
            assert value == expected, key
    assert set(fast_instance) >= {
        "InstanceId",
        "State",
        "PrivateIpAddress",
        "PublicIpAddress",
        "InstanceType",
        "LaunchTime",
        "Tags",
        "VpcId",
        "SubnetId",
        "SecurityGroups",
        "IamInstanceProfile",
    }


async def test_fast_drs_describe_matches_botocore() -> None:
    """DRS describe responses decode to exactly botocore's structure."""
    body = json.dumps(
        {
            "items": [
                {
                    "recoveryInstanceID": "i-0123456789abcdef0",
                    "sourceServerID": "s-0123456789abcdef0",
                    "ec2InstanceState": "RUNNING",
                    "isDrill": True,
                    "pointInTimeSnapshotDateTime": "2026-11-25T10:00:00Z",
                    "tags": {"Name": "x"},
                }
            ],
            "nextToken": "abc",
        }
    ).encode()
    shape = _model("drs", "2020-02-26").operation_model("DescribeRecoveryInstances").output_shape
    assert await _parse(FastResponseParserFactory(), "rest-json", shape, body) == await _parse(
        AioResponseParserFactory(), "rest-json", shape, body
    )


async def test_fast_parsers_leave_errors_to_botocore() -> None:
    """An error response is parsed by botocore's code path, code and message intact."""
    shape = _model("drs", "2020-02-26").operation_model("DescribeRecoveryInstances").output_shape
    response = {
        "status_code": 429,
        "headers": {"x-amzn-errortype": "ThrottlingException"},
        "body": b'{"message": "slow down"}',
        "context": {"operation_name": "DescribeRecoveryInstances"},
    }
    fast = await FastResponseParserFactory().create_parser("rest-json").parse(dict(response), shape)
    slow = await AioResponseParserFactory().create_parser("rest-json").parse(dict(response), shape)
    assert fast["Error"] == slow["Error"]
    assert fast["Error"]["Code"] == "ThrottlingException"


def test_parse_describe_instances_without_reservations() -> None:
    """An empty result (EC2 sends an empty reservationSet) has no reservations and no token."""
    body = (
        b'<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        b"<reservationSet/></DescribeInstancesResponse>"
    )
    assert parse_describe_instances(body) == {"Reservations": []}


def test_parse_describe_instances_refuses_a_document_without_reservation_set() -> None:
    """Another document is not "no instances": the fast path refuses it (botocore gets it)."""
    body = b'<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"></DescribeInstancesResponse>'
    with pytest.raises(UnexpectedBody):
        parse_describe_instances(body)


@pytest.mark.parametrize(
    ("protocol", "service", "version", "operation", "body"),
    [
        pytest.param("rest-json", "drs", "2020-02-26", "DescribeRecoveryInstances", b'{"items": [', id="drs-truncated"),
        pytest.param("rest-json", "drs", "2020-02-26", "DescribeRecoveryInstances", b"[1, 2]", id="drs-not-object"),
        pytest.param(
            "ec2", "ec2", "2016-11-15", "DescribeInstances", b"<DescribeInstancesResponse><reserv", id="ec2-truncated"
        ),
        pytest.param("ec2", "ec2", "2016-11-15", "DescribeInstances", b"<Other/>", id="ec2-other-document"),
    ],
)
async def test_fast_parsers_fall_back_to_botocore_on_unexpected_bodies(
    protocol: str, service: str, version: str, operation: str, body: bytes, capsys
) -> None:
    """A body a fast path cannot read gets botocore's treatment (for rest-json the strict one the
    engine uses without fast paths): the same result, or, where that fails (with whatever
    exception), a ``ResponseParserError``: never a bare ValueError, ParseError or AttributeError
    that the engine would take for a bug."""
    shape = _model(service, version).operation_model(operation).output_shape
    if protocol == "rest-json":  # strict: a DRS body that is not a JSON object is never an answer
        with pytest.raises(ResponseParserError):
            await _parse(FastResponseParserFactory(), protocol, shape, body)
        return
    try:
        expected = await _parse(AioResponseParserFactory(), protocol, shape, body)
    except Exception:
        with pytest.raises(ResponseParserError):
            await _parse(FastResponseParserFactory(), protocol, shape, body)
    else:
        assert await _parse(FastResponseParserFactory(), protocol, shape, body) == expected


@pytest.mark.parametrize("body", [b'{"items": [', b""], ids=["truncated", "empty"])
async def test_strict_rest_json_parser_refuses_what_botocore_reads_as_no_members(body: bytes) -> None:
    """botocore reads a DRS body it cannot decode as an answer without members (now an empty
    page); the engine's parser refuses it."""
    shape = _model("drs", "2020-02-26").operation_model("DescribeRecoveryInstances").output_shape
    assert "items" not in await _parse(AioResponseParserFactory(), "rest-json", shape, body)
    with pytest.raises(ResponseParserError):
        await _parse(FastResponseParserFactory(), "rest-json", shape, body)


def test_fast_path_fallback_is_logged_once_per_shape(monkeypatch) -> None:
    """The fallback says so in the log once, not once per response."""
    monkeypatch.setattr(fastpath, "_fallbacks_logged", set())
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            fastpath.note_fallback("DescribeInstancesResult", ValueError("bad"))
    assert [entry["event"] for entry in logs] == ["fastpath_fallback"]


def _ec2_fields_read_by(path) -> set[str]:
    """Every literal ``ec2.get("Field")`` in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "ec2"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_fast_path_keeps_every_ec2_field_the_engine_reads() -> None:
    """A field enrich reads but the fast parser drops would read None under the fast path."""
    read = _ec2_fields_read_by(ROOT / "syncengine" / "sync" / "enrich.py")
    assert read
    assert sorted(read - EC2_INSTANCE_FIELDS) == []


def test_fast_path_ec2_parser_returns_only_the_listed_fields() -> None:
    parsed = parse_describe_instances(EC2_XML)
    (instance,) = parsed["Reservations"][0]["Instances"]
    assert set(instance) <= EC2_INSTANCE_FIELDS
