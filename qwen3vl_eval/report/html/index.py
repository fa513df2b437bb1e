"""`index.html` of a run folder: one line per task (every subfolder with a results.json), linking to its
report.html, with its headline and flexible metrics, counts and speed."""

from __future__ import annotations

from pathlib import Path

from qwen3vl_eval.report.html.render import PageSet, read_json, write_page
from qwen3vl_eval.report.html.task import metric_rows, reference_lines, run_facts


def write_index(run_dir: Path, pages: list[PageSet] | None = None) -> PageSet:
    """Write `run_dir/index.html`. `pages` (the task pages just written) give each task's page weight; tasks
    rendered earlier are linked when their report.html exists."""
    run_dir = Path(run_dir)
    weights = {p.name: p.total for p in pages or []}
    tasks = []
    for sub in sorted(p for p in run_dir.iterdir() if (p / "results.json").is_file()):
        res = read_json(sub / "results.json")
        if not isinstance(res, dict) or not isinstance(res.get("metrics"), dict):
            continue
        name = str(res.get("task") or sub.name)
        tasks.append({"name": name, "folder": sub.name, "results": res, "metrics": metric_rows(res["metrics"]),
                      "primary": res.get("primary_metric"), "reference": "; ".join(reference_lines(res.get(
                          "reference"))), "has_page": (sub / "report.html").is_file(),
                      "throughput": res.get("throughput") or {}, "weight": weights.get(name)})
    facts = run_facts(tasks[0]["results"]) if tasks else []
    facts = [(k, v) for k, v in facts if k in ("model", "backend", "dtype", "device", "batch size",
                                                "checkpoint sha256")]
    ctx = {"run": run_dir.resolve().name, "tasks": tasks, "facts": facts,
           "any_flexible": any(r["has_flexible"] for t in tasks for r in t["metrics"]),
           "total": sum(w for w in weights.values())}
    out = PageSet("index")
    out.pages.append(write_page(run_dir / "index.html", "index.html", ctx, {}))
    return out
