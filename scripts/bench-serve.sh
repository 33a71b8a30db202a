#!/usr/bin/env bash
# Load test of `cnclip serve` on loopback with wrk: concurrent clients for a fixed time, text search then image
# search; records latency percentiles, throughput, errors and the server's memory (RSS sampled every second) in
# BENCHMARKS.md.
# usage: scripts/bench-serve.sh [SECONDS] [CONNECTIONS]        (default 30 16)
# env:   CKPT, CONFIG   the model (default: the demo's trained model if scripts/demo.sh has run, else the tiny
#                       test model), MODEL_LABEL how to name it in the table; GALLERY=N images of the synthetic
#                       dataset in the gallery (default 1000)
#        NO_WRITE=1     print the section instead of appending it to BENCHMARKS.md
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}; connections=${2:-16}
n=${GALLERY:-1000}
scripts/install-deps.sh
swift build -c release --product cnclip >/dev/null
bin=.build/release/cnclip
if [ -z "${CKPT:-}" ]; then
  if [ -f demo/logs/synthetic/checkpoints/epoch_latest.pt ]; then
    CKPT=demo/logs/synthetic/checkpoints/epoch_latest.pt; CONFIG=demo/synthetic-clip.json; model="the demo's trained synthetic CLIP"
  else
    CKPT=Tests/Fixtures/models/vit-tiny.pt; CONFIG=Tests/Fixtures/models/vit-tiny.json; model="the tiny test CLIP (Tests/Fixtures/models/vit-tiny)"
  fi
else
  model=${MODEL_LABEL:-$CKPT}
fi
work=$(mktemp -d)
server=""
cleanup() { if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

"$bin" synth-dataset --output "$work/data" --train 0 --valid "$n" --test 0 --seed 11 >/dev/null
"$bin" build-lmdb --data_dir "$work/data" --splits valid >/dev/null
"$bin" index build --resume "$CKPT" --config "$CONFIG" --image-data "$work/data/lmdb/valid/imgs" \
  --text-data "$work/data/valid_texts.jsonl" --context-length 32 --output "$work/index" >/dev/null

"$bin" serve --index "$work/index" --resume "$CKPT" --config "$CONFIG" --port 0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 1 600); do grep -q "^Serving" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/serve.out")
if [ -z "$port" ]; then echo "bench-serve: the server did not start" >&2; cat "$work/serve.err" >&2; exit 1; fi
url="http://127.0.0.1:$port"

# Request scripts for wrk: text queries rotate over the gallery's captions; image queries over 8 gallery images.
python3 - "$work" <<'PY'
import base64, json, sys
work = sys.argv[1]
texts = [json.loads(l)["text"] for l in open(f"{work}/data/valid_texts.jsonl", encoding="utf-8") if l.strip()][:500]
with open(f"{work}/text.lua", "w", encoding="utf-8") as f:
    f.write("local bodies = {\n")
    for t in texts:
        f.write("  [=[" + json.dumps({"query": t, "k": 12}) + "]=],\n")
    f.write("}\nlocal i = 0\nrequest = function()\n  i = i + 1\n")
    f.write('  return wrk.format("POST", "/api/search/text", {["Content-Type"] = "application/json"}, bodies[(i % #bodies) + 1])\nend\n')
for i, line in enumerate(open(f"{work}/data/valid_imgs.tsv")):
    if i == 8:
        break
    open(f"{work}/q{i}.img", "wb").write(base64.b64decode(line.split("\t")[1]))
with open(f"{work}/image.lua", "w") as f:
    f.write("local images = {}\nfor i = 0, 7 do\n")
    f.write(f'  local h = io.open("{work}/q" .. i .. ".img", "rb"); images[i + 1] = h:read("*a"); h:close()\nend\n')
    f.write("local i = 0\nrequest = function()\n  i = i + 1\n")
    f.write('  return wrk.format("POST", "/api/search/image?k=12&captions=5", {["Content-Type"] = "image/jpeg"}, images[(i % #images) + 1])\nend\n')
PY

rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
run() {  # name script
  local name=$1 script=$2
  : >"$work/$name.rss"
  ( while kill -0 "$server" 2>/dev/null; do rss >>"$work/$name.rss"; sleep 1; done ) &
  local sampler=$!
  wrk -t2 -c"$connections" -d"${seconds}s" --latency --timeout 10s -s "$script" "$url" >"$work/$name.wrk"
  kill "$sampler" 2>/dev/null || true
  cat "$work/$name.wrk" >&2
}
# Warm up (the first requests touch the mapped gallery and grow the allocator's pools), then measure.
wrk -t1 -c2 -d3s -s "$work/text.lua" "$url" >/dev/null
run text "$work/text.lua"
run image "$work/image.lua"
if ! curl -sf "$url/healthz" >/dev/null; then echo "bench-serve: the server stopped answering" >&2; exit 1; fi

summary() {  # name label
  local w="$work/$1.wrk" r="$work/$1.rss"
  local p50 p90 p99 rps total errors non2xx first last max
  p50=$(awk '$1=="50%" {print $2}' "$w"); p90=$(awk '$1=="90%" {print $2}' "$w"); p99=$(awk '$1=="99%" {print $2}' "$w")
  rps=$(awk '/^Requests\/sec/ {print $2}' "$w"); total=$(awk '/requests in/ {print $1}' "$w")
  errors=$(awk '/Socket errors/ {gsub(",", ""); s=0; for (i=1;i<=NF;i++) if ($i ~ /^[0-9]+$/) s+=$i; print s}' "$w"); errors=${errors:-0}
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$w"); non2xx=${non2xx:-0}
  # RSS in MiB at every tenth of the run, then the maximum.
  trace=$(awk '{v[NR] = $1} END {for (i = 1; i <= 10; i++) {j = int(NR * i / 10); if (j < 1) j = 1; printf "%s%d", (i > 1 ? " " : ""), v[j] / 1024}}' "$r")
  max=$(sort -n "$r" | tail -n 1)
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s (max %s) |\n' "$2" "$connections" "$total" "$rps" "$p50" "$p90" "$p99" \
    "$((errors + non2xx))" "$trace" "$((max / 1024))"
}
{
  echo
  echo "## Retrieval service load test ($(date -u +%Y-%m-%d))"
  echo
  echo "\`scripts/bench-serve.sh $seconds $connections\`: \`cnclip serve\` with $model over a gallery of $n synthetic images"
  echo "and their captions (exact index), wrk on loopback (2 threads, $connections connections, ${seconds} s per run, after a 3 s"
  echo "warm-up), on this machine's 2 cores shared by the server and the load generator. Text queries rotate over the"
  echo "gallery's captions (k = 12); image queries upload one of 8 gallery images (k = 12 images + 5 captions). Memory is the"
  echo "server's RSS in MiB, sampled every second; the table shows it at each tenth of the run (the image run follows the text"
  echo "run in the same server process)."
  echo
  echo "| endpoint | connections | requests | requests/s | p50 | p90 | p99 | errors | server RSS (MiB) over the run |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  summary text "POST /api/search/text"
  summary image "POST /api/search/image"
} >"$work/section.md"
cat "$work/section.md"
if [ -z "${NO_WRITE:-}" ]; then cat "$work/section.md" >> BENCHMARKS.md; fi
