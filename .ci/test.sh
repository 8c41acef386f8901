#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). Installs what the tests need on a
# fresh Debian 12 machine, then checks formatting and lints and runs every test.
# ICMP and network-namespace tests need root (or CAP_NET_RAW + CAP_NET_ADMIN); in CI they
# run and never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: ip (network namespaces for test hosts), kill (signals),
# openssl (a TLS 1.0-only server), chromium (renders the status page and prints reports to
# PDF), poppler-utils (reads the PDF's text), promtool, amtool and systemd-analyze (check deploy/),
# prometheus (scrapes a test agent and evaluates every dashboard and rule query),
# prometheus-alertmanager (receives the agent's alerts), python3-aiosmtpd (an SMTP server
# for the e-mail notifier), dbus + python3-dbusmock (a session bus with a notification
# server for desktop notifications), mount + util-linux + e2fsprogs (the fault suite's
# tmpfs that fills up and ext4 image that turns read-only; python3 holds a database lock
# and answers ICMP in a test host), curl (reads a namespaced agent's metrics), podman + runc +
# debootstrap (the container image test, on a base image made from the Debian mirror).
packages=(iproute2 procps ca-certificates openssl chromium poppler-utils prometheus prometheus-alertmanager systemd
  python3 python3-aiosmtpd dbus python3-dbusmock mount util-linux e2fsprogs curl podman runc debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# cargo-deb packs the Debian package the tests inspect (pinned: its flags change over time).
if ! cargo deb --version >/dev/null 2>&1; then
  cargo install cargo-deb --version 3.8.0 --locked --quiet
fi
# cargo-deny checks what enters the build (deny.toml says why advisories are not checked here).
if ! cargo deny --version >/dev/null 2>&1; then
  cargo install cargo-deny --version 0.20.2 --locked --quiet
fi

# The local base image tests/container.rs builds on (no image registry is reachable).
.ci/container-base.sh

cargo fmt --all -- --check
cargo clippy --all-targets --all-features --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked -q
cargo deny --locked check licenses bans sources
cargo test --all-features --locked
# The default build (what `cargo run --release`, the .deb and the image ship) with the
# desktop notifier, against a real session bus.
cargo test --locked --test desktop
