"""MoE decode benchmark: batch-1 decode tokens/s of a MoE preset with random weights, against the memory-bandwidth
bound of the parameters a decoded token actually reads (the ACTIVE ones: attention, router, the K chosen experts
per layer, lm_head), optionally against transformers on the same config.

    python benchmarks/moe_bench.py --preset 30B-A3B --json moe_bench.json               # GPU: bf16, CUDA graphs
    python benchmarks/moe_bench.py --preset 30B-A3B --layers 12 --max-seconds 90 --json out.json
    python benchmarks/moe_bench.py --preset tiny-moe --json out.json                    # CPU smoke check

What runs, in order, each phase skipped (and said so in the JSON) once `--max-seconds` is spent:
1. `moe_layers`: the MoE blocks alone, one decode token through every MoE layer, per dispatch path (`--impl`),
   replayed from a CUDA graph on CUDA; compared with the bound for the router + K experts' bytes.
2. `native`: our `generate` (greedy, no early stop) with `qwen3vl_eval.model.cuda_graph.CudaGraphDecoder` on CUDA
   (eager on the CPU), per dispatch path; TTFT, decode tokens/s, TPOT, peak memory, fraction of the bandwidth bound.
3. `hf` (when transformers imports and `--hf` is not `off`): our model is freed first, then transformers'
   `Qwen3VLMoeForConditionalGeneration` is built from the same config with its own random init and timed with
   `generate` (its default experts implementation unless `--hf-experts` says otherwise).
The JSON is rewritten after every phase, so a run killed by a timeout still leaves what it measured.

Bandwidth: the device's nominal peak (`qwen3vl_eval.bench.rooflines.device_peak`, from its name) and a measured one (a
large device-to-device copy, read + write bytes over time); each bound is bytes per token / bandwidth. Bytes per
token: the parameters a decode step reads (`qwen3vl_eval.bench.rooflines.decode_params`, per token of the batch) x
dtype size, plus the KV cache read at the mean context.

Legend: E experts, K experts per token, H hidden, I moe intermediate, L layers, B batch, P prompt tokens.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qwen3vl_eval.bench.rooflines import decode_params, device_peak, kv_bytes, param_counts  # noqa: E402
from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS  # noqa: E402
from qwen3vl_eval.model.config import Qwen3VLConfig  # noqa: E402
from qwen3vl_eval.model.generate import generate  # noqa: E402
from qwen3vl_eval.model.moe import IMPLS, SparseMoeBlock, choose_impl  # noqa: E402
from qwen3vl_eval.model.sampling import GenerationParams  # noqa: E402
from qwen3vl_eval.model.weights import build_model  # noqa: E402
from qwen3vl_eval.runtime.timing import (  # noqa: E402
    Timings,
    free,
    measure,
    peak_memory_mb,
    reset_peak_memory,
    synchronize,
)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


# ------------------------------------------------------------------------------------------------ arithmetic
def measured_bandwidth_gbs(device: torch.device, mib: int) -> float | None:
    """Read + write bytes per second of a large same-device copy (best of 5)."""
    try:
        n = mib * 2**20 // 4
        a = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
        b = torch.empty_like(a)
        best = min(measure(lambda: b.copy_(a), warmup=1, repeats=5, device=device)) / 1e3
        return 2 * n * 4 / best / 1e9
    except (RuntimeError, torch.OutOfMemoryError):
        return None


def nominal_bandwidth_gbs(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return platform.processor() or "cpu", None
    name = torch.cuda.get_device_name(device)
    peak = device_peak(name)
    return name, peak.bandwidth_gbs if peak else None


# ------------------------------------------------------------------------------------------------ helpers
def _set_impl(model: torch.nn.Module, impl: str) -> None:
    for m in model.modules():
        if isinstance(m, SparseMoeBlock):
            m.experts.impl = impl


def _resolved_impl(model: torch.nn.Module, device: torch.device, dtype: torch.dtype, tokens: int) -> str:
    """The path `auto` takes for `tokens` tokens on this model (for the report)."""
    block = next(m for m in model.modules() if isinstance(m, SparseMoeBlock))
    xs = torch.empty(tokens * block.top_k, block.gate.in_features, device=device, dtype=dtype)
    return choose_impl(xs, block.experts.gate_up_proj, block.experts.down_proj)


def _bounds(row: dict, nbytes: float, bw: dict[str, float | None], rate: float | None, tokens: int = 1) -> None:
    """Add bound_tokens_per_s_{nominal,measured} and the fraction of each the measured rate reaches."""
    for kind, gbs in bw.items():
        if gbs:
            bound = gbs * 1e9 / nbytes * tokens
            row[f"bound_tokens_per_s_{kind}"] = bound
            row[f"fraction_of_bound_{kind}"] = rate / bound if rate else None


class Budget:
    def __init__(self, seconds: float) -> None:
        self.t0 = time.perf_counter()
        self.seconds = seconds

    @property
    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)


# ------------------------------------------------------------------------------------------------ phases
@torch.inference_mode()
def bench_moe_layers(model: torch.nn.Module, impl: str, device: torch.device, dtype: torch.dtype,
                     repeats: int) -> dict[str, Any]:
    """One decode token through every MoE block of the model in turn (no attention), timed; CUDA graph on CUDA."""
    blocks = [m for m in model.modules() if isinstance(m, SparseMoeBlock)]
    x = torch.randn(1, 1, blocks[0].gate.in_features, device=device, dtype=dtype)  # [B=1, 1, H]

    def run() -> torch.Tensor:
        y = x
        for b in blocks:
            y = b(y)
        return y

    _set_impl(model, impl)
    fn = run
    if device.type == "cuda":
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                run()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run()
        fn = graph.replay  # type: ignore[assignment]
    def ten() -> None:
        for _ in range(10):
            fn()

    best = min(measure(ten, warmup=1, repeats=max(repeats, 3), device=device)) / 10 / 1e3
    return {"backend": "native_moe_layers", "impl": impl, "cuda_graph": device.type == "cuda",
            "moe_layers": len(blocks), "ms_per_token": best * 1e3, "tokens_per_s": 1 / best}


@torch.inference_mode()
def bench_native(model: torch.nn.Module, impl: str, args: argparse.Namespace, device: torch.device,
                 budget: Budget) -> dict[str, Any]:
    _set_impl(model, impl)
    B, P, N = args.batch_size, args.prompt_tokens, args.new_tokens
    vocab = model.config.text.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, min(vocab, 150000), (B, P), generator=g).to(device)
    mask = torch.ones_like(ids)
    params = GenerationParams(max_new_tokens=N, ignore_eos=True)
    step_fn = None
    if device.type == "cuda" and not args.no_graph:
        from qwen3vl_eval.model.cuda_graph import CudaGraphDecoder
        step_fn = CudaGraphDecoder(model)
    runs: list[dict[str, Any]] = []
    for i in range(args.warmup + max(args.repeats, 1)):
        if runs and budget.left < 2 * runs[-1]["wall_s"]:
            break
        reset_peak_memory(device)
        timings = Timings()
        t0 = time.perf_counter()
        outs = generate(model, ids, mask, params, step_fn=step_fn, timings=timings)
        wall = time.perf_counter() - t0
        assert all(len(o.token_ids) == N for o in outs), [len(o.token_ids) for o in outs]
        if i >= args.warmup:  # warm-up runs (graph capture, allocator) are not timed
            runs.append({"prefill_s": timings.prefill, "decode_s": timings.decode, "wall_s": wall,
                         "peak": peak_memory_mb(device)[0]})
    if not runs:
        raise RuntimeError("no timed run fitted in the time budget")
    timed = runs
    best = min(timed, key=lambda r: r["decode_s"])
    steps = max(N - 1, 1)  # N tokens: the first comes from the prefill logits, N - 1 decode forwards
    decode_rate = B * steps / best["decode_s"] if best["decode_s"] > 0 else None
    return {"backend": "native", "impl": impl, "cuda_graph": step_fn is not None, "batch_size": B,
            "prompt_tokens": P, "new_tokens": N, "repeats": len(timed),
            "ttft_ms": best["prefill_s"] * 1e3, "prefill_tokens_per_s": B * P / best["prefill_s"],
            "decode_tokens_per_s": decode_rate, "tpot_ms": best["decode_s"] / steps * 1e3,
            "peak_memory_mb": best["peak"],
            "decode_tokens_per_s_all": [B * steps / r["decode_s"] for r in timed if r["decode_s"] > 0]}


def bench_hf(config: Qwen3VLConfig, args: argparse.Namespace, device: torch.device, dtype: torch.dtype,
             budget: Budget) -> dict[str, Any]:
    """transformers through the backend contract (`HFBackend.random` on a weightless preset folder, a text
    prompt of --prompt-tokens filler tokens in the chat template); prefill and decode times come from its
    `Timings` record, decode timed inside the generation loop."""
    import tempfile

    import transformers

    from qwen3vl_eval.backends.hf import HFBackend
    from qwen3vl_eval.bench.inputs import BenchConfig, BenchInputs
    from qwen3vl_eval.bench.models import preset_folder
    from qwen3vl_eval.processor import Processor

    with tempfile.TemporaryDirectory() as tmp:
        folder = preset_folder(config, Path(tmp) / "preset")
        kwargs = {"experts_implementation": args.hf_experts} if args.hf_experts else {}
        t0 = time.perf_counter()
        backend = HFBackend.random(folder, name=args.preset, device=device, dtype=dtype, model_kwargs=kwargs)
        build_s = time.perf_counter() - t0
        experts_impl = getattr(backend.model.config.text_config, "_experts_implementation", None)
        B, P = args.batch_size, args.prompt_tokens
        with BenchInputs(Processor.from_pretrained(folder), workdir=Path(tmp)) as inputs:
            convs = inputs.conversations(BenchConfig(B, P, args.new_tokens))

            def timed(n: int) -> tuple[Timings, int]:
                before = backend.timings.copy()
                replies = backend.chat(convs, GenerationParams(max_new_tokens=n, temperature=0.0, ignore_eos=True))
                assert all(len(r.token_ids) == n for r in replies), [len(r.token_ids) for r in replies]
                return backend.timings - before, max(r.prompt_tokens for r in replies)

            reset_peak_memory(device)
            warm, _ = timed(4)  # warm-up, and the per-token estimate for the budget
            per_token = max(warm.decode / 3, 1e-6)
            # as many new tokens as fit in what is left of the budget (keep a margin), at most --new-tokens
            n = int(min(args.new_tokens, max(4, (budget.left * 0.5 - warm.prefill) / per_token)))
            spent, input_tokens = timed(n)
        peak = peak_memory_mb(device)[0]
        backend.close()
    steps = n - 1
    decode_s = max(spent.decode, 1e-9)
    ttft_s = spent.vision + spent.prefill
    return {"backend": "hf", "impl": f"transformers {transformers.__version__} experts={experts_impl}",
            "cuda_graph": False, "batch_size": B, "prompt_tokens": P, "input_tokens": input_tokens,
            "new_tokens": n, "repeats": 1, "ttft_ms": ttft_s * 1e3, "prefill_tokens_per_s": B * input_tokens / ttft_s,
            "decode_tokens_per_s": B * steps / decode_s, "tpot_ms": decode_s / steps * 1e3,
            "peak_memory_mb": peak, "build_s": build_s}


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="30B-A3B", help="a MoE preset (30B-A3B, 235B-A22B) or tiny-moe")
    p.add_argument("--layers", type=int, default=None, help="keep only the first N decoder layers")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", *DTYPES])
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--impl", default="auto", help=f"comma list of MoE dispatch paths ({', '.join(IMPLS)})")
    p.add_argument("--no-graph", action="store_true", help="eager decode on CUDA (no CudaGraphDecoder)")
    p.add_argument("--hf", default="auto", choices=["auto", "on", "off"],
                   help="transformers comparison: auto = when it imports")
    p.add_argument("--hf-experts", default=None, help="transformers experts_implementation (default: its own)")
    p.add_argument("--max-seconds", type=float, default=240.0, help="time budget; later phases are skipped")
    p.add_argument("--bandwidth-mib", type=int, default=1024, help="size of the bandwidth-measuring copy")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    budget = Budget(args.max_seconds)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    dtype = DTYPES[args.dtype] if args.dtype != "auto" else (torch.bfloat16 if device.type == "cuda"
                                                             else torch.float32)
    config = TINY_CONFIGS["moe"] if args.preset == "tiny-moe" else Qwen3VLConfig.from_name(args.preset)
    if not config.is_moe:
        p.error(f"--preset {args.preset} is not a MoE model")
    if args.layers:
        config = replace(config, text=replace(config.text, num_hidden_layers=min(args.layers,
                                                                                 config.text.num_hidden_layers)))
    impls = [s.strip() for s in args.impl.split(",") if s.strip()]
    for impl in impls:
        if impl not in IMPLS:
            p.error(f"--impl {impl!r}: known {', '.join(IMPLS)}")

    t = config.text
    dtype_bytes = torch.empty((), dtype=dtype).element_size()
    act = decode_params(config, args.batch_size)
    name, nominal = nominal_bandwidth_gbs(device)
    measured = measured_bandwidth_gbs(device, args.bandwidth_mib if device.type == "cuda" else 256)
    bw = {"nominal": nominal, "measured": measured}
    context = args.prompt_tokens + args.new_tokens / 2
    kv_token = kv_bytes(config, context=context, batch_size=1, dtype_bytes=dtype_bytes)
    token_bytes = act["total"] * dtype_bytes / args.batch_size + kv_token
    moe_bytes = (act["experts"] + act["router"]) * dtype_bytes  # the MoE blocks alone, per step
    report: dict[str, Any] = {
        "preset": args.preset, "layers": t.num_hidden_layers, "moe_layers": sum(map(t.is_moe_layer,
                                                                                     range(t.num_hidden_layers))),
        "experts": t.num_experts, "top_k": t.num_experts_per_tok, "moe_intermediate_size": t.moe_intermediate_size,
        "device": str(device), "device_name": name, "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__, "batch_size": args.batch_size,
        "params_total": param_counts(config).total, "params_active_per_step": act,
        "bytes_per_token": token_bytes, "kv_bytes_per_token": kv_token,
        "bandwidth_gbs": bw, "rows": [], "skipped": [], "errors": [],
    }
    for kind, gbs in bw.items():
        report[f"bound_tokens_per_s_{kind}"] = gbs * 1e9 / token_bytes if gbs else None

    def write() -> None:
        report["elapsed_s"] = time.perf_counter() - budget.t0
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")

    write()
    t0 = time.perf_counter()
    model = build_model(config, device=device, dtype=dtype)
    synchronize(device)
    report["build_s"] = time.perf_counter() - t0
    report["auto_impl"] = {"decode": _resolved_impl(model, device, dtype, args.batch_size),
                           "prefill": _resolved_impl(model, device, dtype, args.batch_size * args.prompt_tokens)}
    write()

    for impl in impls:  # 1. the MoE blocks alone
        if budget.left < 10:
            report["skipped"].append(f"moe_layers {impl}: budget spent")
            continue
        try:
            row = bench_moe_layers(model, impl, device, dtype, args.repeats)
            _bounds(row, moe_bytes / args.batch_size, bw, row["tokens_per_s"])
            report["rows"].append(row)
        except Exception as e:  # noqa: BLE001 -- record and carry on with the next phase
            report["errors"].append(f"moe_layers {impl}: {type(e).__name__}: {e}")
        write()
    for impl in impls:  # 2. our generate
        if budget.left < 15:
            report["skipped"].append(f"native {impl}: budget spent")
            continue
        try:
            row = bench_native(model, impl, args, device, budget)
            _bounds(row, token_bytes, bw, row["decode_tokens_per_s"], tokens=args.batch_size)
            report["rows"].append(row)
        except Exception as e:  # noqa: BLE001
            report["errors"].append(f"native {impl}: {type(e).__name__}: {e}")
        write()
    from qwen3vl_eval.model import moe
    report["grouped_mm_check"] = {f"{dev} {str(dt).removeprefix('torch.')}": ok
                                  for (dev, dt), ok in moe._GROUPED_CHECKED.items()}
    _set_impl(model, "auto")
    del model
    free(device)

    want_hf = args.hf == "on" or (args.hf == "auto" and _importable("transformers"))
    if want_hf:  # 3. transformers
        if budget.left < 30:
            report["skipped"].append("hf: budget spent")
        else:
            try:
                row = bench_hf(config, args, device, dtype, budget)
                _bounds(row, token_bytes, bw, row["decode_tokens_per_s"], tokens=args.batch_size)
                report["rows"].append(row)
            except Exception as e:  # noqa: BLE001
                report["errors"].append(f"hf: {type(e).__name__}: {e}")
            free(device)
    else:
        report["skipped"].append("hf: transformers not importable" if args.hf == "auto" else "hf: --hf off")
    write()
    print(summary(report))
    return 1 if report["errors"] and not report["rows"] else 0


def _importable(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


def summary(report: dict) -> str:
    lines = [f"MoE decode bench: {report['preset']} ({report['layers']} layers, E={report['experts']}, "
             f"K={report['top_k']}) on {report['device_name']} {report['dtype']}, torch {report['torch']}",
             f"params total {report['params_total'] / 1e9:.3f} B, active per token "
             f"{report['params_active_per_step']['total'] / 1e9:.3f} B, "
             f"{report['bytes_per_token'] / 1e9:.3f} GB/token; "
             f"bandwidth nominal {report['bandwidth_gbs']['nominal']} GB/s, measured "
             f"{_n(report['bandwidth_gbs']['measured'], 0)} GB/s; bound {_n(report['bound_tokens_per_s_nominal'])} "
             f"(nominal) / {_n(report['bound_tokens_per_s_measured'])} (measured) tok/s; auto path "
             f"{report.get('auto_impl')}"]
    for r in report["rows"]:
        rate = r.get("decode_tokens_per_s", r.get("tokens_per_s"))
        frac = r.get("fraction_of_bound_measured")
        lines.append(f"  {r['backend']:<18} {r['impl']:<40} graph={r['cuda_graph']!s:<5} "
                     f"{_n(rate)} tok/s  ({_n(frac * 100 if frac else None)}% of measured-bandwidth bound)"
                     + (f"  ttft {_n(r['ttft_ms'])} ms" if "ttft_ms" in r else ""))
    for s in report["skipped"] + report["errors"]:
        lines.append(f"  note: {s}")
    return "\n".join(lines)


def _n(v: float | None, nd: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


if __name__ == "__main__":
    sys.exit(main())
