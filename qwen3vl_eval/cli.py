"""The `qwen3vl-eval` command line. Each command lives in `qwen3vl_eval/commands/<name>.py`."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="qwen3vl-eval",
    help="Evaluate and benchmark Qwen3-VL checkpoints against a reference PyTorch implementation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Registered commands (one line each; keep alphabetical).
