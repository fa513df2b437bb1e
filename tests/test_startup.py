"""What a command costs before it does anything (issue #15): usage errors that need no model come before torch is
imported, a model is built on the meta device without running initialisers (which import torch._dynamo, seconds),
and the transformers install hint is written in one place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env

ROOT = Path(__file__).resolve().parents[1]

# The CLI in a fresh interpreter; prints the exit code and whether torch (or torch._dynamo) got imported.
_PROBE = """
import sys
from qwen3vl_eval.cli import app
try:
    app(sys.argv[1:], prog_name="qwen3vl-eval")
except SystemExit as e:
    print("exit", e.code, "torch" in sys.modules)
"""


def _probe(tmp_path: Path, *args: str) -> tuple[str, str]:
    env = {**subprocess_env(), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
           "QWEN3VL_EVAL_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120,
                       env=env, cwd=tmp_path)
    return r.stdout.strip().splitlines()[-1], r.stderr


@pytest.mark.parametrize("args,needle", [
    (["run", "--task", "no_such_task", "--model", "tiny"], "no_such_task"),
    (["run", "--task", "smoke", "--model", "tiny", "--limit", "0"], "--limit 0"),
    (["run", "--task", "smoke", "--model", "tiny", "--backend", "vllm"], "--backend vllm"),
    (["run", "--task", "videomme", "--model", "tiny"], "videomme: dataset"),
    (["score", "--task", "videomme", "--predictions", "p.jsonl"], "videomme: dataset"),
    (["generate", "--model", "tiny", "--messages", "missing.json"], "missing.json"),
    (["bench", "--preset", "9B"], "unknown preset"),
])
def test_usage_errors_come_before_torch(tmp_path: Path, args: list[str], needle: str) -> None:
    last, err = _probe(tmp_path, *args)
    assert last == "exit 2 False", (last, err)
    assert needle in err and err.count("\n") == 1, err


def test_run_reports_missing_data_and_missing_model_together(tmp_path: Path) -> None:
    last, err = _probe(tmp_path, "run", "--task", "videomme,charades_sta", "--model", "org/Absent@v1.0")
    assert last == "exit 2 False", (last, err)
    line = err.strip()
    assert line.startswith("error: 3 problems: (1) org/Absent: not in the local Hugging Face cache")
    assert "(2) videomme: dataset" in line and "(3) charades_sta: dataset" in line
    assert "--revision v1.0" in line


_BUILD = """
import sys
import torch
from torch import nn
from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS
from qwen3vl_eval.model.weights import meta_model
meta_model(TINY_CONFIGS["default"])
built = "torch._dynamo" in sys.modules
torch.manual_seed(0)
layer = nn.Linear(4, 4)  # outside the build: initialised as usual
print(built, bool(layer.weight.abs().sum() > 0), nn.Linear.reset_parameters.__name__)
"""


def test_meta_build_runs_no_initialiser() -> None:
    r = subprocess.run([sys.executable, "-c", _BUILD], capture_output=True, text=True, timeout=120,
                       env={**subprocess_env(), "PYTHONPATH": str(ROOT)})
    assert r.stdout.split() == ["False", "True", "reset_parameters"], r.stdout + r.stderr


def test_one_transformers_install_hint() -> None:
    places = [p.relative_to(ROOT).as_posix() for p in (ROOT / "qwen3vl_eval").rglob("*.py")
              if "[golden]" in p.read_text(encoding="utf-8")]
    assert places == ["qwen3vl_eval/backends/__init__.py"]
