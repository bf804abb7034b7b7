# shellcheck shell=bash
# Shared helpers for scripts/stack, scripts/test and scripts/demo. Source it; do not run it.
#
# Environment (all optional):
#   WAITTIMES_STACK_HOME   where the broker and registry binaries are installed
#                          (default ~/.local/share/waittimes-stack)
#   WAITTIMES_STACK_RUN    pid files and logs of the running stack (default <repo>/.stack)
#   KAFKA_PORT, SR_PORT    loopback ports of the broker (PLAINTEXT) and the registry (default 9092,
#                          8081); the broker's controller, SASL_SSL and SSL listeners take the
#                          next three ports unless KAFKA_CONTROLLER_PORT, KAFKA_SASL_SSL_PORT or
#                          KAFKA_SSL_PORT say otherwise
#   KAFKA_HEAP_OPTS        the broker JVM's heap (default -Xms128m -Xmx512m)
#   STACK_START_TIMEOUT    seconds to wait for the stack to answer (default 90)
#   STACK_STOP_TIMEOUT     seconds between SIGTERM and SIGKILL on `down` (default 30: the broker
#                          shuts down in a controlled way first)

# Pinned versions: change them here only.
readonly KAFKA_VERSION=4.1.1       # org.apache.kafka:kafka_2.13 from Maven Central
readonly KAFKA_LOG4J_VERSION=2.24.3 # the log4j2 that kafka_2.13 $KAFKA_VERSION pulls in
readonly RIVVEN_SCHEMA_VERSION=0.0.22
readonly RUST_TOOLCHAIN=1.95.0 # only used when no Rust toolchain is installed at all

# Debian 12 packages the project needs: the bundled librdkafka build (cmake, g++, make,
# pkg-config and the -dev libraries), the stack installers (python3-pip, curl), the test producer's
# virtualenv (python3-venv), and the test and
# benchmark tools (docker-compose for `config -q`, wrk, shellcheck; openssl for the stack's test CA,
# nginx for the registry's TLS and basic-auth front in the security tests).
# Java 17 and Maven for the broker are checked apart (ensure_java): a machine may have them from
# elsewhere than Debian.
readonly APT_PACKAGES=(
    ca-certificates curl git make cmake g++ pkg-config
    libssl-dev libsasl2-dev zlib1g-dev libcurl4-openssl-dev
    python3 python3-pip python3-venv docker-compose wrk shellcheck
    openssl nginx
)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT

log() { printf '%s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# --- configuration ------------------------------------------------------------------------------

stack_config() {
    STACK_HOME="${WAITTIMES_STACK_HOME:-$HOME/.local/share/waittimes-stack}"
    STACK_RUN="${WAITTIMES_STACK_RUN:-$REPO_ROOT/.stack}"
    # Absolute, so pid checks compare the same path the broker was started with.
    STACK_RUN=$(realpath -m -- "$STACK_RUN")
    KAFKA_PORT="${KAFKA_PORT:-9092}"
    SR_PORT="${SR_PORT:-8081}"
    STACK_START_TIMEOUT="${STACK_START_TIMEOUT:-90}"
    STACK_STOP_TIMEOUT="${STACK_STOP_TIMEOUT:-30}"
    KAFKA_HOME="$STACK_HOME/kafka-$KAFKA_VERSION"
    RIVVEN_BIN="$STACK_HOME/rivven/bin/rivven-schema"
    local p
    for p in KAFKA_PORT SR_PORT STACK_START_TIMEOUT STACK_STOP_TIMEOUT; do
        [[ "${!p}" =~ ^[0-9]+$ ]] || die "$p must be a number, got '${!p}'"
    done
    KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
    KAFKA_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 2))}"
    KAFKA_SSL_PORT="${KAFKA_SSL_PORT:-$((KAFKA_PORT + 3))}"
    for p in KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_SASL_SSL_PORT KAFKA_SSL_PORT SR_PORT; do
        if ! [[ "${!p}" =~ ^[0-9]+$ ]] || ((${!p} < 1 || ${!p} > 65535)); then
            die "$p must be a port number (1-65535), got '${!p}'"
        fi
    done
    local ports
    ports=$(printf '%s\n' "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_SSL_PORT" \
        "$KAFKA_SSL_PORT" "$SR_PORT" | sort | uniq -d)
    [[ -z $ports ]] || die "the stack's ports must differ (KAFKA_PORT=$KAFKA_PORT, \
KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT, KAFKA_SASL_SSL_PORT=$KAFKA_SASL_SSL_PORT, \
KAFKA_SSL_PORT=$KAFKA_SSL_PORT, SR_PORT=$SR_PORT)"
    KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
    KAFKA_SASL_SSL_BOOTSTRAP="127.0.0.1:$KAFKA_SASL_SSL_PORT"
    KAFKA_SSL_BOOTSTRAP="127.0.0.1:$KAFKA_SSL_PORT"
    SCHEMA_REGISTRY_URL="http://127.0.0.1:$SR_PORT"
}

