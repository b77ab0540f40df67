# aether-dbhub: multi-stage build → distroless, non-root (uid 65532).
# The Rust version matches rust-toolchain.toml (a test keeps them in step).
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY operator operator
COPY src src
COPY migrations migrations
COPY openapi openapi
COPY assets assets
RUN cargo build --release --locked --bin aether-dbhub

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/aether-dbhub /usr/local/bin/aether-dbhub
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/aether-dbhub"]
CMD ["serve"]
