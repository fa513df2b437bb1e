"""Prefill speed on the CPU: our model against transformers', same checkpoint, same prompt, one process, the
repeats interleaved (native, hf, native, hf, ...) so that load from other processes hits both sides alike.

    PYTHONPATH=. /work/venvs/gold/bin/python benchmarks/prefill_cpu.py --model tiny-small --tokens 2048 \
        --repeats 5 --out reports/cpu/<date>/prefill_2048.json

Two measurements per side, each as wall time and as the process's CPU time (all threads: on a machine shared
with other jobs the wall time swings with their load, the CPU time much less), medians over the repeats (min
and max kept):
* `forward_ms`: one forward over the prompt that fills a KV cache and returns the last position's logits
  (ours: `generate.prefill` into a fresh static cache; transformers: `model(..., use_cache=True,
  logits_to_keep=1)` into a fresh DynamicCache).
* `ttft_ms`: `generate` of one greedy token (ours: `generate.generate`; transformers: `model.generate`).
The prompt is random text tokens (no padding, batch 1 unless --batch); weights are the checkpoint's.
Needs the golden environment (transformers); exit 2 without it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch


def _timed(fn) -> tuple[float, float]:
    """(wall ms, CPU ms of this process, all threads) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-small", help="checkpoint folder or tiny name (default tiny-small)")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, help="JSON file for the results")
    args = ap.parse_args(argv)
    from qwen3vl_eval.backends import GOLDEN_HINT

    try:
        import transformers
    except ImportError:
        print(f"prefill_cpu: {GOLDEN_HINT}", file=sys.stderr)
        return 2
    from qwen3vl_eval.checkpoints.hub import resolve_model
    from qwen3vl_eval.model.generate import generate, prefill
    from qwen3vl_eval.model.kv_cache import allocate_caches
    from qwen3vl_eval.model.sampling import GenerationParams
    from qwen3vl_eval.model.weights import load_model
    from qwen3vl_eval.runtime.provenance import software_versions

    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model(args.model)
    dtype = torch.float32
    ours = load_model(path, device="cpu", dtype=dtype)
    hf = transformers.AutoModelForImageTextToText.from_pretrained(str(path), dtype=dtype).eval()
    hf.generation_config.eos_token_id = None
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 4000, (args.batch, args.tokens), generator=g)
    mask = torch.ones_like(ids)
    params = GenerationParams(max_new_tokens=1, temperature=0.0, ignore_eos=True)

    @torch.inference_mode()
    def native_forward():
        cache = allocate_caches(ours.config.text, args.batch, args.tokens + 1, dtype=dtype, device="cpu")
        return prefill(ours, ids, mask, cache)[0]

    @torch.inference_mode()
    def hf_forward():
        return hf(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1).logits[:, -1]

    @torch.inference_mode()
    def native_ttft():
        return generate(ours, ids, mask, params)

    @torch.inference_mode()
    def hf_ttft():
        return hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=1, min_new_tokens=1,
                           do_sample=False, pad_token_id=0)

    diff = (native_forward() - hf_forward()).abs().max().item()  # same checkpoint, same maths
    names = ("native_forward", "hf_forward", "native_ttft", "hf_ttft")
    fns = dict(zip(names, (native_forward, hf_forward, native_ttft, hf_ttft)))
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.warmup + args.repeats):
        for name, fn in fns.items():
            w, c = _timed(fn)
            if r >= args.warmup:
                wall[name].append(w)
                cpu[name].append(c)
        if r >= args.warmup:
            print(f"[prefill_cpu] repeat {r + 1 - args.warmup}: "
                  + ", ".join(f"{k} {wall[k][-1]:.0f} ms (cpu {cpu[k][-1]:.0f})" for k in names), file=sys.stderr)

    def stats(times: dict[str, list[float]]) -> dict:
        med = {k: statistics.median(v) for k, v in times.items()}
        return {"median_ms": med, "min_ms": {k: min(v) for k, v in times.items()},
                "max_ms": {k: max(v) for k, v in times.items()}, "all_ms": times,
                "speedup_forward": med["hf_forward"] / med["native_forward"],
                "speedup_ttft": med["hf_ttft"] / med["native_ttft"]}

    result = {
        "model": args.model, "checkpoint": str(path), "dtype": "float32", "device": "cpu", "batch": args.batch,
        "prompt_tokens": args.tokens, "repeats": args.repeats, "warmup": args.warmup,
        "threads": torch.get_num_threads(), "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": software_versions(with_transformers=True), "max_abs_logit_diff": diff,
        "wall": stats(wall), "cpu": stats(cpu),
    }
    print(json.dumps({k: {m: result[k][m] for m in ("median_ms", "speedup_forward", "speedup_ttft")}
                      for k in ("wall", "cpu")} | {"max_abs_logit_diff": diff}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
