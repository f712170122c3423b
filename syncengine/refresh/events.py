"""What the refresh function is asked to refresh: read-only views of the EventBridge events and
SQS scope messages it accepts (Powertools data-class style), each turned into one
``RefreshRequest`` for one scope, and ``coalesce`` which merges a batch's requests into one piece
of work per (account, region).

Shapes (``../shared/API-CONTRACT.md``, "Event-driven refresh"):
- ``aws.drs`` ``DRS Source Server Launch Result``: ``resources[0]`` the source server's ARN,
  ``detail.state``, ``detail.job-id``;
- ``aws.drs`` ``DRS Recovery Instance Failback State Change``: ``resources[0]`` the recovery
  instance's ARN, ``.../recovery-instance/i-...`` or the ``.../recovery-instance/ri-...`` form of
  AWS's sample event, ``detail.state``;
- ``aws.ec2`` ``EC2 Instance State-change Notification``: ``detail.instance-id``,
  ``detail.state``; account and region from the envelope
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-instance-state-changes.html);
- a scope message ``{"accountId", "region", "sourceServerIds"?, "reason"?, "runId"?}`` (no ids:
  the whole scope; ``runId``: enqueued by a fan-out run, ``syncengine.sync.fanout``);
- a scope group message ``{"scopes": [{"accountId", "region"}, ...], "reason"?, "runId"?}``:
  several whole scopes in one message (a fan-out sweep packs small groups, one account's regions
  together), one request per scope (``parse_refresh_requests``).
DRS sends its events to EventBridge directly, best effort
(https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-drs.html): the scheduled sweep
stays the backstop. Anything else raises ``InvalidRequestError`` with a sentence; the caller logs
it and acknowledges the message (a malformed message never becomes valid by retrying).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.data_classes.common import DictWrapper

from syncengine.core.config import MAX_FANOUT_SCOPES_PER_MESSAGE
from syncengine.core.errors import InvalidRequestError
from syncengine.core.models import Scope
from syncengine.tables.accounts import (
    validate_account_id,
    validate_region,
    validate_source_server_id,
)

# Parts of a fan-out run record (``syncengine.tables.status``): far more than any estate needs.
MAX_FANOUT_PARTS = 100_000

DRS_SOURCE = "aws.drs"
EC2_SOURCE = "aws.ec2"
LAUNCH_RESULT = "DRS Source Server Launch Result"
FAILBACK_STATE_CHANGE = "DRS Recovery Instance Failback State Change"
EC2_STATE_CHANGE = "EC2 Instance State-change Notification"
# A scope message may name at most this many servers (a wave; DRS filters take 200 ids a call).
MAX_SCOPE_MESSAGE_SERVERS = 1000

# arn:aws:drs:{region}:{account}:{source-server|recovery-instance}/{id} (any partition).
_DRS_ARN = re.compile(r"arn:aws[a-z-]*:drs:([a-z0-9-]+):([0-9]{12}):(source-server|recovery-instance)/(\S+)", re.ASCII)
_EC2_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}", re.ASCII)
# A failback event's recovery instance, either form: DRS's own id (the EC2 instance id form,
# ``i-`` + hex, what DescribeRecoveryInstances answers) or the ``ri-...`` form of AWS's sample
# event (EventBridge reference, "DRS Recovery Instance Failback State Change").
_FAILBACK_RECOVERY_INSTANCE_ID = re.compile(r"(?:i-[0-9a-fA-F]{8,17}|ri-([0-9a-zA-Z]{8,32}))", re.ASCII)
_RUN_ID = re.compile(r"[0-9a-f]{16}", re.ASCII)


class RefreshKind(StrEnum):
    LAUNCH_RESULT = "launchResult"
    FAILBACK = "failback"
    EC2_STATE = "ec2State"
    SCOPE = "scope"


@dataclass(frozen=True)
class DrsArn:
    region: str
    account_id: str
    resource_type: str
    resource_id: str

    @classmethod
    def parse(cls, value: Any, resource_type: str) -> DrsArn:
        match = _DRS_ARN.fullmatch(value) if isinstance(value, str) else None
        if match is None or match.group(3) != resource_type:
            raise InvalidRequestError(f"resources[0] must be a DRS {resource_type} ARN, got {str(value)[:200]!r}.")
        return cls(match.group(1), match.group(2), match.group(3), match.group(4))

    @property
    def scope(self) -> Scope:
        return Scope(validate_account_id(self.account_id), validate_region(self.region))


class _StateChangeEvent(EventBridgeEvent):
    @property
    def state(self) -> str | None:
        """``detail.state`` when it is a string."""
        detail = self.get("detail")
        value = detail.get("state") if isinstance(detail, Mapping) else None
        return value if isinstance(value, str) else None


class _DrsResourceEvent(_StateChangeEvent):
    def _resource_arn(self, resource_type: str) -> DrsArn:
        resources = self.get("resources")
        first = resources[0] if isinstance(resources, list) and resources else None
        return DrsArn.parse(first, resource_type)


class DrsLaunchResultEvent(_DrsResourceEvent):
    """``DRS Source Server Launch Result``: a launch of one source server finished (either way)."""

    @property
    def source_server(self) -> DrsArn:
        return self._resource_arn("source-server")

    @property
    def job_id(self) -> str | None:
        detail = self.get("detail")
        value = detail.get("job-id") if isinstance(detail, Mapping) else None
        return value if isinstance(value, str) and value else None


class DrsFailbackStateChangeEvent(_DrsResourceEvent):
    """``DRS Recovery Instance Failback State Change``: names the recovery instance only."""

    @property
    def recovery_instance(self) -> DrsArn:
        return self._resource_arn("recovery-instance")

    @property
    def recovery_instance_ids(self) -> frozenset[str]:
        """The ids the cache may hold the recovery instance under: the id as the event gives it
        and, for the ``ri-`` form, the ``i-`` form with the same suffix (a cache lookup only: an
        id the cache does not hold costs no AWS call, ``syncengine.refresh.batch``)."""
        resource_id = self.recovery_instance.resource_id
        match = _FAILBACK_RECOVERY_INSTANCE_ID.fullmatch(resource_id)
        if match is None:
            raise InvalidRequestError(
                f"resources[0] must name a recovery instance (i-... or ri-...), got {resource_id[:100]!r}."
            )
        suffix = match.group(1)
        return frozenset({resource_id, f"i-{suffix}"} if suffix else {resource_id})


class Ec2StateChangeEvent(_StateChangeEvent):
    """``EC2 Instance State-change Notification``: names the EC2 instance only."""

    @property
    def instance_id(self) -> str:
        detail = self.get("detail")
        value = detail.get("instance-id") if isinstance(detail, Mapping) else None
        if not isinstance(value, str) or not _EC2_INSTANCE_ID.fullmatch(value):
            raise InvalidRequestError(f"detail.instance-id must be an EC2 instance id, got {str(value)[:100]!r}.")
        return value

    @property
    def scope(self) -> Scope:
        return Scope(validate_account_id(self.get("account")), validate_region(self.get("region")))


class _FanoutPartMessage(DictWrapper):
    @property
    def run_id(self) -> str | None:
        """The fan-out run that enqueued this message (``syncengine.sync.fanout``), if any."""
        return _run_id(self.get("runId"))

    @property
    def part(self) -> int:
        return _part(self.get("part"))


class ScopeMessage(_FanoutPartMessage):
    """``{"accountId", "region", "sourceServerIds"?, "reason"?}``."""

    @property
    def scope(self) -> Scope:
        return Scope(validate_account_id(self.get("accountId")), validate_region(self.get("region")))

    @property
    def source_server_ids(self) -> frozenset[str] | None:
        ids = self.get("sourceServerIds")
        if ids is None:
            return None
        if not isinstance(ids, list) or len(ids) > MAX_SCOPE_MESSAGE_SERVERS:
            raise InvalidRequestError(
                f"sourceServerIds must be a list of at most {MAX_SCOPE_MESSAGE_SERVERS} source server ids."
            )
        return frozenset(validate_source_server_id(sid) for sid in ids)

    @property
    def reason(self) -> str | None:
        reason = self.get("reason")
        return reason[:200] if isinstance(reason, str) else None


def _part(value: Any) -> int:
    """A fan-out message's ``part`` (``syncengine.tables.status``); 0 when absent (one part)."""
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_FANOUT_PARTS:
        raise InvalidRequestError(f"part must be a part number, got {str(value)[:20]!r}.")
    return value


