"""One candidate against the baseline: per task and metric both values, the delta and a paired bootstrap CI of
the delta from per-sample scores aligned by sample id (a sample that failed with no score counts as 0), the
samples whose score changed (flips), throughput and bench speed ratios, and the gate's verdict.

Once any gate is set, every task, metric, throughput figure or bench row of the baseline that the candidate lacks
and every task-version mismatch is a failure too; nothing is skipped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from qwen3vl_eval.compare.gates import SPEED_KEYS, Gate
from qwen3vl_eval.compare.results import Result, TaskResult, is_number
from qwen3vl_eval.eval.aggregate import higher_is_better
from qwen3vl_eval.report.stats import PairedCI, infer_scale, paired_bootstrap

# Bench row fields that identify a configuration, and the figures compared between rows.
BENCH_KEY = ("backend", "batch_size", "prompt_tokens", "new_tokens", "images", "video")
BENCH_RATES = ("prefill_tokens_per_s", "decode_tokens_per_s")
BENCH_LATENCIES = ("ttft_ms", "tpot_ms", "vision_ms", "preprocess_ms", "latency_ms", "peak_memory_mb")
PROMPT_FIELDS = ("prompt", "question", "input")
# Entries of results.json `versions` that change what a number means, reported when they differ.
VERSION_KEYS = ("prompt", "prompt_hash", "parser", "scorer", "synth")
EPS = 1e-9


@dataclass
class MetricRow:
    task: str
    metric: str
    baseline: float | None
    candidate: float | None
    delta: float | None = None
    ci: PairedCI | None = None
    ci_note: str = ""
    threshold: float | None = None
    higher_is_better: bool = True
    failed: bool = False
    note: str = ""


@dataclass
class SpeedRow:
    where: str  # task name, or a bench configuration
    key: str
    baseline: float | None
    candidate: float | None
    ratio: float | None = None  # candidate / baseline for rates, baseline / candidate for latencies
    gated: bool = False
    failed: bool = False
    note: str = ""


@dataclass
class Flip:
    id: str
    baseline_score: float
    candidate_score: float
    baseline_prediction: Any = None
    candidate_prediction: Any = None
    target: Any = None
    prompt: Any = None


@dataclass
class Comparison:
    """One candidate against the baseline."""

    baseline: Result
    candidate: Result
    metrics: list[MetricRow] = field(default_factory=list)
    speed: list[SpeedRow] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)  # missing tasks, version mismatches, ...
    flips: dict[str, dict[str, list[Flip]]] = field(default_factory=dict)  # task -> metric -> flips
    failures: list[str] = field(default_factory=list)


def compare_results(baseline: Result, candidate: Result, gate: Gate, *, resamples: int = 10_000,
                    confidence: float = 0.95, seed: int = 0) -> Comparison:
    """Compare `candidate` with `baseline` and apply `gate` (failures listed in `Comparison.failures`)."""
    c = Comparison(baseline, candidate)
    for task in sorted(baseline.tasks.keys() | candidate.tasks.keys()):
        b, k = baseline.tasks.get(task), candidate.tasks.get(task)
        if b is None:
            c.issues.append(f"task {task}: only in the candidate ({candidate.label}), not gated")
            continue
        if k is None:
            msg = f"task {task}: missing from the candidate ({candidate.label})"
            c.issues.append(msg)
            c.metrics += [MetricRow(task, m, v, None, threshold=gate.threshold(task, m), failed=gate.active,
                                    note="task missing") for m, v in b.metrics.items()]
            if gate.active:
                c.failures.append(msg)
            continue
        if b.task_version != k.task_version:
            msg = f"task {task}: task_version differs (baseline {b.task_version}, candidate {k.task_version})"
            c.issues.append(msg)
            if gate.active:
                c.failures.append(msg)
        for key in VERSION_KEYS:
            if b.versions.get(key) != k.versions.get(key):
                c.issues.append(f"task {task}: {key} differs (baseline {b.versions.get(key)}, candidate "
                                f"{k.versions.get(key)}), not gated")
        _compare_task(c, b, k, gate, resamples=resamples, confidence=confidence, seed=seed)
    _compare_speed(c, gate)
    if baseline.bench or candidate.bench:
        _compare_bench(c, gate)
    return c


def _compare_task(c: Comparison, b: TaskResult, k: TaskResult, gate: Gate, *, resamples: int,
                  confidence: float, seed: int) -> None:
    for metric in list(b.metrics) + [m for m in k.metrics if m not in b.metrics]:
        bv, kv = b.metrics.get(metric), k.metrics.get(metric)
        hib = higher_is_better(metric, b.higher_is_better.get(metric, k.higher_is_better.get(metric)))
        row = MetricRow(b.task, metric, bv, kv, threshold=gate.threshold(b.task, metric), higher_is_better=hib)
        c.metrics.append(row)
        if bv is None:
            row.note = "only in the candidate"
            continue
        if kv is None:
            row.note = "missing from the candidate"
            msg = f"{b.task}:{metric}: missing from the candidate"
            c.issues.append(msg)
            if gate.active:
                row.failed = True
                c.failures.append(msg)
            continue
        row.delta = kv - bv
        _paired(c, row, b, k, resamples=resamples, confidence=confidence, seed=seed)
        drop = -row.delta if hib else row.delta
        if row.threshold is not None and drop > row.threshold + EPS:
            if gate.require_significant and row.ci is not None and not _significant_drop(row):
                row.note = "worse beyond threshold but the paired CI includes 0"
            else:
                row.failed = True
                c.failures.append(f"{b.task}:{metric}: {change_words(row.delta, hib)} ({bv:.2f} -> {kv:.2f}), "
                                  f"worse by more than {row.threshold:g}")


def change_words(delta: float | None, hib: bool) -> str:
    """A metric's change in words that know its direction: "rose 16.67 points (worse; lower is better)"."""
    if delta is None:
        return "–"
    if abs(delta) <= EPS:
        return "unchanged"
    better = (delta > 0) == hib
    return (f"{'rose' if delta > 0 else 'fell'} {abs(delta):.2f} points ({'better' if better else 'worse'}; "
            f"{'higher' if hib else 'lower'} is better)")


