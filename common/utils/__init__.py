"""Shared plumbing: one-line errors, atomic file I/O, input validation, devices, torchrun, checkpoints, timing, caches."""
