# syntax=docker/dockerfile:1
# The waittimes service image.
#
#   docker build -t waittimes:0.1.0 .
#
# Size target: under 100 MB uncompressed (debian:12.12-slim is about 75 MB; libssl3 and
# ca-certificates add about 9 MB; the stripped binary about 11 MB). The builder uses the Rust
# release and the Debian packages CI uses (scripts/lib.sh), so the image's binary is built the
# way the tested one is.
#
# Runtime contract:
# - runs as uid/gid 10001, writes nothing to disk: `docker run --read-only` works as is;
# - listens on 8080 (http.listen), HEALTHCHECK on /health/live via `waittimes probe`;
# - config baked at /etc/waittimes (a copy of config/), overridable by mounting a directory
#   there or with WAITTIMES__SECTION__KEY environment variables;
# - SIGTERM: stops consuming, emits and flushes, commits, closes HTTP (each step bounded at
#   10 s), so give it a stop timeout of at least 30 s.

ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:12.12-slim

FROM ${RUST_IMAGE} AS builder
# The bundled librdkafka build (rdkafka's cmake-build feature) and the OpenSSL bindings: the same
# -dev packages as scripts/lib.sh's APT_PACKAGES.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates make cmake g++ pkg-config \
        libssl-dev libsasl2-dev zlib1g-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The image carries line tables no more: symbols stay for readable panics, debug info goes.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never

# 1. Dependencies only, in their own layer: rebuilt when Cargo.toml or Cargo.lock change, not
#    when the source does. Every target file the manifest names (`path = ...`, and
#    benches/<name>.rs for a [[bench]]) gets a stub, since cargo checks they exist.
COPY Cargo.toml Cargo.lock ./
RUN set -eu; \
    for f in $(sed -n 's/^path *= *"\(.*\)"/\1/p' Cargo.toml) \
        $(awk '/^\[\[bench\]\]/ { b = 1 } b && /^name *=/ { gsub(/[" ]/, "", $0); sub(/^name=/, "", $0); print "benches/" $0 ".rs"; b = 0 }' Cargo.toml); do \
        mkdir -p "$(dirname "$f")"; echo 'fn main() {}' > "$f"; \
    done; \
    : > src/lib.rs; \
    cargo build --release --locked --bin waittimes; \
    rm -rf src benches tests target/release/.fingerprint/waittimes-* \
        target/release/deps/waittimes-* target/release/deps/libwaittimes-*

# 2. The service itself: everything .dockerignore lets in (sources, schemas, test and bench
#    targets the manifest names, config).
COPY . .
RUN cargo build --release --locked --bin waittimes \
    && install -m 0755 target/release/waittimes /usr/local/bin/waittimes \
    && /usr/local/bin/waittimes --version

FROM ${RUNTIME_IMAGE}
# libssl3: TLS to Kafka and the Schema Registry; ca-certificates: to verify them (Confluent
# Cloud). zlib and glibc are in the base image already.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 waittimes \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin waittimes
COPY --from=builder /usr/local/bin/waittimes /usr/local/bin/waittimes
COPY config/ /etc/waittimes/
USER 10001:10001
EXPOSE 8080
ENV WAITTIMES_CONFIG=/etc/waittimes/default.toml
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["waittimes", "probe", "--url", "http://127.0.0.1:8080/health/live", "--timeout", "2s"]
ENTRYPOINT ["waittimes"]
CMD ["run"]
