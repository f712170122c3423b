"""handlers.refresh with the engine replaced: an SQS batch reaches the engine as one list of
(messageId, body), the answer lists only the failed messages, and a direct event gets the
summary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from handlers import dependencies
from handlers.dependencies import EngineFunctions
from handlers.refresh import lambda_handler
from syncengine.core.config import SyncSettings
from syncengine.core.models import Scope
from syncengine.refresh.batch import RefreshMessage, RefreshResult, RefreshStatus, ScopeRefresh
from tests.events_loader import FakeLambdaContext, load_event

SCOPE = Scope("111122223333", "us-east-1")


class FakeRefresh:
    def __init__(self, result: RefreshResult) -> None:
        self.result = result
        self.calls: list[list[RefreshMessage]] = []

    async def __call__(self, settings: SyncSettings, messages: list[RefreshMessage]) -> RefreshResult:
        self.calls.append(list(messages))
        return self.result


@pytest.fixture
def install() -> Iterator[Any]:
    def installed(result: RefreshResult) -> FakeRefresh:
        fake = FakeRefresh(result)
        dependencies.configure(settings=SyncSettings(), engine=EngineFunctions(refresh=fake))
        return fake

    yield installed
    dependencies.reset()


def test_refresh_handler_passes_every_sqs_message_with_its_id(install: Any) -> None:
    fake = install(RefreshResult())
    batch = load_event("sqs_refresh_batch")

    lambda_handler(batch, FakeLambdaContext())

    assert [(m.message_id, m.body) for m in fake.calls[0]] == [(r["messageId"], r["body"]) for r in batch["Records"]]


def test_refresh_handler_reports_only_the_failed_messages(install: Any) -> None:
    failed = ScopeRefresh(SCOPE, RefreshStatus.FAILED, ("2e1424d4-f796-459a-8184-9c92662be6da",))
    synced = ScopeRefresh(Scope("111122223333", "eu-west-1"), RefreshStatus.SYNCED, ("059f36b4",))
    install(RefreshResult((synced, failed), rejected=("5d0b3f6e",)))

    answer = lambda_handler(load_event("sqs_refresh_batch"), FakeLambdaContext())

    assert answer == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]}


def test_refresh_handler_reports_a_group_message_once_when_any_of_its_scopes_failed(install: Any) -> None:
    """A scope group message spans scopes: one failed scope fails it, listed once however many."""
    group = "2e1424d4-f796-459a-8184-9c92662be6da"
    results = (
        ScopeRefresh(SCOPE, RefreshStatus.SYNCED, (group,)),
        ScopeRefresh(Scope("111122223333", "eu-west-1"), RefreshStatus.FAILED, (group,)),
        ScopeRefresh(Scope("111122223333", "ap-southeast-2"), RefreshStatus.FAILED, (group,)),
    )
    install(RefreshResult(results))

    answer = lambda_handler(load_event("sqs_refresh_batch"), FakeLambdaContext())

    assert answer == {"batchItemFailures": [{"itemIdentifier": group}]}


def test_refresh_handler_acknowledges_a_group_message_whose_failed_scope_was_counted(install: Any) -> None:
    """A fan-out scope that failed but was counted in its run is acknowledged (the run reports
    it); the group message fails only for a scope that was not counted."""
    group = "2e1424d4-f796-459a-8184-9c92662be6da"
    counted = ScopeRefresh(SCOPE, RefreshStatus.FAILED, (group,), acknowledged=(group,))
    install(RefreshResult((counted, ScopeRefresh(Scope("111122223333", "eu-west-1"), RefreshStatus.SYNCED, (group,)))))

    assert lambda_handler(load_event("sqs_refresh_batch"), FakeLambdaContext()) == {"batchItemFailures": []}


def test_refresh_handler_answers_an_empty_failure_list_when_all_succeed(install: Any) -> None:
    install(RefreshResult((ScopeRefresh(SCOPE, RefreshStatus.SYNCED, ("m1",)),)))

    assert lambda_handler(load_event("sqs_refresh_batch"), FakeLambdaContext()) == {"batchItemFailures": []}


def test_refresh_handler_direct_event_gets_the_summary(install: Any) -> None:
    fake = install(RefreshResult((ScopeRefresh(SCOPE, RefreshStatus.NOTHING_TO_SYNC, ("direct",), ()),)))
    event = load_event("eventbridge_ec2_state_change")

    answer = lambda_handler(event, FakeLambdaContext())

    assert fake.calls == [[RefreshMessage("direct", event)]]
    assert answer["status"] == "SUCCESS"
    assert answer["scopes"][0]["status"] == "NOTHING_TO_SYNC"


def test_refresh_handler_takes_a_record_without_sent_timestamp(install: Any) -> None:
    """A record without ``SentTimestamp`` (a hand-built batch) is refreshed, not a crash; one
    with it carries the time."""
    fake = install(RefreshResult())
    event = load_event("sqs_refresh_batch")
    first, second = event["Records"][:2]
    first["attributes"] = {k: v for k, v in first["attributes"].items() if k != "SentTimestamp"}

    answer = lambda_handler({"Records": [first, second]}, FakeLambdaContext())

    assert answer == {"batchItemFailures": []}
    assert [m.sent_at_ms for m in fake.calls[0]] == [None, int(second["attributes"]["SentTimestamp"])]
