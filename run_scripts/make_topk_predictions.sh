#!/bin/bash
# KNN retrieval (top-k) with cnclip: the two commands of cn-clip's README ("KNN检索"), driven by the same variables:
#
#   DATAPATH=... dataset_name=MUGE [split=valid] bash run_scripts/make_topk_predictions.sh [t2i|i2t|both]
#
# t2i (text → image, make_topk_predictions.py) writes ${split}_predictions.jsonl; i2t (image → text,
# make_topk_predictions_tr.py) writes ${split}_tr_predictions.jsonl; both (the default) runs the two.
# Features are read from ${split}_imgs.img_feat.jsonl and ${split}_texts.txt_feat.jsonl (extract_features.sh).
# Optional: top_k (10), eval_batch_size (32768), CNCLIP (the binary).
set -e

: "${DATAPATH:?set DATAPATH as in the reference README}"
: "${dataset_name:?set dataset_name (e.g. MUGE, Flickr30k-CN)}"
CNCLIP=${CNCLIP:-$(command -v cnclip || echo "$(dirname "$0")/../.build/release/cnclip")}
split=${split:-valid} # valid or test
direction=${1:-both}
dir=${DATAPATH}/datasets/${dataset_name}

case "${direction}" in
    t2i|i2t|both) ;;
    *) echo "usage: $0 [t2i|i2t|both]" >&2; exit 2 ;;
esac

if [ "${direction}" != i2t ]; then
    "${CNCLIP}" make-topk-predictions \
        --image-feats="${dir}/${split}_imgs.img_feat.jsonl" \
        --text-feats="${dir}/${split}_texts.txt_feat.jsonl" \
        --top-k="${top_k:-10}" \
        --eval-batch-size="${eval_batch_size:-32768}" \
        --output="${dir}/${split}_predictions.jsonl"
fi
if [ "${direction}" != t2i ]; then
    "${CNCLIP}" make-topk-predictions-tr \
        --image-feats="${dir}/${split}_imgs.img_feat.jsonl" \
        --text-feats="${dir}/${split}_texts.txt_feat.jsonl" \
        --top-k="${top_k:-10}" \
        --eval-batch-size="${eval_batch_size:-32768}" \
        --output="${dir}/${split}_tr_predictions.jsonl"
fi
