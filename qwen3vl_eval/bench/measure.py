"""Measurement through the backend contract: every repeat is one `Backend.chat` call on the configuration's
conversations (greedy, exactly N new tokens), and its stage times are what the call added to the backend's
`Timings` record:

- `preprocess_ms`: media decoding, chat template, tokenisation (the backend's own processor)
- `vision_ms`: the vision encoder; `prefill_ms`: the prompt's forward pass to the first token's logits
- `ttft_ms` = vision + prefill; `decode_ms`: every later step, timed inside the generation loop
- `tpot_ms` = decode / (N - 1); `latency_ms` = ttft + decode; `e2e_ms`: the whole call (preprocessing included),
  timed with CUDA events on CUDA

Derived: `prefill_tokens_per_s` = batch x input tokens / TTFT (visual tokens included; TTFT includes the vision
encoder), `decode_tokens_per_s` = batch x 1000 / TPOT. Every figure is the median over repeats with `_min` /
`_max` beside it; a row warns when a figure's repeats spread more than `SPREAD_LIMIT` (max - min over median).

With several backends, all are built first and every repeat runs each backend in turn (interleaved), so a
drift of the machine (thermals, other load) hits all of them alike. Peak memory is each backend's own: the
peak during its calls less the memory the other backends hold (measured when each was built).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from qwen3vl_eval.backends.base import Backend
from qwen3vl_eval.bench.inputs import BenchConfig, BenchInputs
from qwen3vl_eval.bench.rooflines import DevicePeak, add_utilization
from qwen3vl_eval.model.config import Qwen3VLConfig
from qwen3vl_eval.model.sampling import GenerationParams
from qwen3vl_eval.report.stats import summarize
from qwen3vl_eval.runtime.device import dtype_name
from qwen3vl_eval.runtime.provenance import device_name, software_versions
from qwen3vl_eval.runtime.timing import Stopwatch, Timings, free, peak_memory_mb, reset_peak_memory, resident_memory_mb

# Keys of every bench JSON row (CONTRACTS section 3 names the first nine); None where not measured.
ROW_KEYS = ("batch_size", "prompt_tokens", "new_tokens", "ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s",
            "tpot_ms", "vision_ms", "peak_memory_mb", "preprocess_ms", "prefill_ms", "decode_ms", "latency_ms",
            "e2e_ms", "input_tokens", "visual_tokens", "images", "video", "attention", "fast", "compile",
            "warnings")
TIMED = ("preprocess_ms", "vision_ms", "prefill_ms", "ttft_ms", "prefill_tokens_per_s", "decode_ms",
         "decode_tokens_per_s", "tpot_ms", "latency_ms", "e2e_ms")
SPREAD_KEYS = ("preprocess_ms", "vision_ms", "ttft_ms", "tpot_ms", "latency_ms", "e2e_ms")
SPREAD_LIMIT = 0.2


def derive(spent: Timings, *, wall_ms: float, batch_size: int, input_tokens: int, new_tokens: int,
           has_vision: bool) -> dict[str, float | None]:
    """One repeat's figures from what its call added to the `Timings` record (see the module docstring)."""
    ms = {p: getattr(spent, p) * 1e3 for p in ("preprocess", "vision", "prefill", "decode")}
    ttft = ms["vision"] + ms["prefill"]
    out: dict[str, float | None] = {
        "preprocess_ms": ms["preprocess"], "vision_ms": ms["vision"] if has_vision else None,
        "prefill_ms": ms["prefill"], "ttft_ms": ttft, "decode_ms": ms["decode"],
        "prefill_tokens_per_s": batch_size * input_tokens / max(ttft, 1e-6) * 1000.0,
        "latency_ms": ttft + ms["decode"], "e2e_ms": wall_ms, "tpot_ms": None, "decode_tokens_per_s": None,
    }
    if new_tokens > 1 and ms["decode"] > 0:
        tpot = ms["decode"] / (new_tokens - 1)
        out["tpot_ms"] = tpot
        out["decode_tokens_per_s"] = batch_size * 1000.0 / tpot
    return out


