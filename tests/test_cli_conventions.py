"""Conventions users of lm-evaluation-harness / lmms-eval expect from the command line (issue #15): `--version`,
`-h` as well as `--help` on every command, on/off flags without a `<bool>` placeholder, `bench --help` naming
every preset and tiny checkpoint."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from qwen3vl_eval import __version__
from qwen3vl_eval.checkpoints.hub import TINY_NAMES
from qwen3vl_eval.cli import app
from qwen3vl_eval.model.config import PRESETS

COMMANDS = sorted(c.name for c in typer.main.get_command(app).commands.values())


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), terminal_width=200)


def test_version():
    r = _invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"qwen3vl-eval {__version__}"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_short_help_and_no_bool_placeholder(command):
    args = [command] if command else []
    long, short = _invoke(*args, "--help"), _invoke(*args, "-h")
    assert long.exit_code == 0 and short.exit_code == 0, short.output
    assert short.output == long.output
    assert "<bool>" not in long.output and "Show this message" in long.output


def test_every_command_is_checked():
    assert {"run", "score", "bench", "tasks", "generate", "serve"} <= set(COMMANDS)


def test_bench_help_lists_presets_and_tiny_checkpoints():
    out = " ".join(_invoke("bench", "--help").output.replace("│", " ").split())
    for name in [*PRESETS, *TINY_NAMES]:
        assert f" {name}," in out or f" {name}." in out, name
