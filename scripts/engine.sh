#!/usr/bin/env bash
# Private Docker engine for Bulkhead's tests, quickstart and benchmarks.
#
#   engine.sh start  DIR   start (or reuse) an engine whose whole state lives in DIR;
#                          the last line on stdout is `export DOCKER_HOST=unix://DIR/docker.sock`
#   engine.sh stop   DIR   remove its containers, stop dockerd + containerd + shims,
#                          unmount everything under DIR, delete its state (keeps *.log)
#   engine.sh status DIR   exit 0 and print the DOCKER_HOST line if it answers, else exit 1
#
# It never touches the host's default engine (/var/run/docker.sock, /var/lib/docker).
#
# Every engine gets its OWN containerd (DIR/ctd), started here rather than by dockerd:
# dockerd 20.10 silently attaches to a system containerd whenever
# /run/containerd/containerd.sock exists, and then two private engines would share one
# containerd "moby" namespace. With an explicit containerd per DIR, any number of
# engines can run side by side and `stop` knows exactly which processes are its own.
#
# Layout of DIR (keep DIR short: unix socket paths are limited to 108 bytes):
#   docker.sock dockerd.pid dockerd.log daemon.json   dockerd
#   data/ exec/                                        dockerd --data-root / --exec-root
#   ctd/ containerd.pid containerd.log containerd.toml containerd (root, state, socket)
#
# Environment knobs:
#   BULKHEAD_ENGINE_TIMEOUT   seconds to wait for the engine to answer (default 30)
#   BULKHEAD_ENGINE_NO_IMAGES=1  skip importing the busybox test images
#   BULKHEAD_ENGINE_DOCKERD_ARGS extra dockerd flags (word-split), e.g.
#                             "--authorization-plugin=bulkhead-authz" for authz-plugin tests
#   BULKHEAD_ENGINE_NETNS     run containerd and dockerd in this existing network namespace
#                             (`ip netns add NAME`; for swarm mode, see test/e2e/authz-swarm*)
#   BULKHEAD_ENGINE_VERSION   which engine `start` runs (default 20.10):
#                             20.10  Debian 12's docker.io (dockerd 20.10, API 1.41), installed
#                                    with apt-get when missing
#                             26.1   Debian trixie's docker.io 26.1 (API 1.45) + containerd 1.7,
#                                    unpacked into a cache dir by scripts/engine-26.sh (fetched
#                                    on first use, ~5-10 s; see that script) and run with
#                                    Debian 12's runc
#                             The DIR remembers its version (DIR/engine-version); `start` on a
#                             DIR running another version fails instead of reusing it.
set -euo pipefail
# dockerd, runc and iptables live in sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="${BULKHEAD_ENGINE_VERSION:-20.10}"
case "$VERSION" in
  20.10 | 26.1) ;;
  *) printf 'engine.sh: error: BULKHEAD_ENGINE_VERSION=%s: supported are 20.10 and 26.1\n' "$VERSION" >&2; exit 2 ;;
esac

TEST_IMAGE=bulkhead-test/busybox:1
TEST_IMAGE_USER=bulkhead-test/busybox:user1000
TIMEOUT="${BULKHEAD_ENGINE_TIMEOUT:-30}"

log() { printf 'engine.sh: %s\n' "$*" >&2; }
die() { printf 'engine.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  echo "usage: $0 start|stop|status DIR" >&2
  exit 2
}

