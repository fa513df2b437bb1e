"""Rooflines from the model's own config: parameter counts, bytes read per decode step, FLOPs of the prefill and
of the vision tower, datasheet device peaks, and the utilisation fields of a bench row. One implementation for
`bench` and `benchmarks/moe_bench.py`.

Parameter counts come from the model's own key tree (`qwen3vl_eval.model.weights.checkpoint_shapes`, built on
the meta device), so they follow the model code. Decode bytes assume uniform routing for MoE layers: a batch of
B tokens touches, in expectation, E * (1 - (1 - K/E)^B) distinct experts per layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from qwen3vl_eval.model.config import Qwen3VLConfig


@dataclass(frozen=True)
class DevicePeak:
    """Datasheet peaks: memory bandwidth (GB/s), dense bf16/fp16 tensor-core and plain fp32 TFLOP/s."""

    name: str
    bandwidth_gbs: float
    bf16_tflops: float
    fp32_tflops: float

    def tflops(self, dtype: torch.dtype) -> float:
        return self.fp32_tflops if dtype == torch.float32 else self.bf16_tflops


# Matched in order against the lower-cased `torch.cuda.get_device_name()`; the first pattern found wins.
DEVICE_PEAKS: list[tuple[str, DevicePeak]] = [
    ("h200", DevicePeak("H200 SXM", 4800, 989, 67)),
    ("h100 nvl", DevicePeak("H100 NVL", 3900, 835, 60)),
    ("h100 pcie", DevicePeak("H100 PCIe", 2000, 756, 51)),
    ("h100", DevicePeak("H100 SXM", 3350, 989, 67)),
    ("a100 80gb pcie", DevicePeak("A100 80GB PCIe", 1935, 312, 19.5)),
    ("a100-sxm4-80gb", DevicePeak("A100 SXM 80GB", 2039, 312, 19.5)),
    ("a100", DevicePeak("A100 40GB", 1555, 312, 19.5)),
    ("l40s", DevicePeak("L40S", 864, 362, 91.6)),
    ("l4", DevicePeak("L4", 300, 121, 30.3)),
    ("a10", DevicePeak("A10", 600, 125, 31.2)),
    ("rtx 4090", DevicePeak("RTX 4090", 1008, 165, 82.6)),
]


def device_peak(device_name: str, *, bandwidth_gbs: float | None = None,
                tflops: float | None = None) -> DevicePeak | None:
    """Peaks for a CUDA device name, with either figure overridden; None when unknown and not overridden."""
    low = device_name.lower()
    known = next((p for pat, p in DEVICE_PEAKS if pat in low), None)
    if known is None and (bandwidth_gbs is None or tflops is None):
        return None
    known = known or DevicePeak(device_name, 0.0, 0.0, 0.0)
    return DevicePeak(known.name, bandwidth_gbs or known.bandwidth_gbs, tflops or known.bf16_tflops,
                      tflops or known.fp32_tflops)


# ------------------------------------------------------------------------------------------------ parameters


@dataclass(frozen=True)
class ParamCounts:
    """Parameters by role. `attention`: q/k/v/o projections, q/k norms and both layer norms of every layer;
    `router`: the MoE gates; `dense_mlp`: gate/up/down of dense layers; `experts`: every expert of every MoE
    layer; `lm_head`: the output matrix (the embedding table when tied)."""

    vision: int
    embed: int
    lm_head: int
    attention: int
    router: int
    dense_mlp: int
    experts: int
    final_norm: int
    moe_layers: int
    total: int  # every parameter, a tied lm_head once

    @property
    def text_dense(self) -> int:
        """Text weights every token reads, except the embedding table, lm_head and experts."""
        return self.attention + self.router + self.dense_mlp + self.final_norm


@lru_cache(maxsize=32)
def param_counts(config: Qwen3VLConfig) -> ParamCounts:
    """Count the model's parameters by role from its checkpoint key tree."""
    from qwen3vl_eval.model.weights import checkpoint_shapes

    shapes = checkpoint_shapes(config)
    n = dict.fromkeys(("vision", "embed", "lm_head", "attention", "router", "dense_mlp", "experts", "final_norm"), 0)
    for key, shape in shapes.items():
        size = math.prod(shape)
        if key.startswith("model.visual."):
            n["vision"] += size
        elif key.endswith("embed_tokens.weight"):
            n["embed"] += size
        elif key == "lm_head.weight":
            n["lm_head"] += size
        elif ".mlp.experts." in key:
            n["experts"] += size
        elif key.endswith(".mlp.gate.weight"):
            n["router"] += size
        elif ".mlp." in key:
            n["dense_mlp"] += size
        elif ".layers." in key:
            n["attention"] += size
        else:
            n["final_norm"] += size
    if config.tie_word_embeddings:
        n["lm_head"] = n["embed"]
    t = config.text
    moe_layers = sum(t.is_moe_layer(i) for i in range(t.num_hidden_layers)) if t.num_experts else 0
    return ParamCounts(**n, moe_layers=moe_layers, total=sum(math.prod(s) for s in shapes.values()))


