#!/usr/bin/env bash
# axe-core (the accessibility rules engine) from the npm registry, for the accessibility test
# (tests/test_accessibility.py injects .cache/axe/node_modules/axe-core/axe.min.js into pages
# opened in Debian's Chromium). Pinned; idempotent: does nothing when that version is there.
# Called by `make test`, which installs npm from Debian's packages where it is missing. Outside CI
# a machine without npm skips the accessibility test; under CI (CI=true) the test fails instead.
set -euo pipefail

VERSION=4.14.1
DIR=.cache/axe
if [ -f "$DIR/node_modules/axe-core/axe.min.js" ] &&
   grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/axe-core/package.json" 2>/dev/null; then
  exit 0
fi
if ! command -v npm >/dev/null && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq npm >/dev/null || true
fi
if ! command -v npm >/dev/null; then
  echo "axe: npm is missing (apt-get install npm): the accessibility test will be skipped" >&2
  exit 0
fi
mkdir -p "$DIR"
if ! npm install --prefix "$DIR" --no-save --no-audit --no-fund --silent "axe-core@$VERSION" >/dev/null; then
  echo "axe: installing axe-core $VERSION failed: the accessibility test will be skipped" >&2
  exit 0
fi
echo "axe: installed axe-core $VERSION in $DIR"