def _run_id(run_id: Any) -> str | None:
    if run_id is None:
        return None
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise InvalidRequestError(f"runId must be a run id, got {str(run_id)[:40]!r}.")
    return run_id


class ScopeGroupMessage(_FanoutPartMessage):
    """``{"scopes": [{"accountId", "region"}, ...], "reason"?, "runId"?}``: whole scopes."""

    @property
    def scopes(self) -> list[Scope]:
        items = self.get("scopes")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_FANOUT_SCOPES_PER_MESSAGE:
            raise InvalidRequestError(f"scopes must be a list of 1 to {MAX_FANOUT_SCOPES_PER_MESSAGE} scopes.")
        if not all(isinstance(item, Mapping) for item in items):
            raise InvalidRequestError("Each scope must be an object with accountId and region.")
        return [Scope(validate_account_id(i.get("accountId")), validate_region(i.get("region"))) for i in items]


@dataclass(frozen=True)
class RefreshRequest:
    """What one event or message asks for, in one scope. Servers are named directly, or through
    a recovery instance or an EC2 instance that only the cache can map to its server."""

    kind: RefreshKind
    scope: Scope
    server_ids: frozenset[str] = frozenset()
    recovery_instance_ids: frozenset[str] = frozenset()
    ec2_instance_ids: frozenset[str] = frozenset()
    whole_scope: bool = False
    job_id: str | None = None
    state: str | None = None
    run_id: str | None = None  # a fan-out run's scope message
    part: int = 0  # the part of that run's record that counts the scope
    # When the event happened (its EventBridge ``time``, epoch ms; second precision); None for a
    # scope message, or an event without a readable time.
    event_time_ms: int | None = None


