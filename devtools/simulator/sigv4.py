"""Reads who is calling, where, and which service, from a SigV4 ``Authorization`` header.

Signatures are deliberately not verified: the simulator trusts the credential scope
(``Credential=AKID/DATE/REGION/SERVICE/aws4_request``) to route the call, exactly the parts an
unmodified SDK client fills in from its region and endpoint configuration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CredentialScope:
    access_key_id: str
    date: str
    region: str
    service: str


def parse_authorization(header: str | None) -> CredentialScope | None:
    """The credential scope of an ``AWS4-HMAC-SHA256`` header, or None if it is not one."""
    if not header or not header.startswith("AWS4-HMAC-SHA256"):
        return None
    start = header.find("Credential=")
    if start < 0:
        return None
    start += len("Credential=")
    end = header.find(",", start)
    credential = header[start : end if end >= 0 else None].strip()
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        return None
    return CredentialScope(parts[0], parts[1], parts[2], parts[3])
