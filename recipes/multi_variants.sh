#!/usr/bin/env bash
# The Multi recipe's variants side by side, sized for one GPU (it runs on a CPU too, slowly):
#   mined     uniform sampling: STEPS, one self-mining round, STEPS again   -> trained, trained+mined, hybrid
#   control   the same data and sampling for 2 x STEPS, BM25 negatives only  -> self-mining's control
#   keep-old  mined's round 0, then mined negatives that join the BM25 ones -> DPR's BM25 + DPR negatives
# then the per-set fusion ablation over the mined variant. Each variant is `python -m recipes.multi_recipe`.
#
#   benchmarks/multi_variants.sh CORPUS MODEL DATA OUT [STEPS] [BATCH]
#
# CORPUS: output folder of benchmarks.retrieval (psgs_w100.tsv, bm25/); MODEL: the start model;
# DATA: the shared data folder; logs go to OUT/<variant>.log, results to OUT/<variant>/results.json.
set -euo pipefail
corpus=$1 model=$2 data=$3 out=$4 steps=${5:-490} batch=${6:-32}
args=(--corpus "$corpus" --model "$model" --data "$data" --sampling uniform --batch-size "$batch" --save-every 100000)
mkdir -p "$out/mined" "$out/control" "$out/keep-old/run/round-0"

wait_for() {  # wait_for FILE PID: until FILE exists; fail if PID ended first
    until [ -e "$1" ]; do
        kill -0 "$2" 2>/dev/null || { echo "variant $2 ended before writing $1" >&2; exit 1; }
        sleep 2
    done
}

python -m recipes.multi_recipe "${args[@]}" --out "$out/mined" --max-steps "$steps" > "$out/mined.log" 2>&1 &
mined=$!
wait_for "$out/mined/train.json" $mined
cp "$out/mined/train.json" "$out/control/"
cp "$out/mined/train.json" "$out/keep-old/"
python -m recipes.multi_recipe "${args[@]}" --out "$out/control" --max-steps $((2 * steps)) --rounds 0 \
    > "$out/control.log" 2>&1 &
control=$!
wait_for "$out/mined/run/round-0/index/meta.json" $mined
cp -r "$out/mined/run/round-0/"{model,emb,index} "$out/keep-old/run/round-0/"
python -m recipes.multi_recipe "${args[@]}" --out "$out/keep-old" --max-steps "$steps" --keep-old-negatives \
    > "$out/keep-old.log" 2>&1 &
keep_old=$!
wait $mined
python -m benchmarks.ablations.fusion_ablation --corpus "$corpus" --multi "$out/mined" --out "$out/mined/fusion" \
    > "$out/fusion.log" 2>&1
wait $control $keep_old
