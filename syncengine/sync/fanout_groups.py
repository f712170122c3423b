"""A fan-out run's messages: small groups of scopes (an account's regions together where they fit),
the group message the refresh function reads, and the parts of the run's record that count them
(``syncengine.tables.status``). No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from syncengine.core.models import Scope
from syncengine.tables.status import FANOUT_PART_SCOPES

FANOUT_REASON = "fanout"
# Delay of a scope message while a recovery runs in its account/region (SQS allows up to 900 s).
ACTIVE_EXECUTION_DELAY_S = 300


def group_message(scopes: list[Scope], run_id: str, part: int | None = None) -> dict[str, Any]:
    """The message of one group of scopes: the refresh function's scope group message, with the
    part of the run's record that counts its scopes (``syncengine.tables.status``)."""
    message: dict[str, Any] = {
        "scopes": [{"accountId": s.account_id, "region": s.region} for s in scopes],
        "reason": FANOUT_REASON,
        "runId": run_id,
    }
    if part is not None:
        message["part"] = part
    return message


@dataclass(frozen=True)
class Group:
    """One message's scopes, its delay and the part that counts them."""

    scopes: list[Scope]
    delay: int
    part: int


def plan_groups(scopes: list[Scope], size: int, delayed: set[Scope]) -> list[Group]:
    """The run's messages: groups of at most ``size`` scopes (``scope_groups``), those of
    scopes where a recovery runs delayed; consecutive groups packed into parts of at most
    ``FANOUT_PART_SCOPES`` scopes (a group never spans two parts)."""
    now = [s for s in scopes if s not in delayed]
    later = [s for s in scopes if s in delayed]
    planned = [(g, 0) for g in scope_groups(now, size)] + [
        (g, ACTIVE_EXECUTION_DELAY_S) for g in scope_groups(later, size)
    ]
    groups: list[Group] = []
    part, filled = 0, 0
    for scopes_of_group, delay in planned:
        if filled and filled + len(scopes_of_group) > FANOUT_PART_SCOPES:
            part, filled = part + 1, 0
        groups.append(Group(scopes_of_group, delay, part))
        filled += len(scopes_of_group)
    return groups


def part_sizes(groups: list[Group]) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for group in groups:
        sizes[group.part] = sizes.get(group.part, 0) + len(group.scopes)
    return sizes


def scope_groups(scopes: list[Scope], size: int) -> list[list[Scope]]:
    """Groups of at most ``size`` scopes, in order, an account's scopes kept together when they
    fit (an account with more than ``size`` scopes fills whole groups of its own)."""
    by_account: dict[str, list[Scope]] = {}
    for scope in scopes:
        by_account.setdefault(scope.account_id, []).append(scope)
    groups: list[list[Scope]] = []
    current: list[Scope] = []
    for account_scopes in by_account.values():
        if current and len(current) + len(account_scopes) > size:
            groups.append(current)
            current = []
        for start in range(0, len(account_scopes), size):
            chunk = account_scopes[start : start + size]
            if len(chunk) == size:
                groups.append(chunk)
            else:
                current += chunk
    if current:
        groups.append(current)
    return groups


__all__ = [
    "ACTIVE_EXECUTION_DELAY_S",
    "FANOUT_REASON",
    "Group",
    "group_message",
    "part_sizes",
    "plan_groups",
    "scope_groups",
]
