"""User-facing errors: one line on stderr and a non-zero exit, never a deep traceback."""
from __future__ import annotations

import functools
import sys
from typing import Callable, Sequence


class UserError(Exception):
    """A problem with the user's input (file, flag, data) that is reported as one line."""


def cli(main: Callable[[Sequence[str] | None], object]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a script's ``main(argv)``: UserError -> ``error: ...`` on stderr and exit code 2.

    The wrapped ``main`` itself still raises, so tests calling it in-process can assert on the error.
    """

    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None) -> int:
        try:
            main(argv)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        return 0

    return run
