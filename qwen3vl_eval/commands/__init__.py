"""One module per CLI command; `qwen3vl_eval.cli` registers them. Commands are thin: they parse options, call
library functions, and print. `handle_errors` turns input errors into one line on stderr and exit code 2;
`resolve_target` turns `--model`, `--device` and `--dtype` into a folder and torch objects, once per command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from qwen3vl_eval.errors import InputError

if TYPE_CHECKING:
    import torch

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class Target:
    """What a command runs on: `--model` as given (for reports), its checkpoint folder (None without a model,
    e.g. `bench --preset`), and the torch device and dtype."""

    name: str | None
    path: Path | None
    device: torch.device
    dtype: torch.dtype


def resolve_target(model: str | None, device: str = "auto", dtype: str = "auto") -> Target:
    """The one place a command resolves its model options: a local folder, a Hub id in the local cache or a
    tiny checkpoint name (`qwen3vl_eval.checkpoints.hub.resolve_model`), then `--device` and `--dtype`
    (`qwen3vl_eval.runtime.device`). InputError (exit 2) for any that cannot be resolved."""
    from qwen3vl_eval.checkpoints.hub import resolve_model
    from qwen3vl_eval.runtime.device import resolve_device, resolve_dtype

    path = resolve_model(model) if model is not None else None
    dev = resolve_device(device)
    return Target(None if model is None else str(model), path, dev, resolve_dtype(dtype, dev))


def task_registry(include_path: list[Path] | None = None) -> dict:
    """The tasks under tasks/ plus those in each `--include-path` folder (YAML files checked as tasks/ is, with
    `include:` relative to their own file); a folder that is missing, or a task name defined twice, is an
    InputError naming it."""
    from qwen3vl_eval.eval.task import load_registry

    registry = load_registry()
    for folder in include_path or []:
        if not Path(folder).is_dir():
            raise InputError(f"--include-path {folder}: no such folder")
        extra = load_registry(Path(folder))
        if not extra:
            raise InputError(f"--include-path {folder}: no task YAML files in it")
        for name, spec in extra.items():
            if name in registry:
                raise InputError(f"--include-path {folder}: task {name!r} in {spec.source_file} is already defined "
                                 f"in {registry[name].source_file}")
        registry.update(extra)
    return registry


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
    """A messages file (CONTRACTS section 4): JSON, one conversation or a list of them, at most
    `MAX_MESSAGES_BYTES` and `MAX_DEPTH` levels deep. Returns it parsed; relative media paths resolve against
    the file's folder (pass `path.parent` as the processor's base_dir)."""
    from qwen3vl_eval.jsonio import MAX_MESSAGES_BYTES, read_json

    return read_json(path, max_bytes=MAX_MESSAGES_BYTES, what="messages file")
