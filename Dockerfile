# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run from a slim Debian with only the
# binary, CA certificates and curl (for HEALTHCHECK), as an unprivileged user.
#
#   docker build -t messaging-service .
#   docker run --rm -p 8080:8080 -e DATABASE_URL=... -e REDIS_URL=... messaging-service serve

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so a change to the service's own code does not rebuild them.
# tools/fake-providers (a test tool in the workspace) is never built here: only its
# manifest is needed for cargo to read the workspace, so it gets placeholder sources.
COPY Cargo.toml Cargo.lock ./
COPY tools/fake-providers/Cargo.toml ./tools/fake-providers/
RUN mkdir -p src tools/fake-providers/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs tools/fake-providers/src/lib.rs \
 && echo 'fn main() {}' > tools/fake-providers/src/main.rs \
 && cargo build --release --locked --bin messaging-service \
 && rm -rf src
COPY src ./src
COPY migrations ./migrations
COPY build.rs ./
# Make sure cargo sees the real sources as newer than the placeholder build.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin messaging-service \
 && strip target/release/messaging-service

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /src/target/release/messaging-service /usr/local/bin/messaging-service
USER 10001:10001
WORKDIR /home/app
ENV HOST=0.0.0.0 \
    PORT=8080 \
    WORKER_METRICS_PORT=9091 \
    LOG_FORMAT=json \
    NO_COLOR=1
# 8080: the API (serve, all). 9091: a worker's /metrics and /health.
EXPOSE 8080 9091
# The API answers /health on PORT; compose points the worker's check at its metrics port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null || exit 1
# SIGTERM drains requests (API) and in-flight messages (worker) before exiting.
STOPSIGNAL SIGTERM
ENTRYPOINT ["messaging-service"]
CMD ["serve"]