def _json_object(payload: Any) -> Mapping[str, Any]:
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise InvalidRequestError("The message body is not JSON.") from exc
    if not isinstance(payload, Mapping):
        raise InvalidRequestError("The message must be a JSON object.")
    return payload


def event_time_ms(payload: Mapping[str, Any]) -> int | None:
    """An EventBridge event's ``time`` (ISO 8601, UTC) in epoch ms, None when absent or unreadable."""
    value = payload.get("time")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_refresh_requests(payload: Any) -> list[RefreshRequest]:
    """What one message asks for: one request per scope it names (several for a scope group
    message). Any malformed part rejects the whole message."""
    payload = _json_object(payload)
    if "scopes" not in payload or "accountId" in payload or "source" in payload:
        return [parse_refresh_request(payload)]
    group = ScopeGroupMessage(dict(payload))
    run_id, part = group.run_id, group.part
    scopes = list(dict.fromkeys(group.scopes))  # a scope named twice is one sync, counted once
    return [RefreshRequest(RefreshKind.SCOPE, scope, whole_scope=True, run_id=run_id, part=part) for scope in scopes]


def parse_refresh_request(payload: Any) -> RefreshRequest:
    """One event or scope message (a mapping, or the JSON text of an SQS message body)."""
    payload = _json_object(payload)
    source, detail_type = payload.get("source"), payload.get("detail-type")
    if source == DRS_SOURCE and detail_type == LAUNCH_RESULT:
        launch = DrsLaunchResultEvent(dict(payload))
        arn = launch.source_server
        return RefreshRequest(
            RefreshKind.LAUNCH_RESULT,
            arn.scope,
            server_ids=frozenset({validate_source_server_id(arn.resource_id)}),
            job_id=launch.job_id,
            state=launch.state,
            event_time_ms=event_time_ms(payload),
        )
    if source == DRS_SOURCE and detail_type == FAILBACK_STATE_CHANGE:
        failback = DrsFailbackStateChangeEvent(dict(payload))
        return RefreshRequest(
            RefreshKind.FAILBACK,
            failback.recovery_instance.scope,
            recovery_instance_ids=failback.recovery_instance_ids,
            state=failback.state,
            event_time_ms=event_time_ms(payload),
        )
    if source == EC2_SOURCE and detail_type == EC2_STATE_CHANGE:
        ec2 = Ec2StateChangeEvent(dict(payload))
        return RefreshRequest(
            RefreshKind.EC2_STATE,
            ec2.scope,
            ec2_instance_ids=frozenset({ec2.instance_id}),
            state=ec2.state,
            event_time_ms=event_time_ms(payload),
        )
    if "accountId" in payload:
        message = ScopeMessage(dict(payload))
        ids = message.source_server_ids
        return RefreshRequest(
            RefreshKind.SCOPE,
            message.scope,
            server_ids=ids or frozenset(),
            whole_scope=ids is None,
            run_id=message.run_id,
            part=message.part,
        )
    raise InvalidRequestError(f"Unsupported event: source {str(source)[:50]!r}, detail-type {str(detail_type)[:80]!r}.")


@dataclass
class ScopeWork:
    """One scope's share of a batch: the union of what its events asked for, and the messages
    that asked (they succeed or fail together with the scope's one sync)."""

    scope: Scope
    message_ids: list[str] = field(default_factory=list)
    server_ids: set[str] = field(default_factory=set)
    recovery_instance_ids: set[str] = field(default_factory=set)
    ec2_instance_ids: set[str] = field(default_factory=set)
    whole_scope: bool = False
    job_ids: set[str] = field(default_factory=set)
    # message id -> fan-out run id, for the messages a fan-out sweep enqueued
    run_messages: dict[str, str] = field(default_factory=dict)
    # fan-out run id -> the part of its record that counts this scope
    run_parts: dict[str, int] = field(default_factory=dict)
    # message id -> when its newest event happened (epoch ms; None: not known from the body)
    event_times: dict[str, int | None] = field(default_factory=dict)

    def add(self, message_id: str, request: RefreshRequest) -> None:
        self.message_ids.append(message_id)
        self.server_ids |= request.server_ids
        self.recovery_instance_ids |= request.recovery_instance_ids
        self.ec2_instance_ids |= request.ec2_instance_ids
        self.whole_scope = self.whole_scope or request.whole_scope
        if request.job_id:
            self.job_ids.add(request.job_id)
        if request.run_id:
            self.run_messages[message_id] = request.run_id
            self.run_parts[request.run_id] = request.part
        self.event_times[message_id] = request.event_time_ms


def coalesce(requests: Iterable[tuple[str, RefreshRequest]]) -> dict[Scope, ScopeWork]:
    """One piece of work per (account, region), in the order scopes first appear."""
    work: dict[Scope, ScopeWork] = {}
    for message_id, request in requests:
        work.setdefault(request.scope, ScopeWork(request.scope)).add(message_id, request)
    return work
