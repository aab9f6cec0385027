#!/usr/bin/env bash
# Installs a built Bulkhead checkout as the agent or the controller of this host (or of a
# throw-away root with --root): the code under /opt/bulkhead/<version> with a `current`
# symlink, the systemd unit, /etc/bulkhead/<role>.env and the state directory. Running it
# again changes nothing; --upgrade switches `current` to a new version; --remove undoes it.
# Usage: see usage() below and deploy/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install.sh agent|controller [options]

  --root DIR             install under DIR instead of / (never touches the running system)
  --from DIR             a built checkout (npm ci && npm run build); default: the repository
                         this script lives in
  --controller HOST:PORT[,HOST:PORT...] --token TOKEN --ca-fingerprint sha256:...
                         (agent) enroll once into the state directory; skipped when the
                         state directory already holds an identity; several
                         controller replicas comma-separated
  --upgrade              install a new version beside the installed one, switch `current`,
                         keep state and env, restart the unit
  --remove               remove the unit and /opt/bulkhead (kept while the other role's unit
                         is still installed); state and env stay
  --purge                with --remove: also delete the state directory and the env file
  -h, --help             this help

The version is the checkout's package.json "version" (BULKHEAD_INSTALL_VERSION overrides it,
e.g. for a test build). The unit is enabled and started only when the root is / and systemd
is PID 1; otherwise the commands are printed.
EOF
}

die() {
  echo "install.sh: $*" >&2
  exit 2
}

say() { echo "install.sh: $*"; }

# ---- arguments -------------------------------------------------------------------------------

[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in
  agent | controller) ROLE=$1 ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; die "first argument must be 'agent' or 'controller', not '$1'" ;;
esac
shift

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=/
FROM=$(cd "$SCRIPT_DIR/.." && pwd)
CONTROLLER='' TOKEN='' CA_FP=''
UPGRADE=0 REMOVE=0 PURGE=0

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --root) need_value "$@"; ROOT=$2; shift 2 ;;
    --from) need_value "$@"; FROM=$2; shift 2 ;;
    --controller) need_value "$@"; CONTROLLER=$2; shift 2 ;;
    --token) need_value "$@"; TOKEN=$2; shift 2 ;;
    --ca-fingerprint) need_value "$@"; CA_FP=$2; shift 2 ;;
    --upgrade) UPGRADE=1; shift ;;
    --remove) REMOVE=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

ENROLL=0
if [ -n "$CONTROLLER$TOKEN$CA_FP" ]; then
  [ "$ROLE" = agent ] || die "--controller/--token/--ca-fingerprint enroll an agent; they do not apply to the controller"
  [ -n "$CONTROLLER" ] && [ -n "$TOKEN" ] && [ -n "$CA_FP" ] || die "enrolling needs all of --controller, --token and --ca-fingerprint"
  [[ "$CA_FP" == sha256:* ]] || die "--ca-fingerprint must look like sha256:<hex> (from \`bulkhead-controller ca-fingerprint\`)"
  ENROLL=1
fi
[ "$PURGE" = 0 ] || [ "$REMOVE" = 1 ] || die "--purge only goes with --remove"
[ "$REMOVE" = 0 ] || { [ "$UPGRADE" = 0 ] && [ "$ENROLL" = 0 ]; } || die "--remove does not combine with --upgrade or enrolling"

[ -d "$ROOT" ] || die "--root $ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd)
# Every path below is $R/...; with ROOT=/ that is plain /...
R=${ROOT%/}

# The real system is touched (systemctl, useradd, chown) only for the root / under systemd.
LIVE=0
if [ "$ROOT" = / ] && [ -d /run/systemd/system ]; then LIVE=1; fi

# Runs a command that affects the running system, or prints it when it would.
live() {
  if [ "$LIVE" = 1 ]; then
    "$@"
  else
    echo "would run: $*"
  fi
}

