#!/usr/bin/env bash
# Crash-consistency ("kill -9 torture") test of the commands that write outputs.
#
# For each command: a golden uninterrupted run (and one of a "previous" version A with other inputs, whose outputs
# stand in for an earlier run's), then trials: start from no output or from the previous outputs (chosen at random),
# run the command, SIGKILL its whole session after a random delay in [0, 1.1 × the golden run's duration], and check
#   - every output is absent (only if there was none before), the previous version, or the golden one, byte for byte
#     (golden outputs are themselves read back and parsed once): never torn, never gone when it existed;
#   - nothing else is left in the output folder; hidden temporaries (.NAME....tmp) are counted, not failed, since
#     a killed process cannot remove them — the next run writing the same target must;
#   - rerunning to completion gives the golden bytes, with no temporary left.
# train: kills at random moments and during checkpoint saves, several in a row on one run folder; every checkpoint
# already written stays whole and unchanged, epoch_latest.pt is always a whole checkpoint, and the resumed run ends
# with the uninterrupted run's checkpoints, byte for byte (weights and optimizer state).
# index add grows its gallery in place: after a kill the gallery must read as the old or the new one
# (`cnclip index search` gives the old or new results) and rerunning the add gives the golden gallery.
# Full disk: each command writes into a small tmpfs that already holds the previous outputs; it must fail
# (non-zero exit, a "no space" message naming the path) and leave the previous outputs as they were.
#
# usage: scripts/torture.sh [--kills N] [--commands a,b,c] [--quick] [--no-full-disk] [--keep-scratch]
#   --quick: the CI version (3 kills per command); default: 100 kills per command.
#   Commands: synth-dataset make-dataset build-lmdb extract-features extract-features-mpi make-topk-predictions
#   make-topk-predictions-tr evaluation evaluation-tr zeroshot-eval train index-build index-add quantize convert
#   export-onnx
# Needs python3 (standard library), mpirun for extract-features-mpi, root for the full-disk section (tmpfs),
# mdb_dump (lmdb-utils) for LMDB contents (optional). CNCLIP=path/to/cnclip picks the binary.
set -euo pipefail
{ # The whole script is one block, read before it runs: editing the file meanwhile cannot disturb a run.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
CNCLIP=$(realpath "${CNCLIP:-$repo/.build/release/cnclip}")
FIX=$repo/Tests/Fixtures
killer=$here/torture/killer.py
checker=$here/torture/check.py
all_commands=(synth-dataset make-dataset build-lmdb extract-features extract-features-mpi make-topk-predictions
  make-topk-predictions-tr evaluation evaluation-tr zeroshot-eval train index-build index-add quantize convert
  export-onnx)

kills=""
commands=""
quick=0
full_disk=1
keep_scratch=0
while [ $# -gt 0 ]; do
  case $1 in
    --kills) kills=$2; shift 2 ;;
    --commands) commands=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --no-full-disk) full_disk=0; shift ;;
    --keep-scratch) keep_scratch=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "torture: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$kills" ] || { [ $quick = 1 ] && kills=3 || kills=100; }
if [ -n "$commands" ]; then IFS=, read -r -a selected <<<"$commands"; else selected=("${all_commands[@]}"); fi
for c in "${selected[@]}"; do
  [[ " ${all_commands[*]} " == *" $c "* ]] || { echo "torture: unknown command $c" >&2; exit 2; }
