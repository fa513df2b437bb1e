"""Conventions users of lm-evaluation-harness / lmms-eval expect from the command line (issue #15): `--version`,
`-h` as well as `--help` on every command, on/off flags without a `<bool>` placeholder, `bench --help` naming
every preset and tiny checkpoint, `tasks --json`, `--include-path`, `--model-args`, the `--limit` note, one
output layout for `run` and `score`, `tiny --output` and `score --write-oracle`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from helpers import assert_clean_error
from typer.testing import CliRunner

from qwen3vl_eval import __version__
from qwen3vl_eval.checkpoints.hub import TINY_NAMES, resolve_model
from qwen3vl_eval.cli import app
from qwen3vl_eval.commands.model_args import parse_model_args
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.eval.task import load_registry
from qwen3vl_eval.model.config import PRESETS

ROOT = Path(__file__).resolve().parents[1]

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


# ---------------------------------------------------------------- tasks --json, --include-path

def _user_tasks(tmp_path: Path, name: str = "my_sums") -> Path:
    folder = tmp_path / "mytasks"
    folder.mkdir(exist_ok=True)
    mmlu = ROOT / "tasks" / "text" / "mmlu.yaml"
    (folder / f"{name}.yaml").write_text(f"include: {mmlu}\ntask: {name}\nversion: 1\nsuites: [mine]\n"
                                         "data: {source: synth, path: synth_text, name: null}\n"
                                         "generation: {max_new_tokens: 4}\n")
    return folder


def test_tasks_json_lists_every_task_with_its_facts(tmp_path: Path) -> None:
    r = _invoke("tasks", "--json", "--include-path", str(_user_tasks(tmp_path)))
    assert r.exit_code == 0, r.output
    rows = {t["task"]: t for t in json.loads(r.stdout)}
    assert set(load_registry()) < set(rows) and "my_sums" in rows
    video = rows["videomme"]
    assert video["suites"] == ["videoqa"] and video["headline"] == video["metrics"][0] == "accuracy"
    assert video["reference"].startswith("lmms-eval") and video["data"].startswith("lmms-eval/Video-MME")
    assert isinstance(video["local_data"], bool) and rows["synth_text"]["local_data"] is True


def test_include_path_on_score_and_its_errors(tmp_path: Path) -> None:
    folder = _user_tasks(tmp_path)
    r = _invoke("score", "--task", "my_sums", "--include-path", str(folder), "--write-oracle",
                str(tmp_path / "o.jsonl"), "--output", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out" / "my_sums" / "results.json").read_text())["metrics"]["accuracy"] == 100
    assert_clean_error(_invoke("tasks", "--include-path", str(tmp_path / "nope")), "--include-path", "no such folder")
    _user_tasks(tmp_path, "synth_text")  # clashes with the built-in task
    assert_clean_error(_invoke("tasks", "--include-path", str(folder)), "synth_text", "already defined")
    (folder / "broken.yaml").write_text("task: broken\n")  # validated as tasks/ is
    assert_clean_error(_invoke("run", "--task", "broken", "--model", "tiny", "--include-path", str(folder)),
                       "broken.yaml", "missing key")


# ---------------------------------------------------------------- --model-args

PARAMS = {"dtype": str, "device": str, "max_pixels": int, "fps": float, "batch_size": int}


def test_model_args_map_onto_options() -> None:
    got = parse_model_args("torch_dtype=bfloat16, device_map=cpu,max_pixels=802816,fps=2,attn_implementation=sdpa",
                           PARAMS, lambda name: False)
    assert got == {"dtype": "bfloat16", "device": "cpu", "max_pixels": 802816, "fps": 2.0}


@pytest.mark.parametrize("text,needle", [("foo=1", "--model-args foo: not an option"),
                                         ("dtype", "expected key=value"),
                                         ("max_pixels=lots", "--max-pixels takes an integer"),
                                         ("dtype=float32,torch_dtype=float32", "--dtype is given twice"),
                                         ("attn_implementation=flash_attention_2", "sdpa only"),
                                         ("max_frames=8", "max_frames: not an option")])
def test_model_args_errors(text: str, needle: str) -> None:
    with pytest.raises(InputError, match=re.escape(needle)):
        parse_model_args(text, PARAMS, lambda name: False)


def test_model_args_conflict_with_a_flag_on_the_command_line() -> None:
    r = _invoke("run", "--task", "synth_text", "--model", "tiny", "--dtype", "float32", "--model-args",
                "dtype=bfloat16")
    assert_clean_error(r, "--model-args dtype=bfloat16", "--dtype is given twice")


def test_run_model_args_limit_note_and_the_layout_score_shares(tmp_path: Path) -> None:
    r = _invoke("run", "--task", "synth_imageqa", "--model", "tiny", "--limit", "2", "--max-new-tokens", "2",
                "--device", "cpu", "--output", str(tmp_path / "run"), "--model-args", "dtype=bfloat16,max_pixels=50000")
    assert r.exit_code == 0, r.output
    note = "--limit 2: for testing only, not a benchmark score"
    assert r.stdout.count(note) == 2
    results = json.loads((tmp_path / "run" / "synth_imageqa" / "results.json").read_text())
    assert results["config"]["dtype"] == "bfloat16" and results["model_info"]["dtype"] == "bfloat16"
    assert results["config"]["media"]["image"]["max_pixels"] == 50000
    assert f"**{note}" in (tmp_path / "run" / "synth_imageqa" / "report.md").read_text()
    s = _invoke("score", "--task", "synth_imageqa", "--predictions",
                str(tmp_path / "run" / "synth_imageqa" / "samples.jsonl"), "--output", str(tmp_path / "score"))
    assert s.exit_code == 0, s.output
    assert {p.name for p in (tmp_path / "run").iterdir()} == {p.name for p in (tmp_path / "score").iterdir()}
    assert {"synth_imageqa", "index.html"} <= {p.name for p in (tmp_path / "score").iterdir()}
    ran, scored = ({p.name for p in (tmp_path / d / "synth_imageqa").iterdir()} for d in ("run", "score"))
    assert {"samples.jsonl", "results.json", "report.md", "report.html"} <= ran & scored


# ---------------------------------------------------------------- tiny, oracle predictions

def test_tiny_prints_its_folder_and_exports_a_copy(tmp_path: Path) -> None:
    r = _invoke("tiny")
    assert r.exit_code == 0 and Path(r.stdout.strip()) == resolve_model("tiny")
    r = _invoke("tiny", "tiny-variant", "--output", str(tmp_path / "ckpt"))
    assert r.exit_code == 0, r.output
    src = resolve_model("tiny-variant")
    for f in src.iterdir():
        assert (tmp_path / "ckpt" / f.name).read_bytes() == f.read_bytes()
    assert_clean_error(_invoke("tiny", "tiny-huge"), "tiny-huge", "known: tiny")
    assert_clean_error(_invoke("tiny", "--output", str(tmp_path / "ckpt")), "not an empty folder")


@pytest.mark.parametrize("task", ["synth_imageqa", "synth_videoqa", "synth_temporal_grounding", "synth_grounding",
                                  "synth_text"])
def test_write_oracle_scores_100(tmp_path: Path, task: str) -> None:
    r = _invoke("score", "--task", task, "--write-oracle", str(tmp_path / "o.jsonl"), "--output", str(tmp_path))
    assert r.exit_code == 0, r.output
    results = json.loads((tmp_path / task / "results.json").read_text())
    assert all(v == 100.0 for k, v in results["metrics"].items() if "parse_failure" not in k), results["metrics"]
    lines = (tmp_path / "o.jsonl").read_text().splitlines()
    assert len(lines) == results["n_samples"] and set(json.loads(lines[0])) == {"id", "prediction"}
    assert_clean_error(_invoke("score", "--task", task), "exactly one of --predictions FILE and --write-oracle")
