"""train.py -t pose on a tiny synthetic dataset in the published file format: training, checkpoints,
exact resume, evaluation, export in the third-party layout."""
import pickle

import numpy as np
import pytest
import torch

import bone_adjust
import train
from common.utils.checkpoint import load_checkpoint, save_checkpoint
from common.utils.errors import UserError
from common.utils.fileio import save_npz
from common.train.train_pose import bn_momentum
from helpers import TINY_SUBJECTS, free_port, pose_argv

torch.set_num_threads(1)

LENGTHS = np.array([0.13, 0.45, 0.44, 0.13, 0.45, 0.44, 0.23, 0.25, 0.11, 0.12,
                    0.15, 0.28, 0.25, 0.15, 0.28, 0.25], dtype=np.float32)
def test_bn_momentum_schedule():
    assert bn_momentum(0, 10) == pytest.approx(0.1)
    assert bn_momentum(10, 10) == pytest.approx(0.001)
    assert bn_momentum(5, 10) == pytest.approx(0.01)


@pytest.mark.slow
def test_train_resume_evaluate_export(data_dir, tmp_path, capsys):
    run_a = tmp_path / "a"
    train.main(pose_argv(data_dir, run_a, "-e", "2", "--checkpoint-frequency", "1", "--export-training-curves"))
    out = capsys.readouterr().out
    assert "receptive field 9 frames" in out and "MPJPE" in out
    for name in ("epoch_1.bin", "epoch_2.bin", "final.bin", "pose_training_curves.png"):
        assert (run_a / name).is_file(), name
    state = load_checkpoint(run_a / "final.bin")
    assert state["epoch"] == 2 and state["lr"] == pytest.approx(1e-3 * 0.95 ** 2)
    assert {"model_pos", "optimizer", "random_state"} <= set(state)
    assert "expand_conv.weight" in state["model_pos"] and "layers_conv.1.weight" in state["model_pos"]
    assert len(state["history"]["train"]) == 2

    # resuming from epoch 1 reproduces epoch 2 exactly
    run_b = tmp_path / "b"
    train.main(pose_argv(data_dir, run_b, "-e", "2", "-r", str(run_a / "epoch_1.bin")))
    resumed = load_checkpoint(run_b / "final.bin")
    for k, v in state["model_pos"].items():
        torch.testing.assert_close(resumed["model_pos"][k], v, rtol=0, atol=0, msg=k)
    assert resumed["history"]["train"] == state["history"]["train"]

    # evaluate + export in the third-party layout, then bone_adjust reads it
    export = tmp_path / "3D_prediction" / "VideoPose3D"
    capsys.readouterr()
    train.main(pose_argv(data_dir, run_a, "--evaluate", "-r", str(run_a / "final.bin"), "--export_predictions",
                     str(export)))
    out = capsys.readouterr().out
    assert "N-MPJPE" in out and "-- Walking --" in out
    actions = pickle.load(open(export / "action_dict.pkl", "rb"))
    preds = pickle.load(open(export / "prediction.pkl", "rb"))
    assert actions == {"Walking": [("S9", "Walking"), ("S11", "Walking")],
                       "Eating": [("S9", "Eating 1"), ("S11", "Eating")]}
    assert [p.shape for p in preds[:5]] == [(48, 17, 3)] * 4 + [(48, 17, 3)]
    assert np.all(preds[0][:, 0] == 0)

    lengths = {s: {a: [LENGTHS] * 4 for a in acts} for s, acts in TINY_SUBJECTS.items()}
    save_npz(tmp_path / "lengths_dict.npz", lengths=lengths)
    bone_adjust.main(["--act", str(export / "action_dict.pkl"), "--pred", str(export / "prediction.pkl"),
                      "--bone", str(tmp_path / "lengths_dict.npz"), "-d", "tiny", "--data_dir", str(data_dir),
                      "--result_csv", str(tmp_path / "result.csv")])
    rows = (tmp_path / "result.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 4  # 3 action rows x 4 variants (incl. the own-median lengths)


def test_stored_architecture_wins_also_for_published_layouts(data_dir, tmp_path, capsys):
    train.main(pose_argv(data_dir, tmp_path, "-e", "1", "--no-eval"))
    train.main(pose_argv(data_dir, tmp_path, "--evaluate", "-arc", "3,3,3", "-ch", "32"))
    assert "using the lifter architecture stored" in capsys.readouterr().out
    state = load_checkpoint(tmp_path / "final.bin")
    published = tmp_path / "published.bin"  # published checkpoints carry no architecture entries
    save_checkpoint(published, {"epoch": 1, "lr": 1e-3, "model_pos": state["model_pos"]})
    # widths and channels are read from the weights' shapes: a wrong -arc gets a note, not a failed load
    train.main(pose_argv(data_dir, tmp_path, "--evaluate", "-arc", "3,3,3", "-r", str(published)))
    out = capsys.readouterr().out
    assert "using the lifter architecture stored" in out and "MPJPE" in out
    with pytest.raises(UserError, match="checkpoint not found"):
        train.main(pose_argv(data_dir, tmp_path, "--evaluate", "-r", str(tmp_path / "none.bin")))


def _frozen_batchnorm_lifters(monkeypatch):
    """Make train.py -t pose build lifters whose BatchNorm layers stay in eval mode (fixed statistics), the
    setting in which a micro-batched step must equal the full-batch step."""
    from common.train import train_pose

    real = train_pose.build_lifter

    def build(*args, **kwargs):
        models = real(*args, **kwargs)
        for module in models[0].modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.eval()
                module.train = lambda mode=True, m=module: m  # model.train() leaves it in eval mode
        return models

    monkeypatch.setattr(train_pose, "build_lifter", build)


def test_micro_batches_follow_the_budget_and_equal_the_full_batch_step(data_dir, tmp_path, monkeypatch, capsys):
    """-arc 3,3 -ch 16: 2 convs x 5 tensors x 16 channels x (3 + 1) time steps x 4 bytes = 2560 bytes per sample.
    A budget of 20 samples splits the batch of 64 into 4 micro-batches of 16; the default keeps the batch whole.
    With fixed BatchNorm statistics and no dropout the split run's losses and weights equal the whole batch's;
    with BatchNorm in training mode (the default) they differ, so the flag is not ignored."""
    budget = str(20 * 2560 / 1024 ** 3)
    runs = {}
    for name, extra in (("whole", ()), ("budget", ("--memory_budget", budget)), ("fixed", ("--micro_batch", "16"))):
        for bn in ("train", "frozen"):
            if bn == "frozen":
                _frozen_batchnorm_lifters(monkeypatch)
            else:
                monkeypatch.undo()
            ckpt = tmp_path / f"{name}_{bn}"
            train.main(pose_argv(data_dir, ckpt, "-e", "1", "--no-eval", "-drop", "0", *extra))
            out = capsys.readouterr().out
            assert f"batch 64 per process in micro-batches of {64 if name == 'whole' else 16}" in out
            runs[name, bn] = load_checkpoint(ckpt / "final.bin")
    monkeypatch.undo()
    whole = runs["whole", "frozen"]
    for name in ("budget", "fixed"):
        split = runs[name, "frozen"]
        assert split["history"]["train"] == pytest.approx(whole["history"]["train"], rel=1e-5)
        for k, v in whole["model_pos"].items():
            torch.testing.assert_close(split["model_pos"][k], v, rtol=1e-4, atol=1e-6, msg=k)
        ghost = runs[name, "train"]["model_pos"]["expand_conv.weight"]
        assert not torch.allclose(ghost, runs["whole", "train"]["model_pos"]["expand_conv.weight"],
                                  rtol=1e-4, atol=1e-6)
    moved = whole["model_pos"]["expand_conv.weight"] - runs["whole", "train"]["model_pos"]["expand_conv.weight"]
    assert float(moved.abs().sum()) > 0  # frozen statistics changed the step: the patch took effect


@pytest.mark.slow
def test_torchrun_two_processes_resume_exactly(data_dir, tmp_path):
    """DistributedDataParallel on CPU (gloo): 2 processes train in micro-batches (gradients synchronised once per
    step), rank 0 writes; resuming gives the same weights."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(Path(__file__).resolve().parents[1] / "train.py")

    def torchrun(ckpt, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
               script, *pose_argv(data_dir, ckpt, "-e", "2", "--no-eval", "--micro_batch", "12", *extra)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    out = torchrun(tmp_path / "a", "--checkpoint-frequency", "1")
    assert "2 process(es)" in out and "batch 32 per process in micro-batches of 12" in out
    torchrun(tmp_path / "b", "-r", str(tmp_path / "a" / "epoch_1.bin"))
    a, b = load_checkpoint(tmp_path / "a" / "final.bin"), load_checkpoint(tmp_path / "b" / "final.bin")
    for k, v in a["model_pos"].items():
        torch.testing.assert_close(b["model_pos"][k], v, rtol=0, atol=0, msg=k)


def test_final_bin_is_current_after_every_epoch(data_dir, tmp_path, monkeypatch):
    """A run killed after epoch n leaves final.bin at epoch n (like the length and mix trainers)."""
    from common.train import training

    seen = []
    real = training.save_epoch_checkpoints

    def record(folder, state, epoch, *args, **kwargs):
        real(folder, state, epoch, *args, **kwargs)
        seen.append((epoch, load_checkpoint(tmp_path / "final.bin")["epoch"]))

    monkeypatch.setattr(training, "save_epoch_checkpoints", record)
    train.main(pose_argv(data_dir, tmp_path, "-e", "3", "--no-eval", "--checkpoint-frequency", "0"))
    assert seen == [(1, 1), (2, 2), (3, 3)]
