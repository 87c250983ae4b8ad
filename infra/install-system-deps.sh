#!/usr/bin/env bash
# System packages the test suite needs: Debian's Chromium for the browser tests.
# Playwright drives it through executable_path; no browser is ever downloaded.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install Debian's chromium (apt-get install chromium) for the browser tests" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
