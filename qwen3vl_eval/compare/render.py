"""The comparison report: markdown (tables, changed samples, charts), the JSON summary, and the files."""

from __future__ import annotations

from pathlib import Path

from qwen3vl_eval.compare.comparison import Comparison, MetricRow, SpeedRow, change_words
from qwen3vl_eval.compare.gates import Gate, gate_summary
from qwen3vl_eval.compare.results import Result
from qwen3vl_eval.report.files import cell, fmt, markdown_table, write_json, write_text


def _signed(v: float | None, nd: int = 2) -> str:
    return "–" if v is None else f"{v:+.{nd}f}"


RUN_VERSIONS = ("harness", "torch", "python", "transformers")  # the same for every task of a run
TASK_VERSIONS = ("task", "prompt", "prompt_hash", "parser", "parser_flexible", "scorer", "scorer_flexible")


def _versions(r: Result) -> str:
    """The run-wide versions (harness, libraries) of a result; each task's own are in `versions_table`."""
    versions: dict[str, set[str]] = {}
    for v in [t.versions for t in r.tasks.values()] + [row.get("versions") for row in r.bench]:
        for k, val in (v or {}).items() if isinstance(v, dict) else ():
            if k in RUN_VERSIONS and val is not None:
                versions.setdefault(k, set()).add(str(val))
    return ", ".join(f"{k} {'/'.join(sorted(val))}" for k, val in sorted(versions.items())) or "versions not recorded"


def versions_table(runs: list[Result]) -> str:
    """Per task and run: the task, prompt, parser and scorer versions that decide its numbers."""
    rows = []
    for task in sorted({t for r in runs for t in r.tasks}):
        for r in runs:
            t = r.tasks.get(task)
            if t is not None:
                rows.append([task, r.label, *(cell(t.versions.get(k) if k != "task" else t.task_version)
                                              for k in TASK_VERSIONS)])
    return markdown_table(["task", "run", "task version", *TASK_VERSIONS[1:]], rows)


def _describe(r: Result) -> str:
    v = _versions(r)
    return (f"`{r.path}` — model {', '.join(r.models) or '?'}; {len(r.tasks)} task(s), {len(r.bench)} bench row(s); "
            f"{v}; created {', '.join(r.dates) or '?'}")


def metric_table(c: Comparison) -> str:
    rows = []
    for m in c.metrics:
        ci = "–" if m.ci is None else f"[{m.ci.low:+.2f}, {m.ci.high:+.2f}] (n={m.ci.n})"
        status = "FAIL" if m.failed else ("ok" if m.threshold is not None else "")
        note = "; ".join(x for x in (m.note, m.ci_note) if x)
        rows.append([m.task, m.metric, fmt(m.baseline, none="–"), fmt(m.candidate, none="–"), _signed(m.delta),
                     change_words(m.delta, m.higher_is_better), ci, "–" if m.threshold is None else f"{m.threshold:g}",
                     status, cell(note)])
    return markdown_table(["task", "metric", "baseline", "candidate", "delta", "change", "paired CI", "max drop",
                           "gate", "note"], rows)


def speed_table(c: Comparison) -> str:
    rows = [[cell(s.where), s.key, fmt(s.baseline, 3, "–"), fmt(s.candidate, 3, "–"), fmt(s.ratio, 3, "–"),
             "FAIL" if s.failed else ("ok" if s.gated else ""), cell(s.note)] for s in c.speed]
    return markdown_table(["where", "figure", "baseline", "candidate", "speed ratio", "gate", "note"], rows)


