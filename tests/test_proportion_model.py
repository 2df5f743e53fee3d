"""The proportion length model: starts at the mean, proportions free of position and scale (only the size reads
where the figure stands), pads exactly, loads from its weights."""
import numpy as np
import pytest
import torch

from common.models.length_model import length_architecture, length_model_for_state, predict_sequences
from common.models.proportion_model import ProportionLengthModel, is_proportion_state
from common.utils.checkpoint import checkpoint_kind


def _model(seed: int = 0) -> ProportionLengthModel:
    torch.manual_seed(seed)
    model = ProportionLengthModel(width=16, depth=2, mean_lengths=torch.linspace(0.1, 0.4, 16))
    with torch.no_grad():  # leave the zero-initialised last layer so that the output depends on the input
        torch.nn.init.normal_(model.head[-1].weight, std=0.1)
        torch.nn.init.normal_(model.stats_linear.weight, std=0.1)
        torch.nn.init.normal_(model.size_out[-1].weight, std=0.1)
        torch.nn.init.normal_(model.size_linear.weight, std=0.1)
    return model.eval()


def test_starts_at_the_mean_and_separates_size_from_proportions():
    model = ProportionLengthModel(width=8, mean_lengths=torch.linspace(0.1, 0.4, 16)).eval()
    x = torch.rand(3, 20, 17, 2)
    assert torch.allclose(model(x), torch.linspace(0.1, 0.4, 16).expand(3, 16), atol=1e-6)
    size, proportions = _model().size_and_proportions(x)
    assert size.shape == (3,) and proportions.shape == (3, 16)
    assert torch.allclose(proportions.sum(-1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(_model()(x), torch.exp(_model().log_mean + size[:, None] + proportions), atol=1e-6)


def test_proportions_free_of_position_but_size_reads_it():
    model = _model()
    x = torch.rand(2, 30, 17, 2) * 0.5
    moved = x + torch.tensor([0.3, -0.2])
    size, proportions = model.size_and_proportions(x)
    moved_size, moved_proportions = model.size_and_proportions(moved)
    assert torch.allclose(proportions, moved_proportions, atol=1e-5)
    assert (size - moved_size).abs().min() > 1e-4  # where the figure stands reaches the size
    # the size branch reaches the size only: other weights there leave the proportions as they were
    with torch.no_grad():
        for parameter in [*model.size_mlp.parameters(), *model.size_out.parameters()]:
            parameter.add_(torch.randn_like(parameter))
    other_size, other_proportions = model.size_and_proportions(x)
    assert torch.allclose(proportions, other_proportions) and (other_size - size).abs().min() > 1e-4
    without = ProportionLengthModel(width=16, depth=2, size_inputs=False).eval()
    torch.nn.init.normal_(without.head[-1].weight, std=0.1)
    assert torch.allclose(without(x), without(x + torch.tensor([0.3, -0.2])), atol=1e-5)


def test_padded_batch_equals_each_sequence_alone():
    model = _model(1)
    sequences = [np.random.default_rng(i).random((n, 17, 2)).astype(np.float32) for i, n in enumerate((40, 7, 23))]
    alone = np.stack([model(torch.as_tensor(s)[None])[0].detach().numpy() for s in sequences])
    packed = np.stack(predict_sequences(model, sequences, frame_budget=10_000, symmetric=False))
    np.testing.assert_allclose(packed, alone, rtol=1e-5, atol=1e-6)


def test_checkpoint_kind_and_architecture_from_the_weights():
    state = ProportionLengthModel(width=24, depth=3).state_dict()
    assert checkpoint_kind(state) == "length" and is_proportion_state(state)
    assert length_architecture(state) == {"arch": "proportion", "width": 24, "depth": 3, "size_inputs": True,
                                          "camera_inputs": False, "probe_features": 0,
                                          "evidence_width": 0, "evidence_acceleration": False,
                                              "evidence_measurements": False}
    rebuilt = length_model_for_state(state)
    rebuilt.load_state_dict(state)
    assert isinstance(rebuilt, ProportionLengthModel) and rebuilt.depth == 3
    # a model from before the size branch (no size_mlp.* weights) loads as one without it
    old = ProportionLengthModel(width=24, depth=3, size_inputs=False).state_dict()
    assert length_architecture(old)["size_inputs"] is False
    length_model_for_state(old).load_state_dict(old)


def test_mix_model_with_a_proportion_length_model_round_trips(tmp_path):
    from common.models.mix_model import MixModel
    from common.models.model_loading import load_model, videopose3d_model
    from common.utils.checkpoint import save_checkpoint
    lifter = videopose3d_model({"architecture": [3, 3], "channels": 16, "causal": False, "dense": False})
    mix = MixModel(_model(2), lifter).eval()
    save_checkpoint(tmp_path / "mix.bin", {"model_pos": mix.state_dict()})
    loaded = load_model(tmp_path / "mix.bin", ("mix",), bidirectional=True)
    assert loaded.kind == "mix" and isinstance(loaded.model.length_model, ProportionLengthModel)
    x = torch.rand(2, 9, 17, 2)
    assert torch.allclose(loaded.model.length_model(x), mix.length_model(x))


def test_attached_probe_blends_in_eval_mode_only_and_round_trips():
    from common.models.length_probe import LinearProbe, probe_features
    torch.manual_seed(4)
    x = torch.rand(64, 30, 17, 2)
    lengths = 0.2 + 0.2 * torch.rand(64, 16)
    probe = LinearProbe().fit(probe_features(x), lengths)
    model = _model(5)
    model.mirror_average = False  # one reading each, as the formula below (the mirror: its own test)
    network = model(x).detach()
    model.attach_probe(probe.weight, probe.bias)
    blended = model(x).detach()
    expected = torch.sqrt(network.double() * torch.as_tensor(probe.predict(probe_features(x))))
    torch.testing.assert_close(blended.double(), expected, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(blended, network)
    size, proportions = model.size_and_proportions(x)
    torch.testing.assert_close(torch.exp(model.log_mean + size[:, None] + proportions), blended)
    model.train()
    torch.testing.assert_close(model(x).detach(), network)  # training mode: the network alone
    model.eval()
    # padded batches give what each sequence gives alone; the probe travels in the weights
    sequences = [x[i, :n].numpy() for i, n in enumerate((30, 9, 17))]
    alone = np.stack([model(torch.as_tensor(s)[None])[0].detach().numpy() for s in sequences])
    packed = np.stack(predict_sequences(model, sequences, frame_budget=10_000, symmetric=False))
    np.testing.assert_allclose(packed, alone, rtol=1e-5, atol=1e-6)
    state = model.state_dict()
    assert length_architecture(state)["probe_features"] == probe.weight.shape[0]
    rebuilt = length_model_for_state(state).eval()
    rebuilt.load_state_dict(state)
    rebuilt.mirror_average = False
    torch.testing.assert_close(rebuilt(x), model(x))


# ---------------------------------------------------------------- the camera as an input of the size branch

def _camera_model(seed: int = 0) -> ProportionLengthModel:
    torch.manual_seed(seed)
    model = ProportionLengthModel(width=16, depth=2, mean_lengths=torch.linspace(0.1, 0.4, 16), camera_inputs=True)
    with torch.no_grad():
        for layer in (model.head[-1], model.stats_linear, model.size_out[-1], model.size_linear, model.size_floor):
            torch.nn.init.normal_(layer.weight, std=0.1)
    return model.eval()


def _h36m_cameras() -> torch.Tensor:
    """(4, 8) camera features of S9's four Human3.6M cameras."""
    from common.core.camera import camera_features_of, load_cameras
    return torch.as_tensor(np.stack([camera_features_of(c) for c in load_cameras()["S9"]]), dtype=torch.float32)


def test_camera_moves_the_size_only_and_unknown_is_the_zeroed_input():
    from common.models.proportion_model import camera_input
    model = _camera_model()
    x = torch.rand(4, 24, 17, 2) * 0.4 - 0.2 + torch.tensor([0.0, 0.3])
    cameras = _h36m_cameras()
    size, proportions = model.size_and_proportions(x, camera=cameras)
    other_size, other_proportions = model.size_and_proportions(x, camera=cameras.roll(1, 0))
    assert torch.equal(proportions, other_proportions)  # the camera reaches the size only
    assert (size - other_size).abs().min() > 1e-4
    # unknown: None, NaN rows, and the zeroed features with flag 0 are one input
    unknown = torch.full_like(cameras, float("nan"))
    assert torch.equal(camera_input(unknown, 4, x.device), torch.zeros(4, 9))
    assert torch.equal(camera_input(cameras, 4, x.device)[:, -1], torch.ones(4))
    none_size, _ = model.size_and_proportions(x)
    torch.testing.assert_close(model.size_and_proportions(x, camera=unknown)[0], none_size)
    with torch.no_grad():  # what multiplies the camera features and floor reads cannot reach the unknown path
        model.size_camera.weight.add_(torch.randn_like(model.size_camera.weight))
        model.size_floor.weight.add_(torch.randn_like(model.size_floor.weight))
    torch.testing.assert_close(model.size_and_proportions(x)[0], none_size)
    assert (model.size_and_proportions(x, camera=cameras)[0] - size).abs().min() > 1e-4
    # known and unknown rows in one batch give what each gives alone
    mixed = cameras.clone()
    mixed[1] = float("nan")
    rows = model.size_and_proportions(x, camera=mixed)[0]
    torch.testing.assert_close(rows[[0, 2, 3]], model.size_and_proportions(x, camera=cameras)[0][[0, 2, 3]])
    torch.testing.assert_close(rows[1], model.size_and_proportions(x)[0][1])


def test_camera_model_round_trips_and_packs_and_old_checkpoints_ignore_the_camera():
    model = _camera_model(3)
    state = model.state_dict()
    assert length_architecture(state)["camera_inputs"] is True and "size_camera.weight" in state
    rebuilt = length_model_for_state(state).eval()
    rebuilt.load_state_dict(state)  # strict
    x, cameras = torch.rand(4, 20, 17, 2), _h36m_cameras()
    torch.testing.assert_close(rebuilt(x, camera=cameras), model(x, camera=cameras))
    sequences = [x[i, :n].numpy() for i, n in enumerate((20, 9, 17, 5))]
    alone = np.stack([model(torch.as_tensor(s)[None], camera=cameras[i:i + 1])[0].detach().numpy()
                      for i, s in enumerate(sequences)])
    packed = np.stack(predict_sequences(model, sequences, frame_budget=10_000, symmetric=False,
                                        cameras=cameras.numpy()))
    np.testing.assert_allclose(packed, alone, rtol=1e-5, atol=1e-6)
    # a checkpoint from before the camera input (no size_camera.*) loads strictly and ignores a given camera
    old = _model(3)
    old_state = old.state_dict()
    assert not any(k.startswith(("size_camera", "size_floor")) for k in old_state)
    loaded = length_model_for_state(old_state).eval()
    loaded.load_state_dict(old_state)
    assert loaded.camera_inputs is False
    torch.testing.assert_close(loaded(x, camera=cameras), old(x))


def test_synthetic_batches_carry_their_camera_mirrored_with_the_flip():
    from common.core.camera import camera_features_of
    from common.datasets.dataset import load_dataset
    from common.datasets.synthetic import SyntheticBatchBuilder
    from common.models.length_probe import floor_geometry
    from dataset_files import write_dataset
    import tempfile
    with tempfile.TemporaryDirectory() as root:
        data = write_dataset(f"{root}/data", frames=80)
        views = load_dataset(str(data), "tiny", "gt", need_3d=True, subjects=["S1"]).fetch(["S1"], require_3d=True)
    builder = SyntheticBatchBuilder(views, 32, 32, torch.device("cpu"), translation_std=0.0, placement="floor")
    ids = torch.arange(builder.num_chunks)
    lengths = torch.full((len(ids), 16), 0.25)
    plain = builder.build(ids, lengths, torch.zeros(len(ids), dtype=torch.bool), torch.zeros(len(ids), 3))
    flipped = builder.build(ids, lengths, torch.ones(len(ids), dtype=torch.bool), torch.zeros(len(ids), 3))
    expected = torch.as_tensor(np.stack([camera_features_of(views[i].camera)
                                         for i in builder.chunk_sequence[ids].tolist()]), dtype=torch.float32)
    torch.testing.assert_close(plain.camera, expected)
    torch.testing.assert_close(flipped.camera[:, [2, 4]], -expected[:, [2, 4]])  # cx and the up's x mirror
    torch.testing.assert_close(flipped.camera[:, [0, 1, 3, 5, 6, 7]], expected[:, [0, 1, 3, 5, 6, 7]])
    # the mirrored picture through the mirrored camera reads the same depths and standing heights
    for a, b in zip(floor_geometry(plain.keypoints_2d, plain.camera, 0.1)[:2],
                    floor_geometry(flipped.keypoints_2d, flipped.camera, 0.1)[:2]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_the_models_floor_reads_agree_with_the_calibrated_floor_rule():
    """floor_geometry (batched torch, the model's) reads the lower ankle's depth as floor_ankle_depths (numpy, the
    --floor_size rule) does, and an upright figure filmed through a Human3.6M camera at its true height."""
    from common.core.camera import camera_features_of, load_cameras, project_to_2d
    from common.models.length_probe import floor_ankle_depths, floor_geometry
    camera = load_cameras()["S9"][1]
    world = np.zeros((3, 17, 3))
    world[:, :, :2] = np.array([[0.5, 4.0], [1.0, 5.0], [-0.5, 3.5]])[:, None, :]  # where each frame stands
    world[:, 3, 2], world[:, 6, 2], world[:, 10, 2] = 0.1, 0.3, 1.1  # ankles, head 1.0 m above the lower ankle
    world[:, 6, 0] += 0.2
    local = camera.world_to_camera(world)
    kp = project_to_2d(torch.as_tensor(local), torch.as_tensor(np.asarray(camera.intrinsic, np.float64)) * torch.tensor(
        [1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=torch.float64))  # pinhole
    features = torch.as_tensor(camera_features_of(camera))
    depth, height, lower = floor_geometry(kp, features, 0.1)
    np.testing.assert_allclose(depth.numpy(), local[:, 3, 2], rtol=1e-6)
    np.testing.assert_allclose(height.numpy(), 1.0, rtol=1e-6)
    assert (lower == 3).all()
    reference, _, reference_lower = floor_ankle_depths(kp.numpy(), camera, 0.1)
    np.testing.assert_allclose(depth.numpy(), reference, rtol=1e-9)
    np.testing.assert_array_equal(lower.numpy(), reference_lower)


# ---------------------------------------------------------------- per-frame evidence (--length_arch evidence)

def _evidence_model(seed: int = 0, randomise: bool = True, acceleration: bool = False) -> ProportionLengthModel:
    torch.manual_seed(seed)
    model = ProportionLengthModel(width=8, depth=2, mean_lengths=torch.linspace(0.1, 0.4, 16), evidence_width=16,
                                  evidence_acceleration=acceleration)
    if randomise:
        with torch.no_grad():
            torch.nn.init.normal_(model.evidence[-1].weight, std=0.3)
            torch.nn.init.normal_(model.head[-1].weight, std=0.1)
    return model.eval()


def _image_proportions(x: np.ndarray) -> np.ndarray:
    """(T, 17, 2) -> (T, 16) each frame's log bone image lengths centred over the bones, by hand."""
    from common.core.skeleton import BONE_CHILDREN, BONE_PARENTS
    logs = np.log(np.linalg.norm(x[:, BONE_CHILDREN] - x[:, BONE_PARENTS], axis=-1))
    return logs - logs.mean(-1, keepdims=True)


def test_evidence_starts_at_the_image_proportions_and_its_loss_trains_the_proportions_apart():
    model = _evidence_model(randomise=False)
    model.mirror_average = False  # the training pass's reading (the mirror: its own test)
    x = torch.rand(2, 12, 17, 2, dtype=torch.float64).float()
    readings = np.stack([_image_proportions(s.numpy().astype(np.float64)) for s in x])
    mean_proportions = (model.log_mean - model.log_mean.mean()).numpy()
    _, proportions = model.size_and_proportions(x)
    # zero corrections, equal confidence: in eval mode the frames' median image proportions (of 12 equal weights the
    # 6th smallest, where the cumulative weight reaches half), relative to the bank mean's ...
    np.testing.assert_allclose(proportions.detach().numpy(), np.sort(readings, axis=1)[:, 5] - mean_proportions,
                               atol=1e-4)
    # ... and with the weighted mean (training's pooling) their average
    model.median_pooling = False
    _, proportions = model.size_and_proportions(x)
    np.testing.assert_allclose(proportions.detach().numpy(), readings.mean(1) - mean_proportions, atol=1e-4)
    target = 0.1 + 0.3 * torch.rand(2, 16)
    lengths, loss = model(x, target=target)
    true = np.log(target.numpy().astype(np.float64))
    true -= true.mean(-1, keepdims=True)
    # the pooled proportions' error plus the frames' Laplace error at scale 1 (log scale 0)
    expected = np.abs(readings.mean(1) - true).mean() + np.abs(readings - true[:, None]).mean()
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-4)
    torch.testing.assert_close(lengths, model(x))
    # a loss on the lengths reaches the size, not the proportions (their own loss trains them)
    lengths.sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in model.evidence.parameters())
    assert model.size_out[-1].bias.grad.abs().sum() > 0
    model.zero_grad()
    loss.backward()
    assert model.evidence[-1].weight.grad.abs().sum() > 0
    plain = _model()
    assert float(plain(x, target=target)[1]) == 0.0  # no evidence, no extra loss


def test_evidence_proportions_free_of_position_and_scale_and_padding_exact():
    model = _evidence_model(3)
    x = torch.rand(2, 25, 17, 2) * 0.5
    _, proportions = model.size_and_proportions(x)
    _, moved = model.size_and_proportions(2.0 * x + torch.tensor([0.3, -0.2]))
    torch.testing.assert_close(proportions, moved, atol=1e-4, rtol=0)
    sequences = [np.random.default_rng(i).random((n, 17, 2)).astype(np.float32) for i, n in enumerate((30, 6, 17))]
    alone = np.stack([model(torch.as_tensor(s)[None])[0].detach().numpy() for s in sequences])
    packed = np.stack(predict_sequences(model, sequences, frame_budget=10_000, symmetric=False))
    np.testing.assert_allclose(packed, alone, rtol=1e-5, atol=1e-6)


def test_evidence_model_round_trips_and_the_probe_reaches_its_size_only():
    from common.models.length_probe import LinearProbe, probe_features
    model = _evidence_model(5)
    model.mirror_average = False  # the probe's formula below is per reading (the mirror: its own test)
    state = model.state_dict()
    assert length_architecture(state)["evidence_width"] == 16 and is_proportion_state(state)
    rebuilt = length_model_for_state(state).eval()
    rebuilt.load_state_dict(state)
    rebuilt.mirror_average = False
    x = torch.rand(8, 20, 17, 2)
    torch.testing.assert_close(rebuilt(x), model(x))
    size, proportions = model.size_and_proportions(x)
    lengths = 0.2 + 0.2 * torch.rand(8, 16)
    probe = LinearProbe().fit(probe_features(x), lengths)
    model.attach_probe(probe.weight, probe.bias)
    blended_size, blended_proportions = model.size_and_proportions(x)
    torch.testing.assert_close(blended_proportions, proportions)
    probe_log = torch.log(torch.as_tensor(probe.predict(probe_features(x)), dtype=torch.float32)) - model.log_mean
    torch.testing.assert_close(blended_size, 0.5 * (size + probe_log.mean(-1)), atol=1e-5, rtol=0)


def test_eval_pooling_is_the_weighted_median_of_the_frames():
    """Eval mode pools the frames' readings by their weighted median (the estimate that maximises the frames'
    Laplace likelihood, weights = the inverse scales): one frame thrown far off moves the training pooling (the
    weighted mean) and barely the median."""
    from common.models.proportion_model import weighted_median
    values = torch.tensor([[3.0, 1.0, 2.0, 10.0]])[..., None]
    for weights, expected in (([1, 1, 1, 0], 2.0), ([0.1, 0.1, 0.1, 5], 10.0), ([1, 2, 1, 1], 2.0),
                              ([1, 1, 1, 1], 2.0)):
        assert float(weighted_median(values, torch.tensor([weights], dtype=torch.float32)[..., None])) == expected
    model = _evidence_model(3)
    model.mirror_average = False
    x = torch.rand(1, 1, 17, 2) + 0.01 * torch.randn(1, 21, 17, 2)  # one pose, jittered
    thrown = x.clone()
    thrown[0, 7, 13] += 3.0  # one frame's left wrist far away
    def shift(median: bool) -> float:
        model.median_pooling = median
        with torch.no_grad():
            return float((model.size_and_proportions(thrown)[1] - model.size_and_proportions(x)[1]).abs().max())
    assert shift(True) < 0.2 * shift(False)


def test_eval_mode_reads_the_sequence_and_its_mirror_image():
    """Eval mode with frame evidence: the average of the readings of the sequence and of its mirror image (x -> -x,
    left and right swapped), so that the mirror image of a person gets the mirrored lengths, exactly; training
    mode, the pooled model and models that read the camera: one reading."""
    from common.core.skeleton import FLIP_BONES, FLIP_JOINTS
    model = _evidence_model(7)
    with torch.no_grad():  # a bank mean whose left and right bones are equal, as every bank's
        model.log_mean.copy_(0.5 * (model.log_mean + model.log_mean[FLIP_BONES]))
    x = torch.rand(3, 20, 17, 2) - 0.5
    mirrored = x[..., FLIP_JOINTS, :] * torch.tensor([-1.0, 1.0])
    both = model(x).detach()
    torch.testing.assert_close(model(mirrored).detach()[:, FLIP_BONES], both, rtol=1e-5, atol=1e-7)
    model.mirror_average = False
    single, mirror_single = model(x).detach(), model(mirrored).detach()[:, FLIP_BONES]
    assert (single - mirror_single).abs().max() > 1e-3  # one reading alone is not mirror-symmetric
    torch.testing.assert_close(both, torch.sqrt(single * mirror_single), rtol=1e-5, atol=1e-7)
    model.median_pooling = False  # training's pooling: the weighted mean
    one_mean = model(x).detach()
    model.mirror_average = model.median_pooling = True
    model.train()
    torch.testing.assert_close(model(x).detach(), one_mean)
    pooled = _model(7)
    one = pooled(x).detach()
    pooled.mirror_average = False
    torch.testing.assert_close(pooled(x).detach(), one)
    camera = ProportionLengthModel(width=8, camera_inputs=True, evidence_width=16).eval()
    torch.nn.init.normal_(camera.evidence[-1].weight, std=0.3)
    cameras = _h36m_cameras()[:3]
    one = camera(x, camera=cameras).detach()
    camera.mirror_average = False
    torch.testing.assert_close(camera(x, camera=cameras).detach(), one)


def test_second_difference_by_hand_with_padding():
    from common.models.proportion_model import second_difference
    t = torch.arange(6, dtype=torch.float32)
    x = torch.stack([t ** 2, 3 * t], dim=-1)[None].repeat(2, 1, 1)  # (2, 6, 2): x'' = 2 and 0
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    d2 = second_difference(x, valid)
    # inside: 2 and 0; the first frame repeats its neighbour's side (x1 - x0 = 1, 3), the last valid likewise
    # (x[c-2] - x[c-1]: 16 - 25 = -9, -3 for six frames; 4 - 9 = -5, -3 for four); padded frames are zero
    torch.testing.assert_close(d2[0, :, 0], torch.tensor([1.0, 2, 2, 2, 2, -9]))
    torch.testing.assert_close(d2[0, :, 1], torch.tensor([3.0, 0, 0, 0, 0, -3]))
    torch.testing.assert_close(d2[1, :, 0], torch.tensor([1.0, 2, 2, -5, 0, 0]))


def test_acceleration_input_round_trips_sees_jitter_and_packs_exactly():
    model = _evidence_model(7, acceleration=True)
    with torch.no_grad():
        torch.nn.init.normal_(model.evidence[0].weight, std=0.3)
    state = model.state_dict()
    assert length_architecture(state)["evidence_acceleration"] and not \
        length_architecture(_evidence_model(7).state_dict())["evidence_acceleration"]
    rebuilt = length_model_for_state(state).eval()
    rebuilt.load_state_dict(state)
    x = torch.rand(3, 20, 17, 2) * 0.3 + torch.linspace(0, 0.2, 20)[None, :, None, None]  # a pose moving steadily
    torch.testing.assert_close(rebuilt(x), model(x))
    # a steady motion has no acceleration: the model reads what it reads of the pose alone; jitter changes it
    still = x[:, :1].expand(-1, 20, -1, -1)
    moving = still + torch.linspace(0, 0.2, 20)[None, :, None, None]
    torch.testing.assert_close(model(moving), model(still), atol=1e-5, rtol=0)
    jittered = moving + 0.01 * torch.randn(moving.shape, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(model(jittered), model(moving), atol=1e-4)
    # padded batches equal each sequence alone (the second difference stays inside each sequence's frames)
    sequences = [np.random.default_rng(i).random((n, 17, 2)).astype(np.float32) for i, n in enumerate((30, 6, 17))]
    alone = np.stack([model(torch.as_tensor(s)[None])[0].detach().numpy() for s in sequences])
    packed = np.stack(predict_sequences(model, sequences, frame_budget=10_000, symmetric=False))
    np.testing.assert_allclose(packed, alone, rtol=1e-5, atol=1e-6)


def test_frame_likelihood_leaves_the_marked_sequences_out_of_the_per_frame_loss():
    model = _evidence_model(3, randomise=False)  # zero corrections, equal confidence: the loss by hand below
    model.train()
    x = torch.rand(2, 12, 17, 2)
    target = 0.1 + 0.3 * torch.rand(2, 16)
    readings = np.stack([_image_proportions(s.numpy().astype(np.float64)) for s in x])
    true = np.log(target.numpy().astype(np.float64))
    true -= true.mean(-1, keepdims=True)
    pooled = np.abs(readings.mean(1) - true).mean()  # every sequence
    frames = np.abs(readings - true[:, None]).mean(axis=(1, 2))  # per sequence
    with torch.no_grad():
        _, everything = model(x, target=target)
        _, first_only = model(x, target=target, frame_likelihood=torch.tensor([True, False]))
        _, none = model(x, target=target, frame_likelihood=torch.tensor([False, False]))
    assert float(everything) == pytest.approx(pooled + frames.mean(), rel=1e-4)
    assert float(first_only) == pytest.approx(pooled + frames[0], rel=1e-4)
    assert float(none) == pytest.approx(pooled, rel=1e-4)


def test_measurements_are_trained_pooled_per_person_and_read_for_people_only():
    """(issue 17) ``evidence_measurements`` (``train.py --person_chunks K``): a third per-frame output, the frames'
    measurements, pooled over every sequence of one person (softmax(-log scale) weights over all of the person's
    frames) in the loss; by hand with zero corrections and equal confidences: the plain mean of the person's
    frames' image proportions. In eval mode the sequence's reading is unchanged unless :func:`person_readings`
    asks for the measurements; the architecture is read back from the weights."""
    from common.models.proportion_model import (person_mean, person_pooled, person_readings,
                                                proportion_model_for_state, reads_people)
    torch.manual_seed(3)
    model = ProportionLengthModel(width=8, depth=2, mean_lengths=torch.linspace(0.1, 0.4, 16), evidence_width=16,
                                  evidence_measurements=True).train()
    plain = _evidence_model(3, randomise=False).train()
    assert reads_people(model) and not reads_people(plain)
    x = torch.rand(3, 12, 17, 2)
    counts = torch.tensor([12, 7, 12])
    target = (0.1 + 0.3 * torch.rand(2, 16))[torch.tensor([0, 0, 1])]  # sequences 0 and 1: one person
    readings = [_image_proportions(s[:n].numpy().astype(np.float64)) for s, n in zip(x, counts.tolist())]
    true = np.log(target.numpy().astype(np.float64))
    true -= true.mean(-1, keepdims=True)
    people = np.stack([np.concatenate(readings[:2]).mean(0), readings[2].mean(0)])
    alone = np.stack([r.mean(0) for r in readings])
    with torch.no_grad():
        _, without = plain(x, counts, target=target)
        _, together = model(x, counts, target=target, person=torch.tensor([0, 0, 1]))
        _, each = model(x, counts, target=target)  # no ids: every sequence its own person
    assert float(together) - float(without) == pytest.approx(np.abs(people - true[[0, 2]]).mean(), rel=1e-4)
    assert float(each) - float(without) == pytest.approx(np.abs(alone - true).mean(), rel=1e-4)
    model.eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.evidence[-1].weight, std=0.3)  # measurements and readings now differ
        sequence = model(x, counts)
        with person_readings(model):
            person = model(x, counts)
        assert not model.person_readings
        again = model(x, counts)
        before = plain.eval()(x, counts)
        with person_readings(plain):  # a model without measurements is unchanged
            assert torch.equal(plain(x, counts), before)
    torch.testing.assert_close(again, sequence)
    assert (person - sequence).abs().max() > 1e-4
    loaded = proportion_model_for_state(model.state_dict())
    assert loaded.evidence_measurements and not proportion_model_for_state(plain.state_dict()).evidence_measurements
    loaded.load_state_dict(model.state_dict())
    with torch.no_grad(), person_readings(loaded.eval()):
        torch.testing.assert_close(loaded(x, counts), person)
    # the pooling itself: weights are per bone and per frame, over all of a person's valid frames
    values = torch.arange(12.0).reshape(2, 3, 2)  # (B=2, T=3, K=2) as (B, T, 16) would be
    scale = torch.zeros(2, 3, 2)
    scale[1, 0, 0] = -float(np.log(3.0))  # frame 0 of sequence 1, bone 0: three times the weight
    valid = torch.tensor([[True, True, False], [True, True, True]])
    pooled = person_pooled(values.repeat(1, 1, 8), scale.repeat(1, 1, 8), valid, torch.tensor([0, 0]))
    assert pooled.shape == (1, 16)
    assert float(pooled[0, 0]) == pytest.approx((0 + 2 + 3 * 6 + 8 + 10) / 7)
    assert float(pooled[0, 1]) == pytest.approx((1 + 3 + 7 + 9 + 11) / 5)
    means = person_mean(torch.tensor([[1.0], [3.0], [5.0]]), torch.tensor([0, 0, 1]))
    assert means[:, 0].tolist() == [2.0, 5.0]
