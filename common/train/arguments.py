"""Command-line flags of ``train.py`` (VideoPose3D's names plus BLAPose's), shared by the three tasks.

The defaults are the paper's full schedules; the README's demo job passes short ones explicitly. Flags whose
right value depends on the task default to ``None`` in the parser and are resolved by :func:`parse_args` from
:data:`TASK_DEFAULTS`: ``-t length`` and ``-t mix`` take the BLAPose authors' values (their ``train.py``),
``-t pose`` keeps VideoPose3D's.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from common.train.accumulation import DEFAULT_MEMORY_BUDGET_GB, PRECISIONS
from common.adjustment.adjust import PREDICTION_FILES
from common.datasets.dataset import dataset_files, resolve_dataset_name
from common.utils.device import add_device_argument
from common.utils.errors import UserError
from common.utils.validation import ArgumentParser, check_inputs_survive, check_output_dir, number


# Per-task defaults of the flags whose parser default is None (the table of docs/paper_recipe.md).
TASK_DEFAULTS: dict[str, dict[str, object]] = {
    "length": {"learning_rate": 1e-4, "seed": 5731, "architecture": [3, 3, 3, 3], "checkpoint_frequency": 40,
               "num_layers": 1},
    "mix": {"learning_rate": 1e-4, "seed": 5731, "architecture": [3, 3, 3, 3], "checkpoint_frequency": 40},
    "pose": {"learning_rate": 1e-3, "seed": 1234, "architecture": [3, 3, 3], "checkpoint_frequency": 10},
}


# what the trainers write into -c/--checkpoint (checkpoints, histories, figures, the mix model's table)
CHECKPOINT_FOLDER_FILES = ("epoch_*.bin", "final.bin", "control_final.bin", "*_history.json", "*_training_curves.png",
                           "*_time_to_accuracy.png", "result_mix.csv")


# The flags of each task's training recipe (what it trains on and how, besides the architecture, which the
# weights themselves check): stored in every checkpoint and compared when a run is resumed. Not in it: the epochs
# to reach (-e), the learning rate (resumed from the optimizer state), evaluation-only and speed-only flags.
_COMMON_RECIPE = ("dataset", "keypoints", "subjects_train", "actions", "subset", "downsample", "batch_size",
                  "dropout", "lr_decay", "lr_schedule", "data_augmentation", "seed", "select_on", "val_fraction")
_CAMERA_RECIPE = ("cameras", "virtual_views", "virtual_segment", "extra_motion")
RECIPE_FLAGS: dict[str, tuple[str, ...]] = {
    "length": _COMMON_RECIPE + _CAMERA_RECIPE + ("chunk_len", "segment_shift", "length_aug_type", "bone_length_aug",
                                                 "length_init", "noise_2d_px", "translation_std",
                                                 "synthetic_placement", "synthetic_yaw", "length_convention",
                                                 "camera_input", "limb_mix", "jitter_chunks",
                                                 "proportion_spread", "person_chunks"),
    "pose": _COMMON_RECIPE + _CAMERA_RECIPE + ("stride", "disable_optimizations"),
    "mix": _COMMON_RECIPE + _CAMERA_RECIPE + ("bone_length_list",),
}


def training_recipe(args: argparse.Namespace) -> dict[str, object]:
    """``{flag: value}`` of the run's :data:`RECIPE_FLAGS` (flags as typed, e.g. ``--cameras``; plain values)."""
    flags = {action.dest: "/".join(action.option_strings) for action in build_parser()._actions}  # noqa: SLF001
    return {flags[name]: getattr(args, name) for name in RECIPE_FLAGS[args.train_type]}


