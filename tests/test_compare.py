"""`compare`: loading run results, paired statistics, flipped samples, gates and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli

from qwen3vl_eval.compare.comparison import compare_results
from qwen3vl_eval.compare.gates import Gate, parse_metric_overrides
from qwen3vl_eval.compare.results import load_result
from qwen3vl_eval.errors import InputError
from qwen3vl_eval.report.stats import paired_bootstrap


def write_task(run: Path, task: str, scores: dict[str, float], *, metric: str = "accuracy",
               version: str = "1", throughput: dict | None = None, model: str = "m",
               extra_metrics: dict | None = None, preds: dict | None = None) -> Path:
    """A task folder as `run` writes it (CONTRACTS section 5), from per-sample 0/1 scores by id."""
    d = run / task
    d.mkdir(parents=True, exist_ok=True)
    with (d / "samples.jsonl").open("w") as f:
        for sid, s in scores.items():
            rec = {"id": sid, "prediction": (preds or {}).get(sid, "A" if s else "B"), "target": "A",
                   metric: s, "error": None, "prompt": f"question {sid}?"}
            f.write(json.dumps(rec) + "\n")
    metrics = {metric: 100.0 * sum(scores.values()) / len(scores), **(extra_metrics or {})}
    results = {"task": task, "task_version": version, "model": model, "metrics": metrics,
               "n_samples": len(scores), "n_errors": 0, "config": {},
               "throughput": throughput or {"samples_per_s": 10.0, "generated_tokens_per_s": 100.0},
               "versions": {"torch": "2.x"}, "created": "2026-01-01T00:00:00Z"}
    (d / "results.json").write_text(json.dumps(results))
    return d


IDS = [f"s{i}" for i in range(20)]


@pytest.fixture
def runs(tmp_path):
    """Baseline: 16/20 right on videomme and 10/20 on textvqa. Candidate: videomme loses 3 and gains 1 (-10
    points), textvqa is unchanged."""
    base, cand = tmp_path / "base", tmp_path / "cand"
    b = {i: float(k < 16) for k, i in enumerate(IDS)}
    c = dict(b)
    c["s0"] = c["s1"] = c["s2"] = 0.0
    c["s19"] = 1.0
    write_task(base, "videomme", b)
    write_task(cand, "videomme", c)
    t = {i: float(k % 2) for k, i in enumerate(IDS)}
    write_task(base, "textvqa", t, metric="anls")
    write_task(cand, "textvqa", t, metric="anls")
    return base, cand


def invoke(*args):
    return cli("compare", *args)


def test_report_without_gate(runs, tmp_path):
    base, cand = runs
    out = tmp_path / "out"
    r = invoke(base, cand, "--output", out, "--json", tmp_path / "c.json", "--resamples", 500)
    assert r.exit_code == 0, r.output
    report = (out / "report.md").read_text()
    assert "| videomme | accuracy | 80.00 | 70.00 | -10.00 |" in report
    assert "| textvqa | anls | 50.00 | 50.00 | +0.00 | unchanged | [+0.00, +0.00] (n=20)" in report
    assert "| videomme | accuracy | 80.00 | 70.00 | -10.00 | fell 10.00 points (worse; higher is better) |" in report
    assert "No gate set" in report
    # flipped samples, with prompts and both predictions
    assert "3 scored lower in the candidate, 1 higher" in report
    assert "| s0 | 1 → 0 | A | B | A | question s0? |" in report
    assert (out / "metrics.png").stat().st_size > 1000 and (out / "deltas.png").is_file()
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["gate"] == {"active": False, "max_drop": None, "max_drop_metric": {}, "min_speed_ratio": None,
                            "require_significant": False, "passed": True}
    flips = data["comparisons"][0]["flips"]["videomme"]["accuracy"]
    assert sorted(f["id"] for f in flips) == ["s0", "s1", "s19", "s2"]


def test_paired_ci_aligns_by_id(tmp_path):
    base, cand = tmp_path / "b", tmp_path / "c"
    b = {"x": 1.0, "y": 0.0, "z": 1.0, "w": 1.0}
    c = {"w": 0.0, "z": 1.0, "y": 1.0, "x": 0.0, "extra": 1.0}  # other order, one id only here
    write_task(base, "t", b)
    write_task(cand, "t", c)
    comp = compare_results(load_result(base), load_result(cand), Gate(), resamples=400, seed=5)
    row = comp.metrics[0]
    ref = paired_bootstrap([b[i] for i in sorted(b)], [c[i] for i in sorted(b)], resamples=400, seed=5)
    assert row.ci == ref.scaled(100.0)
    assert "1 sample(s) in one run only" in row.ci_note


def test_report_is_deterministic(runs, tmp_path):
    base, cand = runs
    outs = []
    for k in range(2):
        r = invoke(base, cand, "--output", tmp_path / f"o{k}", "--no-charts", "--resamples", 300)
        assert r.exit_code == 0
        outs.append((tmp_path / f"o{k}" / "compare.json").read_text())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("args,code", [
    (["--max-drop", "1"], 1),
    (["--max-drop", "10"], 0),  # exactly 10 points: not beyond the threshold
    (["--max-drop", "20", "--max-drop-metric", "videomme:accuracy=1.0"], 1),
    (["--max-drop", "0.5", "--max-drop-metric", "videomme:*=15"], 0),
    (["--max-drop-metric", "*:accuracy=2"], 1),
    (["--max-drop", "1", "--require-significant"], 0),  # 3 lost, 1 gained out of 20: the CI includes 0
])
def test_metric_gates(runs, tmp_path, args, code):
    base, cand = runs
    r = invoke(base, cand, "--output", tmp_path / "o", "--no-charts", "--resamples", 500, *args)
    assert r.exit_code == code, r.output
    assert ("GATE FAIL" in r.output) == (code == 1)
    if code == 1:
        assert "videomme:accuracy: fell 10.00 points (worse; higher is better)" in r.output


def test_significant_drop_fails_with_require_significant(tmp_path):
    base, cand = tmp_path / "b", tmp_path / "c"
    write_task(base, "t", {i: 1.0 for i in IDS})
    write_task(cand, "t", {i: float(k >= 10) for k, i in enumerate(IDS)})
    r = invoke(base, cand, "--output", tmp_path / "o", "--no-charts", "--max-drop", "1", "--require-significant")
    assert r.exit_code == 1, r.output


def test_missing_task_and_version_mismatch(runs, tmp_path):
    base, cand = runs
    write_task(base, "charades", {"a": 1.0}, metric="miou")
    (cand / "textvqa" / "results.json").write_text(
        (cand / "textvqa" / "results.json").read_text().replace('"task_version": "1"', '"task_version": "2"'))
    r = invoke(base, cand, "--output", tmp_path / "o", "--no-charts")
    assert r.exit_code == 0  # no gate: reported, not failed
    report = (tmp_path / "o" / "report.md").read_text()
    assert "task charades: missing from the candidate" in report
    assert "task textvqa: task_version differs (baseline 1, candidate 2)" in report
    r = invoke(base, cand, "--output", tmp_path / "o", "--no-charts", "--max-drop", "50")
    assert r.exit_code == 1
    assert "charades: missing" in r.output and "task_version differs" in r.output


def test_speed_gate(runs, tmp_path):
    base, cand = runs
    write_task(cand, "textvqa", {i: float(k % 2) for k, i in enumerate(IDS)}, metric="anls",
               throughput={"samples_per_s": 5.0, "generated_tokens_per_s": 99.0})
    r = invoke(base, cand, "--output", tmp_path / "o", "--no-charts", "--min-speed-ratio", "0.9")
    assert r.exit_code == 1
    assert "textvqa samples_per_s: speed ratio 0.500 is below 0.9" in r.output
    assert "generated_tokens_per_s: speed ratio" not in r.output
    r = invoke(base, cand, "--output", tmp_path / "o", "--no-charts", "--min-speed-ratio", "0.5")
    assert r.exit_code == 0, r.output


def bench_rows(decode: float, backend: str = "native") -> list[dict]:
    return [{"backend": backend, "batch_size": bs, "prompt_tokens": 128, "new_tokens": 64, "images": [],
             "video": None, "ttft_ms": 10.0 * bs, "prefill_tokens_per_s": 1000.0, "decode_tokens_per_s": decode * bs,
             "tpot_ms": 1000 / decode, "peak_memory_mb": 100.0, "model": "x", "dtype": "bfloat16",
             "date": "2026-01-01"} for bs in (1, 8)]


def test_bench_json_compare(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(bench_rows(100.0)))
    b.write_text(json.dumps(bench_rows(80.0)))
    r = invoke(a, b, "--output", tmp_path / "o", "--min-speed-ratio", "0.9")
    assert r.exit_code == 1
    assert "native bs=8 prompt=128 new=64 decode_tokens_per_s: speed ratio 0.800" in r.output
    assert (tmp_path / "o" / "speed.png").is_file()
    assert invoke(a, b, "--output", tmp_path / "o", "--min-speed-ratio", "0.75").exit_code == 0
    b.write_text(json.dumps(bench_rows(100.0)[:1]))  # the bs=8 row is missing
    r = invoke(a, b, "--output", tmp_path / "o", "--min-speed-ratio", "0.5")
    assert r.exit_code == 1 and "bs=8 prompt=128 new=64: missing from the candidate" in r.output


def test_bench_output_folder_is_a_result(tmp_path):
    d = tmp_path / "benchdir"
    d.mkdir()
    (d / "bench.json").write_text(json.dumps(bench_rows(100.0)))
    assert load_result(d).bench == bench_rows(100.0)


@pytest.mark.parametrize("make_args", [
    lambda base, cand, tmp: [base],  # one RESULT only
    lambda base, cand, tmp: [base, tmp / "nope"],
    lambda base, cand, tmp: [base, cand, "--max-drop-metric", "videomme-accuracy=1"],
    lambda base, cand, tmp: [base, cand, "--max-drop-metric", "videomme:acc=x"],
    lambda base, cand, tmp: [base, cand, "--max-drop-metric", "nosuchtask:accuracy=1"],
    lambda base, cand, tmp: [base, cand, "--max-drop", "-1"],
])
def test_bad_input_exits_2(runs, tmp_path, make_args):
    base, cand = runs
    r = invoke(*make_args(base, cand, tmp_path), "--output", tmp_path / "o")
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output


def test_malformed_results_name_the_file(runs, tmp_path):
    base, cand = runs
    (cand / "videomme" / "results.json").write_text('{"task": "videomme", "metrics": {"accuracy": "high"}}')
    r = invoke(base, cand, "--output", tmp_path / "o")
    assert r.exit_code == 2
    assert "results.json: field 'metrics' must be an object of numbers" in r.output
    (cand / "videomme" / "results.json").write_text("{not json")
    assert "not valid JSON" in invoke(base, cand, "--output", tmp_path / "o").output
    (cand / "videomme" / "results.json").write_text(json.dumps({"task": "videomme", "metrics": {}}))
    (cand / "videomme" / "samples.jsonl").write_text('{"id": 1}\nnot json\n')
    r = invoke(base, cand, "--output", tmp_path / "o")
    assert r.exit_code == 2 and "samples.jsonl:2: bad record" in r.output


def test_runner_layout_nested_scores_and_torn_line(tmp_path):
    """What `run` writes: scores nested under `scores`, the task version in `versions.task`, a torn last line
    after a crash, and `higher_is_better` with lower-is-better metrics."""
    def write(run, task_version, scores, rate, prompt="vqa@1"):
        d = run / "t"
        d.mkdir(parents=True)
        lines = [json.dumps({"id": i, "prediction": "x", "target": "y", "scores": {"anls": v}, "error": None})
                 for i, v in enumerate(scores)]
        (d / "samples.jsonl").write_text("\n".join(lines) + '\n{"id": 99, "predic')
        (d / "results.json").write_text(json.dumps({
            "task": "t", "metrics": {"anls": 100 * sum(scores) / len(scores), "parse_failure_rate": rate},
            "higher_is_better": {"anls": True, "parse_failure_rate": False},
            "versions": {"task": task_version, "prompt": prompt}, "throughput": {"samples_per_s": 1.0}}))

    write(tmp_path / "b", 1, [1.0, 0.5, 0.0, 1.0], 0.0)
    write(tmp_path / "c", 1, [1.0, 0.5, 0.0, 1.0], 10.0, prompt="vqa@2")
    comp = compare_results(load_result(tmp_path / "b"), load_result(tmp_path / "c"), Gate(max_drop=5),
                           resamples=100)
    rows = {m.metric: m for m in comp.metrics}
    assert rows["anls"].ci is not None and rows["anls"].ci.n == 4 and rows["anls"].ci.delta == 0.0
    assert rows["parse_failure_rate"].failed  # lower is better: +10 is a 10-point drop
    assert rows["parse_failure_rate"].ci_note == "no per-sample scores"
    assert "task t: prompt differs (baseline vqa@1, candidate vqa@2), not gated" in comp.issues
    assert comp.failures == ["t:parse_failure_rate: rose 10.00 points (worse; lower is better) (0.00 -> 10.00), "
                             "worse by more than 5"]


def test_results_json_file_and_errored_samples(tmp_path):
    base, cand = tmp_path / "b", tmp_path / "c"
    write_task(base, "t", {"a": 1.0, "b": 1.0})
    d = write_task(cand, "t", {"a": 1.0, "b": 1.0})
    lines = (d / "samples.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"id": "b", "prediction": None, "target": "A", "error": "CUDA OOM"})  # no score
    (d / "samples.jsonl").write_text("\n".join(lines) + "\n")
    res = json.loads((d / "results.json").read_text())
    res["metrics"]["accuracy"] = 50.0
    (d / "results.json").write_text(json.dumps(res))
    comp = compare_results(load_result(base / "t" / "results.json"), load_result(d / "results.json"), Gate(),
                           resamples=200)
    row = comp.metrics[0]
    assert row.delta == -50.0 and row.ci is not None and row.ci.delta == pytest.approx(-50.0)
    assert [f.id for f in comp.flips["t"]["accuracy"]] == ["b"]


def test_parse_metric_overrides():
    assert parse_metric_overrides(["videomme:accuracy=1.0", "*:miou=2"]) == {("videomme", "accuracy"): 1.0,
                                                                            ("*", "miou"): 2.0}
    gate = Gate(max_drop=5.0, max_drop_metric=parse_metric_overrides(["videomme:*=3", "*:accuracy=2",
                                                                      "videomme:accuracy=1"]))
    assert gate.threshold("videomme", "accuracy") == 1.0
    assert gate.threshold("videomme", "other") == 3.0
    assert gate.threshold("mmmu", "accuracy") == 2.0
    assert gate.threshold("mmmu", "other") == 5.0
    with pytest.raises(InputError):
        parse_metric_overrides(["accuracy=1"])
