"""The waittimes job as a Quix Streams application: a benchmark peer of the Rust service.

Three Avro topics in (orders placed, completed, cancelled; Confluent framing, writer schemas from
the Schema Registry, read through the service's own reader schemas), per-store state keyed by the
message key (the store id), and each store's rolling wait time out to an Avro topic (the
workshop's `WaitTimes` schema, registered in the registry), written only when it changes.

Per store (state is scoped by the message key, which the datagen sets to the store id):
  * an order id maps to its placement time while the order is open (event-time TTL `open_ttl`),
    and to an "ended" marker for `match_ttl` after it completed or was cancelled, so redelivered
    duplicates and placements that arrive after their end change nothing;
  * a completion yields one wait observation: completion time - placement time when the placement
    was seen and is not later, otherwise the reported rack_time_secs + order_delivery_time_secs;
  * the observations of the last `window` of the store's stream time (largest observation time)
    make the published statistic (p50 by default, as the service), in whole minutes.

Run with `--expect N` the app stops itself after N input records and prints one JSON summary
line on stdout (see README.md for the contract the benchmark relies on).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import quixstreams
from confluent_kafka import KafkaException
from quixstreams import Application, State
from quixstreams.error_callbacks import default_on_consumer_error
from quixstreams.models.serializers.avro import AvroDeserializer, AvroSerializer
from quixstreams.models.serializers.exceptions import SerializationError
from quixstreams.models.serializers.schema_registry import SchemaRegistryClientConfig
from quixstreams.models.topics import TopicAdmin, TopicManager

PROCESS_START = time.perf_counter()

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
DEFAULT_INPUT = "pizza_orders_avro,pizza_orders_completed_avro,pizza_orders_cancelled_avro"
MINUTE_MS = 60_000

# Record kinds after the three topics are merged into one stream.
PLACED, COMPLETED, CANCELLED = 0, 1, 2
# State value of an order that has ended (a placement time is an int, so a string cannot clash).
ENDED = "ended"
# State keys of the rolling window (order ids are ints, so these cannot clash either).
WINDOW_KEY, PUBLISHED_KEY = "window", "published"

log = logging.getLogger("waittimes-quix")


def load_schema(name: str) -> dict:
    with open(SCHEMAS / name, encoding="utf-8") as f:
        return json.load(f)


def percentile(sorted_values: list[int], p: float) -> float:
    """Linear interpolation between closest ranks, as the service's estimator."""
    h = (len(sorted_values) - 1) * p
    lo = math.floor(h)
    frac = h - lo
    a = sorted_values[lo]
    if frac == 0.0:
        return float(a)
    return a + frac * (sorted_values[lo + 1] - a)


def whole_minutes(ms: float) -> int:
    """Nearest whole minute, half up, never below 0 (the service's rounding)."""
    return max(0, math.floor(ms / MINUTE_MS + 0.5))


class Matcher:
    """Matches completions and cancellations to placements by order id, per store.

    Returns the wait observation in ms for a completion, None for anything else.
    """

    def __init__(self, open_ttl: timedelta, match_ttl: timedelta):
        self.open_ttl = open_ttl
        self.match_ttl = match_ttl

    def __call__(
        self, rec: tuple, _key: Any, timestamp: int, _headers: Any, state: State
    ) -> int | None:
        kind, order_id, reported_ms = rec
        seen = state.get(order_id)
        if kind == PLACED:
            # An order seen before (redelivery) or already ended (its end came first) is done.
            if seen is None:
                state.set(order_id, timestamp, ttl=self.open_ttl)
            return None
        if seen == ENDED:
            return None  # a redelivered completion or cancellation
        state.set(order_id, ENDED, ttl=self.match_ttl)
        if kind == CANCELLED:
            return None
        if seen is not None and seen <= timestamp:
            return timestamp - seen
        # Fallback: the order is unknown (or placed later than completed).
        return reported_ms


class RollingWait:
    """A store's rolling window of wait observations and the published value.

    Returns the minutes to publish when they differ from what the output topic holds for the
    store and the store has not been published for `emit_interval` (wall clock, as the
    service's emitter), None otherwise. Quix Streams has no wall-clock timers, so a change that
    is held back goes out with the store's next observation, not at the end of the interval.
    """

    def __init__(self, window: timedelta, estimator: str, emit_interval: float):
        self.window_ms = int(window.total_seconds() * 1000)
        self.estimator = estimator
        self.emit_interval = emit_interval
        # Wall-clock time of each store's last emit; deliberately not state (not replayable).
        self.last_emit: dict[Any, float] = {}

    def __call__(
        self, wait_ms: int, key: Any, timestamp: int, _headers: Any, state: State
    ) -> int | None:
        # [[at, wait_ms], ...] sorted by `at`; stream time is the largest `at`.
        obs: list = state.get(WINDOW_KEY) or []
        if not obs or obs[-1][0] <= timestamp:
            obs.append([timestamp, wait_ms])
        else:
            i = len(obs)
            while i > 0 and obs[i - 1][0] > timestamp:
                i -= 1
            obs.insert(i, [timestamp, wait_ms])
        lo = obs[-1][0] - self.window_ms
        cut = 0
        while obs[cut][0] <= lo:
            cut += 1
        if cut:
            del obs[:cut]
        state.set(WINDOW_KEY, obs)

        if self.estimator == "mean":
            ms = sum(o[1] for o in obs) / len(obs)
        else:
            p = 0.5 if self.estimator == "p50" else 0.9
            ms = percentile(sorted(o[1] for o in obs), p)
        minutes = whole_minutes(ms)
        if state.get(PUBLISHED_KEY) == minutes:
            return None
        now = time.monotonic()
        if now - self.last_emit.get(key, -math.inf) < self.emit_interval:
            return None
        self.last_emit[key] = now
        state.set(PUBLISHED_KEY, minutes)
        return minutes


