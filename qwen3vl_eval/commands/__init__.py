"""One module per CLI command; `qwen3vl_eval.cli` registers them. Commands are thin: they parse options, call
library functions, and print. `handle_errors` turns input errors into one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from qwen3vl_eval.errors import InputError

F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` on stderr and return the Exit to raise."""
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Bad input (InputError) exits 2 with a one-line message and no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as e:
            raise fail(str(e)) from None

    return wrapper  # type: ignore[return-value]
