# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, run on a slim Debian as a non-root user
# (see "ICMP privileges" in the README for what ICMP needs in a container).
#
# Without registry access (air-gapped, or CI), build the binary on the host and skip the
# toolchain stage:
#   cargo build --release && podman build --build-arg BINARY=prebuilt -t iocwatch .
ARG BINARY=build
ARG BASE=debian:bookworm-slim

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin iocwatch && cp target/release/iocwatch /iocwatch

FROM scratch AS prebuilt
COPY target/release/iocwatch /iocwatch

FROM ${BINARY} AS binary

FROM ${BASE}
COPY --from=binary /iocwatch /usr/bin/iocwatch
# No file capability on the binary: a binary with cap_net_raw+ep cannot even be executed
# where NET_RAW is not in the bounding set (--cap-drop ALL alone), and under
# no-new-privileges it grants nothing. ICMP uses a raw socket when the runtime gives the
# user NET_RAW (podman does with --cap-add NET_RAW), else the datagram ping socket that the
# net.ipv4.ping_group_range sysctl allows (compose.yaml and the Kubernetes manifest set it).
# CA certificates are fetched only when the base lacks them (a base made offline has them).
RUN if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update && apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --system --uid 10090 --no-create-home --shell /usr/sbin/nologin iocwatch \
 && mkdir -p /etc/iocwatch /var/lib/iocwatch && chown iocwatch /var/lib/iocwatch
COPY config /etc/iocwatch
USER iocwatch
# Resident memory stays flat under reloads with two glibc arenas (see deploy/iocwatch.service).
ENV MALLOC_ARENA_MAX=2
EXPOSE 10090
VOLUME ["/var/lib/iocwatch"]
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/bin/iocwatch", "probe", "http", "http://127.0.0.1:10090/-/healthy"]
ENTRYPOINT ["/usr/bin/iocwatch"]
CMD ["run", "--config.file=/etc/iocwatch/iocwatch.yaml", "--storage.path=/var/lib/iocwatch"]
