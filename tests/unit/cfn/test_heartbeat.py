"""The alarm that fires when full syncs stop: on the metric the engine emits, missing data breaching."""

from __future__ import annotations

from syncengine.core import metrics
from tests.cfn_yaml import load_template, resources_of_type


def test_cfn_heartbeat_alarm_fires_when_no_full_sync_succeeds_for_15_minutes() -> None:
    alarms = resources_of_type(load_template("monitoring-stack.yaml"), "AWS::CloudWatch::Alarm")
    (alarm,) = [a["Properties"] for a in alarms.values() if a["Properties"].get("MetricName") == "FullSyncHeartbeat"]
    assert alarm["MetricName"] == metrics.FULL_SYNC_HEARTBEAT
    assert alarm["Namespace"] == {"Ref": "MetricsNamespace"}
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 15 * 60
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"]
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == ("Sum", "LessThanThreshold", 1)
    assert {"Ref": "AlarmTopic"} in alarm["AlarmActions"]
