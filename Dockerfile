# syntax=docker/dockerfile:1
# idsync: one binary on Debian. Build with `docker build -t idsync .`; run with a configuration
# file (IDSYNC_CONFIG) and/or IDSYNC_SECTION__KEY environment variables. No configuration and no
# secret is in the image: mount them or pass them in the environment at run time.

FROM rust:1-bookworm AS build
# The SAML crate binds libxml2 and xmlsec1 (bindgen needs libclang).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libclang-dev libxml2-dev libxmlsec1-dev pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY benches benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin idsync \
 && install -D target/release/idsync /out/idsync

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libxmlsec1 libxmlsec1-openssl libxml2 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/idsync --create-home --shell /usr/sbin/nologin idsync
COPY --from=build /out/idsync /usr/local/bin/idsync
USER idsync
WORKDIR /var/lib/idsync
# The embedded database by default; PostgreSQL with IDSYNC_DATABASE__URL.
ENV IDSYNC_DATABASE__URL=sqlite:///var/lib/idsync/idsync.db \
    IDSYNC_HTTP__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["idsync"]
CMD ["serve"]