def render_markdown(comparisons: list[Comparison], gate: Gate, *, max_flips: int = 20,
                    charts: dict[str, str] | None = None) -> str:
    """The comparison report: one section per candidate, then the gate verdict."""
    base = comparisons[0].baseline
    out = ["# Comparison report", "", f"Baseline: {_describe(base)}", ""]
    for c in comparisons:
        out.append(f"Candidate **{c.candidate.label}**: {_describe(c.candidate)}")
    if any(r.tasks for r in [base, *(c.candidate for c in comparisons)]):
        out += ["", "Task, prompt, parser and scorer versions per task (a difference changes what a number means):",
                "", versions_table([base, *(c.candidate for c in comparisons)])]
    out += ["", "## Gate", "", gate_summary(gate), ""]
    failures = [f for c in comparisons for f in c.failures]
    if gate.active:
        out.append(f"**Verdict: {'FAIL' if failures else 'PASS'}**" + (":" if failures else ""))
        out += [f"- {c.candidate.label}: {f}" for c in comparisons for f in c.failures]
    else:
        out.append("No gate set: report only (exit 0).")
    conf = next((m.ci.confidence for c in comparisons for m in c.metrics if m.ci), 0.95)
    for c in comparisons:
        out += ["", f"## {c.candidate.label} vs {c.baseline.label}", ""]
        if c.issues:
            out += ["### Issues", ""] + [f"- {i}" for i in c.issues] + [""]
        if c.metrics:
            out += ["### Metrics", "",
                    f"Delta = candidate − baseline in metric points. Paired CI: {conf:.0%} percentile bootstrap of "
                    "the mean per-sample difference over samples present in both runs (aligned by id).", "",
                    metric_table(c), ""]
        if c.speed:
            out += ["### Throughput and latency", "",
                    "Speed ratio: candidate/baseline for rates, baseline/candidate for latencies and memory "
                    "(above 1 is faster or smaller).", "", speed_table(c), ""]
        out += _flip_sections(c, max_flips)
    if charts:
        out += ["", "## Charts", ""] + [f"![{name}]({fn})" for name, fn in charts.items()]
    return "\n".join(out).rstrip() + "\n"


def _flip_sections(c: Comparison, max_flips: int) -> list[str]:
    out: list[str] = []
    for task, per_metric in c.flips.items():
        for metric, flips in per_metric.items():
            if not flips:
                continue
            worse = [f for f in flips if f.candidate_score < f.baseline_score]
            better = [f for f in flips if f.candidate_score > f.baseline_score]
            out += [f"### Changed samples: {task} / {metric}", "",
                    f"{len(worse)} scored lower in the candidate, {len(better)} higher."]
            for title, group in (("Lower", worse), ("Higher", better)):
                if not group:
                    continue
                shown = group[:max_flips]
                rows = [[cell(f.id, 40), f"{f.baseline_score:g} → {f.candidate_score:g}",
                         cell(f.baseline_prediction), cell(f.candidate_prediction), cell(f.target, 80),
                         cell(f.prompt)] for f in shown]
                more = f" (first {len(shown)} of {len(group)})" if len(group) > len(shown) else ""
                out += ["", f"{title} in the candidate{more}:", "",
                        markdown_table(["id", "score", "baseline prediction", "candidate prediction", "target",
                                        "prompt"], rows)]
            out.append("")
    return out


def to_json(comparisons: list[Comparison], gate: Gate) -> dict:
    """A JSON-ready summary: per candidate the metric and speed rows, issues, flips and failures."""
    def metric(m: MetricRow) -> dict:
        return {"task": m.task, "metric": m.metric, "baseline": m.baseline, "candidate": m.candidate,
                "delta": m.delta, "ci": None if m.ci is None else m.ci.to_dict(), "ci_note": m.ci_note,
                "threshold": m.threshold, "higher_is_better": m.higher_is_better,
                "change": change_words(m.delta, m.higher_is_better), "failed": m.failed,
                "note": m.note}

    def speed(s: SpeedRow) -> dict:
        return {"where": s.where, "key": s.key, "baseline": s.baseline, "candidate": s.candidate,
                "ratio": s.ratio, "gated": s.gated, "failed": s.failed, "note": s.note}

    failures = [f for c in comparisons for f in c.failures]
    return {
        "baseline": str(comparisons[0].baseline.path),
        "gate": {"active": gate.active, "max_drop": gate.max_drop,
                 "max_drop_metric": {f"{t}:{m}": v for (t, m), v in gate.max_drop_metric.items()},
                 "min_speed_ratio": gate.min_speed_ratio, "require_significant": gate.require_significant,
                 "passed": not failures},
        "comparisons": [{
            "candidate": str(c.candidate.path), "label": c.candidate.label,
            "metrics": [metric(m) for m in c.metrics], "speed": [speed(s) for s in c.speed],
            "issues": c.issues, "failures": c.failures,
            "flips": {t: {m: [vars(f) for f in fl] for m, fl in pm.items()} for t, pm in c.flips.items()},
        } for c in comparisons],
    }


