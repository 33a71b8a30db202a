#!/usr/bin/env bash
# Benchmarks our engine against the reference (cn-clip on PyTorch CPU) side by side, alternating runs so
# that the noise of a shared host falls on both, and writes the table into BENCHMARKS.md.
# Encoding: ViT-B-16@RoBERTa-base (`cnclip bench` vs bench_torch.py). Training: one step of the small synthetic
# CLIP (scripts/synthetic-clip.json) at batch 32 and 128 (`cnclip bench --train` vs
# scripts/reference/bench_train_step.py).
# usage: scripts/bench-vs-reference.sh [ROUNDS]       (default 3 rounds of each configuration)
#        PARTS="encode train" (default both): which tables to measure; each part rewrites only its own block
# env:   CNCLIP_REF_VENV  the reference environment (default ~/.cache/cnclip-ref/venv; made by
#                         ../shared/reference/setup_ref_env.sh when missing)
#        THREADS          threads for both engines (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
threads=${THREADS:-2}
venv=${CNCLIP_REF_VENV:-$HOME/.cache/cnclip-ref/venv}
ref_dir=../shared/reference
if [ ! -x "$venv/bin/python" ]; then
  [ -f "$ref_dir/setup_ref_env.sh" ] || { echo "no reference environment at $venv and no $ref_dir/setup_ref_env.sh" >&2; exit 1; }
  bash "$ref_dir/setup_ref_env.sh" "$venv"
fi
scripts/install-deps.sh
swift build -c release --product cnclip >/dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
parts=${PARTS:-encode train}
configs=()
[[ " $parts " == *" encode "* ]] && configs=("--img-batch 8 --txt-batch 32 --ctx 52" "--img-batch 1 --txt-batch 1 --ctx 52")
for r in $(seq "$rounds"); do
  for c in "${configs[@]}"; do
    echo "round $r: $c" >&2
    # shellcheck disable=SC2086
    (cd /tmp && "$venv/bin/python" "$OLDPWD/$ref_dir/bench_torch.py" ViT-B-16 RoBERTa-wwm-ext-base-chinese $c --threads "$threads" 2>/dev/null | tail -n 1 | sed "s/^/ref|$c|/") >> "$out"
    # shellcheck disable=SC2086
    .build/release/cnclip bench $c --threads "$threads" | sed "s/^/swift|$c|/" >> "$out"
  done
  [[ " $parts " == *" train "* ]] || continue
  for b in 32 128; do
    c="--train --batch $b"
    echo "round $r: $c" >&2
    (cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/reference/bench_train_step.py" "$OLDPWD/scripts/synthetic-clip.json" --batch "$b" --ctx 32 --threads "$threads" 2>/dev/null | tail -n 1 | sed "s/^/ref|$c|/") >> "$out"
    .build/release/cnclip bench --train --config scripts/synthetic-clip.json --batch "$b" --ctx 32 --threads "$threads" | sed "s/^/swift|$c|/" >> "$out"
  done
done
python3 - "$out" "$threads" "$rounds" <<'PY'
import json, statistics, sys, datetime, platform, subprocess, re
rows = {}
for line in open(sys.argv[1]):
    engine, cfg, js = line.rstrip("\n").split("|", 2)
    rows.setdefault((cfg, engine), []).append(json.loads(js))
def med(cfg, engine, key):
    return statistics.median(r[key] for r in rows[(cfg, engine)])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
torch = rows[next(k for k in rows if k[1] == "ref")][0].get("torch", "?")
def header(what, command_note):
    return [f"Measured {datetime.date.today()} on {cpu}, {sys.argv[2]} threads each, median of {sys.argv[3]} alternating rounds",
            f"(each round: one warm-up, median of 5 runs). Reference: cn-clip 1.6.0 on PyTorch {torch} ({command_note}).",
            what, "Command: `scripts/bench-vs-reference.sh`", "",
            "| configuration | metric | reference | ours | ratio |", "| --- | --- | ---: | ---: | ---: |"]
tables = {}
encode = [c for c in dict.fromkeys(k[0] for k in rows) if not c.startswith("--train")]
if encode:
    lines = header("Ours: `cnclip bench`. Model ViT-B-16@RoBERTa-wwm-ext-base-chinese, random weights, texts padded to 52 tokens.",
                   "`bench_torch.py`")
    for cfg in encode:
        b = re.search(r"--img-batch (\d+) --txt-batch (\d+)", cfg)
        for key, name in (("img_per_s", f"images/s (batch {b.group(1)})"), ("txt_per_s", f"texts/s (batch {b.group(2)})"), ("peak_rss_mb", "peak RSS, MB")):
            ref, ours = med(cfg, "ref", key), med(cfg, "swift", key)
            lines.append(f"| {cfg} | {name} | {ref:.2f} | {ours:.2f} | {ours / ref:.2f}× |")
    tables["bench-vs-reference"] = lines
train = [c for c in dict.fromkeys(k[0] for k in rows) if c.startswith("--train")]
if train:
    lines = header("Ours: `cnclip bench --train`. Small synthetic CLIP (`scripts/synthetic-clip.json`), random images, context 32.",
                   "`scripts/reference/bench_train_step.py`")
    for cfg in train:
        for key, name in (("samples_per_s", "samples/s"), ("peak_rss_mb", "peak RSS, MB")):
            ref, ours = med(cfg, "ref", key), med(cfg, "swift", key)
            lines.append(f"| {cfg} | {name} | {ref:.2f} | {ours:.2f} | {ours / ref:.2f}× |")
    tables["bench-train-vs-reference"] = lines
try:
    doc = open("BENCHMARKS.md").read()
except FileNotFoundError:
    doc = "# Benchmarks\n"
for name, lines in tables.items():
    table = "\n".join(lines)
    print(table + "\n")
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in doc:
        doc += f"\n{begin}\n{end}\n"
    head, rest = doc.split(begin, 1)
    doc = head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1]
open("BENCHMARKS.md.tmp", "w").write(doc)
import os; os.replace("BENCHMARKS.md.tmp", "BENCHMARKS.md")
PY
