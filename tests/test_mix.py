"""Mix model (frozen bone-length model + VideoPose3D direction branch): unit tests on tiny models, and
end-to-end runs of ``train.py -t mix`` (training, exact resume, evaluation, export) on a small dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.core.bones import bone_directions, bone_lengths
from common.utils.checkpoint import load_checkpoint, load_weights, save_checkpoint
from common.models.length_model import BoneLengthModel
from common.core.metrics import direction_loss, mpjpe
from common.models.mix_model import MixModel
from common.models.model import TemporalModel, TemporalModelOptimized1f
from common.core.skeleton import SYMMETRIC_BONES
from helpers import free_port, mix_flags

torch.set_num_threads(1)
WIDTHS = [3, 3]  # receptive field 9


def _length_model(bidirectional: bool = True) -> BoneLengthModel:
    model = BoneLengthModel(embed_dim=8, hidden_size=8, num_layers=1, dropout=0.5, bidirectional=bidirectional)
    with torch.no_grad():  # positive head weights: positive lengths, like a trained model's
        model.fc.weight.abs_().mul_(0.05)
    return model


def _mix(optimized: bool = False, bidirectional: bool = True, seed: int = 0) -> MixModel:
    torch.manual_seed(seed)
    cls = TemporalModelOptimized1f if optimized else TemporalModel
    return MixModel(_length_model(bidirectional), cls(17, 2, 17, WIDTHS, dropout=0.25, channels=16))


def _inputs(batch: int = 3, frames: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, frames, 17, 2, generator=torch.Generator().manual_seed(seed)) * 0.3


def test_state_dict_names_are_length_model_and_direction_model():
    keys = list(_mix().state_dict())
    assert keys and all(k.startswith(("length_model.", "direction_model.")) for k in keys)
    assert "length_model.fc.weight" in keys and "direction_model.expand_conv.weight" in keys
    assert "direction_model.shrink.bias" in keys


def test_length_model_frozen_and_stays_in_eval_mode():
    model = _mix()
    model.train()
    assert model.training and model.direction_model.training
    assert not model.length_model.training
    assert all(not p.requires_grad for p in model.length_model.parameters())
    assert all(p.requires_grad for p in model.direction_model.parameters())
    assert set(map(id, model.trainable_parameters())) == set(map(id, model.direction_model.parameters()))
    # dropout of the length model is inactive in training mode: two calls give the same lengths
    x = _inputs()
    assert torch.equal(model.predict_lengths(x), model.predict_lengths(x))


def test_output_has_exactly_the_predicted_lengths_in_every_frame():
    model = _mix().eval()
    x = _inputs(frames=20)
    lengths = model.predict_lengths(x)
    assert lengths.shape == (3, 16)
    for a, b in SYMMETRIC_BONES:
        assert torch.allclose(lengths[:, a], lengths[:, b])
    poses, directions = model(x)
    assert poses.shape == (3, 20 - 8, 17, 3) and directions.shape == (3, 12, 16, 3)
    assert torch.allclose(poses[:, :, 0], torch.zeros(3, 12, 3))
    measured = bone_lengths(poses)
    assert torch.allclose(measured, lengths[:, None].expand_as(measured), atol=1e-6)
    # the directions are the branch's own pose directions
    assert torch.allclose(directions, bone_directions(model.direction_model(x)), atol=1e-6)


def test_given_lengths_are_used_per_sequence_and_per_frame():
    model = _mix().eval()
    x = _inputs(batch=2, frames=10)
    given = torch.rand(2, 16) * 0.3 + 0.1
    poses, _ = model(x, given)
    assert torch.allclose(bone_lengths(poses), given[:, None].expand(2, 2, 16), atol=1e-6)
    per_frame = torch.rand(2, 2, 16) * 0.3 + 0.1
    poses, _ = model(x, per_frame)
    assert torch.allclose(bone_lengths(poses), per_frame, atol=1e-6)
    with pytest.raises(ValueError):
        model(x, torch.rand(2, 5, 16))


def test_training_step_changes_directions_only():
    model = _mix(optimized=True).train()
    frozen = {k: v.clone() for k, v in model.length_model.state_dict().items()}
    before = {k: v.clone() for k, v in model.direction_model.state_dict().items()}
    # an optimizer over *all* parameters (with weight decay) must still leave the length model untouched
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x = _inputs(batch=8, frames=9)
    target = torch.randn(8, 1, 17, 3) * 0.2
    target[:, :, 0] = 0
    for _ in range(3):
        optimizer.zero_grad()
        poses, _ = model(x, torch.full((8, 16), 0.2))
        loss = mpjpe(poses, target).mean() + direction_loss(poses, target)
        loss.backward()
        assert all(p.grad is None for p in model.length_model.parameters())
        optimizer.step()
    after = model.length_model.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
    changed = model.direction_model.state_dict()
    assert any(not torch.equal(before[k], changed[k]) for k in before if k.endswith("weight"))


def test_strided_and_dilated_branches_agree():
    train_model = _mix(optimized=True).eval()
    eval_model = _mix(optimized=False, seed=5).eval()
    eval_model.load_state_dict(train_model.state_dict())
    x = _inputs(batch=2, frames=9)
    lengths = torch.rand(2, 16) * 0.3 + 0.1
    a, _ = train_model(x, lengths)
    b, _ = eval_model(x, lengths)
    assert a.shape == b.shape == (2, 1, 17, 3)
    assert torch.allclose(a, b, atol=1e-5)


def test_causal_length_model_gives_per_frame_lengths():
    model = _mix(bidirectional=False).eval()
    x = _inputs(batch=2, frames=9)
    lengths = model.predict_lengths(x)
    assert lengths.shape == (2, 9, 16)
    poses, _ = model(x, lengths[:, -1:])
    assert torch.allclose(bone_lengths(poses), lengths[:, -1:], atol=1e-6)


def test_mix_checkpoint_round_trips(tmp_path):
    model = _mix()
    path = tmp_path / "mix.bin"
    save_checkpoint(path, {"epoch": 3, "lr": 1e-4, "model_pos": model.state_dict()})
    other = _mix(seed=9)
    assert not torch.equal(other.direction_model.expand_conv.weight, model.direction_model.expand_conv.weight)
    state = load_checkpoint(path)
    load_weights(other, {"module." + k: v for k, v in state["model_pos"].items()}, "mix.bin")
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])
    x = _inputs()
    assert torch.allclose(model.eval()(x)[0], other.eval()(x)[0])


# ------------------------------------------------------------------ train.py -t mix, end to end

def _train(argv):
    from train import main
    main(argv)


@pytest.mark.slow
def test_paper_training_and_evaluation_commands(demo_dir, mix_setup, tmp_path, capsys):
    """The paper's two mix commands, unchanged but for a 1-epoch schedule, model size and data location, on the
    demo dataset (S1-S8 train, S9/S11 test, detector-like 2D)."""
    torch.set_num_threads(1)
    out = tmp_path / "out"
    data = ["-d", "demo", "--data_dir", str(demo_dir), "-ch", "32", "--hidden", "16", "--device", "cpu",
            "-c", str(out)]
    paper_train = ["-e", "1", "-b", "1024", "-lr", "4e-5", "-arc", "3,3,3,3,3", "-t", "mix", "-bi",
                   "--length_model", "biGRU_all.bin", "--direction_model", "pretrained_h36m_cpn.bin"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(mix_setup)  # bare checkpoint names resolve in ./checkpoint, as in the paper's README
        _train(paper_train + data)
        final = load_checkpoint(out / "final.bin")
        assert final["epoch"] == 1
        published = load_checkpoint(mix_setup / "checkpoint" / "biGRU_all.bin")["model_pos"]
        for k, v in published.items():  # the frozen length model did not change
            assert torch.equal(final["model_pos"]["length_model." + k], v), k
        lifter = load_checkpoint(mix_setup / "checkpoint" / "pretrained_h36m_cpn.bin")["model_pos"]
        assert any(not torch.equal(final["model_pos"]["direction_model." + k], v)
                   for k, v in lifter.items() if k.endswith("weight"))
        (mix_setup / "checkpoint" / "videopose_finetuned.bin").write_bytes((out / "final.bin").read_bytes())
        capsys.readouterr()
        export = tmp_path / "export"
        _train(["-arc", "3,3,3,3,3", "-t", "mix", "-bi", "--mix_model", "videopose_finetuned.bin", "--evaluate",
                "--export_predictions", str(export)] + data)
    text = capsys.readouterr().out
    for name in ["MPJPE (mm)", "P-MPJPE (mm)", "N-MPJPE (mm)", "MPJVE (mm/frame)", "BoneLenErr (mm)",
                 "BoneDirErr (deg)", "action-wise average", "SUMMARY videopose_finetuned.bin: MPJPE"]:
        assert name in text, name
    assert (out / "result_mix.csv").is_file()
    from common.adjustment.adjust import load_predictions
    from common.core.bones import bone_lengths as lengths_of
    from common.datasets.dataset import load_dataset
    from common.models.length_model import predict_lengths
    predictions = load_predictions(export / "prediction.pkl", export / "action_dict.pkl")
    views = {v.key: v for v in load_dataset(demo_dir, "demo", subjects=["S9", "S11"]).fetch(["S9", "S11"])}
    assert sorted(predictions.keys) == sorted(views)
    # every exported frame has the frozen model's (symmetric) lengths of its whole 2D sequence
    model = BoneLengthModel(embed_dim=256, hidden_size=16, dropout=0.0)
    model.load_state_dict(published)
    for key, poses in zip(predictions.keys, predictions.poses):
        expected = predict_lengths(model, views[key].poses_2d)
        assert poses.shape == views[key].poses_3d.shape
        np.testing.assert_allclose(lengths_of(poses), np.broadcast_to(expected, (len(poses), 16)), atol=1e-5)


@pytest.mark.slow
def test_resume_equals_uninterrupted_and_length_list(mix_setup, tmp_path):
    torch.set_num_threads(1)
    from common.datasets.dataset import load_dataset
    from common.utils.fileio import save_npz
    from common.models.length_model import predict_sequences

    # a lengths list in fetch order (train + test subjects), as length_model_inference.py writes it
    model = BoneLengthModel(embed_dim=256, hidden_size=16, dropout=0.0)
    model.load_state_dict(load_checkpoint(mix_setup / "checkpoint" / "biGRU_all.bin")["model_pos"])
    views = load_dataset(mix_setup, "mixtiny", "gt").fetch(["S1", "S5", "S9"])
    lengths_list = tmp_path / "lengths_list.npz"
    save_npz(lengths_list, lengths=predict_sequences(model, [v.poses_2d for v in views]))

    ckpts = mix_setup / "checkpoint"
    base = ["-t", "mix", "-bi", "-arc", "3,3,3,3,3", "-b", "64", "-lr", "1e-3", "-drop", "0.2",
            "--length_model", str(ckpts / "biGRU_all.bin"), "--direction_model",
            str(ckpts / "pretrained_h36m_cpn.bin"), "--bone_length_list", str(lengths_list)]
    _train(base + mix_flags(mix_setup, "-e", "2", "-c", str(tmp_path / "full"), "--no-eval"))
    _train(base + mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path / "part"), "--no-eval"))
    _train(["-t", "mix", "-bi", "-arc", "3,3,3,3,3", "-b", "64", "-drop", "0.2", "--mix_model",
            str(tmp_path / "part" / "final.bin"), "--bone_length_list", str(lengths_list)]
           + mix_flags(mix_setup, "-e", "2", "-c", str(tmp_path / "part"), "--no-eval"))
    a, b = load_checkpoint(tmp_path / "full" / "final.bin"), load_checkpoint(tmp_path / "part" / "final.bin")
    assert a["epoch"] == b["epoch"] == 2
    assert a["history"]["train_mpjpe"] == b["history"]["train_mpjpe"]
    for k, v in a["model_pos"].items():
        assert torch.equal(v, b["model_pos"][k]), k

    # on-the-fly lengths equal the list's: the first epoch is identical
    _train(base[:-2] + mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path / "fly"), "--no-eval"))
    c = load_checkpoint(tmp_path / "fly" / "final.bin")
    assert np.isclose(c["history"]["train_mpjpe"][0], a["history"]["train_mpjpe"][0], rtol=1e-5)


def test_bad_inputs_are_one_line_errors(mix_setup, tmp_path):
    from common.utils.errors import UserError
    from common.utils.fileio import save_npz

    ckpts = mix_setup / "checkpoint"
    with pytest.raises(UserError, match="--length_model"):
        _train(["-t", "mix", "-bi", "-arc", "3,3,3,3,3"] + mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path)))
    with pytest.raises(UserError, match="is a VideoPose3D lifter checkpoint, not a mix"):
        _train(["-t", "mix", "-bi", "-arc", "3,3,3,3,3", "--evaluate", "--mix_model",
                str(ckpts / "pretrained_h36m_cpn.bin")] + mix_flags(mix_setup, "-c", str(tmp_path)))
    with pytest.raises(UserError, match="is a bone-length model checkpoint, not a VideoPose3D lifter"):  # swapped files
        _train(["-t", "mix", "-bi", "--length_model", str(ckpts / "biGRU_all.bin"),
                "--direction_model", str(ckpts / "biGRU_all.bin")] + mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path)))
    bad_list = tmp_path / "short.npz"
    save_npz(bad_list, lengths=[np.full(16, 0.2, np.float32)] * 3)
    with pytest.raises(UserError, match="holds 3 sequences"):
        _train(["-t", "mix", "-bi", "-arc", "3,3,3,3,3", "--length_model", str(ckpts / "biGRU_all.bin"),
                "--direction_model", str(ckpts / "pretrained_h36m_cpn.bin"), "--bone_length_list", str(bad_list)]
               + mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path)))


@pytest.mark.slow
def test_ddp_two_processes(mix_setup, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    ckpts = mix_setup / "checkpoint"
    lifter = TemporalModel(17, 2, 17, [3, 3, 3], channels=32)
    save_checkpoint(tmp_path / "lifter27.bin", {"model_pos": lifter.state_dict()})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
           str(repo / "train.py"), "-t", "mix", "-bi", "-arc", "3,3,3", "-b", "256", "--no-eval",
           "--length_model", str(ckpts / "biGRU_all.bin"), "--direction_model", str(tmp_path / "lifter27.bin"),
           *mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path))]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "final.bin")
    assert len(ckpt["random_state"]["ranks"]) == 2
    assert not any(k.startswith("module.") for k in ckpt["model_pos"])
    assert any(not torch.equal(ckpt["model_pos"]["direction_model." + k], v)
               for k, v in lifter.state_dict().items() if k.endswith("weight"))
    assert "SUMMARY mix (epoch 1): MPJPE" in proc.stdout and "SUMMARY lifter + adjustment" in proc.stdout


def test_stored_lifter_architecture_wins_overmix_flags(mix_setup, tmp_path, capsys):
    torch.set_num_threads(1)
    lifter = TemporalModel(17, 2, 17, [3, 3, 3], channels=32)
    save_checkpoint(tmp_path / "pose.bin", {"model_pos": lifter.state_dict(), "architecture": [3, 3, 3],
                                            "channels": 32, "causal": False, "dense": False})
    _train(["-t", "mix", "-bi", "-arc", "3,3,3,3,3", "--length_model", str(mix_setup / "checkpoint" / "biGRU_all.bin"),
            "--direction_model", str(tmp_path / "pose.bin")] + mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path),
                                                                      "-ch", "1024"))
    out = capsys.readouterr().out
    assert "architecture [3, 3, 3, 3, 3] -> [3, 3, 3]" in out and "receptive field 27 frames" in out
    assert load_checkpoint(tmp_path / "final.bin")["mix_config"]["architecture"] == [3, 3, 3]


@pytest.mark.slow
def test_control_trains_beside_the_mix_model_without_changing_it(mix_setup, tmp_path, capsys):
    """--control: the mix model's training is identical with and without it; the control lifter starts from the
    same checkpoint, moves, differs from the mix's direction branch, and is printed beside it (also by
    --evaluate)."""
    ckpts = mix_setup / "checkpoint"
    base = ["-t", "mix", "-bi", "-arc", "3,3,3,3,3", "-b", "64", "-lr", "1e-3", "-drop", "0.2",
            "--length_model", str(ckpts / "biGRU_all.bin"), "--direction_model", str(ckpts / "pretrained_h36m_cpn.bin")]
    _train(base + mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path / "plain")))
    capsys.readouterr()
    _train(base + mix_flags(mix_setup, "-e", "1", "-c", str(tmp_path / "ctl"), "--control"))
    text = capsys.readouterr().out
    plain, mix = load_checkpoint(tmp_path / "plain" / "final.bin"), load_checkpoint(tmp_path / "ctl" / "final.bin")
    for k, v in plain["model_pos"].items():
        assert torch.equal(v, mix["model_pos"][k]), k
    control = load_checkpoint(tmp_path / "ctl" / "control_final.bin")["model_pos"]
    start = load_checkpoint(ckpts / "pretrained_h36m_cpn.bin")["model_pos"]
    weights = [k for k in start if k.endswith("conv.weight") or k.startswith("layers_conv")]
    assert any(not torch.equal(control[k], start[k]) for k in weights)
    assert any(not torch.equal(control[k], mix["model_pos"]["direction_model." + k]) for k in weights)
    label = "control: lifter fine-tuned 1 epochs without the length model"
    assert f"SUMMARY {label}: MPJPE" in text and "SUMMARY mix (epoch 1): MPJPE" in text
    _train(["-t", "mix", "-bi", "--mix_model", str(tmp_path / "ctl" / "final.bin"), "--evaluate"]
           + mix_flags(mix_setup, "-c", str(tmp_path / "ctl")))
    assert f"SUMMARY {label}: MPJPE" in capsys.readouterr().out
