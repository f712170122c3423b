"""Counters of one run (calls per operation, retries, throttles), read by the report and the
metrics. Apart from ``syncengine.aws.clients`` so that the DynamoDB seam and the read path can count
without importing the AWS SDK."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from syncengine.core.errors import AwsError, ThrottledError


@dataclass
class CallStats:
    """Counters of one run, read by the report and the metrics."""

    calls: Counter[str] = field(default_factory=Counter)
    throttle_retries: int = 0
    transient_retries: int = 0
    assume_role_calls: int = 0
    dynamodb_throttles: int = 0

    def record_retry(self, exc: AwsError) -> None:
        if isinstance(exc, ThrottledError):
            self.throttle_retries += 1
        else:
            self.transient_retries += 1
