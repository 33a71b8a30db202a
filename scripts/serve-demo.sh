#!/usr/bin/env bash
# The README's retrieval demo: builds a searchable gallery from the synthetic dataset's held-out images with the
# model scripts/demo.sh trained, then serves it (page + JSON API) until Ctrl-C.
# usage: scripts/serve-demo.sh            then open http://127.0.0.1:8080/
# env:   DEMO_DIR (default demo), HOST (default 127.0.0.1), PORT (default 8080), APPROXIMATE=IVF…,Flat|auto (FAISS)
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${DEMO_DIR:-demo}
ckpt=$demo/logs/synthetic/checkpoints/epoch_latest.pt
config=$demo/synthetic-clip.json
if [ ! -f "$ckpt" ] || [ ! -f "$config" ]; then
  echo "serve-demo: $ckpt or $config is missing; run scripts/demo.sh first (it makes the dataset and trains the model)" >&2
  exit 1
fi
# The held-out split: test if the dataset has one, else valid.
split=test
[ -d "$demo/data/lmdb/$split/imgs" ] || split=valid
images=$demo/data/lmdb/$split/imgs
texts=$demo/data/${split}_texts.jsonl
[ -d "$images" ] || { echo "serve-demo: no $images; run scripts/demo.sh first" >&2; exit 1; }
scripts/install-deps.sh
swift build -c release --product cnclip
bin=.build/release/cnclip
index=$demo/index
# Rebuild when the checkpoint is newer than the index (the model changed) or the index is missing.
if [ ! -f "$index/index.json" ] || [ "$ckpt" -nt "$index/index.json" ]; then
  rm -rf "$index"
  extra=()
  [ -n "${APPROXIMATE:-}" ] && extra=(--approximate "$APPROXIMATE")
  # Context length 32: the synthetic captions' longest is 29 tokens (see the demo's training).
  "$bin" index build --resume "$ckpt" --config "$config" --image-data "$images" --text-data "$texts" \
    --context-length 32 --output "$index" "${extra[@]}"
fi
exec "$bin" serve --index "$index" --resume "$ckpt" --config "$config" --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}"