def experts_touched(config: Qwen3VLConfig, batch_size: int) -> float:
    """Expected distinct experts per MoE layer for `batch_size` tokens under uniform routing (0 for dense)."""
    t = config.text
    if not t.num_experts:
        return 0.0
    return t.num_experts * (1 - (1 - t.num_experts_per_tok / t.num_experts) ** batch_size)


def decode_params(config: Qwen3VLConfig, batch_size: int = 1) -> dict[str, float]:
    """Parameters read by one decode step of `batch_size` rows, by role: `attention`, `router`, `dense_mlp`,
    the `experts` touched, `head` (lm_head read once and the final norm), and their `total`. Not counted: the
    vision tower (it does not run while decoding) and the B embedding rows looked up (B x hidden, negligible)."""
    p = param_counts(config)
    t = config.text
    experts = p.experts * experts_touched(config, batch_size) / t.num_experts if t.num_experts else 0.0
    out = {"attention": float(p.attention), "experts": experts, "router": float(p.router),
           "dense_mlp": float(p.dense_mlp),
           "head": float(p.lm_head + p.final_norm)}
    out["total"] = sum(out.values())
    return out


def kv_bytes(config: Qwen3VLConfig, *, context: float, batch_size: int, dtype_bytes: int) -> float:
    """Bytes of the K and V cache of `context` tokens for `batch_size` rows."""
    t = config.text
    return 2 * t.num_hidden_layers * t.num_key_value_heads * t.head_dim * context * batch_size * dtype_bytes


def decode_bytes_per_step(config: Qwen3VLConfig, *, batch_size: int, context: float, dtype_bytes: int) -> float:
    """Bytes read from device memory by one decode step: the weights of `decode_params` plus the KV cache of
    `context` tokens per row."""
    weights = decode_params(config, batch_size)["total"] * dtype_bytes
    return weights + kv_bytes(config, context=context, batch_size=batch_size, dtype_bytes=dtype_bytes)


def prefill_flops(config: Qwen3VLConfig, *, batch_size: int, tokens: int) -> float:
    """FLOPs of the text prefill: 2 x active non-embedding weights per token (for MoE layers the K chosen
    experts), causal attention (QK^T and AV over the lower triangle), and the lm_head for the last position of
    each row."""
    t = config.text
    p = param_counts(config)
    active = p.text_dense
    if t.num_experts and p.moe_layers:
        active += p.experts * t.num_experts_per_tok / t.num_experts
    attn = 2 * 2 * t.num_hidden_layers * t.num_attention_heads * t.head_dim * tokens * (tokens + 1) / 2
    return batch_size * (2 * active * tokens + attn + 2 * p.lm_head)


def vision_flops(config: Qwen3VLConfig, grids: Sequence[Sequence[int]], batch_size: int) -> float:
    """FLOPs of the vision tower for one row's grids (t, h, w), times `batch_size`: 2 x weights per patch
    plus attention within each frame (t segments of h*w patches)."""
    v = config.vision
    p = param_counts(config)
    patches = sum(t * h * w for t, h, w in grids)
    attn = sum(t * 4 * (h * w) ** 2 * v.hidden_size for t, h, w in grids) * v.depth
    return batch_size * (2 * p.vision * patches + attn)


def add_utilization(row: dict, config: Qwen3VLConfig, *, batch_size: int, new_tokens: int, dtype: torch.dtype,
                    peak: DevicePeak | None, grids: Sequence[Sequence[int]]) -> None:
    """Fill the roofline fields of a bench row (None where a figure is missing): bytes per decode step at the
    mean context, prefill and vision FLOPs, and the fraction of the device peaks the measured times reach."""
    dtype_bytes = torch.empty((), dtype=dtype).element_size()
    context = row["input_tokens"] + new_tokens / 2
    row["decode_bytes_per_step"] = decode_bytes_per_step(config, batch_size=batch_size, context=context,
                                                          dtype_bytes=dtype_bytes)
    row["prefill_flops"] = prefill_flops(config, batch_size=batch_size, tokens=row["input_tokens"])
    row["vision_flops"] = vision_flops(config, grids, batch_size) if grids else None
    row["peak_bandwidth_gbs"] = peak.bandwidth_gbs if peak else None
    row["peak_tflops"] = peak.tflops(dtype) if peak else None
    row["decode_bandwidth_util"] = row["prefill_flops_util"] = row["vision_flops_util"] = None
    if peak is None:
        return
    if row.get("tpot_ms") and peak.bandwidth_gbs:
        row["decode_bandwidth_util"] = row["decode_bytes_per_step"] / (row["tpot_ms"] / 1e3) / (
            peak.bandwidth_gbs * 1e9)
    tf = peak.tflops(dtype) * 1e12
    if row.get("ttft_ms") and tf:
        work = row["prefill_flops"] + (row["vision_flops"] or 0.0)
        row["prefill_flops_util"] = work / (row["ttft_ms"] / 1e3) / tf
    if row.get("vision_ms") and row["vision_flops"] and tf:
        row["vision_flops_util"] = row["vision_flops"] / (row["vision_ms"] / 1e3) / tf
