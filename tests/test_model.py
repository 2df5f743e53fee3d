"""VideoPose3D lifter: receptive fields, shapes, causal/symmetric windows, the two variants' equivalence,
and loading checkpoints in the published key layout."""
import pytest
import torch

from common.utils.checkpoint import load_checkpoint, load_weights, model_state, save_checkpoint
from common.utils.errors import UserError
from common.models.model import TemporalModel, TemporalModelOptimized1f, build_lifter, parse_architecture

torch.set_num_threads(1)


@pytest.mark.parametrize("arc, rf", [("1", 1), ("3", 3), ("3,3,3", 27), ("3,3,3,3", 81), ("3,3,3,3,3", 243),
                                     ("5,3", 15)])
def test_receptive_field_and_shapes(arc, rf):
    train_model, eval_model = build_lifter(arc, channels=16)
    assert eval_model.receptive_field() == rf
    assert train_model.receptive_field() == rf
    eval_model.eval()
    assert eval_model(torch.randn(2, rf + 6, 17, 2)).shape == (2, 7, 17, 3)
    train_model.eval()
    assert train_model(torch.randn(3, rf, 17, 2)).shape == (3, 1, 17, 3)


def test_parse_architecture_rejects_bad_widths():
    assert parse_architecture("3,3,3") == [3, 3, 3]
    for bad in ("3,4", "x", "", "0"):
        with pytest.raises(UserError):
            parse_architecture(bad)


def test_wrong_input_shape_is_refused():
    _, model = build_lifter("3", channels=8)
    with pytest.raises(ValueError):
        model(torch.randn(1, 5, 16, 2))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("arc", ["3,3,3", "3,5"])
def test_strided_and_dilated_variants_agree(arc, causal):
    torch.manual_seed(0)
    train_model, eval_model = build_lifter(arc, channels=32, causal=causal)
    eval_model.load_state_dict(train_model.state_dict())
    # make BatchNorm non-trivial
    for bn in [train_model.expand_bn, *train_model.layers_bn]:
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    eval_model.load_state_dict(train_model.state_dict())
    train_model.eval()
    eval_model.eval()
    rf = eval_model.receptive_field()
    x = torch.randn(2, rf + 9, 17, 2)
    full = eval_model(x)
    windows = x.unfold(1, rf, 1).permute(0, 1, 4, 2, 3).reshape(-1, rf, 17, 2)
    strided = train_model(windows).reshape(2, -1, 17, 3)
    torch.testing.assert_close(full, strided, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_output_depends_only_on_its_window(causal):
    torch.manual_seed(1)
    _, model = build_lifter("3,3", channels=16, causal=causal)
    model.eval()
    rf = model.receptive_field()  # 9
    x = torch.randn(1, 30, 17, 2)
    base = model(x)
    # output index i sees input frames i .. i + rf - 1; perturb input frame 20 only
    y = x.clone()
    y[:, 20] += 1.0
    changed = (model(y) - base).abs().amax(dim=(0, 2, 3)) > 1e-6
    expected = torch.zeros(30 - rf + 1, dtype=torch.bool)
    expected[20 - rf + 1: 21] = True
    assert torch.equal(changed, expected)


def test_total_causal_shift():
    assert build_lifter("3,3,3", channels=8, causal=True)[1].total_causal_shift() == 13
    assert build_lifter("3,3,3", channels=8, causal=False)[1].total_causal_shift() == 0


def test_dense_variant_shape():
    train_model, eval_model = build_lifter("3,3", channels=8, dense=True)
    assert isinstance(train_model, TemporalModel)
    assert eval_model.layers_conv[0].kernel_size == (7,)
    eval_model.eval()
    assert eval_model(torch.randn(1, 20, 17, 2)).shape == (1, 12, 17, 3)


def _published_state_dict(widths, channels):
    """A state dict with exactly the key names and shapes of VideoPose3D's released checkpoints."""
    sd = {"expand_conv.weight": torch.randn(channels, 34, widths[0])}
    for prefix in ["expand_bn"] + [f"layers_bn.{i}" for i in range(2 * (len(widths) - 1))]:
        sd[f"{prefix}.weight"] = torch.rand(channels)
        sd[f"{prefix}.bias"] = torch.randn(channels)
        sd[f"{prefix}.running_mean"] = torch.randn(channels)
        sd[f"{prefix}.running_var"] = torch.rand(channels) + 0.5
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)
    for i, w in enumerate(widths[1:]):
        sd[f"layers_conv.{2 * i}.weight"] = torch.randn(channels, channels, w)
        sd[f"layers_conv.{2 * i + 1}.weight"] = torch.randn(channels, channels, 1)
    sd["shrink.weight"] = torch.randn(51, channels, 1)
    sd["shrink.bias"] = torch.randn(51)
    return sd


def test_published_checkpoint_layout_loads(tmp_path):
    widths = [3, 3, 3, 3, 3]
    sd = _published_state_dict(widths, 64)
    path = tmp_path / "pretrained_h36m_cpn.bin"
    # released files hold model_pos, epoch, lr, optimizer, random_state; DataParallel adds 'module.'
    save_checkpoint(path, {"epoch": 80, "lr": 1e-5, "model_pos": {f"module.{k}": v for k, v in sd.items()}})
    state = model_state(load_checkpoint(path))
    for cls in (TemporalModel, TemporalModelOptimized1f):
        model = cls(17, 2, 17, widths, channels=64)
        load_weights(model, state, str(path))
        torch.testing.assert_close(model.shrink.bias, sd["shrink.bias"])
        torch.testing.assert_close(model.layers_bn[7].running_var, sd["layers_bn.7.running_var"])


def test_wrong_architecture_checkpoint_is_a_user_error():
    sd = _published_state_dict([3, 3, 3], 64)
    with pytest.raises(UserError, match="architecture"):
        load_weights(TemporalModel(17, 2, 17, [3, 3, 3, 3], channels=64), sd)
    with pytest.raises(UserError, match="shape mismatch"):
        load_weights(TemporalModel(17, 2, 17, [3, 3, 3], channels=32), sd)


def test_bn_momentum_is_set_everywhere():
    model = build_lifter("3,3,3", channels=8)[0]
    model.set_bn_momentum(0.01)
    assert all(bn.momentum == 0.01 for bn in [model.expand_bn, *model.layers_bn])
