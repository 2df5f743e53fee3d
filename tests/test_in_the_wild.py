"""bench/in_the_wild.py: its scores on hand-computable poses."""
import numpy as np
import pytest

from bench import in_the_wild
from common.core.bones import bone_directions, bone_lengths, recompose

LENGTHS = np.array([0.13, 0.45, 0.44, 0.13, 0.45, 0.44, 0.23, 0.25, 0.11, 0.12,
                    0.15, 0.28, 0.25, 0.15, 0.28, 0.25])


def _poses(frames: int, seed: int = 0) -> np.ndarray:
    dirs = np.random.default_rng(seed).normal(size=(frames, 16, 3))
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return recompose(dirs, LENGTHS)


def test_scores_of_exact_scaled_and_jittering_poses():
    truth = _poses(6)
    exact = in_the_wild.scores([truth], [truth], [LENGTHS])
    assert all(exact[c] == pytest.approx(0.0, abs=1e-6) for c in in_the_wild.COLUMNS)

    double = in_the_wild.scores([2 * truth], [truth], [LENGTHS])
    assert double["P-MPJPE"] == pytest.approx(0.0, abs=1e-6)  # Procrustes removes the scale
    assert double["MPJPE"] == pytest.approx(np.linalg.norm(truth, axis=-1).mean() * 1000)
    assert double["bone length error"] == pytest.approx(LENGTHS.mean() * 1000)
    assert double["length jitter"] == pytest.approx(0.0, abs=1e-6)  # wrong but constant lengths

    # frames alternate between the true and the doubled skeleton: every bone's std over time is L / 2
    flicker = truth.copy()
    flicker[1::2] *= 2
    scored = in_the_wild.scores([flicker], [truth], [LENGTHS])
    assert scored["length jitter"] == pytest.approx(LENGTHS.mean() / 2 * 1000)
    assert scored["bone length error"] == pytest.approx(LENGTHS.mean() / 2 * 1000)

    # left/right: a skeleton whose right thigh is 5 cm longer (one of the 6 pairs) -> 50 / 6 mm
    lengths = LENGTHS.copy()
    lengths[1] += 0.05
    lopsided = recompose(bone_directions(truth), lengths)
    assert in_the_wild.scores([lopsided], [lopsided], [lengths])["left/right difference"] == \
        pytest.approx(50 / 6)


def test_views_are_weighted_by_frames():
    a, b = _poses(2, 1), _poses(6, 2)
    both = in_the_wild.scores([2 * a, b], [a, b], [LENGTHS, LENGTHS])
    # only the 2 frames of the first view are wrong: a quarter of all frames
    assert both["bone length error"] == pytest.approx(LENGTHS.mean() * 1000 * 2 / 8)
    np.testing.assert_allclose(bone_lengths(b), np.broadcast_to(LENGTHS, (6, 16)), atol=1e-9)
