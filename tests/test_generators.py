"""Chunked (training) and unchunked (evaluation) generators: windows, edge padding, flips, resumable shuffling."""
import numpy as np
import pytest
import torch

from common.datasets.generators import ChunkedGenerator, UnchunkedGenerator, predict_poses
from common.models.model import build_lifter
from common.core.skeleton import flip_bone_lengths, flip_poses, merge_flipped

torch.set_num_threads(1)


def _sequences(lengths, seed=0):
    """2D/3D sequences whose x coordinate of joint 0 encodes (sequence, frame) = 100 * s + t."""
    rng = np.random.default_rng(seed)
    poses_2d, poses_3d = [], []
    for s, n in enumerate(lengths):
        p2 = rng.normal(size=(n, 17, 2)).astype(np.float32)
        p3 = rng.normal(size=(n, 17, 3)).astype(np.float32)
        p2[:, 0, 0] = p3[:, 0, 0] = 100 * s + np.arange(n)
        poses_2d.append(p2)
        poses_3d.append(p3)
    return poses_2d, poses_3d


def test_single_frame_chunks_cover_every_frame_once():
    p2, p3 = _sequences([5, 3])
    gen = ChunkedGenerator(4, p2, p3, chunk_length=1, pad=2)
    assert len(gen.pairs) == 8 and gen.num_batches == 2 and gen.num_frames == 8
    targets = np.concatenate([b.targets_3d for b in gen.next_epoch()])
    assert targets.shape == (8, 1, 17, 3)
    assert sorted(targets[:, 0, 0, 0].tolist()) == [0, 1, 2, 3, 4, 100, 101, 102]


def test_window_is_edge_padded_and_centred():
    p2, p3 = _sequences([5])
    gen = ChunkedGenerator(8, p2, p3, chunk_length=1, pad=2, shuffle=False)
    batch = next(gen.next_epoch())
    assert batch.inputs_2d.shape == (5, 5, 17, 2)
    np.testing.assert_array_equal(batch.inputs_2d[:, :, 0, 0],
                                  [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 4],
                                   [2, 3, 4, 4, 4]])
    np.testing.assert_array_equal(batch.inputs_2d[0, 3], p2[0][1])
    np.testing.assert_array_equal(batch.targets_3d[:, 0], p3[0])


def test_causal_window_ends_at_the_target():
    p2, p3 = _sequences([4])
    gen = ChunkedGenerator(8, p2, p3, chunk_length=1, pad=1, causal_shift=1, shuffle=False)
    batch = next(gen.next_epoch())
    np.testing.assert_array_equal(batch.inputs_2d[:, :, 0, 0], [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3]])


def test_long_chunks_are_centred_with_edge_padded_targets():
    p2, p3 = _sequences([10])
    gen = ChunkedGenerator(8, p2, p3, chunk_length=4, pad=1, shuffle=False)
    batch = next(gen.next_epoch())
    # 3 chunks of 4 over 10 frames, overhang split: starts -1, 3, 7
    np.testing.assert_array_equal(batch.targets_3d[:, :, 0, 0], [[0, 0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 9]])
    assert batch.inputs_2d.shape == (3, 6, 17, 2)
    np.testing.assert_array_equal(batch.inputs_2d[1, :, 0, 0], [2, 3, 4, 5, 6, 7])


def test_flip_augmentation_mirrors_poses_and_lengths():
    p2, p3 = _sequences([6, 4])
    lengths = [np.arange(16, dtype=np.float32), 10 + np.arange(16, dtype=np.float32)]
    gen = ChunkedGenerator(64, p2, p3, chunk_length=1, pad=1, augment=True, lengths=lengths, shuffle=False)
    batch = next(gen.next_epoch())
    assert len(batch.flipped) == 20 and batch.flipped.sum() == 10
    plain, mirrored = ~batch.flipped, batch.flipped
    np.testing.assert_allclose(batch.inputs_2d[mirrored], flip_poses(batch.inputs_2d[plain]))
    np.testing.assert_allclose(batch.targets_3d[mirrored], flip_poses(batch.targets_3d[plain]))
    np.testing.assert_allclose(batch.lengths[mirrored], flip_bone_lengths(batch.lengths[plain]))
    np.testing.assert_array_equal(batch.lengths[plain][:6], np.tile(lengths[0], (6, 1)))
    np.testing.assert_array_equal(batch.sequence_index[plain], [0] * 6 + [1] * 4)


