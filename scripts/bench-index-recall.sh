#!/usr/bin/env bash
# Recall@10 of the FAISS (IVF) gallery index against the exact flat index on a synthetic gallery of 1M vectors of
# the demo model's dimension, appended to BENCHMARKS.md.
# usage: scripts/bench-index-recall.sh [COUNT] [DIM]        (default 1000000 128)
# env:   NO_WRITE=1 prints the section instead of appending it
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000000}; dim=${2:-128}
scripts/install-deps.sh
swift build -c release --product cnclip >/dev/null
out=$(.build/release/cnclip index recall --count "$count" --dim "$dim" --queries 1000 --factory auto --nprobe 1,4,16,64 --top-k 10)
echo "$out" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo
  echo "## FAISS index recall ($(date -u +%Y-%m-%d))"
  echo
  echo "\`scripts/bench-index-recall.sh $count $dim\` (\`cnclip index recall\`): $count synthetic unit vectors of dimension $dim"
  echo "(10,000 Gaussian clusters; the queries are 1,000 gallery vectors plus noise), the \`auto\` FAISS index (IVF with about"
  echo "4·√n lists but at most one per 39 training vectors, trained on an evenly spaced 100,000-vector sample) against the"
  echo "exact flat index (make-topk-predictions's ranking), on this machine's 2 cores. recall@10 = the share of the exact"
  echo "top 10 that the FAISS top 10 holds. FAISS's candidates are rescored exactly, as \`cnclip serve\` does."
  echo
  echo '```'
  echo "$out" | grep -v '^|'
  echo '```'
  echo
  echo "$out" | grep '^|'
} >"$work/section.md"
cat "$work/section.md"
if [ -z "${NO_WRITE:-}" ]; then cat "$work/section.md" >> BENCHMARKS.md; fi
