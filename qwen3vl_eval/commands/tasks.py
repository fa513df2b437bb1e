"""`qwen3vl-eval tasks`: the suites and tasks, their data sources and metrics, and whether data is local."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from qwen3vl_eval.commands import handle_errors, task_registry
from qwen3vl_eval.commands import options as opt


def availability(spec) -> str:  # noqa: ANN001
    """'yes (path)', 'no', or for synthetic tasks whether they are generated yet."""
    from qwen3vl_eval.checkpoints.hub import cache_dir
    from qwen3vl_eval.eval.data import find_local

    if spec.data.source == "synth":
        from qwen3vl_eval.eval.synth import VERSION

        done = (cache_dir() / "synth" / f"{spec.data.path}-v{VERSION}" / "data.parquet").is_file()
        return "generated" if done else "on first use"
    found = find_local(spec.data)
    return f"yes ({found[1]})" if found else "no"


def describe(spec) -> dict[str, Any]:  # noqa: ANN001
    """One task as `tasks --json` lists it."""
    local = availability(spec)
    return {"task": spec.task, "suites": list(spec.suites), "version": spec.version, "headline": spec.metrics[0],
            "description": spec.description, "metrics": list(spec.metrics), "reference": spec.reference,
            "data": spec.data.describe(), "data_source": spec.data.source,
            "local_data": local.startswith(("yes", "generated", "on first use")), "local_data_detail": local,
            "task_file": spec.source_file, "judge": _judge(spec)}


def _judge(spec) -> dict[str, Any] | None:  # noqa: ANN001
    """The task's LLM-judged metrics (present in results only with `--judge-base-url`), None without `judge:`."""
    if spec.judge is None:
        return None
    from qwen3vl_eval.eval.judge import judged_metrics
    from qwen3vl_eval.eval.judge_prompts import JUDGE_PROMPTS

    return {"metrics": judged_metrics(spec), "prompt": JUDGE_PROMPTS[spec.judge.prompt].id,
            "default_model": spec.judge.model, "samples": spec.judge.samples}


@handle_errors
def tasks(
    as_json: bool = typer.Option(False, "--json", help="One JSON list of the tasks (suite, metrics, headline "
                                 "reference, data source, local availability) on stdout."),
    include_path: opt.IncludePath = None,
) -> None:
    """List suites and tasks with their data sources, metrics and local data availability."""
    registry = task_registry(include_path)
    rows = sorted(registry.values(), key=lambda s: (s.suites[0] if s.suites else "", s.task))
    if as_json:
        json.dump([describe(s) for s in rows], sys.stdout, indent=1)
        print()
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table("suite", "task", "version", "data", "metrics", "local data")
    for s in rows:
        t.add_row(",".join(s.suites), s.task, str(s.version), escape(s.data.describe()), ", ".join(s.metrics),
                  escape(availability(s)))
    Console(file=sys.stdout, width=200).print(t)
