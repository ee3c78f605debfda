#!/usr/bin/env bash
# Prepare the data of a TIPC run, offline: the project's seeded generator writes an iSAID-format
# demo data set to ROOT/test_tipc/data/<model_name>/{train,val}/{images,masks}. Nothing is downloaded.
# Usage: bash test_tipc/prepare.sh CONFIG MODE [ROOT]
#   CONFIG  test_tipc/configs/factseg/train_infer_python.txt
#   MODE    lite_train_lite_infer (2 training images of 256x256, 1 validation image)
#           whole_train_whole_infer (16 training and 4 validation images of 512x512)
#   ROOT    the folder the run's relative paths start from (default: the repository)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$REPO/test_tipc/common_func.sh"

if (( $# < 2 )); then
  echo "usage: bash test_tipc/prepare.sh CONFIG MODE [ROOT]  (MODE: lite_train_lite_infer or whole_train_whole_infer)" >&2
  exit 2
fi
CONFIG=$1 MODE=$2 ROOT=${3:-$REPO}
case $MODE in
  lite_train_lite_infer) NUM_TRAIN=2 NUM_VAL=1 SIZE=256 ;;
  whole_train_whole_infer) NUM_TRAIN=16 NUM_VAL=4 SIZE=512 ;;
  *) echo "error: unknown mode '$MODE'; use lite_train_lite_infer or whole_train_whole_infer" >&2; exit 2 ;;
esac
read_tipc_config "$CONFIG"
read_fields << 'EOF'
1 value:MODEL_NAME
2 value:PYTHON
EOF

DATA=$ROOT/test_tipc/data/$MODEL_NAME
rm -rf "$DATA"
mkdir -p "$DATA"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m data.demo --out "$DATA" \
  --num-train "$NUM_TRAIN" --num-val "$NUM_VAL" --size "$SIZE" "$SIZE"
echo "prepared $MODE data for $MODEL_NAME in $DATA"