def spread_warnings(row: dict[str, Any], limit: float = SPREAD_LIMIT) -> list[str]:
    """A line for each figure of `SPREAD_KEYS` whose repeats spread more than `limit` (max - min over median)."""
    out = []
    for key in SPREAD_KEYS:
        med, lo, hi = row.get(key), row.get(f"{key}_min"), row.get(f"{key}_max")
        if med and lo is not None and hi is not None and (hi - lo) / med > limit:
            out.append(f"{key} repeats spread {100 * (hi - lo) / med:.0f}% (max - min over median "
                       f"{med:,.2f}); the machine may be busy")
    return out


def summarize_repeats(per_repeat: Sequence[dict[str, float | None]]) -> dict[str, float | None]:
    """Median, min and max of each timed figure over the repeats (None where no repeat has it)."""
    row: dict[str, float | None] = {}
    for key in TIMED:
        vals = [r[key] for r in per_repeat if r.get(key) is not None]
        s = summarize(vals) if vals else None
        row[key], row[f"{key}_min"], row[f"{key}_max"] = (s.median, s.min, s.max) if s else (None, None, None)
    return row


def _check(replies: Sequence[Any], cfg: BenchConfig) -> int:
    """The padded prompt length of the call; RuntimeError unless every row got exactly `new_tokens` tokens."""
    counts = [len(r.token_ids) for r in replies]
    if len(replies) != cfg.batch_size or any(n != cfg.new_tokens for n in counts):
        raise RuntimeError(f"backend generated {counts} tokens for {cfg.batch_size} rows, expected exactly "
                           f"{cfg.new_tokens} each (early stop?)")
    return max(r.prompt_tokens for r in replies)


@dataclass
class _Run:
    """One backend under measurement."""

    name: str
    backend: Backend | None
    held_mb: float = 0.0  # memory its model holds, subtracted from the other backends' peaks
    error: str | None = None
    rows: dict[BenchConfig, dict] = field(default_factory=dict)
    repeats: dict[BenchConfig, list[dict]] = field(default_factory=dict)


def bench(backends: Sequence[tuple[str, Callable[[], Backend]]], configs: Sequence[BenchConfig],
          inputs: BenchInputs, *, model: str, model_config: Qwen3VLConfig, device: torch.device,
          dtype: torch.dtype, warmup: int, repeats: int, peak: DevicePeak | None = None,
          log: Callable[[str], None] = print) -> list[dict]:
    """Run every configuration on every (name, factory) backend and return the rows, by backend then
    configuration. A backend that fails to build, or fails on a configuration at run time (out of memory, say),
    gives rows with `error` set and the rest still runs; bad input (InputError) stops the run."""
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    runs: list[_Run] = []
    for name, make in backends:
        log(f"[bench] building the {name} model ...")
        before = resident_memory_mb(device) or 0.0
        try:
            runs.append(_Run(name, make()))
        except RuntimeError as e:
            log(f"[bench]   {name} failed to build: {_err(e)}")
            runs.append(_Run(name, None, error=f"model build failed: {_err(e)}"))
            free(device)
            continue
        runs[-1].held_mb = max(0.0, (resident_memory_mb(device) or 0.0) - before)
    sw = Stopwatch(device)
    try:
        for cfg in configs:
            convs = inputs.conversations(cfg)
            layout = inputs.layout(cfg)
            params = GenerationParams(max_new_tokens=cfg.new_tokens, temperature=0.0, ignore_eos=True)
            live = [r for r in runs if r.backend is not None]
            for run in live:
                log(f"[bench] {run.name} {cfg.short()} ...")
            for i in range(warmup + repeats):
                for run in live:
                    if run.rows.get(cfg, {}).get("error"):
                        continue
                    others = sum(r.held_mb for r in live if r is not run)
                    try:
                        figures, mem = _once(run.backend, convs, params, cfg, sw, device, layout)
                    except RuntimeError as e:  # torch.OutOfMemoryError included
                        run.rows[cfg] = {"error": _err(e)}
                        log(f"[bench]   {run.name} failed: {_err(e)}")
                        free(device)
                        continue
                    if i >= warmup:
                        run.repeats.setdefault(cfg, []).append({**figures, "peak_mb": mem[0] - others,
                                                                "peak_kind": mem[1]})
            for run in live:
                if cfg in run.repeats and not run.rows.get(cfg, {}).get("error"):
                    run.rows[cfg] = _row(run, cfg, layout, model_config, dtype, device, peak, log)
    finally:
        for run in runs:
            if run.backend is not None:
                run.backend.close()
                run.backend = None
        free(device)
    return [_finish_row(run, cfg, model, device, dtype, warmup, repeats, date) for run in runs for cfg in configs]


