#!/usr/bin/env python3
"""Reads the waittimes feature set, the way the FSI lab's fraud_detector.py reads its FEATURE_SET:
the cluster from `client.properties`, the registry from `schema.properties`, every value through
Confluent's AvroDeserializer (the writer schema fetched from the registry by the id in each record),
one line per closed window of one store.

Usage (next to the two files, as in the lab):
  python3 features_consumer.py [--topic waittimes_features] [--config-dir .] [--count N]
      [--timeout SECONDS]

Add to `client.properties`, as the lab has you do before consuming:
  auto.offset.reset=earliest
  enable.auto.commit=false
  group.id=WaitTimesFeatureReader

Without --count and --timeout it polls until Ctrl+C ("Polling for messages..." while idle). With
--count it stops after that many windows, with --timeout after that many seconds without one (exit
status 1 if --count was not reached).
"""

import argparse
import pathlib
import sys
import time

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def read_config(path):
    """A Java-style .properties file as the Confluent Cloud console hands it out: key=value lines,
    # comments and blank lines ignored."""
    conf = {}
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        conf[key.strip()] = value.strip()
    return conf


def registry_config(props):
    """schema.properties as the workshops write it (url, username, password), or with
    basic.auth.user.info; in the form SchemaRegistryClient takes."""
    conf = {"url": props["schema.registry.url"]}
    if "schema.registry.username" in props:
        conf["basic.auth.user.info"] = (
            f"{props['schema.registry.username']}:{props.get('schema.registry.password', '')}"
        )
    elif "basic.auth.user.info" in props:
        conf["basic.auth.user.info"] = props["basic.auth.user.info"]
    elif "schema.registry.basic.auth.user.info" in props:
        conf["basic.auth.user.info"] = props["schema.registry.basic.auth.user.info"]
    return conf


def consumer_config(props):
    """client.properties minus the registry's keys (librdkafka refuses them)."""
    conf = {
        k: v
        for k, v in props.items()
        if not k.startswith("schema.registry.") and not k.startswith("basic.auth.")
    }
    conf.setdefault("group.id", "WaitTimesFeatureReader")
    conf.setdefault("auto.offset.reset", "earliest")
    return conf


def minutes(value):
    return "-" if value is None else f"{value:.1f}"


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def line(w):
    """One window, one line."""
    estimate = w["wait_time_at_end"]
    estimate = "none" if estimate is None else f"{estimate} min"
    return (
        f"store {w['store_id']} | {iso(w['window_start'])} - {iso(w['window_end'])} | "
        f"placed {w['orders_placed']}, completed {w['orders_completed']}, "
        f"cancelled {w['orders_cancelled']} | "
        f"measured {w['observations_measured']}, reported {w['observations_reported']} | "
        f"wait mean {minutes(w['wait_mean_minutes'])}, p50 {minutes(w['wait_p50_minutes'])}, "
        f"p90 {minutes(w['wait_p90_minutes'])} min | "
        f"at end: {w['open_orders_at_end']} open, estimate {estimate} ({w['basis_at_end']}) | "
        f"{DAYS[w['day_of_week'] - 1]} {w['hour_of_day']:02d}h"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topic", default="waittimes_features")
    parser.add_argument("--config-dir", default=".", help="where client.properties and schema.properties are")
    parser.add_argument("--count", type=int, help="stop after this many windows")
    parser.add_argument("--timeout", type=float, help="stop after this many seconds without a window")
    args = parser.parse_args()

    config_dir = pathlib.Path(args.config_dir)
    client = read_config(config_dir / "client.properties")
    schema = read_config(config_dir / "schema.properties")
    deserialize = AvroDeserializer(SchemaRegistryClient(registry_config(schema)))
    consumer = Consumer(consumer_config(client))
    consumer.subscribe([args.topic])

    seen = 0
    last = time.monotonic()
    try:
        while args.count is None or seen < args.count:
            msg = consumer.poll(1.0)
            if msg is None:
                if args.timeout is not None and time.monotonic() - last > args.timeout:
                    break
                print("Polling for messages...", file=sys.stderr)
                continue
            if msg.error():
                raise KafkaException(msg.error())
            window = deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
            print(line(window), flush=True)
            seen += 1
            last = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if args.count is not None and seen < args.count:
        print(f"only {seen} of {args.count} windows", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
