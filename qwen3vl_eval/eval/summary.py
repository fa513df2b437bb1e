"""The run-level summary: `summary.json`, `summary.md` and `summary.png` in the run folder, every task's headline
metric in one table with what produced it (model, backend, dtype, device, versions, date) and the reference each
headline follows. Built from the task folders' results.json (nothing is recomputed); `run` and `score` both
write it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qwen3vl_eval.report.files import fmt, markdown_table, write_json, write_text

SUMMARY_VERSIONS = ("harness", "torch", "python")  # run-wide; per task: task, prompt, parser


def _common(results: list[dict], get: Any) -> str | None:
    """The one value of `get(result)` over the tasks, or the distinct values joined (None when none)."""
    values = sorted({str(v) for v in (get(r) for r in results) if v is not None})
    return ", ".join(values) if values else None


def task_row(r: dict) -> dict[str, Any]:
    """One task's line of summary.json."""
    primary = r.get("primary_metric") or next(iter(r["metrics"]), None)
    tp = r.get("throughput") or {}
    versions = r.get("versions") or {}
    return {"task": r["task"], "headline": primary, "value": r["metrics"].get(primary) if primary else None,
            "reference": r.get("reference"), "metrics": r["metrics"], "n_samples": r.get("n_samples"),
            "n_errors": r.get("n_errors"), "n_missing": r.get("n_missing", 0),
            "parse_failure_rate": r["metrics"].get("parse_failure_rate"),
            "samples_per_s": tp.get("samples_per_s"), "throughput_from_earlier_run": tp.get("from_earlier_run"),
            "seeds": (r.get("seeds") or {}).get("values"),
            "versions": {k: versions.get(k) for k in ("task", "prompt", "parser") if versions.get(k) is not None}}


def run_summary(results: list[dict]) -> dict[str, Any]:
    """summary.json of a run from its tasks' results dicts (in run order)."""
    from qwen3vl_eval.eval.results import now

    info = lambda key: _common(results, lambda r: (r.get("model_info") or {}).get(key))  # noqa: E731
    cfg = lambda key: _common(results, lambda r: (r.get("config") or {}).get(key))  # noqa: E731
    return {
        "model": _common(results, lambda r: r.get("model")), "backend": cfg("backend"),
        "dtype": info("dtype") or cfg("dtype"), "device": info("device") or cfg("device"),
        "checkpoint_sha256": info("checkpoint_sha256"), "limit": cfg("limit"),
        "versions": {k: _common(results, lambda r, k=k: (r.get("versions") or {}).get(k)) for k in SUMMARY_VERSIONS},
        "created": now(),
        "tasks": [task_row(r) for r in results],
    }


def footer(summary: dict) -> str:
    """What the chart and the table were made from, in one line."""
    v = ", ".join(f"{k} {val}" for k, val in summary["versions"].items() if val)
    return (f"model {summary['model']} | backend {summary['backend'] or '?'} | dtype {summary['dtype'] or '?'} | "
            f"device {summary['device'] or '?'} | {v} | {summary['created']}")


def render_summary(summary: dict, chart: str | None = None) -> str:
    """summary.md: the run's provenance, then one row per task."""
    out = ["# Run summary", "", f"- model: `{summary['model']}`"
           + (f" (checkpoint sha256 {summary['checkpoint_sha256'][:16]})" if summary.get("checkpoint_sha256") else ""),
           f"- backend {summary['backend'] or '?'}, dtype {summary['dtype'] or '?'}, device {summary['device'] or '?'}",
           f"- versions: {', '.join(f'{k} {v}' for k, v in summary['versions'].items() if v) or '?'}",
           f"- created: {summary['created']}"]
    if summary.get("limit"):
        from qwen3vl_eval.eval.reports import limit_note

        out.append(f"- **{limit_note(summary['limit'])}**")
    rows, earlier = [], False
    for t in summary["tasks"]:
        rate = t["samples_per_s"]
        mark = ""
        if t["throughput_from_earlier_run"] and rate is not None:
            mark, earlier = " *", True
        rows.append([t["task"], t["headline"] or "–", fmt(t["value"], none="–"), t["n_samples"], t["n_errors"],
                     t["n_missing"] or 0, fmt(t["parse_failure_rate"], none="–"),
                     (fmt(rate, 3, "–") + mark), ", ".join(f"{k} {v}" for k, v in t["versions"].items()),
                     t["reference"] or "–"])
    out += ["", markdown_table(["task", "headline metric", "value", "n", "errors", "missing", "parse fail %",
                                "samples/s", "versions", "headline follows"], rows), ""]
    out.append("Values are percent over all n samples; an errored or missing sample counts as 0 (results.json "
               "`scoring` of each task). Every metric of a task: `<task>/report.md`.")
    if earlier:
        out.append("\n\\* throughput from the earlier run of that task: this (resumed) run had nothing left to "
                   "generate.")
    if chart:
        out += ["", f"![headline metrics]({chart})"]
    return "\n".join(out) + "\n"


def task_results(output: Path) -> list[dict]:
    """The results.json of every task folder in a run folder (`run` and `score` lay them out alike), by name."""
    from qwen3vl_eval.report.files import read_json

    return [read_json(p / "results.json") for p in sorted(output.iterdir()) if (p / "results.json").is_file()]


def write_run_summary(output: Path, *, chart: bool = True) -> Path:
    """summary.json, summary.md and (with `chart`) summary.png in the run folder `output`, over every task
    folder in it; returns the summary.md path."""
    summary = run_summary(task_results(output))
    made = None
    scored = [t for t in summary["tasks"] if t["value"] is not None]
    if chart and scored:
        from qwen3vl_eval.report.charts import hbars

        hbars(output / "summary.png", [f"{t['task']} · {t['headline']}" for t in scored],
              [t["value"] for t in scored], title="Headline metric per task", xlabel="percent (0-100)",
              footer=footer(summary))
        made = "summary.png"
    write_json(output / "summary.json", summary)
    path = output / "summary.md"
    write_text(path, render_summary(summary, made))
    return path
