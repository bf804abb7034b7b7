#!/usr/bin/env bash
# One-shot job of docker-compose.yml (runs in the Kafka Connect image): creates, or updates to
# the files' contents, one connector per JSON file here, named after the file. PUT
# /connectors/<name>/config is idempotent, so running it again changes nothing.
set -euo pipefail

connect=${CONNECT_URL:-http://connect:8083}
dir=$(dirname "$0")
for file in "$dir"/*.json; do
    name=$(basename "$file" .json)
    echo "connector $name:"
    curl -fsS --retry 10 --retry-connrefused --retry-delay 3 \
        -X PUT -H 'Content-Type: application/json' --data "@$file" \
        "$connect/connectors/$name/config"
    echo
done
# Wait until each task runs, so a broken connector fails this job instead of going unnoticed.
for file in "$dir"/*.json; do
    name=$(basename "$file" .json)
    for _ in $(seq 1 60); do
        status=$(curl -fsS "$connect/connectors/$name/status" || true)
        case $status in
        *'"tasks":[{'*'"state":"RUNNING"'*) echo "connector $name: running"; continue 2 ;;
        *'"state":"FAILED"'*) echo "connector $name failed: $status" >&2; exit 1 ;;
        esac
        sleep 2
    done
    echo "connector $name did not start within 120 s: $status" >&2
    exit 1
done