def _significant_drop(row: MetricRow) -> bool:
    assert row.ci is not None
    return row.ci.high < 0 if row.higher_is_better else row.ci.low > 0


def _paired(c: Comparison, row: MetricRow, b: TaskResult, k: TaskResult, *, resamples: int, confidence: float,
            seed: int) -> None:
    if b.samples is None or k.samples is None:
        row.ci_note = "no samples.jsonl"
        return
    bs, ks = b.scores(row.metric), k.scores(row.metric)
    if not bs or not ks:
        row.ci_note = "no per-sample scores"
        return
    ids = sorted(bs.keys() & ks.keys())
    if not ids:
        row.ci_note = "no common sample ids"
        return
    max_abs = max(abs(v) for v in list(bs.values()) + list(ks.values()))
    # both runs' metrics must be the mean of their per-sample scores (not so for a macro mean such as MLVU's M-Avg)
    scales = {infer_scale(sum(s.values()) / len(s), v, max_abs) for s, v in ((bs, row.baseline), (ks, row.candidate))
              if v is not None}
    scale = scales.pop() if len(scales) == 1 else None
    if scale is None:
        row.ci_note = "metric is not the mean of its per-sample scores"
        return
    ci = paired_bootstrap([bs[i] for i in ids], [ks[i] for i in ids], resamples=resamples,
                          confidence=confidence, seed=seed)
    row.ci = ci.scaled(scale)
    unpaired = len(bs.keys() ^ ks.keys())
    if unpaired:
        row.ci_note = f"{unpaired} sample(s) in one run only"
    flips = [Flip(i, bs[i], ks[i]) for i in ids if abs(ks[i] - bs[i]) > EPS]
    for f in flips:
        rb, rk = b.samples[f.id], k.samples[f.id]
        f.baseline_prediction, f.candidate_prediction = rb.get("prediction"), rk.get("prediction")
        f.target = rb.get("target", rk.get("target"))
        f.prompt = next((r[p] for p in PROMPT_FIELDS for r in (rk, rb) if r.get(p) is not None), None)
    c.flips.setdefault(b.task, {})[row.metric] = flips


