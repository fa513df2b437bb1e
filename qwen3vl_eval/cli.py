"""The `qwen3vl-eval` command line. Each command lives in `qwen3vl_eval/commands/<name>.py`; the modules import
torch and the model lazily, so `--help`, `--version` and errors in the command line are quick."""

from __future__ import annotations

from typing import Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from qwen3vl_eval import __version__
from qwen3vl_eval.commands import bench as _bench
from qwen3vl_eval.commands import compare as _compare
from qwen3vl_eval.commands import drift as _drift
from qwen3vl_eval.commands import generate as _generate
from qwen3vl_eval.commands import parity as _parity
from qwen3vl_eval.commands import preprocess as _preprocess
from qwen3vl_eval.commands import run as _run
from qwen3vl_eval.commands import score as _score
from qwen3vl_eval.commands import serve as _serve
from qwen3vl_eval.commands import tasks as _tasks
from qwen3vl_eval.commands import tiny as _tiny


class _FlagHelp:
    """Help shows an on/off flag (`--resume`, `--fast/--no-fast`, `--help`) without a `<bool>` value."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class Command(_FlagHelp, TyperCommand):
    """A command of this CLI."""


class Group(_FlagHelp, TyperGroup):
    """The `qwen3vl-eval` group."""


app = typer.Typer(
    name="qwen3vl-eval",
    help="Evaluate and benchmark Qwen3-VL checkpoints against a reference PyTorch implementation.",
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"qwen3vl-eval {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Optional[bool] = typer.Option(None, "--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")) -> None:
    """Evaluate and benchmark Qwen3-VL checkpoints against a reference PyTorch implementation."""


# Registered commands, alphabetical.
for _name, _fn in (("bench", _bench.bench), ("compare", _compare.compare), ("drift", _drift.drift),
                   ("generate", _generate.main), ("parity", _parity.main), ("preprocess", _preprocess.preprocess),
                   ("run", _run.run), ("score", _score.score), ("serve", _serve.serve), ("tasks", _tasks.tasks),
                   ("tiny", _tiny.tiny)):
    app.command(_name, cls=Command)(_fn)
