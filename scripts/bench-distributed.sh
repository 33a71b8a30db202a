#!/usr/bin/env bash
# Data-parallel scaling on this machine: the README demo's small CLIP (scripts/synthetic-clip.json) trained with a
# global batch of 128 by 1 process (2 threads) and by `mpirun -np 2` (64 per rank, 1 thread each), alternating;
# samples/s from the median "Batch Time" of the logged steps (the first 3 skipped), the gradient all-reduce time
# per step from the run's last line; plus the communication volume per step computed for ViT-B-16@RoBERTa-base.
# Writes the table into BENCHMARKS.md.
# usage: scripts/bench-distributed.sh [STEPS] [ROUNDS]      (default 20 steps, 2 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-20}
rounds=${2:-2}
scripts/install-deps.sh
swift build -c release --product cnclip >/dev/null
cnclip=$PWD/.build/release/cnclip
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$cnclip" synth-dataset --output "$work/data" --train 4000 --valid 1 --test 0 >/dev/null
"$cnclip" build-lmdb --data_dir "$work/data" --splits train >/dev/null
common=(train --train-data "$work/data/lmdb/train" --config scripts/synthetic-clip.json --context-length 32 --lr 1e-3
        --warmup 2 --max-steps "$steps" --log-interval 1 --logs none)
out=$work/results
for r in $(seq "$rounds"); do
  echo "round $r" >&2
  "$cnclip" "${common[@]}" --batch-size 128 --threads 2 2>&1 | sed 's/^/1|/' >> "$out"
  mpirun --oversubscribe -np 2 "$cnclip" "${common[@]}" --batch-size 64 --threads 1 2>&1 | sed 's/^/2|/' >> "$out"
done
python3 - "$out" "$steps" "$rounds" <<'PY'
import re, statistics, sys, datetime, platform
times, reduce_ms, reduce_mb = {1: [], 2: []}, [], []
for line in open(sys.argv[1]):
    n, text = line.split("|", 1)
    m = re.search(r"Global Steps: (\d+)/.*Batch Time: ([0-9.]+)s", text)
    if m and int(m.group(1)) > 3:
        times[int(n)].append(float(m.group(2)))
    m = re.search(r"all-reduce over \d+ processes: ([0-9.]+) ms per step, ([0-9.]+) MB", text)
    if m:
        reduce_ms.append(float(m.group(1))); reduce_mb.append(float(m.group(2)))
rate = {n: 128 / statistics.median(t) for n, t in times.items()}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
P = 188_262_913  # ViT-B-16@RoBERTa-wwm-ext-base-chinese parameters (cn_clip's CLIP(**config))
lines = [f"Measured {datetime.date.today()} on {cpu}: {sys.argv[2]} steps per run, {sys.argv[3]} alternating rounds, global batch 128.",
         "Command: `scripts/bench-distributed.sh`", "",
         "| processes | threads each | samples/s | scaling | gradient all-reduce per step |", "| ---: | ---: | ---: | ---: | ---: |",
         f"| 1 | 2 | {rate[1]:.1f} | 1.00× | — |",
         f"| 2 | 1 | {rate[2]:.1f} | {rate[2] / rate[1]:.2f}× | {statistics.median(reduce_ms):.1f} ms ({statistics.median(reduce_mb):.1f} MB) |",
         "", "Communication per step and rank for ViT-B-16@RoBERTa-base (188,262,913 parameters, fp32 gradients: 753 MB),",
         "with a ring all-reduce (each rank sends and receives 2(N−1)/N of the gradient) and the feature all-gather",
         "(N−1 other ranks' 512-wide image and text features, 128 samples per rank):", "",
         "| ranks | gradient all-reduce, sent per rank | feature all-gather, received per rank |", "| ---: | ---: | ---: |"]
for n in (8, 64):
    grad = 2 * (n - 1) / n * P * 4 / 1e6
    feats = (n - 1) * 128 * 512 * 4 * 2 / 1e6
    lines.append(f"| {n} | {grad:,.0f} MB | {feats:.1f} MB |")
table = "\n".join(lines)
print(table)
doc = open("BENCHMARKS.md").read()
begin, end = "<!-- bench-distributed:begin -->", "<!-- bench-distributed:end -->"
if begin not in doc:
    doc += "\n## Data-parallel training: 1 vs 2 processes (`mpirun`)\n\n" + begin + "\n" + end + "\n"
head, rest = doc.split(begin, 1)
open("BENCHMARKS.md.tmp", "w").write(head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1])
import os; os.replace("BENCHMARKS.md.tmp", "BENCHMARKS.md")
PY
