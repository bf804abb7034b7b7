"""Checks the peer's output against a plain-Python recomputation from the same input.

Reads the three input topics and the peer's output topic from the beginning, recomputes each
store's final published wait time (same semantics as app.py, without Quix: records in timestamp
order per store, match by order id, fallback to the reported durations, rolling window, p50)
and compares it with the last value per store on the output topic. Run the peer with
`--emit-interval 0` first, so that every change (and so the final one) reaches the topic.

    run.sh --expect N --emit-interval 0 --output OUT ...
    "$VENV/bin/python" verify.py --bootstrap ... --schema-registry ... --output OUT

Prints one JSON line; exit status 0 when every store agrees, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from app import DEFAULT_INPUT, MINUTE_MS, load_schema, percentile, whole_minutes


def read_all(bootstrap: str, topic: str, deserialize) -> list[tuple]:
    """(timestamp, key, value) of every record of `topic`, from the beginning to the end."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "waittimes-quix-verify",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        remaining, out = set(parts), []
        while remaining:
            for m in c.consume(10000, timeout=5):
                if m.error():
                    if m.error().code() == -191:  # _PARTITION_EOF
                        remaining.discard(m.partition())
                        continue
                    raise RuntimeError(str(m.error()))
                ctx = SerializationContext(topic, MessageField.VALUE)
                key = m.key().decode() if m.key() is not None else None
                out.append((m.timestamp()[1], key, deserialize(m.value(), ctx)))
        return out
    finally:
        c.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--schema-registry", default="http://127.0.0.1:8081")
    p.add_argument("--input", default=DEFAULT_INPUT)
    p.add_argument("--output", default="waittimes_quix_avro")
    p.add_argument("--window", type=float, default=30.0, help="minutes")
    args = p.parse_args()
    registry = SchemaRegistryClient({"url": args.schema_registry})

    def des(schema_file: str):
        return AvroDeserializer(registry, json.dumps(load_schema(schema_file)))

    orders, completed, cancelled = args.input.split(",")
    events = []  # (timestamp, topic rank, store key, order id, reported ms)
    for rank, (topic, schema) in enumerate(
        [
            (orders, "pizza_orders.avsc"),
            (completed, "pizza_orders_completed.avsc"),
            (cancelled, "pizza_orders_cancelled.avsc"),
        ]
    ):
        for ts, key, v in read_all(args.bootstrap, topic, des(schema)):
            rack, delivery = v.get("rack_time_secs"), v.get("order_delivery_time_secs")
            reported = None if rack is None or delivery is None else (rack + delivery) * 1000
            events.append((ts, rank, key, v["store_order_id"], reported))
    events.sort(key=lambda e: (e[0], e[1]))

    window_ms = int(args.window * MINUTE_MS)
    placed: dict = {}
    ended: set = set()
    obs: dict = defaultdict(list)
    measured = reported_used = 0
    for ts, rank, key, order_id, reported in events:
        oid = (key, order_id)
        if rank == 0:
            if oid not in ended:
                placed.setdefault(oid, ts)
            continue
        if oid in ended:
            continue
        ended.add(oid)
        at = placed.pop(oid, None)
        if rank == 2:
            continue
        if at is not None and at <= ts:
            wait, measured = ts - at, measured + 1
        elif reported is not None:
            wait, reported_used = reported, reported_used + 1
        else:
            continue
        obs[key].append((ts, wait))

    expected = {}
    for key, xs in obs.items():
        xs.sort()
        stream_time = xs[-1][0]
        live = sorted(w for t, w in xs if t > stream_time - window_ms)
        expected[key] = whole_minutes(percentile(live, 0.5))

    out_des = des("waittimes.avsc")
    actual = {}
    # Per-partition offset order is the order the peer wrote each store's values in.
    for _ts, key, v in read_all(args.bootstrap, args.output, out_des):
        actual[key] = v["wait_time"]

    mismatches = {k: [expected.get(k), actual.get(k)] for k in expected.keys() | actual.keys()}
    mismatches = {k: v for k, v in mismatches.items() if v[0] != v[1]}
    print(
        json.dumps(
            {
                "input_events": len(events),
                "measured_observations": measured,
                "reported_observations": reported_used,
                "stores": len(expected),
                "expected": dict(sorted(expected.items())),
                "mismatches": mismatches,
            }
        )
    )
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
