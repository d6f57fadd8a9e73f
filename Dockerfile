# syntax=docker/dockerfile:1
# One image for every relance service: `relance run scheduler|renderer|sender|sender-sms|
# sender-letter|payments`,
# `relance migrate`. Used by compose.yaml; build with `docker build -t relance .`.

FROM rust:1-bookworm AS builder
WORKDIR /app
COPY . .
# The cache mounts keep the registry and the build directory between builds; the binary is
# copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/app/target \
    cargo build --release --locked --bin relance \
    && cp target/release/relance /usr/local/bin/relance

FROM debian:bookworm-slim AS runtime
# curl: the compose healthchecks ask /health/ready.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin relance
WORKDIR /app
COPY --from=builder /usr/local/bin/relance /usr/local/bin/relance
# Email templates and policies at the same paths as in the source tree, both relative to the
# working directory and absolute as seen from the builder (/app), wherever the code looks.
# Migrations are embedded in the binary; the copy is for reference.
COPY --from=builder /app/services/renderer/templates /app/services/renderer/templates
COPY --from=builder /app/shared/domain/policies /app/shared/domain/policies
COPY --from=builder /app/migrations /app/migrations
# Without SMTP_URL, the sender writes .eml files under /app/out/mail; without an SMS gateway
# or postal API, text messages and letters go under /app/out/sms and /app/out/letters.
RUN mkdir -p /app/out/mail /app/out/sms /app/out/letters && chown -R relance:relance /app/out
USER relance
ENTRYPOINT ["relance"]
CMD ["--help"]
