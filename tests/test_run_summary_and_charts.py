"""Complete reports (issue #15): the run summary (summary.json/.md/.png), throughput kept by a fully resumed run,
compare's paired intervals on grounding, direction-aware wording, per-task versions and a readable metrics
chart, and bench's latency chart (error bars, axes from 0). PNGs are checked by size bounds, not pixels."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import FakeBackend, cli, oracle_prediction, write_preds
from PIL import Image

from qwen3vl_eval.bench import report as BR
from qwen3vl_eval.compare.comparison import change_words, compare_results
from qwen3vl_eval.compare.gates import Gate
from qwen3vl_eval.compare.results import load_result
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.prompts import PROMPTS
from qwen3vl_eval.eval.runner import run_task
from qwen3vl_eval.eval.summary import write_run_summary
from qwen3vl_eval.eval.task import load_registry
from qwen3vl_eval.report import charts

REGISTRY = load_registry()
PARAMS = SimpleNamespace(max_new_tokens=8, temperature=0.0)
INFO = {"model": "fake", "dtype": "float32", "device": "cpu", "checkpoint_sha256": "ab" * 32}
SMOKE = ("synth_imageqa", "synth_videoqa", "synth_temporal_grounding", "synth_grounding", "synth_text")


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def oracle_backend(task: str, samples: list) -> FakeBackend:
    spec = REGISTRY[task]
    table = {PROMPTS[spec.prompt].text(s): oracle_prediction(spec.scorer, s.target) for s in samples}
    return FakeBackend(lambda p: table.get(p, "?"), token_ids=(1, 2), info=INFO)


def test_run_summary_has_every_task_headline_with_provenance(tmp_path):
    for task in ("synth_text", "synth_grounding"):
        samples = load_samples(REGISTRY[task])[:3]
        run_task(REGISTRY[task], samples, oracle_backend(task, samples), tmp_path / task, PARAMS,
                 config={"model": "fake-model", "backend": "native", "limit": 3})
    md = write_run_summary(tmp_path).read_text()  # every task folder of the run folder
    s = json.loads((tmp_path / "summary.json").read_text())
    assert (s["model"], s["backend"], s["dtype"], s["device"], s["limit"]) == ("fake-model", "native", "float32",
                                                                               "cpu", "3")
    assert s["versions"]["harness"] and s["versions"]["python"] and s["created"]
    rows = {t["task"]: t for t in s["tasks"]}
    assert rows["synth_text"]["headline"] == "accuracy" and rows["synth_text"]["value"] == 100.0
    assert rows["synth_grounding"]["headline"] == "acc@0.5" and rows["synth_grounding"]["value"] == 100.0
    assert rows["synth_text"]["reference"].startswith("lm-evaluation-harness")
    assert rows["synth_text"]["versions"]["parser"] == "mmlu_lm_eval@1"
    assert rows["synth_text"]["samples_per_s"] > 0 and rows["synth_text"]["n_samples"] == 3
    assert "| synth_text | accuracy | 100.00 | 3 | 0 | 0 |" in md and "| synth_grounding | acc@0.5 |" in md
    assert "`fake-model`" in md and "dtype float32, device cpu" in md and "--limit 3" in md
    assert "headline follows" in md and "standard top-1 Acc@0.5" in md and "![headline metrics](summary.png)" in md
    w, h = png_size(tmp_path / "summary.png")
    assert 600 <= w <= 1400 and 250 <= h <= 1000


def test_a_fully_resumed_run_keeps_its_throughput(tmp_path):
    spec = REGISTRY["synth_text"]
    samples = load_samples(spec)
    first = run_task(spec, samples, oracle_backend(spec.task, samples), tmp_path, PARAMS)
    backend = oracle_backend(spec.task, samples)
    again = run_task(spec, samples, backend, tmp_path, PARAMS, resume=True)
    assert backend.calls == 0 and again["metrics"] == first["metrics"]
    tp = again["throughput"]
    assert tp["samples_per_s"] == first["throughput"]["samples_per_s"] is not None
    assert tp["samples"] == 5 and tp["resumed_from"] == 5 and tp["from_earlier_run"] == first["finished"]
    assert "figures from the earlier run" in (tmp_path / "report.md").read_text()
    third = run_task(spec, samples, backend, tmp_path, PARAMS, resume=True)  # still that first run's
    assert third["throughput"]["from_earlier_run"] == first["finished"]
    assert third["throughput"]["samples_per_s"] == first["throughput"]["samples_per_s"]


def _score(tmp_path: Path, task: str, preds: dict[str, str], run: Path) -> Path:
    """`score` into the run folder `run` (its `<task>/` subfolder, as `run` lays it out); returns `run`."""
    r = cli("score", "--task", task, "--predictions", write_preds(tmp_path / f"{run.name}-{task}.jsonl", preds),
            "--output", run)
    assert r.exit_code == 0, r.output
    return run


def _oracle(task: str) -> dict[str, str]:
    spec = REGISTRY[task]
    return {s.id: oracle_prediction(spec.scorer, s.target) for s in load_samples(spec)}


def test_grounding_gets_paired_intervals_and_directions_drive_gate_and_words(tmp_path):
    task = "synth_grounding"
    right = _oracle(task)
    ids = list(right)
    worse = dict(right, **{ids[0]: "no box", ids[1]: '{"bbox_2d": [0, 0, 10, 10]}'})
    base = _score(tmp_path, task, right, tmp_path / "base")
    cand = _score(tmp_path, task, worse, tmp_path / "cand")
    res = json.loads((cand / task / "results.json").read_text())
    del res["higher_is_better"]  # an older results.json: the directions come from the one table
    (cand / task / "results.json").write_text(json.dumps(res))
    comp = compare_results(load_result(base), load_result(cand), Gate(max_drop=5), resamples=200)
    rows = {m.metric: m for m in comp.metrics}
    for metric in ("acc@0.5", "miou", "acc@0.5_flexible", "miou_flexible", "parse_failure_rate",
                   "parse_failure_rate_flexible"):
        assert rows[metric].ci is not None and rows[metric].ci.n == len(ids), metric
    pfr = rows["parse_failure_rate"]
    assert not pfr.higher_is_better and pfr.delta == pytest.approx(100 / len(ids)) and pfr.failed
    assert pfr.ci.delta == pytest.approx(pfr.delta)
    assert f"{task}:parse_failure_rate: rose 12.50 points (worse; lower is better) (0.00 -> 12.50), worse by " \
           "more than 5" in comp.failures
    assert f"{task}:acc@0.5: fell 25.00 points (worse; higher is better) (100.00 -> 75.00), worse by more " \
           "than 5" in comp.failures
    assert change_words(-3.0, False) == "fell 3.00 points (better; lower is better)"
    assert change_words(0.0, True) == "unchanged"


def test_compare_header_lists_versions_per_task_and_the_metrics_chart_is_readable(tmp_path):
    for run in ("base", "cand"):
        for task in SMOKE:
            _score(tmp_path, task, _oracle(task), tmp_path / run)
    out = tmp_path / "report"
    r = cli("compare", tmp_path / "base", tmp_path / "cand", "--output", out, "--resamples", "100")
    assert r.exit_code == 0, r.output
    report = (out / "report.md").read_text()
    head = report.split("## Gate")[0]
    assert "| task | run | task version | prompt | prompt_hash | parser |" in head
    assert f"| synth_text | base | {REGISTRY['synth_text'].version} | mcq_qwen3vl@1 |" in head
    assert "refcoco_top1@" in head and "mmlu_lm_eval@1" in head  # each task's own parser, not the last one's
    assert "| change |" in report and "unchanged" in report
    w, h = png_size(out / "metrics.png")
    assert 700 <= w <= 1500 and 400 <= h <= 1400, (w, h)  # 5 tasks: 3 panels a row, 2 rows


def test_faceted_bars_fonts_and_size(tmp_path, monkeypatch):
    seen = []
    finish = charts._finish
    monkeypatch.setattr(charts, "_finish", lambda fig, path, footer: (seen.append(fig), finish(fig, path, footer))[1])
    facets = [(f"task{i}", ["accuracy", "accuracy_flexible", "parse_failure_rate"], {"a": [50, 60, 10],
                                                                                      "b": [55, None, 5]})
              for i in range(7)]
    charts.faceted_bars(tmp_path / "m.png", facets, title="t", xlabel="percent", footer="f")
    w, h = png_size(tmp_path / "m.png")
    assert w <= 1500 and h <= 1600  # 7 panels wrap into 3 rows rather than one 3000-px strip
    axes = [ax for ax in seen[0].axes if ax.get_visible()]
    assert len(axes) == 7 and all(ax.get_xlim()[0] == 0 for ax in axes)
    assert min(t.get_fontsize() for ax in axes for t in ax.get_yticklabels()) >= 9


def test_bench_latency_chart_has_error_bars_and_axes_from_zero(tmp_path, monkeypatch):
    seen = []
    finish = charts._finish
    monkeypatch.setattr(charts, "_finish", lambda fig, path, footer: (seen.append(fig), finish(fig, path, footer))[1])
    rows = []
    for backend, base in (("native", 100.0), ("hf", 150.0)):
        for bs in (1, 2, 4):
            row = {"backend": backend, "batch_size": bs, "model": "m", "dtype": "float32", "prompt_tokens": 8,
                   "new_tokens": 4, "images": None, "video": None, "repeats": 3, "date": "2026-12-01"}
            for key, v in (("ttft_ms", base * bs), ("tpot_ms", base / 10), ("prefill_tokens_per_s", 800.0 / bs),
                           ("decode_tokens_per_s", 90.0 * bs)):
                row |= {key: v, f"{key}_min": 0.9 * v, f"{key}_max": 1.3 * v}
            rows.append(row)
    assert BR.write_charts(rows, tmp_path) == {"throughput": "throughput.png", "latency": "latency.png"}
    for fig, name in zip(seen, ("throughput.png", "latency.png")):
        w, h = png_size(tmp_path / name)
        assert 800 <= w <= 1500 and 350 <= h <= 800
        for ax in fig.axes:
            assert ax.get_ylim()[0] == 0  # amounts from zero
            assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]  # the batch sizes run
            assert len(ax.containers) == 2  # one set of min-max error bars per backend
    latency = seen[1]
    assert [ax.get_ylabel() for ax in latency.axes] == ["TTFT (ms)", "TPOT (ms per token)"]
    assert "min–max over 3 repeats" in latency._suptitle.get_text()
