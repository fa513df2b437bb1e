"""The `qwen3vl-eval` command line. Each command lives in `qwen3vl_eval/commands/<name>.py`; the modules import
torch and the model lazily, so `--help` is quick."""

from __future__ import annotations

import typer

from qwen3vl_eval.commands import bench as _bench
from qwen3vl_eval.commands import compare as _compare
from qwen3vl_eval.commands import generate as _generate
from qwen3vl_eval.commands import parity as _parity
from qwen3vl_eval.commands import preprocess as _preprocess
from qwen3vl_eval.commands import run as _run
from qwen3vl_eval.commands import score as _score
from qwen3vl_eval.commands import serve as _serve
from qwen3vl_eval.commands import tasks as _tasks

app = typer.Typer(
    name="qwen3vl-eval",
    help="Evaluate and benchmark Qwen3-VL checkpoints against a reference PyTorch implementation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Registered commands, alphabetical.
app.command("bench")(_bench.bench)
app.command("compare")(_compare.compare)
app.command("generate")(_generate.main)
app.command("parity")(_parity.main)
app.command("preprocess")(_preprocess.preprocess)
app.command("run")(_run.run)
app.command("score")(_score.score)
app.command("serve")(_serve.serve)
app.command("tasks")(_tasks.tasks)
