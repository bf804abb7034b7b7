# waittimes container image: a static-ish release build on Debian 12, run as a non-root user.

FROM rust:1.95-bookworm AS builder
# The bundled librdkafka build (rdkafka's cmake-build feature) needs these.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        cmake g++ make pkg-config libssl-dev libsasl2-dev zlib1g-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin waittimes \
    && install -m 0755 target/release/waittimes /usr/local/bin/waittimes

FROM debian:bookworm-slim
# libssl3: TLS to Kafka and the Schema Registry (librdkafka and the HTTP client link OpenSSL).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin waittimes
COPY --from=builder /usr/local/bin/waittimes /usr/local/bin/waittimes
COPY config/ /etc/waittimes/
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["waittimes"]
CMD ["run", "--config", "/etc/waittimes/default.toml"]
