# syntax=docker/dockerfile:1
# The operator image: a static (musl) binary on distroless/static, running as uid/gid 65532 with no
# shell. Build: docker build -t guest-attestation-operator:0.1.0 .
# (ring is the only crypto provider, so the musl build needs only musl-tools for its C/asm parts.)

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH=amd64
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The workspace (operator + emulator manifests) and the sources; nothing else is needed to build.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY emulator ./emulator
COPY tests ./tests
ENV CARGO_PROFILE_RELEASE_LTO=true \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-musl ;; \
      arm64) triple=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac \
 && rustup target add "$triple" \
 && cargo build --release --locked --target "$triple" --bin guest-attestation-operator \
 && install -m 0755 "target/$triple/release/guest-attestation-operator" /guest-attestation-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /guest-attestation-operator /guest-attestation-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/guest-attestation-operator"]
