#!/usr/bin/env bash
# Build the root file system of the grader's stand-in for python:3.11-slim, as a tarball.
#
# No container registry is reachable on the machines this kit is built on, so the official image
# cannot be pulled. Debian bookworm ships Python 3.11, so a minimal bookworm with python3, venv,
# pip and CA certificates behaves like python:3.11-slim for ordinary Dockerfiles (FROM, COPY,
# RUN pip install ..., CMD). Only the Python's location differs: /usr/bin, not /usr/local/bin.
#
# Usage (root): build-rootfs.sh OUT.tar [MIRROR]
# Needs debootstrap (.ci/install-docker.sh installs it). Takes about 80 s; the caller caches OUT.
# The host's CA bundle is NOT baked in here: it is layered on at import time, so a changed host
# trust store does not need a new debootstrap.
set -euo pipefail

out=${1:?usage: build-rootfs.sh OUT.tar [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
suite=bookworm
packages=python3,python3-venv,python3-pip,ca-certificates,python-is-python3

command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "debootstrap needs root" >&2; exit 2; }

root=$(mktemp -d "${TMPDIR:-/tmp}/takehome-rootfs.XXXXXX")
# The rootfs holds device nodes and root-owned files: always remove it, even on failure.
trap 'rm -rf --one-file-system "$root"' EXIT

debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2

# pip installs system-wide in the official image; Debian's PEP 668 marker would refuse that.
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
# The same apt sources as a stock Debian image (updates and security), so `apt-get install` in a
# candidate's Dockerfile sees the same packages it would on python:3.11-slim.
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
SOURCES
# Smaller image: apt's downloaded packages and lists are not needed at run time.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
echo "takehome stand-in for python:3.11-slim, built $(date -u +%Y-%m-%dT%H:%M:%SZ) by debootstrap" \
  >"$root/etc/takehome-base-image"

tmp="$out.partial"
tar --numeric-owner --xattrs -C "$root" -cf "$tmp" .
mv -f "$tmp" "$out"  # atomic: a crashed build never leaves a truncated cache entry
echo "wrote $out ($(du -h "$out" | cut -f1))" >&2
