# user-auth-service container image.
#
#     docker build -t user-auth-service:0.1.0 .
#
# Multi-stage: compile in the full Rust image, run in a slim Debian image that
# holds only the binary, the OpenSSL runtime and the CA certificates. Both
# stages are Debian 12 (bookworm), so the binary finds the same glibc and
# OpenSSL 3 it was linked against. Release pipelines may pin either base image
# by digest (FROM image:tag@sha256:...) for byte-for-byte reproducible builds.

# ---------------------------------------------------------------- builder --
# A fixed toolchain, at least the crate's rust-version.
FROM rust:1.95.0-bookworm AS builder

# openssl-sys links the system OpenSSL and finds it through pkg-config.
# Versions are not pinned: Debian replaces them with security updates within
# bookworm, and an old pin would stop the build once the archive drops it.
# The base image tag fixes the release; the packages only get fixes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Build the dependencies alone first, against a placeholder main.rs, so this
# slow layer is reused until Cargo.toml, Cargo.lock or a vendored crate change.
COPY Cargo.toml Cargo.lock ./
COPY vendor ./vendor
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && cargo build --release --locked \
    && rm -rf src

# Now the real sources (migrations/ are embedded in the binary at compile
# time, so they are needed here). .dockerignore keeps secrets, local state and
# build output out of the build context.
COPY . .
# Forget the placeholder build of this crate, so the real one is compiled
# whatever the files' timestamps say.
RUN rm -rf target/release/.fingerprint/user-auth-service-* \
    && cargo build --release --locked \
    && install -m 0755 target/release/user-auth-service /usr/local/bin/user-auth-service

# ---------------------------------------------------------------- runtime --
FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="user-auth-service" \
      org.opencontainers.image.description="OAuth2 / OpenID Connect token issuer" \
      org.opencontainers.image.licenses="MIT"

# libssl3: the OpenSSL runtime the binary links; ca-certificates: TLS to
# PostgreSQL. Not pinned, for the same reason as in the builder: bookworm
# security updates replace these versions, and the image should take them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Run as an unprivileged user with a fixed numeric id, so that Kubernetes can
# check runAsNonRoot and volume permissions can be set ahead of time.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin app

COPY --from=builder /usr/local/bin/user-auth-service /usr/local/bin/user-auth-service

# The working directory is where the service reads .env and, with the default
# configuration, writes data/ (SQLite) and keys/ (the local key-encryption
# key), so a plain `docker run` works. In production (see kubernetes/) the
# root file system is read-only: DATABASE_URL points to PostgreSQL and
# KEY_ENCRYPTION_KEY is set, and then the service writes nothing to disk.
WORKDIR /app
RUN chown 10001:10001 /app

# 8001: the public API. 9000 (MANAGEMENT_PORT): /metrics and the probes, for
# Prometheus and the orchestrator only; publish it to no one else.
ENV HOST=0.0.0.0 PORT=8001 MANAGEMENT_PORT=9000
EXPOSE 8001 9000

USER 10001:10001

# No HEALTHCHECK: the image holds no HTTP client (no curl, no shell tools) to
# run one, and adding one only for that would grow the attack surface. The
# orchestrator checks health instead: Kubernetes probes GET /healthz
# (liveness) and GET /readyz (readiness) on the management port, see
# kubernetes/deployment.yaml.
# checkov:skip=CKV_DOCKER_2:No HTTP client in the image to run a HEALTHCHECK; Kubernetes liveness and readiness probes on /healthz and /readyz do it

ENTRYPOINT ["/usr/local/bin/user-auth-service"]
CMD ["serve"]
