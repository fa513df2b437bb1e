"""The bench report: bench.json, report.md (one table per workload, backends by batch size, native speed-ups
over a baseline, warnings) and the charts (throughput.png; latency.png with min-max error bars)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

_ROW_KEY = ("model", "dtype", "prompt_tokens", "new_tokens", "images", "video")


def _workload(row: dict) -> str:
    parts = [f"prompt {row.get('prompt_tokens')}", f"new {row.get('new_tokens')}"]
    if row.get("images"):
        parts.append("images " + ",".join(row["images"]))
    if row.get("video"):
        parts.append(f"video {row['video']}")
    return ", ".join(parts)


def _group(rows: Sequence[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(json.dumps(r.get(k)) for k in _ROW_KEY), []).append(r)
    return groups


def _range(r: dict, key: str, nd: int = 1) -> str:
    v = r.get(key)
    if v is None:
        return "–"
    lo, hi = r.get(f"{key}_min"), r.get(f"{key}_max")
    return f"{v:,.{nd}f} ({lo:,.{nd}f}–{hi:,.{nd}f})" if lo is not None and hi is not None else f"{v:,.{nd}f}"


def _f(v: float | None, nd: int = 1) -> str:
    return "–" if v is None else f"{v:,.{nd}f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def footer(rows: Sequence[dict]) -> str:
    """What every figure must name: models, dtypes, devices, versions and dates of the rows."""
    def uniq(key: str) -> str:
        return ", ".join(sorted({str(r.get(key)) for r in rows if r.get(key) is not None})) or "?"

    vers: dict[str, str] = {}
    for r in rows:
        vers.update(r.get("versions") or {})
    v = ", ".join(f"{k} {val}" for k, val in sorted(vers.items()))
    return (f"model {uniq('model')} | dtype {uniq('dtype')} | device {uniq('device_name')} ({uniq('device')}) | "
            f"{v} | {uniq('date')}")


def render_report(rows: Sequence[dict], charts: dict[str, str] | None = None) -> str:
    """report.md: one table per workload (model, dtype, prompt, new tokens, media), rows by backend and batch."""
    out = ["# Benchmark report", "", footer(rows), ""]
    peaks = {(r.get("device_name"), r.get("peak_bandwidth_gbs"), r.get("peak_tflops")) for r in rows
             if r.get("peak_bandwidth_gbs")}
    for name, bw, tf in sorted(peaks, key=str):
        out.append(f"Device peaks used for utilisation ({name}): {bw:g} GB/s, {tf:g} TFLOP/s (datasheet unless "
                   "overridden).")
    out += _backends(rows)
    for _, group in _group(rows).items():
        first = group[0]
        out += ["", f"## {first.get('model')} · {first.get('dtype')} · {_workload(first)}", "",
                "| backend | batch | input tok | TTFT ms | prefill tok/s | decode tok/s | TPOT ms | vision ms | "
                "preprocess ms | latency ms | e2e ms | peak MiB | decode BW | prefill FLOP/s |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(group, key=lambda r: (r["backend"] != "native", r["backend"], r["batch_size"])):
            if r.get("error"):
                out.append(f"| {r['backend']} | {r['batch_size']} | – | failed: {r['error']} |" + " |" * 10)
                continue
            out.append(
                f"| {r['backend']} | {r['batch_size']} | {r.get('input_tokens')} | {_range(r, 'ttft_ms', 2)} | "
                f"{_range(r, 'prefill_tokens_per_s', 0)} | {_range(r, 'decode_tokens_per_s', 1)} | "
                f"{_range(r, 'tpot_ms', 2)} | {_range(r, 'vision_ms', 2)} | {_range(r, 'preprocess_ms', 2)} | "
                f"{_range(r, 'latency_ms', 1)} | {_range(r, 'e2e_ms', 1)} | {_f(r.get('peak_memory_mb'), 0)} | "
                f"{_pct(r.get('decode_bandwidth_util'))} | {_pct(r.get('prefill_flops_util'))} |")
        out += _ratios(group)
        warned = [(r, w) for r in group for w in r.get("warnings") or []]
        if warned:
            out += ["", "Warnings:", ""] + [f"- {r['backend']} batch {r['batch_size']}: {w}" for r, w in warned]
    out += ["", "## Definitions", "",
            "Medians over repeats, (min–max) beside them; a warning names any figure whose repeats spread more "
            "than 20% (max − min over median). Each repeat is one chat call on the workload's conversations, "
            "processed by the backend's own processor as `run` sends them; stage times come from the backend's "
            "timing record. Preprocess: media decoding, chat template, tokenisation. TTFT: vision encoder + "
            "prefill up to the first token's logits. Prefill tok/s: batch × input tokens (template and visual "
            "tokens included) / TTFT. TPOT: decode time, measured inside the generation loop, / (N − 1); decode "
            "tok/s = batch × 1000 / TPOT. Latency: TTFT + decode; e2e: the whole call, preprocessing included. "
            "Output length is fixed (no early stop). Repeats of several backends are interleaved. Peak memory: "
            "`torch.cuda.max_memory_allocated` on CUDA, the process RSS peak on CPU, less what the other "
            "backends' models hold. Decode BW: bytes of weights and KV cache read per step / TPOT / peak "
            "bandwidth; prefill FLOP/s: (text prefill + vision encoder FLOPs) / TTFT / peak FLOP/s."]
    if charts:
        out += ["", "## Charts", ""] + [f"![{k}]({v})" for k, v in charts.items()]
    return "\n".join(out) + "\n"


def _backends(rows: Sequence[dict]) -> list[str]:
    """One line per backend: its attention implementation, CUDA-graph decode and compile state."""
    seen: dict[str, dict] = {}
    for r in rows:
        if not r.get("error"):
            seen.setdefault(r["backend"], r)
    if not seen:
        return []
    def state(v: object) -> str:
        return "on" if v else "off" if v is not None else "?"
    return ["Backends: " + "; ".join(f"{name} (attention {r.get('attention') or '?'}, CUDA-graph decode "
                                     f"{state(r.get('fast'))}, compile {state(r.get('compile'))})"
                                     for name, r in seen.items())]


def _speedup(native: dict, other: dict, key: str, rate: bool) -> str:
    a, b = native.get(key), other.get(key)
    if not a or not b:
        return "–"
    return f"{(a / b if rate else b / a):.2f}×"


def _ratios(group: Sequence[dict]) -> list[str]:
    """native / baseline ratios per batch size, when both ran."""
    ok = [r for r in group if not r.get("error")]
    native = {r["batch_size"]: r for r in ok if r["backend"] == "native"}
    lines = []
    for r in ok:
        n = native.get(r["batch_size"])
        if r["backend"] == "native" or n is None:
            continue
        lines.append(f"| {r['backend']} | {r['batch_size']} | {_speedup(n, r, 'ttft_ms', False)} | "
                     f"{_speedup(n, r, 'prefill_tokens_per_s', True)} | "
                     f"{_speedup(n, r, 'decode_tokens_per_s', True)} | {_speedup(n, r, 'latency_ms', False)} |")
    if not lines:
        return []
    return ["", "Native speed-up over the baseline (above 1× is native faster):", "",
            "| baseline | batch | TTFT | prefill tok/s | decode tok/s | latency |", "|---|---|---|---|---|---|",
            *lines]


def write_charts(rows: Sequence[dict], out_dir: Path) -> dict[str, str]:
    """throughput.png (prefill and decode tokens/s vs batch) and latency.png (TTFT and TPOT vs batch): medians
    with the repeats' min-max as error bars, y axes from 0 in their units, x ticks at the batch sizes run."""
    from qwen3vl_eval.report.charts import line_panels

    ok = [r for r in rows if not r.get("error")]
    if not ok:
        return {}
    keys = ("prefill_tokens_per_s", "decode_tokens_per_s", "ttft_ms", "tpot_ms")
    series: dict[str, dict[str, tuple[list, list, list]]] = {k: {} for k in keys}
    multi_model = len({r.get("model") for r in ok}) > 1
    multi_work = len(_group(ok)) > len({r.get("model") for r in ok})
    for r in sorted(ok, key=lambda r: r["batch_size"]):
        label = r["backend"]
        if multi_model:
            label = f"{r.get('model')} {label}"
        if multi_work:
            label += f" ({_workload(r)})"
        for key, s in series.items():
            xs, ys, spans = s.setdefault(label, ([], [], []))
            xs.append(r["batch_size"])
            ys.append(r.get(key))
            lo, hi = r.get(f"{key}_min"), r.get(f"{key}_max")
            spans.append((lo, hi) if lo is not None and hi is not None else None)
    foot = footer(ok)
    repeats = ", ".join(sorted({str(r.get("repeats")) for r in ok if r.get("repeats")})) or "?"
    bars = f"medians; bars: min–max over {repeats} repeats"
    line_panels(out_dir / "throughput.png", [("Prefill", "prefill tokens/s", series["prefill_tokens_per_s"]),
                                             ("Decode", "decode tokens/s", series["decode_tokens_per_s"])],
                xlabel="batch size (conversations)", footer=foot, title=f"Throughput vs batch size ({bars})")
    line_panels(out_dir / "latency.png", [("Time to first token", "TTFT (ms)", series["ttft_ms"]),
                                          ("Time per output token", "TPOT (ms per token)", series["tpot_ms"])],
                xlabel="batch size (conversations)", footer=foot, title=f"Latency vs batch size ({bars})")
    return {"throughput": "throughput.png", "latency": "latency.png"}


def write_outputs(rows: Sequence[dict], out_dir: Path, *, charts: bool = True) -> Path:
    """bench.json, report.md and the charts in `out_dir`; returns the report path."""
    from qwen3vl_eval.report.files import write_json, write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "bench.json", list(rows))
    made = write_charts(rows, out_dir) if charts else {}
    report = out_dir / "report.md"
    write_text(report, render_report(rows, made))
    return report
