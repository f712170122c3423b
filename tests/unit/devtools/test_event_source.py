"""devtools.event_source.failed_identifiers: how Lambda reads a partial batch response
(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html)."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.event_source import failed_identifiers

IDS = ("a", "b", "c")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param({"batchItemFailures": []}, (), id="none-failed"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": "b"}]}, ("b",), id="one-failed"),
        pytest.param({"status": "SUCCESS"}, (), id="no-partial-response"),
        pytest.param(None, (), id="no-answer"),
        pytest.param({"batchItemFailures": None}, (), id="null-list"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": ""}]}, IDS, id="empty-identifier"),
        pytest.param({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, IDS, id="unknown-identifier"),
        pytest.param({"batchItemFailures": [{}]}, IDS, id="missing-identifier"),
        pytest.param({"batchItemFailures": "b"}, IDS, id="not-a-list"),
    ],
)
def test_failed_identifiers_reads_the_partial_batch_response(answer: Any, expected: tuple[str, ...]) -> None:
    assert failed_identifiers(answer, IDS) == expected
