#!/usr/bin/env bash
# Whole-process benchmark of `kybern apply` on ONE big multi-document file, as `helm template`
# hands it over, with the Rego peer (regorus running the Gatekeeper library's Pod Security
# templates) timed on the same file in the same run.
#
# Usage: scripts/bench-apply-file.sh [N ...]          (default: 10000 50000)
#
# For each N: generates N resources with ../shared/bench/gen_workload.py (seed 1) into one file,
# then runs, REPEAT times each, in turn:
#   peer     peer-regorus <library>/pod-security-policy FILE --bundle pod-security-restricted
#   kybern   kybern apply ../shared/conformance/policies/pod-security --resource FILE
#   report   the same with --policy-report
# and prints the median wall time, the largest peak RSS, and the ratio peer / kybern.
# When the peer cannot be built, the baseline is the time to only parse the file
# (`kybern apply` with a policy that matches no resource), and the table says so.
#
# Environment:
#   KYBERN_BENCH_REPEAT   runs per command (default 3)
#   KYBERN_BENCH_BIN      a kybern binary to measure instead of building one
#   KYBERN_SHARED         the shared folder (default: ../shared beside the repository)
#   CARGO_TARGET_DIR      where cargo builds kybern (default: target); the peer is copied to and
#                         built in target/peer-regorus (its own workspace, about 2 minutes once)
#
# Needs bash, python3 with PyYAML (the generator), GNU time (/usr/bin/time) and cargo.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sizes=("$@")
if [ ${#sizes[@]} -eq 0 ]; then
    sizes=(10000 50000)
fi
repeat="${KYBERN_BENCH_REPEAT:-3}"
shared="${KYBERN_SHARED:-$root/../shared}"
target_dir="${CARGO_TARGET_DIR:-target}"
policies="$shared/conformance/policies/pod-security"

work="$(mktemp -d "${TMPDIR:-/tmp}/kybern-bench-file.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [ -n "${KYBERN_BENCH_BIN:-}" ]; then
    cp "$KYBERN_BENCH_BIN" "$work/kybern"
else
    echo "building the release binary..." >&2
    if ! cargo build --release -p kybern-cli >"$work/build.log" 2>&1; then
        cat "$work/build.log" >&2
        exit 1
    fi
    cp "$target_dir/release/kybern" "$work/kybern"
fi

peer_dir="$root/target/peer-regorus"
peer_bin="$peer_dir/target/release/peer-regorus"
library="$peer_dir/gatekeeper-library-5c441fb6/library/pod-security-policy"
if [ ! -x "$peer_bin" ] && [ -d "$shared/bench/peer-regorus" ]; then
    echo "building the peer (once)..." >&2
    mkdir -p "$peer_dir"
    cp -r "$shared/bench/peer-regorus/." "$peer_dir/"
    (cd "$peer_dir" && cargo build --release >"$work/peer-build.log" 2>&1) ||
        echo "the peer did not build; see the parse-only baseline below" >&2
fi

# A policy that matches no resource: `kybern apply` then only reads and parses the file.
mkdir -p "$work/parse-only"
cat >"$work/parse-only/policy.yaml" <<'EOF'
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: matches-nothing
spec:
  rules:
  - name: none
    match:
      any:
      - resources:
          kinds: [NoSuchKind]
    validate:
      message: never
      pattern:
        metadata:
          name: "?*"
EOF

# Runs a command REPEAT times; prints "median_wall max_rss_kib".
measure() {
    local walls=() rss=0
    for _ in $(seq "$repeat"); do
        /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || true
        read -r wall kib < <(tail -n 1 "$work/time")
        walls+=("$wall")
        if [ "$kib" -gt "$rss" ]; then rss=$kib; fi
    done
    printf '%s\n' "${walls[@]}" | sort -n | awk -v r="$rss" '{a[NR]=$1} END {print a[int((NR+1)/2)], r}'
}

printf '%-9s %-8s %10s %12s  %s\n' "resources" "command" "wall (s)" "peak RSS" "ratio to baseline"
for n in "${sizes[@]}"; do
    file="$work/workload-$n.yaml"
    python3 "$shared/bench/gen_workload.py" "$n" "$file" --seed 1 >/dev/null 2>&1
    if [ -x "$peer_bin" ]; then
        base_name="peer"
        read -r base_wall base_rss < <(measure "$peer_bin" "$library" "$file" --bundle pod-security-restricted)
    else
        base_name="parse"
        read -r base_wall base_rss < <(measure "$work/kybern" apply "$work/parse-only" --resource "$file")
    fi
    read -r k_wall k_rss < <(measure "$work/kybern" apply "$policies" --resource "$file")
    read -r r_wall r_rss < <(measure "$work/kybern" apply "$policies" --resource "$file" --policy-report)
    ratio() { python3 -c "print(f'{$base_wall / max($1, 0.001):.2f}x')"; }
    mib() { python3 -c "print(f'{$1 / 1024:.1f} MiB')"; }
    printf '%-9s %-8s %10s %12s  %s\n' "$n" "$base_name" "$base_wall" "$(mib "$base_rss")" "1.00x"
    printf '%-9s %-8s %10s %12s  %s\n' "$n" "kybern" "$k_wall" "$(mib "$k_rss")" "$(ratio "$k_wall")"
    printf '%-9s %-8s %10s %12s  %s\n' "$n" "report" "$r_wall" "$(mib "$r_rss")" "$(ratio "$r_wall")"
    rm -f "$file"
done
