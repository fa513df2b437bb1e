"""Static key/value cache and the attention mask over its slots (gpt-fast style).

Each decoder layer owns one `KVCache` of fixed shape [B, H_kv, S_max, D]; a forward writes its keys and values
at slots `input_pos` and attends over all S_max slots, with `attention_mask` hiding the slots that are padding
or not yet written. Fixed shapes keep the decode step capturable in a CUDA graph. A left-padded batch keeps its
padded layout in the cache: row b's prompt occupies slots 0..L-1 (padding included), generated tokens follow.

Legend: B batch, S new tokens, S_max cache slots, H_kv key/value heads, D head dim.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qwen3vl_eval.model.config import TextConfig


class KVCache(nn.Module):
    def __init__(self, batch_size: int, num_kv_heads: int, max_seq_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str | None = None) -> None:
        super().__init__()
        shape = (batch_size, num_kv_heads, max_seq_len, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @property
    def max_seq_len(self) -> int:
        return self.k_cache.shape[2]

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v [B, H_kv, S, D] at slots input_pos [S]; return the whole cache [B, H_kv, S_max, D]."""
        self.k_cache.index_copy_(2, input_pos, k)
        self.v_cache.index_copy_(2, input_pos, v)
        return self.k_cache, self.v_cache


def allocate_caches(config: TextConfig, batch_size: int, max_seq_len: int, *, dtype: torch.dtype,
                    device: torch.device | str) -> list[KVCache]:
    """One empty cache per decoder layer."""
    return [KVCache(batch_size, config.num_key_value_heads, max_seq_len, config.head_dim, dtype, device)
            for _ in range(config.num_hidden_layers)]


def attention_mask_4d(attention_mask: Tensor | None, query_pos: Tensor, kv_len: int) -> Tensor:
    """Boolean mask [B or 1, 1, S, kv_len] (True = attend) for queries at slots query_pos [S] over key slots
    0..kv_len-1: causal by slot, and hiding key slots where attention_mask [B, T] is 0. Slots at or beyond T
    count as real (generated tokens), so a generation loop can pass the prompt's mask unchanged. Every query
    also sees its own slot, so padded queries get finite (ignored) outputs instead of NaN."""
    key_pos = torch.arange(kv_len, device=query_pos.device)
    same = key_pos[None, :] == query_pos[:, None]  # [S, kv_len]
    allowed = key_pos[None, :] <= query_pos[:, None]  # [S, kv_len] causal
    if attention_mask is None:
        return allowed[None, None]  # [1, 1, S, kv_len]
    real = attention_mask.to(torch.bool)[:, :kv_len]  # [B, T]
    real = F.pad(real, (0, kv_len - real.shape[1]), value=True)  # [B, kv_len]
    return ((allowed & real[:, None, :]) | same)[:, None]  # [B, 1, S, kv_len]
