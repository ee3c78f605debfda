#!/usr/bin/env bash
# Paddle TIPC driver: reads a train_infer_python.txt and runs train -> eval -> export -> infer,
# writing one "Run successfully" / "Run failed" line per command to
# ROOT/test_tipc/output/<MODE>/results_python.log (each command's output beside it).
# Exits 1 when any command failed, 2 on a usage or config error, 0 otherwise.
#
# Usage: bash test_tipc/test_train_inference_python.sh CONFIG MODE [ROOT]
#          (after bash test_tipc/prepare.sh CONFIG MODE [ROOT])
#        bash test_tipc/test_train_inference_python.sh [MODE] [ROOT]
#          (the factseg config; prepares the data first)
#   MODE  lite_train_lite_infer (default; about a minute on 2 CPU cores) or whole_train_whole_infer
#   ROOT  the folder the config's relative paths start from (default: the repository)
# GPU entries (gpu_list 0 or 0,1; eval --device gpu; infer --use_gpu True) run when Paddle sees a
# CUDA device and are logged as skipped otherwise.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$REPO/test_tipc/common_func.sh"

if [[ ${1:-} == *.txt ]]; then
  CONFIG=$1 MODE=${2:-} ROOT=${3:-$REPO} PREPARE=0
else
  CONFIG=$REPO/test_tipc/configs/factseg/train_infer_python.txt MODE=${1:-lite_train_lite_infer} ROOT=${2:-$REPO}
  PREPARE=1
fi
case $MODE in
  lite_train_lite_infer | whole_train_whole_infer) ;;
  *) echo "error: unknown mode '$MODE'; use lite_train_lite_infer or whole_train_whole_infer" >&2; exit 2 ;;
esac
CONFIG=$(cd "$(dirname "$CONFIG")" 2> /dev/null && pwd)/$(basename "$CONFIG")
read_tipc_config "$CONFIG" || exit 2
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if (( PREPARE )); then
  bash "$REPO/test_tipc/prepare.sh" "$CONFIG" "$MODE" "$ROOT" || exit 2
fi
mkdir -p "$ROOT" && cd "$ROOT" || exit 2

# ---- the config, by line position as in Paddle's TIPC: line number, then what to read from it ----
# (mode: the value for MODE; the message names the line when MODE is missing)
read_fields << 'EOF' || exit 2
1 value:MODEL_NAME
2 value:PYTHON
3 values:GPU_LIST
4 key:TRAIN_GPU_KEY values:TRAIN_GPU_VALUES
5 key:AUTOCAST_KEY values:AUTOCAST_LIST
6 key:ITERS_KEY mode:ITERS
7 key:SAVE_MODEL_KEY
8 key:BATCH_KEY mode:BATCH
9 key:PRETRAIN_KEY value:PRETRAIN_VALUE
10 mode:TRAIN_MODEL_NAME
11 mode:TRAIN_INFER_IMG_DIR
12 key:TRAIN_PARAM_KEY1 mode:TRAIN_PARAM_VALUE1
14 values:TRAINER_LIST
15 value:NORM_TRAIN
23 value:EVAL_PY
24 key:EVAL_KEY1 values:EVAL_VALUES1
27 key:SAVE_INFER_KEY
28 key:EXPORT_WEIGHT_KEY
29 key:EXPORT_SHAPE_KEY value:EXPORT_SHAPE_VALUE
30 value:NORM_EXPORT
40 value:INFERENCE_PY
41 key:INFER_GPU_KEY values:INFER_GPU_LIST
42 key:MKLDNN_KEY values:MKLDNN_LIST
43 key:THREADS_KEY values:THREADS_LIST
44 key:INFER_BATCH_KEY values:INFER_BATCH_LIST
45 key:TRT_KEY values:TRT_LIST
46 key:PRECISION_KEY values:PRECISION_LIST
47 key:INFER_MODEL_KEY
48 key:IMAGE_KEY value:IMAGE_VALUE
51 key:INFER_KEY1
52 key:INFER_KEY2 value:INFER_VALUE2
EOF

if [[ ! -e $TRAIN_INFER_IMG_DIR ]]; then
  echo "error: no data at $ROOT/$TRAIN_INFER_IMG_DIR; run bash test_tipc/prepare.sh $CONFIG $MODE${3:+ $ROOT} first" >&2
  exit 2
fi
HAS_GPU=$("$PYTHON" -c 'import paddle; print(int(paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0))' 2> /dev/null || echo 0)

OUT=test_tipc/output/$MODE
rm -rf "$OUT" && mkdir -p "$OUT"
STATUS_LOG=$OUT/results_python.log
echo "------------------------ $MODE ------------------------" > "$STATUS_LOG"
FAILURES=0

# run_logged LOG: run CMD with its output in LOG, then log the result line.
run_logged() {
  echo "+ ${CMD[*]}"
  "${CMD[@]}" > "$1" 2>&1
  local status=$?
  (( status != 0 )) && tail -n 15 "$1" >&2
  status_check "$status"
}

skip_gpu() {  # log a GPU command that this machine cannot run
  echo " Skipped (no CUDA device) command - $MODEL_NAME - ${CMD[*]}!  " | tee -a "$STATUS_LOG"
}

