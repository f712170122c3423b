"""Opaque pagination tokens.

A token names the operation, the scope and the last ID returned; the next page starts after that
ID in the scope's sorted list. Resources launched or terminated between pages therefore never
shift a page boundary, and a token replayed against another operation or scope is rejected, as
the real services reject tokens they did not issue.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_right
from collections.abc import Sequence

_PREFIX = "sim1"


def encode_token(operation: str, scope_key: str, last_id: str) -> str:
    raw = f"{_PREFIX}|{operation}|{scope_key}|{last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, operation: str, scope_key: str) -> str:
    """The last ID carried by ``token``; ValueError if the token is not one of ours for this
    operation and scope."""
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("malformed pagination token") from exc
    parts = raw.split("|")
    if len(parts) != 4 or parts[0] != _PREFIX or parts[1] != operation or parts[2] != scope_key:
        raise ValueError("pagination token does not belong to this request")
    if not parts[3]:
        raise ValueError("empty pagination token")
    return parts[3]


def page(
    ordered_ids: Sequence[str], limit: int, token: str | None, operation: str, scope_key: str
) -> tuple[Sequence[str], str | None]:
    """One page of ``ordered_ids`` (sorted) and the token of the next page, if any."""
    start = 0
    if token:
        start = bisect_right(ordered_ids, decode_token(token, operation, scope_key))
    chunk = ordered_ids[start : start + limit]
    next_token = None
    if start + limit < len(ordered_ids) and chunk:
        next_token = encode_token(operation, scope_key, chunk[-1])
    return chunk, next_token
