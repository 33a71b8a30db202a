#!/usr/bin/env bash
# Top-k retrieval, ours vs the reference's make_topk_predictions.py (patched to run on the CPU, as
# ../shared/reference/make_fixtures.py runs it), side by side on the same random feature files, and appends the
# figures to BENCHMARKS.md.
# usage: scripts/bench-topk.sh [TEXTS] [IMAGES] [DIM]     (default 5000 30000 512)
# env:   CNCLIP_REF_VENV  the reference environment (default ~/.cache/cnclip-ref/venv)
#        REF_TIMEOUT      seconds the reference may run (default 1200); when it runs out, its rate comes from
#                         its tqdm progress and the full run's time is extrapolated
#        NO_WRITE=1       print the section instead of appending it to BENCHMARKS.md
set -euo pipefail
cd "$(dirname "$0")/.."
nt=${1:-5000}; ni=${2:-30000}; dim=${3:-512}
venv=${CNCLIP_REF_VENV:-$HOME/.cache/cnclip-ref/venv}
py="$venv/bin/python"
ref_timeout=${REF_TIMEOUT:-1200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
swift build -c release --product cnclip >/dev/null

echo "writing ${nt} text and ${ni} image features of dimension ${dim} ..." >&2
# Random unit features written the way extract_features.py writes them (json.dumps of float32 .tolist()).
"$py" - "$work" "$nt" "$ni" "$dim" <<'PY'
import json, sys, numpy as np
out, nt, ni, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(20261129)
for name, key, n, base in (("img", "image_id", ni, 1_000_000), ("txt", "text_id", nt, 200_000)):
    f = rng.standard_normal((n, dim), dtype=np.float32)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    with open(f"{out}/{name}.jsonl", "w") as fh:
        for i, v in enumerate(f.tolist()):
            fh.write(json.dumps({key: base + i, "feature": v}) + "\n")
PY
img="$work/img.jsonl"; txt="$work/txt.jsonl"
ls -l "$img" "$txt" >&2

echo "ours ..." >&2
/usr/bin/time -f "%e %M" -o "$work/ours.time" env CNCLIP_TIMINGS=1 .build/release/cnclip make-topk-predictions \
  --image-feats "$img" --text-feats "$txt" --top-k 10 --output "$work/ours.jsonl" >/dev/null 2>"$work/ours.err"
grep timings "$work/ours.err" >&2

echo "reference parse-only (the script's loading loop: json.loads per line, then np.array float32) ..." >&2
"$py" - "$img" > "$work/ref_parse.txt" <<'PY'
import json, sys, time, numpy as np
t = time.perf_counter()
ids, feats = [], []
with open(sys.argv[1]) as fin:
    for line in fin:
        obj = json.loads(line.strip()); ids.append(obj["image_id"]); feats.append(obj["feature"])
a = np.array(feats, dtype=np.float32)
print(time.perf_counter() - t)
PY

echo "reference (timeout ${ref_timeout}s) ..." >&2
set +e
/usr/bin/time -f "%e %M" -o "$work/ref.time" timeout "$ref_timeout" "$py" -c '
import sys, runpy, torch
torch.Tensor.cuda = lambda self, *a, **k: self   # the script calls .cuda(); run it on the CPU
sys.argv = ["make_topk_predictions"] + sys.argv[1:]
runpy.run_module("cn_clip.eval.make_topk_predictions", run_name="__main__")
' --image-feats "$img" --text-feats "$txt" --top-k 10 --output "$work/ref.jsonl" >/dev/null 2>"$work/ref.err"
ref_rc=$?
set -e

python3 - "$work" "$nt" "$ni" "$dim" "$ref_rc" "$ref_timeout" <<'PY' > "$work/section.md"
import datetime, os, re, sys, platform
work, nt, ni, dim, rc, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
ours_s, ours_kb = open(f"{work}/ours.time").read().split()[-2:]
ours_s = float(ours_s)
m = re.search(r"parse queries ([\d.]+) s, parse gallery ([\d.]+) s, score ([\d.]+) s, write ([\d.]+) s", open(f"{work}/ours.err").read())
pq, pg, sc, wr = map(float, m.groups())
ref_parse = float(open(f"{work}/ref_parse.txt").read())
err = open(f"{work}/ref.err", errors="replace").read()
# tqdm lines: "<n>it [mm:ss, <rate>it/s]"; the second bar counts texts.
bars = [(int(n), float(r)) for n, r in re.findall(r"(\d+)it \[[\d:]+, *([\d.]+)it/s\]", err)]
if rc == 0:
    ref_s, ref_kb = open(f"{work}/ref.time").read().split()[-2:]
    ref_s = float(ref_s); ref_note = "finished"
    ours_lines = open(f"{work}/ours.jsonl").read().splitlines(); ref_lines = open(f"{work}/ref.jsonl").read().splitlines()
    diff = sum(a != b for a, b in zip(ours_lines, ref_lines)) + abs(len(ours_lines) - len(ref_lines))
    same = f"{len(ref_lines) - diff} of {len(ref_lines)} lines identical ({diff} differ)"
else:
    last = bars[-1] if bars else (0, 0.0)
    rate = last[1]
    ref_s = ref_parse + (nt / rate if rate else float("inf"))
    ref_note = f"timed out after {limit} s at {last[0]} texts, {rate:.2f} texts/s; total extrapolated as parse + {nt} / rate"
    ref_kb = "n/a"; same = "n/a (reference did not finish)"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"""
## Top-k retrieval: `cnclip make-topk-predictions` vs `make_topk_predictions.py` (CPU)

Measured {datetime.date.today()} on {cpu}, {os.cpu_count()} cores. {nt} texts × {ni} images, dimension {dim}, random unit
features written as `extract_features.py` writes them; `--top-k 10`, default `--eval-batch-size` (32768). The reference is
cn-clip 1.6.0's script run on the CPU (`torch.Tensor.cuda` patched to a no-op); its parse time is its loading loop
(`json.loads` per line, `np.array(..., float32)`) on the image file, timed alone. Reference: {ref_note}.
Command: `scripts/bench-topk.sh {nt} {ni} {dim}`

| phase | reference | ours | ratio |
| --- | ---: | ---: | ---: |
| parse image features ({ni} × {dim}) | {ref_parse:.2f} s | {pg:.2f} s | {ref_parse / pg:.1f}× |
| the rest: parse texts ({nt} × {dim}) + score + top-k (ours: GEMM, heap, canonical rescoring) | {ref_s - ref_parse:.1f} s | {pq + sc:.2f} s | {(ref_s - ref_parse) / (pq + sc):.0f}× |
| whole run (wall) | {ref_s:.1f} s | {ours_s:.2f} s | {ref_s / ours_s:.0f}× |
| peak RSS | {ref_kb if ref_kb == "n/a" else f"{int(ref_kb) / 1024:.0f} MB"} | {int(ours_kb) / 1024:.0f} MB | |

Same predictions as the reference: {same}. Lines can only differ where two different images score within the
reference's float32 rounding (~1e-7) of each other; see `Sources/Evaluation/TopK.swift`.
""")
PY
cat "$work/section.md"
if [ -z "${NO_WRITE:-}" ]; then cat "$work/section.md" >> BENCHMARKS.md; fi
