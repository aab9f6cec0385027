#!/usr/bin/env bash
# Docker 26.1 for the tests: Debian trixie's `docker.io` (dockerd 26.1.x, API 1.45) and
# `containerd` (1.7.x), downloaded as .debs and UNPACKED (dpkg-deb -x) into a cache dir.
# Nothing is installed, and the system's apt sources, lists and state are never touched:
# apt runs with a private config (its own sources file naming the `trixie` suite, its own
# lists and archive cache) under the cache dir.
#
#   engine-26.sh fetch    download + unpack unless already there; prints the bin dir
#   engine-26.sh path     prints the bin dir if the cache is complete, else exits 1
#   engine-26.sh clean    deletes the cache dir
#
# The bin dir holds links to the unpacked dockerd, containerd, containerd-shim-runc-v2,
# docker-proxy and ctr, plus `runc` -> Debian 12's /usr/sbin/runc
# (trixie's runc needs glibc 2.38; bookworm has 2.36). engine.sh puts it first on PATH
# when BULKHEAD_ENGINE_VERSION=26.1. (Trixie ships the CLI in docker-cli, not docker.io;
# any docker CLI talks to any engine version, so the installed one is used.)
#
# Environment knobs:
#   BULKHEAD_ENGINE_CACHE   cache root (default /var/cache/bulkhead/engines); this
#                           version lives in $BULKHEAD_ENGINE_CACHE/26.1
#   BULKHEAD_ENGINE_MIRROR  Debian mirror URL (default: the first non-security URI of the
#                           system's deb822 sources, else http://deb.debian.org/debian)
#
# Concurrent callers (two test files starting a 26.1 engine at once) wait on one lock;
# the cache is complete only once the `.complete` stamp is written, so an interrupted
# fetch is redone, never half-used.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

WANT=26.1
CACHE_ROOT="${BULKHEAD_ENGINE_CACHE:-/var/cache/bulkhead/engines}"
DIR="$CACHE_ROOT/$WANT"
BIN="$DIR/bin"
STAMP="$DIR/.complete"

log() { printf 'engine-26.sh: %s\n' "$*" >&2; }
die() { printf 'engine-26.sh: error: %s\n' "$*" >&2; exit 1; }

complete() {
  [ -f "$STAMP" ] || return 1
  local b
  for b in dockerd containerd containerd-shim-runc-v2 runc; do
    [ -x "$BIN/$b" ] || return 1
  done
}

mirror() {
  if [ -n "${BULKHEAD_ENGINE_MIRROR:-}" ]; then echo "$BULKHEAD_ENGINE_MIRROR"; return; fi
  local m=''
  m="$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)"
  if [ -z "$m" ]; then
    m="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)"
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

do_fetch() {
  if complete; then echo "$BIN"; return 0; fi
  [ "$(id -u)" = 0 ] || die "fetching Docker $WANT needs root (apt-get download into $DIR)"
  command -v apt-get >/dev/null 2>&1 || die "apt-get is not available"
  command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is not available"
  [ -x /usr/sbin/runc ] || die "Debian 12's /usr/sbin/runc is missing (apt-get install runc, or docker.io)"
  [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || die "/usr/share/keyrings/debian-archive-keyring.gpg is missing (apt-get install debian-archive-keyring)"

  local t0=$SECONDS
  log "fetching Docker $WANT (trixie docker.io + containerd) into $DIR"
  rm -rf "$DIR"
  local A="$DIR/apt"
  mkdir -p "$A/etc/sources.list.d" "$A/etc/preferences.d" "$A/lists/partial" "$A/cache/archives/partial" "$DIR/debs" "$DIR/root" "$BIN"
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$(mirror)" >"$A/etc/sources.list.d/trixie.sources"
  # Every path apt reads or writes points under $A (or /dev/null): the system's
  # sources, lists, preferences and archive cache stay as they are.
  local -a APT=(
    -o Dir::Etc::SourceList=/dev/null
    -o Dir::Etc::SourceParts="$A/etc/sources.list.d"
    -o Dir::Etc::Preferences=/dev/null
    -o Dir::Etc::PreferencesParts="$A/etc/preferences.d"
    -o Dir::State::Lists="$A/lists"
    -o Dir::Cache="$A/cache"
    -o Dir::State::status=/var/lib/dpkg/status
    -o APT::Sandbox::User=root
    -o Acquire::Retries=3
    -o Debug::NoLocking=1
  )
  apt-get "${APT[@]}" -qq update >&2 || die "apt-get update of the private trixie lists failed"
  (cd "$DIR/debs" && apt-get "${APT[@]}" -qq download docker.io containerd >&2) || die "apt-get download docker.io containerd (trixie) failed"
  local d
  for d in "$DIR"/debs/*.deb; do dpkg-deb -x "$d" "$DIR/root"; done
  local R="$DIR/root/usr"
  for b in dockerd docker-proxy containerd containerd-shim-runc-v2 ctr; do
    local src=''
    for p in "$R/sbin/$b" "$R/bin/$b" "$R/libexec/docker/cli-plugins/$b"; do
      [ -x "$p" ] && { src="$p"; break; }
    done
    if [ -z "$src" ]; then
      case "$b" in
        docker-proxy | ctr) continue ;; # not needed (--userland-proxy=false)
        *) die "the unpacked packages have no $b" ;;
      esac
    fi
    ln -sf "$src" "$BIN/$b"
  done
  ln -sf /usr/sbin/runc "$BIN/runc"

  local v
  v="$("$BIN/dockerd" --version 2>&1)" || die "the unpacked dockerd does not run: $v"
  case "$v" in
    *"version $WANT."*) ;;
    *) die "unexpected dockerd version from trixie: $v (want $WANT.x)" ;;
  esac
  "$BIN/containerd" --version >/dev/null 2>&1 || die "the unpacked containerd does not run"
  rm -rf "$DIR/debs" "$A/cache/archives"
  echo "$v" >"$STAMP"
  log "Docker $WANT ready in $((SECONDS - t0))s: $v"
  echo "$BIN"
}

with_lock() {
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.$WANT.lock"
  flock -w 600 9 || die "timed out waiting for the lock $CACHE_ROOT/.$WANT.lock"
  "$@"
}

case "${1:-}" in
  fetch) with_lock do_fetch ;;
  path) complete || { log "Docker $WANT is not in $DIR (run: $0 fetch)"; exit 1; }; echo "$BIN" ;;
  clean) with_lock rm -rf "$DIR" ;;
  *) echo "usage: $0 fetch|path|clean" >&2; exit 2 ;;
esac
