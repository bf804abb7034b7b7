#!/usr/bin/env bash
# Builds the Kafka Streams benchmark peer with Maven, outside the repository, idempotently:
# a build whose inputs (pom.xml, src/, the output schema) are unchanged is left as it is (a hash
# stamp in the build directory). Installs a JDK 17 and Maven on Debian (as root) when missing.
# Tries Maven offline first (every artifact already in ~/.m2), online otherwise. All messages go
# to stderr; stdout is only the build directory.
#
#   WAITTIMES_STACK_HOME       base dir (default ~/.local/share/waittimes-stack)
#   WAITTIMES_KSTREAMS_BUILD   the build directory (default $WAITTIMES_STACK_HOME/kstreams-peer)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$here/../../../scripts/lib.sh"
build="${WAITTIMES_KSTREAMS_BUILD:-${WAITTIMES_STACK_HOME:-$HOME/.local/share/waittimes-stack}/kstreams-peer}"

ensure_java
if ! command -v javac >/dev/null; then
    # ensure_java is enough for the broker (a JRE); compiling needs the JDK.
    [[ $(id -u) -eq 0 ]] || die "the Kafka Streams peer needs javac (JDK 17+): as root, apt-get install -y openjdk-17-jdk-headless"
    log "installing Debian packages: openjdk-17-jdk-headless"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends openjdk-17-jdk-headless >&2 ||
        die "apt-get install failed for: openjdk-17-jdk-headless"
fi

peer_hash="$(cd "$here" && { sha256sum pom.xml; find src -type f -print0 | sort -z | xargs -0 sha256sum; sha256sum ../../../schemas/waittimes.avsc; } | sha256sum | cut -d' ' -f1)"
stamp="$build/.inputs.sha256"
if [[ -f "$build/waittimes-kstreams-peer.jar" && -f "$stamp" && "$(cat "$stamp")" == "$peer_hash" ]]; then
    echo "$build"
    exit 0
fi

mkdir -p "$build"
logf="$build.mvn.log"
log "building the Kafka Streams peer into $build (log: $logf)"
rm -f "$stamp"
if ! mvn -B -q -o -f "$here/pom.xml" -Dpeer.build="$build" package >"$logf" 2>&1; then
    log "offline build failed (artifacts missing from ~/.m2?); resolving from Maven Central"
    mvn -B -q -f "$here/pom.xml" -Dpeer.build="$build" package >>"$logf" 2>&1 ||
        die "mvn package of the Kafka Streams peer failed (log: $logf)"
fi
echo "$peer_hash" >"$stamp"
echo "$build"
