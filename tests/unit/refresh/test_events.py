"""syncengine.refresh.events: the real-shaped DRS/EC2 events and scope messages become one
request per scope; a batch coalesces into one piece of work per (account, region); anything
malformed is refused with a sentence."""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncengine.core.errors import InvalidRequestError
from syncengine.core.models import Scope
from syncengine.refresh.events import RefreshKind, coalesce, parse_refresh_request, parse_refresh_requests
from tests.events_loader import load_event

ACCOUNT = "111122223333"
SCOPE = Scope(ACCOUNT, "us-east-1")


def test_parse_launch_result_names_the_server_its_scope_and_job() -> None:
    request = parse_refresh_request(load_event("eventbridge_drs_launch_result"))

    assert request.kind is RefreshKind.LAUNCH_RESULT
    assert request.scope == SCOPE
    assert request.server_ids == {"s-12345678901234567"}
    assert request.job_id == "drsjob-04ca7d0d3fb6afa3e"
    assert request.state == "RECOVERY_LAUNCH_SUCCEEDED"


def test_parse_failback_state_change_names_the_recovery_instance() -> None:
    request = parse_refresh_request(load_event("eventbridge_drs_failback_state_change"))

    assert request.kind is RefreshKind.FAILBACK
    assert request.scope == SCOPE
    assert request.recovery_instance_ids == {"i-0123456789abcdef0"}
    assert request.server_ids == frozenset()


def test_parse_failback_state_change_accepts_the_ri_form_of_aws_s_sample_event() -> None:
    """AWS's sample names the recovery instance ``ri-...``: accepted (not rejected as malformed),
    looked up in the cache as given and in the ``i-`` form with the same suffix."""
    request = parse_refresh_request(load_event("eventbridge_drs_failback_state_change_ri"))

    assert request.kind is RefreshKind.FAILBACK
    assert request.scope == SCOPE
    assert request.recovery_instance_ids == {"ri-0123456789abcdef0", "i-0123456789abcdef0"}


@pytest.mark.parametrize("resource_id", ["x-0123456789abcdef0", "ri-", "i-xyz", "ri-abc"])
def test_parse_failback_state_change_rejects_other_ids(resource_id: str) -> None:
    event = load_event("eventbridge_drs_failback_state_change")
    event["resources"] = [f"arn:aws:drs:us-east-1:111122223333:recovery-instance/{resource_id}"]
    with pytest.raises(InvalidRequestError):
        parse_refresh_request(event)


def test_parse_ec2_state_change_takes_account_and_region_from_the_envelope() -> None:
    event = load_event("eventbridge_ec2_state_change")
    event["region"] = "eu-west-1"

    request = parse_refresh_request(event)

    assert request.kind is RefreshKind.EC2_STATE
    assert request.scope == Scope(ACCOUNT, "eu-west-1")
    assert request.ec2_instance_ids == {"i-0abcdef1234567890"}
    assert request.state == "terminated"


def test_parse_accepts_an_sqs_body_as_json_text() -> None:
    body = json.dumps(load_event("eventbridge_drs_launch_result"))

    assert parse_refresh_request(body).server_ids == {"s-12345678901234567"}


def test_parse_scope_message_with_ids_names_those_servers() -> None:
    request = parse_refresh_request(
        {"accountId": ACCOUNT, "region": "us-east-1", "sourceServerIds": ["s-12345678901234567"], "reason": "wave"}
    )

    assert request.kind is RefreshKind.SCOPE
    assert request.server_ids == {"s-12345678901234567"}
    assert request.whole_scope is False


def test_parse_scope_message_without_ids_is_the_whole_scope() -> None:
    request = parse_refresh_request({"accountId": ACCOUNT, "region": "us-east-1"})

    assert request.whole_scope is True
    assert request.server_ids == frozenset()


