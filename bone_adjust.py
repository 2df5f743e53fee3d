"""Adjust a lifter's 3D predictions with predicted bone lengths and report the errors before and after.

    python bone_adjust.py --act 3D_prediction/Anatomy3D/action_dict.pkl \
        --pred 3D_prediction/Anatomy3D/prediction.pkl --bone data/lengths_dict.npz

Prints MPJPE, P-MPJPE, N-MPJPE, MPJVE, bone-length error (mm) and bone-direction error (degrees),
action-wise averaged (per action with --print_action), for the unadjusted predictions, the predictions
adjusted with the predicted lengths, adjusted with the lifter's own median lengths (per sequence and bone,
left/right averaged: the length source that needs no model, so every table shows whether the length model
beats it), and adjusted with the ground-truth lengths (the upper bound of what adjustment can give); the
per-bone length error; writes result.csv. See common/adjustment/adjust.py for the formats.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from common.adjustment import adjust
from common.datasets.dataset import resolve_dataset_name
from common.utils.device import add_device_argument, select_device
from common.utils.errors import cli
from common.adjustment.evaluation import BONE_TABLE_TITLE, bone_columns, format_bone_table, format_table, write_csv
from common.utils.validation import ArgumentParser, check_inputs_survive, check_output_file

DEFAULT_PREDICTIONS = Path("3D_prediction/VideoPose3D")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="bone_adjust.py", description=__doc__.split("\n")[0])
    p.add_argument("--act", default=None,
                   help="action_dict.pkl of the predictions (default: next to --pred)")
    p.add_argument("--pred", default=str(DEFAULT_PREDICTIONS / "prediction.pkl"),
                   help="prediction.pkl (list of (T,17,3) in action_dict order) or an npz with key 'predictions' "
                        "(subject -> action -> [4 x (T,17,3)]); camera frame, metres")
    p.add_argument("--gt", default=None,
                   help="ground-truth 3D poses data_3d_<dataset>.npz (default: <data_dir>/data_3d_<dataset>.npz)")
    p.add_argument("--bone", default=None,
                   help="predicted lengths (default: data/lengths_dict.npz, data/lengths_dict_causal.npz with "
                        "--causal)")
    p.add_argument("-d", "--dataset", default="auto", help="dataset name for the default --gt (auto: h36m if "
                                                           "present, else demo)")
    p.add_argument("--data_dir", default="data", help="folder of the dataset files")
    p.add_argument("--print_action", action="store_true", help="print the table for every action category")
    p.add_argument("--causal", action="store_true", help="lengths are per frame, from the causal length model")
    p.add_argument("--plot_frame_error", action="store_true",
                   help="errors against the number of frames the causal model has seen (PNG + CSV); "
                        "implies --causal")
    p.add_argument("--plot_sequence", default=None, metavar="SUBJECT/ACTION/CAMERA",
                   help="plot per-frame bone lengths before/after adjustment of one sequence, e.g. S9/Walk/0")
    p.add_argument("--result_csv", default="result.csv",
                   help="where to write the table; frame_error.* and sequence plots go to the same folder")
    add_device_argument(p)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    device = select_device(args.device)
    if args.plot_frame_error:
        args.causal = True
    pred_path = Path(args.pred)
    act_path = Path(args.act) if args.act else pred_path.parent / "action_dict.pkl"
    dataset = resolve_dataset_name(args.dataset, args.data_dir)
    gt_path = Path(args.gt) if args.gt else Path(args.data_dir) / f"data_3d_{dataset}.npz"
    bone_path = Path(args.bone) if args.bone else Path(args.data_dir) / (
        "lengths_dict_causal.npz" if args.causal else "lengths_dict.npz")
    out_dir = check_output_file(args.result_csv, "--result_csv").parent
    sequence_key = adjust.parse_sequence(args.plot_sequence) if args.plot_sequence else None
    outputs = [("--result_csv", args.result_csv)]
    if args.plot_frame_error:
        outputs += [("--result_csv", out_dir / name) for name in ("frame_error.png", "frame_error.csv")]
    if sequence_key is not None:
        outputs.append(("--result_csv", out_dir / adjust.sequence_plot_name(sequence_key)))
    check_inputs_survive([("--pred", pred_path), ("--act", act_path), ("--gt", gt_path), ("--bone", bone_path)],
                         outputs)

    predictions = adjust.load_predictions(pred_path, act_path if pred_path.suffix != ".npz" else None)
    if sequence_key is not None:
        adjust.check_sequence_key(predictions.keys, sequence_key)
    ground_truth = adjust.load_ground_truth(gt_path, predictions.keys)
    adjust.check_against_ground_truth(predictions, ground_truth)
    lengths = adjust.load_lengths(bone_path, predictions.keys, [len(p) for p in predictions.poses], args.causal)
    data = adjust.prepare(predictions, ground_truth, lengths)
    print(f"{len(data.keys)} sequences, {int(data.offsets[-1])} frames; predictions {pred_path}, "
          f"lengths {bone_path}, ground truth {gt_path}")

    results = adjust.evaluate_adjustment(data, device)
    print(format_table(results, per_action=args.print_action))
    print(format_bone_table(bone_columns(results), BONE_TABLE_TITLE))
    write_csv(args.result_csv, results)
    print(f"wrote {args.result_csv}")

    if args.plot_frame_error:
        curve = adjust.frame_error_curve(data, device=device)
        adjust.save_frame_error(curve, out_dir / "frame_error.png", out_dir / "frame_error.csv")
        print("frames seen  " + "  ".join(f"{n:>10}" for n in curve if n != "frames"))
        for i, f in enumerate(curve["frames"]):
            print(f"{int(f):11d}  " + "  ".join(f"{curve[n][i]:10.1f}" for n in curve if n != "frames"))
        print(f"wrote {out_dir / 'frame_error.png'} and {out_dir / 'frame_error.csv'}")
    if sequence_key is not None:
        path = adjust.plot_sequence(data, sequence_key, out_dir / adjust.sequence_plot_name(sequence_key))
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(cli(main)(sys.argv[1:]))
