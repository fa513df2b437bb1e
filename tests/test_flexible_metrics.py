"""Headline and flexible metrics side by side: results.json, report.md and `compare` carry both."""

import json

from helpers import score, write_preds
from typer.testing import CliRunner

from qwen3vl_eval.cli import app
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.task import load_registry


def test_both_readings_reach_results_report_and_compare(tmp_path):
    spec = load_registry()["synth_text"]  # the MMLU schema: headline = lm-eval mmlu_generative
    samples = load_samples(spec)
    base = {s.id: f"Answer: {s.target}" for s in samples}  # right for the flexible reading only
    cand = {s.id: s.target for s in samples}
    cand[samples[0].id] = "Let me think about it"
    b = score("synth_text", write_preds(tmp_path / "b.jsonl", base), tmp_path / "b")
    assert b["reference"].startswith("lm-evaluation-harness 0.4.13")
    assert b["metrics"]["accuracy"] == 0.0 and b["metrics"]["accuracy_flexible"] == 100.0
    assert b["higher_is_better"]["accuracy_flexible"] is True
    assert b["versions"]["parser"].startswith("mmlu_lm_eval@") and b["versions"]["parser_flexible"].startswith("mc_")
    report = (tmp_path / "b" / "synth_text" / "report.md").read_text()
    assert "lm-evaluation-harness 0.4.13" in report and "| accuracy_flexible | 100.00 |" in report
    line = json.loads((tmp_path / "b" / "synth_text" / "samples.jsonl").read_text().splitlines()[0])
    assert line["accuracy"] == 0.0 and line["accuracy_flexible"] == 1.0 and line["parsed_flexible"]

    c = score("synth_text", write_preds(tmp_path / "c.jsonl", cand), tmp_path / "c")
    n = len(samples)
    assert c["metrics"]["accuracy"] == 100.0 * (n - 1) / n
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "b"), str(tmp_path / "c"), "--output",
                                 str(tmp_path / "cmp"), "--json", str(tmp_path / "cmp.json"), "--resamples", "200",
                                 "--no-charts"])
    assert r.exit_code == 0, r.output
    rows = {m["metric"] for m in json.loads((tmp_path / "cmp.json").read_text())["comparisons"][0]["metrics"]}
    assert {"accuracy", "accuracy_flexible", "parse_failure_rate_flexible"} <= rows
    assert "accuracy_flexible" in (tmp_path / "cmp" / "report.md").read_text()


def test_truncated_thinking_counted_in_results(tmp_path):
    samples = load_samples(load_registry()["synth_text"])
    preds = {s.id: s.target for s in samples}
    preds[samples[0].id] = "<think>The sum is 3 + 4, so"  # cut off before </think>
    res = score("synth_text", write_preds(tmp_path / "p.jsonl", preds), tmp_path / "o")
    assert res["n_truncated_reasoning"] == 1 and res["n_parse_failures"] == 1
    assert res["metrics"]["accuracy"] == res["metrics"]["accuracy_flexible"] == 100.0 * (len(samples) - 1) / len(
        samples)
    assert "truncated reasoning 1" in (tmp_path / "o" / "synth_text" / "report.md").read_text()
