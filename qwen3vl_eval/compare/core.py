"""Compare evaluation runs and benchmark results, and gate on regressions.

Inputs (CONTRACTS section 5): a run folder (one subfolder per task, each with `results.json` and
`samples.jsonl`), a task folder, a `results.json` file, or benchmark output (`bench --json` rows, or a bench
`--output` folder holding `bench.json`). The first result is the baseline; every other one is compared with it.

Per task and metric: both values, the delta, and a paired bootstrap CI of the delta from per-sample scores
aligned by sample id (a sample that failed with no score counts as 0), plus the samples whose score changed.
Gates (`Gate`): a metric that drops more than its threshold, a throughput ratio under `min_speed_ratio`, and,
once any gate is set, every task, metric, throughput figure or bench row of the baseline that the candidate lacks
and every task-version mismatch is a failure too; nothing is skipped silently.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3vl_eval.errors import InputError
from qwen3vl_eval.report.stats import PairedCI, infer_scale, paired_bootstrap

# Throughput keys that are "higher is better" rates, gated by --min-speed-ratio.
SPEED_KEYS = ("samples_per_s", "generated_tokens_per_s", "prefill_tokens_per_s", "decode_tokens_per_s")
# Bench row fields that identify a configuration, and the figures compared between rows.
BENCH_KEY = ("backend", "batch_size", "prompt_tokens", "new_tokens", "images", "video")
BENCH_RATES = ("prefill_tokens_per_s", "decode_tokens_per_s")
BENCH_LATENCIES = ("ttft_ms", "tpot_ms", "vision_ms", "preprocess_ms", "latency_ms", "peak_memory_mb")
PROMPT_FIELDS = ("prompt", "question", "input")
# Entries of results.json `versions` that change what a number means, reported when they differ.
VERSION_KEYS = ("prompt", "prompt_hash", "parser", "scorer", "synth")
EPS = 1e-9


# ------------------------------------------------------------------------------------------------ loading
@dataclass
class TaskResult:
    """One task's `results.json` and, when present, its `samples.jsonl` (records by sample id)."""

    task: str
    path: Path
    metrics: dict[str, float]
    model: str | None = None
    task_version: str | None = None
    n_samples: int | None = None
    n_errors: int | None = None
    throughput: dict[str, float] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    samples: dict[str, dict] | None = None

    def scores(self, metric: str) -> dict[str, float]:
        """Per-sample scores for `metric` by id (a top-level field named after the metric, or an entry of the
        record's `scores` object); a failed sample without a score counts as 0."""
        out: dict[str, float] = {}
        for sid, rec in (self.samples or {}).items():
            v = rec.get(metric)
            if v is None and isinstance(rec.get("scores"), dict):
                v = rec["scores"].get(metric)
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
                out[sid] = float(v)
            elif v is None and rec.get("error"):
                out[sid] = 0.0
        return out


@dataclass
class Result:
    """Everything read from one RESULT argument."""

    label: str
    path: Path
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    bench: list[dict] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        names = [t.model for t in self.tasks.values() if t.model] + [r["model"] for r in self.bench
                                                                       if r.get("model")]
        return sorted(set(map(str, names)))

    @property
    def dates(self) -> list[str]:
        names = [t.created for t in self.tasks.values() if t.created] + [r["date"] for r in self.bench
                                                                          if r.get("date")]
        return sorted(set(map(str, names)))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_task_result(path: Path) -> TaskResult:
    """Read a task's `results.json` (and the `samples.jsonl` beside it, if any)."""
    d = _read_json(path)
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a JSON object")
    task = d.get("task")
    if not isinstance(task, str) or not task:
        raise InputError(f"{path}: missing or malformed field 'task'")
    metrics = d.get("metrics")
    if not isinstance(metrics, dict) or not all(_number(v) for v in metrics.values()):
        raise InputError(f"{path}: field 'metrics' must be an object of numbers")
    tp = d.get("throughput") or {}
    if not isinstance(tp, dict):
        raise InputError(f"{path}: field 'throughput' must be an object")
    hib = d.get("higher_is_better") or {}
    versions = d.get("versions") if isinstance(d.get("versions"), dict) else {}
    version = d.get("task_version", versions.get("task"))
    res = TaskResult(
        task=task, path=path, metrics={k: float(v) for k, v in metrics.items()},
        model=None if d.get("model") is None else str(d["model"]),
        task_version=None if version is None else str(version),
        n_samples=d.get("n_samples"), n_errors=d.get("n_errors"),
        throughput={k: float(v) for k, v in tp.items() if _number(v)},
        versions=versions,
        created=None if d.get("created") is None else str(d["created"]),
        higher_is_better={k: bool(v) for k, v in hib.items()} if isinstance(hib, dict) else {},
    )
    samples = path.with_name("samples.jsonl")
    if samples.is_file():
        res.samples = load_samples(samples)
    return res


