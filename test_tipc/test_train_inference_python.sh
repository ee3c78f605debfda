#!/usr/bin/env bash
# TIPC-style chain: generate data -> train -> evaluate -> export -> static inference.
# Usage: bash test_tipc/test_train_inference_python.sh [lite_train_lite_infer|whole_train_whole_infer] [OUT_DIR]
# lite_train_lite_infer (default) runs in about a minute on 2 CPU cores; whole_train_whole_infer
# is the full demo schedule. Every step must succeed and leave its outputs, or the script fails.
set -euo pipefail
MODE=${1:-lite_train_lite_infer}
OUT=${2:-test_tipc/output/$MODE}
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
case "$MODE" in
  lite_train_lite_infer) ITERS=6; IMAGES=2 ;;
  whole_train_whole_infer) ITERS=""; IMAGES=16 ;;
  *) echo "unknown mode $MODE (lite_train_lite_infer or whole_train_whole_infer)" >&2; exit 2 ;;
esac
DATA=$OUT/data
rm -rf "$OUT" && mkdir -p "$OUT"
run() {  # run a step, logging to OUT/<script>.log; on failure show the log's end and stop
  local log="$OUT/$(basename "$2" .py).log"
  echo "+ $*"
  "$@" > "$log" 2>&1 || { tail -20 "$log"; echo "FAILED: $*" >&2; exit 1; }
}

run python -m data.demo --out "$DATA" --num-train "$IMAGES" --num-val 1 --size 256 256
OVERRIDES=(data.train.params.image_dir "$DATA/train/images" data.train.params.mask_dir "$DATA/train/masks")
[ -n "$ITERS" ] && OVERRIDES+=(train.num_iters "$ITERS" learning_rate.params.max_iters "$ITERS")
run python apex_train.py --config_path isaid.factseg_demo --model_dir "$OUT/train" "${OVERRIDES[@]}"
CKPT=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['last'])" "$OUT/train/checkpoint_info.json")
run python isaid_eval.py --config_path isaid.factseg_demo --ckpt_path "$OUT/train/$CKPT" \
    --image_dir "$DATA/val/images" --mask_dir "$DATA/val/masks" --log_dir "$OUT/eval" --patch_size 128 --stride 64
run python tools/export_model.py --config_path isaid.factseg_demo --ckpt_path "$OUT/train/$CKPT" \
    --save_dir "$OUT/inference_model" --input_size 128 128
run python tools/infer.py --model_dir "$OUT/inference_model" --image_dir "$DATA/val/images" \
    --out_dir "$OUT/predictions" --stride 64
ls "$OUT"/predictions/*_label.png > /dev/null
echo "TIPC $MODE passed: outputs in $OUT"
