"""Running an iterator ahead of its consumer in a thread of its own (video decoding, the live 2D stage)."""
from __future__ import annotations

import sys
import threading
from queue import Empty, Full, Queue
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()  # the producer's iterator is exhausted
STOP_WAIT_S = 30.0  # longest wait for the producer to stop when the caller stops (then it is left, a daemon)


def ahead(items: Iterable[T], depth: int, name: str = "ahead", interrupt: threading.Event | None = None
          ) -> Iterator[T]:
    """The items of ``items``, in order, produced by a thread (``name``) that runs up to ``depth`` items ahead of
    the caller (a bounded queue: memory stays constant; the producer's work overlaps the caller's). An exception
    raised while producing is raised in the caller at its place in the sequence. When the caller stops early (or
    closes the returned generator), the producer stops after the item it is working on, its iterator is closed in
    its own thread and the thread is joined before the generator returns (at most :data:`STOP_WAIT_S`: a producer
stuck longer is left running as a daemon thread, with a warning, so that an interrupted run still ends).
    ``interrupt`` set while the caller waits for the next item: the sequence ends there (as if exhausted; the
    caller tells the two apart by the event, :func:`common.utils.errors.stop_at_safe_points`). ``depth`` <= 0: no
    thread, the items one after the other in the caller's thread."""
    if depth <= 0:
        yield from items
        return
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():  # the caller may have stopped early: never block forever
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = queue.get(timeout=0.1)
            except Empty:
                if interrupt is not None and interrupt.is_set():
                    return
                if not thread.is_alive() and queue.empty():
                    raise RuntimeError(f"{name}: the producing thread ended without a result") from None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(STOP_WAIT_S)
        if thread.is_alive():
            print(f"warning: the {name} thread did not stop within {STOP_WAIT_S:g} s; left running",
                  file=sys.stderr)
