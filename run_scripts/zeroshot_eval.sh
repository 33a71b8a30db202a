#!/bin/bash
# Zero-shot image classification with cnclip, called as cn-clip's run_scripts/zeroshot_eval.sh is:
#
#   bash run_scripts/zeroshot_eval.sh 0 ${DATAPATH} ${dataset_name} ${vision_model} ${text_model} ${ckpt_path} [${index_file}]
#
# e.g. bash run_scripts/zeroshot_eval.sh 0 ${DATAPATH} cifar-100 ViT-B-16 RoBERTa-wwm-ext-base-chinese \
#          ${DATAPATH}/pretrained_weights/clip_cn_vit-b-16.pt
#
# Layout, as in the reference: ${DATAPATH}/datasets/${dataset_name}/{label_cn.txt,test/000/...}; the ELEVATER file
# goes to ${DATAPATH}/save_predictions/${dataset_name}.json. The first argument (a GPU id for the reference) is
# accepted and exported as CUDA_VISIBLE_DEVICES, though cnclip computes on the CPU.
# Set CNCLIP to the binary to use (default: `cnclip` on PATH, else .build/release/cnclip).
set -e

export CUDA_VISIBLE_DEVICES=${1}
CNCLIP=${CNCLIP:-$(command -v cnclip || echo "$(dirname "$0")/../.build/release/cnclip")}

path=${2}
dataset=${3}
datapath=${path}/datasets/${dataset}/test
savedir=${path}/save_predictions
vision_model=${4} # ViT-B-16
text_model=${5}
resume=${6}
label_file=${path}/datasets/${dataset}/label_cn.txt
index=${7:-}

mkdir -p "${savedir}"

"${CNCLIP}" zeroshot-eval \
    --datapath="${datapath}" \
    --label-file="${label_file}" \
    --save-dir="${savedir}" \
    --dataset="${dataset}" \
    --index="${index}" \
    --img-batch-size=64 \
    --resume="${resume}" \
    --vision-model="${vision_model}" \
    --text-model="${text_model}"
