"""Bone-length model: published state-dict layout, forward semantics, long sequences, inference script."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from common.utils.errors import UserError
from common.utils.fileio import load_npz
from common.utils.checkpoint import save_checkpoint
from common.adjustment.evaluation import format_bone_table
from common.models.model_loading import load_model
from common.models.length_model import (BoneLengthModel,
                                 per_bone_error_mm, predict_lengths, predict_sequences)
from common.core.skeleton import SYMMETRIC_BONES, flip_poses
from dataset_files import write_dataset


def _published_state(bidirectional: bool, hidden: int = 16, layers: int = 1) -> dict[str, torch.Tensor]:
    """A state dict built by hand with the published key names and shapes (:mod:`common.models.length_model`)."""
    g = torch.Generator().manual_seed(0)
    sd = {"expand_conv.weight": torch.randn(256, 34, generator=g) * 0.1,
          "expand_conv.bias": torch.randn(256, generator=g) * 0.1,
          "fc.weight": torch.randn(16, 2 * hidden, generator=g) * 0.1}
    prefixes = ["gru."] if bidirectional else ["gru.0.", "gru.1."]
    suffixes = ["", "_reverse"] if bidirectional else [""]
    for prefix in prefixes:
        for layer in range(layers):
            in_size = 256 if layer == 0 else hidden * (2 if bidirectional else 1)
            for sfx in suffixes:
                sd[f"{prefix}weight_ih_l{layer}{sfx}"] = torch.randn(3 * hidden, in_size, generator=g) * 0.1
                sd[f"{prefix}weight_hh_l{layer}{sfx}"] = torch.randn(3 * hidden, hidden, generator=g) * 0.1
                sd[f"{prefix}bias_ih_l{layer}{sfx}"] = torch.randn(3 * hidden, generator=g) * 0.1
                sd[f"{prefix}bias_hh_l{layer}{sfx}"] = torch.randn(3 * hidden, generator=g) * 0.1
    return sd


def _load(tmp_path, state, bidirectional=None, layers=None):
    """Save ``state`` as a published-layout checkpoint and rebuild it with the one loader."""
    save_checkpoint(tmp_path / "length.bin", {"model_pos": state})
    return load_model(tmp_path / "length.bin", ("length",), bidirectional=bidirectional, num_layers=layers).model


@pytest.mark.parametrize("bidirectional,layers", [(True, 1), (True, 2), (False, 1), (False, 2)])
def test_published_checkpoint_loads(tmp_path, bidirectional, layers):
    sd = _published_state(bidirectional, hidden=16, layers=layers)
    model = _load(tmp_path, {"module." + k: v for k, v in sd.items()}, bidirectional, layers)
    assert set(model.state_dict()) == set(sd)
    assert (model.hidden_size, model.num_layers, model.bidirectional) == (16, layers, bidirectional)
    assert model.expand_conv.bias is not None and model.fc.bias is None


def test_bidirectional_forward_matches_published_definition():
    torch.manual_seed(0)
    model = BoneLengthModel(hidden_size=16, dropout=0.0, bidirectional=True).eval()
    x = torch.randn(3, 40, 17, 2) * 0.3
    out = model(x)
    assert out.shape == (3, 16)
    # by hand: final states of both directions (backward first), sigmoid, linear without bias
    emb = torch.relu(model.expand_conv(x.reshape(3, 40, 34)))
    seq, _ = model.gru(emb)
    forward_last, backward_first = seq[:, -1, :16], seq[:, 0, 16:]
    manual = torch.cat([backward_first, forward_last], dim=-1)
    torch.testing.assert_close(out, model.fc(torch.sigmoid(manual)))


def test_causal_outputs_depend_only_on_the_past():
    torch.manual_seed(0)
    model = BoneLengthModel(hidden_size=16, dropout=0.0, bidirectional=False).eval()
    x = torch.randn(2, 30, 17, 2)
    y = x.clone()
    y[:, 20:] += 1.0
    a, b = model(x), model(y)
    assert a.shape == (2, 30, 16)
    torch.testing.assert_close(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


def test_predict_lengths_symmetric_chunked_packed_and_flip():
    torch.manual_seed(0)
    causal = BoneLengthModel(hidden_size=16, bidirectional=False)
    bi = BoneLengthModel(hidden_size=16, bidirectional=True)
    x = np.random.RandomState(0).randn(300, 17, 2).astype(np.float32) * 0.3
    full = predict_lengths(causal, x, chunk_frames=10_000)
    chunked = predict_lengths(causal, x, chunk_frames=37)
    assert full.shape == (300, 16)
    np.testing.assert_allclose(chunked, full, atol=1e-5)
    for a, b in SYMMETRIC_BONES:
        np.testing.assert_array_equal(full[:, a], full[:, b])
    one = predict_lengths(bi, x)
    assert one.shape == (16,)
    seqs = [x[:120], x, x[:7]]
    packed = predict_sequences(bi, seqs)
    for s, p in zip(seqs, packed):
        np.testing.assert_allclose(p, predict_lengths(bi, s), atol=1e-5)
    packed_causal = predict_sequences(causal, seqs)
    np.testing.assert_allclose(packed_causal[1], full, atol=1e-5)
    # flip test-time augmentation is invariant to mirroring the input
    np.testing.assert_allclose(predict_lengths(bi, x, flip_augment=True),
                               predict_lengths(bi, flip_poses(x), flip_augment=True), atol=1e-5)
    assert bi.training  # mode restored


@pytest.mark.slow
def test_fifty_thousand_frames():
    torch.set_num_threads(1)
    x = torch.rand(50_000, 17, 2) - 0.5
    bi = BoneLengthModel(hidden_size=32, bidirectional=True)
    assert predict_lengths(bi, x).shape == (16,)
    causal = BoneLengthModel(hidden_size=32, bidirectional=False)
    assert predict_lengths(causal, x).shape == (50_000, 16)


def test_wrong_architecture_and_input_are_user_errors(tmp_path):
    sd = _published_state(True, hidden=16)
    # The architecture is read from the weights; flags the user gave must agree with them.
    assert _load(tmp_path, sd).hidden_size == 16
    with pytest.raises(UserError, match="holds a bidirectional GRU length model: add -bi"):
        _load(tmp_path, sd, False)
    with pytest.raises(UserError, match=r"has 1 GRU layer\(s\), not -layer 2"):
        _load(tmp_path, sd, True, 2)
    with pytest.raises(UserError, match="holds a causal .* drop -bi"):
        _load(tmp_path, _published_state(False, hidden=16), True)
    broken = dict(sd, **{"gru.weight_hh_l0": sd["gru.weight_hh_l0"][:, :8]})
    with pytest.raises(UserError, match="does not match"):
        _load(tmp_path, broken, True)
    with pytest.raises(UserError):
        predict_lengths(BoneLengthModel(hidden_size=8), np.zeros((10, 16, 2)))


def test_error_helpers():
    err = per_bone_error_mm(np.zeros((2, 16)), np.full((2, 16), 0.01))
    np.testing.assert_allclose(err, 10.0)
    text = format_bone_table({"model": err, "baseline": err * 2})
    assert "r_thigh" in text and "20.0" in text and text.splitlines()[-1].startswith("mean")


# ---------------------------------------------------------------- length_model_inference.py

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("infer")
    data = write_dataset(root / "data", frames=200)
    from train import main as train_main
    for name, flags in (("bi", ["-bi", "--length_arch", "gru"]), ("causal", []), ("proportion", ["-bi"]),
                        ("camera", ["-bi", "--camera_input"])):
        train_main(["-t", "length", "-d", "tiny", "--data_dir", str(data), "-k", "detections", "-e", "1",
                    "-b", "16", "-l", "64", "--hidden", "16", "--length_aug_type", "random_norm_train",
                    "-c", str(root / name), "--device", "cpu", *flags])
    return root, data


@pytest.mark.slow
def test_inference_script_layouts(trained, capsys):
    from length_model_inference import main
    root, data = trained
    common = ["-d", "tiny", "--data_dir", str(data), "-k", "detections", "--device", "cpu",
              "--subjects", "S1,S9,S11"]
    main(["--ckpt", str(root / "bi" / "final.bin"), "-bi", "--out_dir", str(root / "out"), *common])
    out = capsys.readouterr().out
    assert "training-mean baseline" in out and "S9" in out and "SUMMARY" in out
    d = load_npz(root / "out" / "lengths_dict.npz")["lengths"]
    lst = load_npz(root / "out" / "lengths_list.npz")["lengths"]
    assert sorted(d) == ["S1", "S11", "S9"]
    views = [a for s in ("S1", "S9", "S11") for action in d[s] for a in d[s][action]]
    assert all(len(v) == 4 for s in d for v in d[s].values())
    assert lst.shape == (len(views), 16)
    np.testing.assert_array_equal(np.stack(views), lst)  # list is the dict in fetch order

    main(["--ckpt", str(root / "causal" / "final.bin"), "--causal", "--out_dir", str(root / "out"), *common])
    d = load_npz(root / "out" / "lengths_dict_causal.npz")["lengths"]
    first = next(iter(d["S9"].values()))[0]
    assert first.ndim == 2 and first.shape[1] == 16 and first.shape[0] == 200
    assert (root / "out" / "length_error_vs_frames.png").stat().st_size > 1000
    assert "error after N frames" in capsys.readouterr().out

    with pytest.raises(UserError, match="causal"):
        main(["--ckpt", str(root / "bi" / "final.bin"), "-bi", "--causal", *common])
    with pytest.raises(UserError, match="is a Bi-GRU .*--causal needs a causal GRU"):
        main(["--ckpt", str(root / "bi" / "final.bin"), "--causal", *common])
    with pytest.raises(UserError, match="holds a causal .* drop -bi"):
        main(["--ckpt", str(root / "causal" / "final.bin"), "-bi", *common])
    # Without -bi/--causal the architecture comes from the checkpoint: same lengths as with -bi.
    main(["--ckpt", str(root / "bi" / "final.bin"), "--out_dir", str(root / "auto"), *common])
    np.testing.assert_array_equal(load_npz(root / "auto" / "lengths_list.npz")["lengths"], lst)
    with pytest.raises(UserError, match="not found"):
        main(["--ckpt", str(root / "missing.bin"), *common])


@pytest.mark.slow
def test_proportion_model_checkpoint_is_the_new_default(trained, capsys):
    """-bi trains the proportion model (auto); its checkpoint loads by itself, gives one vector per sequence,
    refuses --causal, and the inference script prints its rows beside the stored bank mean and probe."""
    from length_model_inference import main
    from common.models.model_loading import load_model
    from common.models.proportion_model import ProportionLengthModel
    root, data = trained
    loaded = load_model(root / "proportion" / "final.bin", ("length",))
    assert isinstance(loaded.model, ProportionLengthModel) and loaded.model.width == 16
    assert loaded.checkpoint["length_model_config"]["arch"] == "proportion"
    common = ["-d", "tiny", "--data_dir", str(data), "-k", "detections", "--device", "cpu", "--subjects", "S9,S11"]
    main(["--ckpt", str(root / "proportion" / "final.bin"), "--out_dir", str(root / "prop_out"), *common])
    out = capsys.readouterr().out
    assert "probe " in out and "bank mean " in out
    assert load_npz(root / "prop_out" / "lengths_list.npz")["lengths"].shape[1] == 16
    with pytest.raises(UserError, match="is a proportion length model .*--causal needs a causal GRU"):
        main(["--ckpt", str(root / "proportion" / "final.bin"), "--causal", *common])
    # --floor_size: the size read through each view's camera, the model's proportions kept
    main(["--ckpt", str(root / "proportion" / "final.bin"), "--out_dir", str(root / "floor_out"), "--floor_size",
          *common])
    out = capsys.readouterr().out
    read = re.search(r"Sizes read through the calibrated cameras \(--floor_size sequence\) for (\d+) of (\d+)", out)
    assert read and int(read.group(1)) > 0, out
    plain = load_npz(root / "prop_out" / "lengths_list.npz")["lengths"]
    floor = load_npz(root / "floor_out" / "lengths_list.npz")["lengths"]
    ratio = floor / plain
    np.testing.assert_allclose(ratio, ratio[:, :1].repeat(16, 1), rtol=1e-5)  # one factor per sequence
    assert np.abs(ratio[:, 0] - 1).max() > 1e-3  # and the sizes read are not the model's
    # --floor_size subject: one size per subject (the median of its sequences' reads)
    main(["--ckpt", str(root / "proportion" / "final.bin"), "--out_dir", str(root / "floor_subject"),
          "--floor_size", "subject", *common])
    assert "pooled per subject" in capsys.readouterr().out
    pooled = load_npz(root / "floor_subject" / "lengths_dict.npz")["lengths"]
    for subject in ("S9", "S11"):
        lengths = np.stack([a for action in pooled[subject].values() for a in action])
        sizes = np.exp(np.log(lengths).mean(-1))
        np.testing.assert_allclose(sizes, sizes[0], rtol=1e-5)
    with pytest.raises(UserError, match="--floor_size reads the size, --height gives it"):
        main(["--ckpt", str(root / "proportion" / "final.bin"), "--floor_size", "--height", "1.7", *common])
    # --per_subject: every sequence of a subject gets the subject's per-bone median; the sequences' own row beside
    main(["--ckpt", str(root / "proportion" / "final.bin"), "--out_dir", str(root / "per_subject"), "--per_subject",
          *common])
    out = capsys.readouterr().out
    assert "model per sequence " in out, out
    per_subject = load_npz(root / "per_subject" / "lengths_dict.npz")["lengths"]
    own = load_npz(root / "prop_out" / "lengths_dict.npz")["lengths"]
    for subject in ("S9", "S11"):
        lengths = np.stack([a for action in per_subject[subject].values() for a in action])
        np.testing.assert_allclose(lengths, np.broadcast_to(lengths[0], lengths.shape), rtol=1e-6)
        sequences = np.stack([a for action in own[subject].values() for a in action])
        np.testing.assert_allclose(lengths[0], np.exp(np.median(np.log(sequences), axis=0)), rtol=1e-5)
    # ... and with a lifter's predictions (here the true 3D) its own median lengths are pooled per subject too
    from common.datasets.dataset import load_dataset
    from common.utils.fileio import save_npz
    dataset = load_dataset(data, "tiny", "detections")
    predictions = {s: {a: [pose] * 4 for a, pose in dataset.world_3d[s].items()} for s in ("S9", "S11")}
    save_npz(root / "true_poses.npz", predictions=predictions)
    main(["--ckpt", str(root / "proportion" / "final.bin"), "--out_dir", str(root / "per_subject_pred"),
          "--per_subject", "--pred", str(root / "true_poses.npz"), *common])
    own = re.search(r"vs the lifter's own median lengths ([0-9.]+) mm", capsys.readouterr().out)
    assert own and float(own.group(1)) < 0.5
    with pytest.raises(UserError, match="--per_subject pools whole sequences"):
        main(["--ckpt", str(root / "proportion" / "final.bin"), "--per_subject", "--causal", *common])


@pytest.mark.slow
def test_camera_input_model_reads_the_calibrated_camera_unless_withheld(trained, capsys):
    """-bi --camera_input trains a proportion model whose size branch reads the camera; length_model_inference.py
    gives it each view's camera, --no_camera withholds it (the camera-unknown path); the GRU refuses the flag."""
    from length_model_inference import main
    from train import main as train_main
    root, data = trained
    loaded = load_model(root / "camera" / "final.bin", ("length",))
    assert loaded.model.camera_inputs and loaded.checkpoint["length_model_config"]["camera_inputs"]
    common = ["-d", "tiny", "--data_dir", str(data), "-k", "detections", "--device", "cpu", "--subjects", "S9,S11"]
    main(["--ckpt", str(root / "camera" / "final.bin"), "--out_dir", str(root / "cam_out"), *common])
    main(["--ckpt", str(root / "camera" / "final.bin"), "--out_dir", str(root / "nocam_out"), "--no_camera", *common])
    given = load_npz(root / "cam_out" / "lengths_list.npz")["lengths"]
    withheld = load_npz(root / "nocam_out" / "lengths_list.npz")["lengths"]
    assert given.shape == withheld.shape and np.abs(given - withheld).max() > 1e-6
    # the proportions are the camera's business no more than before: only the overall size moves
    ratio = np.log(given / withheld)
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio.mean(-1, keepdims=True), ratio.shape), atol=1e-5)
    # a model without the camera input gives the same with or without it
    main(["--ckpt", str(root / "proportion" / "final.bin"), "--out_dir", str(root / "p_cam"), *common])
    main(["--ckpt", str(root / "proportion" / "final.bin"), "--out_dir", str(root / "p_nocam"), "--no_camera", *common])
    np.testing.assert_array_equal(load_npz(root / "p_cam" / "lengths_list.npz")["lengths"],
                                  load_npz(root / "p_nocam" / "lengths_list.npz")["lengths"])
    capsys.readouterr()
    with pytest.raises(UserError, match="--camera_input is an input of the proportion model"):
        train_main(["-t", "length", "-d", "tiny", "--data_dir", str(data), "-e", "1", "--length_arch", "gru",
                    "--camera_input", "--length_aug_type", "random_norm_train", "-c", str(root / "gru_cam"),
                    "--device", "cpu"])