# infer_command MODEL_DIR BATCH TAG: CMD, an inference command with the device parameters already in
# FLAGS/OVERRIDES and then those every inference command ends with (model, images, batch size,
# the results folder named by TAG, the last key).
infer_command() {
  append_param "$INFER_MODEL_KEY" "$1"
  append_param "$IMAGE_KEY" "$IMAGE_VALUE"
  append_param "$INFER_BATCH_KEY" "$2"
  append_param "$INFER_KEY1" "$OUT/python_infer_${3}_results"
  append_param "$INFER_KEY2" "$INFER_VALUE2" words
  build_command "$PYTHON" "$INFERENCE_PY"
}

# infer MODEL_DIR: the inference commands over the device, oneDNN, thread, batch and precision lists.
infer() {
  local model_dir=$1 device mkldnn threads batch precision trt tag
  for device in "${INFER_GPU_LIST[@]}"; do
    if [[ $device == True || $device == gpu ]]; then
      for trt in "${TRT_LIST[@]}"; do for precision in "${PRECISION_LIST[@]}"; do for batch in "${INFER_BATCH_LIST[@]}"; do
        tag=gpu_usetrt_${trt}_precision_${precision}_batchsize_${batch}
        FLAGS=() OVERRIDES=()
        append_param "$INFER_GPU_KEY" "$device"
        append_param "$TRT_KEY" "$trt"
        append_param "$PRECISION_KEY" "$precision"
        infer_command "$model_dir" "$batch" "$tag"
        if (( HAS_GPU )); then run_logged "$OUT/python_infer_$tag.log"; else skip_gpu; fi
      done; done; done
    else
      for mkldnn in "${MKLDNN_LIST[@]}"; do for threads in "${THREADS_LIST[@]}"; do
        for batch in "${INFER_BATCH_LIST[@]}"; do for precision in "${PRECISION_LIST[@]}"; do
          tag=cpu_usemkldnn_${mkldnn}_threads_${threads}_precision_${precision}_batchsize_${batch}
          FLAGS=() OVERRIDES=()
          append_param "$INFER_GPU_KEY" "$device"
          append_param "$MKLDNN_KEY" "$mkldnn"
          append_param "$THREADS_KEY" "$threads"
          append_param "$PRECISION_KEY" "$precision"
          infer_command "$model_dir" "$batch" "$tag"
          run_logged "$OUT/python_infer_$tag.log"
        done; done
      done; done
    fi
  done
}

for index in "${!GPU_LIST[@]}"; do
  gpu=${GPU_LIST[index]}
  for autocast in "${AUTOCAST_LIST[@]}"; do
    for trainer in "${TRAINER_LIST[@]}"; do
      [[ $trainer == norm ]] || { echo "error: trainer '$trainer' is not supported (only norm)" >&2; exit 2; }
      [[ $NORM_TRAIN == null ]] && continue
      name=${trainer}_gpus_${gpu}_autocast_${autocast}
      save_dir=$OUT/$name
      FLAGS=() OVERRIDES=()
      append_param "$TRAIN_GPU_KEY" "${TRAIN_GPU_VALUES[index]:-null}"
      append_param "$SAVE_MODEL_KEY" "$save_dir"
      append_param "$AUTOCAST_KEY" "$autocast"
      append_param "$PRETRAIN_KEY" "$PRETRAIN_VALUE"
      append_param "$ITERS_KEY" "$ITERS"
      append_param "$BATCH_KEY" "$BATCH"
      append_param "$TRAIN_PARAM_KEY1" "$TRAIN_PARAM_VALUE1"
      build_command "$PYTHON" "$NORM_TRAIN"
      if [[ $gpu == *,* ]]; then  # several GPUs: Paddle's launcher
        CMD=("$PYTHON" -m paddle.distributed.launch --gpus "$gpu" --log_dir "$save_dir/launch" "${CMD[@]:1}")
      fi
      if [[ $gpu != -1 ]] && (( ! HAS_GPU )); then
        skip_gpu
        continue
      fi
      run_logged "$OUT/$name.log"
      checkpoint=$save_dir/$TRAIN_MODEL_NAME

      if [[ $EVAL_PY != null ]]; then
        FLAGS=() OVERRIDES=()
        append_param "$PRETRAIN_KEY" "$checkpoint"
        append_param "$EVAL_KEY1" "${EVAL_VALUES1[index]:-null}"
        build_command "$PYTHON" "$EVAL_PY"
        run_logged "$OUT/${name}_eval.log"
      fi
      if [[ $NORM_EXPORT != null ]]; then
        FLAGS=() OVERRIDES=()
        append_param "$EXPORT_WEIGHT_KEY" "$checkpoint"
        append_param "$SAVE_INFER_KEY" "$save_dir/static"
        append_param "$EXPORT_SHAPE_KEY" "$EXPORT_SHAPE_VALUE" words
        build_command "$PYTHON" "$NORM_EXPORT"
        run_logged "$OUT/${name}_export.log"
        [[ $INFERENCE_PY != null ]] && infer "$save_dir/static"
      fi
    done
  done
done

if (( FAILURES )); then
  echo "TIPC $MODE: $FAILURES command(s) failed; see $ROOT/$STATUS_LOG" >&2
  exit 1
fi
echo "TIPC $MODE passed: $ROOT/$STATUS_LOG"
