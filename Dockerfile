# Multi-stage build: compile with the Rust toolchain, run on a slim image as a
# non-root user with the state in the /data volume.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY templates templates
COPY static static
RUN cargo build --release --locked --bin kanmon

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin kanmon \
 && mkdir -p /data /etc/kanmon \
 && chown kanmon:kanmon /data && chmod 700 /data
COPY --from=build /src/target/release/kanmon /usr/local/bin/kanmon
# The example configuration, adapted to the container: state and certificates in the
# volume, listening on all interfaces. Mount your own file over it in production.
COPY config.example.yaml /etc/kanmon/config.yaml
RUN sed -i -e 's|^listen: .*|listen: 0.0.0.0:8443|' \
           -e 's|^data_dir: .*|data_dir: /data|' \
           -e 's|cert: certs/kanmon.crt|cert: /data/certs/kanmon.crt|' \
           -e 's|key: certs/kanmon.key|key: /data/certs/kanmon.key|' /etc/kanmon/config.yaml
ENV KANMON_CONFIG=/etc/kanmon/config.yaml
USER kanmon
VOLUME /data
EXPOSE 8443
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s CMD ["kanmon", "healthcheck"]
ENTRYPOINT ["kanmon"]
CMD ["serve"]
