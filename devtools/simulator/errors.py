"""One exception for every simulated AWS error; each protocol module renders it in its own wire
format (rest-json header + body, EC2 ``<Response><Errors>``, STS ``<ErrorResponse>``)."""

from __future__ import annotations

from typing import Any


class AwsError(Exception):
    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        *,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        sender: bool = True,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        # Extra modelled members of the error shape (e.g. ValidationException.reason).
        self.fields = fields or {}
        self.headers = headers or {}
        # STS's <Type>: Sender for client faults, Receiver for server faults.
        self.sender = sender


def drs_validation(message: str, field_name: str | None = None) -> AwsError:
    fields: dict[str, Any] = {"reason": "fieldValidationFailed" if field_name else "other"}
    if field_name:
        fields["fieldList"] = [{"name": field_name, "message": message}]
    return AwsError("ValidationException", message, 400, fields=fields)