def write_charts(comparisons: list[Comparison], out_dir: Path) -> dict[str, str]:
    """Metric values per run, deltas with paired CIs, and bench speed ratios, as PNGs; returns name -> file."""
    from qwen3vl_eval.report import charts

    base = comparisons[0].baseline
    runs = [base] + [c.candidate for c in comparisons]
    footer = " | ".join(f"{r.label}: {', '.join(r.models) or '?'} ({', '.join(r.dates) or 'date ?'})" for r in runs)
    footer += f" | baseline: {_versions(base)}"
    made: dict[str, str] = {}
    tasks: dict[str, list[str]] = {}
    for m in comparisons[0].metrics:
        if m.baseline is not None:
            tasks.setdefault(m.task, []).append(m.metric)
    if tasks:  # one panel per task (metrics as bars, runs as colours), wrapped into rows
        facets = []
        for task, names in tasks.items():
            series = {base.label: [base.tasks[task].metrics.get(m) for m in names]}
            for c in comparisons:
                got = c.candidate.tasks.get(task)
                series[c.candidate.label] = [got.metrics.get(m) if got else None for m in names]
            facets.append((task, names, series))
        charts.faceted_bars(out_dir / "metrics.png", facets, title="Metric values per task (percent, 0-100)",
                            xlabel="percent", footer=footer)
        made["metrics"] = "metrics.png"
    for i, c in enumerate(comparisons):
        rows = [m for m in c.metrics if m.delta is not None]
        if not rows:
            continue
        name = "deltas.png" if len(comparisons) == 1 else f"deltas_{i + 1}.png"
        charts.delta_chart(out_dir / name, [f"{m.task}:{m.metric}" for m in rows], [m.delta for m in rows],
                           [None if m.ci is None else (m.ci.low, m.ci.high) for m in rows],
                           title=f"{c.candidate.label} − {base.label} (paired bootstrap CI)",
                           xlabel="delta (points)", footer=footer)
        made[f"deltas {c.candidate.label}"] = name
    speed = [(c, s) for c in comparisons for s in c.speed if s.ratio is not None]
    if speed:
        cats = sorted({f"{s.where} {s.key}" for _, s in speed})
        series = {c.candidate.label: [next((s.ratio for s in c.speed if f"{s.where} {s.key}" == k and s.ratio),
                                           None) for k in cats] for c in comparisons}
        charts.grouped_bars(out_dir / "speed.png", cats, series, title="Speed ratio vs baseline (>1 is faster)",
                            ylabel="ratio", footer=footer)
        made["speed"] = "speed.png"
    return made


def write_report(comparisons: list[Comparison], gate: Gate, out_dir: Path, *, json_file: Path | None = None,
                 charts: bool = True, max_flips: int = 20) -> dict:
    """report.md, compare.json and (with `charts`) the PNGs into `out_dir`, the JSON also to `json_file`;
    returns the JSON summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = write_charts(comparisons, out_dir) if charts else {}
    write_text(out_dir / "report.md", render_markdown(comparisons, gate, max_flips=max_flips, charts=made))
    data = to_json(comparisons, gate)
    write_json(out_dir / "compare.json", data)
    if json_file:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_file, data)
    return data
