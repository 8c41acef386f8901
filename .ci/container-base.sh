#!/usr/bin/env bash
# Makes the local base image the container test builds on (no image registry is reachable
# here): a minimal Debian 12 from the Debian mirror, with the CA certificates the Dockerfile's
# runtime stage would otherwise fetch, so that the image builds with no network at all.
# Idempotent: an existing image is kept.
set -euo pipefail
image=localhost/debian:bookworm-slim
P=(podman --runtime runc --cgroup-manager=cgroupfs)
if "${P[@]}" image exists "$image"; then
  exit 0
fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "${P[@]}" import - "$image" >/dev/null
