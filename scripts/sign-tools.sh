#!/usr/bin/env bash
# Image-signing tools for the signature tests: a real registry, real signers, real verifiers.
#
#   sign-tools.sh fetch   make everything below available (cached); prints NAME=PATH lines
#   sign-tools.sh path    prints the NAME=PATH lines if everything is there, else exits 1
#   sign-tools.sh clean   deletes the cache dir (not the apt-installed skopeo)
#
# What it provides (the NAME=PATH lines, in this order):
#   COSIGN=…/bin/cosign            Debian trixie's cosign 2.5: runs as is (needs glibc >= 2.34)
#   SKOPEO_SIGSTORE=…/bin/skopeo   Debian trixie's skopeo 1.18: signs and verifies sigstore
#                                  signatures. It needs glibc 2.38 (Debian 12 has 2.36), so the
#                                  wrapper runs it through trixie's own ld-linux-x86-64.so.2
#                                  with --library-path pointing at trixie's unpacked libs.
#   SKOPEO=/usr/bin/skopeo         Debian 12's skopeo 1.9 (apt-get installed when missing):
#                                  plain copies only — Debian patched its sigstore code out
#                                  ("sigstore disabled").
#   REGISTRY=…/bin/docker-registry Debian 12's docker-registry (distribution 2.8.2).
#
# trixie's .debs and Debian 12's docker-registry .deb are downloaded with a PRIVATE apt config
# (own sources file, lists, archive cache under the cache dir; the system's sources, lists and
# state are never touched) and UNPACKED with dpkg-deb -x, not installed. docker-registry is
# unpacked rather than installed because its package starts a system-wide registry on
# 0.0.0.0:5000 from its postinst (init.d) wherever /usr/sbin/policy-rc.d does not forbid it;
# the tests only ever run their own, on 127.0.0.1 (scripts/registry.sh).
#
# Environment knobs:
#   BULKHEAD_SIGN_TOOLS_CACHE  cache dir (default /var/cache/bulkhead/sign-tools)
#   BULKHEAD_ENGINE_MIRROR     Debian mirror URL (as for scripts/engine-26.sh; default: the
#                              first non-security URI of the system's sources, else
#                              http://deb.debian.org/debian)
#
# Concurrent callers wait on one lock; the cache counts only once its `.complete` stamp is
# written, so an interrupted fetch is redone, never half-used. ~10-20 s the first time.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

DIR="${BULKHEAD_SIGN_TOOLS_CACHE:-/var/cache/bulkhead/sign-tools}"
BIN="$DIR/bin"
STAMP="$DIR/.complete"
# trixie packages: the two tools, plus the libraries skopeo 1.18 needs newer than Debian 12's
# (libc6 brings the loader; the rest are what its ELF NEEDED list resolves to on trixie).
TRIXIE_DEBS=(cosign skopeo libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0)
# Debian 12 packages unpacked the same way.
BOOKWORM_DEBS=(docker-registry/bookworm)

log() { printf 'sign-tools.sh: %s\n' "$*" >&2; }
die() { printf 'sign-tools.sh: error: %s\n' "$*" >&2; exit 1; }

print_paths() {
  echo "COSIGN=$BIN/cosign"
  echo "SKOPEO_SIGSTORE=$BIN/skopeo"
  echo "SKOPEO=/usr/bin/skopeo"
  echo "REGISTRY=$BIN/docker-registry"
}

