#!/usr/bin/env bash
# Finetunes Chinese-CLIP ViT-B-16 + RoBERTa-wwm-ext-base-chinese on MUGE with `cnclip train`, on one machine or
# several: cn-clip's run_scripts/muge_finetune_vit-b-16_rbt-base.sh with the same variables and hyperparameters, launched by mpirun.
#
#   [GPUS_PER_NODE=2] [WORKER_CNT=2 HOSTFILE=hosts] bash run_scripts/muge_finetune_vit-b-16_rbt-base.sh ${DATAPATH} [more cnclip train flags]
#
# Launch variables (GPUS_PER_NODE, WORKER_CNT, HOSTFILE or HOSTS, RANK, MPIRUN_ARGS, CNCLIP, THREADS, DRY_RUN):
# see run_scripts/finetune_launch.sh. Every training variable below can be overridden from the environment
# (e.g. batch_size=64, or use_augment= to leave --use-augment out).
set -euo pipefail

DATAPATH=${1:-}
shift || true
dataset=MUGE

# data options (val_data= with nothing turns validation off)
train_data=${train_data:-${DATAPATH}/datasets/${dataset}/lmdb/train}
val_data=${val_data-${DATAPATH}/datasets/${dataset}/lmdb/valid}

# restore options
resume=${resume-${DATAPATH}/pretrained_weights/clip_cn_vit-b-16.pt}
reset_data_offset=${reset_data_offset---reset-data-offset}
reset_optimizer=${reset_optimizer---reset-optimizer}

# output options
output_base_dir=${output_base_dir:-${DATAPATH}/experiments/}
name=${name:-muge_finetune_vit-b-16_roberta-base_bs128_8gpu}
save_step_frequency=${save_step_frequency:-999999} # never
save_epoch_frequency=${save_epoch_frequency:-1}
log_interval=${log_interval:-1}
report_training_batch_acc=${report_training_batch_acc---report-training-batch-acc}

# training hyperparameters
context_length=${context_length:-52}
warmup=${warmup:-100}
batch_size=${batch_size:-128}
valid_batch_size=${valid_batch_size:-128}
accum_freq=${accum_freq:-1}
lr=${lr:-5e-5}
wd=${wd:-0.001}
max_epochs=${max_epochs:-3}
valid_step_interval=${valid_step_interval:-150}
valid_epoch_interval=${valid_epoch_interval:-1}
vision_model=${vision_model:-ViT-B-16}
text_model=${text_model:-RoBERTa-wwm-ext-base-chinese}
use_augment=${use_augment---use-augment}
train_extra=()

source "$(dirname "${BASH_SOURCE[0]}")/finetune_launch.sh"
