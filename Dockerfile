# syntax=docker/dockerfile:1
#
# jetbridge container image, published as ghcr.io/jetbridge/jetbridge:<appVersion>
# (the chart's default image: charts/jetbridge/values.yaml, tag = Chart.yaml appVersion).
#
#   docker build -t ghcr.io/jetbridge/jetbridge:0.1.0 .
#
# Without a registry or a container engine, scripts/build-image assembles the same
# runtime image (Debian bookworm, ca-certificates, libgcc-s1, uid 65532) from Debian
# packages around an already built binary and writes it as an OCI archive.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---- builder ---------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the build directory between builds;
# the binary is copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin jetbridge \
 && install -D -m 0755 target/release/jetbridge /out/jetbridge

# ---- runtime ---------------------------------------------------------------
# distroless/cc: glibc, libgcc_s, ca-certificates, a nonroot (65532) user, no shell.
# The binary links glibc, libm and libgcc_s dynamically; nothing else.
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="jetbridge" \
      org.opencontainers.image.description="Kubernetes ingress controller with an identity-aware proxy" \
      org.opencontainers.image.source="https://github.com/jetbridge/jetbridge" \
      org.opencontainers.image.url="https://ghcr.io/jetbridge/jetbridge" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="NOASSERTION"
COPY --from=builder /out/jetbridge /usr/local/bin/jetbridge
USER 65532:65532
WORKDIR /home/nonroot
ENTRYPOINT ["/usr/local/bin/jetbridge"]
CMD ["controller"]
