#!/usr/bin/env bash
# Several variants of the Multi recipe side by side (on one GPU, or slowly on a CPU): one
# `python -m recipes.multi_recipe` process per NAME=ARGS, all with the same corpus, start model, data, steps and
# batch; NAME's log goes to OUT/NAME.log and its results to OUT/NAME/results.json. For example the ablation of
# attention dropout and dense-found positives:
#
#   benchmarks/multi_parallel.sh CORPUS MODEL DATA OUT 400 32 "base=--attention-dropout 0.1 --rounds 0" \
#       "attn0=--attention-dropout 0 --rounds 0" "dense-pos=--attention-dropout 0 --dense-positives"
#
# CORPUS: output folder of benchmarks.retrieval (psgs_w100.tsv, bm25/); MODEL: the start model ("" for the
# default); DATA: the shared data folder.
set -euo pipefail
corpus=$1 model=$2 data=$3 out=$4 steps=$5 batch=$6
shift 6
common=(--corpus "$corpus" --data "$data" --sampling uniform --batch-size "$batch" --max-steps "$steps" --save-every 100000)
[ -n "$model" ] && common+=(--model "$model")
pids=()
for variant in "$@"; do
    name=${variant%%=*}
    read -r -a extra <<< "${variant#*=}"
    mkdir -p "$out/$name"
    python -m recipes.multi_recipe "${common[@]}" "${extra[@]}" --out "$out/$name" > "$out/$name.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