[ $# -eq 2 ] || usage
CMD="$1"
[ -n "$2" ] || usage
# Absolute, normalised path (DIR need not exist yet).
DIR="$(realpath -m -- "$2")"
case "$DIR" in
  / | /var/lib/docker | /var/lib/docker/* | /var/run | /run | /var/run/docker | /run/docker | /var/run/docker/* | /run/docker/*)
    die "refusing to use $DIR: that is (part of) the host's default engine" ;;
esac
# The longest socket is DIR/ctd/containerd.sock.ttrpc (DIR + 26 bytes) < 108.
if [ "${#DIR}" -gt 78 ]; then
  die "DIR is too long (${#DIR} > 78 chars): unix socket paths are limited to 108 bytes"
fi

SOCK="$DIR/docker.sock"
HOST="unix://$SOCK"
CTD_SOCK="$DIR/ctd/containerd.sock"

docker_cli() { docker -H "$HOST" "$@"; }

# pid from a pidfile if that process is alive AND its command line mentions DIR
# (so a stale pidfile whose pid got reused is never acted upon).
live_pid() {
  local f="$1" pid
  [ -s "$f" ] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  [ -n "$pid" ] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$DIR/" || return 1
  echo "$pid"
}

answers() { docker_cli version >/dev/null 2>&1; }

# pids of the engine processes (dockerd, containerd, shims, runc) whose command line
# mentions DIR/. Only these binaries are considered, so e.g. a `tail -f DIR/dockerd.log`
# in somebody's terminal is never touched.
pids_mentioning_dir() {
  local p cmd comm
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    { read -r comm <"/proc/$p/comm"; } 2>/dev/null || continue
    case "$comm" in
      dockerd | containerd | containerd-shim* | runc | docker-proxy) ;;
      *) continue ;;
    esac
    cmd="$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" || continue
    case "$cmd" in
      *" $DIR/"* | *"=$DIR/"*) echo "$p" ;;
    esac
  done
}

# All descendants of a pid, read from /proc (procps may not be installed).
descendants() {
  local parent="$1" f stat ppid pid
  local -a queue=("$parent")
  local -A children=()
  for f in /proc/[0-9]*/stat; do
    { read -r stat <"$f"; } 2>/dev/null || continue
    pid="${stat%% *}"
    stat="${stat##*) }"          # after "pid (comm) "
    read -r _ ppid _ <<<"$stat"
    children[$ppid]="${children[$ppid]:-} $pid"
  done
  while [ "${#queue[@]}" -gt 0 ]; do
    local cur="${queue[0]}"
    queue=("${queue[@]:1}")
    for pid in ${children[$cur]:-}; do
      echo "$pid"
      queue+=("$pid")
    done
  done
}

wait_gone() { # pid seconds
  local pid="$1" n=$(( $2 * 10 ))
  while [ "$n" -gt 0 ] && kill -0 "$pid" 2>/dev/null; do
    sleep 0.1
    n=$((n - 1))
  done
  ! kill -0 "$pid" 2>/dev/null
}

# Mount points at or below DIR, deepest first (mountinfo field 5, octal escapes decoded).
mounts_under_dir() {
  awk -v d="$DIR" '
    function unesc(s,   out, i, c) {
      out = ""
      for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\" && substr(s, i + 1, 3) ~ /^[0-7][0-7][0-7]$/) {
          out = out sprintf("%c", (substr(s, i + 1, 1) * 64) + (substr(s, i + 2, 1) * 8) + substr(s, i + 3, 1))
          i += 3
        } else out = out c
      }
      return out
    }
    { m = unesc($5); if (m == d || index(m, d "/") == 1) print length(m) "\t" m }
  ' /proc/self/mountinfo | sort -rn -k1,1 | cut -f2-
}

unmount_all() {
  local round m
  for round in 1 2 3 4 5; do
    local any=0
    while IFS= read -r m; do
      [ -n "$m" ] || continue
      any=1
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(mounts_under_dir)
    [ "$any" = 1 ] || return 0
  done
  [ -z "$(mounts_under_dir)" ]
}

# After a crash (dockerd/shim killed) runc never deleted the containers' cgroups.
# rmdir only removes *empty* cgroups, so this cannot disturb anything alive.
remove_stale_cgroups() {
  local c id d try
  [ -d "$DIR/data/containers" ] || return 0
  for c in "$DIR"/data/containers/*/; do
    id="$(basename "$c")"
    [ ${#id} -eq 64 ] || continue
    for try in 1 2 3; do
      local left=0
      for d in /sys/fs/cgroup/*/docker/"$id" /sys/fs/cgroup/docker/"$id"; do
        [ -d "$d" ] || continue
        rmdir "$d" 2>/dev/null || left=1
      done
      [ "$left" = 0 ] && break
      sleep 0.2
    done
  done
}

