"""The paper's README commands resolve to the authors' recipe (the table of docs/paper_recipe.md).

The expected values are written here by hand from the authors' code (``utils/arguments.py`` and the training
loop of github.com/hs1ang-hsu/BLAPose), independently of ``common/train/arguments.py``: a changed default fails.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

import length_model_inference
from common.train.arguments import parse_args
from common.train.train_mix import BN_MOMENTUM
from common.train.training import LR_FLOOR, make_optimizer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"  # the paper's commands
RECIPE_PAGE = ROOT / "docs" / "paper_recipe.md"  # the recipe table

# dest: (flag in the recipe table, authors' value, ours for -t length / -t mix, ours for -t pose; None = n/a)
RECIPE = {
    "learning_rate": ("-lr", 1e-4, 1e-4, 1e-3),
    "lr_decay": ("-lrd", 0.95, 0.95, 0.95),
    "seed": ("--seed", 5731, 5731, 1234),
    "architecture": ("-arc", [3, 3, 3, 3], [3, 3, 3, 3], [3, 3, 3]),
    "checkpoint_frequency": ("--checkpoint-frequency", 40, 40, 10),
    "segment_shift": ("--segment_shift", 64, 64, None),
    "chunk_len": ("-l", 512, 512, None),
    "dropout": ("-drop", 0.25, 0.25, 0.25),
    "hidden": ("--hidden", 512, 512, None),
    "num_layers": ("-layer", 1, 1, None),
    "batch_size": ("-b", 1024, 1024, 1024),
    "epochs": ("-e", 60, 60, 60),
    "channels": ("-ch", 1024, 1024, 1024),
    "stride": ("-s", 1, 1, 1),
    "data_augmentation": ("-no-da", True, True, True),
    "test_time_augmentation": ("-no-tta", True, True, True),
    "length_aug_type": ("--length_aug_type", "smpl", "smpl", None),
    "translation_std": ("--translation_std", 0.5, 0.5, None),
    "noise_2d_px": ("--noise_2d_px", 0.0, 0.0, None),
    "select_on": ("--select_on", "test", "val", "val"),
    "length_init": ("--length_init", "default", "mean", None),
    "length_arch": ("--length_arch", "gru", "auto", None),
}
FROM_CHECKPOINT = {"num_layers"}  # -t mix: the frozen length model's architecture is read from its weights
ON_PURPOSE = {"select_on", "length_init", "length_arch"}  # documented differences, each with the flag that reproduces the paper

# The paper's train.py commands and the values each passes explicitly.
COMMANDS = {
    "python train.py -e 30 -b 256 -t length -drop 0 --length_aug_type smpl -bi --bone_length_aug "
    "data/bone_lengths_smpl_neutral_all.npz": {"epochs": 30, "batch_size": 256, "dropout": 0.0},
    "python train.py -e 30 -b 256 -t length -drop 0 --length_aug_type smpl -bi --bone_length_aug "
    "data/bone_lengths_smpl_neutral_train.npz": {"epochs": 30, "batch_size": 256, "dropout": 0.0},
    "python train.py -e 30 -b 256 -t length -drop 0 --length_aug_type smpl --seed 9487 --bone_length_aug "
    "data/bone_lengths_smpl_neutral_all.npz": {"epochs": 30, "batch_size": 256, "dropout": 0.0, "seed": 9487},
    "python train.py -e 40 -b 1024 -lr 4e-5 -arc 3,3,3,3,3 -t mix -bi --length_model biGRU_all.bin "
    "--direction_model pretrained_h36m_cpn.bin --bone_length_list data/lengths_list.npz":
        {"epochs": 40, "batch_size": 1024, "learning_rate": 4e-5, "architecture": [3, 3, 3, 3, 3]},
    "python train.py -arc 3,3,3,3,3 -t mix -bi --mix_model videopose_finetuned.bin --evaluate":
        {"architecture": [3, 3, 3, 3, 3]},
}


def _cell_value(text: str, like):
    text = text.strip().strip("`")
    if isinstance(like, bool):
        return {"on": True, "off": False}[text]
    if isinstance(like, list):
        return [int(x) for x in text.split(",")]
    if isinstance(like, (int, float)):
        return type(like)(float(text))
    return text


def _recipe_table() -> dict[str, list[str]]:
    """First column's flag (the text in its first backticks) -> the row's cells."""
    rows = {}
    for line in RECIPE_PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].split("`")[1]] = cells
    return rows


def test_recipe_table_matches_the_authors_values():
    rows = _recipe_table()
    for dest, (flag, authors, ours, pose) in RECIPE.items():
        cells = rows[flag]
        assert _cell_value(cells[1], authors) == authors, flag
        assert _cell_value(cells[2], ours) == ours, flag
        assert (cells[3] == "–") if pose is None else _cell_value(cells[3], pose) == pose, flag
        assert (ours != authors) == (dest in ON_PURPOSE), flag


def test_readme_lists_the_paper_commands():
    text = README.read_text()
    for command in COMMANDS:
        assert command in text


@pytest.mark.parametrize("command", list(COMMANDS))
def test_paper_command_resolves_to_the_recipe(command):
    argv = shlex.split(command)[2:]
    args = parse_args(argv)
    explicit = COMMANDS[command]
    for dest, (_, authors, ours, _) in RECIPE.items():
        if dest in FROM_CHECKPOINT and args.train_type == "mix":
            assert getattr(args, dest) is None, dest  # read from the length model's weights
            continue
        expected = explicit.get(dest, ours)
        assert getattr(args, dest) == expected, dest
        if dest not in ON_PURPOSE and dest not in explicit:
            assert getattr(args, dest) == authors, dest
    assert args.bidirectional == ("-bi" in argv)


def test_pose_keeps_videopose3d_defaults():
    args = parse_args(["-t", "pose"])
    for dest, (_, _, _, pose) in RECIPE.items():
        if pose is not None:
            assert getattr(args, dest) == pose, dest


def test_schedule_optimiser_and_batchnorm_constants():
    assert LR_FLOOR == 1e-6
    assert BN_MOMENTUM == 0.001
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(2))], 1e-4)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert group["amsgrad"] is True and group["weight_decay"] == 0 and group["betas"] == (0.9, 0.999)
    assert group["eps"] == 1e-8 and group["lr"] == 1e-4


def test_length_inference_defaults():
    args = length_model_inference.build_parser().parse_args(["--ckpt", "biGRU_all.bin", "-bi"])
    assert args.subjects == "S9,S11"
    assert re.fullmatch(r"data", args.out_dir)
