"""The Qwen3-VL text decoder: a Qwen3 decoder (q/k RMSNorm per head, GQA, SwiGLU or sparse MoE) with
interleaved 3-axis MRoPE and DeepStack: visual features added to the residual stream after the first layers.

Reference: transformers 5.23 `models/qwen3_vl/modeling_qwen3_vl.py` (`Qwen3VLTextModel` and its parts);
research/qwen3vl_spec.md section 2. Attribute names are the checkpoint's
(`model.language_model.layers.{i}.self_attn.q_proj`). The decoder knows nothing of images beyond the flat
indices of visual positions and one feature tensor per DeepStack level.

Legend: B batch, S tokens in this forward, S_k key slots (S, or S_max with a cache), Hd hidden size,
H query heads, H_kv key/value heads, D head dim, I MLP width, V visual positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qwen3vl_eval.model.attention import AttentionPlan, attend, dense_plan, last_query, plan_attention
from qwen3vl_eval.model.config import TextConfig
from qwen3vl_eval.model.kv_cache import KVCache
from qwen3vl_eval.model.moe import SparseMoeBlock
from qwen3vl_eval.model.rope import apply_rope, inv_freq, mrope_axis, mrope_cos_sin


class TextDecoder(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        # Rotary tables, built on the CPU even under a meta default device and moved with the model.
        self.register_buffer("freqs", inv_freq(config.head_dim, config.rope_theta), persistent=False)  # [F]
        self.register_buffer("axis", mrope_axis(config.head_dim // 2, config.mrope_section), persistent=False)

    def forward(self, h: Tensor, position_ids: Tensor, attention_mask: Tensor | None = None, *,
                cache: list[KVCache] | None = None, input_pos: Tensor | None = None, first: int | None = None,
                chunk: int | None = None, visual_index: Tensor | None = None, deepstack: list[Tensor] | None = None,
                last_only: bool = False, capture: dict[str, Tensor] | None = None) -> Tensor:
        """h [B, S, Hd] input embeddings, position_ids [3, B, S], attention_mask [B, T] (1 = real; None = no
        padding) -> final-norm hidden states [B, S, Hd]. With `cache`, the tokens are written at slots
        input_pos [S]; `first`, when the caller knows it on the host, is input_pos[0] (input_pos then counts up
        by one): attention runs without a dense mask (`attention.plan_attention`) and, with `chunk`, a prompt
        longer than `chunk` runs through the layers `chunk` tokens at a time (bounded memory). Without `first`
        the queries attend over every cache slot behind the reference mask. After layer i < len(deepstack),
        deepstack[i] [V, Hd] is added at the flat positions visual_index [V] of h viewed as [B*S, Hd].
        `last_only` (not with `capture`): only the last position's output is wanted, [B, 1, Hd]; the last layer
        then computes its keys/values for every position (the cache needs them) and the rest for that one
        position (nothing else reads its other outputs)."""
        S = h.shape[1]
        if cache is None:
            first, input_pos = 0, None  # queries 0..S-1 over themselves
        last_only = last_only and capture is None and len(deepstack or []) < len(self.layers)
        if first is None or not chunk or S <= chunk or cache is None:
            return self._run(h, position_ids, attention_mask, cache, input_pos, first, visual_index, deepstack,
                             capture, 1 if last_only else None)
        outs, parts = [], {}
        for s0 in range(0, S, chunk):
            s1 = min(S, s0 + chunk)
            index, levels = _chunk_visual(visual_index, deepstack, S, s0, s1)
            cap = {} if capture is not None else None
            keep = (1 if s1 == S else 0) if last_only else None
            outs.append(self._run(h[:, s0:s1], position_ids[:, :, s0:s1], attention_mask, cache, input_pos[s0:s1],
                                  first + s0, index, levels, cap, keep))
            for k, v in (cap or {}).items():
                parts.setdefault(k, []).append(v)
        if capture is not None:
            capture.update({k: torch.cat(v, dim=1) for k, v in parts.items()})
        return torch.cat(outs, dim=1)

    def _run(self, h: Tensor, position_ids: Tensor, attention_mask: Tensor | None, cache: list[KVCache] | None,
             input_pos: Tensor | None, first: int | None, visual_index: Tensor | None,
             deepstack: list[Tensor] | None, capture: dict[str, Tensor] | None, keep: int | None) -> Tensor:
        """The layers over one chunk; `keep` (0 or 1): the last layer's outputs only for the last `keep`
        positions (keys/values for all)."""
        B, S, Hd = h.shape
        if first is None:  # slots on the device only (a CUDA graph): the reference dense mask over the cache
            plan = dense_plan(attention_mask, input_pos, cache[0].max_seq_len)
        else:
            plan = plan_attention(attention_mask, S, first, h.device)
        cos, sin = mrope_cos_sin(position_ids, self.freqs, self.axis, h.dtype)  # [B, S, D]
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, plan, None if cache is None else cache[i], input_pos,
                      keep if i == n - 1 and S > 1 else None)
            if deepstack is not None and i < len(deepstack):
                h = h.view(B * S, Hd).index_add(0, visual_index, deepstack[i].to(h.dtype)).view(B, S, Hd)
            if capture is not None:
                capture[f"text.layers.{i}"] = h
        h = self.norm(h)
        if capture is not None:
            capture["text.norm"] = h
        return h


def _chunk_visual(visual_index: Tensor | None, deepstack: list[Tensor] | None, S: int, s0: int,
                  s1: int) -> tuple[Tensor | None, list[Tensor] | None]:
    """The DeepStack rows that fall in positions s0..s1-1, re-indexed into the chunk viewed as [B*(s1-s0)]."""
    if visual_index is None or deepstack is None:
        return visual_index, deepstack
    b, s = visual_index // S, visual_index % S
    keep = ((s >= s0) & (s < s1)).nonzero().squeeze(1)  # [V_chunk]
    index = b[keep] * (s1 - s0) + s[keep] - s0
    return index, [d[keep] for d in deepstack]


class DecoderLayer(nn.Module):
    def __init__(self, config: TextConfig, index: int) -> None:
        super().__init__()
        # registered first: the norms lead each layer's keys, the order tiny checkpoints draw their weights in
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.mlp = SparseMoeBlock(config) if config.is_moe_layer(index) else MLP(config)

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor, plan: AttentionPlan, cache: KVCache | None,
                input_pos: Tensor | None, keep: int | None = None) -> Tensor:
        """keep: outputs only for the last `keep` positions (keys/values written for all); None = all."""
        out = self.self_attn(self.input_layernorm(h), cos, sin, plan, cache, input_pos, keep)
        if keep is not None:
            h = h[:, h.shape[1] - keep:]
            if keep == 0:
                return h
        h = h + out
        return h + self.mlp(self.post_attention_layernorm(h))


class Attention(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        Hd, bias = config.hidden_size, config.attention_bias
        self.q_proj = nn.Linear(Hd, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(Hd, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(Hd, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, Hd, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)  # per head, before RoPE
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.qkv: Fused | None = None  # set by `fuse`: one GEMM for q, k, v

    def fuse(self) -> None:
        """Store q/k/v in one weight; the three projections' parameters become views of it."""
        self.qkv = Fused.of([self.q_proj, self.k_proj, self.v_proj])

    def _apply(self, fn, recurse=True):  # .to() etc. move each view on its own: fuse the moved weights again
        super()._apply(fn, recurse)
        if self.qkv is not None:
            self.fuse()
        return self

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, plan: AttentionPlan, cache: KVCache | None,
                input_pos: Tensor | None, keep: int | None = None) -> Tensor:
        """keep: queries (and outputs) only for the last `keep` positions; keys/values for all."""
        B, S, _ = x.shape
        H, H_kv, D = self.n_heads, self.n_kv_heads, self.head_dim
        cos, sin = cos[:, :, None], sin[:, :, None]  # [B, S, 1, D]; rotary on the contiguous [B, S, heads, D]
        if keep is not None:  # keys/values of every position, the query of the last `keep` only
            k, v = self.k_proj(x), self.v_proj(x)
            q, cos_q, sin_q = self.q_proj(x[:, S - keep:]), cos[:, S - keep:], sin[:, S - keep:]
        elif self.qkv is not None:
            q, k, v = self.qkv(x).split([H * D, H_kv * D, H_kv * D], dim=-1)
            cos_q, sin_q = cos, sin
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
            cos_q, sin_q = cos, sin
        k = apply_rope(self.k_norm(k.view(B, S, H_kv, D)), cos, sin).transpose(1, 2)  # [B, H_kv, S, D]
        v = v.view(B, S, H_kv, D).transpose(1, 2)  # [B, H_kv, S, D]
        cached = cache.update(input_pos, k, v) if cache is not None else None  # [B, H_kv, S_max, D] each
        if keep == 0:
            return x[:, :0]
        Q = q.shape[1]
        q = apply_rope(self.q_norm(q.view(B, Q, H, D)), cos_q, sin_q).transpose(1, 2)  # [B, H, Q, D]
        plan = plan if keep is None else last_query(plan, S, x.device)
        out = attend(q, k, v, cached, plan, scale=D**-0.5)  # [B, H, Q, D]
        return self.o_proj(out.transpose(1, 2).reshape(B, Q, H * D))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.gate_up: Fused | None = None  # set by `fuse`: one GEMM for gate and up

    def fuse(self) -> None:
        """Store gate/up in one weight; both projections' parameters become views of it."""
        self.gate_up = Fused.of([self.gate_proj, self.up_proj])

    def _apply(self, fn, recurse=True):  # as Attention._apply
        super()._apply(fn, recurse)
        if self.gate_up is not None:
            self.fuse()
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_up is None:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # views of one fresh [..., 2I] output: safe to overwrite
        return self.down_proj(F.silu(gate, inplace=True).mul_(up))  # the same values, no new [..., I] buffers


