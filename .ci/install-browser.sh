#!/usr/bin/env bash
# Install headless Chromium for the tests that open the HTML reports in a real browser
# (tests/browser.py). Idempotent: does nothing when chromium is present. Installs Debian's
# package when run as root with apt-get; otherwise prints how to install it and exits 1 (the
# browser tests then skip, saying so).
set -euo pipefail

for name in chromium chromium-browser google-chrome; do
  command -v "$name" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: no chromium; install it (Debian/Ubuntu: sudo apt-get install chromium)" >&2
  exit 1
fi
echo "install-browser: installing chromium from Debian ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
}
command -v chromium >/dev/null
