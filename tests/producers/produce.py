#!/usr/bin/env python3
"""Produces pizza order events the way third-party producers write them, with Confluent's own
Python client: its AvroSerializer auto-registers the writer schema under `<topic>-value`
(TopicNameStrategy) and frames each value (magic byte, schema id, Avro body).

Shapes (the writer schema each producer registers):
  connect     Kafka Connect's AvroConverter under the Datagen connector: the upstream template's
              names, its `arg.properties` gone, `connect.*` properties added.
  ksqldb      ksqlDB's `VALUE_FORMAT='AVRO'`: every record `KsqlDataSourceSchema`, every column
              optional and upper-case.
  namespaced  a producer's own namespaced record of another name (a Python dict schema).

Usage:
  produce.py --bootstrap HOST:PORT --registry URL --topic T --kind orders|completed|cancelled \
      --shape connect|ksqldb|namespaced --record '{"store_id": 1, "store_order_id": 7,
      "timestamp": 1700000000000, "rack_time_secs": 150, "order_delivery_time_secs": 1300}' ...

`store_id` and `store_order_id` may be null (ksqldb only: its columns are optional). Keys are the
store id as a decimal string, as Datagen keys them. Prints the registered schema id.
"""

import argparse
import copy
import json
import pathlib
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

UPSTREAM = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "upstream"
DATE = {
    "type": "int",
    "connect.version": 1,
    "connect.name": "org.apache.kafka.connect.data.Date",
    "logicalType": "date",
}
RECORD_NAMES = {
    "orders": "pizza_orders",
    "completed": "pizza_orders_completed",
    "cancelled": "pizza_orders_cancelled",
}


def strip_generator_hints(node):
    """The upstream template without Datagen's `arg.properties` (Connect does not keep them)."""
    if isinstance(node, dict):
        return {k: strip_generator_hints(v) for k, v in node.items() if k != "arg.properties"}
    if isinstance(node, list):
        return [strip_generator_hints(v) for v in node]
    return node


def connect_schema(kind):
    """The upstream template as Connect's AvroData writes it back: `connect.name` on records,
    Connect's Date on the date logical type; types that carry nothing else collapse to names."""
    schema = strip_generator_hints(json.loads((UPSTREAM / f"{RECORD_NAMES[kind]}.avro").read_text()))

    def walk(node, namespace):
        if isinstance(node, list):
            return [walk(v, namespace) for v in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        ty = node.get("type")
        if ty == "record":
            namespace = node.get("namespace", namespace)
            node["fields"] = [dict(f, type=walk(f["type"], namespace)) for f in node["fields"]]
            node["connect.name"] = f"{namespace}.{node['name']}" if namespace else node["name"]
            return node
        if ty == "array":
            node["items"] = walk(node["items"], namespace)
            return node
        if node.get("logicalType") == "date":
            return dict(DATE)
        if isinstance(ty, str) and len(node) == 1:
            return ty
        if isinstance(ty, (dict, list)):
            return walk(ty, namespace)
        return node

    return walk(schema, None)


def ksqldb_schema(kind):
    """What ksqlDB registers for a stream over the upstream columns, declared unquoted."""
    optional = lambda name, ty: {"name": name, "type": ["null", ty], "default": None}  # noqa: E731
    fields = [optional("STORE_ID", "int"), optional("STORE_ORDER_ID", "int")]
    if kind == "orders":
        line = {
            "type": "record",
            "name": "KsqlDataSourceSchema_ORDER_LINES",
            "fields": [
                optional("PRODUCT_ID", "int"),
                optional("CATEGORY", "string"),
                optional("QUANTITY", "int"),
                optional("UNIT_PRICE", "double"),
                optional("NET_PRICE", "double"),
            ],
            "connect.name": "io.confluent.ksql.avro_schemas.KsqlDataSourceSchema_ORDER_LINES",
        }
        fields += [optional("COUPON_CODE", "int")]
    fields += [optional("DATE", DATE), optional("STATUS", "string")]
    if kind == "orders":
        fields += [optional("ORDER_LINES", {"type": "array", "items": ["null", line]})]
    if kind == "completed":
        fields += [optional("RACK_TIME_SECS", "int"), optional("ORDER_DELIVERY_TIME_SECS", "int")]
    return {
        "type": "record",
        "name": "KsqlDataSourceSchema",
        "namespace": "io.confluent.ksql.avro_schemas",
        "fields": fields,
        "connect.name": "io.confluent.ksql.avro_schemas.KsqlDataSourceSchema",
    }


def namespaced_schema(kind):
    """A producer's own schema, a Python dict: another name, a namespace, fields reordered."""
    name = {"orders": "OrderPlaced", "completed": "OrderCompleted", "cancelled": "OrderCancelled"}
    fields = [
        {"name": "status", "type": "string", "default": kind},
        {"name": "store_order_id", "type": "int"},
    ]
    if kind == "completed":
        fields += [
            {"name": "order_delivery_time_secs", "type": ["null", "int"], "default": None},
            {"name": "rack_time_secs", "type": ["null", "int"], "default": None},
        ]
    fields += [{"name": "store_id", "type": "int", "doc": "the store"}]
    return {"type": "record", "name": name[kind], "namespace": "com.example.pizza.events", "fields": fields}


SCHEMAS = {"connect": connect_schema, "ksqldb": ksqldb_schema, "namespaced": namespaced_schema}


def value(shape, kind, rec):
    """The record's value as a dict for the shape's schema; fields we do not read get filler."""
    v = {
        "store_id": rec["store_id"],
        "store_order_id": rec["store_order_id"],
        "status": {"orders": "accepted", "completed": "completed", "cancelled": "cancelled"}[kind],
    }
    if kind == "completed":
        v["rack_time_secs"] = rec.get("rack_time_secs")
        v["order_delivery_time_secs"] = rec.get("order_delivery_time_secs")
    if shape != "namespaced":
        v["date"] = 18_500
    if kind == "orders" and shape != "namespaced":
        v["coupon_code"] = 1999
        v["order_lines"] = [
            {"product_id": 7, "category": "pizza", "quantity": 2, "unit_price": 9.5, "net_price": 19.0}
        ]
    if shape == "ksqldb":
        upper = lambda d: {k.upper(): d[k] for k in d}  # noqa: E731
        if "order_lines" in v:
            v["order_lines"] = [upper(line) for line in v["order_lines"]]
        v = upper(v)
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--kind", required=True, choices=sorted(RECORD_NAMES))
    ap.add_argument("--shape", required=True, choices=sorted(SCHEMAS))
    ap.add_argument("--record", action="append", required=True, type=json.loads, help="a JSON object")
    args = ap.parse_args()

    schema = SCHEMAS[args.shape](args.kind)
    registry = SchemaRegistryClient({"url": args.registry})
    serializer = AvroSerializer(
        registry,
        json.dumps(schema),
        conf={"auto.register.schemas": True},
    )
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all"})
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(err)

    ctx = SerializationContext(args.topic, MessageField.VALUE)
    for rec in args.record:
        payload = serializer(value(args.shape, args.kind, copy.deepcopy(rec)), ctx)
        key = None if rec["store_id"] is None else str(rec["store_id"]).encode()
        producer.produce(args.topic, value=payload, key=key, timestamp=rec["timestamp"], on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(30)
    if left or failures:
        sys.exit(f"produce.py: {left} record(s) undelivered, errors: {failures}")
    schema_id = int.from_bytes(payload[1:5], "big")
    print(schema_id)


if __name__ == "__main__":
    main()