def _launch_with(**changes: Any) -> dict[str, Any]:
    event = load_event("eventbridge_drs_launch_result")
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        pytest.param("not json {", "not JSON", id="not-json"),
        pytest.param("[1, 2]", "JSON object", id="not-an-object"),
        pytest.param({"source": "aws.s3", "detail-type": "Object Created"}, "Unsupported event", id="unsupported"),
        pytest.param(_launch_with(resources=[]), "source-server ARN", id="no-resources"),
        pytest.param(
            _launch_with(resources=["arn:aws:drs:us-east-1:111122223333:recovery-instance/i-0123456789abcdef0"]),
            "source-server ARN",
            id="wrong-resource-type",
        ),
        pytest.param(
            _launch_with(resources=["arn:aws:drs:us-east-1:111122223333:source-server/s-bad"]),
            "source server id",
            id="bad-server-id",
        ),
        pytest.param(
            _launch_with(resources=["arn:aws:drs:mars-north-1:111122223333:source-server/s-12345678901234567"]),
            "region",
            id="unknown-region",
        ),
        pytest.param(
            {**load_event("eventbridge_ec2_state_change"), "detail": {"instance-id": "vol-1", "state": "running"}},
            "instance-id",
            id="bad-instance-id",
        ),
        pytest.param({**load_event("eventbridge_ec2_state_change"), "account": "12345"}, "12-digit", id="bad-account"),
        pytest.param(
            {"accountId": ACCOUNT, "region": "us-east-1", "sourceServerIds": "s-1"}, "list", id="ids-not-list"
        ),
    ],
)
def test_parse_refuses_malformed_input_with_a_sentence(payload: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        parse_refresh_request(payload)


def test_coalesce_merges_a_batch_into_one_work_item_per_scope() -> None:
    launch = parse_refresh_request(load_event("eventbridge_drs_launch_result"))
    ec2 = parse_refresh_request(load_event("eventbridge_ec2_state_change"))
    other_region = parse_refresh_request({"accountId": ACCOUNT, "region": "eu-west-1", "sourceServerIds": []})
    message = parse_refresh_request(
        {"accountId": ACCOUNT, "region": "us-east-1", "sourceServerIds": ["s-12345678901234568"]}
    )

    work = coalesce([("m1", launch), ("m2", ec2), ("m3", other_region), ("m4", message)])

    assert list(work) == [SCOPE, Scope(ACCOUNT, "eu-west-1")]
    here = work[SCOPE]
    assert here.message_ids == ["m1", "m2", "m4"]
    assert here.server_ids == {"s-12345678901234567", "s-12345678901234568"}
    assert here.ec2_instance_ids == {"i-0abcdef1234567890"}
    assert here.job_ids == {"drsjob-04ca7d0d3fb6afa3e"}
    assert here.whole_scope is False


def test_coalesce_a_whole_scope_message_makes_the_scope_whole() -> None:
    launch = parse_refresh_request(load_event("eventbridge_drs_launch_result"))
    whole = parse_refresh_request({"accountId": ACCOUNT, "region": "us-east-1"})

    assert coalesce([("m1", launch), ("m2", whole)])[SCOPE].whole_scope is True


def test_parse_scope_group_message_is_one_whole_scope_request_per_scope() -> None:
    body = {"scopes": [{"accountId": ACCOUNT, "region": "us-east-1"}, {"accountId": ACCOUNT, "region": "eu-west-1"}]}

    requests = parse_refresh_requests(json.dumps(body))

    assert [r.scope for r in requests] == [SCOPE, Scope(ACCOUNT, "eu-west-1")]
    assert all(r.kind is RefreshKind.SCOPE and r.whole_scope and r.run_id is None for r in requests)


def test_parse_scope_group_message_names_a_repeated_scope_once() -> None:
    scope = {"accountId": ACCOUNT, "region": "us-east-1"}
    assert [r.scope for r in parse_refresh_requests({"scopes": [scope, scope]})] == [SCOPE]


def test_parse_requests_of_an_event_is_the_one_request() -> None:
    event = load_event("eventbridge_drs_launch_result")
    assert parse_refresh_requests(event) == [parse_refresh_request(event)]


@pytest.mark.parametrize(
    ("scopes", "fragment"),
    [
        pytest.param([], "1 to 100 scopes", id="empty"),
        pytest.param([{"accountId": ACCOUNT, "region": "us-east-1"}] * 101, "1 to 100 scopes", id="too-many"),
        pytest.param("us-east-1", "1 to 100 scopes", id="not-a-list"),
        pytest.param(["us-east-1"], "accountId and region", id="not-objects"),
        pytest.param([{"accountId": "12", "region": "us-east-1"}], "12", id="bad-account"),
    ],
)
def test_parse_scope_group_message_refuses_a_malformed_group(scopes: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        parse_refresh_requests({"scopes": scopes, "runId": "0123456789abcdef"})