done
[ -x "$CNCLIP" ] || { echo "torture: no cnclip binary at $CNCLIP (build it, or set CNCLIP)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "torture: python3 is needed" >&2; exit 2; }
command -v mdb_dump >/dev/null || echo "torture: mdb_dump (lmdb-utils) not found: LMDB folders are compared by bytes only" >&2

S=$(mktemp -d "${TMPDIR:-/tmp}/cnclip-torture.XXXXXX")
IN=$S/in
cleanup() {
  cd /
  if mountpoint -q "$S/full" 2>/dev/null; then umount "$S/full" || true; fi
  if [ $keep_scratch = 1 ]; then echo "torture: scratch kept in $S" >&2; else rm -rf "$S"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Open MPI puts its session folders under TMPDIR; killed jobs leave them behind, so keep them in the scratch folder.
export TMPDIR=$S/tmp OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$TMPDIR" "$IN"
RANDOM=$$

failures=()   # "command: what" lines, printed at the end
fail() { failures+=("$1"); echo "  FAIL $1" >&2; }
log() { echo "[torture $(date +%T)] $*" >&2; }
now() { date +%s.%N; }
# A uniform random number in [0, $1) with millisecond resolution.
random_below() { python3 -c "import random,sys; print(f'{random.uniform(0, float(sys.argv[1])):.4f}')" "$1"; }

model=(--resume "$FIX/models/vit-tiny.pt" --config "$FIX/models/vit-tiny.json")

# ---------------------------------------------------------------------------------------------------------------
# Inputs, shared by every trial (kept out of the folder the commands write to). Two versions of everything: B, what
# the trials write; A, another input whose outputs play the part of an earlier run's.
prepare_inputs() {
  log "preparing inputs in $IN"
  local v seed
  for v in A B; do
    [ $v = A ] && seed=6 || seed=5
    "$CNCLIP" synth-dataset --output "$IN/data$v" --train 600 --valid 200 --test 0 --resolution 32 --seed $seed >/dev/null
    "$CNCLIP" build-lmdb --data_dir "$IN/data$v" --splits train,valid >/dev/null
    "$CNCLIP" transform-ir-annotation-to-tr --input "$IN/data$v/train_texts.jsonl" >/dev/null
    mkdir -p "$IN/feat$v"
    "$CNCLIP" extract-features --extract-image-feats --extract-text-feats --image-data "$IN/data$v/lmdb/train/imgs" \
      --text-data "$IN/data$v/train_texts.jsonl" --image-feat-output-path "$IN/feat$v/img.jsonl" \
      --text-feat-output-path "$IN/feat$v/txt.jsonl" --img-batch-size 32 --text-batch-size 32 --context-length 32 \
      "${model[@]}" >/dev/null
    "$CNCLIP" make-topk-predictions --image-feats "$IN/feat$v/img.jsonl" --text-feats "$IN/feat$v/txt.jsonl" \
      --output "$IN/feat$v/pred.jsonl" >/dev/null
    "$CNCLIP" make-topk-predictions-tr --image-feats "$IN/feat$v/img.jsonl" --text-feats "$IN/feat$v/txt.jsonl" \
      --output "$IN/feat$v/pred_tr.jsonl" >/dev/null
  done
  # make-dataset's input: image files and a captions CSV; zeroshot-eval's: one folder per class, and class names.
  python3 - "$IN" <<'EOF'
import base64, json, os, sys
root = sys.argv[1]
shapes = ["圆形", "正方形", "三角形", "星形"]
os.makedirs(f"{root}/images", exist_ok=True)
texts = {}
for line in open(f"{root}/dataB/valid_texts.jsonl", encoding="utf-8"):
    t = json.loads(line)
    texts[t["image_ids"][0]] = t["text"]
with open(f"{root}/captions.csv", "w", encoding="utf-8") as csv:
    csv.write("image_path,caption\n")
    for line in open(f"{root}/dataB/valid_imgs.tsv"):
        key, b64 = line.rstrip("\n").split("\t")
        open(f"{root}/images/{key}.jpg", "wb").write(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)))
        csv.write(f'{key}.jpg,"{texts[int(key)]}"\n')
for v in "AB":
    for line in open(f"{root}/data{v}/valid_imgs.tsv"):
        key, b64 = line.rstrip("\n").split("\t")
        caption = texts.get(int(key)) or ""
        cls = int(key) % 4
        os.makedirs(f"{root}/zs{v}/{cls:03d}", exist_ok=True)
        open(f"{root}/zs{v}/{cls:03d}/{key}.jpg", "wb").write(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)))
open(f"{root}/labels.txt", "w", encoding="utf-8").write("\n".join(shapes) + "\n")
EOF
  cat >"$IN/clip.json" <<'EOF'
{"embed_dim": 64, "image_resolution": 32, "vision_layers": 2, "vision_width": 64, "vision_patch_size": 8,
 "vision_head_width": 32, "vocab_size": 21128, "text_attention_probs_dropout_prob": 0.1, "text_hidden_act": "gelu",
 "text_hidden_dropout_prob": 0.1, "text_hidden_size": 64, "text_initializer_range": 0.02,
 "text_intermediate_size": 256, "text_max_position_embeddings": 512, "text_num_attention_heads": 2,
 "text_num_hidden_layers": 2, "text_type_vocab_size": 2}
