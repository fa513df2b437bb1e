"""Text attention without a dense mask where none is needed.

How the queries of one forward attend is planned once per forward, from host-side facts (the cache slot of the
first query, when the caller knows it, and the rows' left padding), and shared by every decoder layer:

* `causal`: no cached prefix, no padding: SDPA `is_causal` over the new keys, no mask (flash kernels).
* `rows`: no cached prefix, left padding: each row attends causally over its own real slice, no mask (varlen by
  rows); padded query slots get zeros, which nothing reads (real queries never attend to padded keys).
* `prefix`: queries after a cached prefix (a decode step on the CPU, a later chunk of a chunked prefill): the
  keys are cache slots 0..first+S-1 only (length-aware, not all S_max); a mask only where one is needed: the
  padding mask [B, 1, S, kv] when rows are padded, a lower-right causal bias (no tensor on flash-capable
  devices) for S > 1 unpadded queries, nothing for one unpadded query.
* `dense`: the reference: all S_max slots behind `kv_cache.attention_mask_4d` (static shapes for a CUDA graph,
  where the first slot lives on the device).

A single decode query with GQA is folded to [B, H_kv, G, D] over the shared keys (no `enable_gqa`, which the
memory-efficient CUDA kernel refuses); a masked multi-query call with GQA on CUDA expands the keys instead.

Legend: B batch, H query heads, H_kv key/value heads, G = H / H_kv, S queries, D head dim, T prompt slots.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qwen3vl_eval.model.kv_cache import attention_mask_4d


@dataclass(frozen=True)
class AttentionPlan:
    kind: str  # "causal" | "rows" | "prefix" | "dense"
    pads: tuple[int, ...] = ()  # rows: left padding of each row, clipped to S
    kv_len: int = 0  # prefix: key slots read (first + S)
    mask: Any = None  # prefix/dense: True = attend, [B|1, 1, S, kv]; or a torch CausalBias; or None


def is_causal_bias(mask: Any) -> bool:
    """Whether `mask` is torch's lower-right CausalBias. torch.nn.attention.bias is imported only when a plan
    needs one (importing it imports torch._dynamo, seconds), so without that module there is none."""
    bias = sys.modules.get("torch.nn.attention.bias")
    return bias is not None and isinstance(mask, bias.CausalBias)


def left_padding(attention_mask: Tensor | None) -> tuple[int, ...] | None:
    """Leading zeros of each row of attention_mask [B, T] as host ints; () without padding; None when some row
    is not of the form 0..0 1..1 (then only a mask describes it)."""
    if attention_mask is None:
        return ()
    real = attention_mask.detach().to("cpu", torch.bool)  # one host copy per forward
    if bool(real.all()):
        return ()
    T = real.shape[1]
    n_real = real.sum(1)
    pads = T - n_real  # [B]
    if not bool((real == (torch.arange(T)[None, :] >= pads[:, None])).all()):
        return None
    return tuple(pads.tolist())


def plan_attention(attention_mask: Tensor | None, S: int, first: int, device: torch.device) -> AttentionPlan:
    """The plan for S queries at cache slots first..first+S-1, every earlier slot holding this request's keys;
    attention_mask [B, T] as in `attention_mask_4d` (slots >= T are real)."""
    pads = left_padding(attention_mask)
    if first == 0 and pads is not None:
        if not pads:
            return AttentionPlan("causal")
        return AttentionPlan("rows", pads=tuple(min(p, S) for p in pads))
    kv_len = first + S
    query_pos = torch.arange(first, kv_len, device=device)
    if pads is None or pads:  # padded rows: the padding mask over the slots actually read
        return AttentionPlan("prefix", kv_len=kv_len, mask=attention_mask_4d(attention_mask, query_pos, kv_len))
    if S == 1:
        return AttentionPlan("prefix", kv_len=kv_len)
    from torch.nn.attention.bias import causal_lower_right

    return AttentionPlan("prefix", kv_len=kv_len, mask=causal_lower_right(S, kv_len))


def last_query(plan: AttentionPlan, S: int, device: torch.device) -> AttentionPlan:
    """The plan for the last of a forward's S queries alone (it sees every key slot the plan gives it)."""
    if plan.kind == "causal":
        return AttentionPlan("prefix", kv_len=S)
    if plan.kind == "rows":
        keys = torch.arange(S, device=device)
        mask = keys[None, :] >= torch.tensor(plan.pads, device=device)[:, None]  # [B, S] a row's real slots
        mask[:, -1] = True  # an all-padding row still attends to something (its output is never read)
        return AttentionPlan("prefix", kv_len=S, mask=mask[:, None, None, :])
    mask = plan.mask
    return replace(plan, mask=None if mask is None or is_causal_bias(mask) else mask[:, :, -1:])


def dense_plan(attention_mask: Tensor | None, query_pos: Tensor, kv_slots: int) -> AttentionPlan:
    """The reference plan: queries at query_pos [S] over all kv_slots, dense boolean mask."""
    return AttentionPlan("dense", mask=attention_mask_4d(attention_mask, query_pos, kv_slots))


def attend(q: Tensor, k: Tensor, v: Tensor, cached: tuple[Tensor, Tensor] | None, plan: AttentionPlan,
           scale: float) -> Tensor:
    """Softmax attention. q [B, H, S, D]; k, v [B, H_kv, S, D] this forward's keys; cached: the whole cache
    (k, v) [B, H_kv, S_max, D] after this forward's keys were written, or None -> [B, H, S, D]."""
    gqa = q.shape[1] != k.shape[1]
    if plan.kind == "causal":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    if plan.kind == "rows":
        out = q.new_zeros(q.shape)
        for b, p in enumerate(plan.pads):
            if p < q.shape[2]:
                out[b, :, p:] = F.scaled_dot_product_attention(q[b:b + 1, :, p:], k[b:b + 1, :, p:], v[b:b + 1, :, p:],
                                                               is_causal=True, scale=scale, enable_gqa=gqa)[0]
        return out
    if cached is not None:
        k, v = cached
    if plan.kind == "prefix":
        k, v = k[:, :, : plan.kv_len], v[:, :, : plan.kv_len]
    B, H, S, D = q.shape
    mask = plan.mask
    if gqa and S == 1 and not is_causal_bias(mask):  # fold the G query heads of each key head
        H_kv = k.shape[1]
        out = F.scaled_dot_product_attention(q.reshape(B, H_kv, H // H_kv, D), k, v, attn_mask=mask, scale=scale)
        return out.reshape(B, H, 1, D)
    if gqa and mask is not None and q.is_cuda:  # masked kernels on CUDA take no GQA: expand the keys (views)
        G = H // k.shape[1]
        k, v = (t[:, :, None].expand(B, t.shape[1], G, *t.shape[2:]).reshape(B, H, *t.shape[2:]) for t in (k, v))
        gqa = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
