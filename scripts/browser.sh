#!/usr/bin/env bash
# Debian's Chromium for the browser tests and the screenshot scripts (Playwright drives
# /usr/bin/chromium; no browser is ever downloaded by Playwright). Idempotent: does nothing
# when it is already there. Called by `make test`.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "browser: /usr/bin/chromium is missing and apt-get is not available: the browser tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }; then
  echo "browser: installing chromium failed: the browser tests will be skipped" >&2
  exit 0
fi
test -x /usr/bin/chromium && echo "browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
