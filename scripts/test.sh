#!/usr/bin/env bash
# THE test command (README, `npm test`, CI via .ci/run):
#
#   bash scripts/test.sh [tap args...]      e.g.  bash scripts/test.sh test/engine.test.ts
#
# 1. installs what the tests need when missing (as root, via apt-get): docker.io (dockerd,
#    containerd, runc, docker CLI; pulls in iptables), busybox-static (the test image),
#    systemd (systemd-analyze for the unit-file tests), prometheus (promtool, which checks the
#    metrics scrapes), postgresql (initdb/postgres under /usr/lib/postgresql/*/bin: the store
#    tests start private throw-away clusters on a unix socket, test/helpers/postgres.ts),
#    faketime (libfaketime: the clock-skew fault tests run the controller on a shifted clock)
#    and fetches the second engine version, Docker 26.1 (scripts/engine-26.sh: Debian trixie's
#    .debs unpacked into /var/cache/bulkhead/engines/26.1, reused when there; ~5-10 s the first
#    time). If that fails the run goes on, and the tests that need 26.1 FAIL with the reason
#    (BULKHEAD_TEST_ENGINE_26_ERROR) instead of each retrying the download.
# 2. `npm ci` when node_modules is missing or older than package-lock.json
# 3. `npm run build`                      (skip with BULKHEAD_SKIP_BUILD=1)
# 4. starts ONE shared private Docker engine (scripts/engine.sh) in /tmp/bk-test-XXXXXX and
#    exports BULKHEAD_TEST_DOCKER_HOST and DOCKER_HOST for the tests
# 5. runs `npx tap "$@"` (.taprc: test files, coverage gate, timeouts)
# 6. always stops the engine, and exits with tap's exit code
set -euo pipefail
# dockerd, runc and iptables live in sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export DEBIAN_FRONTEND=noninteractive

say() { printf '==> %s\n' "$*" >&2; }

# ---- 1. system packages -------------------------------------------------------------
pkgs=()
for b in dockerd containerd runc docker; do
  command -v "$b" >/dev/null 2>&1 || { pkgs+=(docker.io); break; }
done
if [ ! -x /bin/busybox ] || ! { ldd /bin/busybox 2>&1 || true; } | grep -q 'not a dynamic executable'; then
  pkgs+=(busybox-static)
fi
command -v iptables >/dev/null 2>&1 || pkgs+=(iptables)
command -v systemd-analyze >/dev/null 2>&1 || pkgs+=(systemd)
command -v promtool >/dev/null 2>&1 || pkgs+=(prometheus)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || pkgs+=(postgresql)
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || pkgs+=(faketime)
if [ "${#pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: missing ${pkgs[*]}; run as root or: sudo apt-get install ${pkgs[*]}" >&2
    exit 1
  fi
  say "apt-get install ${pkgs[*]}"
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${pkgs[@]}" >/dev/null
fi
command -v node >/dev/null 2>&1 || { echo "scripts/test.sh: node (>= 20.19) is required" >&2; exit 1; }

# The second engine version, once for the whole run (tests start their own 26.1 engines from it).
t26=$SECONDS
if out26="$(bash scripts/engine-26.sh fetch 2>&1)"; then
  say "Docker 26.1 ready in $((SECONDS - t26))s: ${out26##*$'\n'}"
else
  printf '%s\n' "$out26" >&2
  export BULKHEAD_TEST_ENGINE_26_ERROR="scripts/engine-26.sh fetch failed after $((SECONDS - t26))s: ${out26##*$'\n'}"
  say "WARNING: $BULKHEAD_TEST_ENGINE_26_ERROR; the tests that need Docker 26.1 will fail"
fi

# ---- 2. dependencies ----------------------------------------------------------------
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
fi

# ---- 3. build -----------------------------------------------------------------------
if [ "${BULKHEAD_SKIP_BUILD:-0}" != 1 ]; then
  say "npm run build"
  npm run build
fi

# ---- 4. one shared private engine -------------------------------------------------------
ENGINE_DIR="$(mktemp -d /tmp/bk-test-XXXXXX)"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  say "stopping the test engine in $ENGINE_DIR"
  if bash "$ROOT/scripts/engine.sh" stop "$ENGINE_DIR"; then
    rm -rf "$ENGINE_DIR"
  else
    echo "scripts/test.sh: WARNING: engine.sh stop $ENGINE_DIR failed; see $ENGINE_DIR/*.log" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting a private Docker engine in $ENGINE_DIR"
engine_out="$(bash scripts/engine.sh start "$ENGINE_DIR")"
last="${engine_out##*$'\n'}"
case "$last" in
  "export DOCKER_HOST=unix://$ENGINE_DIR/docker.sock") ;;
  *) echo "scripts/test.sh: unexpected output from engine.sh start: $engine_out" >&2; exit 1 ;;
esac
export DOCKER_HOST="unix://$ENGINE_DIR/docker.sock"
export BULKHEAD_TEST_DOCKER_HOST="$DOCKER_HOST"
say "BULKHEAD_TEST_DOCKER_HOST=$BULKHEAD_TEST_DOCKER_HOST"

# ---- 5. tap ---------------------------------------------------------------------------
set +e
if [ -t 1 ]; then
  npx tap "$@"
  rc=$?
else
  # Logs/CI: keep tap's output and add a plain "N passed, N failed" closing line from
  # tap's own final counts line (`# { total: 12, pass: 11, fail: 1 }`).
  npx tap "$@" 2>&1 | tee "$ENGINE_DIR/tap.out"
  rc=${PIPESTATUS[0]}
  counts="$(grep -E '^# \{ total: [0-9]+' "$ENGINE_DIR/tap.out" | tail -n1)"
  if [ -n "$counts" ]; then
    num() { sed -nE "s/.*[{ ]$1: ([0-9]+).*/\\1/p" <<<"$counts"; }
    pass="$(num pass)"; fail="$(num fail)"; skip="$(num skip)"
    line="tap: ${pass:-0} passed, ${fail:-0} failed"
    [ -n "$skip" ] && line="$line, $skip skipped"
    echo "$line"
  fi
fi
set -e
[ "$rc" = 0 ] || say "tap exited $rc"
exit "$rc"
