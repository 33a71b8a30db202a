#!/usr/bin/env bash
# Two machines for real, on one: two network namespaces (hosts 10.231.0.1 and 10.231.0.2) joined by a veth pair, one
# MPI rank in each, Open MPI launching the remote rank through scripts/two-hosts/netns-agent.sh (`ip netns exec`
# instead of ssh), TCP as the only transport (`--mca btl tcp,self`); the file system is shared, as NFS would be.
# Checks, each against one process on the same data:
#   extract-features over the two hosts writes the one-process bytes;
#   train, 2 hosts × batch 10 (--gather-with-grad), takes the steps of 1 process × batch 20: losses within 1e-5
#   relative, and the trained model's text features within 1e-4;
#   with `tc netem` adding 50 ms delay and 1% loss on the link, both jobs finish with the same bytes as without.
# Needs root (ip netns, tc), iproute2 and Open MPI (scripts/install-deps.sh). The namespaces are removed on exit.
# usage: scripts/two-hosts.sh            env: CNCLIP the binary (default .build/release/cnclip)
set -euo pipefail
{ # read whole before it runs
cd "$(dirname "$0")/.."
bin=$(realpath "${CNCLIP:-.build/release/cnclip}")
FIX=$PWD/Tests/Fixtures
[ "$(id -u)" = 0 ] || { echo "two-hosts: needs root (network namespaces)" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "two-hosts: mpirun is needed (scripts/install-deps.sh)" >&2; exit 2; }
work=$(mktemp -d)
ns1=cnclip-h1 ns2=cnclip-h2
cleanup() {
  ip netns del $ns1 2>/dev/null || true
  ip netns del $ns2 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "[two-hosts $(date +%H:%M:%S)] $*" >&2; }
failures=0
check() {  # name, then a command that succeeds when the check holds
  local name=$1; shift
  if "$@"; then echo "| $name | ok |"; else echo "| $name | FAILED |"; failures=$((failures + 1)); fi
}

# The hosts: a veth pair, one end in each namespace, and loopback up in both (a killed earlier run's removed first).
ip netns del $ns1 2>/dev/null || true
ip netns del $ns2 2>/dev/null || true
ip netns add $ns1
ip netns add $ns2
ip link add cnclip-v1 type veth peer name cnclip-v2
ip link set cnclip-v1 netns $ns1
ip link set cnclip-v2 netns $ns2
ip -n $ns1 addr add 10.231.0.1/24 dev cnclip-v1
ip -n $ns2 addr add 10.231.0.2/24 dev cnclip-v2
for ns in $ns1 $ns2; do ip -n $ns link set lo up; done
ip -n $ns1 link set cnclip-v1 up
ip -n $ns2 link set cnclip-v2 up
printf '10.231.0.1 slots=1\n10.231.0.2 slots=1\n' >"$work/hostfile"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 TMPDIR=$work
# mpirun runs on host 1; the agent starts Open MPI's daemon on host 2 inside its namespace.
mpi=(ip netns exec $ns1 mpirun --hostfile "$work/hostfile" -np 2 --mca plm_rsh_agent "$PWD/scripts/two-hosts/netns-agent.sh"
  --mca btl tcp,self --mca btl_tcp_if_include 10.231.0.0/24 --mca oob_tcp_if_include 10.231.0.0/24)

log "data: a tiny synthetic dataset; model: the tiny test CLIP"
"$bin" synth-dataset --output "$work/data" --train 400 --valid 40 --test 0 --resolution 32 --seed 5 >/dev/null
"$bin" build-lmdb --data_dir "$work/data" --splits train,valid >/dev/null
cat >"$work/clip.json" <<'JSON'
{"embed_dim": 64, "image_resolution": 32, "vision_layers": 2, "vision_width": 64, "vision_patch_size": 8,
 "vision_head_width": 32, "vocab_size": 21128, "text_attention_probs_dropout_prob": 0.0, "text_hidden_act": "gelu",
 "text_hidden_dropout_prob": 0.0, "text_hidden_size": 64, "text_initializer_range": 0.02,
 "text_intermediate_size": 256, "text_max_position_embeddings": 512, "text_num_attention_heads": 2,
 "text_num_hidden_layers": 2, "text_type_vocab_size": 2}
JSON
extract=(extract-features --extract-image-feats --extract-text-feats --image-data "$work/data/lmdb/valid/imgs"
  --text-data "$work/data/valid_texts.jsonl" --resume "$FIX/models/vit-tiny.pt" --config "$FIX/models/vit-tiny.json"
  --context-length 32)
train=(train --train-data "$work/data/lmdb/train" --val-data "$work/data/lmdb/valid" --config "$work/clip.json"
  --context-length 32 --lr 1e-3 --warmup 2 --log-interval 1 --seed 3 --valid-batch-size 10 --max-steps 6
  --gather-with-grad --logs "$work/logs")
losses() { grep 'Global Steps: ' "$1" | sed 's/.*| Loss: \([0-9.]*\).*/\1/' || true; }  # the training lines' losses
features() {  # the text features of a trained run's checkpoint
  "$bin" encode --resume "$work/logs/$1/checkpoints/epoch_latest.pt" --config "$work/clip.json" --context-length 32 \
    --text 红色的圆形 --text 左上角有一个蓝色的小三角形 --unnormalized >"$work/$1.features"
}
close() {  # two files of numbers agree within a relative tolerance
  python3 - "$@" <<'PY'
import json, re, sys
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
nums = lambda p: [float(x) for x in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", open(p).read())]
x, y = nums(a), nums(b)
scale = max([1.0] + [abs(v) for v in x])
worst = max(abs(u - v) for u, v in zip(x, y)) if x else 0
ok = len(x) == len(y) and len(x) > 0 and worst <= tol * scale
print(f"    {len(x)} numbers, largest difference {worst:.3g} (tolerance {tol * scale:.3g})", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}

log "one process"
"$bin" "${extract[@]}" --image-feat-output-path "$work/one.img" --text-feat-output-path "$work/one.txt" >/dev/null 2>&1
"$bin" "${train[@]}" --batch-size 20 --name one 2>"$work/one.log"
losses "$work/one.log" >"$work/one.losses"; features one

run_two() {  # label: extract-features and train over the two hosts
  local label=$1 start
  start=$(date +%s.%N)
  "${mpi[@]}" "$bin" "${extract[@]}" --image-feat-output-path "$work/$label.img" --text-feat-output-path "$work/$label.txt" \
    >"$work/$label.extract.log" 2>&1
  "${mpi[@]}" "$bin" "${train[@]}" --batch-size 10 --name "$label" >"$work/$label.train.out" 2>"$work/$label.log"
  losses "$work/$label.log" >"$work/$label.losses"; features "$label"
  log "$label: both jobs in $(python3 -c "import time; print(round(time.time() - $start, 1))") s"
}
log "two hosts over TCP"
run_two two
netem=1
if tc -n $ns1 qdisc add dev cnclip-v1 root netem delay 50ms loss 1% 2>"$work/tc.err" &&
  tc -n $ns2 qdisc add dev cnclip-v2 root netem delay 50ms loss 1% 2>>"$work/tc.err"; then
  log "two hosts, 50 ms delay and 1% loss each way"
  run_two netem
else
  netem=0
  log "tc netem is not available here ($(head -1 "$work/tc.err")): the bad-network checks are skipped"
fi

echo "| check (2026-12-07 run: see RELIABILITY.md) | result |"
echo "| --- | --- |"
check "extract-features, 2 hosts: the one-process bytes" cmp -s "$work/one.img" "$work/two.img"
check "extract-features, 2 hosts: text features too" cmp -s "$work/one.txt" "$work/two.txt"
check "train, 2 hosts × batch 10: six losses, as 1 × batch 20 within 1e-5" \
  sh -c "[ \$(wc -l <'$work/two.losses') = 6 ] && python3 - '$work/one.losses' '$work/two.losses' <<'PY'
import sys
a = [float(x) for x in open(sys.argv[1])]; b = [float(x) for x in open(sys.argv[2])]
sys.exit(0 if len(a) == len(b) == 6 and all(abs(x - y) <= 1e-5 * abs(x) for x, y in zip(a, b)) else 1)
PY"
check "train, 2 hosts: the trained model's features as 1 process's within 1e-4" close "$work/one.features" "$work/two.features" 1e-4
if [ $netem = 1 ]; then
check "50 ms + 1% loss: extract-features bytes unchanged" sh -c "cmp -s '$work/two.img' '$work/netem.img' && cmp -s '$work/two.txt' '$work/netem.txt'"
check "50 ms + 1% loss: the same checkpoint, byte for byte" \
  cmp -s "$work/logs/two/checkpoints/epoch_latest.pt" "$work/logs/netem/checkpoints/epoch_latest.pt"
else
  echo "| 50 ms + 1% loss | skipped: this kernel has no netem qdisc |"
fi
[ $failures = 0 ] || { echo "two-hosts: $failures check(s) failed; logs in $work were removed" >&2; exit 1; }
echo "two-hosts: all checks passed"
}