def load_samples(path: Path) -> dict[str, dict]:
    """`samples.jsonl` records by id (as a string), read as the runner reads them (a torn last line is
    ignored); a repeated id keeps its last record (a resumed run)."""
    from qwen3vl_eval.eval.sample_log import read_records

    return {str(rec["id"]): rec for rec in read_records(path)}


def _bench_rows(data: Any, path: Path) -> list[dict] | None:
    """Rows of a bench JSON (a list of rows, or an object with a `rows` list); None if it is not one."""
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows:
        return None
    if not all(isinstance(r, dict) and "backend" in r and "batch_size" in r for r in rows):
        return None
    return rows


def default_label(p: Path) -> str:
    """A short name for a RESULT path: the folder name, or the file stem unless it is a generic one."""
    if p.is_file() and p.stem in ("results", "bench"):
        return p.resolve().parent.name
    return p.stem if p.is_file() else p.resolve().name


def load_result(path: str | Path, label: str | None = None) -> Result:
    """Read one RESULT argument: run folder, task folder, results.json, bench JSON or bench output folder."""
    p = Path(path)
    res = Result(label=label or default_label(p), path=p)
    if p.is_file():
        data = _read_json(p)
        rows = _bench_rows(data, p)
        if rows is not None:
            res.bench = rows
        elif isinstance(data, dict) and "task" in data:
            t = load_task_result(p)
            res.tasks[t.task] = t
        else:
            raise InputError(f"{p}: neither a results.json (object with 'task' and 'metrics') nor bench rows")
        return res
    if not p.is_dir():
        raise InputError(f"{p}: no such file or folder")
    if (p / "results.json").is_file():
        t = load_task_result(p / "results.json")
        res.tasks[t.task] = t
    else:
        for sub in sorted(q for q in p.iterdir() if (q / "results.json").is_file()):
            t = load_task_result(sub / "results.json")
            if t.task in res.tasks:
                raise InputError(f"{p}: task {t.task!r} appears twice ({res.tasks[t.task].path}, {t.path})")
            res.tasks[t.task] = t
    if (p / "bench.json").is_file():
        rows = _bench_rows(_read_json(p / "bench.json"), p / "bench.json")
        if rows is None:
            raise InputError(f"{p / 'bench.json'}: expected a list of bench rows")
        res.bench = rows
    if not res.tasks and not res.bench:
        raise InputError(f"{p}: no results.json (in it or its subfolders) and no bench.json")
    return res


# ------------------------------------------------------------------------------------------------ gates
_OVERRIDE = re.compile(r"^(?P<task>[^:=]+):(?P<metric>[^=]+)=(?P<value>.+)$")


