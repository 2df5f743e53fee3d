"""User-facing errors: one line on stderr and a non-zero exit, never a deep traceback."""
from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from typing import Callable, Iterator, Sequence


class UserError(Exception):
    """A problem with the user's input (file, flag, data) that is reported as one line."""


def _terminate(signum, frame) -> None:
    """SIGTERM ends a run as Ctrl-C does (the ``finally`` blocks close streams and discard temp files)."""
    raise KeyboardInterrupt


def cli(main: Callable[[Sequence[str] | None], object]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a script's ``main(argv)``: UserError -> ``error: ...`` on stderr and exit code 2; Ctrl-C or SIGTERM
    -> ``error: interrupted`` and exit code 130, after the run's ``finally`` blocks (a live stream is closed).

    The wrapped ``main`` itself still raises, so tests calling it in-process can assert on the error.
    """

    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None) -> int:
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
        try:
            main(argv)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        return 0

    return run


@contextlib.contextmanager
def stop_at_safe_points() -> Iterator[threading.Event]:
    """Within the block, the first Ctrl-C (SIGINT) or SIGTERM only sets the returned event; the loop checks it
    between units of work (a live run: between frames), stops there and cleans up, and the caller then raises
    ``KeyboardInterrupt`` (:func:`cli`: ``error: interrupted``, exit code 130). A second signal raises at once (a
    loop stuck waiting can still be stopped). The previous handlers are back after the block.

    Why: a ``KeyboardInterrupt`` raised wherever the main thread happens to be can land just after a lock was
    acquired and before the ``with`` that releases it (inside ``queue.Queue``, ``threading.Condition``); that
    lock then stays held, and the clean-up that puts the last item on the queue (a video's encoder) waits for
    ever. Outside the main thread no handler can be installed: the event is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {number: signal.signal(number, request) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
