"""`qwen3vl-eval compare RESULT [RESULT ...]`: comparison report, and regression gates for CI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from qwen3vl_eval.commands import fail, handle_errors
from qwen3vl_eval.errors import InputError


@handle_errors
def compare(
    results: list[str] = typer.Argument(..., help="Run folders, task folders, results.json files or bench JSON; "
                                                  "the first is the baseline."),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Fail (exit 1) when any metric drops "
                                             "more than this many points below the baseline."),
    max_drop_metric: list[str] = typer.Option([], "--max-drop-metric", help="Per-metric threshold "
                                              "TASK:METRIC=POINTS (TASK or METRIC may be *); repeatable."),
    min_speed_ratio: Optional[float] = typer.Option(None, "--min-speed-ratio", help="Fail when a throughput "
                                                    "(samples/s, tokens/s) is below this fraction of the "
                                                    "baseline's."),
    require_significant: bool = typer.Option(False, "--require-significant", help="Count a drop beyond its "
                                             "threshold only when the paired CI excludes 0."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Report folder (default "
                                          "reports/compare/<timestamp>/)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the comparison as JSON here."),
    resamples: int = typer.Option(10_000, "--resamples", help="Bootstrap resamples for the paired CI."),
    confidence: float = typer.Option(0.95, "--confidence", help="Confidence level of the paired CI."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed (the report is deterministic for a seed)."),
    max_flips: int = typer.Option(20, "--max-flips", help="Changed samples listed per task and direction."),
    charts: bool = typer.Option(True, "--charts/--no-charts", help="Write PNG charts beside the report."),
) -> None:
    """Compare results with the first one (the baseline); with a gate option, exit 1 on a regression.

    Once any gate is set, a task, metric, throughput figure or bench row of the baseline that a candidate lacks,
    and a task_version mismatch, are failures too.
    """
    from qwen3vl_eval.compare.comparison import compare_results
    from qwen3vl_eval.compare.gates import Gate, check_overrides, parse_metric_overrides
    from qwen3vl_eval.compare.render import write_report
    from qwen3vl_eval.compare.results import load_result
    from qwen3vl_eval.report.html import write_compare_page

    if len(results) < 2:
        raise fail("compare needs at least two RESULTs: the baseline first, then one or more candidates")
    for name, v in (("--max-drop", max_drop), ("--min-speed-ratio", min_speed_ratio)):
        if v is not None and not v >= 0:
            raise InputError(f"{name} {v}: must be a number >= 0")
    if not 0 < confidence < 1 or resamples < 1:
        raise InputError("--confidence must be in (0, 1) and --resamples >= 1")
    gate = Gate(max_drop=max_drop, max_drop_metric=parse_metric_overrides(max_drop_metric),
                min_speed_ratio=min_speed_ratio, require_significant=require_significant)
    loaded = [load_result(r) for r in results]
    seen: dict[str, int] = {}
    for r in loaded:  # distinct labels for the report's headings
        seen[r.label] = seen.get(r.label, 0) + 1
        if seen[r.label] > 1:
            r.label = f"{r.label}#{seen[r.label]}"
    baseline, candidates = loaded[0], loaded[1:]
    check_overrides(gate, baseline)
    comparisons = [compare_results(baseline, c, gate, resamples=resamples, confidence=confidence, seed=seed)
                   for c in candidates]

    out_dir = output or Path("reports") / "compare" / time.strftime("%Y%m%d-%H%M%S")
    data = write_report(comparisons, gate, out_dir, json_file=json_file, charts=charts, max_flips=max_flips)

    html = write_compare_page(comparisons, gate, out_dir, max_flips=max_flips)

    _print_summary(comparisons, gate)
    typer.echo(f"report: {out_dir / 'report.md'}")
    typer.echo(f"html {html.describe()}")
    if gate.active and not data["gate"]["passed"]:
        raise typer.Exit(1)


def _print_summary(comparisons, gate) -> None:
    from qwen3vl_eval.compare.render import metric_table, speed_table

    for c in comparisons:
        typer.echo(f"\n{c.candidate.label} vs {c.baseline.label}")
        for issue in c.issues:
            typer.echo(f"  issue: {issue}")
        if c.metrics:
            typer.echo(metric_table(c))
        if c.speed:
            typer.echo(speed_table(c))
    failures = [(c.candidate.label, f) for c in comparisons for f in c.failures]
    if not gate.active:
        typer.echo("\nno gate set: report only")
    elif failures:
        typer.echo("\nGATE FAIL")
        for label, f in failures:
            typer.echo(f"  {label}: {f}")
    else:
        typer.echo("\nGATE PASS")