def _ratio(base: float | None, cand: float | None, rate: bool) -> float | None:
    if base is None or cand is None:
        return None
    num, den = (cand, base) if rate else (base, cand)
    return num / den if den > 0 else None


def _speed_row(c: Comparison, gate: Gate, where: str, key: str, base: float | None, cand: float | None,
               rate: bool) -> None:
    row = SpeedRow(where, key, base, cand, _ratio(base, cand, rate), gated=rate and gate.min_speed_ratio is not None)
    c.speed.append(row)
    if not row.gated:
        return
    if cand is None:
        row.failed, row.note = True, "missing from the candidate"
        c.failures.append(f"{where} {key}: missing from the candidate")
    elif row.ratio is None:
        row.failed, row.note = True, "no ratio (baseline is 0)"
        c.failures.append(f"{where} {key}: cannot form a ratio (baseline {base})")
    elif row.ratio < gate.min_speed_ratio - EPS:  # type: ignore[operator]
        row.failed = True
        c.failures.append(f"{where} {key}: speed ratio {row.ratio:.3f} is below {gate.min_speed_ratio:g} "
                          f"({base:.4g} -> {cand:.4g})")


def _compare_speed(c: Comparison, gate: Gate) -> None:
    for task in sorted(c.baseline.tasks.keys() & c.candidate.tasks.keys()):
        b, k = c.baseline.tasks[task].throughput, c.candidate.tasks[task].throughput
        for key in [x for x in b if x in SPEED_KEYS] + [x for x in k if x in SPEED_KEYS and x not in b]:
            if key not in b:
                c.speed.append(SpeedRow(task, key, None, k[key], note="only in the candidate"))
                continue
            _speed_row(c, gate, task, key, b[key], k.get(key), rate=True)
    if gate.min_speed_ratio is not None and not any(r.gated for r in c.speed) and not (
            c.baseline.bench and c.candidate.bench):
        c.failures.append("--min-speed-ratio is set but the baseline has no throughput figures to compare")


def bench_key(row: dict) -> tuple:
    """The configuration a bench row measured (rows with equal keys are compared)."""
    return tuple(json.dumps(row.get(k), sort_keys=True) for k in BENCH_KEY)


def bench_label(row: dict) -> str:
    parts = [str(row.get("backend")), f"bs={row.get('batch_size')}", f"prompt={row.get('prompt_tokens')}",
             f"new={row.get('new_tokens')}"]
    if row.get("images"):
        parts.append("img=" + ",".join(map(str, row["images"])))
    if row.get("video"):
        parts.append(f"video={row['video']}")
    return " ".join(parts)


def _compare_bench(c: Comparison, gate: Gate) -> None:
    cand = {bench_key(r): r for r in c.candidate.bench}
    base = {bench_key(r): r for r in c.baseline.bench}
    for key, b in base.items():
        where = bench_label(b)
        k = cand.get(key)
        if k is None:
            msg = f"bench {where}: missing from the candidate"
            c.issues.append(msg)
            if gate.min_speed_ratio is not None:
                c.failures.append(msg)
            continue
        for f in BENCH_RATES:
            if is_number(b.get(f)):
                _speed_row(c, gate, where, f, float(b[f]), float(k[f]) if is_number(k.get(f)) else None, rate=True)
        for f in BENCH_LATENCIES:
            if is_number(b.get(f)) and is_number(k.get(f)):
                _speed_row(c, gate, where, f, float(b[f]), float(k[f]), rate=False)
    for key, k in cand.items():
        if key not in base:
            c.issues.append(f"bench {bench_label(k)}: only in the candidate, not gated")