UNIT=bulkhead-$ROLE.service
OTHER_UNIT=bulkhead-$([ "$ROLE" = agent ] && echo controller || echo agent).service
OPT=$R/opt/bulkhead
UNIT_PATH=$R/etc/systemd/system/$UNIT
ENV_PATH=$R/etc/bulkhead/$ROLE.env
# The units' StateDirectory= (and the CLIs' default --state-dir / --data-dir).
STATE_DIR=$R/var/lib/bulkhead-$ROLE

# ---- remove ----------------------------------------------------------------------------------

if [ "$REMOVE" = 1 ]; then
  if [ -e "$UNIT_PATH" ]; then
    live systemctl disable --now "$UNIT"
    rm -f "$UNIT_PATH"
    live systemctl daemon-reload
    say "removed $UNIT_PATH"
  fi
  if [ -e "$R/etc/systemd/system/$OTHER_UNIT" ]; then
    say "kept $OPT: $OTHER_UNIT still runs from it"
  elif [ -e "$OPT" ]; then
    rm -rf "$OPT"
    say "removed $OPT"
  fi
  if [ "$PURGE" = 1 ]; then
    rm -rf "$STATE_DIR" "$ENV_PATH"
    rmdir "$R/etc/bulkhead" 2>/dev/null || true
    say "purged $STATE_DIR and $ENV_PATH"
  else
    say "kept $STATE_DIR and $ENV_PATH (--purge deletes them)"
  fi
  exit 0
fi

# ---- the build to install --------------------------------------------------------------------

[ -d "$FROM" ] || die "--from $FROM is not a directory"
FROM=$(cd "$FROM" && pwd)
for f in package.json package-lock.json proto/bulkhead/v1 node_modules \
  packages/client/dist/index.js packages/shared/dist/index.js packages/agent/dist/cli/main.js \
  packages/controller/dist/cli/main.js packages/cli/dist/main.js; do
  [ -e "$FROM/$f" ] || die "$FROM is not a built checkout: $f is missing (run \`npm ci && npm run build\` there)"
done
command -v node >/dev/null || die "node is not installed (Node.js 22, 24 or 20.19+)"
command -v npm >/dev/null || die "npm is not installed (it prunes the dev dependencies)"

VERSION=${BULKHEAD_INSTALL_VERSION:-$(node -p 'require(process.argv[1]).version' "$FROM/package.json")}
[[ "$VERSION" =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]] || die "bad version '$VERSION'"
DEST=$OPT/$VERSION

CURRENT=''
[ -L "$OPT/current" ] && CURRENT=$(readlink "$OPT/current")
if [ -n "$CURRENT" ] && [ "$CURRENT" != "$VERSION" ] && [ "$UPGRADE" = 0 ]; then
  die "version $CURRENT is installed and this build is $VERSION: pass --upgrade to switch"
fi

# ---- code: /opt/bulkhead/<version> -----------------------------------------------------------

CHANGED=0
if [ ! -d "$DEST" ]; then
  # Staged beside the target and renamed at the end, so a failed run leaves no half version.
  # The workspace's node_modules (with the native better-sqlite3 build this checkout made) is
  # copied and pruned to production dependencies: no network, no compiler needed.
  STAGE=$OPT/.staging-$VERSION.$$
  trap 'rm -rf "$STAGE"' EXIT
  mkdir -p "$STAGE/packages"
  cp -a "$FROM/package.json" "$FROM/package-lock.json" "$FROM/proto" "$FROM/node_modules" "$STAGE/"
  [ -f "$FROM/LICENSE" ] && cp -a "$FROM/LICENSE" "$STAGE/"
  mkdir -p "$STAGE/deploy" && cp -a "$FROM/deploy/README.md" "$FROM/deploy/systemd" "$STAGE/deploy/"
  for p in client shared agent controller cli; do
    mkdir -p "$STAGE/packages/$p"
    cp -a "$FROM/packages/$p/package.json" "$FROM/packages/$p/dist" "$STAGE/packages/$p/"
    rm -f "$STAGE/packages/$p/dist/.tsbuildinfo"
  done
  if [ -n "${BULKHEAD_INSTALL_VERSION:-}" ]; then
    # Keep the installed tree self-describing when the version was overridden.
    node -e 'const f=process.argv[1],p=require(f);p.version=process.argv[2];require("fs").writeFileSync(f,JSON.stringify(p,null,2)+"\n")' \
      "$STAGE/package.json" "$VERSION"
  fi
  (cd "$STAGE" && npm prune --omit=dev --offline --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null) \
    || die "npm prune --omit=dev failed in $STAGE"
  chmod -R go-w "$STAGE"
  mv "$STAGE" "$DEST"
  trap - EXIT
  CHANGED=1
  say "installed $VERSION in $DEST"
