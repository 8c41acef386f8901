# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, run on a slim Debian as a non-root user
# whose only privilege is CAP_NET_RAW (a file capability on the binary, for ICMP).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin iocwatch

FROM debian:bookworm-slim
COPY --from=build /src/target/release/iocwatch /usr/bin/iocwatch
# The file capability is set in this stage: COPY does not carry extended attributes everywhere.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
 && setcap cap_net_raw+ep /usr/bin/iocwatch \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10090 --no-create-home --shell /usr/sbin/nologin iocwatch \
 && mkdir -p /etc/iocwatch /var/lib/iocwatch && chown iocwatch /var/lib/iocwatch
COPY config /etc/iocwatch
USER iocwatch
EXPOSE 10090
VOLUME ["/var/lib/iocwatch"]
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/bin/iocwatch", "probe", "http", "http://127.0.0.1:10090/-/healthy"]
ENTRYPOINT ["/usr/bin/iocwatch"]
CMD ["run", "--config.file=/etc/iocwatch/iocwatch.yaml", "--storage.path=/var/lib/iocwatch"]
