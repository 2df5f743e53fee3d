"""bench/length_size.py: the same held-out people through fixed and phone cameras, beside the mean and probe."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.utils.errors import UserError
from dataset_files import REST_LENGTHS, write_dataset


def test_same_people_through_both_camera_sets(tmp_path, capsys):
    from bench.length_size import main as bench_main
    from train import main as train_main
    torch.set_num_threads(1)
    data = write_dataset(tmp_path / "data", frames=160)
    rng = np.random.default_rng(0)
    bank = REST_LENGTHS * rng.uniform(0.85, 1.15, (120, 1)) * rng.uniform(0.95, 1.05, (120, 16))
    np.savez(tmp_path / "bank.npz", data=bank.astype(np.float32))
    ckpt = tmp_path / "ckpt"
    train_main(["-t", "length", "-d", "tiny", "--data_dir", str(data), "-k", "detections", "-c", str(ckpt),
                "-b", "8", "-l", "64", "--segment_shift", "64", "-e", "1", "-bi", "--length_aug_type", "smpl",
                "--bone_length_aug", str(tmp_path / "bank.npz"), "--device", "cpu"])
    capsys.readouterr()
    argv = ["--ckpt", str(ckpt / "epoch_best.bin"), "--bank", str(tmp_path / "bank.npz"), "--data_dir", str(data),
            "-d", "tiny", "--chunks", "16", "-l", "64", "--views", "1", "--device", "cpu"]
    bench_main(argv)
    lines = capsys.readouterr().out.splitlines()
    fixed, phone = (next(i for i, x in enumerate(lines) if x.startswith(name))
                    for name in ("Human3.6M cameras", "phone cameras"))
    rows = {name: {line[:23].strip(): line[23:].split() for line in lines[start + 1:start + 5]}
            for name, start in (("fixed", fixed), ("phone", phone))}
    assert set(rows["fixed"]) == set(rows["phone"]) == {"model", "model, camera unknown", "mean", "probe"}
    # a model without the camera input reads the same with the camera given or withheld
    assert rows["fixed"]["model"] == rows["fixed"]["model, camera unknown"]
    assert rows["fixed"]["mean"] == rows["phone"]["mean"]  # the same people
    assert rows["fixed"]["model"] != rows["phone"]["model"]  # other 2D
    # the size response: the true size steps by 0.1 of the subject's own size, the sources read theirs
    response = [x for x in lines if x.strip().startswith(("S9:", "S11:"))]
    assert len(response) == 2 and all("slope" in x for x in response)
    true = [float(v) for v in response[0].split("true")[1].split("model")[0].split()]
    assert np.allclose(np.diff(true), 0.1 * true[1], atol=2e-3)  # printed to 3 decimals
    assert any(x.startswith("floor cue") for x in lines)
    with pytest.raises(UserError):
        bench_main([*argv[:-2], "--views", "0"])