EOF
}

# ---------------------------------------------------------------------------------------------------------------
# The commands. command_line NAME A|B sets CMD to the command writing under out/ (relative to the current folder);
# A is the previous version. It also sets UNITS (the outputs: files or folders under out/, comma-separated),
# KEEP (earlier outputs the command must not touch), PREV (random: trials start with or without the previous
# outputs; always: the command needs them) and MODE (units, gallery or train: how check.py compares).
command_line() {
  local name=$1 v=$2 d=$IN/data$2 f=$IN/feat$2
  UNITS="" KEEP="" PREV=random MODE=units
  case $name in
    synth-dataset)
      CMD=("$CNCLIP" synth-dataset --output out/data --train 1500 --valid 100 --test 100 --resolution 32
        --seed "$([ "$v" = A ] && echo 6 || echo 5)")
      UNITS=auto ;;
    make-dataset)
      CMD=("$CNCLIP" make-dataset --images "$IN/images" --captions "$IN/captions.csv" --output out/data
        --split-ratio 8:1:1 --resize 24 --seed "$([ "$v" = A ] && echo 4 || echo 3)")
      UNITS=auto ;;
    build-lmdb)
      CMD=("$CNCLIP" build-lmdb --data_dir "$d" --splits train,valid --lmdb_dir out/lmdb)
      UNITS=lmdb/train,lmdb/valid ;;
    extract-features | extract-features-mpi)
      CMD=("$CNCLIP" extract-features --extract-image-feats --extract-text-feats --image-data "$d/lmdb/train/imgs"
        --text-data "$d/train_texts.jsonl" --image-feat-output-path out/img.jsonl --text-feat-output-path out/txt.jsonl
        --img-batch-size 16 --text-batch-size 16 --threads 1 --context-length 32 "${model[@]}")
      # One compute thread per rank, so that 2 ranks write the bytes one process writes.
      [ "$name" = extract-features-mpi ] && CMD=(mpirun --oversubscribe -np 2 "${CMD[@]}")
      UNITS=img.jsonl,txt.jsonl ;;
    make-topk-predictions | make-topk-predictions-tr)
      local out=pred.jsonl; [ "$name" = make-topk-predictions-tr ] && out=pred_tr.jsonl
      CMD=("$CNCLIP" "$name" --image-feats "$f/img.jsonl" --text-feats "$f/txt.jsonl" --top-k 10
        --eval-batch-size 64 --output "out/$out")
      UNITS=$out ;;
    evaluation)
      CMD=("$CNCLIP" evaluation "$d/train_texts.jsonl" "$f/pred.jsonl" out/output.json)
      UNITS=output.json ;;
    evaluation-tr)
      CMD=("$CNCLIP" evaluation-tr "$d/train_texts.tr.jsonl" "$f/pred_tr.jsonl" out/output_tr.json)
      UNITS=output_tr.json ;;
    zeroshot-eval)
      CMD=("$CNCLIP" zeroshot-eval --datapath "$IN/zs$v" --label-file "$IN/labels.txt" --save-dir out --dataset zs
        --img-batch-size 16 --num-workers 0 "${model[@]}")
      UNITS=zs.json ;;
    quantize)
      if [ "$v" = A ]; then
        CMD=("$CNCLIP" quantize --resume "$FIX/models/rn-tiny.pt" --config "$FIX/models/rn-tiny.json" --output out/model.int8.safetensors)
      else
        CMD=("$CNCLIP" quantize "${model[@]}" --output out/model.int8.safetensors)
      fi
      UNITS=model.int8.safetensors ;;
    convert)
      # A Hugging Face directory replaced with --force: the earlier one (other weights: the fp16 file) or the new one.
      local weights=$FIX/models/vit-tiny.pt; [ "$v" = A ] && weights=$FIX/models/vit-tiny.fp16.pt
      CMD=("$CNCLIP" convert --resume "$weights" --config "$FIX/models/vit-tiny.json" --to hf --output out/hf --force)
      UNITS=hf ;;
    export-onnx)
      if [ "$v" = A ]; then
        CMD=("$CNCLIP" export onnx --resume "$FIX/models/rn-tiny.pt" --config "$FIX/models/rn-tiny.json" --output out/onnx --force)
      else
        CMD=("$CNCLIP" export onnx "${model[@]}" --output out/onnx --force)
      fi
      UNITS=onnx ;;
    index-build)
      # index build refuses an existing gallery, so the earlier output is a sibling gallery it must not touch.
      local target=gallery; [ "$v" = A ] && target=gallery-old
      CMD=("$CNCLIP" index build "${model[@]}" --image-data "$d/lmdb/valid/imgs" --text-data "$d/valid_texts.jsonl"
        --img-batch-size 16 --output "out/$target")
      UNITS=gallery KEEP=gallery-old ;;
    index-add)
      if [ "$v" = A ]; then
        CMD=("$CNCLIP" index build "${model[@]}" --image-data "$d/lmdb/valid/imgs" --text-data "$d/valid_texts.jsonl"
          --img-batch-size 16 --output out/gallery)
      else
        # The training split: ids the gallery (built from A's validation split) lacks.
        CMD=("$CNCLIP" index add "${model[@]}" --image-data "$d/lmdb/train/imgs" --text-data "$d/train_texts.jsonl"
          --img-batch-size 16 --index out/gallery)
      fi
      UNITS=gallery PREV=always MODE=gallery ;;
    train)
      # 600 pairs, batch 20: 30 steps an epoch; 40 steps cross an epoch boundary (validation, epoch1.pt) and save
      # epoch_E_S.pt every 5 steps: 17 checkpoint writes. A (for the full disk): an earlier, shorter run.
      CMD=("$CNCLIP" train --train-data "$IN/dataB/lmdb/train" --val-data "$IN/dataB/lmdb/valid" --config "$IN/clip.json"
        --context-length 32 --batch-size 20 --valid-batch-size 20 --lr 2e-3 --wd 0.001 --seed 3 --log-interval 1
        --warmup 5 --save-step-frequency 5 --threads 1 --num-workers 1 --logs out/logs)
      if [ "$v" = A ]; then CMD+=(--max-steps 10 --name old); else CMD+=(--max-steps 40 --name r); fi
      UNITS=logs/r KEEP=logs/old MODE=train ;;
  esac
}

