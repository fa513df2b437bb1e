"""`report.html` of one task folder, built from its results.json and samples.jsonl (and the task spec and samples,
for the prompt text and the media): headline and flexible metrics with the reference they follow, the metrics by
each breakdown results.json holds, throughput, and a filterable, searchable sample table with thumbnails, boxes,
timelines and frame strips. Past `PAGE_SIZE` samples the table continues in `report-2.html`, `report-3.html`, ..."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qwen3vl_eval.errors import InputError
from qwen3vl_eval.report.html.media import MediaStore, checkpoint_video_settings
from qwen3vl_eval.report.html.render import STATUSES, PageSet, read_json, write_page
from qwen3vl_eval.report.html.views import CORRECT_AT, build_row

PAGE_SIZE = 500  # sample rows per page file
FLEXIBLE = "_flexible"
log = logging.getLogger(__name__)


def page_name(k: int) -> str:
    """File name of page k (1-based) of a task's report."""
    return "report.html" if k == 1 else f"report-{k}.html"


def metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Headline metrics with their `<metric>_flexible` companion beside them (parse_failure_rate apart)."""
    rows = []
    for name, value in metrics.items():
        if name == "parse_failure_rate" or (name.endswith(FLEXIBLE) and name[: -len(FLEXIBLE)] in metrics):
            continue
        rows.append({"name": name, "value": value, "flexible": metrics.get(name + FLEXIBLE),
                     "has_flexible": name + FLEXIBLE in metrics})
    return rows


def reference_lines(reference: Any) -> list[str]:
    """The `reference:` of a task (a string, or a mapping such as metric -> reference) as display lines."""
    if reference is None or reference == "":
        return []
    if isinstance(reference, dict):
        return [f"{k}: {v}" for k, v in reference.items()]
    if isinstance(reference, list):
        return [str(v) for v in reference]
    return [str(reference)]


def breakdown_tables(breakdowns: Any) -> list[dict[str, Any]]:
    """One table per breakdown field: group, n and each metric."""
    out = []
    for fld, groups in (breakdowns or {}).items():
        if not isinstance(groups, dict) or not groups:
            continue
        names = [k for k in next(iter(groups.values())) if k != "n"]
        out.append({"field": fld, "metrics": names,
                    "rows": [{"group": g, "n": v.get("n"), "cells": [v.get(k) for k in names]}
                             for g, v in groups.items() if isinstance(v, dict)]})
    return out


def run_facts(results: dict) -> list[tuple[str, Any]]:
    """Model, backend, dtype, device, batch, data and versions: what makes the numbers."""
    info, cfg = results.get("model_info") or {}, results.get("config") or {}
    model = results.get("model") or (f"predictions {cfg.get('predictions')}" if cfg.get("predictions") else None)
    facts = [("model", model), ("backend", cfg.get("backend")), ("dtype", info.get("dtype")),
             ("device", info.get("device")), ("batch size", cfg.get("batch_size")),
             ("checkpoint sha256", (info.get("checkpoint_sha256") or "")[:16] or None),
             ("data", results.get("data_source")), ("created", results.get("created")),
             ("versions", ", ".join(f"{k} {v}" for k, v in (results.get("versions") or {}).items()) or None)]
    return [(k, v) for k, v in facts if v not in (None, "")]


def load_task_samples(spec: Any, results: dict) -> tuple[list, str]:
    """The task's samples as the run read them (its --data and --media-root), or [] and why not."""
    if spec is None:
        return [], f"task {results.get('task')} is not in the task registry: no prompts or media"
    from qwen3vl_eval.eval.data import load_samples

    cfg = results.get("config") or {}
    try:
        return load_samples(spec, cfg.get("data"), cfg.get("media_root")), ""
    except InputError as e:
        return [], f"task data not available here ({e}): no prompts or media"


def find_spec(task: str | None) -> Any:
    """The registered spec of `task`, or None."""
    from qwen3vl_eval.eval.task import load_registry

    try:
        return load_registry().get(task or "")
    except InputError:
        return None


def latest_records(path: Path) -> list[dict]:
    """samples.jsonl records, the last one of each id, in first-seen order."""
    from qwen3vl_eval.eval.sample_log import read_records

    by_id: dict[str, dict] = {}
    for rec in read_records(path):
        by_id[str(rec["id"])] = rec
    return list(by_id.values())


def write_task_page(task_dir: Path, spec: Any = None, samples: list | None = None, page_size: int = PAGE_SIZE,
                    in_run: bool | None = None) -> PageSet:
    """Write `task_dir/report.html` (and its further pages and media) from the folder's results.json and
    samples.jsonl. `spec` and `samples` default to the registry's task and its data as the run read them;
    `in_run` links the run's index.html (default: when the parent folder has one)."""
    task_dir = Path(task_dir)
    if in_run is None:
        in_run = (task_dir.parent / "index.html").is_file()
    results = read_json(task_dir / "results.json")
    if not isinstance(results, dict) or "metrics" not in results:
        raise InputError(f"{task_dir / 'results.json'}: missing or not a results file")
    spec = spec if spec is not None else find_spec(results.get("task"))
    note = ""
    if samples is None:
        samples, note = load_task_samples(spec, results)
    by_id = {s.id: s for s in samples}
    records = latest_records(task_dir / "samples.jsonl")
    metric = results.get("primary_metric") or next(iter(results["metrics"]), "")
    store = MediaStore(task_dir, checkpoint_video_settings((results.get("config") or {}).get("model")))
    rows = [build_row(store, rec, by_id.get(str(rec.get("id"))), spec, metric) for rec in records]
    counts = {k: sum(r.status == k for r in rows) for k in STATUSES}
    n_pages = max(1, -(-len(rows) // page_size))
    base = {"results": results, "task": results.get("task"), "facts": run_facts(results),
            "metrics": metric_rows(results["metrics"]), "reference": reference_lines(results.get("reference")),
            "parse_failure_rate": results["metrics"].get("parse_failure_rate"),
            "breakdowns": breakdown_tables(results.get("breakdowns")), "throughput": results.get("throughput"),
            "primary": metric, "correct_at": CORRECT_AT, "counts": counts, "n_rows": len(rows), "note": note,
            "pages": [page_name(k) for k in range(1, n_pages + 1)], "description": getattr(spec, "description", ""),
            "in_run": in_run}
    pages = PageSet(str(results.get("task")))
    used: set[str] = set()
    for k in range(1, n_pages + 1):
        chunk = rows[(k - 1) * page_size : k * page_size]
        srcs = set().union(*(r.srcs() for r in chunk)) if chunk else set()
        used |= srcs
        ctx = {**base, "rows": chunk, "page": k, "first": (k - 1) * page_size + 1}
        pages.pages.append(write_page(task_dir / page_name(k), "task.html", ctx,
                                      {s: store.sizes[s] for s in srcs}))
    for stale in task_dir.glob("report-*.html"):  # pages of an earlier, longer render
        if stale.name not in base["pages"]:
            stale.unlink()
    store.prune(used)
    return pages
