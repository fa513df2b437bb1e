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

    def forward(self, h: Tensor, position_ids: Tensor, mask: Tensor, *, cache: list[KVCache] | None = None,
                input_pos: Tensor | None = None, visual_index: Tensor | None = None,
                deepstack: list[Tensor] | None = None, capture: dict[str, Tensor] | None = None) -> Tensor:
        """h [B, S, Hd] input embeddings, position_ids [3, B, S], mask [B|1, 1, S, S_k] bool ->
        final-norm hidden states [B, S, Hd]. After layer i < len(deepstack), deepstack[i] [V, Hd] is added at
        the flat positions visual_index [V] of h viewed as [B*S, Hd]."""
        B, S, Hd = h.shape
        cos, sin = mrope_cos_sin(position_ids, self.freqs, self.axis, h.dtype)  # [B, S, D]
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, mask, None if cache is None else cache[i], input_pos)
            if deepstack is not None and i < len(deepstack):
                h = h.view(B * S, Hd).index_add(0, visual_index, deepstack[i].to(h.dtype)).view(B, S, Hd)
            if capture is not None:
                capture[f"text.layers.{i}"] = h
        h = self.norm(h)
        if capture is not None:
            capture["text.norm"] = h
        return h


class DecoderLayer(nn.Module):
    def __init__(self, config: TextConfig, index: int) -> None:
        super().__init__()
        # registered first: the norms lead each layer's keys, the order tiny checkpoints draw their weights in
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.mlp = SparseMoeBlock(config) if config.is_moe_layer(index) else MLP(config)

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, cache: KVCache | None,
                input_pos: Tensor | None) -> Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask, cache, input_pos)
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

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, cache: KVCache | None,
                input_pos: Tensor | None) -> Tensor:
        B, S, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, S, self.n_heads, self.head_dim)).transpose(1, 2)  # [B, H, S, D]
        k = self.k_norm(self.k_proj(x).view(B, S, self.n_kv_heads, self.head_dim)).transpose(1, 2)  # [B, H_kv, S, D]
        v = self.v_proj(x).view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, H_kv, S, D]
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, S, D]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(input_pos, k, v)  # [B, H_kv, S_max, D]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim**-0.5,
                                             enable_gqa=self.n_heads != self.n_kv_heads)  # [B, H, S, D]
        return self.o_proj(out.transpose(1, 2).reshape(B, S, self.n_heads * self.head_dim))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


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
