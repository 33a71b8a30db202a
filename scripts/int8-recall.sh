#!/usr/bin/env bash
# Recall of the README main job's model (scripts/demo.sh) in fp32 and int8: the test split's features extracted with
# each precision, then make-topk-predictions(-tr) and evaluation(-tr) as the demo runs them. Prints both tables and the
# largest difference in points. Run scripts/demo.sh first (it leaves demo/data and the checkpoint).
# usage: scripts/int8-recall.sh [CHECKPOINT]   (default: demo/logs/synthetic/checkpoints/epoch_latest.pt, else epoch1.pt)
set -euo pipefail
cd "$(dirname "$0")/.."
cnclip=.build/release/cnclip
data=demo/data
ckpt=${1:-demo/logs/synthetic/checkpoints/epoch_latest.pt}
[ -f "$ckpt" ] || ckpt=demo/logs/synthetic/checkpoints/epoch1.pt
[ -f "$ckpt" ] && [ -f "$data/lmdb/test/imgs/data.mdb" ] || { echo "run scripts/demo.sh first (no $ckpt or $data)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for precision in fp32 int8; do
  d=$work/$precision
  mkdir -p "$d"
  $cnclip extract-features --extract-image-feats --extract-text-feats --image-data "$data/lmdb/test/imgs" \
    --text-data "$data/test_texts.jsonl" --resume "$ckpt" --config scripts/synthetic-clip.json --context-length 32 \
    --precision "$precision" --image-feat-output-path "$d/img.jsonl" --text-feat-output-path "$d/txt.jsonl" >/dev/null
  $cnclip make-topk-predictions --image-feats "$d/img.jsonl" --text-feats "$d/txt.jsonl" --top-k 10 --output "$d/pred.jsonl" >/dev/null
  $cnclip evaluation "$data/test_texts.jsonl" "$d/pred.jsonl" "$d/t2i.json" >/dev/null
  $cnclip evaluation "$data/test_texts.caption_groups.jsonl" "$d/pred.jsonl" "$d/t2i_groups.json" >/dev/null
  [ -f "$data/test_texts.tr.jsonl" ] || $cnclip transform-ir-annotation-to-tr --input "$data/test_texts.jsonl" >/dev/null
  $cnclip make-topk-predictions-tr --image-feats "$d/img.jsonl" --text-feats "$d/txt.jsonl" --top-k 10 --output "$d/tr.jsonl" >/dev/null
  $cnclip evaluation-tr "$data/test_texts.tr.jsonl" "$d/tr.jsonl" "$d/i2t.json" >/dev/null
done
python3 - "$work" "$ckpt" <<'PY'
import json, sys
work, ckpt = sys.argv[1], sys.argv[2]
rows = [("text -> image (its own image)", "t2i.json"), ("text -> image (any image of its caption)", "t2i_groups.json"),
        ("image -> text", "i2t.json")]
print(f"checkpoint {ckpt}; test split; R@1 / R@5 / R@10 in fp32 → int8")
print(f"| task | fp32 R@1 | R@5 | R@10 | int8 R@1 | R@5 | R@10 |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
worst = 0
for label, name in rows:
    f = json.load(open(f"{work}/fp32/{name}"))["scoreJson"]; q = json.load(open(f"{work}/int8/{name}"))["scoreJson"]
    a = [float(f[k]) for k in ("r1", "r5", "r10")]; b = [float(q[k]) for k in ("r1", "r5", "r10")]
    worst = max([worst] + [abs(x - y) for x, y in zip(a, b)])
    print(f"| {label} | " + " | ".join(f"{x:.2f}" for x in a) + " | " + " | ".join(f"{y:.2f}" for y in b) + " |")
print(f"largest difference: {worst:.2f} points")
PY
