"""`run --seeds N`: one task run per seed (`<task>/seed-<s>/`, each a complete run folder), and in `<task>/` a
results.json and report.md whose metrics are the means over the seeds, with the spread of each (sample standard
deviation, min, max, every seed's value) under `seeds`."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from qwen3vl_eval.report.files import fmt, markdown_table, write_json, write_text


def seed_summary(runs: list[dict]) -> dict[str, Any]:
    """The results of several seeds of one task as one results dict: the first run's fields, metrics replaced by
    their means over the runs, `seeds` holding per metric mean, std, min, max and values."""
    seeds = [r["config"]["generation"]["seed"] for r in runs]
    spread: dict[str, dict[str, Any]] = {}
    for name in runs[0]["metrics"]:
        values = [r["metrics"].get(name) for r in runs]
        known = [v for v in values if v is not None]
        spread[name] = {"mean": statistics.fmean(known) if known else None,
                        "std": statistics.stdev(known) if len(known) > 1 else None,
                        "min": min(known) if known else None, "max": max(known) if known else None,
                        "values": values}
    out = {k: v for k, v in runs[0].items() if k not in ("breakdowns", "throughput")}
    out["metrics"] = {k: v["mean"] for k, v in spread.items()}
    out["n_errors"] = sum(r["n_errors"] for r in runs)
    out["seeds"] = {"values": seeds, "runs": [f"seed-{s}" for s in seeds], "metrics": spread}
    out["config"] = {**runs[0]["config"], "generation": {**runs[0]["config"]["generation"], "seed": seeds}}
    return out


def render_seed_report(results: dict) -> str:
    """report.md of a several-seed run: mean and spread per metric, one column per seed."""
    s = results["seeds"]
    cfg = results["config"]
    out = [f"# {results['task']} ({len(s['values'])} seeds)", "",
           f"- model: `{results.get('model')}`", f"- recipe: {cfg.get('recipe')} ({cfg.get('recipe_source')})",
           f"- seeds: {', '.join(map(str, s['values']))} (runs in {', '.join(s['runs'])})",
           f"- samples per seed: {results['n_samples']} (errors over all seeds {results['n_errors']})", "",
           "## Metrics (mean over seeds)", ""]
    rows = [[k, v["mean"], v["std"], v["min"], v["max"], *v["values"]] for k, v in s["metrics"].items()]
    out += [markdown_table(["metric", "mean", "std", "min", "max", *[f"seed {x}" for x in s["values"]]], rows), ""]
    out += [f"std is the sample standard deviation over {len(s['values'])} seeds; "
            f"primary metric {results['primary_metric']}: {fmt(results['metrics'].get(results['primary_metric']))}",
            ""]
    return "\n".join(out)


def write_seed_summary(task_dir: Path, runs: list[dict]) -> dict[str, Any]:
    """Write `task_dir`/results.json and report.md for the runs of several seeds; returns the results."""
    results = seed_summary(runs)
    task_dir.mkdir(parents=True, exist_ok=True)
    write_json(task_dir / "results.json", results)
    write_text(task_dir / "report.md", render_seed_report(results))
    return results