fi
if [ "$CURRENT" != "$VERSION" ]; then
  ln -sfn "$VERSION" "$OPT/current.new" && mv -T "$OPT/current.new" "$OPT/current"
  CHANGED=1
  say "current -> $VERSION${CURRENT:+ (was $CURRENT)}"
fi

# ---- unit, env, state ------------------------------------------------------------------------

# The shipped unit runs /opt/bulkhead/packages/...; installed, it runs the `current` version.
UNIT_TEXT=$(sed 's#/opt/bulkhead/#/opt/bulkhead/current/#g' "$FROM/deploy/systemd/$UNIT")
if [ ! -f "$UNIT_PATH" ] || [ "$(cat "$UNIT_PATH")" != "$UNIT_TEXT" ]; then
  mkdir -p "$(dirname "$UNIT_PATH")"
  printf '%s\n' "$UNIT_TEXT" >"$UNIT_PATH.new"
  chmod 0644 "$UNIT_PATH.new"
  mv "$UNIT_PATH.new" "$UNIT_PATH"
  CHANGED=1
  say "wrote $UNIT_PATH"
fi

if [ ! -e "$ENV_PATH" ]; then
  mkdir -p "$(dirname "$ENV_PATH")"
  chmod 0755 "$(dirname "$ENV_PATH")"
  (umask 077 && printf '# Environment for %s (see deploy/README.md); KEY=value lines.\n' "$UNIT" >"$ENV_PATH")
  say "created $ENV_PATH (0600)"
fi

if [ "$ROLE" = controller ] && ! getent passwd bulkhead >/dev/null 2>&1; then
  live useradd --system --home-dir /var/lib/bulkhead-controller --shell /usr/sbin/nologin bulkhead
fi
if [ ! -d "$STATE_DIR" ]; then
  mkdir -p "$STATE_DIR"
  say "created $STATE_DIR (0700)"
fi
[ "$(stat -c %a "$STATE_DIR")" = 700 ] || chmod 0700 "$STATE_DIR"
if [ "$ROLE" = controller ]; then
  live chown bulkhead:bulkhead "$STATE_DIR"
fi

if [ "$ENROLL" = 1 ]; then
  if [ -e "$STATE_DIR/identity.json" ]; then
    say "$STATE_DIR already holds an agent identity: not enrolling again"
  else
    node "$DEST/packages/agent/dist/cli/main.js" enroll --controller "$CONTROLLER" --token "$TOKEN" \
      --ca-fingerprint "$CA_FP" --state-dir "$STATE_DIR" || die "enrolling with $CONTROLLER failed"
    CHANGED=1
  fi
fi

# ---- systemd ---------------------------------------------------------------------------------

if [ "$CHANGED" = 1 ]; then
  live systemctl daemon-reload
  if [ "$ROLE" = controller ] && [ ! -e "$STATE_DIR/ca.key" ] && [ -z "$(ls -A "$STATE_DIR" 2>/dev/null)" ]; then
    say "next: runuser -u bulkhead -- node /opt/bulkhead/current/packages/controller/dist/cli/main.js init --data-dir /var/lib/bulkhead-controller --san <names>"
  fi
  live systemctl enable "$UNIT"
  if [ "$UPGRADE" = 1 ]; then live systemctl restart "$UNIT"; else live systemctl start "$UNIT"; fi
else
  say "nothing to change ($UNIT, version $VERSION)"
fi