# Folder listing relative to $1 (files only), comma-separated: the outputs when UNITS=auto.
list_files() { (cd "$1" && find . -type f | sed 's|^\./||' | sort | paste -sd, -); }
# command_line, with the outputs the golden run found.
spec() { command_line "$1" B; [ -f "$S/gold/$1/units" ] && UNITS=$(cat "$S/gold/$1/units"); return 0; }
# KiB of memory a tmpfs needs for the files under $1: whole pages (folders take none).
pages_k() { find "$1" -type f -printf '%s\n' | awk '{ k += int(($1 + 4095) / 4096) * 4 } END { print k + 0 }'; }

# The golden runs of NAME: $G/A (previous version) and $G/B (uninterrupted), timed; sets DUR (seconds).
golden() {
  local name=$1 W=$S/work/$1 G=$S/gold/$1 t0 t1
  mkdir -p "$W" "$G"
  cd "$W"
  rm -rf out && mkdir out
  command_line "$name" A
  "${CMD[@]}" >"$W/golden-A.log" 2>&1 || { fail "$name: the golden run A failed (see below)"; tail -5 "$W/golden-A.log" >&2; return 1; }
  mv out "$G/A"
  command_line "$name" B
  rm -rf out
  if [ "$PREV" = always ]; then cp -a "$G/A" out; else mkdir out; fi
  t0=$(now)
  "${CMD[@]}" >"$W/golden-B.log" 2>&1 || { fail "$name: the golden run failed"; tail -5 "$W/golden-B.log" >&2; return 1; }
  t1=$(now)
  mv out "$G/B"
  DUR=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
  [ "$UNITS" = auto ] && UNITS=$(list_files "$G/B")
  echo "$UNITS" >"$G/units"
  # Read the golden outputs back once by their formats: byte equality with them then means a valid output.
  local v
  for v in A B; do
    python3 "$checker" validate --out "$G/$v" >/dev/null || { fail "$name: golden output $v does not read back"; python3 "$checker" validate --out "$G/$v" | grep FAIL >&2; }
  done
  if [ "$MODE" = gallery ]; then  # what searching the old and the new gallery gives
    for v in A B; do
      rm -rf "$S/gcopy" && cp -a "$G/$v/gallery" "$S/gcopy"
      "$CNCLIP" index search "${model[@]}" --index "$S/gcopy" --text-data "$IN/dataB/valid_texts.jsonl" --output "$G/search-$v.jsonl" >/dev/null 2>&1
    done
  fi
  log "$name: golden run ${DUR}s; outputs: $UNITS"
}

