# syntax=docker/dockerfile:1
# The kybern image: the `kybern` binary on a distroless base, non-root, entrypoint `kybern`.
#   docker build -t kybern:dev .
# BuildKit (Docker's default builder) is needed for the cache mounts below.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# The workspace lists its members as crates/*, so a manifest-only skeleton layer would have to
# mirror every member's targets (benches, tests). Cache mounts keep the crates.io downloads and
# the compiled dependencies between builds instead; a source edit recompiles only kybern's crates.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p kybern-cli \
    && install -D -m 0755 target/release/kybern /out/kybern

# glibc and libgcc as in the builder (both Debian 12); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kybern" \
      org.opencontainers.image.description="Kubernetes policy engine that runs Kyverno policies unchanged" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/kybern /kybern
# The chart's runAsUser/runAsGroup; distroless's `nonroot` user.
USER 65532:65532
EXPOSE 9443
ENTRYPOINT ["/kybern"]
CMD ["serve", "--cluster"]
