#!/bin/bash
# Recall@1/5/10 with cnclip: the commands of cn-clip's README ("Recall计算"), driven by the same variables:
#
#   DATAPATH=... dataset_name=MUGE [split=valid] bash run_scripts/evaluation.sh [t2i|i2t|both]
#
# t2i scores ${split}_predictions.jsonl against ${split}_texts.jsonl into ${output:-output.json} (evaluation.py);
# i2t first writes ${split}_texts.tr.jsonl (transform_ir_annotation_to_tr.py), then scores
# ${split}_tr_predictions.jsonl into ${output_tr:-output_tr.json} (evaluation_tr.py); both (the default) does the
# two. Each result file is printed, as the README's `cat output.json` does. Optional: CNCLIP (the binary).
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
    "${CNCLIP}" evaluation \
        "${dir}/${split}_texts.jsonl" \
        "${dir}/${split}_predictions.jsonl" \
        "${output:-output.json}"
    cat "${output:-output.json}"; echo
fi
if [ "${direction}" != t2i ]; then
    "${CNCLIP}" transform-ir-annotation-to-tr \
        --input "${dir}/${split}_texts.jsonl"
    "${CNCLIP}" evaluation-tr \
        "${dir}/${split}_texts.tr.jsonl" \
        "${dir}/${split}_tr_predictions.jsonl" \
        "${output_tr:-output_tr.json}"
    cat "${output_tr:-output_tr.json}"; echo
fi