def _filter_widths(text: str) -> list[int]:
    try:
        widths = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"-arc expects comma-separated odd integers, got {text!r}") from None
    if not widths or any(w < 1 or w % 2 == 0 for w in widths):
        raise argparse.ArgumentTypeError(f"-arc filter widths must be odd positive integers, got {text!r}")
    return widths


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="train.py",
        description="Train/evaluate the BLAPose bone-length model (-t length), a VideoPose3D lifter (-t pose) "
                    "or the fine-tuned mix model (-t mix).")
    p.add_argument("-t", "--train_type", choices=["length", "pose", "mix"], default="length",
                   help="what to train or evaluate")

    g = p.add_argument_group("data")
    g.add_argument("-d", "--dataset", default="auto",
                   help="dataset name: data/data_3d_<dataset>.npz; auto = h36m when its files exist, else demo")
    g.add_argument("-k", "--keypoints", default=None,
                   help="2D keypoints: data/data_2d_<dataset>_<keypoints>.npz (default: cpn_ft_h36m_dbb for h36m, "
                        "detections for demo)")
    g.add_argument("--data_dir", default="data", help="folder holding the dataset files")
    g.add_argument("-str", "--subjects-train", dest="subjects_train", default="S1,S5,S6,S7,S8",
                   help="training subjects, comma-separated")
    g.add_argument("-ste", "--subjects-test", dest="subjects_test", default="S9,S11",
                   help="test subjects, comma-separated")
    g.add_argument("-a", "--actions", default="*", help="action filter, comma-separated prefixes, * for all")
    g.add_argument("-s", "--stride", type=number(int, ge=1), default=1,
                   help="chunk size for the pose lifter's training chunks")
    g.add_argument("--subset", type=number(float, gt=0, le=1), default=1.0, help="fraction of training data to use")
    g.add_argument("--downsample", type=number(int, ge=1), default=1, help="temporal downsampling of the data")
    g.add_argument("--cameras", choices=["dataset", "virtual"], default="dataset",
                   help="training views: the dataset's cameras and 2D keypoints (the paper), or random phone-like "
                        "virtual cameras filming the training subjects' 3D motion with detector-like 2D noise "
                        "(common/datasets/virtual_cameras.py; a lifter for videos in the wild; -t length films its "
                        "synthetic people through them)")
    g.add_argument("--virtual_views", type=number(int, ge=1), default=4,
                   help="--cameras virtual: random cameras per motion segment")
    g.add_argument("--virtual_segment", type=number(int, ge=2), default=250,
                   help="--cameras virtual: frames per segment filmed by one camera (-t length --extra_motion "
                        "through the dataset's cameras: frames per window placed in front of them)")
    g.add_argument("--extra_motion", action="store_true",
                   help="also train on 91 s of extra real motion (CMU and assimp BVH clips of Debian's "
                        "assimp-testmodels, fetched once into $BLAPOSE_CACHE; common/datasets/extra_motion.py): "
                        "-t pose|mix with --cameras virtual; -t length also through the dataset's cameras (the clips "
                        "placed in each training subject's capture volume, training chunks only)")

    g = p.add_argument_group("checkpoints")
    g.add_argument("-c", "--checkpoint", default="checkpoint", help="folder for checkpoints")
    g.add_argument("--checkpoint-frequency", dest="checkpoint_frequency", type=number(int, ge=0), default=None,
                   help="save epoch_<n>.bin every N epochs (default: 40 for -t length/mix as the authors, "
                        "10 for -t pose as VideoPose3D)")
    g.add_argument("-r", "--resume", default="", help="checkpoint to resume training from (exactly)")
    g.add_argument("--allow_recipe_change", action="store_true",
                   help="resume (-r, --mix_model) although recipe flags (data, cameras, batch, augmentation, ...) "
                        "differ from the checkpoint's; without it such a resume is refused, naming the flags")
    g.add_argument("--evaluate", action="store_true",
                   help="evaluate only: -t length the --length_model (or -r), -t pose -r (default "
                        "<checkpoint>/epoch_best.bin, else final.bin), -t mix the --mix_model (or -r)")
    g.add_argument("--export-training-curves", dest="export_training_curves", action="store_true",
                   help="save training curves as PNG in the checkpoint folder")
    g.add_argument("--no-eval", dest="no_eval", action="store_true", help="skip per-epoch validation")
    g.add_argument("--export_predictions", default="",
                   help="folder to write prediction.pkl + action_dict.pkl of the test subjects (third-party layout)")

    g = p.add_argument_group("optimisation")
    g.add_argument("-e", "--epochs", type=number(int, ge=0), default=60, help="number of training epochs")
    g.add_argument("-b", "--batch-size", dest="batch_size", type=number(int, ge=1), default=1024, help="batch size")
    g.add_argument("-drop", "--dropout", type=number(float, ge=0, lt=1), default=0.25, help="dropout probability")
    g.add_argument("-lr", "--learning-rate", dest="learning_rate", type=number(float, gt=0), default=None,
                   help="initial learning rate (default: 1e-4 for -t length/mix as the authors, 1e-3 for -t pose "
                        "as VideoPose3D)")
    g.add_argument("-lrd", "--lr-decay", dest="lr_decay", type=number(float, gt=0, le=1), default=0.95,
                   help="lr decay per epoch (--lr_schedule exponential)")
    g.add_argument("--lr_schedule", choices=["exponential", "cosine"], default="exponential",
                   help="exponential (default, the paper's): the lr times -lrd after every epoch; cosine: from -lr "
                        "down to 0 at epoch -e along half a cosine, set before every epoch (-lrd unused)")
    g.add_argument("-no-da", "--no-data-augmentation", dest="data_augmentation", action="store_false",
                   help="disable flip augmentation during training")
    g.add_argument("-no-tta", "--no-test-time-augmentation", dest="test_time_augmentation", action="store_false",
                   help="disable flip test-time augmentation")
    g.add_argument("--seed", type=int, default=None,
                   help="random seed (default: 5731 for -t length/mix as the authors, 1234 for -t pose)")
    g.add_argument("--micro_batch", default="auto",
                   help="split each batch into micro-batches of at most N samples and accumulate their gradients "
                        "(one optimiser step per batch, as the full batch; exact for -t length, per-micro-batch "
                        "BatchNorm statistics for -t pose/mix); auto: the whole batch when its activations fit "
                        "--memory_budget, else the fewest micro-batches that fit")
    g.add_argument("--memory_budget", type=number(float, gt=0), default=DEFAULT_MEMORY_BUDGET_GB,
                   help="GB of training activations one micro-batch may hold (--micro_batch auto)")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="fp32, or bf16 autocast (parameters, optimiser and loss stay fp32); auto: bf16 for the "
                        "GRU length model on devices that compute bf16 natively (AVX-512 BF16/AMX CPUs, CUDA), "
                        "else fp32 (docs/memory_and_speed.md, 'Precision')")

    g = p.add_argument_group("lifter (VideoPose3D)")
    g.add_argument("-arc", "--architecture", type=_filter_widths, default=None,
                   help="filter widths, e.g. 3,3,3 (27 frames), 3,3,3,3 (81), 3,3,3,3,3 (243); default 3,3,3,3 for "
                        "-t mix (the authors'), 3,3,3 for -t pose (VideoPose3D's)")
    g.add_argument("--causal", action="store_true", help="causal convolutions (lifter) / causal GRU evaluation")
    g.add_argument("-ch", "--channels", type=number(int, ge=1), default=1024,
                   help="channels of the lifter's convolutions")
    g.add_argument("--dense", action="store_true", help="dense convolutions instead of dilated")
    g.add_argument("--disable-optimizations", dest="disable_optimizations", action="store_true",
                   help="train the lifter with the whole-sequence model instead of the strided one")

    g = p.add_argument_group("bone-length model")
    g.add_argument("-bi", "--bidirectional", action="store_true",
                   help="one length vector per whole sequence (Bi-GRU / proportion model); without it the causal GRU")
    g.add_argument("--length_arch", choices=["auto", "evidence", "proportion", "gru"], default="auto",
                   help="-t length: proportion (size x proportions from scale-free 2D, docs/length_model.md), "
                        "evidence (the proportion model whose proportions are per-frame readings pooled by their "
                        "confidence; what the main job trains, docs/length_model.md), gru (the paper's GRU), auto "
                        "(default): proportion with -bi, the paper's causal GRU without")
    g.add_argument("--evidence_width", type=number(int, ge=1), default=128,
                   help="-t length --length_arch evidence: width of the per-frame evidence MLP")
    g.add_argument("--evidence_acceleration", action="store_true",
                   help="-t length --length_arch evidence: the per-frame MLP also reads the frame's temporal second "
                        "difference of its normalised pose, where jitter shows (with --jitter_chunks; "
                        "docs/length_model.md)")
    g.add_argument("--camera_input", action="store_true",
                   help="-t length, proportion model: its size branch also reads the filming camera (focal length, "
                        "principal point, pitch/roll and height above the floor), dropped at random in training so "
                        "that callers without a calibrated camera get the 2D-only size (docs/length_model.md, Size)")
    g.add_argument("-layer", "--num_layers", type=number(int, ge=1), default=None,
                   help="GRU layers (default 1 for a new model; checked against a loaded checkpoint if given)")
    g.add_argument("--hidden", type=number(int, ge=1), default=512,
                   help="GRU hidden size (512 in the published models)")
    g.add_argument("-l", "--chunk_len", type=number(int, ge=2), default=512, help="frames per training chunk")
    g.add_argument("--segment_shift", type=number(int, ge=1), default=64,
                   help="frames between the starts of consecutive training chunks (default 64, the authors')")
    g.add_argument("--length_aug_type", choices=["smpl", "random_unif", "random_norm_train", "random_norm_all"],
                   default="smpl", help="how training bone lengths are sampled")
    g.add_argument("-bla", "--bone_length_aug", default="",
                   help="synthetic bone lengths file (key 'data', (N, 16) metres) for --length_aug_type smpl "
                        "(default: <data_dir>/bone_lengths_smpl_neutral_all.npz if present, else "
                        "<data_dir>/bone_lengths_anny_neutral_train.npz)")
    g.add_argument("--length_init", choices=["mean", "default"], default="mean",
                   help="initial output layer: predictions start at the sampled lengths' mean (mean) or torch's "
                        "default initialisation (default, the authors' code)")
    g.add_argument("--length_convention", choices=["h36m", "blazepose"], default="h36m",
                   help="-t length: the joint convention of the -bla bank and so of the model's lengths (stored in "
                        "the checkpoint): h36m (the paper; scored on the real subjects), or blazepose (a bank of "
                        "data/bone_length/generate_blazepose_bank.py, for inference.py --lifter mediapipe --lengths "
                        "model; the real subjects' lengths are in Human3.6M's convention, so only held-out synthetic "
                        "people are scored and select epoch_best.bin; docs/in_the_wild.md)")
    g.add_argument("--select_on", choices=["val", "synthetic_val", "test"], default="val",
                   help="choose epoch_best.bin on held-out training sequences (val), on held-out synthetic people "
                        "through those sequences' motion and cameras (synthetic_val, -t length only) or on the "
                        "test subjects (test, the paper's behaviour)")
    g.add_argument("--val_fraction", type=number(float, ge=0, lt=1), default=0.1,
                   help="share of training sequences held out for model selection")
    g.add_argument("--noise_2d_px", type=number(float, ge=0), default=0.0,
                   help="std (pixels) of temporally correlated (AR(1)) noise added to the synthetic 2D training "
                        "keypoints, to match detector jitter (0 = clean projections, the paper)")
    g.add_argument("--translation_std", type=number(float, ge=0), default=0.5,
                   help="std (metres) of the random camera-frame translation of synthetic chunks (paper: 0.5)")
    g.add_argument("--synthetic_placement", choices=["auto", "paper", "floor"], default="auto",
                   help="where a synthetic body goes: paper (the original pelvis trajectory, translation in 3D), "
                        "floor (feet kept at the motion's floor height, translation along the floor), auto "
                        "(default): floor for the proportion models, paper for the GRU (docs/length_model.md, Size)")
    g.add_argument("--synthetic_yaw", choices=["auto", "on", "off"], default="auto",
                   help="turn each synthetic training chunk by a random angle about the vertical through its mean "
                        "pelvis (every viewpoint of the motion); auto (default): on for the evidence model only")
    g.add_argument("--limb_mix", type=number(float, ge=0, le=1), default=0.0,
                   help="probability per limb (each arm, each leg) that a synthetic training chunk takes that limb's "
                        "pose, relative to the body, from another chunk of the batch (new pose combinations; "
                        "0 = off, the paper)")
    g.add_argument("--jitter_chunks", type=number(float, ge=0, le=1), default=0.0,
                   help="share of the synthetic training chunks that get a 2D detector's jitter (AR(1), the demo "
                        "detections' per-joint std, common/datasets/keypoint_noise.py); the evidence model's per-frame "
                        "likelihood leaves those chunks out (0 = exact projections, the paper)")
    g.add_argument("--proportion_spread", type=number(float, ge=1, le=4), default=1.0,
                   help="--length_aug_type smpl: the training bank's proportions (each row's centred log lengths) "
                        "spread by this factor about their mean, the bank's per-bone mean kept, the held-out people untouched: "
                        "a flatter prior, so that readings pooled over many sequences of one person are less pulled "
                        "to the mean (1 = the bank as it is, the paper; docs/length_model.md, One person, several "
                        "sequences)")

    g.add_argument("--person_chunks", type=number(int, ge=1, le=64), default=1,
                   help="evidence model: every K consecutive synthetic training chunks of a batch are one person (one "
                        "bank row through K motions and cameras), and the model gets a second per-frame output, the "
                        "frames' measurements, trained on the K chunks' frames pooled together: what "
                        "length_model_inference.py --per_subject pools over a person's sequences (1 = off; the main "
                        "job uses 8; docs/length_model.md, Measurements for many sequences of one person)")

    g = p.add_argument_group("mix model (fine-tuning)")
    g.add_argument("--length_model", default="", help="bone-length model checkpoint (frozen)")
    g.add_argument("--direction_model", default="", help="lifter checkpoint that initialises the direction branch")
    g.add_argument("--mix_model", default="", help="mix model checkpoint (resume or evaluate)")
    g.add_argument("--control", action="store_true",
                   help="-t mix: also fine-tune the control, the same lifter from the same checkpoint on the same "
                        "batches, schedule and seed but without the length model (its own poses, same loss); "
                        "saved as control_final.bin and printed beside the mix model (also by --evaluate)")
    g.add_argument("--bone_length_list", default="",
                   help="precomputed lengths per sequence in fetch order (data/lengths_list.npz)")

    add_device_argument(p)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and sanity-check ``train.py`` flags (errors are UserErrors or argparse's usage exit)."""
    args = build_parser().parse_args(argv)
    args.dataset = resolve_dataset_name(args.dataset, args.data_dir)
    writes_checkpoints = not args.evaluate or args.train_type == "mix"  # -t mix --evaluate: result_mix.csv
    if writes_checkpoints:
        check_output_dir(args.checkpoint, "-c/--checkpoint")
    if args.export_predictions:
        check_output_dir(args.export_predictions, "--export_predictions")
    # the checkpoint being resumed (-r, --mix_model) is this run's own earlier state: it may be superseded
    check_inputs_survive(
        [("--length_model", args.length_model), ("--direction_model", args.direction_model),
         ("-bla", args.bone_length_aug), ("--bone_length_list", args.bone_length_list),
         *(("--data_dir", path) for path in dataset_files(args.data_dir, args.dataset, args.keypoints))],
        [("--export_predictions", Path(args.export_predictions) / name) for name in PREDICTION_FILES
         if args.export_predictions],
        [("-c/--checkpoint", args.checkpoint, CHECKPOINT_FOLDER_FILES if not args.evaluate else ("result_mix.csv",))]
        if writes_checkpoints else [])
    if args.length_convention == "blazepose" and (args.train_type != "length" or not args.bone_length_aug):
        raise UserError("--length_convention blazepose needs -t length and -bla <a BlazePose-convention bank> "
                        "(data/bone_length/generate_blazepose_bank.py)")
    if args.select_on == "synthetic_val" and args.train_type != "length":
        raise UserError("--select_on synthetic_val is for -t length (synthetic people); use val or test")
    if args.extra_motion and args.cameras != "virtual" and args.train_type != "length":
        raise UserError("--extra_motion needs --cameras virtual for -t pose|mix (the extra clips have no 2D from the "
                        "dataset's cameras; -t length films them through those cameras itself)")
    for name, value in TASK_DEFAULTS[args.train_type].items():
        if getattr(args, name) is None:
            setattr(args, name, list(value) if isinstance(value, list) else value)
    return args
