#!/usr/bin/env bash
# The int8 path's integer GEMM (Sources/CKernels/igemm.c), each kernel this CPU has, against our fp32 GEMM on the
# models' products, one thread. Prints a Markdown table (GOP/s, best of 5 alternating rounds).
# Clang -O2, as SwiftPM builds the kernels ($CC picks another; GCC 12 keeps copying the accumulators of the `vpdpbusd` kernel between
# registers: 20–40% slower than what the commands run).
# usage: scripts/bench-igemm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
"${CC:-$(command -v clang || echo cc)}" -O2 -ISources/CKernels/include Sources/CKernels/gemm.c Sources/CKernels/igemm.c scripts/bench-gemm/bench_igemm.c -o "$bin" -lm
"$bin"
