"""Who is calling: the hub (any access key the simulator did not issue) or the account an
AssumeRole session is bound to. Also the request-level auth failures real services return
(expired session, unknown session token, expired signature), in each service's own words."""

from __future__ import annotations

import secrets
import string
import threading
from dataclasses import dataclass, replace
from typing import Any

from .errors import AwsError
from .ids import parse_amz_date
from .sigv4 import CredentialScope

_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True, slots=True)
class SessionCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: float
    account_id: str
    role_name: str
    session_name: str
    role_id: str
    # The AssumeRole's inline session policy (syncengine's sessions pass one), None: none passed.
    policy: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AssumedRole:
    """What one AssumeRole asked for: the session name and the session policy, as given."""

    account_id: str
    role_name: str
    session_name: str
    policy: str | None
    access_key_id: str


@dataclass(frozen=True, slots=True)
class Identity:
    account_id: str
    arn: str
    user_id: str
    session: SessionCredentials | None = None


# (service, problem) -> (code, HTTP status, message)
_AUTH_ERRORS = {
    ("drs", "expired"): (
        "ExpiredTokenException",
        403,
        "The security token included in the request is expired",
    ),
    ("ec2", "expired"): ("RequestExpired", 400, "Request has expired."),
    ("sts", "expired"): ("ExpiredToken", 400, "The security token included in the request is expired"),
    ("drs", "invalid"): (
        "UnrecognizedClientException",
        403,
        "The security token included in the request is invalid.",
    ),
    ("ec2", "invalid"): ("AuthFailure", 401, "AWS was not able to validate the provided access credentials"),
    ("sts", "invalid"): (
        "InvalidClientTokenId",
        403,
        "The security token included in the request is invalid.",
    ),
    ("drs", "signature"): ("InvalidSignatureException", 403, "Signature expired: {detail}"),
    ("ec2", "signature"): ("RequestExpired", 400, "Request has expired. {detail}"),
    ("sts", "signature"): ("SignatureDoesNotMatch", 403, "Signature expired: {detail}"),
}


def auth_error(service: str, problem: str, detail: str = "") -> AwsError:
    code, status, message = _AUTH_ERRORS[(service, problem)]
    return AwsError(code, message.format(detail=detail), status)


class CredentialStore:
    """Sessions issued by AssumeRole. Thread-safe: tests read and expire them from their thread."""

    def __init__(self, hub_account_id: str) -> None:
        self.hub_account_id = hub_account_id
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionCredentials] = {}
        self._assumed: list[AssumedRole] = []
        self._hub = Identity(
            account_id=hub_account_id,
            arn=f"arn:aws:iam::{hub_account_id}:user/simulator-operator",
            user_id="AIDASIMULATOROPERATOR",
        )

    def issue(
        self,
        account_id: str,
        role_name: str,
        session_name: str,
        duration: float,
        now: float,
        *,
        policy_text: str | None = None,
        policy: dict[str, Any] | None = None,
    ) -> SessionCredentials:
        session = SessionCredentials(
            access_key_id="ASIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16)),
            secret_access_key=secrets.token_urlsafe(30),
            session_token="SIMTOKEN" + secrets.token_urlsafe(48),
            expiration=now + duration,
            account_id=account_id,
            role_name=role_name,
            session_name=session_name,
            role_id="AROA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17)),
            policy=policy,
        )
        record = AssumedRole(account_id, role_name, session_name, policy_text, session.access_key_id)
        with self._lock:
            self._sessions[session.access_key_id] = session
            self._assumed.append(record)
        return session

    def assumed_roles(self) -> list[AssumedRole]:
        """Every AssumeRole that issued a session, in order: its session name and policy."""
        with self._lock:
            return list(self._assumed)

    def expire_all(self) -> int:
        """End every issued session now (tests of credential refresh). Returns how many."""
        with self._lock:
            count = len(self._sessions)
            self._sessions = {key: replace(s, expiration=0.0) for key, s in self._sessions.items()}
            return count

    def authenticate(
        self,
        scope: CredentialScope,
        session_token: str | None,
        amz_date: str | None,
        now: float,
        signature_ttl: float | None,
    ) -> Identity:
        if signature_ttl and amz_date:
            try:
                signed_at = parse_amz_date(amz_date)
            except ValueError:
                signed_at = now
            if now - signed_at > signature_ttl:
                raise auth_error(
                    scope.service,
                    "signature",
                    f"{amz_date} is now earlier than the allowed {int(signature_ttl)} s window",
                )
        session = self._sessions.get(scope.access_key_id)
        if session is None:
            return self._hub
        if session_token != session.session_token:
            raise auth_error(scope.service, "invalid")
        if now >= session.expiration:
            raise auth_error(scope.service, "expired")
        return Identity(
            account_id=session.account_id,
            arn=f"arn:aws:sts::{session.account_id}:assumed-role/{session.role_name}/{session.session_name}",
            user_id=f"{session.role_id}:{session.session_name}",
            session=session,
        )
