"""Reading what `compare` compares (CONTRACTS section 5): eval results (a run folder with one subfolder per task,
a task folder, or a `results.json`, each with the `samples.jsonl` beside it when there is one) and bench rows
(`bench --json` output, or a bench `--output` folder holding `bench.json`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3vl_eval.errors import InputError
from qwen3vl_eval.eval.sample_log import read_records
from qwen3vl_eval.report.files import read_json


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
        """Per-sample scores for `metric` by id: a top-level field named after the metric, else the metric's
        per-sample value by the one denominator rule (`eval.aggregate.record_value`: from the record's `scores`,
        e.g. acc@0.5 and acc@0.5_flexible from `iou`/`iou_flexible`, parse_failure_rate from `parsed`; a failed
        sample counts 0, or as a parse failure). A group metric (CircularEval, fAcc, ...; `eval.group_metrics`)
        gives one value per group instead, keyed by its first sample's id."""
        from qwen3vl_eval.eval.aggregate import record_value
        from qwen3vl_eval.eval.group_metrics import GroupMetric
        from qwen3vl_eval.eval.metrics import get_metric

        try:
            defined = get_metric(metric)
        except KeyError:
            defined = None
        if isinstance(defined, GroupMetric) and defined.reduce != "sum":  # paired by group (its first sample)
            return defined.group_values(list((self.samples or {}).values()))
        out: dict[str, float] = {}
        for sid, rec in (self.samples or {}).items():
            v = rec.get(metric)
            if not is_number(v):
                v = record_value(metric, rec)
            if v is None and rec.get("error"):  # a metric the table does not know, on a failed sample
                v = 0.0
            if is_number(v):
                out[sid] = float(v)
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


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_task_result(path: Path) -> TaskResult:
    """Read a task's `results.json` (and the `samples.jsonl` beside it, if any)."""
    d = read_json(path)
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected a JSON object")
    task = d.get("task")
    if not isinstance(task, str) or not task:
        raise InputError(f"{path}: missing or malformed field 'task'")
    metrics = d.get("metrics")
    if not isinstance(metrics, dict) or not all(is_number(v) for v in metrics.values()):
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
        throughput={k: float(v) for k, v in tp.items() if is_number(v)},
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
        data = read_json(p)
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
        rows = _bench_rows(read_json(p / "bench.json"), p / "bench.json")
        if rows is None:
            raise InputError(f"{p / 'bench.json'}: expected a list of bench rows")
        res.bench = rows
    if not res.tasks and not res.bench:
        raise InputError(f"{p}: no results.json (in it or its subfolders) and no bench.json")
    return res