complete() {
  [ -f "$STAMP" ] || return 1
  local b
  for b in cosign skopeo docker-registry; do
    [ -x "$BIN/$b" ] || return 1
  done
  [ -x /usr/bin/skopeo ]
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

# Debian 12's skopeo 1.9 from the system's own sources (a plain install: no service).
install_skopeo() {
  [ -x /usr/bin/skopeo ] && return 0
  log "installing Debian 12's skopeo (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq >&2 || die "apt-get update failed"
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq skopeo >/dev/null || die "apt-get install skopeo failed"
  [ -x /usr/bin/skopeo ] || die "/usr/bin/skopeo still missing after apt-get install skopeo"
}

do_fetch() {
  [ "$(id -u)" = 0 ] || { complete && { print_paths; return 0; }; die "fetching the signing tools needs root (apt-get into $DIR)"; }
  install_skopeo
  if complete; then print_paths; return 0; fi
  command -v apt-get >/dev/null 2>&1 || die "apt-get is not available"
  command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is not available"
  [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || die "/usr/share/keyrings/debian-archive-keyring.gpg is missing (apt-get install debian-archive-keyring)"

  local t0=$SECONDS
  log "fetching cosign + skopeo (Debian trixie) and docker-registry (Debian 12) into $DIR"
  rm -rf "$DIR"
  local A="$DIR/apt"
  mkdir -p "$A/etc/sources.list.d" "$A/etc/preferences.d" "$A/lists/partial" "$A/cache/archives/partial" "$DIR/debs" "$DIR/root" "$DIR/registry" "$BIN"
  printf 'Types: deb\nURIs: %s\nSuites: trixie bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$(mirror)" >"$A/etc/sources.list.d/sign-tools.sources"
  # Every path apt reads or writes points under $A (or /dev/null).
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
  apt-get "${APT[@]}" -qq update >&2 || die "apt-get update of the private trixie/bookworm lists failed"
  # `download NAME` takes the highest version (trixie's); NAME/bookworm pins Debian 12's.
  local -a trixie=()
  local p
  for p in "${TRIXIE_DEBS[@]}"; do trixie+=("$p/trixie"); done
  (cd "$DIR/debs" && apt-get "${APT[@]}" -qq download "${trixie[@]}" >&2) \
    || die "apt-get download ${TRIXIE_DEBS[*]} (trixie) failed"
  mkdir -p "$DIR/debs-bookworm"
  (cd "$DIR/debs-bookworm" && apt-get "${APT[@]}" -qq download "${BOOKWORM_DEBS[@]}" >&2) \
    || die "apt-get download ${BOOKWORM_DEBS[*]} failed"
  local d
  for d in "$DIR"/debs/*.deb; do dpkg-deb -x "$d" "$DIR/root"; done
  for d in "$DIR"/debs-bookworm/*.deb; do dpkg-deb -x "$d" "$DIR/registry"; done

  local R="$DIR/root" L="$DIR/root/usr/lib/x86_64-linux-gnu"
  [ -x "$R/usr/bin/cosign" ] || die "the unpacked cosign package has no usr/bin/cosign"
  [ -x "$R/usr/bin/skopeo" ] || die "the unpacked skopeo package has no usr/bin/skopeo"
  [ -x "$L/ld-linux-x86-64.so.2" ] || die "the unpacked libc6 has no $L/ld-linux-x86-64.so.2"
  [ -x "$DIR/registry/usr/bin/docker-registry" ] || die "the unpacked docker-registry package has no usr/bin/docker-registry"
  ln -sf "$R/usr/bin/cosign" "$BIN/cosign"
  ln -sf "$DIR/registry/usr/bin/docker-registry" "$BIN/docker-registry"
  # Only skopeo goes through trixie's loader: everything else keeps Debian 12's libc.
  printf '#!/bin/sh\n# trixie skopeo (needs glibc 2.38) through trixie'"'"'s own loader and libraries\nexec %s/ld-linux-x86-64.so.2 --library-path %s %s/usr/bin/skopeo "$@"\n' \
    "$L" "$L" "$R" >"$BIN/skopeo"
  chmod 755 "$BIN/skopeo"

  local v
  # Debian builds cosign without a version stamp (GitVersion: devel): the .deb says which it is.
  local cv
  cv="$(dpkg-deb -f "$DIR"/debs/cosign_*.deb Version)" || die "cannot read the cosign .deb's version"
  case "$cv" in 2.*) ;; *) die "unexpected cosign version from trixie: $cv (want 2.x)" ;; esac
  v="$("$BIN/cosign" version 2>&1)" || die "the unpacked cosign does not run: $v"
  v="$("$BIN/skopeo" --version 2>&1)" || die "the unpacked trixie skopeo does not run: $v"
  case "$v" in *"version 1."*) ;; *) die "unexpected trixie skopeo version: $v" ;; esac
  v="$("$BIN/docker-registry" --version 2>&1)" || die "the unpacked docker-registry does not run: $v"
  rm -rf "$DIR/debs" "$DIR/debs-bookworm" "$A"
  {
    echo "cosign $cv"
    "$BIN/skopeo" --version
    "$BIN/docker-registry" --version
  } >"$STAMP"
  log "ready in $((SECONDS - t0))s: $(tr '\n' ';' <"$STAMP")"
  print_paths
}

with_lock() {
  mkdir -p "$(dirname "$DIR")"
  exec 9>"$DIR.lock"
  flock -w 600 9 || die "timed out waiting for the lock $DIR.lock"
  "$@"
}

case "${1:-}" in
  fetch) with_lock do_fetch ;;
  path) complete || { log "the signing tools are not complete in $DIR (run: $0 fetch)"; exit 1; }; print_paths ;;
  clean) with_lock rm -rf "$DIR" ;;
  *) echo "usage: $0 fetch|path|clean" >&2; exit 2 ;;
esac
