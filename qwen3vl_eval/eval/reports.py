"""Results artefacts of one task: `results.json` (the record that makes a number reproducible) and `report.md`
(metrics table, breakdowns, throughput, a few example predictions and errors). Neither needs the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qwen3vl_eval.eval.sample_log import read_field
from qwen3vl_eval.report.files import cell, markdown_table, write_json, write_text

N_EXAMPLES = 5


def limit_note(limit: int) -> str:
    """The line a `--limit` run prints and its report.md leads with."""
    return f"--limit {limit}: for testing only, not a benchmark score (the first {limit} samples of each task)"


def render_report(results: dict, records: list[dict]) -> str:
    """report.md of one task."""
    m = results["metrics"]
    out = [f"# {results['task']}", ""]
    if (results.get("config") or {}).get("limit"):
        out += [f"**{limit_note(results['config']['limit'])}**", ""]
    miss = results.get("missing")
    if miss:
        ids = ", ".join(map(str, miss["first_ids"])) + (", ..." if miss["n"] > len(miss["first_ids"]) else "")
        out += [f"**WARNING: {miss['note']}. Missing ids: {ids}.**", ""]
    model = results.get("model") or f"predictions {results['config'].get('predictions')}"
    info, cfg = results.get("model_info") or {}, results.get("config") or {}
    run = [f"{k} {v}" for k, v in (("dtype", info.get("dtype")), ("device", info.get("device")),
                                   ("batch size", cfg.get("batch_size")), ("backend", cfg.get("backend")),
                                   ("checkpoint sha256", (info.get("checkpoint_sha256") or "")[:16] or None),
                                   ("revision", info.get("revision"))) if v is not None]
    model_line = f"- model: `{model}`" + (f" ({', '.join(run)})" if run else "")
    counts = [f"errors {results['n_errors']}", *([f"missing {results['n_missing']}"] if results.get("n_missing")
                                                   else []), f"parse failures {results.get('n_parse_failures', 0)}"]
    counts += [f"{label} {results[k]}" for k, label in (("n_truncated_reasoning", "truncated reasoning"),
                                                         ("n_random_fallback", "random letter fallbacks"))
               if results.get(k)]
    out += [model_line, f"- samples: {results['n_samples']} ({', '.join(counts)})", f"- created: {results['created']}",
            f"- data: {results.get('data_source') or '-'}{_provenance(cfg.get('data_provenance'))}",
            f"- versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}"]
    gen = cfg.get("generation")
    if gen:
        keys = ("temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty", "max_new_tokens", "seed")
        shown = ", ".join(f"{k} {gen[k]}" for k in keys if k in gen)
        recipe = f"recipe {cfg['recipe']} ({cfg.get('recipe_source')}); " if cfg.get("recipe") else ""
        out.append(f"- generation: {recipe}{shown}" + (", Thinking checkpoint" if cfg.get("thinking") else ""))
    if cfg.get("media"):
        out.append(f"- media: {json.dumps(cfg['media'], sort_keys=True)}")
    out.append("")
    if results.get("reference"):
        out += [f"- headline metrics reproduce: {results['reference']}; `*_flexible`: the harness' lenient "
                "reading of the same replies", ""]
    if results.get("judge"):
        out += [judge_line(results["judge"]), ""]
    out += ["## Metrics", "", markdown_table(["metric", "value"], [[k, v] for k, v in m.items()]), ""]
    if results.get("scoring"):
        out += [f"Denominator: {results['scoring']['rule']}."]
        out += [f"- `{k}`: {v}" for k, v in (results["scoring"].get("exceptions") or {}).items()] + [""]
    for fld, groups in (results.get("breakdowns") or {}).items():
        names = [k for k in next(iter(groups.values()), {}) if k != "n"]
        out += [f"## By {fld}", "", markdown_table([fld, "n", *names], [[g, v["n"], *[v[k] for k in names]]
                                                              for g, v in groups.items()]), ""]
    tp = results.get("throughput")
    if tp:
        rows = [["samples/s", tp.get("samples_per_s")], ["generated tokens/s", tp.get("generated_tokens_per_s")],
                ["generated tokens", tp.get("generated_tokens")], ["wall s", tp.get("wall_s")]]
        rows += [[f"{k} s", v] for k, v in (tp.get("time_s") or {}).items()]
        out += ["## Throughput", "", markdown_table(["", "value"], rows), ""]
        if tp.get("note"):
            out += [f"Throughput: {tp['note']}.", ""]
    ok = [r for r in records if not r.get("error")][:N_EXAMPLES]
    if ok:
        rows = [[r["id"], cell(r.get("target"), 80), cell(r.get("prediction"), 80),
                 cell(read_field(r, "parsed_prediction"), 80), cell(r.get("scores"), 80)] for r in ok]
        out += ["## Examples", "", markdown_table(["id", "target (gold)", "prediction (model, raw)",
                                                   "parsed_prediction", "scores"], rows), ""]
    bad = [r for r in records if r.get("error")][:N_EXAMPLES]
    if bad:
        rows = [[r["id"], cell(r["error"], 160)] for r in bad]
        out += ["## Errors", "", markdown_table(["id", "error"], rows), ""]
    return "\n".join(out)


def judge_line(j: dict) -> str:
    """report.md's line on a task's LLM judge: who judged what and how many judgements failed, or why the judged
    metrics are absent."""
    names = ", ".join(f"`{m}`" for m in j.get("metrics") or [])
    if not j.get("configured"):
        return (f"- judged metrics {names}: absent (not zero): {j.get('reason')}; the task's judge: prompt "
                f"{j.get('prompt')}, default model `{j.get('default_model')}`")
    line = (f"- judged metrics {names}: judge `{j['model']}`, prompt {j['prompt']} (samples: {j['samples']}); "
            f"{j['n_judged']} judged ({j['n_cached']} from the cache, {j['n_requests']} sent), "
            f"{j['n_failed']} failed ({j['n_request_errors']} request errors, {j['n_unread']} unreadable replies; "
            f"scored 0); {j['n_rules']} read by the rules, {j['n_headline']} kept the headline score")
    return line + (f"; first error: {str(j['first_error'])[:200]}" if j.get("first_error") else "")


def _provenance(p: dict | None) -> str:
    """` (snapshot abc123, rows sha256 0123...)` for the data line of report.md."""
    if not p:
        return ""
    parts = [f"snapshot {p['commit']}" if p.get("commit") else f"{p.get('kind')} files sha256"
             if p.get("files") else str(p.get("kind"))]
    if p.get("rows_sha256"):
        parts.append(f"{p.get('n_rows')} rows sha256 {p['rows_sha256'][:16]}")
    return f" ({', '.join(parts)})"


def write_outputs(out_dir: Path, results: dict, records: list[dict], spec: Any = None) -> None:
    """results.json and report.md into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", results)
    write_text(out_dir / "report.md", render_report(results, records))
