"""Response parsers for the estate-sized AWS answers (EC2 DescribeInstances, DRS's describes),
on botocore's public extension point: a ``response_parser_factory`` session component whose
parsers override the public ``parse()`` (``syncengine.aws.clients.new_session`` registers it).

Each falls back to botocore on anything it does not recognise (error answers, other shapes,
bodies it cannot read), and ``tests/unit/aws/test_fastpath.py`` checks its output against botocore's
on the same input. The EC2 fields kept are listed once, in ``fields.py``. Why they stay:
benchmarks/RESULTS.md ("Response parsers").

They use no private botocore or aiobotocore name; the few the engine needs elsewhere are listed
in ``syncengine.aws.sdk_internals``.
"""

from __future__ import annotations

from syncengine.aws.fastpath.fields import EC2_INSTANCE_FIELDS
from syncengine.aws.fastpath.parsers import (
    FAST_PATH_FAILURES,
    FastResponseParserFactory,
    UnexpectedBody,
    json_members,
    note_fallback,
    parse_describe_instances,
)

__all__ = [
    "EC2_INSTANCE_FIELDS",
    "FAST_PATH_FAILURES",
    "FastResponseParserFactory",
    "UnexpectedBody",
    "json_members",
    "note_fallback",
    "parse_describe_instances",
]
