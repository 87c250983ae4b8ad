#!/usr/bin/env bash
# System packages the tests and benchmarks need, from Debian: chromium for the browser tests
# (Playwright drives it through executable_path; no browser is ever downloaded), wrk, the
# load tool of `rankloop bench api`, and curl and jq, which the Quickstart's API example uses
# (tests/test_docs.py runs it).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install Debian's ${missing[*]} (apt-get install ${missing[*]}) for the browser tests, benchmarks and docs" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
