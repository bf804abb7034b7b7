#!/usr/bin/env bash
# One-shot job of docker-compose.yml (runs in the Kafka image): creates the workshop's topics.
# The three input topics share one partition count, so the store_id-keyed records of one store
# land on the same partition number in each (the service relies on that co-partitioning).
# waittimes_avro is not compacted: the workshop seeds it with keyless records, which a
# compacted topic rejects. Idempotent: existing topics are left as they are.
set -euo pipefail

bootstrap=${KAFKA_BOOTSTRAP:-kafka:9092}
partitions=${TOPIC_PARTITIONS:-3}
replication=${TOPIC_REPLICATION:-1}

create() { # topic [--config k=v ...]
    local topic=$1
    shift
    kafka-topics --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$topic" --partitions "$partitions" --replication-factor "$replication" "$@"
}

create pizza_orders_avro
create pizza_orders_completed_avro
create pizza_orders_cancelled_avro
create waittimes_avro
create waittimes_features --config cleanup.policy=compact
create waittimes_dlq --config retention.ms=604800000
kafka-topics --bootstrap-server "$bootstrap" --describe \
    --topic 'pizza_orders_avro|pizza_orders_completed_avro|pizza_orders_cancelled_avro|waittimes_avro|waittimes_features|waittimes_dlq' |
    grep -v '^\s*Topic:.*Partition:' || true
