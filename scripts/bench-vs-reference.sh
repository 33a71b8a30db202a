#!/usr/bin/env bash
# Benchmarks our engine against the reference (cn-clip on PyTorch CPU) side by side, alternating runs so
# that the noise of a shared host falls on both, and writes the tables into BENCHMARKS.md.
# Encoding (`cnclip bench` vs scripts/reference/bench_encode.py, which measures as bench_torch.py does):
#   ViT-B-16@RoBERTa-base images at batch 8 and 1; texts that fill the 52-token context (batch 32 and 1), the
#   reference benchmark's 13-character caption padded to 52, and MUGE-like queries of 4–20 characters
#   (scripts/bench-texts/); ViT-L-14 images at batch 4; loading a 750 MB ViT-B-16 training checkpoint
#   (made once by scripts/reference/make_bench_checkpoint.py in $TMPDIR). Each figure also as a fraction of
#   the machine's fp32 peak (PEAK_GFLOPS; by default measured: scripts/bench-peak.sh's best FMA rate of one core
#   × THREADS).
# Training: one step of the small synthetic CLIP (scripts/synthetic-clip.json) at batch 32 and 128, and of
#   ViT-B-16@RoBERTa-base (scripts/vit-b-16-roberta-base.json) at batch 8, context 52 (finetuning the real model)
#   (`cnclip bench --train` vs scripts/reference/bench_train_step.py).
# int8: ViT-B-16@RoBERTa-base encoding by five engines side by side — the reference (PyTorch fp32), ONNX Runtime fp32 and
#   its dynamic int8 (scripts/reference/bench_ort_encode.py, as ../shared/reference/bench_ort.py measures), ours in
#   fp32 and with --precision int8 — and peak memory of inference from a checkpoint (the reference's .pt against our
#   `cnclip quantize` file of it). Our int8 figures also as a fraction of the int8 peak (INT8_PEAK_GOPS; by default
#   measured: scripts/bench-peak.sh's vpdpbusd rate of one core — the instruction our int8 kernel runs — × THREADS).
# usage: scripts/bench-vs-reference.sh [ROUNDS]       (default 3 rounds of each configuration)
#        PARTS="encode train int8" (default all): which tables to measure; each part rewrites only its own block
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
if [ -z "${PEAK_GFLOPS:-}" ] || [ -z "${INT8_PEAK_GOPS:-}" ]; then
  peaks=$(scripts/bench-peak.sh)
  echo "peaks of one core: $peaks" >&2
  read -r fma_peak int8_peak < <(python3 -c 'import json, sys; p = json.loads(sys.argv[1]); t = int(sys.argv[2])
print(round(max(p["fma512_gflops"], p["fma256_gflops"]) * t), round(max(p["vnni512_gops"], p["vnni256_gops"]) * t))' "$peaks" "$threads")
  export PEAK_GFLOPS=${PEAK_GFLOPS:-$fma_peak} INT8_PEAK_GOPS=${INT8_PEAK_GOPS:-$int8_peak}
fi
parts=${PARTS:-encode train int8}
texts=$PWD/scripts/bench-texts
checkpoint=${TMPDIR:-/tmp}/cnclip-bench-vit-b-16.pt
configs=()
if [[ " $parts " == *" encode "* ]]; then
  [ -s "$checkpoint" ] || (cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/reference/make_bench_checkpoint.py" ViT-B-16 RoBERTa-wwm-ext-base-chinese "$checkpoint.tmp" && mv "$checkpoint.tmp" "$checkpoint")
  # "VISION TEXT|arguments of both benchmarks"
  configs=(
    "ViT-B-16 RoBERTa-wwm-ext-base-chinese|--img-batch 8 --txt-batch 32 --texts $texts/full-context-caption.txt"
    "ViT-B-16 RoBERTa-wwm-ext-base-chinese|--img-batch 1 --txt-batch 1 --texts $texts/full-context-caption.txt"
    "ViT-B-16 RoBERTa-wwm-ext-base-chinese|--img-batch 0 --txt-batch 32"
    "ViT-B-16 RoBERTa-wwm-ext-base-chinese|--img-batch 0 --txt-batch 32 --texts $texts/muge-like-queries.txt"
    "ViT-B-16 RoBERTa-wwm-ext-base-chinese|--img-batch 0 --txt-batch 1 --texts $texts/muge-like-queries.txt --iters 15"
    "ViT-L-14 RoBERTa-wwm-ext-large-chinese|--img-batch 4 --txt-batch 0 --iters 3"
    "ViT-B-16 RoBERTa-wwm-ext-base-chinese|--img-batch 0 --txt-batch 0 --checkpoint $checkpoint"
  )
fi
int8_file=${TMPDIR:-/tmp}/cnclip-bench-vit-b-16.int8.safetensors
int8_configs=()
if [[ " $parts " == *" int8 "* ]]; then
  [ -s "$checkpoint" ] || (cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/reference/make_bench_checkpoint.py" ViT-B-16 RoBERTa-wwm-ext-base-chinese "$checkpoint.tmp" && mv "$checkpoint.tmp" "$checkpoint")
  .build/release/cnclip quantize --resume "$checkpoint" --vision-model ViT-B-16 --text-model RoBERTa-wwm-ext-base-chinese --output "$int8_file"
  int8_configs=(
    "--img-batch 8 --txt-batch 32 --texts $texts/full-context-caption.txt"
    "--img-batch 1 --txt-batch 1 --texts $texts/full-context-caption.txt"
    "--img-batch 0 --txt-batch 32 --texts $texts/muge-like-queries.txt"
  )
fi
for r in $(seq "$rounds"); do
  for c in "${int8_configs[@]}"; do
    echo "round $r: int8 $c" >&2
    m="ViT-B-16 RoBERTa-wwm-ext-base-chinese"
    # shellcheck disable=SC2086
    {
      (cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/reference/bench_encode.py" $m $c --threads "$threads" 2>/dev/null | tail -n 1 | awk -v p="int8:torch|$c|" '{print p $0}')
      (cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/reference/bench_ort_encode.py" $m $c --threads "$threads" 2>/dev/null | tail -n 1 | awk -v p="int8:ort|$c|" '{print p $0}')
      (cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/reference/bench_ort_encode.py" $m $c --int8 --threads "$threads" 2>/dev/null | tail -n 1 | awk -v p="int8:ort8|$c|" '{print p $0}')
      .build/release/cnclip bench $c --threads "$threads" | awk -v p="int8:swift|$c|" '{print p $0}'
      .build/release/cnclip bench $c --threads "$threads" --precision int8 | awk -v p="int8:swift8|$c|" '{print p $0}'
    } >> "$out"
  done
  if [[ " $parts " == *" int8 "* ]]; then
    c="--img-batch 8 --txt-batch 32 --texts $texts/full-context-caption.txt --iters 2"
    echo "round $r: int8 memory" >&2
    # shellcheck disable=SC2086
    (cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/reference/bench_encode.py" ViT-B-16 RoBERTa-wwm-ext-base-chinese $c --checkpoint "$checkpoint" --threads "$threads" 2>/dev/null | tail -n 1 | awk -v p="int8:torch|memory|" '{print p $0}') >> "$out"
    # shellcheck disable=SC2086
    .build/release/cnclip bench $c --checkpoint "$int8_file" --threads "$threads" | awk -v p="int8:swift8|memory|" '{print p $0}' >> "$out"
    # shellcheck disable=SC2086
    .build/release/cnclip bench $c --checkpoint "$checkpoint" --threads "$threads" | awk -v p="int8:swift|memory|" '{print p $0}' >> "$out"
  fi
  for spec in "${configs[@]}"; do
    models=${spec%%|*}; c=${spec#*|}
    read -r vision text <<<"$models"
    echo "round $r: $models $c" >&2
    # shellcheck disable=SC2086
    (cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/reference/bench_encode.py" $vision $text $c --threads "$threads" 2>/dev/null | tail -n 1 | awk -v p="ref|$models $c|" '{print p $0}') >> "$out"
    # shellcheck disable=SC2086
    .build/release/cnclip bench --vision-model "$vision" --text-model "$text" $c --threads "$threads" | awk -v p="swift|$models $c|" '{print p $0}' >> "$out"
  done
  [[ " $parts " == *" train "* ]] || continue
  for b in 32 128; do
    c="--train --batch $b"
    echo "round $r: $c" >&2
    (cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/reference/bench_train_step.py" "$OLDPWD/scripts/synthetic-clip.json" --batch "$b" --ctx 32 --threads "$threads" 2>/dev/null | tail -n 1 | sed "s/^/ref|$c|/") >> "$out"
    .build/release/cnclip bench --train --config scripts/synthetic-clip.json --batch "$b" --ctx 32 --threads "$threads" | sed "s/^/swift|$c|/" >> "$out"
  done
  # Finetuning the real model: ViT-B-16@RoBERTa-base (the two presets merged), batch 8, the full 52-token context.
  c="--train --config vit-b-16-roberta-base.json --batch 8 --ctx 52"
  echo "round $r: $c" >&2
  (cd /tmp && "$venv/bin/python" "$OLDPWD/scripts/reference/bench_train_step.py" "$OLDPWD/scripts/vit-b-16-roberta-base.json" --batch 8 --ctx 52 --iters 3 --threads "$threads" 2>/dev/null | tail -n 1 | sed "s/^/ref|$c|/") >> "$out"
  .build/release/cnclip bench --train --config scripts/vit-b-16-roberta-base.json --batch 8 --ctx 52 --iters 3 --threads "$threads" | sed "s/^/swift|$c|/" >> "$out"
done
python3 - "$out" "$threads" "$rounds" <<'PY'
import json, os, statistics, sys, datetime, platform, subprocess, re
rows = {}
for line in open(sys.argv[1]):
    engine, cfg, js = line.rstrip("\n").split("|", 2)
    rows.setdefault((cfg, engine), []).append(json.loads(js))
def med(cfg, engine, key):
    return statistics.median(r[key] for r in rows[(cfg, engine)])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
torch = rows[next(k for k in rows if k[1] in ("ref", "int8:torch"))][0].get("torch", "?")
def header(what, command_note):
    return [f"Measured {datetime.date.today()} on {cpu}, {sys.argv[2]} threads each, median of {sys.argv[3]} alternating rounds",
            f"(each round: one warm-up, median of 5 runs). Reference: cn-clip 1.6.0 on PyTorch {torch} ({command_note}).",
            what, "Command: `scripts/bench-vs-reference.sh`", "",
            "| configuration | metric | reference | ours | ratio |", "| --- | --- | ---: | ---: | ---: |"]
tables = {}
peak = float(os.environ["PEAK_GFLOPS"])
# Nominal forward FLOPs (2 per multiply-add) of the towers, as the reference computes them.
vision_shapes = {"ViT-B-16": (12, 768, 16, 224), "ViT-L-14": (24, 1024, 14, 224)}  # layers, width, patch, resolution
text_shapes = {"RoBERTa-wwm-ext-base-chinese": (12, 768, 3072), "RoBERTa-wwm-ext-large-chinese": (24, 1024, 4096)}
def image_gflop(vision):
    layers, w, patch, res = vision_shapes[vision]
    n = (res // patch) ** 2 + 1
    return (layers * (24 * n * w * w + 4 * n * n * w) + 2 * (n - 1) * 3 * patch * patch * w) / 1e9
def text_gflop(text, n):
    layers, w, ffn = text_shapes[text]
    return layers * (2 * n * (4 * w * w + 2 * w * ffn) + 4 * n * n * w) / 1e9
def describe(cfg):
    words = cfg.split()
    texts = re.search(r"--texts \S*/([^/ ]+)\.txt", cfg)
    return words[0], words[1], {"full-context-caption": "a 50-character caption (52 tokens)",
                                "muge-like-queries": "MUGE-like queries (4–20 characters)"}.get(texts.group(1) if texts else "",
                                "the reference benchmark's caption (13 characters) padded to 52")
encode = [c for c in dict.fromkeys(k[0] for k in rows if not k[1].startswith("int8:")) if not c.startswith("--train")]
if encode:
    lines = header("Ours: `cnclip bench`. Random weights; texts padded to 52 tokens (we compute each text at its own length, "
                   "the reference all 52). Peak fraction: GFLOP/s of the work each engine does (images: the reference's nominal "
                   f"FLOPs for both; texts: at the positions each computes) over {peak:.0f} GFLOP/s (the FMA rate of one core, measured by "
                   "`scripts/bench-peak.sh`, × the threads).",
                   "`scripts/reference/bench_encode.py`, measuring as `bench_torch.py`")
    lines[-2:] = ["| model | configuration | metric | reference | ours | ratio |", "| --- | --- | --- | ---: | ---: | ---: |"]
    def pct(x): return f" ({100 * x / peak:.0f}% of peak)"
    for cfg in encode:
        vision, text, texts = describe(cfg)
        args = cfg.split(" ", 2)[2]
        shown = re.sub(r"--texts \S*/", "--texts ", args)
        shown = re.sub(r"--checkpoint \S+", "--checkpoint (750 MB training checkpoint)", shown)
        r0 = rows[(cfg, "ref")][0]
        b = re.search(r"--img-batch (\d+) --txt-batch (\d+)", cfg)
        if "img_per_s" in r0:
            ref, ours = med(cfg, "ref", "img_per_s"), med(cfg, "swift", "img_per_s")
            g = image_gflop(vision)
            lines.append(f"| {vision} | {shown} | images/s (batch {b.group(1)}) | {ref:.2f}{pct(ref * g)} | {ours:.2f}{pct(ours * g)} | {ours / ref:.2f}× |")
        if "txt_per_s" in r0:
            ref, ours = med(cfg, "ref", "txt_per_s"), med(cfg, "swift", "txt_per_s")
            nr, no = med(cfg, "ref", "txt_positions"), med(cfg, "swift", "txt_positions")
            lines.append(f"| {text} | {shown} | texts/s (batch {b.group(2)}; {texts}; positions {nr:.0f} vs {no:.0f}) | {ref:.2f}{pct(ref * text_gflop(text, nr))} | {ours:.2f}{pct(ours * text_gflop(text, no))} | {ours / ref:.2f}× |")
        if "load_s" in r0:
            ref, ours = med(cfg, "ref", "load_s"), med(cfg, "swift", "load_s")
            lines.append(f"| {vision}@{text} | {shown} | load, s | {ref:.3f} | {ours:.3f} | {ours / ref:.2f}× |")
        if b and (b.group(1) != "0" or b.group(2) != "0"):
            ref, ours = med(cfg, "ref", "peak_rss_mb"), med(cfg, "swift", "peak_rss_mb")
            lines.append(f"| {vision}@{text} | {shown} | peak RSS, MB | {ref:.0f} | {ours:.0f} | {ours / ref:.2f}× |")
    tables["bench-vs-reference"] = lines
int8 = [c for c in dict.fromkeys(k[0] for k in rows if k[1].startswith("int8:")) if c != "memory"]
if int8:
    int8_peak = float(os.environ["INT8_PEAK_GOPS"])
    engines = [("int8:torch", "PyTorch fp32"), ("int8:ort", "ONNX Runtime fp32"), ("int8:ort8", "ONNX Runtime int8"),
               ("int8:swift", "ours fp32"), ("int8:swift8", "ours int8")]
    ort_version = rows[(int8[0], "int8:ort")][0].get("ort", "?")
    lines = [f"Measured {datetime.date.today()} on {cpu}, {sys.argv[2]} threads each, median of {sys.argv[3]} alternating rounds "
             f"(each: one warm-up, median of 5 runs). ViT-B-16@RoBERTa-wwm-ext-base-chinese, random weights. PyTorch {torch}: "
             f"`scripts/reference/bench_encode.py`; ONNX Runtime {ort_version} fp32 and dynamic int8 (`quantize_dynamic`, per-channel "
             "QInt8 weights): `scripts/reference/bench_ort_encode.py`; ours: `cnclip bench [--precision int8]`. Texts padded to 52 "
             "tokens (we compute each text at its own length, the others all 52). Our int8 also as a share of the int8 peak "
             f"({int8_peak:.0f} GOP/s: the vpdpbusd rate of one core, measured by `scripts/bench-peak.sh`, × the threads), counting the nominal products of the towers.",
             "Command: `PARTS=int8 scripts/bench-vs-reference.sh`", "",
             "| configuration | metric | " + " | ".join(n for _, n in engines) + " | ours int8 ÷ ONNX Runtime int8 | ours int8 ÷ PyTorch |",
             "| --- | --- |" + " ---: |" * (len(engines) + 2)]
    for cfg in int8:
        shown = re.sub(r"--texts \S*/", "--texts ", cfg)
        _, text, texts_desc = describe("ViT-B-16 RoBERTa-wwm-ext-base-chinese " + cfg)
        b = re.search(r"--img-batch (\d+) --txt-batch (\d+)", cfg)
        for key, name in (("img_per_s", f"images/s (batch {b.group(1)})"), ("txt_per_s", f"texts/s (batch {b.group(2)}; {texts_desc})")):
            if key not in rows[(cfg, "int8:torch")][0]:
                continue
            v = {e: med(cfg, e, key) for e, _ in engines}
            if key == "img_per_s":
                share = f" ({100 * v['int8:swift8'] * image_gflop('ViT-B-16') / int8_peak:.0f}% of int8 peak)"
            else:
                share = f" ({100 * v['int8:swift8'] * text_gflop(text, med(cfg, 'int8:swift8', 'txt_positions')) / int8_peak:.0f}% of int8 peak)"
            cells = " | ".join(f"{v[e]:.2f}" + (share if e == "int8:swift8" else "") for e, _ in engines)
            lines.append(f"| {shown} | {name} | {cells} | {v['int8:swift8'] / v['int8:ort8']:.2f}× | {v['int8:swift8'] / v['int8:torch']:.2f}× |")
    if ("memory", "int8:torch") in rows:
        ref, ours8, ours = med("memory", "int8:torch", "peak_rss_mb"), med("memory", "int8:swift8", "peak_rss_mb"), med("memory", "int8:swift", "peak_rss_mb")
        lines.append(f"| inference from a checkpoint (images batch 8, texts batch 32) | peak RSS, MB | {ref:.0f} (750 MB .pt) | — | — | "
                     f"{ours:.0f} (the .pt) | {ours8:.0f} (`cnclip quantize` file) | — | {ours8 / ref:.2f}× |")
        ref, ours8, ours = med("memory", "int8:torch", "load_s"), med("memory", "int8:swift8", "load_s"), med("memory", "int8:swift", "load_s")
        lines.append(f"| the same | load, s | {ref:.2f} | — | — | {ours:.2f} | {ours8:.2f} | — | {ours8 / ref:.2f}× |")
    tables["bench-int8-vs-reference"] = lines
train = [c for c in dict.fromkeys(k[0] for k in rows) if c.startswith("--train")]
if train:
    lines = header("Ours: `cnclip bench --train`. Small synthetic CLIP (`scripts/synthetic-clip.json`), random images, context 32; "
                   "and finetuning ViT-B-16@RoBERTa-base (`scripts/vit-b-16-roberta-base.json`: the two presets merged) at batch 8, "
                   "context 52, median of 3 steps.",
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
