#!/usr/bin/env bash
# A private, throw-away image registry for tests: Debian 12's docker-registry (distribution
# 2.8.2, from scripts/sign-tools.sh) on 127.0.0.1 over HTTPS, with a test CA made for it.
#
#   registry.sh start DIR [PORT] [--htpasswd USER:PASS]
#       starts (or reuses) a registry whose whole state lives in DIR; PORT 0 or absent = any
#       free port (the registry binds 127.0.0.1:0 and we read the port it got from its log).
#       --htpasswd: basic auth for that one user (bcrypt htpasswd file, made with the system's
#       crypt(3) via perl — no apache2-utils needed). Manifest/blob DELETE is enabled.
#       The last stdout line is `export REGISTRY_ADDR=127.0.0.1:PORT`.
#   registry.sh stop DIR      stops it (SIGTERM, SIGKILL after 10 s); keeps DIR
#   registry.sh status DIR    exit 0 when it answers, else 1
#
# DIR after start:
#   ca.crt       the test CA (PEM): trust it with curl --cacert, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS
#   certs/ca.crt the same, alone in a dir: skopeo's --src-cert-dir/--dest-cert-dir (c/image reads
#                every *.crt there as a root, and refuses a *.key without a *.cert, so the
#                server's own key must not live there)
#   env          REGISTRY_ADDR, REGISTRY_CA, REGISTRY_CERT_DIR, REGISTRY_PID and, with
#                --htpasswd, REGISTRY_USER / REGISTRY_PASSWORD (shell syntax, sourceable)
#   tls/         CA key, server key + certificate (SAN IP:127.0.0.1, DNS:localhost), 2 days
#   config.yml registry.log registry.pid data/
#
# The certificate names 127.0.0.1, so clients must address it as 127.0.0.1:PORT. Nothing here
# listens beyond loopback, and nothing is written outside DIR.
set -euo pipefail
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TIMEOUT="${BULKHEAD_REGISTRY_TIMEOUT:-20}"

log() { printf 'registry.sh: %s\n' "$*" >&2; }
die() { printf 'registry.sh: error: %s\n' "$*" >&2; exit 1; }
usage() {
  echo "usage: $0 start DIR [PORT] [--htpasswd USER:PASS] | stop DIR | status DIR" >&2
  exit 2
}

[ $# -ge 2 ] || usage
CMD="$1"
[ -n "$2" ] || usage
DIR="$(realpath -m -- "$2")"
shift 2
[ "$DIR" != / ] || die "refusing DIR=/"

PORT=0
HTPASSWD=''
while [ $# -gt 0 ]; do
  case "$1" in
    --htpasswd) [ $# -ge 2 ] || usage; HTPASSWD="$2"; shift 2 ;;
    --htpasswd=*) HTPASSWD="${1#--htpasswd=}"; shift ;;
    [0-9]*) PORT="$1"; shift ;;
    *) usage ;;
  esac
done
case "$PORT" in *[!0-9]*) die "PORT must be a number, not '$PORT'" ;; esac
[ "$PORT" -le 65535 ] || die "PORT $PORT is out of range"
if [ -n "$HTPASSWD" ]; then
  case "$HTPASSWD" in
    *:*) ;;
    *) die "--htpasswd wants USER:PASS" ;;
  esac
  H_USER="${HTPASSWD%%:*}"
  H_PASS="${HTPASSWD#*:}"
  [ -n "$H_USER" ] && [ -n "$H_PASS" ] || die "--htpasswd wants a non-empty USER and PASS"
  case "$H_USER" in *[!A-Za-z0-9._-]*) die "--htpasswd USER may only hold A-Z a-z 0-9 . _ -" ;; esac
fi

# pid from DIR/registry.pid if that process is alive and runs with DIR's config
# (a stale pidfile whose pid got reused is never acted upon).
live_pid() {
  local pid
  [ -s "$DIR/registry.pid" ] || return 1
  pid="$(tr -dc '0-9' <"$DIR/registry.pid")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$DIR/config.yml" || return 1
  echo "$pid"
}

addr_from_env() { sed -n 's/^REGISTRY_ADDR=//p' "$DIR/env" 2>/dev/null; }

answers() { # ADDR: /v2/ answers 200 (open) or 401 (basic auth) over TLS with our CA
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$DIR/ca.crt" "https://$1/v2/" 2>/dev/null)" || return 1
  [ "$code" = 200 ] || [ "$code" = 401 ]
}

make_tls() {
  local T="$DIR/tls"
  mkdir -p "$T" "$DIR/certs"
  chmod 700 "$T"
  # EC P-256 CA + server certificate; -days 2: throw-away. openssl's own errors go to stderr.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$T/ca.key" -out "$T/ca.crt" -days 2 -subj "/CN=bulkhead-test-registry-ca" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>"$T/openssl.log" \
    || { cat "$T/openssl.log" >&2; die "openssl could not make the test CA"; }
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$T/server.key" -out "$T/server.csr" -subj "/CN=127.0.0.1" 2>>"$T/openssl.log" \
    || { cat "$T/openssl.log" >&2; die "openssl could not make the server key"; }
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$T/server.ext"
  openssl x509 -req -in "$T/server.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial \
    -out "$T/server.crt" -days 2 -extfile "$T/server.ext" 2>>"$T/openssl.log" \
    || { cat "$T/openssl.log" >&2; die "openssl could not sign the server certificate"; }
  cp "$T/ca.crt" "$DIR/ca.crt"
  cp "$T/ca.crt" "$DIR/certs/ca.crt"
}

