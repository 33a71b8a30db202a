#!/usr/bin/env bash
# The elementwise kernels (Sources/CKernels/elementwise.c) on the models' shapes, one thread, each path this CPU has
# (portable, AVX2/FMA, AVX-512). Prints a Markdown table (milliseconds, best of 5 alternating rounds).
# usage: scripts/bench-elementwise.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
# Clang, as SwiftPM builds the kernels with (its `#pragma clang fp contract(off)`); -ffp-contract=off for any other.
"${CC:-$(command -v clang || echo cc)}" -O2 -ffp-contract=off -ISources/CKernels/include Sources/CKernels/elementwise.c scripts/bench-elementwise/bench_elementwise.c -o "$bin" -lm
"$bin"
