#!/usr/bin/env bash
# Load benchmark of `kybern serve` over loopback with wrk (Debian package `wrk`).
# Runs the server with the Pod Security policy set (baseline + restricted), with the restricted
# checks written as ValidatingPolicies, and with no policies; drives /validate with a compliant Pod
# at 1, 16 and 64 connections (wrk, HTTP/1.1) and at a fixed 2,000 requests/s over HTTP/2 (hey, a
# Go client as the API server's); reports throughput, p50/p99 latency and peak RSS; then the RSS
# with every policy of the conformance corpus loaded.
# With KYBERN_BENCH_COMPARE=<another kybern binary>, it instead starts that binary and this
# tree's alternately, three rounds, and drives each at 64 connections (same-run A/B on a noisy
# machine).
# Usage: scripts/bench-webhook.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CORPUS="${KYBERN_CONFORMANCE_DIR:-$(pwd)/../shared/conformance}"
TARGET="${CARGO_TARGET_DIR:-target}"
PORT="${KYBERN_BENCH_PORT:-18443}"

for tool in wrk hey; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool is required: apt-get install -y $tool" >&2
    exit 1
  fi
done
cargo build --release --locked -p kybern-cli >/dev/null
BIN="$TARGET/release/kybern"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/pss" "$WORK/none" "$WORK/vpol"
cp crates/kybern-engine/benches/vpol/restricted.yaml "$WORK/vpol/"
for f in "$CORPUS"/policies/pod-security/baseline/*/*.yaml "$CORPUS"/policies/pod-security/restricted/*/*.yaml; do
  case "$(basename "$f")" in artifacthub-pkg.yml|kustomization.yaml) continue ;; esac
  cp "$f" "$WORK/pss/$(basename "$(dirname "$f")")-$(basename "$f")"
done

cat > "$WORK/review.json" <<'JSON'
{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"bench","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","operation":"CREATE","userInfo":{"username":"bench","groups":["system:authenticated"]},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"api","namespace":"shop","labels":{"app":"api"}},"spec":{"securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"api","image":"ghcr.io/acme/api:1.4.2","resources":{"limits":{"memory":"512Mi","cpu":"1"}},"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}},"oldObject":null,"dryRun":false}}
JSON
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$WORK/review.json", "r")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

start_server() {
  "${2:-$BIN}" serve --listen "127.0.0.1:$PORT" --policies "$1" --cert-dir "$WORK/certs" >/dev/null 2>"$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    if curl -sk "https://127.0.0.1:$PORT/health/readiness" 2>/dev/null | grep -q '"ready":true'; then return 0; fi
    sleep 0.1
  done
  echo "server did not become ready" >&2; cat "$WORK/server.log" >&2; exit 1
}
stop_server() {
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status"; }

run_set() {
  local name="$1" dir="$2"
  start_server "$dir"
  local policies
  policies=$(curl -sk "https://127.0.0.1:$PORT/health/readiness" | sed -E 's/.*"policies":([0-9]+).*/\1/')
  # The answer for the benchmark request, to show what is being measured.
  curl -sk -H 'Content-Type: application/json' --data @"$WORK/review.json" "https://127.0.0.1:$PORT/validate" | head -c 200 >&2; echo >&2
  for c in 1 16 64; do
    local t=$(( c < 2 ? 1 : 2 ))
    local line
    line=$(wrk -t"$t" -c"$c" -d"${DURATION}s" -s "$WORK/post.lua" "https://127.0.0.1:$PORT/validate" | grep '^RESULT')
    echo "$name policies=$policies connections=$c ${line#RESULT }"
  done
  # Fixed rate: 20 clients at 100 requests/s each. hey sends the URL's host:port as TLS server
  # name, which is not a valid one; -host gives it a name.
  local out
  out=$(hey -h2 -host localhost -z "${DURATION}s" -c 20 -q 100 -m POST -T application/json \
    -D "$WORK/review.json" "https://127.0.0.1:$PORT/validate")
  local p50 p99 ok
  p50=$(echo "$out" | awk '/ 50% in/ {printf "%.2f", $3 * 1000}')
  p99=$(echo "$out" | awk '/ 99% in/ {printf "%.2f", $3 * 1000}')
  ok=$(echo "$out" | awk '/\[200\]/ {print $2}')
  echo "$name policies=$policies fixed_rate=2000 http=2 p50_ms=$p50 p99_ms=$p99 ok=${ok:-0}"
  echo "$name peak_rss_mib=$(peak_rss_mib)"
  stop_server
}

echo "kybern $( "$BIN" --version ), $(nproc) CPUs, wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), ${DURATION}s per run"
if [ -n "${KYBERN_BENCH_COMPARE:-}" ]; then
  for round in 1 2 3; do
    for set in pss none; do
      for bin in "$KYBERN_BENCH_COMPARE" "$BIN"; do
        start_server "$WORK/$set" "$bin"
        line=$(wrk -t2 -c64 -d"${DURATION}s" -s "$WORK/post.lua" "https://127.0.0.1:$PORT/validate" | grep '^RESULT')
        echo "round=$round set=$set binary=$bin connections=64 ${line#RESULT }"
        stop_server
      done
    done
  done
  exit 0
fi
run_set pod-security "$WORK/pss"
run_set restricted-validatingpolicies "$WORK/vpol"
run_set no-policies "$WORK/none"

if [ -d "$CORPUS/policies" ]; then
  start_server "$CORPUS/policies"
  policies=$(curl -sk "https://127.0.0.1:$PORT/health/readiness" | sed -E 's/.*"policies":([0-9]+).*/\1/')
  for _ in $(seq 1 200); do
    curl -sk -H 'Content-Type: application/json' --data @"$WORK/review.json" "https://127.0.0.1:$PORT/validate" >/dev/null
  done
  echo "all-conformance-policies policies=$policies peak_rss_mib=$(peak_rss_mib) (after 200 requests)"
  stop_server
fi
