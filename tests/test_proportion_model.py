"""The proportion length model: starts at the mean, proportions free of position and scale (only the size reads
where the figure stands), pads exactly, loads from its weights."""
import numpy as np
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
                                          "probe_features": 0}
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
    torch.testing.assert_close(rebuilt(x), model(x))
