"""User-facing errors: one line on stderr and a non-zero exit, never a deep traceback."""
from __future__ import annotations

import functools
import signal
import sys
import threading
from typing import Callable, Sequence


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
