#!/usr/bin/env bash
# The int8 path's integer GEMM (Sources/CKernels/igemm.c), each kernel this CPU has, against our fp32 GEMM on the
# models' products, one thread. Prints a Markdown table (GOP/s, best of 5 alternating rounds).
# usage: scripts/bench-igemm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
cc -O2 -ISources/CKernels/include Sources/CKernels/gemm.c Sources/CKernels/igemm.c scripts/bench-gemm/bench_igemm.c -o "$bin" -lm
"$bin"
