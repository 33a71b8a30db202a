#!/usr/bin/env bash
# Two machines for real, on one: two network namespaces (hosts 10.231.0.1 and 10.231.0.2) joined by a veth pair, one
# MPI rank in each, Open MPI launching the remote rank through scripts/two-hosts/netns-agent.sh (`ip netns exec`
# instead of ssh), TCP as the only transport (`--mca btl tcp,self`); the file system is shared, as NFS would be.
# Checks, each against one process on the same data:
#   extract-features over the two hosts writes the one-process bytes;
#   train, 2 hosts × batch 10 (--gather-with-grad), takes the steps of 1 process × batch 20: losses within 1e-5
#   relative, and the trained model's text features within 1e-4;
#   a cut link (host 2's end down) and a killed rank (SIGKILL on host 2), each once epoch 1's checkpoint is saved in a
#   3-epoch training run: the job ends with an error within a bounded time — with Open MPI's daemon keepalive at 3 s,
#   and with its default (then every rank ends itself after --comm-timeout; mpirun waits for the lost daemon) — and
#   a resume from epoch_latest.pt ends on the uninterrupted run's checkpoints, byte for byte;
#   with --bad-link, also a link with 50 ms delay and 1% loss each way (`tc netem`; where the kernel has no netem, the
#   same by iptables — a random 1% drop — and an NFQUEUE that holds each packet 50 ms, scripts/two-hosts/badlink.py):
#   extract-features writes the one-process bytes and 2 training steps the good link's checkpoint, byte for byte.
#   (Minutes: TCP carries 50–200 KB/s over such a link, and each training step all-reduces 6 MB of gradients, most of
#   them the word embeddings'; the start broadcasts the 6 MB of weights.)
# Needs root (ip netns, tc), iproute2 and Open MPI (scripts/install-deps.sh). The namespaces are removed on exit.
# usage: scripts/two-hosts.sh [--bad-link]    env: CNCLIP the binary (default .build/release/cnclip)
set -euo pipefail
{ # read whole before it runs
cd "$(dirname "$0")/.."
bad_link=0
[ "${1:-}" = --bad-link ] && bad_link=1
bin=$(realpath "${CNCLIP:-.build/release/cnclip}")
FIX=$PWD/Tests/Fixtures
[ "$(id -u)" = 0 ] || { echo "two-hosts: needs root (network namespaces)" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "two-hosts: mpirun is needed (scripts/install-deps.sh)" >&2; exit 2; }
work=$(mktemp -d)
ns1=cnclip-h1 ns2=cnclip-h2
in_hosts() {  # PIDs of the processes in both namespaces named $1 (mpirun, orted, cnclip)
  for ns in $ns1 $ns2; do
    for p in $(ip netns pids $ns 2>/dev/null); do [ "$(cat /proc/$p/comm 2>/dev/null)" = "$1" ] && echo $p; done
  done
  true
}
cleanup() {
  for name in mpirun orted cnclip python3; do in_hosts $name | xargs -r kill -9 2>/dev/null || true; done
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
  --context-length 32 --lr 1e-3 --warmup 2 --log-interval 1 --seed 3 --valid-batch-size 10
  --gather-with-grad --name run)  # each layout logs into its own folder, under the same name: comparable checkpoints
losses() { grep 'Global Steps: ' "$1" | sed 's/.*| Loss: \([0-9.]*\).*/\1/' || true; }  # the training lines' losses
features() {  # the text features of a trained run's checkpoint
  "$bin" encode --resume "$work/logs-$1/run/checkpoints/epoch_latest.pt" --config "$work/clip.json" --context-length 32 \
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
"$bin" "${train[@]}" --max-steps 6 --batch-size 20 --logs "$work/logs-one" 2>"$work/one.log"
losses "$work/one.log" >"$work/one.losses"; features one

run_two() {  # label, training steps: extract-features and train over the two hosts
  local label=$1 steps=$2 start
  start=$(date +%s.%N)
  "${mpi[@]}" "$bin" "${extract[@]}" --image-feat-output-path "$work/$label.img" --text-feat-output-path "$work/$label.txt" \
    >"$work/$label.extract.log" 2>&1
  "${mpi[@]}" "$bin" "${train[@]}" --max-steps $steps --batch-size 10 --logs "$work/logs-$label" >"$work/$label.train.out" 2>"$work/$label.log"
  losses "$work/$label.log" >"$work/$label.losses"; features "$label"
  log "$label: both jobs in $(python3 -c "import time; print(round(time.time() - $start, 1))") s"
}
log "two hosts over TCP"
run_two two 6

# A cut link and a killed rank. Open MPI's daemons notice a lost peer by TCP keepalive (default: after 300 s idle,
# then 9 probes 20 s apart); the ranks themselves wait in collectives, which never time out, until --comm-timeout.
keepalive=(--mca oob_tcp_keepalive_time 3 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3)
long=(train --train-data "$work/data/lmdb/train" --val-data "$work/data/lmdb/valid" --config "$work/clip.json"
  --context-length 32 --lr 1e-3 --warmup 2 --log-interval 5 --seed 3 --valid-batch-size 10 --max-epochs 3
  --batch-size 10 --gather-with-grad --name r --comm-timeout 5)
log "3 epochs over the two hosts, uninterrupted"
"${mpi[@]}" "${keepalive[@]}" "$bin" "${long[@]}" --logs "$work/full" >/dev/null 2>"$work/full.log"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds() { awk -v m="$1" 'BEGIN { printf "%.1f", m / 1000 }'; }
interrupt() {  # label, cut|kill, then mpirun's extra flags: the run, interrupted once epoch1.pt exists, then resumed
  local label=$1 how=$2 pid t0 now ranks="" ended="" status=""
  shift 2
  # In a subshell that outlives it (no exec) and keeps quiet: mpirun killed at the end is not reported as "Killed".
  ("${mpi[@]}" "$@" "$bin" "${long[@]}" --logs "$work/$label" </dev/null >/dev/null 2>"$work/$label.log"; exit $?) 2>/dev/null &
  pid=$!
  until [ -e "$work/$label/r/checkpoints/epoch1.pt" ]; do
    kill -0 $pid 2>/dev/null || { log "$label: the run ended before epoch 1's checkpoint"; break; }
    sleep 0.02
  done
  if [ "$how" = cut ]; then ip -n $ns2 link set cnclip-v2 down; else
    for p in $(ip netns pids $ns2); do [ "$(cat /proc/$p/comm 2>/dev/null)" = cnclip ] && kill -9 "$p"; done
  fi
  t0=$(ms)
  while now=$(ms); [ $((now - t0)) -lt 60000 ]; do
    [ -z "$ranks" ] && [ -z "$(in_hosts cnclip)" ] && ranks=$((now - t0))
    if [ -z "$ended" ] && ! kill -0 $pid 2>/dev/null; then ended=$((now - t0)); status=0; wait $pid || status=$?; fi
    [ -n "$ranks" ] && [ -n "$ended" ] && break
    # With the default keepalive mpirun waits minutes for the lost daemon: 5 s past the ranks' end is enough to see.
    [ -n "$ranks" ] && [ $((now - t0)) -gt $((ranks + 5000)) ] && break
    sleep 0.1
  done
  log "$label: every rank gone after $( [ -n "$ranks" ] && seconds $ranks || echo '(still running)') s," \
    "mpirun after $( [ -n "$ended" ] && seconds $ended || echo '(still waiting)') s (exit ${status:-none})"
  for name in mpirun orted cnclip; do in_hosts $name | xargs -r kill -9 2>/dev/null || true; done
  wait $pid 2>/dev/null || true
  ip -n $ns2 link set cnclip-v2 up
  until ip -n $ns1 link show cnclip-v1 | grep -q LOWER_UP; do sleep 0.1; done
  # For the checks: NAME_ranks and NAME_mpirun in ms (999999: never), NAME_status (none: still running).
  printf -v "${label//-/_}_ranks" %s "${ranks:-999999}"
  printf -v "${label//-/_}_mpirun" %s "${ended:-999999}"
  printf -v "${label//-/_}_status" %s "${status:-none}"
  "${mpi[@]}" "${keepalive[@]}" "$bin" "${long[@]}" --logs "$work/$label" --resume "$work/$label/r/checkpoints/epoch_latest.pt" \
    >/dev/null 2>"$work/$label.resume.log" || log "$label: the resumed run failed: $(tail -1 "$work/$label.resume.log")"
}
log "cut link, Open MPI's keepalive at 3 s"
interrupt cut cut "${keepalive[@]}"
log "cut link, Open MPI's default keepalive"
interrupt cut-default cut
log "killed rank on host 2"
interrupt kill kill "${keepalive[@]}"
bad_link_by=""
if [ $bad_link = 1 ]; then
  # Over a good link first, for the bad link's bytes to be compared with: 2 steps (each all-reduces 6 MB).
  run_two good2 2
  if tc -n $ns1 qdisc add dev cnclip-v1 root netem delay 50ms loss 1% 2>"$work/tc.err" &&
    tc -n $ns2 qdisc add dev cnclip-v2 root netem delay 50ms loss 1% 2>>"$work/tc.err"; then
    bad_link_by="tc netem"
  elif command -v iptables >/dev/null; then
    log "tc netem is not available here ($(head -1 "$work/tc.err")): iptables and an NFQUEUE instead"
    for host in "$ns1 cnclip-v1" "$ns2 cnclip-v2"; do
      set -- $host
      ip netns exec $1 iptables -A OUTPUT -o $2 -m statistic --mode random --probability 0.01 -j DROP
      ip netns exec $1 iptables -A OUTPUT -o $2 -j NFQUEUE --queue-num 0
      (ip netns exec $1 python3 scripts/two-hosts/badlink.py 0 50 >"$work/badlink-$1.out" 2>&1; exit $?) 2>/dev/null &
      until grep -q ready "$work/badlink-$1.out" 2>/dev/null; do kill -0 $! || { cat "$work/badlink-$1.out"; exit 1; }; sleep 0.05; done
    done
    bad_link_by="iptables + NFQUEUE"
  else
    log "neither tc netem nor iptables here ($(head -1 "$work/tc.err")): the bad-link checks are skipped"
  fi
fi
if [ -n "$bad_link_by" ]; then
  log "two hosts, 50 ms delay and 1% loss each way ($bad_link_by)"
  run_two netem 2
  if [ "$bad_link_by" != "tc netem" ]; then
    for ns in $ns1 $ns2; do
      ip netns exec $ns iptables -L OUTPUT -v -n -x | awk -v ns=$ns '$3 == "DROP" {d = $1} $3 == "NFQUEUE" {q = $1}
        END {printf "[two-hosts] %s: %d packets out, %d dropped (%.2f%%)\n", ns, d + q, d, 100 * d / (d + q)}' >&2
    done
  fi
fi

failed_within() { [ "$1" != 0 ] && [ "$1" != none ] && [ "$2" -le "$3" ]; }  # exit status, ms, limit in ms
same_end() {  # the resumed run's checkpoints are the uninterrupted run's
  cmp -s "$work/full/r/checkpoints/epoch_latest.pt" "$work/$1/r/checkpoints/epoch_latest.pt" &&
    cmp -s "$work/full/r/checkpoints/epoch3.pt" "$work/$1/r/checkpoints/epoch3.pt"
}

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
if [ -n "$bad_link_by" ]; then
  check "50 ms + 1% loss ($bad_link_by): extract-features, the one-process bytes" \
    sh -c "cmp -s '$work/one.img' '$work/netem.img' && cmp -s '$work/one.txt' '$work/netem.txt'"
  check "50 ms + 1% loss ($bad_link_by): train, 2 steps: the good link's checkpoint, byte for byte" \
    cmp -s "$work/logs-good2/run/checkpoints/epoch_latest.pt" "$work/logs-netem/run/checkpoints/epoch_latest.pt"
else
  echo "| 50 ms + 1% loss | not run (scripts/two-hosts.sh --bad-link: minutes) |"
fi
check "cut link, keepalive 3 s: mpirun exits non-zero within 30 s ($(seconds $cut_mpirun) s, exit $cut_status)" \
  failed_within "$cut_status" "$cut_mpirun" 30000
check "cut link, default keepalive: every rank ends within --comm-timeout 5 s + 5 s ($(seconds $cut_default_ranks) s)" \
  test "$cut_default_ranks" -le 10000
check "cut link, default keepalive: rank 0 names the wait and the flag" \
  grep -q "has waited .* for the other ranks (--comm-timeout 5)" "$work/cut-default.log"
check "killed rank: mpirun exits non-zero within 15 s ($(seconds $kill_mpirun) s, exit $kill_status)" \
  failed_within "$kill_status" "$kill_mpirun" 15000
for label in cut cut-default kill; do
  check "$label: the resumed run ends on the uninterrupted run's checkpoints, byte for byte" same_end $label
done
[ $failures = 0 ] || { echo "two-hosts: $failures check(s) failed; logs in $work were removed" >&2; exit 1; }
echo "two-hosts: all checks passed"
exit 0  # never read past the group (an edit made during a run would be)
}
