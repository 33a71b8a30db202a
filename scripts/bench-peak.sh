#!/usr/bin/env bash
# The machine's instruction peaks, measured on one core (scripts/bench-gemm/peak.c): fp32 FMA GFLOP/s (512- and
# 256-bit) and int8 vpdpbusd GOP/s (512- and 256-bit), one JSON line. bench-vs-reference.sh and the GEMM
# benchmarks state their figures as fractions of these (times the threads used).
# usage: scripts/bench-peak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
cc -O2 scripts/bench-gemm/peak.c -o "$bin"
"$bin"
