# Sourced by the *_finetune_*.sh scripts (not run on its own): turns cn-clip's launch variables into one
# `mpirun … cnclip train …` command. cn-clip starts torch.distributed.launch on every machine; Open MPI's mpirun
# is started once, on the first machine, and reaches the others over ssh through a hostfile.
#
# Launch variables (environment):
#   GPUS_PER_NODE  processes per machine (cn-clip: GPUs per worker). Each process computes on its share of the
#                  machine's cores (cnclip's default --threads). Default 1.
#   WORKER_CNT     machines (cn-clip: GPU workers). Default 1.
#   HOSTFILE       Open MPI hostfile, one machine per line ("host1 slots=2"); required when WORKER_CNT > 1,
#                  unless HOSTS is given. Run the script on one of them (cn-clip's MASTER_ADDR machine): mpirun
#                  starts the processes on every listed machine over ssh.
#   HOSTS          comma-separated machines instead of HOSTFILE ("host1,host2"): a hostfile giving each
#                  GPUS_PER_NODE slots is written to a temporary file, removed when the job ends.
#   RANK           cn-clip's worker rank. Only the machine with RANK=0 (or no RANK) launches the job; on the others
#                  the script says so and exits 0, so starting it on every machine as cn-clip does stays harmless.
#   MASTER_ADDR, MASTER_PORT  not used: mpirun connects the processes itself. To pin its ports (firewalls), pass
#                  e.g. MPIRUN_ARGS="--mca btl_tcp_port_min_v4 8514 --mca btl_tcp_port_range_v4 64".
#   MPIRUN         the launcher (default: mpirun). MPIRUN_ARGS: more mpirun options, split on spaces, e.g.
#                  "--mca btl_tcp_if_include eth0" (the network between the machines) or "--oversubscribe"
#                  (more processes than cores) or "--allow-run-as-root".
#   CNCLIP         the cnclip binary, at the same absolute path on every machine (default: cnclip on PATH, else
#                  this checkout's .build/release/cnclip).
#   THREADS        compute threads per process (cnclip train --threads).
#   DRY_RUN=1      print the command (and a generated hostfile, as "# " lines) instead of running it.
# Arguments after DATAPATH are passed on to `cnclip train` (e.g. --max-steps 100).
#
# The sourcing script sets `dataset` and the training variables (train_data, val_data, resume, name, …, each
# overridable from the environment) and an array `train_extra` of flags only it passes.

set -euo pipefail

if [ -z "${DATAPATH:-}" ]; then
  echo "usage: [GPUS_PER_NODE=N] [WORKER_CNT=M HOSTFILE=hosts] bash $0 DATAPATH [cnclip train flags…]" >&2
  echo "DATAPATH holds datasets/${dataset}/lmdb/{train,valid} and pretrained_weights/, as in cn-clip's README." >&2
  exit 2
fi

GPUS_PER_NODE=${GPUS_PER_NODE:-1}
WORKER_CNT=${WORKER_CNT:-1}
for v in GPUS_PER_NODE WORKER_CNT; do
  if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then echo "$0: $v must be a positive integer, got '${!v}'" >&2; exit 2; fi
done

if [ "${RANK:-0}" != "0" ]; then
  echo "$0: RANK=${RANK}: nothing to do on this machine. With mpirun the job is started once, on the machine" \
       "with RANK=0, which starts the processes here over ssh (listed in its HOSTFILE)." >&2
  exit 0
fi

MPIRUN=${MPIRUN:-mpirun}
CNCLIP=${CNCLIP:-$(command -v cnclip || echo "$(cd "$(dirname "$0")/.." && pwd)/.build/release/cnclip")}
launch=("$MPIRUN" -np "$((GPUS_PER_NODE * WORKER_CNT))" --map-by "ppr:${GPUS_PER_NODE}:node")

hostfile=${HOSTFILE:-}
if [ -z "$hostfile" ] && [ -n "${HOSTS:-}" ]; then
  hostfile=$(mktemp "${TMPDIR:-/tmp}/cnclip-hosts.XXXXXX")
  trap 'rm -f "$hostfile"' EXIT
  IFS=, read -r -a hosts <<< "$HOSTS"
  for h in "${hosts[@]}"; do echo "$h slots=${GPUS_PER_NODE}"; done > "$hostfile"
  if [ "${#hosts[@]}" -ne "$WORKER_CNT" ]; then
    echo "$0: HOSTS names ${#hosts[@]} machines but WORKER_CNT=${WORKER_CNT}" >&2; exit 2
  fi
fi
if [ -n "$hostfile" ]; then
  [ -r "$hostfile" ] || { echo "$0: cannot read HOSTFILE $hostfile" >&2; exit 2; }
  launch+=(--hostfile "$hostfile")
elif [ "$WORKER_CNT" -gt 1 ]; then
  echo "$0: WORKER_CNT=${WORKER_CNT} machines: give them in HOSTFILE (lines like 'host1 slots=${GPUS_PER_NODE}') or HOSTS=host1,host2" >&2
  exit 2
fi
if [ -n "${MPIRUN_ARGS:-}" ]; then
  read -r -a more <<< "$MPIRUN_ARGS"
  launch+=("${more[@]}")
fi

train=("$CNCLIP" train --train-data="${train_data}")
# An empty val_data turns validation off and an empty resume trains from scratch, as leaving them out does.
if [ -n "${val_data}" ]; then train+=(--val-data="${val_data}"); fi
if [ -n "${resume}" ]; then train+=(--resume="${resume}"); fi
# The reference's switches are variables holding the flag or nothing: an empty value leaves the flag out.
for flag in "${reset_data_offset}" "${reset_optimizer}"; do
  if [ -n "$flag" ]; then train+=("$flag"); fi
done
train+=(--logs="${output_base_dir}"
  --name="${name}"
  --save-step-frequency="${save_step_frequency}"
  --save-epoch-frequency="${save_epoch_frequency}"
  --log-interval="${log_interval}")
if [ -n "${report_training_batch_acc}" ]; then train+=("${report_training_batch_acc}"); fi
train+=(--context-length="${context_length}"
  --warmup="${warmup}"
  --batch-size="${batch_size}"
  --valid-batch-size="${valid_batch_size}"
  --valid-step-interval="${valid_step_interval}"
  --valid-epoch-interval="${valid_epoch_interval}"
  --accum-freq="${accum_freq}"
  --lr="${lr}"
  --wd="${wd}"
  --max-epochs="${max_epochs}"
  --vision-model="${vision_model}")
if [ -n "${use_augment}" ]; then train+=("${use_augment}"); fi
train+=(--text-model="${text_model}")
if [ "${#train_extra[@]}" -gt 0 ]; then train+=("${train_extra[@]}"); fi
if [ -n "${THREADS:-}" ]; then train+=(--threads="${THREADS}"); fi
train+=("$@")

if [ "${DRY_RUN:-0}" != "0" ]; then
  if [ -n "${HOSTS:-}" ] && [ -z "${HOSTFILE:-}" ]; then sed 's/^/# /' "$hostfile"; fi
  printf '%q ' "${launch[@]}" "${train[@]}" | sed 's/ $//'
  echo
  exit 0
fi
# Not exec: the EXIT trap removes a generated hostfile once the job ends.
"${launch[@]}" "${train[@]}"
