"""`qwen3vl-eval tiny`: where a tiny random checkpoint lives (built on first use under the cache), or a copy of it in
a folder of your choice (a real checkpoint folder: transformers and any other tool load it)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer

from qwen3vl_eval.checkpoints.hub import TINY_NAMES
from qwen3vl_eval.commands import handle_errors
from qwen3vl_eval.errors import InputError


@handle_errors
def tiny(
    name: str = typer.Argument("tiny", help=f"Which one: {', '.join(TINY_NAMES)}."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Copy the checkpoint folder here (a new "
                                          "or empty folder)."),
) -> None:
    """Print the folder of a tiny random-weight checkpoint (QWEN3VL_EVAL_CACHE or ~/.cache/qwen3vl-eval, under
    tiny/), building it on first use; with --output, copy it there."""
    if name not in TINY_NAMES:
        raise InputError(f"{name}: not a tiny checkpoint (known: {', '.join(TINY_NAMES)})")
    if output is not None and output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"--output {output}: exists and is not an empty folder")
    from qwen3vl_eval.checkpoints.hub import resolve_model

    folder = resolve_model(name)
    if output is None:
        print(folder)
        return
    try:
        shutil.copytree(folder, output, dirs_exist_ok=True)
    except OSError as e:
        raise InputError(f"--output {output}: cannot write ({e.strerror or e})") from None
    print(output)
