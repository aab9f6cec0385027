#!/usr/bin/env bash
# The README's first command: set up and run Bulkhead on this machine.
#
#   controller (embedded SQLite)  <-- mTLS gRPC --  agent  --> Docker engine
#
# Uses the engine at $DOCKER_HOST or /var/run/docker.sock when one answers;
# otherwise starts a private engine under .bulkhead/engine (nothing is pulled).
# Everything lives under .bulkhead/ in the repo; Ctrl-C stops what it started.
# Re-running reuses the existing controller data and agent identity.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${BULKHEAD_QUICKSTART_DIR:-$ROOT/.bulkhead}
GRPC=${BULKHEAD_GRPC_LISTEN:-127.0.0.1:7443}
API=${BULKHEAD_API_LISTEN:-127.0.0.1:8443}
mkdir -p "$STATE" && chmod 700 "$STATE"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_apt=()
command -v docker >/dev/null || need_apt+=(docker.io)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]} from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "installing npm dependencies"
  npm ci --no-audit --no-fund
fi
log "building"
npm run build --silent

PIDS=()
STARTED_ENGINE=""
cleanup() {
  trap - EXIT INT TERM
  log "stopping"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n $STARTED_ENGINE ]]; then bash scripts/engine.sh stop "$STATE/engine" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
# Ctrl-C: stop everything and exit here (not fall through to "a component exited").
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

engine_ok() { docker -H "$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if [[ -n ${DOCKER_HOST:-} ]] && engine_ok "$DOCKER_HOST"; then
  ENGINE=$DOCKER_HOST
elif [[ -S /var/run/docker.sock ]] && engine_ok unix:///var/run/docker.sock; then
  ENGINE=unix:///var/run/docker.sock
else
  log "no Docker engine answers; starting a private one under $STATE/engine"
  ENGINE=$(bash scripts/engine.sh start "$STATE/engine" | tail -n1 | sed -e 's/^export DOCKER_HOST=//')
  STARTED_ENGINE=1
fi
log "Docker engine: $ENGINE"

CTL=(node packages/controller/dist/cli/main.js)
# Same node flags as deploy/systemd/bulkhead-agent.service (see the comment there).
AGENT=(env MALLOC_ARENA_MAX=2 node --max-semi-space-size=1 --v8-pool-size=1 --no-maglev --expose-gc packages/agent/dist/cli/main.js)
OPS=(node packages/cli/dist/main.js)

if [[ ! -f $STATE/controller/ca.key ]]; then
  log "initializing the controller in $STATE/controller"
  "${CTL[@]}" init --data-dir "$STATE/controller"
fi

log "starting the controller (agents: $GRPC, API: https://$API) — log: $STATE/controller.log"
"${CTL[@]}" serve --data-dir "$STATE/controller" --grpc-listen "$GRPC" --api-listen "$API" >>"$STATE/controller.log" 2>&1 &
PIDS+=($!)
export BULKHEAD_API="https://$API" BULKHEAD_CA="$STATE/controller/ca.crt"
BULKHEAD_API_KEY=$(head -n1 "$STATE/controller/admin.apikey")
export BULKHEAD_API_KEY
for _ in $(seq 1 100); do
  if curl -sf --cacert "$BULKHEAD_CA" "$BULKHEAD_API/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "${PIDS[0]}" 2>/dev/null || { tail -n 20 "$STATE/controller.log" >&2; exit 1; }
  sleep 0.1
done

if [[ ! -f $STATE/agent/identity.json ]]; then
  log "enrolling the agent with a one-time join token"
  TOKEN=$("${CTL[@]}" token create --data-dir "$STATE/controller" --ttl 5m 2>/dev/null)
  FP=$("${CTL[@]}" ca-fingerprint --data-dir "$STATE/controller")
  "${AGENT[@]}" enroll --controller "$GRPC" --token "$TOKEN" --ca-fingerprint "$FP" --state-dir "$STATE/agent"
fi

log "starting the agent — log: $STATE/agent.log"
"${AGENT[@]}" run --state-dir "$STATE/agent" --docker-host "$ENGINE" --controller "$GRPC" >>"$STATE/agent.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 1 100); do
  if "${OPS[@]}" agents --json 2>/dev/null | grep -q '"online"'; then break; fi
  sleep 0.2
done
"${OPS[@]}" agents
"${OPS[@]}" containers

cat >&2 <<EOF

Bulkhead is running. In another shell:
  export BULKHEAD_API=$BULKHEAD_API BULKHEAD_CA=$BULKHEAD_CA
  export BULKHEAD_API_KEY=\$(cat $STATE/controller/admin.apikey)
  export DOCKER_HOST=$ENGINE
  node packages/cli/dist/main.js agents
  node packages/cli/dist/main.js containers
  docker run -d --network none --name demo bulkhead-test/busybox:1 sleep 600   # (private engine image)
Press Ctrl-C to stop.
EOF
wait -n "${PIDS[@]}" || true
log "a component exited; see $STATE/controller.log and $STATE/agent.log"
