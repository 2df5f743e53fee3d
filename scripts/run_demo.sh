#!/usr/bin/env bash
# The main job on the embedded demo dataset, from a fresh machine:
#   install -> build the demo data -> synthetic bone lengths -> train the bone-length model -> predict lengths
#   -> train a VideoPose3D lifter and export its predictions -> bone_adjust.py table
#   -> fine-tune the mix model and evaluate it -> the in-the-wild lifter and mix model (virtual cameras) and
#   their evaluation -> inference.py on the real demo video.
# Short CPU schedules (minutes on 2 cores); the scripts' defaults are the paper's full schedules.
# Stages run one after another: parallel torch jobs on 2 cores slow each other down many times over.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export BLAPOSE_CACHE=${BLAPOSE_CACHE:-$HOME/.cache/blapose}
export MPLBACKEND=Agg
LOG=output/demo_logs
stage() { echo; echo "=== [$(date +%H:%M:%S)] $*"; }

stage "install"
bash scripts/install.sh
mkdir -p "$LOG"

stage "demo dataset (setup.py; a second run does nothing)"
$PY setup.py

stage "synthetic bone lengths from the Anny body model"
(cd data/bone_length && $PY generate_bone_length.py --gender neutral --amount 50000 --align -d demo)

stage "train the bone-length model (the proportion model with per-frame evidence) and, beside it, the paper's Bi-GRU"
# every validation prints the model beside the training bank's mean and the linear 2D probe (docs/length_model.md)
$PY train.py -t length -d demo -bi --length_arch evidence -e 40 --lr_schedule cosine -b 64 -l 128 \
  --segment_shift 128 --hidden 64 -drop 0 -lr 2e-3 --length_aug_type smpl --person_chunks 8 \
  --bone_length_aug data/bone_lengths_anny_neutral_train.npz --select_on synthetic_val \
  -c checkpoint/demo_length --export-training-curves | tee "$LOG/train_length.txt"
$PY train.py -t length -d demo -bi --length_arch gru -e 10 -b 64 -l 128 --segment_shift 128 --hidden 64 -drop 0 \
  -lr 2e-3 --length_aug_type smpl --bone_length_aug data/bone_lengths_anny_neutral_train.npz \
  -c checkpoint/demo_length_gru | tee "$LOG/train_length_gru.txt"

stage "predict bone lengths for every subject (the paper's Bi-GRU's rows first, then the evidence model's: its own size, then the size read through the cameras)"
$PY length_model_inference.py -d demo --ckpt checkpoint/demo_length_gru/epoch_best.bin -bi \
  --subjects S1,S5,S6,S7,S8,S9,S11 --out_dir checkpoint/demo_length_gru | tee "$LOG/length_inference_gru.txt"
$PY length_model_inference.py -d demo --ckpt checkpoint/demo_length/epoch_best.bin -bi \
  --subjects S1,S5,S6,S7,S8,S9,S11 --out_dir checkpoint/demo_length/model_size | tee "$LOG/length_inference_model_size.txt"
# the lengths used downstream: the model's proportions at the size read through the calibrated cameras, one length
# vector per subject (the per-bone median over its sequences; docs/length_model.md, "Reading size through the known
# camera" and "One person, several sequences")
$PY length_model_inference.py -d demo --ckpt checkpoint/demo_length/epoch_best.bin -bi \
  --subjects S1,S5,S6,S7,S8,S9,S11 --floor_size subject --per_subject | tee "$LOG/length_inference.txt"

stage "train a small VideoPose3D lifter and export its test predictions"
$PY train.py -t pose -d demo -arc 3,3,3 -ch 128 -b 128 -e 5 -lrd 0.9 --downsample 4 -c checkpoint/demo_pose \
  --export-training-curves --export_predictions 3D_prediction/VideoPose3D | tee "$LOG/train_pose.txt"

stage "bone_adjust.py: unadjusted / predicted lengths / own median lengths / ground-truth lengths"
$PY bone_adjust.py -d demo --act 3D_prediction/VideoPose3D/action_dict.pkl \
  --pred 3D_prediction/VideoPose3D/prediction.pkl --bone data/lengths_dict.npz \
  --result_csv output/bone_adjust/result.csv | tee "$LOG/bone_adjust.txt"

