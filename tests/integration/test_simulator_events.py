"""The simulator records the EventBridge events AWS would send for its launches, terminations and
EC2 state changes, readable from Python and over ``/_simulator/events``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.simulator import get_json, post_json

REGION = "us-east-1"


@pytest.fixture
def sim(make_simulator: Any) -> Any:
    return make_simulator(accounts=2, regions=(REGION,), instances_per_scope=4, seed=5)


def target(sim: Any) -> str:
    return next(a.account_id for a in sim.estate.accounts if not a.is_hub)


def test_simulator_generated_estate_records_no_events(sim: Any) -> None:
    assert sim.events() == []


def test_simulator_launch_records_ec2_running_then_the_drs_launch_result(sim: Any) -> None:
    account = target(sim)
    [recovery_instance] = sim.estate.launch(account, REGION, 1)
    instance = sim.estate.recovery_instance(recovery_instance)

    running, launch = sim.events()

    assert (running["source"], running["detail-type"]) == ("aws.ec2", "EC2 Instance State-change Notification")
    assert running["detail"] == {"instance-id": instance["ec2InstanceID"], "state": "running"}
    assert (running["account"], running["region"]) == (account, REGION)
    assert (launch["source"], launch["detail-type"]) == ("aws.drs", "DRS Source Server Launch Result")
    assert launch["resources"] == [f"arn:aws:drs:{REGION}:{account}:source-server/{instance['sourceServerID']}"]
    assert launch["detail"] == {"state": "RECOVERY_LAUNCH_SUCCEEDED", "job-id": instance["jobID"]}


def test_simulator_terminate_records_the_ec2_instance_terminated(sim: Any) -> None:
    instance = sim.estate.recovery_instances(target(sim), REGION)[0]

    sim.estate.terminate(instance["recoveryInstanceID"])

    [event] = sim.events()
    assert event["detail"] == {"instance-id": instance["ec2InstanceID"], "state": "terminated"}
    assert event["resources"] == [f"arn:aws:ec2:{REGION}:{target(sim)}:instance/{instance['ec2InstanceID']}"]


def test_simulator_ec2_update_records_a_state_change_only_when_the_state_changes(sim: Any) -> None:
    instance = sim.estate.recovery_instances(target(sim), REGION)[0]["ec2InstanceID"]

    sim.estate.update_ec2(instance, name="renamed")
    sim.estate.update_ec2(instance, state="stopped")

    assert [e["detail"]["state"] for e in sim.events()] == ["stopped"]


def test_simulator_events_route_lists_and_drain_forgets(sim: Any) -> None:
    sim.estate.launch(target(sim), REGION, 2)

    listed = get_json(sim, "/_simulator/events")["events"]
    drained = post_json(sim, "/_simulator/events/drain")["events"]

    assert len(listed) == 4
    assert drained == listed
    assert get_json(sim, "/_simulator/events") == {"events": []}
