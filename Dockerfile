# Multi-stage build: compile in the full Rust image, run in a slim Debian
# image that holds only the binary and the shared libraries it needs.

# ---------------------------------------------------------------- builder --
FROM rust:1-bookworm AS builder

# openssl-sys links the system OpenSSL and finds it through pkg-config.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Use the checked-in query data (.sqlx/) if there is any, never a live database.
ENV SQLX_OFFLINE=true

# Build the dependencies alone first, against a placeholder main.rs, so this
# slow layer is reused until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && cargo build --release --locked \
    && rm -rf src

# Now the real sources (migrations/ are embedded in the binary at compile
# time, so they are needed here). .dockerignore keeps secrets and build output out.
COPY . .
# Forget the placeholder build of this crate, so the real one is compiled
# whatever the files' timestamps say.
RUN rm -rf target/release/.fingerprint/user-auth-service-* \
    && cargo build --release --locked \
    && install -m 0755 target/release/user-auth-service /usr/local/bin/user-auth-service

# ---------------------------------------------------------------- runtime --
FROM debian:bookworm-slim

# libssl3: the OpenSSL runtime the binary links; ca-certificates: TLS to
# PostgreSQL and other services.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Run as an unprivileged user with a fixed numeric id, so that Kubernetes can
# check runAsNonRoot and volume permissions can be set ahead of time.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin app

COPY --from=builder /usr/local/bin/user-auth-service /usr/local/bin/user-auth-service

# The working directory is where the service reads .env and, with the
# default configuration, writes data/ (SQLite) and keys/ (the local KEK).
# Mount a volume there to keep them; in production use PostgreSQL and set
# KEY_ENCRYPTION_KEY instead.
WORKDIR /app
RUN chown 10001:10001 /app

ENV HOST=0.0.0.0 PORT=8001
EXPOSE 8001

USER 10001
ENTRYPOINT ["/usr/local/bin/user-auth-service"]
CMD ["serve"]
