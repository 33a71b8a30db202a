#!/usr/bin/env bash
# Soak test of `cnclip serve` on loopback: MINUTES of mixed wrk traffic — text search, image search, classification,
# thumbnails, and bad requests (about a tenth) — while 500 keep-alive connections sit idle and 20 slow clients send a
# request head a byte a second; then a graceful stop (SIGTERM with a request in flight). Per minute: requests, p99 of
# each kind, the server's RSS. Passes when: no 5xx, no good request failed, no bad one accepted, idle and slow
# connections closed after the idle timeout (none held 15 s longer), RSS after the first minute within 10% of the
# first minute's, p99 not growing (runs of 4+ minutes: the last half's mean within 1.5× the first half's, after the
# first minute), and the request in flight at SIGTERM answered 200 before the server exits 0.
# usage: scripts/soak-serve.sh [MINUTES]            (default 30; CI runs 2)
# env:   CNCLIP the binary (default .build/release/cnclip, built if missing); CKPT, CONFIG the model (default the tiny
#        test CLIP); GALLERY images in the gallery (default 500); IDLE, SLOW connections (default 500, 20);
#        IDLE_TIMEOUT the server's --idle-timeout (default 5); BAD_PAUSE_MS the pause between bad requests (default 1)
set -euo pipefail
{ # read whole before it runs: editing the file meanwhile cannot disturb a run
cd "$(dirname "$0")/.."
minutes=${1:-30}
n=${GALLERY:-500}; idle=${IDLE:-500}; slow=${SLOW:-20}; idle_timeout=${IDLE_TIMEOUT:-5}
bin=${CNCLIP:-.build/release/cnclip}
[ -x "$bin" ] || swift build -c release --product cnclip >/dev/null
CKPT=${CKPT:-Tests/Fixtures/models/vit-tiny.pt}; CONFIG=${CONFIG:-Tests/Fixtures/models/vit-tiny.json}
command -v wrk >/dev/null || { echo "soak: wrk is needed (scripts/install-deps.sh)" >&2; exit 2; }
ulimit -n 8192 2>/dev/null || true  # 500 idle sockets on each side
work=$(mktemp -d)
server=""
cleanup() { if [ -n "$server" ]; then kill -9 "$server" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
log() { echo "[soak $(date +%H:%M:%S)] $*" >&2; }

log "gallery of $n images (tiny synthetic dataset), model $CKPT"
"$bin" synth-dataset --output "$work/data" --train 0 --valid "$n" --test 0 --seed 11 >/dev/null
"$bin" build-lmdb --data_dir "$work/data" --splits valid >/dev/null
"$bin" index build --resume "$CKPT" --config "$CONFIG" --image-data "$work/data/lmdb/valid/imgs" \
  --text-data "$work/data/valid_texts.jsonl" --context-length 32 --output "$work/index" >/dev/null

"$bin" serve --index "$work/index" --resume "$CKPT" --config "$CONFIG" --port 0 --idle-timeout "$idle_timeout" \
  --body-timeout 10 --max-upload-bytes $((1 << 20)) >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 1 600); do grep -q "^Serving" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/serve.out")
[ -n "$port" ] || { echo "soak: the server did not start" >&2; cat "$work/serve.err" >&2; exit 1; }
url="http://127.0.0.1:$port"

# The request manifests (scripts/soak/requests.lua reads them): bodies in files, one request per line.
python3 - "$work" "$n" <<'PY'
import base64, json, os, sys
work, n = sys.argv[1], int(sys.argv[2])
texts = [json.loads(l)["text"] for l in open(f"{work}/data/valid_texts.jsonl", encoding="utf-8") if l.strip()][:200]
images = [base64.b64decode(l.split("\t")[1]) for l, _ in zip(open(f"{work}/data/valid_imgs.tsv"), range(16))]
def body(name, data):
    path = f"{work}/bodies/{name}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(data if isinstance(data, bytes) else data.encode())
    return path
def manifest(name, rows):
    with open(f"{work}/{name}.manifest", "w") as f:
        for method, path, ctype, file in rows:
            f.write(f"{method}\t{path}\t{ctype}\t{file}\n")
manifest("text", [("POST", "/api/search/text", "application/json", body(f"t{i}", json.dumps({"query": t, "k": 12})))
                  for i, t in enumerate(texts)])
manifest("image", [("POST", "/api/search/image?k=12&captions=5", "image/jpeg", body(f"i{i}", im)) for i, im in enumerate(images)])
labels = ["红色", "蓝色", "绿色", "圆形", "三角形", "正方形"]
manifest("classify", [("POST", "/api/classify", "application/json",
                       body(f"c{i}", json.dumps({"image": base64.b64encode(im).decode(), "labels": labels})))
                      for i, im in enumerate(images)])
manifest("thumbs", [("GET", f"/thumbnails/{r}", "", "-") for r in range(0, n, max(1, n // 50))])
bomb = bytearray(images[0]); sof = bomb.find(b"\xff\xc0"); bomb[sof + 5:sof + 9] = b"\xc3\x50\xc3\x50"
manifest("bad", [
    ("POST", "/api/search/text", "application/json", body("b0", "{not json")),
    ("POST", "/api/search/text", "application/json", body("b1", json.dumps({"query": ""}))),
    ("POST", "/api/search/text", "application/json", body("b2", json.dumps({"query": "圆", "k": -3}))),
    ("POST", "/api/search/image", "image/jpeg", body("b3", b"this is not an image")),
    ("POST", "/api/search/image", "image/jpeg", body("b4", bytes(bomb))),
    ("POST", "/api/search/image", "image/jpeg", body("b5", images[0][: len(images[0]) // 3])),
    ("POST", "/api/classify", "application/json", body("b6", json.dumps({"image": "@@", "labels": ["a"]}))),
    ("GET", "/thumbnails/..%2f..%2fetc%2fpasswd", "", "-"),
    ("GET", f"/thumbnails/{n + 5}", "", "-"),
    ("GET", "/api/nowhere", "", "-"),
])
PY

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$server/status"; }
p99_ms() {  # wrk --latency output -> the 99% line in milliseconds
  awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) }
       else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.1f", v }' "$1"
}
soak_counts() { awk '$1 == "SOAK" { print $2, $3, $4 }' "$1"; }

log "server on $url; $minutes minute(s) of traffic, $idle idle and $slow slow connections (idle timeout ${idle_timeout}s)"
python3 scripts/soak/clients.py idle --port "$port" --seconds $((minutes * 60)) --idle "$idle" --slow "$slow" \
  --idle-timeout "$idle_timeout" >"$work/clients.json" &
clients=$!
kinds=(text image classify thumbs bad)
declare -A conns=([text]=4 [image]=2 [classify]=2 [thumbs]=1 [bad]=1)
echo "| minute | requests (text / image / classify / thumbs / bad) | 5xx | failed | p99 text / image / classify / thumbs (ms) | RSS MB |" >"$work/table"
echo "| ---: | --- | ---: | ---: | --- | ---: |" >>"$work/table"
total_5xx=0; total_failed=0; rss_first=""; rss_max_after=0; p99s=()
for minute in $(seq 1 "$minutes"); do
  pids=()
  for k in "${kinds[@]}"; do
    # Bad requests are answered fastest: a pause between them keeps them near a tenth of the traffic.
    expect=good; pause=0; [ "$k" = bad ] && expect=bad && pause=${BAD_PAUSE_MS:-1}
    wrk -t1 -c"${conns[$k]}" -d60s --latency --timeout 10s -s scripts/soak/requests.lua "$url" -- "$work/$k.manifest" "$expect" "$pause" \
      >"$work/$k.$minute.wrk" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  rss=$(rss_mb)
  counts=""; m5xx=0; mfailed=0
  for k in "${kinds[@]}"; do
    read -r answered failed e5 < <(soak_counts "$work/$k.$minute.wrk") || { echo "soak: wrk gave no counts for $k" >&2; cat "$work/$k.$minute.wrk" >&2; exit 1; }
    errors=$(awk '/Socket errors/ { for (i = 4; i <= NF; i += 2) s += $i; print s }' "$work/$k.$minute.wrk")
    counts+="${counts:+ / }$answered"; m5xx=$((m5xx + e5)); mfailed=$((mfailed + failed + ${errors:-0}))
  done
  p="$(p99_ms "$work/text.$minute.wrk") / $(p99_ms "$work/image.$minute.wrk") / $(p99_ms "$work/classify.$minute.wrk") / $(p99_ms "$work/thumbs.$minute.wrk")"
  p99s+=("$(p99_ms "$work/text.$minute.wrk")")
  echo "| $minute | $counts | $m5xx | $mfailed | $p | $rss |" >>"$work/table"
  log "minute $minute: requests $counts, 5xx $m5xx, failed $mfailed, p99 $p ms, RSS $rss MB"
  total_5xx=$((total_5xx + m5xx)); total_failed=$((total_failed + mfailed))
  if [ "$minute" = 1 ]; then rss_first=$rss; else rss_max_after=$(python3 -c "print(max($rss_max_after, $rss))"); fi
done
wait "$clients"
log "idle and slow clients: $(cat "$work/clients.json")"
graceful=$(python3 scripts/soak/clients.py graceful --port "$port" --pid "$server")
set +e; wait "$server"; status=$?; set -e
server=""
log "graceful stop: $graceful, exit status $status"

cat "$work/table"
verdict=$(python3 - "$work/clients.json" "$graceful" "$status" "$total_5xx" "$total_failed" "$rss_first" "$rss_max_after" "${p99s[@]}" <<'PY'
import json, sys
clients = json.load(open(sys.argv[1])); graceful = json.loads(sys.argv[2])
status, e5, failed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rss_first, rss_max_after = float(sys.argv[6]), float(sys.argv[7])
p99 = [float(x) for x in sys.argv[8:]]
problems = []
if e5: problems.append(f"{e5} responses were 5xx")
if failed: problems.append(f"{failed} good requests failed or bad ones were accepted (socket errors included)")
if clients["held_too_long"] or clients["errors"]:
    problems.append(f"idle/slow connections: {clients['held_too_long']} held 15 s past the timeout, {clients['errors']} errors")
if clients["idle_closed"] == 0: problems.append("no idle connection was closed")
if clients["slow_clients"] and clients["slow_closed"] == 0: problems.append("no slow client was closed")
if rss_max_after > 1.10 * rss_first: problems.append(f"RSS grew from {rss_first} MB (minute 1) to {rss_max_after} MB")
if len(p99) >= 4:
    rest = p99[1:]; half = len(rest) // 2
    first, last = sum(rest[:half]) / half, sum(rest[-half:]) / half
    if last > 1.5 * first: problems.append(f"text p99 grew: first half {first:.1f} ms, last half {last:.1f} ms")
if graceful["in_flight_status"] != 200: problems.append(f"the request in flight at SIGTERM got {graceful['in_flight_status']}")
if not graceful["exited_within_15_s"] or status != 0: problems.append(f"the server did not exit 0 after SIGTERM (status {status})")
print("; ".join(problems) if problems else "PASS")
PY
)
echo
echo "Idle and slow connections: $(cat "$work/clients.json")"
echo "Graceful stop: $graceful, exit status $status"
if [ "$verdict" != PASS ]; then echo "soak: FAILED: $verdict" >&2; exit 1; fi
echo "soak: passed ($minutes minute(s))"
exit 0
}
