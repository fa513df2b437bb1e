"""Long-prompt prefill: time, peak memory and FLOP/s of one prefill of a long prompt through the decoder, in
chunks (`generate.prefill`), with no dense [L, S_max] mask anywhere.

    python3 benchmarks/long_prefill.py --preset 8B --tokens 32768 --device cuda --dtype bfloat16
    PYTHONPATH=. python3 benchmarks/long_prefill.py --model tiny-small --tokens 8192 --device cpu --dtype float32

The prompt is random text tokens (batch 1, optionally --pad left-padded slots, so the later chunks also take
the padding-mask path); the decoder does the same work for visual rows apart from DeepStack's additions. Weights:
a preset's shape with random values, or a checkpoint. Prints one JSON row (and writes it with --json): seconds,
tokens/s, peak memory (CUDA allocator peak, or the process's peak RSS on the CPU), causal-prefill FLOPs and,
on a GPU with known peaks, the fraction of its dense FLOP/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help="random weights of a published shape (2B, 8B, ...)")
    src.add_argument("--model", help="checkpoint folder or tiny name")
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--pad", type=int, default=0, help="left-padded slots in the prompt")
    ap.add_argument("--chunk", type=int, default=None, help="prefill chunk (default generate.PREFILL_CHUNK)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from qwen3vl_eval.bench.rooflines import device_peak, prefill_flops
    from qwen3vl_eval.checkpoints.hub import resolve_model
    from qwen3vl_eval.model.config import Qwen3VLConfig
    from qwen3vl_eval.model.generate import PREFILL_CHUNK, prefill
    from qwen3vl_eval.model.kv_cache import allocate_caches
    from qwen3vl_eval.model.weights import build_model, load_model
    from qwen3vl_eval.runtime.provenance import device_name, software_versions
    from qwen3vl_eval.runtime.timing import peak_memory_mb, reset_peak_memory, synchronize

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.preset:
        config = Qwen3VLConfig.from_name(args.preset)
        model = build_model(config, device=device, dtype=dtype)
    else:
        model = load_model(resolve_model(args.model), device=device, dtype=dtype)
        config = model.config
    chunk = args.chunk or PREFILL_CHUNK
    L = args.tokens
    ids = torch.randint(0, min(config.text.vocab_size, 4000), (1, L), device=device)
    mask = torch.ones_like(ids)
    mask[:, : args.pad] = 0
    cuda = device.type == "cuda"

    @torch.inference_mode()
    def once() -> float:
        cache = allocate_caches(config.text, 1, L + 1, dtype=dtype, device=device)
        synchronize(device)
        t0 = time.perf_counter()
        logits = prefill(model, ids, mask, cache, chunk=chunk)[0]
        synchronize(device)
        assert bool(torch.isfinite(logits).all()), "non-finite logits"
        return time.perf_counter() - t0

    once() if args.repeats > 1 else None  # warm-up when there is more than one repeat
    reset_peak_memory(device)
    seconds = min(once() for _ in range(args.repeats))
    peak_mb, peak_kind = peak_memory_mb(device)
    flops = prefill_flops(config, batch_size=1, tokens=L - args.pad)
    peak = device_peak(device_name(device)) if cuda else None
    row = {"model": args.preset or args.model, "device": device_name(device), "dtype": args.dtype, "tokens": L,
           "pad": args.pad, "chunk": chunk, "seconds": seconds, "tokens_per_s": L / seconds,
           "peak_memory_mb": peak_mb, "peak_memory_kind": peak_kind,
           "prefill_tflops": flops / 1e12, "achieved_tflops_per_s": flops / seconds / 1e12,
           "flops_util": flops / seconds / 1e12 / peak.tflops(dtype) if peak else None,
           "versions": software_versions()}
    print(json.dumps(row, indent=1))
    if args.json:
        args.json.write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
