# syntax=docker/dockerfile:1
#
# The examplebank image: one static set of files, the `examplebank` binary, running as a
# non-root user on a read-only root file system. Everything the server writes goes under
# /var/lib/examplebank (a volume): the key store in keys/, the audit checkpoint file. In
# Kubernetes, deploy/kubernetes mounts volumes there (see docs/operations.md).
#
#   docker build -t examplebank .
#   docker run --read-only -p 8080:8080 -v examplebank-data:/var/lib/examplebank examplebank
#
# The second command runs every role on the embedded SQLite database in the volume.

ARG RUST_VERSION=1.95

# ---- build ---------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# Only what the build reads: the workspace manifests, the lock file and the crates (migrations,
# front-end assets and the OpenAPI document are embedded from crates/ at compile time).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p examplebank \
    && install -D -m 0755 target/release/examplebank /out/usr/local/bin/examplebank \
    && install -d -m 0700 /out/var/lib/examplebank

# ---- run -----------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc and CA certificates, no shell, no package manager. Its
# `nonroot` user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/usr/local/bin/examplebank /usr/local/bin/examplebank
COPY --from=builder --chown=65532:65532 /out/var/lib/examplebank /var/lib/examplebank
ENV EXAMPLEBANK_DATA_DIR=/var/lib/examplebank \
    EXAMPLEBANK_ADDR=0.0.0.0:8080
WORKDIR /var/lib/examplebank
VOLUME ["/var/lib/examplebank"]
USER 65532:65532
EXPOSE 8080
# No HEALTHCHECK: the image has no shell and no HTTP client, and the binary has no health
# subcommand. Orchestrators probe GET /healthz (alive) and GET /readyz (database reachable).
ENTRYPOINT ["/usr/local/bin/examplebank"]
CMD ["serve", "--roles", "all"]
