"""syncengine.core.metrics: EMF documents through Powertools."""

from __future__ import annotations

import io
import json

import pytest

from syncengine.core import metrics as m


def test_metrics_document_names_namespace_dimension_and_unit() -> None:
    document = m.emf_document({m.SYNC_DURATION: 12}, namespace="NS", environment="prod", properties={"runId": "r"})
    (definition,) = document["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == "NS"
    assert definition["Dimensions"] == [[m.DIMENSION_NAME]]
    assert definition["Metrics"] == [{"Name": m.SYNC_DURATION, "Unit": "Milliseconds"}]
    assert (document[m.DIMENSION_NAME], document["runId"], document[m.SYNC_DURATION]) == ("prod", "r", [12.0])


def test_metrics_unknown_name_is_a_bug() -> None:
    with pytest.raises(KeyError):
        m.emf_document({"NoSuchMetric": 1})


def test_metrics_emitter_writes_one_json_line_when_enabled() -> None:
    stream = io.StringIO()
    m.MetricsEmitter(enabled=True, stream=stream).emit({m.SCOPES_SYNCED: 3}, full=True)
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)[m.SCOPES_SYNCED] == [3.0]


def test_metrics_emitter_is_silent_when_disabled() -> None:
    stream = io.StringIO()
    m.MetricsEmitter(enabled=False, stream=stream).emit({m.SCOPES_SYNCED: 3})
    assert stream.getvalue() == ""
