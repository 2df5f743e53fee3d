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


def test_an_interrupt_set_while_the_caller_waits_ends_the_sequence_there():
    """``interrupt`` set while no item is ready: the sequence ends (the caller reads the event to tell it from
    the end of the items); items that are ready still come first, and the producer is stopped and joined."""
    interrupt, release = threading.Event(), threading.Event()

    def items():
        yield 0
        release.wait(10)  # the next item does not come until the test lets it
        yield 1

    stream = ahead(items(), 1, "slow", interrupt=interrupt)
    assert next(stream) == 0
    threading.Timer(0.2, interrupt.set).start()
    threading.Timer(0.6, release.set).start()  # the producer finishes its item, then sees the stop
    began = time.perf_counter()
    assert list(stream) == [] and time.perf_counter() - began < 5
    assert not any(t.name == "slow" for t in threading.enumerate())


def test_a_signal_inside_stop_at_safe_points_sets_the_event_and_a_second_one_raises():
    """The first SIGTERM (or Ctrl-C) only sets the event, nothing is raised where the main thread happens to be;
    a second one raises KeyboardInterrupt at once; after the block the previous handlers are back."""
    import os
    import signal

    from common.utils.errors import stop_at_safe_points

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with stop_at_safe_points() as stop:
            for number in (signal.SIGTERM, signal.SIGINT):
                os.kill(os.getpid(), number)
                time.sleep(0.05)  # the handler runs in the main thread at its next bytecode
                reached.append((number, stop.is_set()))  # only the first signal gets here
    assert reached == [(signal.SIGTERM, True)]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_stop_at_safe_points_outside_the_main_thread_installs_nothing():
    import signal

    from common.utils.errors import stop_at_safe_points

    before, got = signal.getsignal(signal.SIGTERM), []

    def worker():
        with stop_at_safe_points() as stop:
            got.append((stop.is_set(), signal.getsignal(signal.SIGTERM)))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert got == [(False, before)]
