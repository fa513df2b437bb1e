"""`qwen3vl-eval score`: score saved predictions without a model (same results.json, report.md and report.html as
run)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from qwen3vl_eval.commands import handle_errors
from qwen3vl_eval.commands import options as opt
from qwen3vl_eval.errors import InputError


@handle_errors
def score(
    task: opt.Task,
    predictions: Path = typer.Option(..., "--predictions", help='JSONL, one {"id": ..., "prediction": "..."} '
                                     "per line (a run's samples.jsonl works too)."),
    data: opt.Data = None,
    output: Optional[Path] = typer.Option(None, "--output", help="Folder for samples.jsonl, results.json and "
                                          "report.md (default reports/runs/<timestamp>-score/<task>/)."),
    judge_base_url: opt.JudgeBaseUrl = None,
    judge_model: opt.JudgeModel = None,
    judge_api_key_env: opt.JudgeApiKeyEnv = None,
    judge_cache: opt.JudgeCache = None,
) -> None:
    """Score a predictions file for one task."""
    from qwen3vl_eval.eval.data import load_samples
    from qwen3vl_eval.eval.judge import judge_from_options, judge_summary
    from qwen3vl_eval.eval.results import score_predictions
    from qwen3vl_eval.eval.rundir import RunLock, output_errors
    from qwen3vl_eval.eval.task import resolve_tasks
    from qwen3vl_eval.report.html import write_task_page

    specs = resolve_tasks(task)
    if len(specs) != 1:
        raise InputError(f"--task {task}: score takes one task, not a suite of {len(specs)}")
    spec = specs[0]
    judge = judge_from_options(specs, judge_base_url, judge_model, judge_api_key_env, judge_cache)
    samples = load_samples(spec, data)
    out = output or Path("reports/runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-score" / spec.task
    with RunLock(out), output_errors(out):  # one writer per folder; a full disk is one line
        try:
            results = score_predictions(spec, samples, predictions, out, config={"data": data},
                                        data_source=data or spec.data.describe(), judge=judge)
        finally:
            if judge is not None:
                judge.close()
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in results["metrics"].items() if v is not None)
    missing = f", {results['n_missing']} missing" if results.get("n_missing") else ""
    print(f"{spec.task}: {metrics} (n={results['n_samples']}, errors {results['n_errors']}{missing})")
    if judge_summary(results):
        print(judge_summary(results))
    print(f"results in {out}")
    print(f"html {write_task_page(out, spec, samples).describe()}")
