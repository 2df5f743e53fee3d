"""Predict bone lengths for every sequence of the given subjects with a trained bone-length model.

    python length_model_inference.py --ckpt biGRU_all.bin -bi --subjects S1,S5,S6,S7,S8,S9,S11
    python length_model_inference.py --ckpt GRU.bin --causal          # per-frame lengths (T, 16)
    python length_model_inference.py --subjects S9 --height 1.78      # the person's size fixed by their height
    python length_model_inference.py --subjects S9,S11 --floor_size  # the size read through the calibrated camera
    python length_model_inference.py --subjects S9,S11 --floor_size subject  # one read size per subject
    python length_model_inference.py --subjects S9,S11 --per_subject  # one length vector per subject

Writes ``<out_dir>/lengths_dict.npz`` (key ``lengths``: subject -> action -> [one array per camera]) and
``<out_dir>/lengths_list.npz`` (key ``lengths``: the same arrays in fetch order; (N, 16) when one vector per
sequence), or the ``_causal`` variants. Bidirectional: one (16,) vector per sequence; causal GRU: (T, 16),
row t estimated from frames 0..t (its hidden state carried frame by frame). Left/right pairs are averaged;
metres. When 3D ground truth exists, prints per-subject and per-bone errors (mm) beside the
always-predict-the-training-mean baseline and, with ``--pred`` (a lifter's predictions, bone_adjust.py's
formats), beside the lifter's own per-bone median lengths (left/right averaged, the model-free length source);
with --causal, plots the error against the number of frames seen. Per subject it also prints the model beside the
training bank's mean and the linear 2D probe stored in the checkpoint (absolute / size-free error, mm) and the
predicted and true overall size (a factor of the mean body); ``--height`` keeps the predicted proportions and fixes
the size by the person's height, ``--floor_size`` by the standing height read through each sequence's calibrated
camera in its frames with a foot planted on the floor (:func:`common.models.length_probe.floor_height_log`;
calibrated on the training subjects), per sequence or, with ``--floor_size subject``, pooled over each subject's
sequences (the median). ``--per_subject`` gives every sequence of a subject the subject's per-bone median of its
sequences' log lengths (:func:`common.models.length_probe.pooled_lengths`; the probe's row pooled the same way, the
sequences' own row printed beside); a model trained with ``--person_chunks`` is read a second time for this, its
frames' measurements pooled instead of its readings (:func:`common.models.proportion_model.person_readings`). A model trained with ``--camera_input`` reads each sequence's calibrated camera
(``--no_camera``: withheld).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from common.core.bones import final_lengths
from common.utils.checkpoint import default_checkpoint
from common.datasets.dataset import (DEFAULT_KEYPOINTS, TRAIN_SUBJECTS, dataset_files, load_dataset, parse_action_filter, parse_subjects,
                            resolve_dataset_name)
from common.utils.device import add_device_argument, select_device
from common.utils.errors import UserError, cli
from common.utils.fileio import save_npz
from common.adjustment.evaluation import format_bone_table
from common.models.length_model import per_bone_error_mm, predict_sequences
from common.models.length_probe import (FLOOR_MIN_HEIGHT_M, error_row, floor_height_log, floor_sizes,
                                        lower_ankle_height_m, pooled_lengths, pooled_log_sizes,
                                        scale_to_height, sequence_features, size_factor, stored_references)
from common.models.model_loading import load_model
from common.models.proportion_model import person_readings, reads_people
from common.train.train_length import view_cameras
from common.adjustment.adjust import load_predictions
from common.core.bones import median_lengths
from common.output.plots import plot_error_vs_frames
from common.utils.validation import ArgumentParser, check_inputs_survive, check_output_dir, check_output_file, number


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description="Predict bone lengths with a trained bone-length model.")
    p.add_argument("--ckpt", default=None,
                   help="checkpoint (bare names are looked up in checkpoint/; default: biGRU_all.bin for h36m, "
                        "the main job's demo_length/epoch_best.bin for the demo)")
    p.add_argument("--subjects", default="S9,S11", help="subjects, comma-separated")
    p.add_argument("-bi", "--bidirectional", action="store_true", help="the checkpoint is a Bi-GRU")
    p.add_argument("-layer", "--num_layers", type=number(int, ge=1), default=None,
                   help="GRU layers, checked against the checkpoint if given (the architecture is read from it)")
    p.add_argument("--causal", action="store_true", help="per-frame lengths from the causal GRU")
    p.add_argument("-d", "--dataset", default="auto", help="dataset name (auto: h36m if present, else demo)")
    p.add_argument("-k", "--keypoints", default=None, help="2D keypoints (default per dataset)")
    p.add_argument("-a", "--actions", default="*", help="action prefixes, comma-separated, or *")
    p.add_argument("-str", "--subjects-train", dest="subjects_train", default=",".join(TRAIN_SUBJECTS),
                   help="training subjects, for the always-predict-training-mean baseline")
    p.add_argument("--data_dir", default="data", help="folder with the dataset files")
    p.add_argument("--out_dir", default="data", help="where lengths_dict/lengths_list are written")
    p.add_argument("--pred", default=None,
                   help="a lifter's predictions (prediction.pkl + action_dict.pkl beside it, or npz; bone_adjust.py's "
                        "formats): also print the error of its own median lengths")
    p.add_argument("--act", default=None, help="action_dict.pkl of --pred (default: next to it)")
    p.add_argument("--height", type=number(float, gt=0.5, lt=2.6), default=None,
                   help="the person's standing height in metres: fixes the predicted lengths' overall size, keeping "
                        "the model's proportions (rule: common.models.length_probe.stature_m; with several subjects "
                        "the same height for each)")
    p.add_argument("--floor_size", nargs="?", const="sequence", choices=["sequence", "subject"], default=None,
                   help="fix the overall size by the standing height read through each sequence's calibrated camera "
                        "in its frames with a foot planted on the floor (calibrated on the --subjects-train sequences "
                        "and their true lengths), keeping the model's proportions: per sequence (bare --floor_size) "
                        "or one size per subject, the median over its sequences (--floor_size subject; "
                        "docs/length_model.md, Size)")
    p.add_argument("--per_subject", action="store_true",
                   help="one length vector per subject, given to each of its sequences: the per-bone median of its "
                        "sequences' log lengths (after --floor_size / --height); a person's bones are the same in "
                        "every video of them; a model trained with --person_chunks pools its frames' measurements "
                        "(docs/length_model.md, One person, several sequences)")
    p.add_argument("--no_camera", action="store_true",
                   help="withhold each sequence's calibrated camera from a model trained with --camera_input (its "
                        "camera-unknown path, as for a video without calibration); other models never read it")
    p.add_argument("--plot", default=None,
                   help="causal mode: PNG of the error vs frames seen (default <out_dir>/length_error_vs_frames.png)")
    add_device_argument(p)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.floor_size is not None and args.height is not None:
        raise UserError("--floor_size reads the size, --height gives it: use one of them")
    if args.per_subject and args.causal:
        raise UserError("--per_subject pools whole sequences' lengths, --causal gives per-frame lengths: use one of them")
    if args.bidirectional and args.causal:
        raise UserError("-bi (a Bi-GRU, reading whole sequences) and --causal (per-frame lengths of a causal GRU) "
                        "exclude each other: give one of them")
    device = select_device(args.device)
    dataset_name = resolve_dataset_name(args.dataset, args.data_dir)
    subjects = parse_subjects(args.subjects)
    if not subjects:
        raise UserError("--subjects is empty")
    out_dir = check_output_dir(args.out_dir, "--out_dir")
    if args.causal and args.plot:
        check_output_file(args.plot, "--plot")
    suffix = "_causal" if args.causal else ""
    pred = Path(args.pred) if args.pred else None
    check_inputs_survive(
        [("--ckpt", args.ckpt), *(("--data_dir", path) for path in dataset_files(args.data_dir, dataset_name,
                                                                                   args.keypoints)), ("--pred", pred),
         ("--act", args.act or (pred.parent / "action_dict.pkl" if pred and pred.suffix != ".npz" else None))],
        [("--out_dir", out_dir / f"lengths_{kind}{suffix}.npz") for kind in ("dict", "list")]
        + ([("--plot", Path(args.plot) if args.plot else out_dir / "length_error_vs_frames.png")] if args.causal else []))
    loaded = load_model(args.ckpt or default_checkpoint("length", dataset_name), ("length",),
                        bidirectional=args.bidirectional or None, num_layers=args.num_layers, device=device)
    model, path = loaded.model, loaded.path
    if model.bidirectional and args.causal:
        what = "a proportion length model" if loaded.architecture.get("arch") == "proportion" else "a Bi-GRU"
        raise UserError(f"{path} is {what} (it reads whole sequences): --causal needs a causal GRU checkpoint "
                        "(train.py -t length without -bi); without --causal it gives one length vector per sequence")
    dataset = load_dataset(args.data_dir, dataset_name, args.keypoints or DEFAULT_KEYPOINTS.get(dataset_name),
                           need_3d=False, camera_3d=False)
    views = dataset.fetch(subjects, parse_action_filter(args.actions))

    def read(say: bool = True) -> list[np.ndarray]:
        lengths = predict_sequences(model, [v.poses_2d for v in views],
                                    cameras=None if args.no_camera else view_cameras(views))
        if args.floor_size is not None:
            lengths = _floor_sized(dataset, views, lengths, args, loaded.checkpoint, say)
        if args.height is not None:
            lengths = [scale_to_height(p, args.height).astype(np.float32) for p in lengths]
        return lengths if args.causal else [final_lengths(p) for p in lengths]  # causal GRU: after the whole sequence

    predictions = read()
    if args.height is not None:
        print(f"Sizes fixed by --height {args.height:.2f} m (the model's proportions kept)")
    per_sequence = None
    if args.per_subject:
        per_sequence = predictions
        if reads_people(model):  # trained with --person_chunks: its frame measurements are what pools per person
            with person_readings(model):
                predictions = read(say=False)
        predictions = list(pooled_lengths(np.stack(predictions), [v.subject for v in views]))
        print("Lengths pooled per subject (--per_subject): each subject's per-bone median over its sequences"
              + (" of the frames' measurements (a --person_chunks model)" if reads_people(model) else ""))
    lengths_dict: dict[str, dict[str, list[np.ndarray]]] = {}
    for view, pred in zip(views, predictions):
        lengths_dict.setdefault(view.subject, {}).setdefault(view.action, []).append(pred)
    save_npz(out_dir / f"lengths_dict{suffix}.npz", lengths=lengths_dict)
    save_npz(out_dir / f"lengths_list{suffix}.npz",
             lengths=predictions if args.causal else np.stack(predictions).astype(np.float32))
    print(f"Predicted lengths of {len(views)} sequences ({','.join(subjects)}, '{dataset.keypoints}' 2D) -> "
          f"{out_dir / f'lengths_dict{suffix}.npz'}, {out_dir / f'lengths_list{suffix}.npz'}")
    _report(dataset, views, predictions, args, out_dir, loaded.checkpoint, per_sequence)


def _floor_sized(dataset, views, predictions: list[np.ndarray], args: argparse.Namespace,
                 checkpoint: dict, say: bool = True) -> list[np.ndarray]:
    """``--floor_size``: each prediction (16,) or (T, 16) m rescaled to the size read through its view's camera
    (:func:`common.models.length_probe.floor_sizes`, factors of the bank mean stored in the checkpoint, else of the
    training subjects' mean), calibrated on the training subjects' views and true lengths (those read upright);
    ``subject``: the median over each subject's read sequences (:func:`common.models.length_probe.pooled_log_sizes`).
    A sequence without enough usable frames or read below :data:`FLOOR_MIN_HEIGHT_M` (nobody stood upright in it)
    keeps the model's size, and so do all of a subject's with ``subject`` when none of them is read."""
    train = [s for s in parse_subjects(args.subjects_train) if s in dataset.world_3d and s in dataset.sequences]
    if not train:
        raise UserError("--floor_size is calibrated on the training subjects' 3D: none of --subjects-train has it")
    mean = stored_references(checkpoint)[0]
    if mean is None:
        mean = np.mean([dataset.gt_bone_lengths(s) for s in train], axis=0)
    ankle = lower_ankle_height_m([p for s in train for p in dataset.world_3d[s].values()])
    train_views = dataset.fetch(train)
    train_reads = np.array([floor_height_log(v.poses_2d, v.camera, ankle) for v in train_views])
    train_sizes = size_factor(np.stack([dataset.gt_bone_lengths(v.subject) for v in train_views]), mean)
    upright = train_reads > np.log(FLOOR_MIN_HEIGHT_M)  # NaN (too few usable frames) compares False
    if not upright.any():
        raise UserError("--floor_size: no training sequence shows anybody standing upright to calibrate on")
    reads = np.array([floor_height_log(v.poses_2d, v.camera, ankle) for v in views])
    read = reads > np.log(FLOOR_MIN_HEIGHT_M)
    sizes = floor_sizes(np.where(read, reads, 0.0), train_reads[upright], train_sizes[upright])
    what = f"for {read.sum()} of {len(views)} sequences"
    if args.floor_size == "subject":
        log_sizes, read = pooled_log_sizes(np.log(sizes), [v.subject for v in views], read)
        sizes = np.exp(log_sizes)
        what += f", pooled per subject (median) over {read.sum()} sequences"
    if say:
        print(f"Sizes read through the calibrated cameras (--floor_size {args.floor_size}) {what} "
              f"(lower ankle {ankle:.3f} m above the floor, planted-foot frames; calibrated on {upright.sum()} sequences "
              f"of {','.join(train)}; the model's proportions kept; the others keep the model's size)")
    return [(p * (size / size_factor(np.atleast_2d(p), mean))[:, None]).reshape(p.shape).astype(np.float32)
            if ok else p for p, size, ok in zip(predictions, sizes, read)]


def _report(dataset, views, predictions, args: argparse.Namespace, out_dir: Path, checkpoint: dict,
            per_sequence: list[np.ndarray] | None = None) -> None:
    """Per-subject / per-bone errors against the ground truth, the training-mean baseline, causal curve;
    ``per_sequence``: with --per_subject, the sequences' own lengths before pooling (printed beside)."""
    have_gt = [i for i, v in enumerate(views) if v.subject in dataset.world_3d]
    if not have_gt:
        print("No 3D ground truth for these subjects: errors not reported.")
        return
    final = np.stack([predictions[i] if predictions[i].ndim == 1 else predictions[i][-1] for i in have_gt])
    targets = np.stack([dataset.gt_bone_lengths(views[i].subject) for i in have_gt])
    rows = {}
    for subject in dict.fromkeys(views[i].subject for i in have_gt):
        mask = np.array([views[i].subject == subject for i in have_gt])
        rows[subject] = per_bone_error_mm(final[mask], targets[mask])
    train = [s for s in parse_subjects(args.subjects_train) if s in dataset.world_3d]
    # summary over the subjects the length model's user did not train on (all, if every one is a training one)
    unseen = np.array([views[i].subject not in train for i in have_gt])
    if not unseen.any():
        unseen[:] = True
    summary_subjects = ",".join(dict.fromkeys(views[i].subject for i, u in zip(have_gt, unseen) if u))
    rows[summary_subjects] = per_bone_error_mm(final[unseen], targets[unseen])
    if train:
        mean = np.mean([dataset.gt_bone_lengths(s) for s in train], axis=0)
        rows["training-mean baseline"] = per_bone_error_mm(np.broadcast_to(mean, targets[unseen].shape),
                                                           targets[unseen])
    own_label = None
    if args.pred:
        own = _own_median_lengths(args, [views[i] for i, u in zip(have_gt, unseen) if u])
        matched = np.array([o is not None for o in own])
        if not matched.any():
            raise UserError(f"{args.pred} holds none of the sequences of {summary_subjects}")
        own_lengths = np.stack([o for o in own if o is not None])
        own_label = f"lifter's own median ({matched.sum()} seq.)"
        if per_sequence is not None:  # the model-free source pooled per subject as well
            own_subjects = [views[i].subject for i, u in zip(have_gt, unseen) if u]
            own_lengths = pooled_lengths(own_lengths, [s for s, m in zip(own_subjects, matched) if m])
            own_label = f"lifter's own median, per subject ({matched.sum()} seq.)"
        rows[own_label] = per_bone_error_mm(own_lengths, targets[unseen][matched])
    label = "causal GRU, all frames seen" if args.causal else "length model"
    print(f"Bone-length error (mm) per subject and bone ({label}, '{dataset.keypoints}' 2D); "
          f"the baseline column always predicts the mean of {','.join(train) or '-'}, on {summary_subjects}:")
    print(format_bone_table(rows))
    if train:
        print(f"SUMMARY length model on {summary_subjects}: {rows[summary_subjects].mean():.1f} mm vs "
              f"always-predict-training-mean {rows['training-mean baseline'].mean():.1f} mm"
              + (f" vs the lifter's own median lengths {rows[own_label].mean():.1f} mm" if own_label else ""))
    _print_learning_rows(views, have_gt, final, targets, train, dataset, checkpoint,
                         None if per_sequence is None else np.stack([per_sequence[i] for i in have_gt]))
    if args.causal:
        longest = max(len(predictions[i]) for i in have_gt)
        sums, counts = np.zeros(longest), np.zeros(longest)
        for row, i in enumerate(have_gt):
            err = np.abs(predictions[i] - targets[row]).mean(axis=1) * 1000.0
            sums[: len(err)] += err
            counts[: len(err)] += 1
        curve = sums / counts
        plot = Path(args.plot) if args.plot else out_dir / "length_error_vs_frames.png"
        subjects = ",".join(dict.fromkeys(views[i].subject for i in have_gt))
        plot_error_vs_frames({subjects: curve}, plot)
        marks = [n for n in (1, 10, 50, 100, 250, 500, 1000, 2500, 5000) if n <= longest] + [longest]
        print("error after N frames: " + ", ".join(f"{n}: {curve[n - 1]:.1f} mm" for n in dict.fromkeys(marks)))
        print(f"plot -> {plot}")


def _print_learning_rows(views, have_gt: list[int], final: np.ndarray, targets: np.ndarray, train: list[str],
                         dataset, checkpoint: dict, per_sequence: np.ndarray | None = None) -> None:
    """Per subject, the model beside the training bank's mean and the linear 2D probe stored in the checkpoint
    (:func:`common.models.length_probe.stored_references`; published checkpoints store neither: then the
    training subjects' mean and no probe row), each by mean absolute and size-free error (mm). With
    ``per_sequence`` (N, 16) (``--per_subject``: ``final`` pooled per subject) the probe is pooled the same way and
    the model's sequences before pooling get a row of their own."""
    mean, probe = stored_references(checkpoint)
    mean_label = "bank mean"
    if mean is None and train:
        mean, mean_label = np.mean([dataset.gt_bone_lengths(s) for s in train], axis=0), "training mean"
    features = sequence_features([views[i].poses_2d for i in have_gt]) if probe is not None else None
    print("Per subject, absolute error (mm) / size-free error (mm; each prediction scaled by its best single "
          "factor) / overall-size error (%):")
    subjects = np.array([views[i].subject for i in have_gt])
    probe_lengths = None
    if probe is not None:
        probe_lengths = probe.predict(features)
        if per_sequence is not None:
            probe_lengths = pooled_lengths(probe_lengths, subjects)
    for subject in dict.fromkeys(subjects):
        mask = subjects == subject
        rows = {"model": error_row(final[mask], targets[mask])}
        if per_sequence is not None:
            rows["model per sequence"] = error_row(per_sequence[mask], targets[mask])
        if mean is not None:
            rows[mean_label] = error_row(np.broadcast_to(mean, targets[mask].shape), targets[mask])
        if probe is not None:
            rows["probe"] = error_row(probe_lengths[mask], targets[mask])
        size = ""
        if mean is not None:  # overall size as a factor of the mean body, predicted and true
            size = (f"   size x{size_factor(final[mask], mean).mean():.3f} "
                    f"(true x{size_factor(targets[mask], mean).mean():.3f})")
        print(f"  {subject}: " + "   ".join(f"{k} {v['mae']:.2f} / {v['size_free']:.2f} / {v['size_pct']:.1f}%"
                                           for k, v in rows.items())
              + size)


def _own_median_lengths(args: argparse.Namespace, views) -> list[np.ndarray | None]:
    """Per view: the lifter's own median lengths (16,) metres from ``--pred``, or None if it lacks the view."""
    pred_path = Path(args.pred)
    act = Path(args.act) if args.act else pred_path.parent / "action_dict.pkl"
    predictions = load_predictions(pred_path, act if pred_path.suffix != ".npz" else None)
    by_key = dict(zip(predictions.keys, predictions.poses))
    return [median_lengths(by_key[v.key]) if v.key in by_key else None for v in views]


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