@dataclass
class Gate:
    """Regression thresholds. `max_drop_metric` maps (task pattern, metric pattern) to points; patterns are
    exact names or fnmatch wildcards (`*`). The most specific match wins: exact pair, then an exact task or
    metric, then wildcards, then `max_drop`."""

    max_drop: float | None = None
    max_drop_metric: dict[tuple[str, str], float] = field(default_factory=dict)
    min_speed_ratio: float | None = None
    require_significant: bool = False

    @property
    def active(self) -> bool:
        return self.max_drop is not None or bool(self.max_drop_metric) or self.min_speed_ratio is not None

    def threshold(self, task: str, metric: str) -> float | None:
        best: tuple[int, float] | None = None
        for (tp, mp), v in self.max_drop_metric.items():
            if fnmatch.fnmatchcase(task, tp) and fnmatch.fnmatchcase(metric, mp):
                rank = (tp == task) * 2 + (mp == metric)
                if best is None or rank > best[0]:
                    best = (rank, v)
        return best[1] if best is not None else self.max_drop


def parse_metric_overrides(items: list[str]) -> dict[tuple[str, str], float]:
    """`TASK:METRIC=POINTS` strings (TASK or METRIC may be `*`) to a dict; bad syntax is an InputError."""
    out: dict[tuple[str, str], float] = {}
    for item in items:
        m = _OVERRIDE.match(item.strip())
        if not m:
            raise InputError(f"--max-drop-metric {item!r}: expected TASK:METRIC=POINTS (e.g. videomme:accuracy=1.0)")
        try:
            value = float(m["value"])
        except ValueError:
            raise InputError(f"--max-drop-metric {item!r}: {m['value']!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"--max-drop-metric {item!r}: points must be a finite number >= 0")
        out[(m["task"].strip(), m["metric"].strip())] = value
    return out


def check_overrides(gate: Gate, baseline: Result) -> None:
    """Every per-metric override must name at least one metric of the baseline (a typo would disable a gate)."""
    pairs = [(t, m) for t, tr in baseline.tasks.items() for m in tr.metrics]
    for tp, mp in gate.max_drop_metric:
        if not any(fnmatch.fnmatchcase(t, tp) and fnmatch.fnmatchcase(m, mp) for t, m in pairs):
            known = ", ".join(f"{t}:{m}" for t, m in pairs) or "none"
            raise InputError(f"--max-drop-metric {tp}:{mp}: matches no metric of the baseline (known: {known})")


# ------------------------------------------------------------------------------------------------ comparing
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
        hib = b.higher_is_better.get(metric, k.higher_is_better.get(metric, True))
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
                row.note = "drop beyond threshold but the paired CI includes 0"
            else:
                row.failed = True
                c.failures.append(f"{b.task}:{metric}: dropped {drop:.2f} points "
                                  f"({bv:.2f} -> {kv:.2f}), more than {row.threshold:g}")


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
    scale = infer_scale(sum(bs.values()) / len(bs), row.baseline, max_abs) if row.baseline is not None else None
    if scale is None and row.candidate is not None:
        scale = infer_scale(sum(ks.values()) / len(ks), row.candidate, max_abs)
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
            if _number(b.get(f)):
                _speed_row(c, gate, where, f, float(b[f]), float(k[f]) if _number(k.get(f)) else None, rate=True)
        for f in BENCH_LATENCIES:
            if _number(b.get(f)) and _number(k.get(f)):
                _speed_row(c, gate, where, f, float(b[f]), float(k[f]), rate=False)
    for key, k in cand.items():
        if key not in base:
            c.issues.append(f"bench {bench_label(k)}: only in the candidate, not gated")


# ------------------------------------------------------------------------------------------------ reports
def _fmt(v: float | None, nd: int = 2) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def _signed(v: float | None, nd: int = 2) -> str:
    return "–" if v is None else f"{v:+.{nd}f}"


def _cell(v: Any, limit: int = 160) -> str:
    if v is None:
        return "–"
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    s = s.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ⏎ ")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _versions(r: Result) -> str:
    versions: dict[str, Any] = {}
    for t in r.tasks.values():
        versions.update(t.versions)
    for row in r.bench:
        if isinstance(row.get("versions"), dict):
            versions.update(row["versions"])
    return ", ".join(f"{k} {val}" for k, val in sorted(versions.items())) or "versions not recorded"


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
        rows.append([m.task, m.metric, _fmt(m.baseline), _fmt(m.candidate), _signed(m.delta), ci,
                     "–" if m.threshold is None else f"{m.threshold:g}", status, _cell(note)])
    return _table(["task", "metric", "baseline", "candidate", "delta", "paired CI", "max drop", "gate", "note"], rows)


def speed_table(c: Comparison) -> str:
    rows = [[_cell(s.where), s.key, _fmt(s.baseline, 3), _fmt(s.candidate, 3), _fmt(s.ratio, 3),
             "FAIL" if s.failed else ("ok" if s.gated else ""), _cell(s.note)] for s in c.speed]
    return _table(["where", "figure", "baseline", "candidate", "speed ratio", "gate", "note"], rows)


def render_markdown(comparisons: list[Comparison], gate: Gate, *, max_flips: int = 20,
                    charts: dict[str, str] | None = None) -> str:
    """The comparison report: one section per candidate, then the gate verdict."""
    base = comparisons[0].baseline
    out = ["# Comparison report", "", f"Baseline: {_describe(base)}", ""]
    for c in comparisons:
        out.append(f"Candidate **{c.candidate.label}**: {_describe(c.candidate)}")
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
                rows = [[_cell(f.id, 40), f"{f.baseline_score:g} → {f.candidate_score:g}",
                         _cell(f.baseline_prediction), _cell(f.candidate_prediction), _cell(f.target, 80),
                         _cell(f.prompt)] for f in shown]
                more = f" (first {len(shown)} of {len(group)})" if len(group) > len(shown) else ""
                out += ["", f"{title} in the candidate{more}:", "",
                        _table(["id", "score", "baseline prediction", "candidate prediction", "target", "prompt"],
                               rows)]
            out.append("")
    return out


def gate_summary(gate: Gate) -> str:
    if not gate.active:
        return "none"
    parts = []
    if gate.max_drop is not None:
        parts.append(f"max drop {gate.max_drop:g} points for every metric")
    parts += [f"max drop {v:g} for {t}:{m}" for (t, m), v in gate.max_drop_metric.items()]
    if gate.require_significant:
        parts.append("a drop fails only when its paired CI excludes 0")
    if gate.min_speed_ratio is not None:
        parts.append(f"min speed ratio {gate.min_speed_ratio:g} on {', '.join(SPEED_KEYS)}")
    parts.append("missing tasks, metrics, throughput figures and bench rows, and task-version mismatches fail")
    return "; ".join(parts)


def to_json(comparisons: list[Comparison], gate: Gate) -> dict:
    """A JSON-ready summary: per candidate the metric and speed rows, issues, flips and failures."""
    def metric(m: MetricRow) -> dict:
        return {"task": m.task, "metric": m.metric, "baseline": m.baseline, "candidate": m.candidate,
                "delta": m.delta, "ci": None if m.ci is None else m.ci.to_dict(), "ci_note": m.ci_note,
                "threshold": m.threshold, "higher_is_better": m.higher_is_better, "failed": m.failed,
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
    pairs = [(m.task, m.metric) for m in comparisons[0].metrics if m.baseline is not None]
    if pairs:
        series = {base.label: [base.tasks[t].metrics.get(m) for t, m in pairs]}
        for c in comparisons:
            series[c.candidate.label] = [c.candidate.tasks[t].metrics.get(m) if t in c.candidate.tasks else None
                                         for t, m in pairs]
        charts.grouped_bars(out_dir / "metrics.png", [f"{t}:{m}" for t, m in pairs], series,
                            title="Metric values (0-100)", ylabel="points", footer=footer)
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