def test_shuffling_resumes_exactly():
    p2, p3 = _sequences([30, 20])
    a = ChunkedGenerator(7, p2, p3, pad=1, random_seed=5)
    list(a.next_epoch())
    state = a.get_state()
    b = ChunkedGenerator(7, p2, p3, pad=1, random_seed=99)
    b.set_state(state)
    for x, y in zip(a.next_epoch(), b.next_epoch()):
        np.testing.assert_array_equal(x.inputs_2d, y.inputs_2d)
    c = ChunkedGenerator(7, p2, p3, pad=1, random_seed=5)
    assert not np.array_equal(next(c.next_epoch()).targets_3d, next(a.next_epoch()).targets_3d)


def test_mismatched_frame_counts_are_refused():
    p2, p3 = _sequences([5, 4])
    with pytest.raises(ValueError):
        ChunkedGenerator(4, p2, p3[::-1])


def test_unchunked_padding_and_flip():
    p2, _ = _sequences([5])
    gen = UnchunkedGenerator(p2, pad=2, causal_shift=0, augment=True)
    (index, inputs), = list(gen)
    assert index == 0 and inputs.shape == (2, 9, 17, 2)
    np.testing.assert_array_equal(inputs[0, :, 0, 0], [0, 0, 0, 1, 2, 3, 4, 4, 4])
    np.testing.assert_allclose(inputs[1], flip_poses(inputs[0]))
    (_, causal), = list(UnchunkedGenerator(p2, pad=2, causal_shift=2))
    np.testing.assert_array_equal(causal[0, :, 0, 0], [0, 0, 0, 0, 0, 1, 2, 3, 4])


def test_merge_flipped_averages_the_unflipped_prediction():
    plain = torch.randn(1, 4, 17, 3, generator=torch.Generator().manual_seed(0))
    other = plain + 2.0  # what the model saw in the mirrored input, once mirrored back
    merged = merge_flipped(torch.cat([plain, flip_poses(other)]))
    torch.testing.assert_close(merged, plain[0] + 1.0)  # the mean of both rows: fails if either is ignored
    torch.testing.assert_close(merge_flipped(plain), plain[0])


@pytest.mark.parametrize("causal", [False, True])
def test_predict_poses_keeps_length_and_causality(causal):
    torch.manual_seed(0)
    _, model = build_lifter("3,3", channels=16, causal=causal)
    pad = (model.receptive_field() - 1) // 2
    p2, _ = _sequences([25, 12])
    gen = UnchunkedGenerator(p2, pad, model.total_causal_shift(), augment=True)
    base = predict_poses(model, gen)
    assert [b.shape for b in base] == [(25, 17, 3), (12, 17, 3)]
    changed_input = [p.copy() for p in p2]
    changed_input[0][15] += 1.0
    after = predict_poses(model, UnchunkedGenerator(changed_input, pad, model.total_causal_shift(), True))
    changed = np.abs(after[0] - base[0]).max(axis=(1, 2)) > 1e-6
    expected = np.zeros(25, dtype=bool)
    if causal:
        expected[15:15 + 2 * pad + 1] = True   # frames 15 .. 15 + rf - 1 see frame 15
    else:
        expected[15 - pad:15 + pad + 1] = True
    np.testing.assert_array_equal(changed, expected)
    np.testing.assert_array_equal(after[1], base[1])
