#!/usr/bin/env bash
# CI step for scanning at the registry: scan a pushed image with Trivy and upload the report to
# the Bulkhead controller (POST /v1/scans), so the first `docker create` of that digest on any
# host is judged with its scan on record. Run it after every push, and on a schedule to keep
# reports younger than the `not-scanned` rule's maxAgeDays, with an upload-only key (one limited to
# the scans.upload action: a key leaked from CI can do nothing else). docs/policy.md#scanning-at-the-registry
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scan-and-upload.sh IMAGE [-- TRIVY-ARGS...]

  IMAGE        the pushed image, by tag or digest: registry.example.com/shop/web:v1.4.2
               (scan the registry's ref, not a local build, so the report names the repo
               digest the hosts will run)
  TRIVY-ARGS   passed to `trivy image` after the defaults (e.g. --skip-db-update, --offline-scan)

Environment:
  BULKHEAD_CONTROLLER  controller API base URL, e.g. https://ctl.example.com:8443 (required)
  BULKHEAD_API_KEY     an upload-only API key (bk_…): operator role, limited to the scans.upload
                       action, so it can upload reports and nothing else (403 on every other
                       route). Mint it once with (required)
                         bulkhead keys create ci-scan-upload --role operator --only scans.upload --expires 365d
  BULKHEAD_CA          CA certificate of the controller's API
                       (default: /var/lib/bulkhead-controller/ca.crt when it exists, else the
                       system trust store)
  TRIVY                the trivy executable (default: trivy on PATH)
  TRIVY_TIMEOUT        trivy's --timeout (default 10m)

Exit status: 0 uploaded; 1 the scan or the upload failed; 2 usage; 3 trivy is not installed.
USAGE
}

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  usage >&2
  [[ $# -ge 1 ]] && exit 0
  exit 2
fi
image=$1
shift
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi

die() { echo "scan-and-upload: $1" >&2; exit "${2:-1}"; }

[[ -n "${BULKHEAD_CONTROLLER:-}" ]] || die "set BULKHEAD_CONTROLLER to the controller's API URL (https://host:8443)" 2
[[ -n "${BULKHEAD_API_KEY:-}" ]] || die "set BULKHEAD_API_KEY to an upload-only API key (bulkhead keys create ci-scan-upload --role operator --only scans.upload)" 2

trivy=${TRIVY:-trivy}
if ! command -v "$trivy" >/dev/null 2>&1; then
  die "trivy is not installed (looked for \"$trivy\"): install it (https://trivy.dev/latest/getting-started/installation/) or set TRIVY to its path" 3
fi
command -v curl >/dev/null 2>&1 || die "curl is not installed" 1

ca=${BULKHEAD_CA:-}
if [[ -z "$ca" && -r /var/lib/bulkhead-controller/ca.crt ]]; then ca=/var/lib/bulkhead-controller/ca.crt; fi
ca_args=()
if [[ -n "$ca" ]]; then
  [[ -r "$ca" ]] || die "BULKHEAD_CA $ca is not readable" 2
  ca_args=(--cacert "$ca")
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
report=$work/report.json

echo "scan-and-upload: scanning $image" >&2
if ! "$trivy" image --quiet --format json --timeout "${TRIVY_TIMEOUT:-10m}" --output "$report" "$@" "$image"; then
  die "trivy failed to scan $image" 1
fi
[[ -s "$report" ]] || die "trivy wrote no report for $image" 1

# The key goes to curl on standard input (a config line), never on its command line.
status=$(printf 'header = "Authorization: Bearer %s"\n' "$BULKHEAD_API_KEY" |
  curl --silent --show-error --config - "${ca_args[@]}" \
    --max-time 120 --retry 3 --retry-connrefused \
    -H 'Content-Type: application/json' --data-binary "@$report" \
    --output "$work/answer.json" --write-out '%{http_code}' \
    "${BULKHEAD_CONTROLLER%/}/v1/scans") || die "could not reach ${BULKHEAD_CONTROLLER}" 1
if [[ "$status" != 201 ]]; then
  die "the controller refused the report (HTTP $status): $(head -c 2000 "$work/answer.json")" 1
fi
# One line for the CI log: the digest the report is stored under, and its counts.
summary=$(sed -n 's/.*"digest":"\([^"]*\)".*"counts":\({[^}]*}\).*/\1 \2/p' "$work/answer.json")
echo "scan-and-upload: stored scan of $image: ${summary:-$(head -c 300 "$work/answer.json")}"