def delete_changelogs(admin: TopicAdmin, manager: TopicManager) -> None:
    """Deletes this run's changelog topics: a benchmark run has a group of its own, so nothing
    reuses them, and the broker would otherwise keep every run's state writes."""
    names = [t.name for t in manager.changelog_topics_list]
    if not names:
        return
    for name, future in admin.admin_client.delete_topics(names, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:  # a leftover topic is not worth failing the run for
            log.warning("could not delete the changelog topic %s: %s", name, exc)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="The waittimes job in Quix Streams (benchmark peer).",
    )
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("WAITTIMES_PEER_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (env WAITTIMES_PEER_BOOTSTRAP)",
    )
    p.add_argument(
        "--schema-registry",
        default=os.environ.get("WAITTIMES_PEER_SCHEMA_REGISTRY", "http://127.0.0.1:8081"),
        help="Schema Registry URL (env WAITTIMES_PEER_SCHEMA_REGISTRY)",
    )
    p.add_argument(
        "--input",
        default=DEFAULT_INPUT,
        help="ORDERS,COMPLETED,CANCELLED topics, comma-separated, in that order",
    )
    p.add_argument("--output", default="waittimes_quix_avro", help="output topic")
    p.add_argument(
        "--group",
        default=f"waittimes-quix-{int(time.time() * 1000)}-{os.getpid()}",
        help="consumer group (default: unique per run)",
    )
    p.add_argument(
        "--expect",
        type=int,
        default=0,
        help="stop after this many input records (0: run until SIGINT/SIGTERM)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="give up after this many seconds from process start (0: never); exit status 3",
    )
    p.add_argument("--window", type=float, default=30.0, help="rolling window, minutes")
    p.add_argument("--match-ttl", type=float, default=10.0, help="minutes an ended order is kept")
    p.add_argument("--open-ttl", type=float, default=120.0, help="minutes an open order is kept")
    p.add_argument("--estimator", choices=("p50", "mean", "p90"), default="p50")
    p.add_argument(
        "--emit-interval",
        type=float,
        default=1.0,
        help="at most one output record per store per this many wall-clock seconds",
    )
    p.add_argument(
        "--commit-interval",
        type=float,
        default=5.0,
        help="seconds between checkpoints (Quix's default)",
    )
    p.add_argument(
        "--no-changelog",
        action="store_true",
        help="keep state local only (Quix's use_changelog_topics=False); default: changelogs on",
    )
    p.add_argument(
        "--keep-changelog",
        action="store_true",
        help="keep this run's changelog topics (default: deleted when the app stops)",
    )
    p.add_argument("--loglevel", default="WARNING", help="Quix Streams log level")
    args = p.parse_args(argv)
    topics = [t.strip() for t in args.input.split(",")]
    if len(topics) != 3 or not all(topics):
        p.error("--input takes exactly three topics: ORDERS,COMPLETED,CANCELLED")
    args.topics = topics
    if min(args.expect, args.timeout, args.emit_interval) < 0 or args.window <= 0:
        p.error("--expect, --timeout and --emit-interval must be >= 0, --window > 0")
    return args