# Checks out/ after a kill (or, with --final, after the rerun); adds its counts to the tallies; returns 1 on failure.
check_state() {
  local name=$1 had_old=$2 result rc=0 old_args=() line k
  shift 2
  [ "$had_old" = 1 ] && old_args=(--old "$S/gold/$name/A")
  case $MODE in
    units) result=$(python3 "$checker" units --out out --new "$S/gold/$name/B" "${old_args[@]}" --units "$UNITS" --keep "$([ "$had_old" = 1 ] && echo "$KEEP")" "$@") || rc=1 ;;
    gallery)
      result=$(python3 "$checker" gallery --out out/gallery --new "$S/gold/$name/B/gallery" --old "$S/gold/$name/A/gallery" "$@") || rc=1
      # Read it back through the product: search it (a copy: opening an LMDB rewrites its lock file).
      if [ $rc = 0 ]; then
        local which=B; [[ $result == *"old=1"* ]] && which=A
        rm -rf "$S/gcopy" && cp -a out/gallery "$S/gcopy"
        if ! "$CNCLIP" index search "${model[@]}" --index "$S/gcopy" --text-data "$IN/dataB/valid_texts.jsonl" --output "$S/search.jsonl" >/dev/null 2>&1 \
          || ! cmp -s "$S/search.jsonl" "$S/gold/$name/search-$which.jsonl"; then
          result+=$'\n'"FAIL: searching the gallery does not give the $([ $which = A ] && echo old || echo new) gallery's results"
          rc=1
        fi
      fi ;;
  esac
  CHECK_OUT=$result
  line=$(head -1 <<<"$result")
  for k in absent old new leftovers logical; do
    local n; n=$(grep -o "$k=[0-9]*" <<<"$line" | cut -d= -f2)
    eval "T_$k=\$(( T_$k + ${n:-0} ))"
  done
  return $rc
}

# ---------------------------------------------------------------------------------------------------------------
# Kill trials of one command (all but train). A random moment rarely falls in the few microseconds between a file's
# commit steps, so besides the random kills, strace (when installed) kills the command exactly on entering its k-th
# rename (k = 1 … the renames of an uninterrupted run, at most 8): a named temporary exists and the target is old.
declare -A ROW
renames=(rename renameat renameat2)
torture_command() {
  local name=$1 W=$S/work/$1 trial=0 killed=0 left_trials=0 identical=0 nfail=0 at_rename=0 delay k nren=0
  T_absent=0 T_old=0 T_new=0 T_leftovers=0 T_logical=0
  golden "$name" || { ROW[$name]="| $name | – | – | – | – | – | golden run failed |"; return; }
  cd "$W"
  spec "$name"
  while [ $killed -lt "$kills" ] && [ $trial -lt $((3 * kills)) ]; do
    delay=$(random_below "$(python3 -c "print($DUR * 1.1)")")
    one_trial "$name" "$delay" python3 "$killer" --delay "$delay" --log "$W/trial.log" -- "${CMD[@]}"
  done
  if command -v strace >/dev/null && [ "$name" != extract-features-mpi ]; then
    rm -rf out && mkdir out
    [ "$PREV" = always ] && { rm -rf out; cp -a "$S/gold/$name/A" out; }
    strace -f -qq -o "$W/strace.txt" -e trace="$(IFS=,; echo "${renames[*]}")" "${CMD[@]}" >/dev/null 2>&1 || true
    nren=$(grep -c 'rename' "$W/strace.txt" || true)
    for ((k = 1; k <= nren && k <= 8; k++)); do
      one_trial "$name" "rename#$k" strace_kill "$k" "${CMD[@]}"
      at_rename=$((at_rename + 1))
    done
  fi
  ROW[$name]="| $name | $trial | $killed ($at_rename at a rename) | $T_absent / $T_old / $T_new | $left_trials | $identical / $trial | $nfail |"
  log "$name: $killed kills ($at_rename at a rename) in $trial runs, $nfail failures"
}