install_deps_if_missing() {
  local need=0
  for b in dockerd containerd runc docker; do
    command -v "$b" >/dev/null 2>&1 || need=1
  done
  # The test image needs a *static* busybox (Debian's plain `busybox` is dynamic).
  # (ldd exits 1 on a static binary; do not let pipefail turn that into "dynamic".)
  if [ ! -x /bin/busybox ] || ! { ldd /bin/busybox 2>&1 || true; } | grep -q 'not a dynamic executable'; then
    need=1
  fi
  [ "$need" = 1 ] || return 0
  [ "$(id -u)" = 0 ] || die "dockerd/containerd/runc/docker or a static /bin/busybox is missing and we are not root: apt-get install docker.io busybox-static iptables"
  command -v apt-get >/dev/null 2>&1 || die "dockerd or /bin/busybox missing and apt-get is not available"
  log "installing docker.io busybox-static iptables (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq docker.io busybox-static iptables >&2
  for b in dockerd containerd runc docker; do
    command -v "$b" >/dev/null 2>&1 || die "$b still missing after apt-get install"
  done
  [ -x /bin/busybox ] || die "/bin/busybox still missing after apt-get install"
}

fail_start() {
  local what="$1"
  {
    echo "engine.sh: error: $what"
    for f in containerd.log dockerd.log; do
      if [ -s "$DIR/$f" ]; then
        echo "---- last 30 lines of $DIR/$f ----"
        tail -n 30 "$DIR/$f"
      fi
    done
  } >&2
  do_stop >/dev/null 2>&1 || true
  exit 1
}

write_configs() {
  mkdir -p "$DIR/data" "$DIR/exec" "$DIR/ctd/root" "$DIR/ctd/state"
  chmod 711 "$DIR"
  # An explicit (empty) daemon.json so the host's /etc/docker/daemon.json is not applied.
  echo '{}' >"$DIR/daemon.json"
  cat >"$DIR/containerd.toml" <<EOF
version = 2
root = "$DIR/ctd/root"
state = "$DIR/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTD_SOCK"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
EOF
}

build_test_images() {
  local have1 have2 root
  have1=0; have2=0
  docker_cli image inspect "$TEST_IMAGE" >/dev/null 2>&1 && have1=1
  docker_cli image inspect "$TEST_IMAGE_USER" >/dev/null 2>&1 && have2=1
  [ "$have1$have2" = 11 ] && return 0
  root="$(mktemp -d "$DIR/rootfs.XXXXXX")"
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home/user" \
    "$root/proc" "$root/sys" "$root/dev" "$root/var/tmp"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  chown 1000:1000 "$root/home/user"
  cp /bin/busybox "$root/bin/busybox"
  local a
  # Every applet busybox has (sh sleep cat yes dd echo top ls id wget nc ...).
  for a in $("$root/bin/busybox" --list 2>/dev/null) sh sleep cat yes dd echo top ls id; do
    [ "$a" = busybox ] && continue
    [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
  local env='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  if [ "$have1" = 0 ]; then
    tar -C "$root" -c . | docker_cli import --change 'CMD ["sh"]' --change "$env" - "$TEST_IMAGE" >/dev/null \
      || { rm -rf "$root"; fail_start "docker import of $TEST_IMAGE failed"; }
  fi
  if [ "$have2" = 0 ]; then
    tar -C "$root" -c . | docker_cli import --change 'CMD ["sh"]' --change "$env" --change 'USER 1000' - "$TEST_IMAGE_USER" >/dev/null \
      || { rm -rf "$root"; fail_start "docker import of $TEST_IMAGE_USER failed"; }
  fi
  rm -rf "$root"
}

# Puts the binaries of $VERSION first on PATH (26.1: fetched into the cache when missing).
select_version() {
  case "$VERSION" in
    20.10) ;;
    26.1)
      local bin
      bin="$(bash "$SCRIPTS/engine-26.sh" fetch)" || die "Docker 26.1 is not available on this machine (scripts/engine-26.sh fetch failed; see above)"
      export PATH="$bin:$PATH"
      ;;
  esac
}

