"""common.utils.threads.ahead: the items in order, produced ahead in another thread, errors raised in the caller,
an early stop closes the producer's iterator in its own thread."""
from __future__ import annotations

import threading
import time

import pytest

from common.utils.threads import ahead


def test_ahead_gives_every_item_in_order_from_another_thread_at_most_depth_ahead():
    produced, threads = [], set()

    def items():
        for i in range(20):
            threads.add(threading.current_thread().name)
            produced.append(i)
            yield i

    seen = []
    for item in ahead(items(), 2, "producer"):
        time.sleep(0.005)  # a slow caller: the producer fills the queue and waits
        # at most 2 queued + 1 being put while the caller holds this one
        assert len(produced) - (item + 1) <= 3
        seen.append(item)
    assert seen == list(range(20)) and threads == {"producer"}
    assert list(ahead(items(), 0)) == list(range(20))  # depth 0: one after the other
    assert threading.current_thread().name in threads


def test_ahead_raises_the_producers_error_at_its_place():
    def items():
        yield 1
        yield 2
        raise ValueError("bad frame")

    got = []
    with pytest.raises(ValueError, match="bad frame"):
        for item in ahead(items(), 1):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_closes_the_producer_in_its_thread_and_joins_it():
    closed = []

    def items():
        try:
            for i in range(1000):
                yield i
        finally:
            closed.append(threading.current_thread().name)

    stream = ahead(items(), 1, "producer")
    assert next(stream) == 0 and next(stream) == 1
    stream.close()
    assert closed == ["producer"]
    assert not any(t.name == "producer" for t in threading.enumerate())


def test_a_producer_that_does_not_stop_does_not_hang_the_caller(monkeypatch, capsys):
    """A producer stuck in its work (never back to check the stop) is waited for at most STOP_WAIT_S: the
    caller's close returns, with a warning, and the daemon thread is left (an interrupted run still ends)."""
    import common.utils.threads as threads_module

    monkeypatch.setattr(threads_module, "STOP_WAIT_S", 0.2)
    release = threading.Event()

    def items():
        yield 0
        release.wait(10)  # stuck until the test lets it go
        yield 1

    stream = ahead(items(), 1, "stuck")
    assert next(stream) == 0
    time.sleep(0.05)  # the producer is now inside its wait
    began = time.perf_counter()
    stream.close()
    assert time.perf_counter() - began < 5
    assert "the stuck thread did not stop within 0.2 s" in capsys.readouterr().err
    release.set()