# bcrypt ($2b$, cost 10) through crypt(3): Debian's libcrypt (libxcrypt) does bcrypt, and perl
# is essential on Debian. The registry's Go bcrypt reads $2a$/$2b$/$2y$ alike.
bcrypt() {
  H_PASS="$1" perl -e '
    open(my $r, "<", "/dev/urandom") or die "/dev/urandom: $!\n";
    read($r, my $b, 22) == 22 or die "short read from /dev/urandom\n";
    my @abc = split //, "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    my @r = map { ord } split //, $b;
    # 22 salt chars; only the top 2 bits of the last count, so it is one of . O e u (canonical).
    my $salt = join("", map { $abc[$_ % 64] } @r[0 .. 20]) . (".", "O", "e", "u")[$r[21] % 4];
    my $h = crypt($ENV{H_PASS}, "\$2b\$10\$" . $salt);
    die "crypt(3) does no bcrypt here\n" unless defined $h && $h =~ /^\$2b\$10\$.{53}$/;
    print $h;'
}

do_start() {
  local pid addr
  if pid="$(live_pid)" && addr="$(addr_from_env)" && [ -n "$addr" ] && answers "$addr"; then
    log "registry in $DIR already running (pid $pid) on $addr"
    echo "export REGISTRY_ADDR=$addr"
    return 0
  fi
  if pid="$(live_pid)"; then
    log "stopping an unhealthy registry in $DIR (pid $pid)"
    do_stop
  fi
  command -v openssl >/dev/null 2>&1 || die "openssl is missing (apt-get install openssl)"
  command -v curl >/dev/null 2>&1 || die "curl is missing (apt-get install curl)"
  local tools bin
  tools="$(bash "$SCRIPTS/sign-tools.sh" path 2>/dev/null || bash "$SCRIPTS/sign-tools.sh" fetch)" \
    || die "docker-registry is not available (scripts/sign-tools.sh fetch failed; see above)"
  bin="$(sed -n 's/^REGISTRY=//p' <<<"$tools")"
  [ -x "$bin" ] || die "no docker-registry binary at '$bin'"

  mkdir -p "$DIR/data"
  rm -f "$DIR/env" "$DIR/registry.pid"
  make_tls
  local auth=''
  if [ -n "$HTPASSWD" ]; then
    printf '%s:%s\n' "$H_USER" "$(bcrypt "$H_PASS")" >"$DIR/htpasswd"
    chmod 600 "$DIR/htpasswd"
    auth="auth:
  htpasswd:
    realm: bulkhead-test-registry
    path: $DIR/htpasswd"
  fi
  cat >"$DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$PORT
  secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  tls:
    certificate: $DIR/tls/server.crt
    key: $DIR/tls/server.key
$auth
EOF
  : >"$DIR/registry.log"
  # setsid: a test runner killing its process group must not half-kill the registry;
  # `stop` is the way down. All stdio to files so callers capturing stdout do not hang.
  (cd / && exec setsid "$bin" serve "$DIR/config.yml" 9>&- </dev/null >>"$DIR/registry.log" 2>&1) &
  pid=$!
  echo "$pid" >"$DIR/registry.pid"

  # The port it bound: PORT, or (PORT 0) the one in its "listening on 127.0.0.1:N, tls" line.
  local n=$((TIMEOUT * 10)) line
  addr=''
  while :; do
    alive "$pid" || { tail -n 20 "$DIR/registry.log" >&2; die "docker-registry exited during start-up"; }
    if [ -z "$addr" ]; then
      line="$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$DIR/registry.log" | head -n1 || true)"
      [ -n "$line" ] && addr="${line#listening on }"
    fi
    [ -n "$addr" ] && answers "$addr" && break
    n=$((n - 1))
    if [ "$n" -le 0 ]; then
      tail -n 20 "$DIR/registry.log" >&2
      kill "$pid" 2>/dev/null || true
      die "docker-registry did not answer within ${TIMEOUT}s"
    fi
    sleep 0.1
  done
  {
    echo "REGISTRY_ADDR=$addr"
    echo "REGISTRY_CA=$DIR/ca.crt"
    echo "REGISTRY_CERT_DIR=$DIR/certs"
    echo "REGISTRY_PID=$pid"
    if [ -n "$HTPASSWD" ]; then
      printf 'REGISTRY_USER=%q\nREGISTRY_PASSWORD=%q\n' "$H_USER" "$H_PASS"
    fi
  } >"$DIR/env"
  log "docker-registry (pid $pid) serving https://$addr (CA $DIR/ca.crt)"
  echo "export REGISTRY_ADDR=$addr"
}

# Alive = exists and is not a zombie (the registry is re-parented to PID 1 once `start`
# returns; until PID 1 reaps it, kill -0 still succeeds on the dead process).
alive() {
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st="$(sed -n 's/^[0-9]* ([^)]*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

do_stop() {
  local pid n
  pid="$(live_pid)" || { rm -f "$DIR/registry.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  n=100
  while [ "$n" -gt 0 ] && alive "$pid"; do sleep 0.1; n=$((n - 1)); done
  if alive "$pid"; then
    log "registry pid $pid ignored SIGTERM for 10 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    n=50
    while [ "$n" -gt 0 ] && alive "$pid"; do sleep 0.1; n=$((n - 1)); done
    alive "$pid" && die "registry pid $pid did not die"
  fi
  rm -f "$DIR/registry.pid"
}

do_status() {
  local addr
  live_pid >/dev/null && addr="$(addr_from_env)" && [ -n "$addr" ] && answers "$addr" || return 1
  echo "export REGISTRY_ADDR=$addr"
}

case "$CMD" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  *) usage ;;
esac