# The running server's version must be the one asked for (20.10.x / 26.1.x).
check_server_version() {
  local v
  v="$(docker_cli version --format '{{.Server.Version}}' 2>/dev/null)" || fail_start "cannot read the server version"
  case "$v" in
    "$VERSION".*) ;;
    *) fail_start "dockerd in $DIR is version $v, not $VERSION.x (PATH=$PATH)" ;;
  esac
}

do_start() {
  install_deps_if_missing
  [ "$(id -u)" = 0 ] || die "a private dockerd needs root"
  mkdir -p "$DIR"

  local dpid cpid
  if dpid="$(live_pid "$DIR/dockerd.pid")" && answers; then
    local running
    running="$(cat "$DIR/engine-version" 2>/dev/null || echo 20.10)"
    [ "$running" = "$VERSION" ] || die "the engine in $DIR runs Docker $running, not $VERSION; stop it first"
    log "engine in $DIR already running (dockerd pid $dpid)"
    [ "${BULKHEAD_ENGINE_NO_IMAGES:-0}" = 1 ] || build_test_images
    echo "export DOCKER_HOST=$HOST"
    return 0
  fi
  # Half-dead leftovers (crashed dockerd, stale pidfiles, mounts): clean them first.
  if live_pid "$DIR/dockerd.pid" >/dev/null || live_pid "$DIR/containerd.pid" >/dev/null \
     || [ -n "$(pids_mentioning_dir)" ] || [ -n "$(mounts_under_dir)" ]; then
    log "cleaning up a previous, unhealthy engine in $DIR"
    do_stop
  fi

  select_version
  local t0=$SECONDS
  write_configs
  echo "$VERSION" >"$DIR/engine-version"
  # As under systemd: the daemons' working directory is /, so a relative path that
  # dockerd resolves itself (a local volume's `device=etc`) means what it means on a host.
  cd /
  rm -f "$SOCK" "$CTD_SOCK" "$DIR/dockerd.pid" "$DIR/containerd.pid" 2>/dev/null \
    || die "cannot remove stale $SOCK / $CTD_SOCK / pidfiles in $DIR"

  # setsid: detach from the caller's session/process group (Ctrl-C or a test runner
  # killing its group must not half-kill the engine; `stop` is the only way down).
  # All stdio goes to files so callers that capture our stdout do not hang.
  # BULKHEAD_ENGINE_NETNS=NAME: containerd and dockerd (hence the shims and host-network
  # containers) run in that existing network namespace (`ip netns add NAME`), nothing else
  # changes (nsenter --net, not `ip netns exec`: that would give each daemon its own mount
  # namespace, and containerd would not see the rootfs dockerd mounts). For swarm mode,
  # whose docker_gwbridge and listeners must not touch the host's network.
  local inns=()
  [ -z "${BULKHEAD_ENGINE_NETNS:-}" ] || inns=(nsenter "--net=/run/netns/$BULKHEAD_ENGINE_NETNS")
  setsid "${inns[@]}" containerd --config "$DIR/containerd.toml" --log-level warn \
    9>&- </dev/null >>"$DIR/containerd.log" 2>&1 &
  cpid=$!
  echo "$cpid" >"$DIR/containerd.pid"

  local n=$((TIMEOUT * 10))
  until [ -S "$CTD_SOCK" ]; do
    kill -0 "$cpid" 2>/dev/null || fail_start "containerd exited during startup"
    n=$((n - 1))
    [ "$n" -gt 0 ] || fail_start "containerd did not create $CTD_SOCK within ${TIMEOUT}s"
    sleep 0.1
  done

  setsid "${inns[@]}" dockerd \
    --data-root "$DIR/data" \
    --exec-root "$DIR/exec" \
    --pidfile "$DIR/dockerd.pid" \
    --host "$HOST" \
    --containerd "$CTD_SOCK" \
    --config-file "$DIR/daemon.json" \
    --bridge=none --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false --userland-proxy=false \
    ${BULKHEAD_ENGINE_DOCKERD_ARGS:-} \
    9>&- </dev/null >>"$DIR/dockerd.log" 2>&1 &
  dpid=$!

  n=$((TIMEOUT * 10))
  until answers; do
    kill -0 "$dpid" 2>/dev/null || fail_start "dockerd exited during startup"
    n=$((n - 1))
    [ "$n" -gt 0 ] || fail_start "dockerd did not answer on $HOST within ${TIMEOUT}s"
    sleep 0.1
  done
  check_server_version
  log "Docker $VERSION engine up in $((SECONDS - t0))s (dockerd pid $dpid, containerd pid $cpid)"

  [ "${BULKHEAD_ENGINE_NO_IMAGES:-0}" = 1 ] || build_test_images
  echo "export DOCKER_HOST=$HOST"
}

