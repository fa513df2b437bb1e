"""The runner: resume after a crash (fake backend, in process), failing samples, and `run` end to end on the
tiny checkpoint with the real Engine, on the synthetic suite and on every real-schema fixture (--data)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import FIXTURES, Crash, FakeBackend, cli, oracle_prediction

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.adapters import Sample
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.prompts import PROMPTS
from qwen3vl_eval.eval.runner import run_task
from qwen3vl_eval.eval.sample_log import read_records
from qwen3vl_eval.eval.task import load_registry

REGISTRY = load_registry()
PARAMS = SimpleNamespace(max_new_tokens=8, temperature=0.0)


def oracle_backend(task: str, samples: list[Sample], *, fail_on: str | None = None, **kw) -> FakeBackend:
    """Answers each sample's prompt with its oracle prediction (2 tokens); fails a batch holding `fail_on`."""
    spec = REGISTRY[task]
    table = {PROMPTS[spec.prompt].text(s): oracle_prediction(spec.scorer, s.target) for s in samples}
    info = {"model": "fake", "checkpoint_sha256": "0" * 64, "dtype": "float32", "device": "cpu"}
    return FakeBackend(table, token_ids=(1, 2), info=info, **kw,
                       reject=lambda t: "prompt too long" if fail_on and fail_on in t else None)


def test_resume_after_crash_gives_same_results(tmp_path):
    spec = REGISTRY["synth_grounding"]
    samples = load_samples(spec)
    full = run_task(spec, samples, oracle_backend(spec.task, samples), tmp_path / "a", PARAMS, batch_size=3)

    with pytest.raises(Crash):
        run_task(spec, samples, oracle_backend(spec.task, samples, crash_on_call=3), tmp_path / "b", PARAMS,
                 batch_size=3)
    log = tmp_path / "b" / "samples.jsonl"
    assert len(read_records(log)) == 6  # two batches made it to disk
    with open(log, "a") as f:
        f.write('{"id": "synth3/0", "predic')  # torn last line
    with pytest.raises(TaskError, match="--resume"):
        run_task(spec, samples, oracle_backend(spec.task, samples), tmp_path / "b", PARAMS)
    backend = oracle_backend(spec.task, samples)
    resumed = run_task(spec, samples, backend, tmp_path / "b", PARAMS, batch_size=3, resume=True)
    assert backend.calls == 1  # only the 2 missing samples
    ids = [r["id"] for r in read_records(log)]
    assert len(ids) == len(set(ids)) == len(samples)
    assert resumed["metrics"] == full["metrics"] and resumed["metrics"]["acc@0.5"] == 100.0
    assert resumed["n_samples"] == full["n_samples"] == 8
    assert resumed["throughput"]["resumed_from"] == 6


def test_failing_samples_are_logged_and_the_run_goes_on(tmp_path):
    spec = REGISTRY["synth_text"]
    samples = load_samples(spec)
    bad_image = Sample("bad-image", "A", "What?", choices=["1", "2"], images=[{"bytes": b"not a png", "path": None}])
    missing_video = Sample("no-video", "A", "What?", choices=["1", "2"], videos=["/nope.mp4"],
                           error="video nope.mp4 not found")
    all_samples = samples + [bad_image, missing_video]
    backend = oracle_backend(spec.task, samples, fail_on=samples[1].question)
    res = run_task(spec, all_samples, backend, tmp_path, PARAMS, batch_size=4)
    recs = {r["id"]: r for r in read_records(tmp_path / "samples.jsonl")}
    assert res["n_samples"] == 7 and res["n_errors"] == 3
    assert "prompt too long" in recs[samples[1].id]["error"]
    assert "UnidentifiedImageError" in recs["bad-image"]["error"]
    assert "not found" in recs["no-video"]["error"]
    # batch-mates of the failing one still scored
    assert recs[samples[0].id]["scores"] == {"accuracy": 1.0, "accuracy_flexible": 1.0}
    assert recs[samples[0].id]["accuracy"] == 1.0  # CONTRACTS 5: per-sample scores are fields of the line
    assert "accuracy" not in recs["bad-image"] and recs["bad-image"]["scores"] is None
    assert res["metrics"]["accuracy"] == pytest.approx(400 / 7)
    assert "## Errors" in (tmp_path / "report.md").read_text()


