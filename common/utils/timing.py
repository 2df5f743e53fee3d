"""Wall-clock time per pipeline stage (``inference.py``, ``bench/inference.py``)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Sequence

STAGES = ("decode", "detect", "lift", "adjust", "render")


class StageTimer:
    """Wall-clock seconds and item counts per stage; ``fps`` = items / seconds."""

    def __init__(self, stages: Sequence[str] = STAGES) -> None:
        self.stages = tuple(stages)
        self.seconds = {stage: 0.0 for stage in self.stages}
        self.frames = {stage: 0 for stage in self.stages}

    @contextmanager
    def measure(self, stage: str, frames: int = 0):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start
            self.frames[stage] += frames

    def timed(self, stage: str, items: Iterator) -> Iterator:
        """Wrap an iterator so the time spent producing each item is counted for ``stage``."""
        iterator = iter(items)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self.seconds[stage] += time.perf_counter() - start
                return
            self.seconds[stage] += time.perf_counter() - start
            self.frames[stage] += 1
            yield item

    def fps(self) -> dict[str, float]:
        return {s: self.frames[s] / self.seconds[s] for s in self.stages if self.seconds[s] > 0 and self.frames[s]}
