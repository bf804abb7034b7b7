#!/usr/bin/env bash
# Runs the Kafka Streams peer that setup.sh built, passing every argument through
# (`run.sh --help` lists them; README.md describes the contract). `exec`, so the process the
# caller started is the JVM itself (the bench kills it with SIGKILL and reads its /proc).
#
#   WAITTIMES_KSTREAMS_JAVA_OPTS   extra JVM options (default none: the JVM's own defaults)
set -euo pipefail
build="${WAITTIMES_KSTREAMS_BUILD:-${WAITTIMES_STACK_HOME:-$HOME/.local/share/waittimes-stack}/kstreams-peer}"
if [[ ! -f "$build/waittimes-kstreams-peer.jar" ]]; then
    echo "run.sh: no build at $build: run $(dirname "${BASH_SOURCE[0]}")/setup.sh first" >&2
    exit 1
fi
# shellcheck disable=SC2086 # word splitting of the options is intended
exec java ${WAITTIMES_KSTREAMS_JAVA_OPTS:-} -cp "$build/waittimes-kstreams-peer.jar:$build/lib/*" \
    waittimes.kstreams.Main "$@"