def _once(backend: Backend, convs: list, params: GenerationParams, cfg: BenchConfig, sw: Stopwatch,
          device: torch.device, layout: dict) -> tuple[dict, tuple[float, str]]:
    before = backend.timings.copy()
    reset_peak_memory(device)
    replies, wall_ms = sw.time(lambda: backend.chat(convs, params))
    mem = peak_memory_mb(device)
    input_tokens = _check(replies, cfg)
    figures = derive(backend.timings - before, wall_ms=wall_ms, batch_size=cfg.batch_size,
                     input_tokens=input_tokens, new_tokens=cfg.new_tokens, has_vision=bool(layout["visual_grids"]))
    return {**figures, "input_tokens": input_tokens}, mem


def _row(run: _Run, cfg: BenchConfig, layout: dict, model_config: Qwen3VLConfig, dtype: torch.dtype,
         device: torch.device, peak: DevicePeak | None, log: Callable[[str], None]) -> dict:
    reps = run.repeats[cfg]
    info = run.backend.info() if run.backend is not None else {}
    row: dict[str, Any] = {"input_tokens": reps[-1]["input_tokens"], "visual_tokens": layout["visual_tokens"],
                           "visual_grids": layout["visual_grids"], **summarize_repeats(reps),
                           "peak_memory_mb": max(r["peak_mb"] for r in reps), "peak_memory_kind": reps[-1]["peak_kind"],
                           "attention": info.get("attention"), "fast": info.get("cuda_graph"),
                           "compile": info.get("compile")}
    if device.type == "cuda":
        add_utilization(row, model_config, batch_size=cfg.batch_size, new_tokens=cfg.new_tokens, dtype=dtype,
                        peak=peak, grids=layout["visual_grids"])
    row["warnings"] = spread_warnings(row) if len(reps) > 1 else []
    log(f"[bench]   {run.name}: ttft {row['ttft_ms']:.2f} ms, decode {_f(row['decode_tokens_per_s'])} tok/s, "
        f"peak {row['peak_memory_mb']:.0f} MiB")
    for w in row["warnings"]:
        log(f"[bench]   warning: {run.name} {cfg.short()}: {w}")
    return row


def _finish_row(run: _Run, cfg: BenchConfig, model: str, device: torch.device, dtype: torch.dtype, warmup: int,
                repeats: int, date: str) -> dict:
    base = {"backend": run.name, "model": model, "device": str(device), "device_name": device_name(device),
            "dtype": dtype_name(dtype), "warmup": warmup, "repeats": repeats,
            "versions": software_versions(with_transformers=run.name == "hf"), "date": date, "error": run.error,
            **dict.fromkeys(ROW_KEYS)}
    return {**base, **cfg.describe(), **run.rows.get(cfg, {})}


def _err(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"


def _f(v: float | None, nd: int = 1) -> str:
    return "–" if v is None else f"{v:,.{nd}f}"
