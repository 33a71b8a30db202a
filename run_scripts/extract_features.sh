#!/bin/bash
# Image and text feature extraction with cnclip: the command of cn-clip's README ("图文特征提取"), driven by the
# same variables:
#
#   DATAPATH=... dataset_name=MUGE [split=valid] [resume=...] bash run_scripts/extract_features.sh
#
# Reads ${DATAPATH}/datasets/${dataset_name}/lmdb/${split}/imgs and ${split}_texts.jsonl, writes
# ${split}_imgs.img_feat.jsonl and ${split}_texts.txt_feat.jsonl next to them (the reference's default paths).
# Optional: vision_model (ViT-B-16), text_model (RoBERTa-wwm-ext-base-chinese), context_length (52),
# img_batch_size / text_batch_size (32), CNCLIP (the binary; default `cnclip` on PATH, else .build/release/cnclip).
set -e

: "${DATAPATH:?set DATAPATH as in the reference README}"
: "${dataset_name:?set dataset_name (e.g. MUGE, Flickr30k-CN)}"
CNCLIP=${CNCLIP:-$(command -v cnclip || echo "$(dirname "$0")/../.build/release/cnclip")}
split=${split:-valid} # valid or test
resume=${resume:-${DATAPATH}/pretrained_weights/clip_cn_vit-b-16.pt}
vision_model=${vision_model:-ViT-B-16}
text_model=${text_model:-RoBERTa-wwm-ext-base-chinese}

"${CNCLIP}" extract-features \
    --extract-image-feats \
    --extract-text-feats \
    --image-data="${DATAPATH}/datasets/${dataset_name}/lmdb/${split}/imgs" \
    --text-data="${DATAPATH}/datasets/${dataset_name}/${split}_texts.jsonl" \
    --img-batch-size="${img_batch_size:-32}" \
    --text-batch-size="${text_batch_size:-32}" \
    --context-length="${context_length:-52}" \
    --resume="${resume}" \
    --vision-model="${vision_model}" \
    --text-model="${text_model}"