# Runs "$@" under strace, SIGKILLed when it enters its $1-th rename; prints what killer.py prints.
strace_kill() {
  local k=$1 rc=0
  shift
  strace -f -qq -o /dev/null -e trace="$(IFS=,; echo "${renames[*]}")" \
    -e inject="$(IFS=,; echo "${renames[*]}")":signal=KILL:when="$k" "$@" >>"$S/work/strace-trial.log" 2>&1 || rc=$?
  if [ $rc = 0 ]; then echo "finished 0"; elif [ $rc = 137 ]; then echo "killed at rename $k"; else echo "finished $rc"; fi
}

# One trial: start from no output or the previous one, run "$3…" (which kills the command and prints killed… or
# finished RC), check, rerun to completion, check again. Updates the caller's tallies.
one_trial() {
  local name=$1 how=$2 had_old=0 res before_left
  shift 2
  trial=$((trial + 1))
  rm -rf out
  if [ "$PREV" = always ] || { [ "$PREV" = random ] && [ $((RANDOM % 2)) = 0 ]; }; then cp -a "$S/gold/$name/A" out; had_old=1; else mkdir out; fi
  res=$("$@")
  case $res in
    killed*) killed=$((killed + 1)) ;;
    "finished 0"*) ;;
    *) fail "$name: trial $trial: the command failed by itself ($res): $(tail -2 "$W/trial.log" | tr '\n' ' ')"; nfail=$((nfail + 1)) ;;
  esac
  before_left=$T_leftovers
  if ! check_state "$name" $had_old; then
    nfail=$((nfail + 1))
    fail "$name: trial $trial (${res}, kill at $how, previous output $([ $had_old = 1 ] && echo present || echo absent)): $(grep FAIL <<<"$CHECK_OUT" | head -3 | tr '\n' ' ')"
  fi
  [ "$T_leftovers" -gt "$before_left" ] && left_trials=$((left_trials + 1))
  # Rerun to completion. index build refuses a gallery that is already there: then it must fail and change nothing.
  if [ "$name" = index-build ] && [ -e out/gallery ]; then
    if "${CMD[@]}" >"$W/rerun.log" 2>&1; then fail "$name: trial $trial: building over an existing gallery succeeded"; nfail=$((nfail + 1)); fi
  elif ! "${CMD[@]}" >"$W/rerun.log" 2>&1; then
    fail "$name: trial $trial: the rerun failed: $(tail -2 "$W/rerun.log" | tr '\n' ' ')"; nfail=$((nfail + 1))
  fi
  local save_counts="$T_absent $T_old $T_new $T_leftovers"
  if check_state "$name" $had_old --final; then
    identical=$((identical + 1))
  else
    nfail=$((nfail + 1))
    fail "$name: trial $trial (kill at $how): after the rerun: $(grep FAIL <<<"$CHECK_OUT" | head -3 | tr '\n' ' ')"
  fi
  read -r T_absent T_old T_new T_leftovers <<<"$save_counts"  # the tallies count the after-kill states only
}

