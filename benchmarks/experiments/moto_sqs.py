"""What moto's SQS server costs per message (``python -m benchmarks.experiments.moto_sqs [SIZE
...]``): the local queue under the fanout benchmark.

For a queue of 200, 500 and 2,000 messages: the time to send them (SendMessageBatch, 10 a call)
and to receive them all (ReceiveMessage, 10 a call, nothing deleted), one client, nothing else
running. moto checks each received message's retention by recomputing every queue attribute,
which counts the queue's messages (``is_message_valid_based_on_retention_period`` ->
``get_queue_attributes``), and each send reads the queue's attributes too: both grow with the
queue's length, so the whole queue costs O(n^2). Real SQS does not; the sweep's message count is
what decides this cost locally.
"""

from __future__ import annotations

import json
import time

SIZES = (200, 500, 2000)


def measure(sqs: object, size: int) -> dict[str, float]:
    from devtools.event_source import create_work_queue

    queue = create_work_queue(sqs, f"experiment-{size}", visibility_timeout_s=900)
    started = time.perf_counter()
    for start in range(0, size, 10):
        entries = [{"Id": str(i), "MessageBody": json.dumps({"n": start + i})} for i in range(10)]
        sqs.send_message_batch(QueueUrl=queue.url, Entries=entries)  # type: ignore[attr-defined]
    sent = time.perf_counter() - started
    calls, received = [], 0
    while received < size:
        began = time.perf_counter()
        answer = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, AttributeNames=["All"])  # type: ignore[attr-defined]
        calls.append(time.perf_counter() - began)
        received += len(answer.get("Messages") or [])
    return {
        "messages": size,
        "send_s": round(sent, 2),
        "receive_all_s": round(sum(calls), 2),
        "receive_call_median_ms": round(sorted(calls)[len(calls) // 2] * 1000, 1),
    }


def main(argv: list[str]) -> None:
    import boto3

    from benchmarks.harness import isolate_from_aws
    from devtools.localdb import moto_server

    isolate_from_aws()
    with moto_server() as server:
        sqs = boto3.client(
            "sqs",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
        )
        for size in [int(a) for a in argv] or SIZES:
            print(json.dumps(measure(sqs, size)), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
