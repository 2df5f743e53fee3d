"""Batch generators for temporal lifters (VideoPose3D's chunked/unchunked scheme), vectorised.

* :class:`ChunkedGenerator` (training): every sequence is cut into chunks of ``chunk_length`` target frames;
  each sample is the chunk's 2D window widened by the receptive-field padding (``pad`` frames each side,
  shifted by ``causal_shift`` into the past). Windows reaching past a sequence end repeat the edge frame.
  With ``augment``, every chunk also appears mirrored (:func:`common.core.skeleton.flip_poses`). A batch is built
  with one gather from the concatenated sequences: no Python loop over samples.
* :class:`UnchunkedGenerator` (evaluation): one whole sequence at a time, edge-padded for the receptive
  field, optionally stacked with its mirrored copy for test-time flip augmentation;
  :func:`common.core.skeleton.merge_flipped` folds the two predictions back into one.

Shapes: 2D poses ``(T, 17, 2)`` normalised screen coordinates; 3D ``(T, 17, 3)`` metres, camera frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from common.core.skeleton import flip_bone_lengths, flip_poses, merge_flipped
from common.utils.checkpoint import numpy_state, set_numpy_state


@dataclass
class Batch:
    """One training batch. inputs_2d (B, chunk_length + 2 pad, 17, 2); targets_3d (B, chunk_length, 17, 3)
    or None; sequence_index (B,) index into the generator's sequence list; flipped (B,) bool;
    lengths (B, 16) per-sequence bone lengths (mirrored with the pose) or None."""

    inputs_2d: np.ndarray
    targets_3d: np.ndarray | None
    sequence_index: np.ndarray
    flipped: np.ndarray
    lengths: np.ndarray | None

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(inputs_2d, targets_3d, lengths) as torch tensors on ``device`` (None where absent)."""
        return tuple(None if a is None else torch.from_numpy(a).to(device)
                     for a in (self.inputs_2d, self.targets_3d, self.lengths))