# train: chains of 1–4 kills on one run folder (each run resumes from epoch_latest.pt), each at a random moment,
# inside a checkpoint save (seen in /proc/PID/fd), or on entering a rename (strace), then a run to completion;
# every state is checked.
torture_train() {
  local name=train W=$S/work/train G=$S/gold/train chains=0 runs=0 killed=0 save_kills=0 left_trials=0 identical=0 nfail=0
  local res delay k n saves how nren=0 at_rename=0
  T_absent=0 T_old=0 T_new=0 T_leftovers=0 T_logical=0
  golden train || { ROW[train]="| train | – | – | – | – | – | golden run failed |"; return; }
  saves=$(grep -c "Saved checkpoint" "$W/golden-B.log" || true); [ "$saves" -gt 0 ] || saves=1
  cd "$W"
  command_line train B
  if command -v strace >/dev/null; then  # the renames of an uninterrupted run, for kills at a rename
    rm -rf out && mkdir out
    strace -f -qq -o "$W/strace.txt" -e trace="$(IFS=,; echo "${renames[*]}")" "${CMD[@]}" >/dev/null 2>&1 || true
    nren=$(grep -c 'rename' "$W/strace.txt" || true)
  fi
  while [ $killed -lt "$kills" ] && [ $runs -lt $((3 * kills)) ]; do
    chains=$((chains + 1))
    rm -rf out && mkdir out "$S/state" -p && rm -f "$S/state/before.json"
    n=$((1 + RANDOM % 4))
    for ((k = 0; k < n && killed < kills; k++)); do
      runs=$((runs + 1))
      how=$((RANDOM % (nren > 0 ? 3 : 2)))
      if [ $how = 0 ]; then
        delay=$(random_below "$(python3 -c "print($DUR * 1.1)")")
        res=$(python3 "$killer" --delay "$delay" --log "$W/trial.log" -- "${CMD[@]}")
      elif [ $how = 2 ]; then
        # On entering a rename: a checkpoint (or the params file) is written out and about to take its name.
        delay="rename"
        res=$(strace_kill $((1 + RANDOM % nren)) "${CMD[@]}")
        if [[ $res == killed* ]]; then at_rename=$((at_rename + 1)); fi
      else
        # Inside a save: one of the saves still to come (counted from this run's start), at a random point of it.
        delay="save"
        res=$(python3 "$killer" --delay $((${DUR%.*} + 5)) --on-save /out/logs/r/checkpoints --skip-saves $((RANDOM % saves)) \
          --save-window 0.05 --log "$W/trial.log" -- "${CMD[@]}")
      fi
      case $res in
        killed*) killed=$((killed + 1)); [ "$delay" = save ] && save_kills=$((save_kills + 1)) ;;
        "finished 0"*) ;;
        *) fail "train: run $runs failed by itself ($res): $(tail -2 "$W/trial.log" | tr '\n' ' ')"; nfail=$((nfail + 1)) ;;
      esac
      local before_left=$T_leftovers r=0
      CHECK_OUT=$(python3 "$checker" train --out out/logs/r --gold "$G/B/logs/r" --before "$S/state/before.json" --save "$S/state/after.json") || r=1
      mv "$S/state/after.json" "$S/state/before.json"
      local line; line=$(head -1 <<<"$CHECK_OUT")
      T_absent=$((T_absent + $(grep -o 'absent=[0-9]*' <<<"$line" | cut -d= -f2)))
      T_old=$((T_old + $(grep -o 'old=[0-9]*' <<<"$line" | cut -d= -f2)))
      T_new=$((T_new + $(grep -o 'new=[0-9]*' <<<"$line" | cut -d= -f2)))
      T_leftovers=$((T_leftovers + $(grep -o 'leftovers=[0-9]*' <<<"$line" | cut -d= -f2)))
      [ "$T_leftovers" -gt "$before_left" ] && left_trials=$((left_trials + 1))
      if [ $r = 1 ]; then
        nfail=$((nfail + 1))
        fail "train: chain $chains, run $runs ($res, delay $delay): $(grep FAIL <<<"$CHECK_OUT" | head -3 | tr '\n' ' ')"
      fi
      [[ $res == finished* ]] && break
    done
    # Resume to the end: the uninterrupted run's checkpoints, byte for byte.
    if ! "${CMD[@]}" >"$W/rerun.log" 2>&1; then
      fail "train: chain $chains: the resumed run failed: $(tail -2 "$W/rerun.log" | tr '\n' ' ')"; nfail=$((nfail + 1))
    fi
    if CHECK_OUT=$(python3 "$checker" train --out out/logs/r --gold "$G/B/logs/r" --final); then
      identical=$((identical + 1))
    else
      nfail=$((nfail + 1))
      fail "train: chain $chains: after resuming: $(grep FAIL <<<"$CHECK_OUT" | head -3 | tr '\n' ' ')"
    fi
  done
  ROW[train]="| train | $runs | $killed ($save_kills in a save, $at_rename at a rename) | $T_absent / $T_old / $T_new | $left_trials | $identical / $chains | $nfail |"
  log "train: $killed kills ($save_kills during a save, $at_rename at a rename) in $runs runs / $chains chains, $nfail failures"
}

