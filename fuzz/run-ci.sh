#!/usr/bin/env bash
# Bounded fuzzing for CI: builds the cargo-fuzz targets (no sanitizer, to keep the build short)
# and runs each for FUZZ_SECS seconds (default 30) from the kept corpus in fuzz/corpus/<target>.
# New corpus entries go to a scratch directory, so the committed corpus stays small.
# Needs cargo-fuzz (installed here if missing) and nightly features: RUSTC_BOOTSTRAP=1 on stable.
set -euo pipefail
cd "$(dirname "$0")"
SECS="${FUZZ_SECS:-30}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz build -s none --release
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in frame_decode log_recovery http_json; do
  mkdir -p "$scratch/$target"
  echo "fuzz: $target for ${SECS}s"
  cargo fuzz run -s none --release "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -E "stat::number_of_executed_units|Done|ERROR|panicked|SUMMARY" || true
  test "${PIPESTATUS[0]}" -eq 0
done