class Fused:
    """Several nn.Linear of one input as one weight (and bias): concatenated along the output dim, the
    modules' parameters replaced by views of it, so the checkpoint names (state_dict, loading, `--dump`) and
    the values stay those of the separate projections. Not a module: its tensors are the modules' storage."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        self.weight, self.bias = weight, bias

    @classmethod
    def of(cls, linears: list[nn.Linear]) -> Fused:
        weight = torch.cat([m.weight.detach() for m in linears])  # [sum out, in]
        has_bias = linears[0].bias is not None
        bias = torch.cat([m.bias.detach() for m in linears]) if has_bias else None
        start = 0
        for m in linears:
            n = m.weight.shape[0]
            m.weight = nn.Parameter(weight[start:start + n], requires_grad=False)
            if has_bias:
                m.bias = nn.Parameter(bias[start:start + n], requires_grad=False)
            start += n
        return cls(weight, bias)

    def __call__(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


def fuse_projections(decoder: TextDecoder) -> None:
    """Fuse q/k/v and (dense layers) gate/up of every decoder layer, in place; idempotent."""
    for layer in decoder.layers:
        if layer.self_attn.qkv is None:
            layer.self_attn.fuse()
        if isinstance(layer.mlp, MLP) and layer.mlp.gate_up is None:
            layer.mlp.fuse()


class RMSNorm(nn.Module):
    """x / rms(x) in fp32, cast back to the input dtype, then times the weight."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)
