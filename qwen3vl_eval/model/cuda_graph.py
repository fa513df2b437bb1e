"""CUDA fast path for decoding: the reference decode step, captured once in a CUDA graph and replayed.

Nothing here redefines maths: the graph records `generate.decode_step` on the reference model. What makes it
capturable is that every input lives in a static buffer (tokens [B], cache slot [1], rope deltas [B, 1], the
padding mask widened to all S_max cache slots) and that the KV caches are owned here and reused across calls,
so one graph serves every request with the same batch size and cache length. Cache lengths are rounded up to a
multiple of `bucket` so prompts of different lengths share graphs. Stale cache slots from an earlier request
are never read: a query at slot s attends only to slots <= s, all written by the current request.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor

from qwen3vl_eval.model.config import TextConfig
from qwen3vl_eval.model.generate import decode_step
from qwen3vl_eval.model.kv_cache import KVCache, allocate_caches
from qwen3vl_eval.model.qwen3vl import Qwen3VL


class CudaGraphDecoder:
    """A `step_fn` for `generate.generate` that replays the decode step from CUDA graphs."""

    def __init__(self, model: Qwen3VL, *, bucket: int = 256, max_graphs: int = 4, compile: bool = False) -> None:
        self.model = model
        self.bucket = bucket
        self.max_graphs = max_graphs
        # With `compile`, inductor fuses the step's small element-wise kernels (norms, rotary, activations)
        # before the graph is captured; the maths is the same reference step.
        self.step = torch.compile(decode_step, fullgraph=True, dynamic=False) if compile else decode_step
        self.pool = torch.cuda.graph_pool_handle()
        self.caches: OrderedDict[tuple, list[KVCache]] = OrderedDict()
        self.graphs: OrderedDict[tuple, tuple[torch.cuda.CUDAGraph, dict[str, Tensor], Tensor]] = OrderedDict()
        self.captures = 0

    def allocate(self, config: TextConfig, batch_size: int, max_seq_len: int, *, dtype: torch.dtype,
                 device: torch.device) -> list[KVCache]:
        """Caches for (batch, rounded length), reused across requests."""
        S = -(-max_seq_len // self.bucket) * self.bucket
        key = (batch_size, S, dtype, str(device))
        if key not in self.caches:
            while len(self.caches) >= self.max_graphs:
                old, _ = self.caches.popitem(last=False)
                self.graphs = OrderedDict((k, v) for k, v in self.graphs.items() if k[1] != old)
            self.caches[key] = allocate_caches(config, batch_size, S, dtype=dtype, device=device)
        self.caches.move_to_end(key)
        return self.caches[key]

    @torch.inference_mode()
    def __call__(self, model: Qwen3VL, tokens: Tensor, input_pos: Tensor, rope_deltas: Tensor,
                 attention_mask: Tensor, cache: list[KVCache]) -> Tensor:
        S = cache[0].max_seq_len
        key = (tokens.shape[0], tuple(c.k_cache.data_ptr() for c in cache[:1]), S)
        if key not in self.graphs:
            self.graphs[key] = self._capture(model, tokens, input_pos, rope_deltas, attention_mask, cache)
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        graph, buf, out = self.graphs[key]
        buf["tokens"].copy_(tokens)
        buf["input_pos"].copy_(input_pos)
        buf["rope_deltas"].copy_(rope_deltas)
        buf["mask"].copy_(_widen(attention_mask, S))
        graph.replay()
        return out

    def _capture(self, model, tokens, input_pos, rope_deltas, attention_mask, cache):
        S = cache[0].max_seq_len
        buf = {"tokens": tokens.clone(), "input_pos": input_pos.clone(), "rope_deltas": rope_deltas.clone(),
               "mask": _widen(attention_mask, S).clone()}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up outside the graph (allocator, kernel selection)
            for _ in range(2):
                self.step(model, buf["tokens"], buf["input_pos"], buf["rope_deltas"], buf["mask"], cache)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.step(model, buf["tokens"], buf["input_pos"], buf["rope_deltas"], buf["mask"], cache)
        self.captures += 1
        return graph, buf, out


def _widen(attention_mask: Tensor, S: int) -> Tensor:
    """The prompt's padding mask [B, L] widened to all S cache slots (slots >= L are generated tokens)."""
    return F.pad(attention_mask, (0, S - attention_mask.shape[1]), value=1)
