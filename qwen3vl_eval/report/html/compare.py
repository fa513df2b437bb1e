"""`compare.html` beside a comparison report, from `compare`'s comparison objects: per candidate, the metric
deltas with their paired bootstrap intervals (drawn as a small forest plot), the speed ratios, and the samples
whose score changed (lower in the candidate first), each with its media and both replies side by side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen3vl_eval.report.html.media import MediaStore
from qwen3vl_eval.report.html.render import PageSet, read_json, write_page
from qwen3vl_eval.report.html.task import find_spec, load_task_samples
from qwen3vl_eval.report.html.views import Row, build_row

PLOT_WIDTH = 160  # pixels of a delta's interval plot


@dataclass
class FlipView:
    id: str
    baseline_score: float
    candidate_score: float
    baseline: Row
    candidate: Row

    @property
    def overlay(self) -> bool:
        return bool(self.candidate.boxes or self.candidate.timeline or self.baseline.boxes)


@dataclass
class FlipGroup:
    task: str
    metric: str
    primary: bool
    lower: list[FlipView]
    higher: list[FlipView]
    n_lower: int
    n_higher: int
    note: str = ""


def _plot(rows: list[Any]) -> dict[str, Any]:
    """x positions (pixels) of zero and of each row's delta and interval, on one scale for the comparison."""
    span = max([abs(v) for m in rows for v in ([m.delta] if m.delta is not None else [])
                + ([m.ci.low, m.ci.high] if m.ci else [])] or [1.0]) or 1.0
    half = PLOT_WIDTH / 2 - 6
    x = lambda v: round(PLOT_WIDTH / 2 + v / span * half, 2)  # noqa: E731
    out: list[dict | None] = []
    for m in rows:
        if m.delta is None:
            out.append(None)
            continue
        good = (m.delta >= 0) == m.higher_is_better or m.delta == 0
        out.append({"x": x(m.delta), "low": x(m.ci.low) if m.ci else None,
                    "high": x(m.ci.high) if m.ci else None,
                    "colour": "#1f7a3a" if good else "#b3261e"})
    return {"width": PLOT_WIDTH, "zero": PLOT_WIDTH / 2, "scale": span, "rows": out}


class _Samples:
    """Task samples and specs by task name, loaded once per page (from the results' own --data and --media-root)."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple[Any, dict, str]] = {}

    def get(self, task: str, result_path: Path) -> tuple[Any, dict, str]:
        if task not in self.cache:
            spec = find_spec(task)
            results = read_json(result_path) or {}
            samples, note = load_task_samples(spec, results)
            self.cache[task] = (spec, {s.id: s for s in samples}, note)
        return self.cache[task]


def _flip_view(store: MediaStore, f: Any, b: Any, k: Any, sample: Any, spec: Any, metric: str) -> FlipView:
    """A changed sample: the baseline's and the candidate's records, each with its own boxes or spans."""
    rows = [build_row(store, (r.samples or {}).get(f.id, {"id": f.id}), sample, spec, metric) for r in (b, k)]
    return FlipView(f.id, f.baseline_score, f.candidate_score, rows[0], rows[1])


def _flip_groups(c: Any, store: MediaStore, samples: _Samples, max_flips: int) -> list[FlipGroup]:
    groups = []
    for task, per_metric in c.flips.items():
        b, k = c.baseline.tasks[task], c.candidate.tasks[task]
        spec, by_id, note = samples.get(task, k.path)
        primary = next(iter(b.metrics), None)
        for metric, flips in per_metric.items():
            same = per_metric.get(metric.removesuffix("_flexible")) if metric.endswith("_flexible") else None
            if not flips or [(f.id, f.baseline_score, f.candidate_score) for f in flips] == [
                    (f.id, f.baseline_score, f.candidate_score) for f in same or []]:
                continue  # a flexible reading that flipped exactly like its headline metric: shown once
            lower = sorted((f for f in flips if f.candidate_score < f.baseline_score),
                           key=lambda f: f.candidate_score - f.baseline_score)
            higher = sorted((f for f in flips if f.candidate_score > f.baseline_score),
                            key=lambda f: f.baseline_score - f.candidate_score)
            views = [[_flip_view(store, f, b, k, by_id.get(f.id), spec, metric) for f in group[:max_flips]]
                     for group in (lower, higher)]
            groups.append(FlipGroup(task, metric, metric == primary, views[0], views[1], len(lower), len(higher),
                                    note))
    return groups


def write_compare_page(comparisons: list[Any], gate: Any, out_dir: Path, max_flips: int = 20) -> PageSet:
    """Write `out_dir/compare.html` (and its media) for `comparisons` (baseline first, as `compare` made them)."""
    from qwen3vl_eval.compare.gates import gate_summary

    out_dir = Path(out_dir)
    store = MediaStore(out_dir)
    samples = _Samples()
    sections = []
    for c in comparisons:
        sections.append({"c": c, "plot": _plot(c.metrics), "flips": _flip_groups(c, store, samples, max_flips)})
    used = {s for sec in sections for g in sec["flips"] for f in g.lower + g.higher
            for s in f.baseline.srcs() | f.candidate.srcs()}
    failures = [(c.candidate.label, f) for c in comparisons for f in c.failures]
    ctx = {"baseline": comparisons[0].baseline, "sections": sections, "gate": gate, "gate_text": gate_summary(gate),
           "failures": failures, "max_flips": max_flips,
           "confidence": next((m.ci.confidence for c in comparisons for m in c.metrics if m.ci), 0.95)}
    out = PageSet("compare")
    out.pages.append(write_page(out_dir / "compare.html", "compare.html", ctx, {s: store.sizes[s] for s in used}))
    store.prune(used)
    return out
