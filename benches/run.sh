#!/usr/bin/env bash
# Runs every benchmark and prints the figures: iocwatch's own hot paths at province scale,
# then iocwatch against fping, prometheus-smokeping-prober and prometheus-blackbox-exporter
# on loopback. Bounded: about three minutes. Needs root (raw ICMP for the peers).
set -euo pipefail
cd "$(dirname "$0")/.."
peers=(fping prometheus-blackbox-exporter prometheus-smokeping-prober)
missing=()
for p in "${peers[@]}"; do command -v "$p" >/dev/null || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts the peers as services on install; the benchmark runs its own copies.
systemctl stop prometheus-blackbox-exporter prometheus-smokeping-prober 2>/dev/null || true

cargo build --release --quiet
echo "== iocwatch hot paths (cargo bench --bench scale) =="
cargo bench --quiet --bench scale
echo
echo "== iocwatch and its peers (benches/compare.py) =="
python3 benches/compare.py "$@"
