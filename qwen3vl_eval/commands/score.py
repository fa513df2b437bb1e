"""`qwen3vl-eval score`: score saved predictions without a model (same results.json, report.md and report.html as
run)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from qwen3vl_eval.commands import handle_errors, task_registry
from qwen3vl_eval.commands import options as opt
from qwen3vl_eval.errors import InputError


@handle_errors
def score(
    task: opt.Task,
    predictions: Optional[Path] = typer.Option(None, "--predictions", help='JSONL, one {"id": ..., "prediction": '
                                               '"..."} per line (a run\'s samples.jsonl works too).'),
    write_oracle: Optional[Path] = typer.Option(None, "--write-oracle", help="Write the task's oracle predictions "
                                                "(replies scored exactly right) to this JSONL, then score them."),
    data: opt.Data = None,
    output: opt.RunOutput = None,
    include_path: opt.IncludePath = None,
    judge_base_url: opt.JudgeBaseUrl = None,
    judge_model: opt.JudgeModel = None,
    judge_api_key_env: opt.JudgeApiKeyEnv = None,
    judge_cache: opt.JudgeCache = None,
    missing: str = typer.Option("wrong", "--missing", help="Task samples without a prediction: wrong (count 0 "
                                "in every metric; default) or skip (leave out; the metrics then cover only "
                                "the predicted samples, labelled so in every report)."),
) -> None:
    """Score a predictions file for one task."""
    from qwen3vl_eval.eval.data import load_samples
    from qwen3vl_eval.eval.judge import judge_from_options, judge_summary
    from qwen3vl_eval.eval.results import MISSING_POLICIES, score_predictions
    from qwen3vl_eval.eval.rundir import RunLock, output_errors
    from qwen3vl_eval.eval.summary import write_run_summary
    from qwen3vl_eval.eval.task import resolve_tasks
    from qwen3vl_eval.report.html import write_index, write_task_page

    specs = resolve_tasks(task, task_registry(include_path))
    if len(specs) != 1:
        raise InputError(f"--task {task}: score takes one task, not a suite of {len(specs)}")
    spec = specs[0]
    if (predictions is None) == (write_oracle is None):
        raise InputError("give exactly one of --predictions FILE and --write-oracle FILE")
    if missing not in MISSING_POLICIES:
        raise InputError(f"--missing {missing}: expected one of {', '.join(MISSING_POLICIES)}")
    judge = judge_from_options(specs, judge_base_url, judge_model, judge_api_key_env, judge_cache)
    samples = load_samples(spec, data)
    if write_oracle is not None:
        from qwen3vl_eval.eval.oracle import write_oracle as write_oracle_file

        n = write_oracle_file(spec, samples, write_oracle)
        print(f"oracle predictions: {write_oracle} ({n} samples)")
        predictions = write_oracle
    run_dir = output or Path("reports/runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-score"
    out = run_dir / spec.task  # laid out as `run` lays out a task
    with RunLock(run_dir), output_errors(out):  # one writer per run folder; a full disk is one line
        try:
            results = score_predictions(spec, samples, predictions, out, config={"data": data},
                                        data_source=data or spec.data.describe(), judge=judge, missing=missing)
        finally:
            if judge is not None:
                judge.close()
        summary = write_run_summary(run_dir)  # the run folder's summary, as `run` writes it
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in results["metrics"].items() if v is not None)
    n_missing = f", missing {results['n_missing']}" if results.get("n_missing") else ""
    print(f"{spec.task}: {metrics} (n={results['n_samples']}, errors {results['n_errors']}{n_missing})")
    miss = results.get("missing")
    if miss:
        more = ", ..." if miss["n"] > len(miss["first_ids"]) else ""
        print(f"WARNING: {miss['note']}; missing ids: {', '.join(map(str, miss['first_ids']))}{more}",
              file=sys.stderr)
    if judge_summary(results):
        print(judge_summary(results))
    print(f"results in {out}")
    print(f"summary {summary}")
    page = write_task_page(out, spec, samples)
    for p in (page, write_index(run_dir, [page])):
        print(f"html {p.describe()}")
