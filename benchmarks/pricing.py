"""What a month of syncs costs: every price the benchmarks use, in one place, each with its page.

Prices are AWS's public on-demand list prices for us-east-1 (US East, N. Virginia) as published on
the pages cited beside each constant, without free tiers (the free tier is per account and shared
with everything else in it) and without tax. Check them against the pages before quoting a bill:
AWS changes prices (DynamoDB's on-demand prices halved on 2024-11-01).

The month is 30 days of the stacks' 5-minute schedule (8,640 syncs) and the execution index's
hourly rebuild (720 rebuilds). The Lambda memory and architecture are read from
``cfn/lambda-stack.yaml`` (the data-management function's parameter defaults), never copied here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# -- prices (USD) ---------------------------------------------------------------------------------

# DynamoDB on-demand, us-east-1: "$0.625 per million write request units", "$0.125 per million
# read request units" (https://aws.amazon.com/dynamodb/pricing/on-demand/).
DYNAMODB_WRITE_REQUEST_UNIT = 0.625 / 1_000_000
DYNAMODB_READ_REQUEST_UNIT = 0.125 / 1_000_000
# Lambda, us-east-1, first 6 billion GB-seconds a month: x86 "$0.0000166667 for every GB-second",
# Arm "$0.0000133334 for every GB-second"; requests "$0.20 per 1M requests"
# (https://aws.amazon.com/lambda/pricing/).
LAMBDA_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
LAMBDA_REQUEST = 0.20 / 1_000_000
# SQS standard queues, us-east-1, beyond the first million a month: "$0.40" per million requests;
# every 64 KB chunk of a payload is one request, and a batch of up to 10 messages is one request
# (https://aws.amazon.com/sqs/pricing/).
SQS_REQUEST = 0.40 / 1_000_000
# CloudTrail: the first copy of management events in each account is free; "additional copies of
# management events" cost "$2.00 per 100,000 management events delivered"
# (https://aws.amazon.com/cloudtrail/pricing/). DRS, EC2 and STS Describe/AssumeRole calls are
# management (read) events in the account they are made in.
CLOUDTRAIL_ADDITIONAL_MANAGEMENT_EVENT = 2.00 / 100_000

# -- the month ------------------------------------------------------------------------------------

SYNC_INTERVAL_SECONDS = 300  # the stacks' schedule: rate(5 minutes)
REBUILD_INTERVAL_SECONDS = 3600  # EXECUTION_INDEX_REBUILD_SECONDS' default
MONTH_SECONDS = 30 * 86400
SYNCS_PER_MONTH = MONTH_SECONDS // SYNC_INTERVAL_SECONDS
REBUILDS_PER_MONTH = MONTH_SECONDS // REBUILD_INTERVAL_SECONDS

# -- the fan-out's SQS requests (estimated from message counts) -----------------------------------

# A fan-out sweep sends up to 10 scopes a message (``MAX_FANOUT_SCOPES_PER_MESSAGE``), 10 messages a
# SendMessageBatch; the event source mapping receives and deletes them in batches. Counted per
# message (worst case: one ReceiveMessage and one DeleteMessage per message), plus the mapping's
# idle long polls, which run whether or not a sync is due: AWS documents five pollers at first,
# each a 20 s long poll (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html).
SCOPES_PER_MESSAGE = 10
MESSAGES_PER_SEND = 10
IDLE_POLLERS = 5
LONG_POLL_SECONDS = 20


def sqs_requests_per_sync(scopes: int) -> int:
    """SQS requests of one fanned-out sync: ceil(scopes/10) messages, sent 10 a request, each
    received and deleted once: sends + 2 x messages."""
    messages = -(-scopes // SCOPES_PER_MESSAGE)
    sends = -(-messages // MESSAGES_PER_SEND)
    return sends + 2 * messages


def sqs_idle_requests_per_month() -> int:
    return IDLE_POLLERS * (MONTH_SECONDS // LONG_POLL_SECONDS)


# -- the stack's Lambda setting -------------------------------------------------------------------

LAMBDA_STACK = Path(__file__).resolve().parent.parent / "cfn" / "lambda-stack.yaml"


@dataclass(frozen=True)
class LambdaSetting:
    memory_mb: int
    architecture: str


def data_management_setting(template: Path = LAMBDA_STACK) -> LambdaSetting:
    """The data-management function's memory and architecture: the defaults of the parameters its
    ``MemorySize`` and ``Architectures`` refer to."""
    from devtools.tables import load_template

    document = load_template(template)
    parameters = document["Parameters"]
    function = next(
        resource["Properties"]
        for resource in document["Resources"].values()
        if resource.get("Type") == "AWS::Lambda::Function"
        and _ref(resource["Properties"].get("MemorySize")) == "DataManagementMemorySize"
    )
    architecture = _ref((function.get("Architectures") or [{"Ref": "LambdaArchitecture"}])[0])
    return LambdaSetting(
        memory_mb=int(parameters["DataManagementMemorySize"]["Default"]),
        architecture=str(parameters[architecture]["Default"]) if architecture else "x86_64",
    )


def _ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, Mapping) else None


# -- the bill -------------------------------------------------------------------------------------


def monthly_cost(
    *,
    read_units: float,
    write_units: float,
    lambda_gb_s: float,
    rebuild_read_units: float = 0.0,
    rebuild_write_units: float = 0.0,
    architecture: str = "arm64",
) -> dict[str, float]:
    """USD a month per item, for one sync's measured figures repeated every 5 minutes and one
    rebuild's every hour (one invocation per sync; a rebuild runs inside a sync's invocation)."""
    return {
        "dynamodb_sync_reads": read_units * SYNCS_PER_MONTH * DYNAMODB_READ_REQUEST_UNIT,
        "dynamodb_sync_writes": write_units * SYNCS_PER_MONTH * DYNAMODB_WRITE_REQUEST_UNIT,
        "dynamodb_rebuild": (
            rebuild_read_units * DYNAMODB_READ_REQUEST_UNIT + rebuild_write_units * DYNAMODB_WRITE_REQUEST_UNIT
        )
        * REBUILDS_PER_MONTH,
        "lambda_compute": lambda_gb_s * SYNCS_PER_MONTH * LAMBDA_GB_SECOND[architecture],
        "lambda_requests": SYNCS_PER_MONTH * LAMBDA_REQUEST,
    }


def fanout_sqs_monthly(scopes: int) -> float:
    """USD a month of the work queue's requests if the sync were fanned out (SYNC_FANOUT=on)."""
    return (sqs_requests_per_sync(scopes) * SYNCS_PER_MONTH + sqs_idle_requests_per_month()) * SQS_REQUEST


def cloudtrail_monthly(aws_calls_per_sync: int) -> float:
    """USD a month per additional CloudTrail trail copying management events: every DRS, EC2 and
    STS call of a sync is one event (the first copy is free, so none without such a trail)."""
    return aws_calls_per_sync * SYNCS_PER_MONTH * CLOUDTRAIL_ADDITIONAL_MANAGEMENT_EVENT
