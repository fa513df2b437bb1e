"""Generation recipes and the one precedence rule (eval/recipes.py, commands/run.py `generation_plan`), several
seeds, media budget flags and data provenance in results.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qwen3vl_eval.checkpoints.tiny import build_tiny_checkpoint
from qwen3vl_eval.cli import app
from qwen3vl_eval.commands.run import generation_plan
from qwen3vl_eval.errors import InputError, TaskError
from qwen3vl_eval.eval.recipes import RECIPES, chosen_recipe, resolve
from qwen3vl_eval.eval.task import load_registry, parse_task

REGISTRY = load_registry()
QWEN_INSTRUCT = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0, "presence_penalty": 1.5,
                 "max_new_tokens": 32768, "seed": 3407}
QWEN_THINKING = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.0, "presence_penalty": 0.0,
                 "max_new_tokens": 40960, "seed": 1234}


def _task(**generation) -> object:
    raw = {"task": "t", "version": 1, "data": {"source": "synth", "path": "synth_text"}, "adapter": "mmlu",
           "prompt": REGISTRY["synth_text"].prompt, "parser": REGISTRY["synth_text"].parser,
           "scorer": REGISTRY["synth_text"].scorer, "metrics": REGISTRY["synth_text"].metrics}
    recipe = generation.pop("recipe", None)
    return parse_task({**raw, "generation": generation, **({"recipe": recipe} if recipe else {})})


def _results(out: Path, task: str) -> dict:
    return json.loads((out / task / "results.json").read_text())


def test_the_published_values() -> None:
    """QwenLM/Qwen3-VL README.md @ 9658872, "Generation Hyperparameters" (Instruct and Thinking models)."""
    assert RECIPES["qwen-instruct"] == QWEN_INSTRUCT and RECIPES["qwen-thinking"] == QWEN_THINKING
    assert RECIPES["greedy"]["temperature"] == 0.0 and "max_new_tokens" not in RECIPES["greedy"]


def test_precedence_flag_over_recipe_over_task_over_default_over_checkpoint() -> None:
    ckpt = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "max_new_tokens": 128}
    task = {"max_new_tokens": 16, "temperature": 0.3}
    # no recipe named: the task's sampling keys win over the default greedy, which wins over the checkpoint
    keys, src = resolve(flags={"top_k": None}, recipe=None, task=task, checkpoint=ckpt)
    assert (keys["temperature"], src["temperature"]) == (0.3, "task")
    assert (keys["top_p"], src["top_p"]) == (1.0, "default greedy")
    assert (keys["max_new_tokens"], src["max_new_tokens"]) == (16, "task")
    # a named recipe overrides the task
    keys, src = resolve(flags={}, recipe="qwen-instruct", task=task, checkpoint=ckpt)
    assert (keys["temperature"], keys["max_new_tokens"], src["seed"]) == (0.7, 32768, "recipe qwen-instruct")
    # a flag overrides the recipe
    keys, src = resolve(flags={"temperature": 0.0, "max_new_tokens": 4}, recipe="qwen-instruct", task=task,
                        checkpoint=ckpt)
    assert (keys["temperature"], keys["max_new_tokens"], src["temperature"]) == (0.0, 4, "flag")
    # the checkpoint recipe has no values: the checkpoint shows through where the task is silent
    keys, src = resolve(flags={}, recipe="checkpoint", task=task, checkpoint=ckpt)
    assert (keys["top_p"], src["top_p"], keys["temperature"]) == (0.8, "checkpoint", 0.3)


def test_which_recipe() -> None:
    assert chosen_recipe(None, None, False) == (None, "default (greedy)")
    assert chosen_recipe(None, None, True) == ("qwen-thinking", "Thinking checkpoint default")
    assert chosen_recipe(None, "qwen-instruct", True) == ("qwen-instruct", "task recipe:")
    assert chosen_recipe("greedy", "qwen-instruct", True) == ("greedy", "--recipe")
    with pytest.raises(InputError, match="--recipe nope: unknown recipe"):
        chosen_recipe("nope", None, False)
    with pytest.raises(TaskError, match="field recipe: unknown 'nope'"):
        _task(recipe="nope")


def test_task_sampling_settings_take_effect(tmp_path: Path) -> None:
    """Before, run's flags had non-None defaults, so a task's generation: sampling keys never applied."""
    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    plan = generation_plan(_task(temperature=0.5, top_p=0.9, max_new_tokens=8), {"seed": None}, None, False, ckpt)
    p = plan.params[0]
    assert (p.temperature, p.top_p, p.max_new_tokens, p.top_k) == (0.5, 0.9, 8, 0)
    assert plan.record["generation_sources"]["temperature"] == "task"
    # the checkpoint recipe: the tiny checkpoint's generation_config.json (top_k 20) shows through
    p = generation_plan(_task(max_new_tokens=8), {}, "checkpoint", False, ckpt).params[0]
    assert (p.top_k, p.max_new_tokens) == (json.loads((ckpt / "generation_config.json").read_text())["top_k"], 8)
    # a task recipe
    p = generation_plan(_task(recipe="qwen-thinking", max_new_tokens=8), {}, None, False, ckpt).params[0]
    assert (p.temperature, p.max_new_tokens, p.seed) == (0.6, 40960, 1234)


def test_seeds_need_sampling(tmp_path: Path) -> None:
    plan = generation_plan(_task(), {"max_new_tokens": 4}, "qwen-instruct", False, None, seeds=3)
    assert [p.seed for p in plan.params] == [3407, 3408, 3409] and plan.record["seeds"] == [3407, 3408, 3409]
    with pytest.raises(InputError, match="decodes greedily"):
        generation_plan(_task(), {}, None, False, None, seeds=3)


def test_run_recipe_qwen_instruct_on_the_smoke_suite_records_its_settings(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--task", "smoke", "--model", "tiny", "--limit", "1", "--recipe",
                                 "qwen-instruct", "--max-new-tokens", "4", "--output", str(out)])
    assert r.exit_code == 0, r.output
    for task in ("synth_imageqa", "synth_videoqa", "synth_grounding", "synth_temporal_grounding", "synth_text"):
        cfg = _results(out, task)["config"]
        assert cfg["recipe"] == "qwen-instruct" and cfg["recipe_source"] == "--recipe"
        assert {k: cfg["generation"][k] for k in QWEN_INSTRUCT} == QWEN_INSTRUCT | {"max_new_tokens": 4}
        assert cfg["generation"]["max_new_tokens"] == 4 and cfg["generation_sources"]["max_new_tokens"] == "flag"
        assert cfg["generation_sources"]["presence_penalty"] == "recipe qwen-instruct"
        report = (out / task / "report.md").read_text()
        assert "recipe qwen-instruct" in report and "presence_penalty 1.5" in report


def test_run_flags_override_and_default_is_greedy(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--task", "synth_text", "--model", "tiny", "--limit", "1", "--output",
                                 str(out), "--presence-penalty", "0.5", "--repetition-penalty", "1.2"])
    assert r.exit_code == 0, r.output
    cfg = _results(out, "synth_text")["config"]
    assert cfg["recipe"] == "greedy" and cfg["generation"]["temperature"] == 0.0
    assert (cfg["generation"]["presence_penalty"], cfg["generation"]["repetition_penalty"]) == (0.5, 1.2)
    r = CliRunner().invoke(app, ["run", "--task", "synth_text", "--model", "tiny", "--recipe", "fast"])
    assert r.exit_code == 2 and "--recipe fast: unknown recipe" in r.output


def test_run_seeds_reports_mean_and_spread(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--task", "synth_text", "--model", "tiny", "--limit", "2", "--recipe",
                                 "qwen-instruct", "--max-new-tokens", "4", "--seeds", "3", "--output", str(out)])
    assert r.exit_code == 0, r.output
    res = _results(out, "synth_text")
    per_seed = [_results(out / "synth_text", f"seed-{s}") for s in (3407, 3408, 3409)]
    assert [p["config"]["generation"]["seed"] for p in per_seed] == [3407, 3408, 3409]
    spread = res["seeds"]["metrics"]["accuracy"]
    values = [p["metrics"]["accuracy"] for p in per_seed]
    assert spread["values"] == values and spread["mean"] == pytest.approx(sum(values) / 3)
    assert spread["min"] == min(values) and spread["std"] is not None
    assert res["metrics"]["accuracy"] == spread["mean"]
    report = (out / "synth_text" / "report.md").read_text()
    assert "3 seeds" in report and "| accuracy |" in report and "seed 3409" in report
    r = CliRunner().invoke(app, ["run", "--task", "synth_text", "--model", "tiny", "--seeds", "2"])
    assert r.exit_code == 2 and "decodes greedily" in r.output


def test_thinking_checkpoint_gets_the_thinking_recipe(tmp_path: Path) -> None:
    ckpt = build_tiny_checkpoint(tmp_path / "Qwen3-VL-tiny", thinking=True)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--task", "synth_text", "--model", str(ckpt), "--limit", "2",
                                 "--max-new-tokens", "4", "--output", str(out)])
    assert r.exit_code == 0, r.output
    res = _results(out, "synth_text")
    assert res["model_info"]["thinking"] is True and res["config"]["thinking"] is True
    assert res["config"]["recipe"] == "qwen-thinking"
    assert res["config"]["recipe_source"] == "Thinking checkpoint default"
    assert res["config"]["generation"]["temperature"] == 0.6  # the recipe; the budget comes from the flag here
    report = (out / "synth_text" / "report.md").read_text()
    assert "Thinking checkpoint" in report
    # 4 new tokens never reach </think>: both replies are cut-off reasoning, parse failures counted as such
    assert res["n_truncated_reasoning"] == 2 and "truncated reasoning 2" in report


def test_media_flags_are_applied_checked_and_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--task", "synth_videoqa,synth_imageqa", "--model", "tiny", "--limit", "1",
                                 "--max-new-tokens", "2", "--fps", "1", "--max-pixels", "8192", "--total-pixels",
                                 "65536", "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert _results(out, "synth_videoqa")["config"]["media"]["video"] == {
        "fps": 1.0, "max_frames": 8, "min_pixels": 4096, "max_pixels": 8192, "total_pixels": 65536}
    assert _results(out, "synth_imageqa")["config"]["media"]["image"] == {"max_pixels": 8192}
    r = CliRunner().invoke(app, ["run", "--task", "synth_videoqa", "--model", "tiny", "--max-frames", "0"])
    assert r.exit_code == 2 and "max_frames must be an integer >= 1" in r.output and "Traceback" not in r.output


def test_task_media_keys_are_validated() -> None:
    base = {"task": "t", "version": 1, "data": {"source": "synth", "path": "synth_text"}, "adapter": "mmlu",
            "prompt": "vqa_short", "parser": "short_answer", "scorer": "anls", "metrics": ["anls"]}
    with pytest.raises(TaskError, match=r"x.yaml: field media.video: unknown key\(s\) frames"):
        parse_task({**base, "media": {"video": {"frames": 8}}}, "x.yaml")
    with pytest.raises(TaskError, match="field media.video: give fps or nframes"):
        parse_task({**base, "media": {"video": {"fps": 2, "nframes": 8}}}, "x.yaml")
    with pytest.raises(TaskError, match="field media.image: min_pixels 5 is above max_pixels 4"):
        parse_task({**base, "media": {"image": {"min_pixels": 5, "max_pixels": 4}}}, "x.yaml")


def test_data_provenance_in_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    data = Path(__file__).parent / "data" / "gsm8k" / "test.jsonl"
    r = CliRunner().invoke(app, ["run", "--task", "gsm8k", "--model", "tiny", "--limit", "2", "--max-new-tokens",
                                 "2", "--data", str(data), "--output", str(out)])
    assert r.exit_code == 0, r.output
    prov = _results(out, "gsm8k")["config"]["data_provenance"]
    assert prov["kind"] == "file" and prov["files"] == {"test.jsonl": hashlib.sha256(data.read_bytes()).hexdigest()}
    assert prov["n_rows"] == 2 and len(prov["rows_sha256"]) == 64
    again = tmp_path / "again"
    CliRunner().invoke(app, ["run", "--task", "gsm8k", "--model", "tiny", "--limit", "2", "--max-new-tokens", "2",
                             "--data", str(data), "--output", str(again)])
    assert _results(again, "gsm8k")["config"]["data_provenance"]["rows_sha256"] == prov["rows_sha256"]
    assert "rows sha256" in (out / "gsm8k" / "report.md").read_text()


def test_revision_pin_against_the_local_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from qwen3vl_eval.eval.data import load_task_data

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    commit = "a" * 40
    snap = hub / "datasets--openai--gsm8k" / "snapshots" / commit / "main"
    snap.mkdir(parents=True)
    (snap / "test-00000-of-00001.jsonl").write_bytes((Path(__file__).parent / "data" / "gsm8k" /
                                                      "test.jsonl").read_bytes())
    spec = REGISTRY["gsm8k"]
    samples, prov = load_task_data(replace(spec, data=replace(spec.data, revision="aaaaaaa")))
    assert samples and prov["kind"] == "hf-snapshot" and prov["commit"] == commit
    with pytest.raises(TaskError, match=f"data.revision bbbbbbbb pins a commit, but the local snapshot of "
                                        f"openai/gsm8k is {commit}"):
        load_task_data(replace(spec, data=replace(spec.data, revision="bbbbbbbb")))
