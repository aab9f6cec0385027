#!/usr/bin/env bash
# `npm run bench`: builds, starts a private dockerd, runs every benchmark in
# bench/, stops the engine. Results go to bench/results/*.json; BENCHMARKS.md
# explains the method and records the figures.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
if [ ! -f node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi
[ "${BULKHEAD_SKIP_BUILD:-0}" = 1 ] || npm run build --silent
ENGINE_DIR="$(mktemp -d /tmp/bk-bench-XXXXXX)"
trap 'bash "$ROOT/scripts/engine.sh" stop "$ENGINE_DIR" >/dev/null 2>&1 || true; rm -rf "$ENGINE_DIR"' EXIT
out="$(bash scripts/engine.sh start "$ENGINE_DIR")"
export DOCKER_HOST="${out##*DOCKER_HOST=}"
for b in bench/*.js; do
  echo "==> $b" >&2
  node "$b"
done