stage "fine-tune the mix model (frozen length model + the lifter's directions)"
$PY train.py -t mix -d demo -bi --hidden 64 -arc 3,3,3 -e 2 -b 1024 -lr 1e-4 --subset 0.25 \
  --length_model checkpoint/demo_length/epoch_best.bin --direction_model checkpoint/demo_pose/final.bin \
  --bone_length_list data/lengths_list.npz -c checkpoint/demo_mix \
  --export_predictions 3D_prediction/BLAPose_mix --control | tee "$LOG/train_mix.txt"

stage "evaluate the fine-tuned mix model (true MPJPE, P-MPJPE, N-MPJPE, MPJVE, bone errors)"
$PY train.py -t mix -d demo -bi --hidden 64 --mix_model checkpoint/demo_mix/final.bin --evaluate \
  | tee "$LOG/evaluate_mix.txt"

stage "in-the-wild lifter: random phone-like virtual cameras, detector-like 2D noise, extra real motion"
# the extra motion (91 s of BVH from Debian's assimp-testmodels) needs apt-get once; without it the lifter trains
# on the demo motion alone (said here, and in the training log's sequence count)
EXTRA=--extra_motion
$PY -c "from common.datasets.extra_motion import fetch_extra_clips; fetch_extra_clips()" || {
  EXTRA=""; echo "note: extra motion unavailable: the in-the-wild models train on the demo motion only"; }
$PY train.py -t pose -d demo -arc 3,3,3 -ch 128 -b 128 -e 5 -lrd 0.9 --downsample 4 --cameras virtual $EXTRA \
  -c checkpoint/demo_wild | tee "$LOG/train_wild.txt"
$PY train.py -t mix -d demo -bi --hidden 64 -e 2 -b 1024 -lr 1e-4 --subset 0.25 --cameras virtual $EXTRA \
  --length_model checkpoint/demo_length/epoch_best.bin --direction_model checkpoint/demo_wild/final.bin \
  -c checkpoint/demo_wild_mix | tee "$LOG/train_wild_mix.txt"

stage "in-the-wild evaluation: held-out clips through unseen random phone cameras, every lifter x length source"
$PY -m bench.in_the_wild | tee "$LOG/in_the_wild.txt"

stage "inference.py on the real demo video"
# 1) the fine-tuned mix model lifts the BlazePose keypoints of the video;
# 2) the plain lifter's poses, adjusted with the length model (and exported as an npz);
# 3) the paper's --poses mode on those exported poses (any lifter's output works the same way);
# 4) the defaults (no checkpoint: BlazePose's own 3D from the same pass, fused with its 2D, adjusted with its own
#    lengths combined with the population prior of limb proportions);
# 5) the in-the-wild VideoPose3D lifter trained through random virtual phone cameras.
$PY inference.py -bi --finetuned_ckpt checkpoint/demo_mix/final.bin --video data/demo.mp4 \
  --output output/finetuned | tee "$LOG/inference_finetuned.txt"
$PY inference.py -bi --length_ckpt checkpoint/demo_length/epoch_best.bin \
  --lifter_ckpt checkpoint/demo_pose/final.bin --video data/demo.mp4 \
  --keypoints output/finetuned/demo_keypoints_2d.npz --output output/lifter | tee "$LOG/inference_lifter.txt"
$PY inference.py -bi --length_ckpt checkpoint/demo_length/epoch_best.bin --video data/demo.mp4 \
  --keypoints output/finetuned/demo_keypoints_2d.npz --poses output/lifter/demo_lifter_poses.npz \
  --output output/poses | tee "$LOG/inference_poses.txt"
$PY inference.py --video data/demo.mp4 --output output/default | tee "$LOG/inference_default.txt"
# 5) the in-the-wild lifter (virtual cameras) with its own median lengths
$PY inference.py --lifter videopose3d --lifter_ckpt checkpoint/demo_wild/final.bin --lengths self \
  --video data/demo.mp4 --keypoints output/finetuned/demo_keypoints_2d.npz --output output/wild \
  | tee "$LOG/inference_wild.txt"

stage "done"
echo "logs: $LOG/; checkpoints: checkpoint/demo_*; predictions: 3D_prediction/; outputs: output/"
