#!/usr/bin/env bash
# Our GEMM kernel (Sources/CKernels/gemm.c) against OpenBLAS's cblas_sgemm, single-threaded, on the models' products.
# Prints a Markdown table (GFLOP/s, best of 5 alternating rounds). Needs libopenblas-dev (scripts/install-deps.sh).
# usage: scripts/bench-gemm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
"${CC:-$(command -v clang || echo cc)}" -O2 -ISources/CKernels/include Sources/CKernels/gemm.c scripts/bench-gemm/bench_gemm.c -o "$bin" $(pkg-config --cflags --libs openblas) -lm
"$bin"