def test_results_record_what_makes_a_number(tmp_path):
    spec = REGISTRY["synth_text"]
    samples = load_samples(spec)
    res = run_task(spec, samples, oracle_backend(spec.task, samples), tmp_path, PARAMS, batch_size=2,
                   config={"model": "fake", "seed": 0})
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"] == res["metrics"]
    for key in ("task", "model", "metrics", "n_samples", "n_errors", "config", "throughput", "versions",
                "created", "model_info", "started", "finished"):
        assert key in saved, key
    assert saved["versions"]["prompt"] == "mcq_qwen3vl@1" and saved["versions"]["parser"] == "mmlu_lm_eval@1"
    assert saved["versions"]["parser_flexible"] == "mc_letter@2" and saved["reference"].startswith("lm-evaluation")
    assert saved["throughput"]["generated_tokens"] == 10 and saved["throughput"]["samples_per_s"] > 0
    assert saved["config"]["generation"] == {"max_new_tokens": 8, "temperature": 0.0}


# ---------------------------------------------------------------- end to end with the real Engine (tiny)

@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "data"))
    from make_fixtures import make_videos

    return make_videos(tmp_path_factory.mktemp("videos"))


@pytest.mark.parametrize("task", ["docvqa_val", "chartqa_test", "textvqa_val", "mmmu_val", "videomme",
                                  "charades_sta", "refcoco_testA", "mmlu", "gsm8k"])
def test_run_on_real_schema_fixtures(engine, videos, task, tmp_path):
    from qwen3vl_eval.backends.native import GenerationParams

    spec = REGISTRY[task]
    samples = load_samples(spec, str(FIXTURES[task]), media_root=videos)[:2]
    res = run_task(spec, samples, engine, tmp_path, GenerationParams(max_new_tokens=4), batch_size=2)
    assert res["n_samples"] == 2 and res["n_errors"] == 0, read_records(tmp_path / "samples.jsonl")
    assert res["throughput"]["generated_tokens"] > 0
    assert res["model_info"].get("checkpoint_sha256")


def test_run_command_smoke_and_resume(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--task", "smoke", "--model", "tiny", "--limit", "2", "--batch-size", "2",
            "--max-new-tokens", "4", "--device", "cpu", "--output", str(out)]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    first = {}
    for task in ["synth_imageqa", "synth_videoqa", "synth_temporal_grounding", "synth_grounding", "synth_text"]:
        res = json.loads((out / task / "results.json").read_text())
        assert res["n_samples"] == 2 and res["n_errors"] == 0, task
        report = (out / task / "report.md").read_text()  # every figure names model, dtype, device, batch, versions
        assert "`tiny` (dtype float32, device cpu" in report and "batch size 2" in report and "torch" in report
        first[task] = res["metrics"]
    summary = json.loads((out / "summary.json").read_text())  # the run's one table of headlines
    assert sorted(t["task"] for t in summary["tasks"]) == sorted(first) and summary["model"] == "tiny"
    assert (out / "summary.png").is_file() and f"summary {out / 'summary.md'}" in r.output
    r = cli(*args + ["--resume"])
    assert r.exit_code == 0, r.output
    for task, metrics in first.items():
        res = json.loads((out / task / "results.json").read_text())
        # nothing left to generate: the throughput is the first run's, marked so
        assert res["metrics"] == metrics and res["throughput"]["resumed_from"] == 2
        assert res["throughput"]["samples"] == 2 and res["throughput"]["from_earlier_run"]
        ids = [x["id"] for x in read_records(out / task / "samples.jsonl")]
        assert len(ids) == len(set(ids)) == 2


@pytest.mark.parametrize("extra,needle", [
    (["--backend", "openai"], "--backend openai"),
    (["--task", "nope"], "no such task"),
    (["--data", "x.parquet", "--task", "smoke"], "applies to one task"),
    (["--video-prompt", "other"], "--video-prompt"),
])
def test_run_usage_errors(extra, needle):
    args = ["run", "--task", "synth_text", "--model", "tiny"] + extra
    r = cli(*args)
    assert r.exit_code == 2 and needle in r.output, r.output


def test_run_without_any_media_is_one_clear_error(tmp_path):
    r = cli("run", "--task", "videomme", "--model", "tiny", "--data", FIXTURES["videomme"], "--media-root", tmp_path,
            "--output", tmp_path / "o")
    assert r.exit_code == 2 and "vid001" in r.output and "--media-root" in r.output, r.output
