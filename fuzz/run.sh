#!/usr/bin/env bash
# Build every fuzz target with AFL++ and fuzz each for a bounded time, starting from
# the committed seed corpus; print executions, speed, crashes and hangs per target.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 120; no TARGET means all of them. Environment:
#   KITH_FUZZ_EXECS=N   also stop a target after about N executions (AFL's -E)
#   KITH_FUZZ_JOBS=N    fuzz N targets at once (default 1; one core each)
#   KITH_FUZZ_OUT=DIR   where AFL writes its queues and findings
#                       (default fuzz/target/afl; crashes land in DIR/<target>/default/crashes)
#
# Needs cargo-afl (`cargo install cargo-afl --version '^0.18'`, then
# `cargo afl config --build`), which builds AFL++ from source with gcc and make.
# Exit status: 0 if no target crashed or hung, 1 otherwise, 2 on a setup error.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
seconds="${1:-120}"
shift || true
all_targets=(wire_frame dm mailbox grouplog envelope group_message group_op group_post
             payload peer_record invite control node_config relay_config)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
out="${KITH_FUZZ_OUT:-$here/target/afl}"
jobs="${KITH_FUZZ_JOBS:-1}"

if ! cargo afl --version >/dev/null 2>&1; then
    echo "run.sh: cargo-afl is missing: cargo install cargo-afl --version '^0.18' && cargo afl config --build" >&2
    exit 2
fi
case "$seconds" in ''|*[!0-9]*) echo "run.sh: SECONDS_PER_TARGET must be a number" >&2; exit 2 ;; esac

echo "== building ${#targets[@]} targets (cargo afl build --release)"
(cd "$here" && CARGO_INCREMENTAL=0 cargo afl build --release --locked --quiet)

mkdir -p "$out"
# The control target opens a scratch store per process under TMPDIR: keep those
# inside the output directory and remove them at the end.
scratch="$out/tmp"
rm -rf "$scratch" && mkdir -p "$scratch"
trap 'rm -rf "$scratch"' EXIT

fuzz_one() {
    local target="$1" dir="$out/$1"
    rm -rf "$dir"
    local extra=()
    if [ -n "${KITH_FUZZ_EXECS:-}" ]; then extra+=(-E "$KITH_FUZZ_EXECS"); fi
    # No UI, no CPU binding (the cores are shared), no core-dump check; -V bounds
    # the time, -t the time per input (a slower input is a hang).
    AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    AFL_SUPPRESS_HOST_WARNINGS=1 TMPDIR="$scratch" \
        timeout --kill-after=30 "$((seconds + 120))" \
        cargo afl fuzz -i "$here/corpus/$target" -o "$dir" -V "$seconds" -t 2000 "${extra[@]}" \
        -- "$here/target/release/$target" >"$dir.log" 2>&1 || true
}

running=0
for target in "${targets[@]}"; do
    if [ ! -d "$here/corpus/$target" ]; then echo "run.sh: no corpus for $target" >&2; exit 2; fi
    echo "== fuzzing $target for ${seconds}s"
    fuzz_one "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait

stat() { sed -n "s/^$2 *: *//p" "$1" | head -n 1; }
status=0
printf '\n%-14s %12s %9s %8s %6s\n' target executions exec/s crashes hangs
for target in "${targets[@]}"; do
    stats="$out/$target/default/fuzzer_stats"
    if [ ! -f "$stats" ]; then
        printf '%-14s %12s   (AFL did not start: see %s)\n' "$target" '-' "$out/$target.log"
        status=1
        continue
    fi
    execs="$(stat "$stats" execs_done)"
    speed="$(stat "$stats" execs_per_sec)"
    crashes="$(stat "$stats" saved_crashes)"
    hangs="$(stat "$stats" saved_hangs)"
    printf '%-14s %12s %9s %8s %6s\n' "$target" "$execs" "$speed" "$crashes" "$hangs"
    # A field AFL no longer writes is a failure, not "no crash".
    if [ -z "$crashes" ] || [ -z "$hangs" ]; then
        echo "run.sh: $stats lacks saved_crashes or saved_hangs" >&2
        status=1
    elif [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
        status=1
    fi
done
if [ "$status" != 0 ]; then
    echo "findings (if any) are in $out/<target>/default/{crashes,hangs}" >&2
fi
exit "$status"