do_stop() {
  local dpid cpid p
  if [ -S "$SOCK" ] && answers; then
    local ids
    ids="$(docker_cli ps -aq 2>/dev/null || true)"
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      timeout 60 docker -H "$HOST" rm -f $ids >/dev/null 2>&1 || log "warning: could not remove all containers"
    fi
    # User-defined networks leave their br-* interfaces on the host after dockerd
    # exits; enough of them exhaust the address pools of every later engine.
    timeout 30 docker -H "$HOST" network prune -f >/dev/null 2>&1 || log "warning: could not remove networks"
  fi

  if dpid="$(live_pid "$DIR/dockerd.pid")"; then
    kill -TERM "$dpid" 2>/dev/null || true
    wait_gone "$dpid" 20 || { log "dockerd $dpid did not stop, killing it"; kill -KILL "$dpid" 2>/dev/null || true; wait_gone "$dpid" 5 || true; }
  fi

  # Shims (containerd-shim-runc-v2 -address DIR/ctd/containerd.sock ...) outlive containerd
  # if a container survived; kill each one's container processes, then the shim.
  for p in $(pids_mentioning_dir); do
    case "$(cat "/proc/$p/comm" 2>/dev/null)" in
      containerd-shim*)
        # shellcheck disable=SC2046
        kill -KILL $(descendants "$p") 2>/dev/null || true
        ;;
    esac
  done

  if cpid="$(live_pid "$DIR/containerd.pid")"; then
    kill -TERM "$cpid" 2>/dev/null || true
    wait_gone "$cpid" 10 || { kill -KILL "$cpid" 2>/dev/null || true; wait_gone "$cpid" 5 || true; }
  fi

  # Anything else still naming DIR (shims, a dockerd whose pidfile was lost ...).
  local left
  left="$(pids_mentioning_dir)"
  if [ -n "$left" ]; then
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    for p in $left; do wait_gone "$p" 5 || true; done
  fi
  left="$(pids_mentioning_dir)"
  [ -z "$left" ] || die "processes still running for $DIR: $left"

  remove_stale_cgroups
  unmount_all || die "could not unmount everything under $DIR: $(mounts_under_dir | tr '\n' ' ')"

  # Delete state only when nothing is mounted below DIR any more (a bind mount of /
  # inside a container's rootfs must never be followed by rm -rf).
  if [ -d "$DIR" ] && [ -z "$(mounts_under_dir)" ]; then
    rm -rf --one-file-system "$DIR/data" "$DIR/exec" "$DIR/ctd" "$DIR"/rootfs.* \
      "$SOCK" "$DIR/dockerd.pid" "$DIR/containerd.pid" "$DIR/containerd.toml" "$DIR/daemon.json" "$DIR/engine-version"
  fi
  log "engine in $DIR stopped"
}

do_status() {
  local dpid
  if dpid="$(live_pid "$DIR/dockerd.pid")" && answers; then
    local cpid
    cpid="$(live_pid "$DIR/containerd.pid" || echo '?')"
    log "running: dockerd pid $dpid, containerd pid $cpid, data-root $DIR/data"
    echo "export DOCKER_HOST=$HOST"
    return 0
  fi
  log "not running in $DIR"
  return 1
}

with_lock() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 120 9 || die "timed out waiting for the lock on $DIR/.lock"
  "$@"
}

case "$CMD" in
  start) with_lock do_start ;;
  stop)
    if [ ! -d "$DIR" ]; then log "nothing in $DIR"; exit 0; fi
    with_lock do_stop ;;
  status) [ -d "$DIR" ] || { log "not running in $DIR"; exit 1; }; do_status ;;
  *) usage ;;
esac
