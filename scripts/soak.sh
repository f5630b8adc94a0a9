#!/usr/bin/env bash
# Soak test of the webhook: two `kybern serve` processes on loopback (release build), one whose
# policy folder is rewritten continually and one with the same policies fixed. A bounded count of
# AdmissionReviews, valid (from ../shared/bench/gen_workload.py) and malformed, goes to both; every
# answer of the first must equal the second's. Reports errors, wrong decisions, crashes and RSS.
#   scripts/soak.sh [REQUESTS] [SECONDS] [--in-place]   defaults 100000 requests, at most 3600 s
# --in-place also rewrites policy files by truncate-and-write, so the server can read an empty or
# half-written file (by default files are replaced atomically, as a ConfigMap mount does).
# KYBERN_BIN: a kybern binary to use instead of building target/release/kybern.
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-100000}"
seconds="${2:-3600}"
shift $(( $# < 2 ? $# : 2 ))

bin="${KYBERN_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p kybern-cli >&2
  bin="$(pwd)/target/release/kybern"
fi
conformance="${KYBERN_CONFORMANCE_DIR:-$(pwd)/../shared/conformance}"
workload="$(pwd)/../shared/bench/gen_workload.py"
exec python3 scripts/soak.py --bin "$bin" --conformance "$conformance" --workload "$workload" \
  --requests "$requests" --seconds "$seconds" "$@"