# --- system packages and toolchain --------------------------------------------------------------

missing_apt_packages() { # package...
    local p
    for p in "$@"; do
        # dpkg -s succeeds for removed-but-configured packages too; check the status line.
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            printf '%s\n' "$p"
        fi
    done
}

ensure_apt_packages() { # [package...] (default: APT_PACKAGES)
    command -v dpkg-query >/dev/null || die "dpkg-query not found: these scripts expect Debian 12"
    local want=("$@") missing
    ((${#want[@]})) || want=("${APT_PACKAGES[@]}")
    mapfile -t missing < <(missing_apt_packages "${want[@]}")
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        die "missing Debian packages: ${missing[*]}
  install them as root:  apt-get update && apt-get install -y ${missing[*]}"
    fi
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed"
    # nginx is only a program the tests start themselves: keep its package from starting a
    # system daemon on port 80 (a policy of our own only while installing, if there is none).
    local policy=/usr/sbin/policy-rc.d own_policy=''
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
    fi
    local rc=0
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || rc=$?
    [[ -n $own_policy ]] && rm -f "$policy"
    ((rc == 0)) || die "apt-get install failed for: ${missing[*]}"
}

# What the browser and contract tests need beyond the stack: Debian's Chromium (driven headless,
# no browser download), Node.js and npm (unless a Node.js is already installed), playwright-core
# (tests/browser/setup.sh) and schemathesis's virtualenv (tests/contract/setup.sh, whose CLI path
# is exported as WAITTIMES_TEST_SCHEMATHESIS).
ensure_ui_test_tools() {
    local want=(chromium)
    command -v node >/dev/null || want+=(nodejs)
    command -v npm >/dev/null || want+=(npm)
    ensure_apt_packages "${want[@]}"
    "$REPO_ROOT/tests/browser/setup.sh"
    local venv
    venv="$("$REPO_ROOT/tests/contract/setup.sh")"
    export WAITTIMES_TEST_SCHEMATHESIS="$venv/bin/st"
}

# Puts cargo on PATH; installs a pinned Rust toolchain with rustup only if there is none at all.
ensure_rust() {
    if ! command -v cargo >/dev/null; then
        local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
        if [[ -x "$cargo_bin/cargo" ]]; then
            export PATH="$cargo_bin:$PATH"
        else
            log "no Rust toolchain found: installing Rust $RUST_TOOLCHAIN with rustup"
            command -v curl >/dev/null || die "curl is needed to install rustup"
            curl --proto '=https' --tlsv1.2 -fsSL https://sh.rustup.rs |
                sh -s -- -y --no-modify-path --profile minimal \
                    --default-toolchain "$RUST_TOOLCHAIN" -c rustfmt -c clippy >&2 ||
                die "rustup installation failed"
            export PATH="$cargo_bin:$PATH"
        fi
    fi
    command -v cargo >/dev/null || die "cargo is still not on PATH"
    local component
    for component in fmt clippy; do
        if ! cargo "$component" --version >/dev/null 2>&1; then
            command -v rustup >/dev/null || die "cargo $component is missing and rustup is not installed"
            local name=$component
            [[ $component == fmt ]] && name=rustfmt
            log "adding the Rust component $name"
            rustup component add "$name" >&2 || die "rustup component add $name failed"
        fi
    done
}

# --- promtool -----------------------------------------------------------------------------------

# promtool, Prometheus's config and rule checker, taken from Debian's prometheus package with
# `apt-get download` and extracted, not installed: installing the package would also start a
# Prometheus daemon (its postinst runs invoke-rc.d). Sets PROMTOOL.
ensure_promtool() {
    local dir="$STACK_HOME/promtool" tmp deb
    PROMTOOL="$dir/bin/promtool"
    if [[ -x "$PROMTOOL" ]] && "$PROMTOOL" --version >/dev/null 2>&1; then
        return 0
    fi
    mkdir -p "$dir"
    tmp=$(mktemp -d "$dir/download.XXXXXX")
    if ! (cd "$tmp" && apt-get download -q prometheus) >&2 2>&1; then
        # A machine whose packages were all present may never have fetched the package lists.
        if [[ $(id -u) -ne 0 ]] || ! apt-get update -q >&2 ||
            ! (cd "$tmp" && apt-get download -q prometheus) >&2 2>&1; then
            rm -rf "$tmp"
            die "apt-get download prometheus failed (as root, run apt-get update first)"
        fi
    fi
    deb=$(find "$tmp" -maxdepth 1 -name 'prometheus_*.deb' -print -quit)
    [[ -n "$deb" ]] || die "apt-get download prometheus left no .deb in $tmp"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool ||
        die "cannot extract promtool from $deb"
    install -D -m 0755 "$tmp/usr/bin/promtool" "$PROMTOOL"
    rm -rf "$tmp"
    "$PROMTOOL" --version >/dev/null || die "the extracted promtool does not run"
}

# --- Java, Maven and the broker -----------------------------------------------------------------

# Java 17 or newer and Maven, from Debian's packages where missing (as root).
ensure_java() {
    local need=() major=''
    if command -v java >/dev/null; then
        major=$(java -XshowSettings:properties -version 2>&1 |
            sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p' | head -n 1)
    fi
    [[ $major =~ ^[0-9]+$ ]] && ((major >= 17)) || need+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || need+=(maven)
    ((${#need[@]} == 0)) && return 0
    [[ $(id -u) -eq 0 ]] || die "the broker needs Java 17+ and Maven: as root, apt-get install -y ${need[*]}"
    log "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
        die "apt-get install failed for: ${need[*]}"
    if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
        die "java or mvn is still missing after installing ${need[*]}"
    fi
}

# The stamp names the versions and the POM it was built from; the checksums cover every jar, so a
# truncated or changed download is noticed and installed again.
kafka_stamp() {
    printf 'kafka %s log4j %s pom %s\n' "$KAFKA_VERSION" "$KAFKA_LOG4J_VERSION" \
        "$(sha256sum "$REPO_ROOT/scripts/kafka/pom.xml" | cut -d' ' -f1)"
}

kafka_installed() {
    [[ -f "$KAFKA_HOME/stamp" && "$(<"$KAFKA_HOME/stamp")" == "$(kafka_stamp)" ]] &&
        [[ -f "$KAFKA_HOME/libs/kafka_2.13-$KAFKA_VERSION.jar" ]] &&
        (cd "$KAFKA_HOME/libs" && sha256sum --quiet --strict -c ../SHA256SUMS >/dev/null 2>&1)
}

# Apache Kafka from Maven Central: the jars of kafka_2.13 and its dependencies, plus the log4j2
# binding its POM leaves out (scripts/kafka/pom.xml), copied into $KAFKA_HOME/libs by Maven.
ensure_kafka() {
    if kafka_installed; then
        return 0
    fi
    ensure_java
    mkdir -p "$STACK_HOME"
    local tmp="$KAFKA_HOME.tmp.$$" logf="$STACK_HOME/mvn-kafka.log"
    log "installing Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME (log: $logf)"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if ! mvn -B -q -f "$REPO_ROOT/scripts/kafka/pom.xml" \
        -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$KAFKA_LOG4J_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs" \
        >"$logf" 2>&1; then
        tail -n 30 "$logf" >&2
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies for Kafka $KAFKA_VERSION failed (log: $logf)"
    fi
    [[ -f "$tmp/libs/kafka_2.13-$KAFKA_VERSION.jar" && -f "$tmp/libs/log4j-slf4j-impl-$KAFKA_LOG4J_VERSION.jar" ]] ||
        die "Maven left no kafka_2.13-$KAFKA_VERSION.jar or log4j binding in $tmp/libs"
    cp "$REPO_ROOT/scripts/kafka/log4j2.properties" "$tmp/log4j2.properties"
    (cd "$tmp/libs" && sha256sum -- *.jar >../SHA256SUMS)
    kafka_stamp >"$tmp/stamp"
    rm -rf "$KAFKA_HOME"
    mv "$tmp" "$KAFKA_HOME"
    kafka_installed || die "the Kafka install in $KAFKA_HOME does not verify"
}

# The java command line of Kafka's tools and broker, into the array KAFKA_JAVA.
kafka_java_cmd() {
    local heap
    read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
    KAFKA_JAVA=(java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.properties"
        -cp "$KAFKA_HOME/libs/*")
}

rivven_installed() {
    [[ -x "$RIVVEN_BIN" ]] &&
        [[ "$("$RIVVEN_BIN" --version 2>/dev/null)" == "rivven-schema $RIVVEN_SCHEMA_VERSION" ]]
}

ensure_rivven() {
    if rivven_installed; then
        return 0
    fi
    mkdir -p "$STACK_HOME"
    local logf="$STACK_HOME/cargo-install.log"
    log "installing the schema registry rivven-schema $RIVVEN_SCHEMA_VERSION into $STACK_HOME/rivven"
    log "  (a cold build takes about 10 minutes; full log: $logf)"
    cargo install "rivven-schema@$RIVVEN_SCHEMA_VERSION" --locked --force \
        --no-default-features --features server,avro,cli \
        --root "$STACK_HOME/rivven" 2>&1 | tee "$logf" >&2 || true
    rivven_installed || {
        tail -n 30 "$logf" >&2
        die "cargo install rivven-schema@$RIVVEN_SCHEMA_VERSION failed (log: $logf)"
    }
}

# Everything the stack needs, idempotent; apt packages only as root.
stack_install() {
    ensure_apt_packages
    ensure_rust
    ensure_java
    ensure_kafka
    ensure_rivven
}

# --- the test CA and the broker's users ---------------------------------------------------------

# Test-only credentials of the local broker's SASL_SSL listener (loopback only): one user for
# both PLAIN and SCRAM-SHA-512, as a Confluent Cloud API key and secret would be.
readonly KAFKA_SASL_USERNAME=waittimes
readonly KAFKA_SASL_PASSWORD=waittimes-local-secret

# A CA and a broker certificate for 127.0.0.1 and localhost, PEM, made once per run dir:
# pki/ca.pem (what clients trust), pki/broker.pem (the broker's key and chain, PKCS#8, unencrypted
# as Kafka's PEM keystore accepts it).
ensure_pki() { # dir
    local dir=$1/pki
    [[ -s $dir/ca.pem && -s $dir/broker.pem ]] && return 0
    command -v openssl >/dev/null || die "openssl is needed for the stack's test CA"
    mkdir -p "$dir"
    (
        cd "$dir"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=waittimes local test CA' \
            -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' -keyout broker.key -out broker.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >ext.cnf
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile ext.cnf -out broker.crt
        openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.pk8
        cat broker.pk8 broker.crt ca.pem >broker.pem.tmp && mv broker.pem.tmp broker.pem
        rm -f broker.csr broker.key broker.pk8 ext.cnf ca.srl
    ) >/dev/null 2>&1 || die "could not make the test CA in $dir"
}

# --- broker nodes -------------------------------------------------------------------------------

# A node is a directory: server.properties, data/ (formatted once), broker.pid, broker.log. The
# stack's own node is $STACK_RUN; a private node for fault tests is any other directory.
#
# write_node_config dir plaintext_port controller_port advertised [sasl_ssl_port ssl_port]
write_node_config() {
    local dir=$1 port=$2 cport=$3 adv=$4 sasl=${5:-} ssl=${6:-}
    local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
    local advertised="PLAINTEXT://$adv"
    local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if [[ -n $sasl ]]; then
        listeners+=",SASL_SSL://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl"
        advertised+=",SASL_SSL://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl"
        protocols+=",SASL_SSL:SASL_SSL,SSL:SSL"
    fi
    cat >"$dir/server.properties.tmp" <<PROPS
# Written by scripts/lib.sh (write_node_config): one KRaft node, broker and controller, on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
log.dirs=$dir/data
# One node: every internal topic has one replica; few partitions start faster.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Group joins at once (tests), topics only when asked for (as on Confluent Cloud).
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.partitions=1
# Tests and benchmarks write records with old CreateTimes (2023, days-old simulations); Kafka's
# time-based retention would delete those segments under a running test. A run dir is
# throw-away, so it keeps everything.
log.retention.ms=-1
# A 2-core machine.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
PROPS
    if [[ -n $sasl ]]; then
        cat >>"$dir/server.properties.tmp" <<PROPS
# TLS with the stack's test CA (PEM); SASL PLAIN and SCRAM-SHA-512 on SASL_SSL.
ssl.keystore.type=PEM
ssl.keystore.location=$dir/pki/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/pki/ca.pem
ssl.client.auth=none
listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USERNAME="$KAFKA_SASL_PASSWORD";
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
    fi
    mv "$dir/server.properties.tmp" "$dir/server.properties"
}

# Formats the node's storage unless it already is (a restart keeps its data).
format_node() { # dir
    local dir=$1
    [[ -f $dir/data/meta.properties ]] && return 0
    local id
    id=$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
    kafka_java_cmd
    # --cluster-id=ID, not -t ID: a base64 id may start with "-", which the parser takes for a flag.
    "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format --standalone --cluster-id="$id" -c "$dir/server.properties" \
        --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USERNAME,password=$KAFKA_SASL_PASSWORD]" \
        >"$dir/format.log" 2>&1 || {
        tail -n 20 "$dir/format.log" >&2
        die "formatting the broker storage in $dir/data failed (log: $dir/format.log)"
    }
}

# The pid of the broker of node dir, if it runs (checked by its command line, so a reused pid is
# not mistaken for it).
broker_pid() { # dir
    local dir=$1 pid
    [[ -f $dir/broker.pid ]] || return 1
    pid=$(<"$dir/broker.pid")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $dir/server.properties" ||
        return 1
    printf '%s\n' "$pid"
}

# Starts the node's broker in its own session, output in dir/broker.log.
start_node() { # dir
    local dir=$1 waited=0
    rm -f "$dir/broker.pid"
    : >"$dir/broker.log"
    kafka_java_cmd
    # The child writes its own pid before it execs java, so the pid file names the broker itself.
    # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
    setsid -f sh -c 'echo "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$dir/broker.pid" \
        "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/broker.log" 2>&1
    while [[ ! -s "$dir/broker.pid" ]]; do
        ((waited < 50)) || die "could not start the broker of $dir"
        sleep 0.1
        waited=$((waited + 1))
    done
}

# Waits until the broker of node dir answers a metadata request naming `advertised`.
wait_node() { # dir port advertised timeout_s
    local dir=$1 port=$2 adv=$3 deadline=$((SECONDS + $4)) got
    while true; do
        [[ -f $dir/broker.pid ]] && kill -0 "$(<"$dir/broker.pid")" 2>/dev/null || return 2
        if got=$(kafka_metadata_probe 127.0.0.1 "$port" 2>/dev/null); then
            [[ $got == "$adv" ]] && return 0
            log "the broker on 127.0.0.1:$port advertises $got instead of $adv"
            return 3
        fi
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# Sends `signal` to pid and waits until it has exited: SIGKILL after $STACK_STOP_TIMEOUT s.
terminate() { # name pid signal
    local name=$1 pid=$2 sig=$3 waited=0
    kill "-$sig" "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < STACK_STOP_TIMEOUT * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name: still running ${STACK_STOP_TIMEOUT}s after SIG$sig, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
}

stop_node() { # dir [signal]
    local dir=$1 sig=${2:-TERM} pid
    if ! pid=$(broker_pid "$dir"); then
        rm -f "$dir/broker.pid"
        return 0
    fi
    terminate "broker ($dir)" "$pid" "$sig"
    rm -f "$dir/broker.pid"
    log "broker ($dir): stopped (pid $pid)"
}

# A private node for fault tests: `scripts/stack node up DIR PORT CONTROLLER_PORT [ADVERTISED]`
# (PLAINTEXT only; ADVERTISED, default 127.0.0.1:PORT, may point at a test's proxy). Restarting it
# on the same DIR keeps its data, as a broker restart does. Prints the broker's pid.
node_up() { # dir port controller_port [advertised]
    local dir=$1 port=$2 cport=$3 adv=${4:-127.0.0.1:$2} pid rc=0
    [[ $port =~ ^[0-9]+$ && $cport =~ ^[0-9]+$ ]] || die "node up: ports must be numbers"
    ensure_kafka
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if pid=$(broker_pid "$dir"); then
        printf '%s\n' "$pid"
        return 0
    fi
    write_node_config "$dir" "$port" "$cport" "$adv"
    format_node "$dir"
    start_node "$dir"
    wait_node "$dir" "$port" "$adv" "$STACK_START_TIMEOUT" || rc=$?
    if ((rc != 0)); then
        tail -n 30 "$dir/broker.log" >&2
        stop_node "$dir" KILL
        die "the broker of $dir did not answer on 127.0.0.1:$port (status $rc; log: $dir/broker.log)"
    fi
    broker_pid "$dir"
}

node_down() { # dir
    [[ -d $1 ]] || return 0
    stop_node "$(cd "$1" && pwd)"
}

# --- processes ----------------------------------------------------------------------------------

port_open() { # host port
    # shellcheck disable=SC2016 # $1 and $2 belong to the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

port_owner() { # port -> "pid/program" if ss can tell
    command -v ss >/dev/null || return 0
    ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*' | head -n 1 | sed 's/users:((//'
}

# Sends one Kafka Metadata (v1) request and prints the first broker's advertised host:port.
kafka_metadata_probe() { # host port
    python3 - "$1" "$2" <<'PY'
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])
client = b"waittimes-stack"
# api_key 3 (Metadata), version 1, correlation id 7, client id, topics = null (all)
body = struct.pack(">hhih", 3, 1, 7, len(client)) + client + struct.pack(">i", -1)
try:
    with socket.create_connection((host, port), timeout=2) as s:
        s.settimeout(3)
        s.sendall(struct.pack(">i", len(body)) + body)

        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise OSError("connection closed by the broker")
                buf += chunk
            return buf

        (size,) = struct.unpack(">i", read(4))
        resp = read(size)
    corr, brokers = struct.unpack(">ii", resp[:8])
    if corr != 7 or brokers < 1:
        raise OSError("unexpected metadata response")
    (hlen,) = struct.unpack(">h", resp[12:14])
    host_adv = resp[14 : 14 + hlen].decode()
    (port_adv,) = struct.unpack(">i", resp[14 + hlen : 18 + hlen])
    print(f"{host_adv}:{port_adv}")
except (OSError, struct.error) as e:
    print(e, file=sys.stderr)
    sys.exit(1)
PY
}

registry_probe() { # url
    curl -fsS --max-time 2 "$1/subjects" >/dev/null 2>&1
}

# The pid in $STACK_RUN/<name>.pid if that process is alive and still runs <bin>; else nothing.
running_pid() {
    local name=$1 bin=$2 pidfile="$STACK_RUN/$1.pid" pid exe
    [[ -f "$pidfile" ]] || return 1
    pid=$(<"$pidfile")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # The pid may have been reused by another program since: compare the executable.
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    [[ "$exe" == "$(readlink -f "$bin")" ]] || return 1
    printf '%s\n' "$pid"
}

# Starts the registry in its own session, output in $STACK_RUN/schema-registry.log. The child
# writes its own pid before it execs the program, so the pid file names the daemon itself.
start_registry() {
    local logf="$STACK_RUN/schema-registry.log" pidfile="$STACK_RUN/schema-registry.pid" waited=0
    rm -f "$pidfile"
    : >"$logf"
    # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
    setsid -f sh -c 'echo "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" \
        "$RIVVEN_BIN" serve --host 127.0.0.1 --port "$SR_PORT" </dev/null >>"$logf" 2>&1
    while [[ ! -s "$pidfile" ]]; do
        ((waited < 50)) || fail_start schema-registry "could not start $RIVVEN_BIN"
        sleep 0.1
        waited=$((waited + 1))
    done
}

stop_registry() { # [just-started]
    local pid
    if [[ ${1:-} == just-started ]] && alive schema-registry; then
        pid=$(<"$STACK_RUN/schema-registry.pid")
    elif ! pid=$(running_pid schema-registry "$RIVVEN_BIN"); then
        if [[ -f "$STACK_RUN/schema-registry.pid" ]]; then
            log "schema-registry: not running (removing stale pid file)"
            rm -f "$STACK_RUN/schema-registry.pid"
        else
            log "schema-registry: not running"
        fi
        return 0
    fi
    terminate schema-registry "$pid" TERM
    rm -f "$STACK_RUN/schema-registry.pid"
    log "schema-registry: stopped (pid $pid)"
}

stop_broker() { # the stack's own node
    if broker_pid "$STACK_RUN" >/dev/null; then
        stop_node "$STACK_RUN"
    else
        rm -f "$STACK_RUN/broker.pid"
        log "broker: not running"
    fi
}

# Daemons this invocation started: on a failed start only these are stopped again.
STARTED=()

fail_start() { # name message
    local logf="$STACK_RUN/$1.log" name
    log "error: $2"
    if [[ -s "$logf" ]]; then
        log "--- last lines of $logf ---"
        tail -n 20 "$logf" >&2
        log "---"
    fi
    for name in "${STARTED[@]}"; do
        case $name in
        broker) stop_node "$STACK_RUN" KILL ;;
        schema-registry) stop_registry just-started ;;
        esac
    done
    exit 1
}

check_port_free() { # name port
    if port_open 127.0.0.1 "$2"; then
        local owner
        owner=$(port_owner "$2")
        die "cannot start $1: 127.0.0.1:$2 is already in use by another program${owner:+ ($owner)}
  stop it, or pick other ports (KAFKA_PORT=... SR_PORT=...)"
    fi
}

same_address() { # name address: a running daemon of this run dir must serve the asked address
    local was
    was=$(cat "$STACK_RUN/$1.address" 2>/dev/null || true)
    [[ -z "$was" || "$was" == "$2" ]] ||
        die "$1 of $STACK_RUN already runs on $was, not $2: run 'scripts/stack down' first"
}

alive() { # name: the process in the pid file exists (it may still be exec'ing)
    local pid
    pid=$(cat "$STACK_RUN/$1.pid" 2>/dev/null) && [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# Confluent Cloud's client.properties for the stack's SASL_SSL listener, as the Cloud console
# hands it out (bootstrap address and CA the only local changes); and its SSL-only sibling.
write_client_properties() {
    cat >"$STACK_RUN/client-sasl.properties" <<PROPS
# Required connection configs for Kafka producer, consumer, and admin
bootstrap.servers=$KAFKA_SASL_SSL_BOOTSTRAP
security.protocol=SASL_SSL
sasl.mechanisms=PLAIN
sasl.username=$KAFKA_SASL_USERNAME
sasl.password=$KAFKA_SASL_PASSWORD
ssl.ca.location=$STACK_RUN/pki/ca.pem

# Best practice for higher availability in librdkafka clients prior to 1.7
session.timeout.ms=45000
PROPS
    cat >"$STACK_RUN/client-ssl.properties" <<PROPS
bootstrap.servers=$KAFKA_SSL_BOOTSTRAP
security.protocol=SSL
ssl.ca.location=$STACK_RUN/pki/ca.pem
PROPS
}

stack_up() {
    mkdir -p "$STACK_RUN"
    local pid p
    # Check every port before starting anything, so a clash leaves nothing behind.
    if pid=$(broker_pid "$STACK_RUN"); then
        same_address broker "$KAFKA_BOOTSTRAP"
        log "broker: already running (pid $pid)"
    else
        for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_SSL_PORT" "$KAFKA_SSL_PORT"; do
            check_port_free broker "$p"
        done
    fi
    if pid=$(running_pid schema-registry "$RIVVEN_BIN"); then
        same_address schema-registry "$SCHEMA_REGISTRY_URL"
        log "schema-registry: already running (pid $pid)"
    else
        check_port_free schema-registry "$SR_PORT"
    fi
    if ! broker_pid "$STACK_RUN" >/dev/null; then
        ensure_pki "$STACK_RUN"
        write_node_config "$STACK_RUN" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_BOOTSTRAP" \
            "$KAFKA_SASL_SSL_PORT" "$KAFKA_SSL_PORT"
        format_node "$STACK_RUN"
        STARTED+=(broker)
        printf '%s\n' "$KAFKA_BOOTSTRAP" >"$STACK_RUN/broker.address"
        start_node "$STACK_RUN"
    fi
    write_client_properties
    if ! running_pid schema-registry "$RIVVEN_BIN" >/dev/null; then
        STARTED+=(schema-registry)
        printf '%s\n' "$SCHEMA_REGISTRY_URL" >"$STACK_RUN/schema-registry.address"
        start_registry
    fi

    local deadline=$((SECONDS + STACK_START_TIMEOUT)) broker_ok='' registry_ok='' rc
    while true; do
        if [[ -z $broker_ok ]]; then
            rc=0
            wait_node "$STACK_RUN" "$KAFKA_PORT" "$KAFKA_BOOTSTRAP" 0 || rc=$?
            case $rc in
            0) broker_ok=1 ;;
            2) fail_start broker "the broker exited during startup" ;;
            3) fail_start broker "the broker on $KAFKA_BOOTSTRAP advertises another address" ;;
            esac
        fi
        alive schema-registry || fail_start schema-registry "the schema registry exited during startup"
        if [[ -z $registry_ok ]] && registry_probe "$SCHEMA_REGISTRY_URL"; then
            registry_ok=1
        fi
        [[ -n $broker_ok && -n $registry_ok ]] && break
        if ((SECONDS >= deadline)); then
            [[ -n $broker_ok ]] ||
                fail_start broker "the broker did not answer a Kafka metadata request on $KAFKA_BOOTSTRAP within ${STACK_START_TIMEOUT}s"
            fail_start schema-registry "the schema registry did not answer on $SCHEMA_REGISTRY_URL within ${STACK_START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    broker_pid "$STACK_RUN" >/dev/null || fail_start broker "the broker pid file does not name the broker"
    running_pid schema-registry "$RIVVEN_BIN" >/dev/null ||
        fail_start schema-registry "the schema registry pid file does not name $RIVVEN_BIN"
    if ((${#STARTED[@]})); then
        log "started: ${STARTED[*]} (logs in $STACK_RUN)"
    fi
    printf '%s\n' "KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP" \
        "KAFKA_SASL_SSL_BOOTSTRAP=$KAFKA_SASL_SSL_BOOTSTRAP" \
        "KAFKA_SSL_BOOTSTRAP=$KAFKA_SSL_BOOTSTRAP" \
        "KAFKA_CA_PEM=$STACK_RUN/pki/ca.pem" \
        "KAFKA_CLIENT_PROPERTIES=$STACK_RUN/client-sasl.properties" \
        "SCHEMA_REGISTRY_URL=$SCHEMA_REGISTRY_URL"
}

stack_down() {
    stop_registry
    stop_broker
}

# Exit status 0 when both run, 3 otherwise.
stack_status() {
    local pid rc=0
    if pid=$(broker_pid "$STACK_RUN"); then
        if kafka_metadata_probe 127.0.0.1 "$KAFKA_PORT" >/dev/null 2>&1; then
            log "broker: Apache Kafka $KAFKA_VERSION running (pid $pid), KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP" \
                "KAFKA_SASL_SSL_BOOTSTRAP=$KAFKA_SASL_SSL_BOOTSTRAP KAFKA_SSL_BOOTSTRAP=$KAFKA_SSL_BOOTSTRAP"
        else
            log "broker: running (pid $pid) but not answering on $KAFKA_BOOTSTRAP"
            rc=3
        fi
    else
        log "broker: not running"
        rc=3
    fi
    if pid=$(running_pid schema-registry "$RIVVEN_BIN"); then
        if registry_probe "$SCHEMA_REGISTRY_URL"; then
            log "schema-registry: running (pid $pid), SCHEMA_REGISTRY_URL=$SCHEMA_REGISTRY_URL"
        else
            log "schema-registry: running (pid $pid) but not answering on $SCHEMA_REGISTRY_URL"
            rc=3
        fi
    else
        log "schema-registry: not running"
        rc=3
    fi
    return "$rc"
}
