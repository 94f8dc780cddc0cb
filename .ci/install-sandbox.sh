#!/usr/bin/env bash
# Install the tools the local runtime's sandbox needs: bubblewrap (bwrap), socat, and util-linux's
# nsenter and setpriv. Idempotent: does nothing when they are all present. Installs from Debian
# packages when run as root with apt-get; otherwise prints how to install them and exits 1
# (the grader then refuses the local runtime unless --unsafe-local is given).
set -euo pipefail

missing=()
for tool in bwrap socat nsenter setpriv; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-sandbox: missing ${missing[*]}; install bubblewrap, socat and util-linux" \
       "(Debian/Ubuntu: sudo apt-get install bubblewrap socat util-linux; Fedora: sudo dnf install bubblewrap socat)" >&2
  exit 1
fi
echo "install-sandbox: installing bubblewrap socat util-linux from Debian ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends bubblewrap socat util-linux >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends bubblewrap socat util-linux >/dev/null
}
