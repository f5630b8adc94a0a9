#!/usr/bin/env bash
# Runs a fuzz target (or all of them) for a number of seconds each:
#   scripts/fuzz.sh TARGET SECONDS     e.g. scripts/fuzz.sh pattern 600
#   scripts/fuzz.sh all SECONDS
# Targets: yaml policy pattern jmespath cel patch wildcard quantity podsecurity review (fuzz/fuzz_targets;
# podsecurity is an oracle over random Pods and starts from an empty corpus).
# Seeds come from the conformance corpus ($KYBERN_CONFORMANCE_DIR, default ../shared/conformance)
# into fuzz/corpus/<target>/ (not committed); a crash stops the run, is saved under
# fuzz/artifacts/<target>/ and the script exits non-zero.
#
# cargo-fuzz builds on the stable toolchain with `-s none` (no sanitizer: those need nightly's
# -Zsanitizer). Rust's own bounds checks and the engine's no-panic rule make panics the crashes
# that matter; libFuzzer's -timeout and -rss_limit_mb catch hangs and runaway memory.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

targets=(yaml policy pattern jmespath cel patch wildcard quantity podsecurity review)
target="${1:-}"
seconds="${2:-60}"
if [ -z "$target" ]; then
  echo "usage: scripts/fuzz.sh TARGET|all SECONDS (targets: ${targets[*]})" >&2
  exit 2
fi
if [ "$target" != all ] && [[ ! " ${targets[*]} " =~ " $target " ]]; then
  echo "unknown fuzz target: $target (targets: ${targets[*]})" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# The main target dir (a folder of its own inside it: fuzz builds use other flags).
target_dir="$(pwd)/../target/fuzz"
flags=(-s none --target-dir "$target_dir")

python3 seed.py
cargo fuzz build "${flags[@]}"

run() {
  local t="$1"
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== fuzz $t for ${seconds}s"
  # -timeout: one input may take at most 10 s; -rss_limit_mb: 2 GiB at most.
  set +e
  cargo fuzz run "${flags[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 2>&1 | grep -E -A3 '^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|thread .* panicked|Test unit written|Done [0-9]+ runs)'
  # grep only hides libFuzzer's progress lines; the status of cargo fuzz decides.
  local status="${PIPESTATUS[0]}"
  set -e
  return "$status"
}

if [ "$target" = all ]; then
  # Every target runs even when one finds a crash; the exit status names the failures.
  failed=()
  for t in "${targets[@]}"; do run "$t" || failed+=("$t"); done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
  fi
else
  run "$target"
fi
