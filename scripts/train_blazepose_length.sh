#!/usr/bin/env bash
# The bone-length model in BlazePose's landmark convention, for
#   python inference.py --video v.mp4 --lifter mediapipe --lengths model_prior \
#       --length_ckpt checkpoint/blazepose_length/epoch_best.bin
# (docs/in_the_wild.md, the per-frame evidence model in BlazePose's convention): the demo dataset's motion (and the
# extra motion where it can be fetched), Anny bodies through the limb prior's keypoint regressor moved by the
# prior's convention offset, random phone-like virtual cameras; the evidence model, 16 cosine epochs. About 5
# minutes on one thread once the demo data exist (measured 5 min 13 s). Usage: bash scripts/train_blazepose_length.sh [CHECKPOINT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-checkpoint/blazepose_length}
$PY setup.py
$PY data/bone_length/generate_blazepose_bank.py --out data/bone_lengths_anny_blazepose.npz
EXTRA=--extra_motion
$PY -c "from common.datasets.extra_motion import fetch_extra_clips; fetch_extra_clips()" || {
  EXTRA=""; echo "note: extra motion unavailable: the model trains on the demo motion only"; }
$PY train.py -t length -bi --length_arch evidence --lr_schedule cosine --length_convention blazepose \
  --cameras virtual $EXTRA --virtual_views 4 -bla data/bone_lengths_anny_blazepose.npz \
  -e 16 -b 64 -l 128 --segment_shift 32 --hidden 64 -drop 0 -lr 2e-3 --noise_2d_px 3 -c "$OUT"
