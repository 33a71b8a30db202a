#!/usr/bin/env bash
# libFuzzer harnesses (Fuzz/<Harness>/, seed corpora in Fuzz/corpus/<name>/): builds them with
# `-sanitize=fuzzer,address` into .build-fuzz (the fuzz targets exist only when CNCLIP_FUZZ=1), runs each for N
# seconds on a scratch copy of its corpus, and prints a Markdown table. Exits 1 if any harness found a crash,
# sanitizer report, timeout (-timeout=10) or OOM (-rss_limit_mb=2048); the artifacts' paths are printed.
#
#   scripts/fuzz.sh [--seconds N] [--no-build] [--scratch DIR] [harness...]
#
# Harnesses by corpus name (or target name): pickle torchsave safetensors hfconfig json tsv lmdb tokenizer image
# server; all of them when none is named. Extra libFuzzer flags: FUZZ_FLAGS="-jobs=2 -workers=2" etc.
# Full runs (the reliability target): --seconds 1800 per harness. CI: --seconds 20.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=60
build=1
scratch=""
names=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --scratch) scratch="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) names+=("$1"); shift ;;
    esac
done

declare -A target=(
    [pickle]=FuzzPickle [torchsave]=FuzzTorchSave [safetensors]=FuzzSafeTensors [hfconfig]=FuzzHFConfig
    [json]=FuzzJSON [tsv]=FuzzTSV [lmdb]=FuzzLMDBRecords [tokenizer]=FuzzTokenizer [image]=FuzzImage [server]=FuzzServer
)
all=(pickle torchsave safetensors hfconfig json tsv lmdb tokenizer image server)
[ ${#names[@]} -eq 0 ] && names=("${all[@]}")
for i in "${!names[@]}"; do
    n="${names[$i]}"
    for k in "${!target[@]}"; do [ "${target[$k]}" = "$n" ] && n="$k"; done
    [ -n "${target[$n]:-}" ] || { echo "unknown harness '$n' (one of: ${all[*]})" >&2; exit 2; }
    names[$i]="$n"
done

scratch="${scratch:-$(mktemp -d "${TMPDIR:-/tmp}/cnclip-fuzz.XXXXXX")}"
mkdir -p "$scratch"
build_flags=(
    --build-path .build-fuzz -c release
    # gold cannot link these binaries (it fails while reporting a libFuzzer symbol); lld can.
    --sanitize=address -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld -Xswiftc -g -Xcc -fsanitize=fuzzer-no-link
)
if [ "$build" = 1 ]; then
    for n in "${names[@]}"; do
        echo "building ${target[$n]}…" >&2
        CNCLIP_FUZZ=1 swift build "${build_flags[@]}" --product "${target[$n]}" >"$scratch/build-${target[$n]}.log" 2>&1 || {
            tail -30 "$scratch/build-${target[$n]}.log" >&2; echo "build of ${target[$n]} failed ($scratch/build-${target[$n]}.log)" >&2; exit 2
        }
    done
fi

# ASan/LSan reports go to libFuzzer (Swift's own backtracer would hold the crash); known leaks outside the package
# are suppressed in Fuzz/lsan.supp.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:symbolize=1:detect_stack_use_after_return=1}"
export LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

found=0
rows=()
artifacts=()
for n in "${names[@]}"; do
    t="${target[$n]}"
    corpus="$scratch/corpus/$n" out="$scratch/artifacts/$n"
    mkdir -p "$corpus" "$out"
    start=$(date +%s)
    # New units go to the scratch corpus (first directory); the committed seeds and every earlier finding
    # (Fuzz/regressions/<Harness>, replayed first) are read, never written.
    regressions=()
    [ -d "Fuzz/regressions/$t" ] && regressions=("Fuzz/regressions/$t")
    ".build-fuzz/release/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/" ${FUZZ_FLAGS:-} "$corpus" "Fuzz/corpus/$n" "${regressions[@]}" >"$scratch/$n.log" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    execs=$(grep -h '^stat::number_of_executed_units' "$scratch/$n.log" | awk '{s += $2} END {print s + 0}')
    crashes=$(find "$out" -name 'crash-*' -o -name 'leak-*' | wc -l)
    timeouts=$(find "$out" -name 'timeout-*' | wc -l)
    ooms=$(find "$out" -name 'oom-*' | wc -l)
    if [ $rc -ne 0 ] && [ $((crashes + timeouts + ooms)) -eq 0 ]; then crashes=1; fi  # died without an artifact
    [ $((crashes + timeouts + ooms)) -gt 0 ] && found=1
    rate=$(( elapsed > 0 ? execs / elapsed : execs ))
    rows+=("| $t | $execs | $elapsed | $rate | $crashes | $timeouts | $ooms |")
    while IFS= read -r a; do artifacts+=("$a"); done < <(find "$out" -type f)
    [ $rc -ne 0 ] && artifacts+=("$scratch/$n.log (exit $rc)")
done

echo
echo "| harness | executions | seconds | exec/s | crashes | timeouts | OOMs |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
echo
echo "logs and corpora: $scratch"
if [ $found = 1 ]; then
    echo "FOUND:"
    printf '  %s\n' "${artifacts[@]}"
    # What a CI log needs to reproduce a finding without the machine: each report and each input in base64.
    for n in "${names[@]}"; do
        out="$scratch/artifacts/$n"
        [ -n "$(find "$out" -type f 2>/dev/null)" ] || continue
        echo
        echo "--- ${target[$n]}: the end of its log"
        grep -v -E '^(#[0-9]+|INFO:|MS:|stat::|Done )' "$scratch/$n.log" | tail -60
        for a in "$out"/*; do
            echo "--- $(basename "$a") ($(stat -c %s "$a") bytes), base64 (reproduce: base64 -d > input; .build-fuzz/release/${target[$n]} input)"
            base64 -w 100 "$a" | head -80
        done
    done
    exit 1
fi