class Progress:
    """Counts processed input records, stops the app at the expected count, times the run."""

    def __init__(self, expect: int):
        self.expect = expect
        self.events = 0
        self.bad_records = 0
        self.emitted = 0
        self.first: float | None = None
        self.first_cpu = 0.0
        self.app: Application | None = None
        self.timed_out = False

    def done(self) -> bool:
        return self.expect > 0 and self.events + self.bad_records >= self.expect

    def start_clock(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.first_cpu = time.process_time()

    def on_processed(self, _topic: str, _partition: int, _offset: int) -> None:
        if self.first is None:
            self.start_clock()
        self.events += 1
        if self.done() and self.app is not None:
            self.app.stop()

    def on_consumer_error(self, exc: Exception, msg: Any, logger: logging.Logger) -> bool:
        # No dead-letter topic here: a record that cannot be decoded is counted and skipped.
        # Anything else (a broker or client failure) takes Quix's default path and stops the app.
        if msg is None or not isinstance(exc, SerializationError):
            default_on_consumer_error(exc, msg, logger)
            return False
        if self.first is None:
            self.start_clock()
        self.bad_records += 1
        if self.bad_records <= 10:
            logger.warning(
                "skipping an undecodable record %s[%s]@%s: %s",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc,
            )
        if self.done() and self.app is not None:
            self.app.stop()
        return True

    def on_timeout(self) -> None:
        self.timed_out = True
        if self.app is not None:
            self.app.stop()

    def count_emit(self, _value: Any) -> None:
        self.emitted += 1


def build(app: Application, args: argparse.Namespace, progress: Progress) -> None:
    registry = SchemaRegistryClientConfig(url=args.schema_registry)
    orders_name, completed_name, cancelled_name = args.topics

    def topic(name: str, schema_file: str):
        return app.topic(
            name,
            key_deserializer="str",
            value_deserializer=AvroDeserializer(
                schema=load_schema(schema_file),
                schema_registry_client_config=registry,
            ),
        )

    orders = app.dataframe(topic(orders_name, "pizza_orders.avsc"))
    completed = app.dataframe(topic(completed_name, "pizza_orders_completed.avsc"))
    cancelled = app.dataframe(topic(cancelled_name, "pizza_orders_cancelled.avsc"))

    def reported_ms(v: dict) -> int | None:
        rack, delivery = v.get("rack_time_secs"), v.get("order_delivery_time_secs")
        if rack is None or delivery is None:
            return None
        return (rack + delivery) * 1000

    # One stream of (kind, order id, reported wait) in time order across the three topics
    # (concatenating different topics turns on Quix's partition time alignment).
    events = (
        orders.apply(lambda v: (PLACED, v["store_order_id"], None))
        .concat(completed.apply(lambda v: (COMPLETED, v["store_order_id"], reported_ms(v))))
        .concat(cancelled.apply(lambda v: (CANCELLED, v["store_order_id"], None)))
    )

    open_ttl = timedelta(minutes=args.open_ttl)
    match_ttl = timedelta(minutes=args.match_ttl)
    waits = events.apply(Matcher(open_ttl, match_ttl), stateful=True, metadata=True)
    waits = waits.filter(lambda w: w is not None)
    published = waits.apply(
        RollingWait(timedelta(minutes=args.window), args.estimator, args.emit_interval),
        stateful=True,
        metadata=True,
    )
    published = published.filter(lambda m: m is not None)
    # The key stays the store id (a decimal string), so the output topic can be compacted.
    published = published.apply(
        lambda minutes, key, _ts, _headers: {"store_id": int(key), "wait_time": minutes},
        metadata=True,
    )
    published = published.update(progress.count_emit)
    out = app.topic(
        args.output,
        key_serializer="str",
        value_serializer=AvroSerializer(
            schema=load_schema("waittimes.avsc"),
            schema_registry_client_config=registry,
        ),
    )
    published.to_topic(out)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(message)s")
    progress = Progress(args.expect)
    state_dir = tempfile.mkdtemp(prefix="waittimes-quix-state-")
    topic_admin = TopicAdmin(broker_address=args.bootstrap)
    topic_manager = TopicManager(topic_admin=topic_admin, consumer_group=args.group)
    try:
        app = Application(
            broker_address=args.bootstrap,
            consumer_group=args.group,
            topic_manager=topic_manager,
            auto_offset_reset="earliest",
            commit_interval=args.commit_interval,
            use_changelog_topics=not args.no_changelog,
            state_dir=state_dir,
            loglevel=args.loglevel,
            on_consumer_error=progress.on_consumer_error,
            on_message_processed=progress.on_processed,
            consumer_extra_config={
                # The broker tuning the service is benchmarked with (see SPEC: fetch sizes).
                "fetch.min.bytes": 1000000,
                "fetch.wait.max.ms": 100,
                "max.partition.fetch.bytes": 10485760,
                "queued.min.messages": 1000000,
            },
        )
        progress.app = app
        build(app, args, progress)
        timer = None
        if args.timeout > 0:
            remaining = max(0.0, args.timeout - (time.perf_counter() - PROCESS_START))
            timer = threading.Timer(remaining, progress.on_timeout)
            timer.daemon = True
            timer.start()
        app.run()
        end = time.perf_counter()
        end_cpu = time.process_time()
        if timer is not None:
            timer.cancel()
        if not args.keep_changelog and not args.no_changelog:
            delete_changelogs(topic_admin, topic_manager)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)

    events = progress.events + progress.bad_records
    seconds = end - progress.first if progress.first is not None else 0.0
    complete = not progress.timed_out and (args.expect == 0 or events >= args.expect)
    summary = {
        "peer": "quixstreams",
        "version": quixstreams.__version__,
        "events": events,
        "seconds": round(seconds, 3),
        "cpu_seconds": (
            round(end_cpu - progress.first_cpu, 3) if progress.first is not None else 0.0
        ),
        "events_per_second": round(events / seconds, 1) if seconds > 0 else 0.0,
        "wall_seconds": round(end - PROCESS_START, 3),
        "emitted": progress.emitted,
        "bad_records": progress.bad_records,
        "complete": complete,
    }
    print(json.dumps(summary), flush=True)
    return 0 if complete else 3


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
