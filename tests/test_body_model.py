"""Synthetic bone lengths: Anny sampling (linear basis vs Anny's forward), SMPL errors, generator outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.utils.errors import UserError
from common.utils.fileio import load_npz
from common.core.skeleton import SYMMETRIC_BONES

import generate_bone_length
from dataset_files import SUBJECTS, write_dataset

LIMBS = [1, 2, 11, 12]


def _limb_correlation(lengths: np.ndarray) -> float:
    corr = np.corrcoef(lengths[:, LIMBS].T)
    return float((corr.sum() - 4) / 12)


@pytest.fixture(scope="module")
def sampler():
    torch.set_num_threads(1)
    from common.datasets.body_model import AnnySampler
    return AnnySampler("neutral")


def test_linear_basis_matches_anny_forward(sampler):
    phenotype, local = sampler.sample_parameters(4)
    fast = sampler.joints(phenotype, local)
    reference = sampler.joints_reference(phenotype, local)
    torch.testing.assert_close(fast, reference, atol=1e-6, rtol=0)


def test_anny_lengths_plausible_symmetric_and_decorrelated(sampler):
    lengths = sampler.sample(3000, progress=False)
    assert lengths.shape == (3000, 16) and lengths.dtype == np.float32
    for a, b in SYMMETRIC_BONES:
        np.testing.assert_array_equal(lengths[:, a], lengths[:, b])
    mean_mm = lengths.mean(0) * 1000
    assert 300 < mean_mm[1] < 500 and 350 < mean_mm[2] < 520  # thigh, calf
    assert 200 < mean_mm[11] < 330 and 180 < mean_mm[12] < 300  # upper, lower arm
    assert (lengths.std(0) > 0.003).all()
    randomised = _limb_correlation(lengths)
    scale = sampler.local_scale
    sampler.local_scale = 0.0
    try:
        phenotype_only = _limb_correlation(sampler.sample(3000, progress=False))
    finally:
        sampler.local_scale = scale
    assert 0.4 < randomised < 0.8 < phenotype_only + 0.1
    assert randomised < phenotype_only - 0.05


def test_mix_gender_is_binary():
    from common.datasets.body_model import AnnySampler
    mix = AnnySampler("mix", seed=3)
    phenotype, _ = mix.sample_parameters(200)
    assert set(np.unique(phenotype["gender"].numpy())) <= {0.0, 1.0}
    with pytest.raises(UserError):
        AnnySampler("female")


def test_smpl_reports_missing_files(tmp_path):
    with pytest.raises(UserError) as info:
        generate_bone_length.main(["--body_model", "smpl", "--amount", "10", "--smpl_dir", str(tmp_path),
                                   "--out_dir", str(tmp_path), "--device", "cpu"])
    message = str(info.value)
    assert "SMPL_NEUTRAL.pkl" in message and "J_regressor_h36m_correct.npy" in message
    with pytest.raises(UserError) as info:
        generate_bone_length.main(["--body_model", "smpl", "--gender", "mix", "--amount", "10",
                                   "--smpl_dir", str(tmp_path), "--device", "cpu"])
    assert "SMPL_MALE.pkl" in str(info.value) and "SMPL_FEMALE.pkl" in str(info.value)


def test_generator_outputs_names_and_alignment(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", frames=60,
                         actions={s: [f"Act0 {i}"] for i, s in enumerate(SUBJECTS)})
    out = tmp_path / "out"
    generate_bone_length.main(["--gender", "neutral", "--amount", "800", "--align", "-d", "tiny",
                               "--data_dir", str(data), "--out_dir", str(out), "--device", "cpu"])
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bone_lengths_anny_neutral.npz", "bone_lengths_anny_neutral_all.npz",
                     "bone_lengths_anny_neutral_stats.txt", "bone_lengths_anny_neutral_train.npz",
                     "bone_lengths_tiny.npz"]
    raw = load_npz(out / "bone_lengths_anny_neutral.npz")["data"]
    per_subject = load_npz(out / "bone_lengths_tiny.npz")
    subjects = list(per_subject["subjects"])
    assert raw.shape == (800, 16) and per_subject["data"].shape == (7, 16)
    train_mean = per_subject["data"][[subjects.index(s) for s in ("S1", "S5", "S6", "S7", "S8")]].mean(0)
    np.testing.assert_allclose(load_npz(out / "bone_lengths_anny_neutral_train.npz")["data"].mean(0),
                               train_mean, atol=1e-5)
    np.testing.assert_allclose(load_npz(out / "bone_lengths_anny_neutral_all.npz")["data"].mean(0),
                               per_subject["data"].mean(0), atol=1e-5)
    stats = (out / "bone_lengths_anny_neutral_stats.txt").read_text()
    assert "correlation matrix" in stats and "p95" in stats and "r_thigh" in stats
    assert "Generated 800 bone-length vectors in" in capsys.readouterr().out


def test_generator_align_needs_dataset(tmp_path):
    with pytest.raises(UserError, match="data_3d_nope.npz"):
        generate_bone_length.main(["--amount", "10", "--align", "-d", "nope", "--data_dir", str(tmp_path),
                                   "--device", "cpu"])
