#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 10) from its committed
# seed corpus (fuzz/corpus/<target>/). New inputs go to a scratch corpus under the
# target directory, so the committed seeds stay as they are. A crash stops the run
# with the input saved under fuzz/artifacts/<target>/; turn it into a unit test in the
# module it broke, then fix the module.
#
#   fuzz/run.sh 10            # all targets, 10 s each
#   fuzz/run.sh 60 path form  # only these
#
# Needs cargo-fuzz (`cargo install --locked cargo-fuzz`); on a stable toolchain the
# nightly flags it passes are allowed through RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
shift || true
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
target_dir="${CARGO_TARGET_DIR:-$PWD/fuzz/target}"
# AddressSanitizer (cargo fuzz's default) watches the unsafe code underneath (the YAML
# parser); debug assertions catch arithmetic overflow.
flags=(--debug-assertions)
cargo fuzz build "${flags[@]}"
for t in "${targets[@]}"; do
  scratch="$target_dir/fuzz-corpus/$t"
  log="$target_dir/fuzz-corpus/$t.log"
  mkdir -p "$scratch"
  status=0
  cargo fuzz run "${flags[@]}" "$t" "$scratch" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "fuzz $t: ${seconds}s, ${runs:-?} inputs, exit $status"
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz target $t failed; the input is under fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "fuzzing: ${#targets[@]} targets, ${seconds}s each, no crash"
echo "fuzz: ${#targets[@]} passed, 0 failed"
