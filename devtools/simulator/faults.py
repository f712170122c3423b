"""Injected faults: latency, throttling (random and per-scope token buckets), 5xx, stalls,
failing scopes, AccessDenied accounts and uninitialised regions.

``FaultConfig`` is the plain settings object (camelCase JSON on the wire, snake_case in
Python); ``FaultInjector`` applies it per call and owns the mutable state (buckets, page counts,
its own seeded RNG). Changing the config resets that state, so a test's fault starts clean.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from .errors import AwsError

if TYPE_CHECKING:  # context imports this module
    from .context import Reply

FAULTABLE_SERVICES = ("drs", "ec2", "sts")
# Errors DRS answers TerminateRecoveryInstances with for the request's ids, and their statuses
# (API reference, TerminateRecoveryInstances, "Errors").
CONFLICT = "ConflictException"
REJECTION_STATUS = {CONFLICT: 409, "ValidationException": 400}

# The describe calls the body faults (malformed, missing items, repeated token) apply to.
TAMPERED_OPERATIONS = {
    "drs": ("DescribeRecoveryInstances", "DescribeSourceServers"),
    "ec2": ("DescribeInstances",),
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class FaultConfig:
    # Probability (0..1) that a call is throttled (DRS 429 ThrottlingException, EC2 503).
    throttle_rate: float = 0.0
    # Added to every AWS call (all services), plus a uniform 0..jitter.
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    # Token bucket per (account, region, service); 0 means unlimited.
    tps_per_scope: float = 0.0
    # Bucket capacity; 0 means "one second's worth" (max(1, tps_per_scope)).
    burst_per_scope: float = 0.0
    # Probability of a 5xx (DRS InternalServerException, EC2 InternalError).
    error_rate: float = 0.0
    # "account#region": every DRS call there fails with InternalServerException ...
    failing_scopes: tuple[str, ...] = ()
    # ... after serving this many calls there (mid-pagination failure); None = at once.
    fail_after_pages: int | None = None
    # AssumeRole into these accounts is denied.
    access_denied_accounts: tuple[str, ...] = ()
    # "service:Operation" (e.g. "ec2:DescribeRegions") the assumed roles are not allowed to call:
    # EC2 answers UnauthorizedOperation, DRS AccessDeniedException (both HTTP 403).
    unauthorized_operations: tuple[str, ...] = ()
    # "account#region": DRS answers UninitializedAccountException (the data stays, hidden).
    uninitialized_scopes: tuple[str, ...] = ()
    # ... with this error instead (UninitializedAccountException: DRS saying so mid-scope).
    failing_scope_error: str = "InternalServerException"
    # "account#region": DRS and EC2 describe calls there (of ``fault_services``) answer 200 with
    # a truncated body.
    malformed_scopes: tuple[str, ...] = ()
    # AWS shapes the estate's own answers never take (DRS's model requires none of these
    # members). Each entry "account#region", or "*#region" for every account of a region.
    # DRS describe pages there that hold no items answer without ``items`` ({} or just a token).
    missing_items_scopes: tuple[str, ...] = ()
    # DRS describe items there answer ``null`` for the optional members they would otherwise
    # leave out or fill (jobID, tags, failback, pointInTimeSnapshotDateTime, originEnvironment,
    # stagingArea, sourceProperties, lifeCycle), an empty page ``"items": null`` and a last page
    # ``"nextToken": null``.
    null_fields_scopes: tuple[str, ...] = ()
    # DescribeRecoveryInstances there answers its first page (asked without a token) empty,
    # without ``items``, with a nextToken; the listing follows that token.
    empty_page_scopes: tuple[str, ...] = ()
    # "account#region": DescribeRecoveryInstances there answers a page asked for with a token with
    # that same token again (a service bug botocore's paginator also refuses).
    repeated_token_scopes: tuple[str, ...] = ()
    # Value of the Retry-After header on throttles.
    retry_after_seconds: float = 1.0
    # Probability that a call stalls for timeout_seconds before it is answered.
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    # Requests signed longer ago than this are rejected (real AWS: 5 minutes); 0 disables.
    signature_ttl_seconds: float = 300.0
    # Services the random/rate faults apply to (STS is left alone unless listed).
    fault_services: tuple[str, ...] = ("drs", "ec2")
    # The next N TerminateRecoveryInstances calls are applied (the job exists, the instances are
    # gone) and then answered with a 500: the ambiguous outcome a client must never retry blindly.
    terminate_apply_then_fail: int = 0
    # A TerminateRecoveryInstances call naming any of these ids is refused as a whole with
    # ``terminate_rejection_code`` (real DRS validates the whole request: one bad id fails all).
    terminate_rejected_ids: tuple[str, ...] = ()
    terminate_rejection_code: str = "ConflictException"
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "failing_scopes",
            "access_denied_accounts",
            "uninitialized_scopes",
            "fault_services",
            "terminate_rejected_ids",
            "unauthorized_operations",
            "malformed_scopes",
            "missing_items_scopes",
            "null_fields_scopes",
            "empty_page_scopes",
            "repeated_token_scopes",
        ):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{_camel(name)} must be a list of strings")
            object.__setattr__(self, name, tuple(value))
        for name in ("throttle_rate", "error_rate", "timeout_rate"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{_camel(name)} must be within 0..1")
        for name in (
            "latency_ms",
            "latency_jitter_ms",
            "tps_per_scope",
            "burst_per_scope",
            "retry_after_seconds",
            "timeout_seconds",
            "signature_ttl_seconds",
        ):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{_camel(name)} must not be negative")
        if self.fail_after_pages is not None and self.fail_after_pages < 0:
            raise ValueError("failAfterPages must not be negative")
        if self.terminate_apply_then_fail < 0:
            raise ValueError("terminateApplyThenFail must not be negative")
        if self.terminate_rejection_code not in REJECTION_STATUS:
            raise ValueError(f"terminateRejectionCode must be one of {sorted(REJECTION_STATUS)}")
        unknown = set(self.fault_services) - set(FAULTABLE_SERVICES)
        if unknown:
            raise ValueError(f"faultServices: unknown services {sorted(unknown)}")
        for scope in (
            *self.failing_scopes,
            *self.uninitialized_scopes,
            *self.malformed_scopes,
            *self.missing_items_scopes,
            *self.null_fields_scopes,
            *self.empty_page_scopes,
            *self.repeated_token_scopes,
        ):
            if "#" not in scope:
                raise ValueError(f"scope must be 'account#region': {scope!r}")

    def to_json(self) -> dict[str, Any]:
        return {_camel(k): list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def merged(self, changes: dict[str, Any]) -> FaultConfig:
        """A copy with ``changes`` applied; keys may be snake_case or the JSON camelCase."""
        by_name = {f.name: f.name for f in fields(self)}
        by_name.update({_camel(f.name): f.name for f in fields(self)})
        translated: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in by_name:
                raise ValueError(f"unknown fault setting {key!r}")
            translated[by_name[key]] = value
        return replace(self, **translated)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        return cls().merged(data)


def format_retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def throttle_error(service: str, retry_after: float) -> AwsError:
    if service == "drs":
        return AwsError(
            "ThrottlingException",
            "Rate exceeded",
            429,
            headers={"Retry-After": format_retry_after(retry_after)},
            fields={"serviceCode": "drs", "quotaCode": "simulated"},
        )
    if service == "ec2":
        return AwsError("RequestLimitExceeded", "Request limit exceeded.", 503)
    return AwsError("Throttling", "Rate exceeded", 400)


def server_error(service: str, code: str = "InternalServerException") -> AwsError:
    if service == "drs" and code == "UninitializedAccountException":
        return AwsError(code, "The account performing the request has not been initialized.", 400)
    if service == "drs":
        return AwsError("InternalServerException", "Internal service error (simulated)", 500, sender=False)
    if service == "ec2":
        return AwsError("InternalError", "An internal error has occurred", 500, sender=False)
    return AwsError("InternalFailure", "An internal error has occurred", 500, sender=False)


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _State:
    config: FaultConfig
    failing: frozenset[str]
    uninitialized: frozenset[str]
    denied: frozenset[str]
    services: frozenset[str]
    rng: random.Random
    buckets: dict[tuple[str, str, str], _Bucket] = field(default_factory=dict)
    pages: dict[str, int] = field(default_factory=dict)
    ambiguous_left: int = 0


class FaultInjector:
    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._state = self._fresh(config or FaultConfig())

    @staticmethod
    def _fresh(config: FaultConfig) -> _State:
        return _State(
            config=config,
            failing=frozenset(config.failing_scopes),
            uninitialized=frozenset(config.uninitialized_scopes),
            denied=frozenset(config.access_denied_accounts),
            services=frozenset(config.fault_services),
            rng=random.Random(config.seed),
            ambiguous_left=config.terminate_apply_then_fail,
        )

    @property
    def config(self) -> FaultConfig:
        return self._state.config

    def update(self, changes: dict[str, Any]) -> FaultConfig:
        """Merge ``changes`` into the config (validated) and restart the fault state."""
        with self._lock:
            config = self._state.config.merged(changes)
            self._state = self._fresh(config)
            return config

    def reset(self) -> FaultConfig:
        with self._lock:
            self._state = self._fresh(FaultConfig())
            return self._state.config

    def is_uninitialized(self, scope_key: str) -> bool:
        return scope_key in self._state.uninitialized

    def is_denied(self, account_id: str) -> bool:
        return account_id in self._state.denied

    def terminate_rejection(self, ids: list[str]) -> AwsError | None:
        """The error a TerminateRecoveryInstances call naming ``ids`` is refused with, if any."""
        config = self._state.config
        rejected = [i for i in ids if i in config.terminate_rejected_ids]
        if not rejected:
            return None
        code = config.terminate_rejection_code
        return AwsError(
            code,
            f"Recovery instance {rejected[0]} cannot be terminated now (simulated)",
            REJECTION_STATUS[code],
            fields={"resourceId": rejected[0], "resourceType": "RECOVERY_INSTANCE"} if code == CONFLICT else {},
        )

    def take_apply_then_fail(self) -> bool:
        """True for each of the next ``terminate_apply_then_fail`` terminate calls."""
        with self._lock:
            if self._state.ambiguous_left <= 0:
                return False
            self._state.ambiguous_left -= 1
            return True

    def check_permission(self, service: str, operation: str, assumed_role: bool) -> None:
        """Raise the authorization error of an operation the (assumed) role may not call."""
        if not assumed_role or f"{service}:{operation}" not in self._state.config.unauthorized_operations:
            return
        if service == "ec2":
            raise AwsError("UnauthorizedOperation", "You are not authorized to perform this operation.", 403)
        raise AwsError("AccessDeniedException", f"User is not authorized to perform: {service}:{operation}", 403)

    def hidden_scopes(self) -> frozenset[str]:
        return self._state.uninitialized

    def delay(self) -> float:
        """Seconds to wait before answering: latency plus, sometimes, a stall."""
        state = self._state
        config = state.config
        seconds = config.latency_ms / 1000.0
        if config.latency_jitter_ms:
            seconds += state.rng.random() * config.latency_jitter_ms / 1000.0
        if config.timeout_rate and state.rng.random() < config.timeout_rate:
            seconds += config.timeout_seconds
        return seconds

    def check(self, service: str, account_id: str, region: str, now: float) -> None:
        """Raise the AwsError this call should fail with, if any (after the delay)."""
        state = self._state
        config = state.config
        if service == "drs" and state.failing:
            key = f"{account_id}#{region}"
            if key in state.failing:
                served = state.pages.get(key, 0)
                if config.fail_after_pages is None or served >= config.fail_after_pages:
                    raise server_error("drs", config.failing_scope_error)
                state.pages[key] = served + 1
        if service not in state.services:
            return
        if config.tps_per_scope > 0 and not self._take_token(state, (account_id, region, service), now):
            raise throttle_error(service, config.retry_after_seconds)
        if config.throttle_rate and state.rng.random() < config.throttle_rate:
            raise throttle_error(service, config.retry_after_seconds)
        if config.error_rate and state.rng.random() < config.error_rate:
            raise server_error(service)

    def tamper(self, service: str, operation: str, scope_key: str, params: dict[str, Any], reply: Reply) -> Reply:
        """A successful describe answer as the body faults of this scope make it."""
        config = self._state.config
        if reply.status != 200 or operation not in TAMPERED_OPERATIONS.get(service, ()):
            return reply
        if scope_key in config.malformed_scopes and service in self._state.services:
            # Cut mid-document: neither JSON nor XML parses it.
            return reply._replace(body=reply.body[: max(1, len(reply.body) // 2)])
        if service != "drs":
            return reply
        token = params.get("nextToken")
        shapes = (config.missing_items_scopes, config.null_fields_scopes, config.empty_page_scopes)
        if any(in_scopes(scope_key, scopes) for scopes in shapes):
            reply = _reshape(operation, scope_key, token, config, reply)
        if scope_key in config.repeated_token_scopes and operation == "DescribeRecoveryInstances" and token:
            body = json.loads(reply.body)
            body["nextToken"] = token
            return reply._replace(body=json.dumps(body).encode())
        return reply

    @staticmethod
    def _take_token(state: _State, key: tuple[str, str, str], now: float) -> bool:
        config = state.config
        rate = config.tps_per_scope
        capacity = config.burst_per_scope or max(1.0, rate)
        bucket = state.buckets.get(key)
        if bucket is None:
            bucket = state.buckets[key] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False


def in_scopes(scope_key: str, scopes: tuple[str, ...]) -> bool:
    """Whether ``scope_key`` ("account#region") is listed, itself or as "*#region"."""
    return scope_key in scopes or f"*#{scope_key.partition('#')[2]}" in scopes


# Optional members of DRS's describe items that ``null_fields_scopes`` answers as null.
NULL_RECOVERY_INSTANCE_FIELDS = ("jobID", "tags", "failback", "pointInTimeSnapshotDateTime", "originEnvironment")
NULL_SOURCE_SERVER_FIELDS = ("tags", "stagingArea", "sourceProperties", "lifeCycle", "sourceCloudProperties")
# The last id an empty first page's token carries: it sorts before every id, so the page the
# token asks for is the listing's real first page (``pagination.page``).
EMPTY_PAGE_LAST_ID = "!"


def _reshape(operation: str, scope_key: str, token: Any, config: FaultConfig, reply: Reply) -> Reply:
    """A DRS describe answer in the shapes the scope's switches ask for (see ``FaultConfig``)."""
    from .pagination import encode_token

    body = json.loads(reply.body)
    if in_scopes(scope_key, config.empty_page_scopes) and operation == "DescribeRecoveryInstances" and not token:
        body = {"nextToken": encode_token(operation, scope_key, EMPTY_PAGE_LAST_ID)}
    if in_scopes(scope_key, config.null_fields_scopes):
        nulls = NULL_RECOVERY_INSTANCE_FIELDS if operation == "DescribeRecoveryInstances" else NULL_SOURCE_SERVER_FIELDS
        for item in body.get("items") or ():
            item.update(dict.fromkeys(nulls))
        if not body.get("items"):
            body["items"] = None
        body.setdefault("nextToken", None)
    if in_scopes(scope_key, config.missing_items_scopes) and not body.get("items"):
        body.pop("items", None)
    return reply._replace(body=json.dumps(body).encode())