def _concatenate(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate along frames; returns (all frames, start offset of each sequence, frame count of each)."""
    frame_counts = np.array([len(a) for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(frame_counts)[:-1]]).astype(np.int64)
    return np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays]), offsets, frame_counts


class ChunkedGenerator:
    """Shuffled training batches of padded 2D windows and their 3D chunks.

    poses_2d: list of (T_i, 17, 2); poses_3d: list of (T_i, 17, 3) or None (2D-only batches);
    lengths: optional list of per-sequence bone lengths (16,) yielded alongside (e.g. for the mix model).
    pad: receptive-field half width ``(rf - 1) // 2``; causal_shift: ``pad`` for causal models, else 0.
    random_seed: seeds the epoch shuffling; :meth:`get_state` / :meth:`set_state` resume it.
    """

    def __init__(self, batch_size: int, poses_2d: Sequence[np.ndarray], poses_3d: Sequence[np.ndarray] | None = None,
                 chunk_length: int = 1, pad: int = 0, causal_shift: int = 0, shuffle: bool = True,
                 augment: bool = False, lengths: Sequence[np.ndarray] | None = None, random_seed: int = 1234) -> None:
        if not poses_2d:
            raise ValueError("ChunkedGenerator needs at least one sequence")
        if poses_3d is not None and [len(a) for a in poses_3d] != [len(a) for a in poses_2d]:
            raise ValueError("2D and 3D sequences must have the same frame counts")
        self.batch_size = batch_size
        self.chunk_length = chunk_length
        self.pad = pad
        self.causal_shift = causal_shift
        self.shuffle = shuffle
        self.augment = augment
        self._rng = np.random.RandomState(random_seed)
        self._frames_2d, self._offsets, self._frame_counts = _concatenate(poses_2d)
        self._frames_3d = _concatenate(poses_3d)[0] if poses_3d is not None else None
        self._bone_lengths = np.stack([np.asarray(x, dtype=np.float32) for x in lengths]) if lengths is not None \
            else None

        # One row per chunk: (sequence, first target frame, flipped). Chunks are centred on the sequence so
        # that the overhang of the last chunk is split between both ends, as in VideoPose3D.
        n_chunks = (self._frame_counts + chunk_length - 1) // chunk_length
        overhang = (n_chunks * chunk_length - self._frame_counts) // 2
        sequence = np.repeat(np.arange(len(poses_2d)), n_chunks)
        first_chunk = np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
        start = (np.arange(n_chunks.sum()) - first_chunk) * chunk_length - overhang[sequence]
        pairs = np.stack([sequence, start, np.zeros_like(start)], axis=1)
        if augment:
            mirrored = pairs.copy()
            mirrored[:, 2] = 1
            pairs = np.concatenate([pairs, mirrored])
        self.pairs = pairs

    @property
    def num_frames(self) -> int:
        """Target frames per epoch (chunks times chunk length, mirrored copies included)."""
        return len(self.pairs) * self.chunk_length

    @property
    def num_batches(self) -> int:
        return (len(self.pairs) + self.batch_size - 1) // self.batch_size

    def get_state(self) -> dict:
        """The shuffling RNG's state (:func:`common.utils.checkpoint.numpy_state`; checkpoints keep it per process)."""
        return numpy_state(self._rng)

    def set_state(self, state: dict) -> None:
        """Restore a state from :meth:`get_state`."""
        set_numpy_state(state, self._rng)

    def _gather(self, frames: np.ndarray, rows: np.ndarray, first: np.ndarray, length: int) -> np.ndarray:
        """frames[offset + clip(first + k)] for k < length, per row: (B, length, ...) with edge padding."""
        seq = rows[:, 0]
        index = np.clip(first[:, None] + np.arange(length)[None, :], 0, self._frame_counts[seq][:, None] - 1)
        return frames[self._offsets[seq][:, None] + index]

    def make_batch(self, rows: np.ndarray) -> Batch:
        """Build the batch for rows of :attr:`pairs` ``(B, 3)``."""
        start, flipped = rows[:, 1], rows[:, 2].astype(bool)
        inputs = self._gather(self._frames_2d, rows, start - self.pad - self.causal_shift,
                              self.chunk_length + 2 * self.pad)
        targets = None if self._frames_3d is None else self._gather(self._frames_3d, rows, start, self.chunk_length)
        lengths = None if self._bone_lengths is None else self._bone_lengths[rows[:, 0]]
        if flipped.any():
            inputs[flipped] = flip_poses(inputs[flipped])
            if targets is not None:
                targets[flipped] = flip_poses(targets[flipped])
            if lengths is not None:
                lengths[flipped] = flip_bone_lengths(lengths[flipped])
        return Batch(inputs, targets, rows[:, 0].copy(), flipped, lengths)

    def next_epoch(self) -> Iterator[Batch]:
        """Yield the batches of one epoch (shuffled if ``shuffle``)."""
        order = self._rng.permutation(len(self.pairs)) if self.shuffle else np.arange(len(self.pairs))
        for begin in range(0, len(order), self.batch_size):
            yield self.make_batch(self.pairs[order[begin:begin + self.batch_size]])

    def next_epoch_share(self, rank: int, world_size: int) -> Iterator[Batch]:
        """This process's share of every batch of :meth:`next_epoch` (rows ``rank``, ``rank + world_size``, ...;
        every process shuffles identically); a batch too small to give every process a share is skipped."""
        rows = slice(rank, None, world_size)
        for batch in self.next_epoch():
            if len(batch.inputs_2d) >= world_size:
                yield Batch(batch.inputs_2d[rows], None if batch.targets_3d is None else batch.targets_3d[rows],
                            batch.sequence_index[rows], batch.flipped[rows],
                            None if batch.lengths is None else batch.lengths[rows])


class UnchunkedGenerator:
    """Whole sequences for evaluation: each item is ``(index, inputs)`` with inputs
    ``(A, T + 2 pad, 17, 2)`` edge-padded (``pad + causal_shift`` frames before, ``pad - causal_shift`` after),
    A = 2 with test-time flip augmentation (second row mirrored), else 1."""

    def __init__(self, poses_2d: Sequence[np.ndarray], pad: int = 0, causal_shift: int = 0,
                 augment: bool = False) -> None:
        self.poses_2d = poses_2d
        self.pad = pad
        self.causal_shift = causal_shift
        self.augment = augment

    def __len__(self) -> int:
        return len(self.poses_2d)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        before, after = self.pad + self.causal_shift, self.pad - self.causal_shift
        for index, seq in enumerate(self.poses_2d):
            seq = np.asarray(seq, dtype=np.float32)
            padded = np.pad(seq, ((before, after), (0, 0), (0, 0)), mode="edge")[None]
            if self.augment:
                padded = np.concatenate([padded, flip_poses(padded)])
            yield index, padded


@torch.no_grad()
def predict_poses(model: torch.nn.Module, generator: UnchunkedGenerator,
                  device: torch.device | str = "cpu", progress: bool = False) -> list[np.ndarray]:
    """Run a lifter over every sequence of ``generator`` in eval mode; returns a list of (T, 17, 3) float32
    arrays (the model's output frame and units; test-time flips merged)."""
    model.eval()
    out: list[np.ndarray] = [np.empty(0)] * len(generator)
    for index, inputs in tqdm(generator, total=len(generator), desc="predict", disable=not progress, leave=False):
        predicted = model(torch.from_numpy(inputs).to(device))
        out[index] = merge_flipped(predicted).cpu().numpy().astype(np.float32)
    return out
