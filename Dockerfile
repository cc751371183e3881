# syntax=docker/dockerfile:1
# The CLASP relay: router (WebSocket, QUIC, TCP), rendezvous API, MQTT and OSC listeners, LAN
# discovery, in one process.
#
#   docker build -t clasp .
#   docker run --rm -p 7330:7330 -p 7340:7340 -p 1883:1883 -p 8000:8000/udp -v clasp-data:/var/lib/clasp clasp
#
# Stage 1 builds the `clasp` binary; stage 2 is a small Debian image with only the binary and CA
# certificates, running as an unprivileged user.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so editing the sources does not rebuild them: a dummy build with only the
# manifests and the lock file fills the cargo cache layer.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p clasp-cli \
    && install -Dm755 target/release/clasp /out/clasp

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/clasp --create-home --shell /usr/sbin/nologin clasp
COPY --from=build /out/clasp /usr/local/bin/clasp
USER clasp
VOLUME /var/lib/clasp
# 7330 WebSocket (+ /healthz, /metrics, /api/v1), 7331/udp QUIC or LAN broadcast discovery,
# 7340 rendezvous, 1883 MQTT, 8000/udp OSC.
EXPOSE 7330/tcp 7331/udp 7340/tcp 1883/tcp 8000/udp
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["clasp", "ping", "--count", "1", "--url", "ws://127.0.0.1:7330"]
ENTRYPOINT ["clasp", "relay"]
CMD ["--host", "0.0.0.0", "--ws-port", "7330", "--rendezvous-port", "7340", \
     "--mqtt-port", "1883", "--osc-port", "8000", "--data-dir", "/var/lib/clasp"]
