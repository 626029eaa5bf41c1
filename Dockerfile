# trainyard node image: docker build -t trainyard .   (docker-compose.yml uses it)
# Configure with a mounted file (/etc/trainyard/node.toml) and TRAINYARD_<SECTION>__<KEY>
# environment variables, which override the file.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin trainyard \
    && cp target/release/trainyard /usr/local/bin/trainyard

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/trainyard --create-home trainyard
COPY --from=build /usr/local/bin/trainyard /usr/local/bin/trainyard
USER trainyard
WORKDIR /var/lib/trainyard
# The cluster port and the HTTP API, on every address of the container (the node then
# advertises its host name to its peers).
ENV TRAINYARD_NODE__LISTEN=0.0.0.0:4700 \
    TRAINYARD_HTTP__LISTEN=0.0.0.0:5000
EXPOSE 4700 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:5000/healthz || exit 1
ENTRYPOINT ["trainyard"]
CMD ["node", "--config", "/etc/trainyard/node.toml"]
