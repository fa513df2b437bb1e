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


def read_messages(path) -> list:
    """A messages file (CONTRACTS section 4): JSON, one conversation or a list of them. Returns it parsed;
    relative media paths resolve against the file's folder (pass `path.parent` as the processor's base_dir)."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: messages file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
