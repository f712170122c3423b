"""CPU fast paths around botocore and aiobotocore, each one switchable (``SYNC_FAST_PATHS``).

Profiling a cold sync (benchmarks/RESULTS.md) showed the engine's CPU going to seven places that
scale with the estate, none of them our own code; each has a fast path here (7 in
``syncengine.runtime``):

1. EC2 DescribeInstances: botocore's shape-driven XML parser (``parsers.FastEC2QueryParser``);
2. DRS DescribeRecoveryInstances/SourceServers/Jobs and DynamoDB Query/Scan/GetItem/BatchGetItem:
   botocore's JSON parser walks shapes that need no conversion (``parsers.FastRestJSONParser``,
   ``parsers.FastJSONParser``);
3. a new SSL context (CA bundle loaded again) per client connector (``clients.SharedSSLSession``);
4. a new client class per client (``clients.enable_client_class_cache``);
5. the User-Agent header built twice per request (``clients.cache_user_agent``);
6. DynamoDB BatchWriteItem/BatchGetItem serialised shape by shape (``clients.FastJSONSerializer``);
7. every DynamoDB call of a sync through aiobotocore at all (~0.6 ms of CPU a call against ~0.1 ms):
   the engine's runtime uses the light client of ``syncengine.dynamodb_http`` (reads and writes)
   wherever the read path may (``light_client_usable``), 6 then applying only without it.

Each fast path falls back to botocore on anything it does not recognise, and
``tests/unit/test_fastpath.py`` checks its output against botocore's on the same input. The EC2
fields kept are listed once, in ``fields.py``.

Private attributes touched (verified against botocore 1.40.61 and aiobotocore 2.25.1, the
versions of ``requirements-dev.lock``; re-check them when either is upgraded):

- ``aiobotocore.client.AioClientCreator._create_client_class`` (replaced by a caching wrapper,
  active only for sessions whose event emitter carries ``_syncengine_client_classes``);
- ``aiobotocore.httpsession.AIOHTTPSession._create_connector`` (overridden) and its
  ``_verify``, ``_cert_file``, ``_key_file``, ``_max_pool_connections``, ``_connector_args``;
- ``_do_parse`` of ``AioEC2QueryParser``, ``AioRestJSONParser`` and ``AioJSONParser``
  (overridden), and ``AioJSONParser._inject_response_metadata``;
- a client's ``_serializer`` (wrapped) and ``_user_agent_creator`` (its ``to_string`` replaced on
  the instance; ``_client_features`` read);
- botocore's ``response_parser_factory`` session component (registered) and
  ``botocore.context.get_context`` (read).

Outside this package, ``syncengine.aws`` sets a shared client's ``_request_signer._credentials``
(the per-call account credentials); that is correctness, not speed, and has no switch.

``SYNC_FAST_PATHS=false`` (``SyncSettings.fast_paths``) turns all seven off: sessions, clients and
connectors are then botocore's and aiobotocore's own.
"""

from __future__ import annotations

from syncengine.fastpath.clients import (
    FastJSONSerializer,
    SharedSSLSession,
    cache_user_agent,
    enable_client_class_cache,
    install_fast_serializer,
)
from syncengine.fastpath.fields import EC2_INSTANCE_FIELDS
from syncengine.fastpath.parsers import (
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
    "FastJSONSerializer",
    "FastResponseParserFactory",
    "SharedSSLSession",
    "UnexpectedBody",
    "cache_user_agent",
    "enable_client_class_cache",
    "install_fast_serializer",
    "json_members",
    "note_fallback",
    "parse_describe_instances",
]