# ---------------------------------------------------------------------------------------------------------------
# Full disk: the previous outputs in a tmpfs with room for about half of the new ones.
declare -A DISK
full_disk_command() {
  local name=$1 M=$S/full G=$S/gold/$1 used size_b room rc=0 err problems=()
  [ -d "$G/B" ] || return 0
  spec "$name"
  mkdir -p "$M"
  mount -t tmpfs -o size=1g tmpfs "$M"
  cp -a "$G/A" "$M/out"
  used=$(df --output=used -k "$M" | tail -1)
  size_b=$(pages_k "$G/B")
  [ "$PREV" = always ] && size_b=$((size_b - $(pages_k "$G/A")))  # B holds A (index add)
  room=$(((size_b / 2) / 4 * 4))
  mount -o remount,size=$((used + room))k "$M"
  cd "$M"
  "${CMD[@]}" >"$S/full.log" 2>&1 || rc=$?
  err=$(grep -v '^\s*$' "$S/full.log" | grep -i -m1 'space\|error' || true)
  [ $rc != 0 ] || problems+=("exit status 0")
  grep -qi 'no space\|space left\|ENOSPC\|disk full' "$S/full.log" || problems+=("no 'no space' message")
  # The commands were given paths relative to the mount (out/...): the message must name one.
  grep -q -e "$M" -e "out/" "$S/full.log" || problems+=("the message names no output path")
  # Previous outputs untouched, new ones absent or whole, no temporary left (the process was not killed).
  local out
  case $MODE in
    units) out=$(python3 "$checker" units --out out --new "$G/B" --old "$G/A" --units "$UNITS" --keep "$KEEP" --strict-leftovers) || problems+=("$(grep FAIL <<<"$out" | head -2 | tr '\n' ' ')") ;;
    gallery) out=$(python3 "$checker" gallery --out out/gallery --new "$G/B/gallery" --old "$G/A/gallery" --strict-leftovers) || problems+=("$(grep FAIL <<<"$out" | head -2 | tr '\n' ' ')")
      [[ $out == *"old=1"* ]] || problems+=("the gallery is not the old one") ;;
    train) out=$(python3 "$checker" units --out out --new "$G/B" --old "$G/A" --keep logs/old --ignore logs/r --strict-leftovers) || problems+=("$(grep FAIL <<<"$out" | head -2 | tr '\n' ' ')")
      out=$(python3 "$checker" train --out out/logs/r --gold "$G/B/logs/r" --strict-leftovers) || problems+=("$(grep FAIL <<<"$out" | head -2 | tr '\n' ' ')") ;;
  esac
  cd "$S"
  umount "$M"
  local verdict=ok
  if [ ${#problems[@]} -gt 0 ]; then verdict="FAIL: ${problems[*]}"; fail "$name (full disk): ${problems[*]}"; fi
  DISK[$name]="| $name | $((used + room)) KiB | $rc | ${err:0:150} | $verdict |"
}

# ---------------------------------------------------------------------------------------------------------------
log "cnclip: $CNCLIP; $kills kills per command; scratch $S"
prepare_inputs
for c in "${selected[@]}"; do
  if [ "$c" = extract-features-mpi ] && ! command -v mpirun >/dev/null; then fail "extract-features-mpi: mpirun not found"; continue; fi
  if [ "$c" = train ]; then torture_train; else torture_command "$c"; fi
done
if [ $full_disk = 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    for c in "${selected[@]}"; do log "full disk: $c"; full_disk_command "$c"; done
  else
    log "full-disk section skipped: mounting a tmpfs needs root"; full_disk=0
  fi
fi

echo
echo "### kill -9 torture ($kills kills per command, $(basename "$CNCLIP") $(date +%F))"
echo
echo "| command | runs | kills | after kill: absent / previous / new outputs | runs leaving temporaries | reruns identical | failures |"
echo "| --- | ---: | ---: | --- | ---: | ---: | ---: |"
for c in "${selected[@]}"; do [ -n "${ROW[$c]:-}" ] && echo "${ROW[$c]}"; done
if [ $full_disk = 1 ]; then
  echo
  echo "### full disk (previous outputs in a tmpfs with room for about half of the new ones)"
  echo
  echo "| command | tmpfs size | exit | message | verdict |"
  echo "| --- | ---: | ---: | --- | --- |"
  for c in "${selected[@]}"; do [ -n "${DISK[$c]:-}" ] && echo "${DISK[$c]}"; done
fi
echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "${#failures[@]} failures:"
  printf -- '- %s\n' "${failures[@]}"
  exit 1
fi
echo "no failures"
exit 0
}
