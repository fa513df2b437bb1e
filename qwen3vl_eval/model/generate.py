"""Batched generation with a static KV cache: prefill once, then one token per step for every live row.

Rows are left-padded; each keeps its prompt's padded layout in the cache and continues its own MRoPE count
through `rope_deltas` (positions never live on the model). Rows that finish (an eos id, a stop string, or
`max_new_tokens`) are dropped from the batch at the next check, so they stop costing work. On CPU every step
is checked; on CUDA the loop checks every `check_every` steps, so decoding runs without a host-device sync per
token, and a `DecodeStep` from `qwen3vl_eval.model.cuda_graph` may replay the step from a CUDA graph.

Legend: B live rows, L prompt slots, N max new tokens, V vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.kv_cache import KVCache, allocate_caches
from qwen3vl_eval.model.qwen3vl import Qwen3VL
from qwen3vl_eval.model.rope import decode_position_ids, rope_index
from qwen3vl_eval.model.sampling import GenerationParams, find_stop, make_generator, process_logits, select_tokens
from qwen3vl_eval.runtime.timing import Timings, synchronize

# Prompt tokens per prefill pass through the decoder: longer prompts are prefilled in chunks, so memory grows
# with chunk x prompt length (the last chunk's mask), not with the square of the prompt length.
PREFILL_CHUNK = 2048
# Positions per log-softmax in `teacher_force`: its float32 copies stay chunk x vocabulary per row.
SCORE_CHUNK = 1024


@dataclass
class GenerationOutput:
    token_ids: list[int]
    finish_reason: str  # "stop" (eos or stop string) or "length"
    text: str | None = None  # set when a decode function was given
    # with `generate(logprobs=k)`: per generated token (chosen logprob, [(id, logprob)] of the k most likely)
    logprobs: list[tuple[float, list[tuple[int, float]]]] | None = None


@dataclass
class TokenScores:
    """Teacher-forced scores of one row's positions `start..S-1` (each predicted from the tokens before it):
    the target token's logprob, the argmax id, the `k` most likely (ids, logprobs) and, for `query` ids, their
    logprobs. Logprobs are log-softmax of the raw logits in float32."""

    target_logprob: list[float]
    target_rank: list[int]  # 1 + the number of tokens more likely than the target
    argmax: list[int]
    top_ids: list[list[int]]
    top_logprobs: list[list[float]]
    query_logprobs: list[list[float]]


@torch.inference_mode()
def prefill(model: Qwen3VL, input_ids: Tensor, attention_mask: Tensor, cache: list, *, pixel_values=None,
            image_grid_thw=None, pixel_values_videos=None, video_grid_thw=None,
            visual=None, chunk: int | None = PREFILL_CHUNK) -> tuple[Tensor, Tensor]:
    """Run the prompt through the model, filling cache slots 0..L-1, `chunk` tokens at a time through the
    decoder (None: all at once). Returns the last position's logits [B, V] and rope_deltas [B, 1]."""
    position_ids, rope_deltas = rope_index(input_ids, image_grid_thw, video_grid_thw, attention_mask, model.config)
    L = input_ids.shape[1]
    input_pos = torch.arange(L, device=input_ids.device)
    kwargs = dict(pixel_values=pixel_values, image_grid_thw=image_grid_thw, pixel_values_videos=pixel_values_videos,
                  video_grid_thw=video_grid_thw)
    if visual is not None:
        kwargs["visual"] = visual
    logits = model(input_ids, position_ids, attention_mask=attention_mask, cache=cache, input_pos=input_pos,
                   last_only=True, first=0, chunk=chunk, **kwargs)
    return logits[:, -1], rope_deltas


def decode_step(model: Qwen3VL, tokens: Tensor, input_pos: Tensor, rope_deltas: Tensor, attention_mask: Tensor,
                cache: list) -> Tensor:
    """One token per row [B] at cache slot input_pos [1]; returns next-token logits [B, V]. On the CPU the slot
    is read on the host (free there), so attention reads only the written slots; elsewhere it stays on the
    device (no sync, capturable) and attention reads all slots behind the mask."""
    position_ids = decode_position_ids(input_pos, rope_deltas)  # [3, B, 1]
    first = int(input_pos[0]) if input_pos.device.type == "cpu" else None
    return model(tokens[:, None], position_ids, attention_mask=attention_mask, cache=cache, input_pos=input_pos,
                 last_only=True, first=first)[:, -1]


@torch.inference_mode()
def check_context(prompt_tokens: int, max_new_tokens: int, context: int) -> None:
    """InputError when a prompt plus the tokens asked for do not fit the model's context
    (`max_position_embeddings`); checked before any cache is allocated."""
    if prompt_tokens + max_new_tokens > context:
        room = context - prompt_tokens
        hint = f"ask for at most {room} new tokens" if room >= 1 else "shorten the prompt"
        raise InputError(f"a prompt of {prompt_tokens} tokens plus max_new_tokens {max_new_tokens} is beyond the "
                         f"model's context of {context} tokens (max_position_embeddings); {hint}")


def generate(model: Qwen3VL, input_ids: Tensor, attention_mask: Tensor | None, params: GenerationParams, *,
             pixel_values: Tensor | None = None, image_grid_thw: Tensor | None = None,
             pixel_values_videos: Tensor | None = None, video_grid_thw: Tensor | None = None,
             visual=None, decode: Callable[[list[int]], str] | None = None, pad_token_id: int = 0,
             check_every: int | None = None, step_fn=None, timings: Timings | None = None,
             on_tokens: Callable[[int, list[int]], None] | None = None,
             logprobs: int | None = None) -> list[GenerationOutput]:
    """Generate up to `params.max_new_tokens` tokens for each row of a left-padded batch.

    `decode` (token ids -> text) is needed for stop strings and fills `GenerationOutput.text`. `step_fn`
    replaces `decode_step` (same signature), e.g. a CUDA-graph replay. `on_tokens(row, new_ids)` streams.
    `logprobs=k` (0 or more) records each generated token's logprob and the k most likely tokens, from the
    raw logits the decode step produced (before penalties and temperature, vLLM's default `raw_logprobs`)."""
    params.validate()
    device = input_ids.device
    B, L = input_ids.shape
    N = params.max_new_tokens
    check_context(L, N, model.config.text.max_position_embeddings)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if params.stop and decode is None:
        raise ValueError("stop strings need a decode function")
    check_every = check_every or (1 if device.type == "cpu" or params.stop or on_tokens else 8)
    step_fn = step_fn or decode_step
    timings = timings if timings is not None else Timings()
    dtype = next(model.parameters()).dtype
    alloc = getattr(step_fn, "allocate", allocate_caches)  # a CUDA-graph decoder owns reusable caches
    cache = alloc(model.config.text, B, L + N, dtype=dtype, device=device)

    synchronize(device)
    t0 = time.perf_counter()
    logits, rope_deltas = prefill(model, input_ids, attention_mask, cache, pixel_values=pixel_values,
                                  image_grid_thw=image_grid_thw, pixel_values_videos=pixel_values_videos,
                                  video_grid_thw=video_grid_thw, visual=visual)
    synchronize(device)
    t1 = time.perf_counter()
    timings.prefill += t1 - t0
    timings.prompt_tokens += int(attention_mask.sum())

    V = logits.shape[-1]
    eos = torch.tensor(sorted(set(params.eos_token_ids)) if not params.ignore_eos else [], device=device,
                       dtype=torch.long)
    seen = counts = None
    if params.repetition_penalty != 1.0:
        seen = torch.zeros(B, V, dtype=torch.bool, device=device)
        seen.scatter_(1, input_ids.clamp(max=V - 1), attention_mask.bool())
    if params.presence_penalty != 0.0:
        counts = torch.zeros(B, V, dtype=torch.int32, device=device)
    generator = make_generator(params, device)

    rows = list(range(B))  # original index of each live row
    new_tokens = torch.full((B, N), pad_token_id, dtype=torch.long, device=device)  # [B, N]
    lp = _LogprobRecord(B, N, logprobs, device) if logprobs is not None else None
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    results: list[GenerationOutput | None] = [None] * B
    streamed = [0] * B
    checked = 0  # steps already examined on the host
    input_pos = torch.full((1,), L, dtype=torch.long, device=device)  # cache slot of the next token
    for step in range(N):
        tok = select_tokens(process_logits(logits, params, seen, counts), params, generator)  # [B]
        tok = torch.where(finished, torch.full_like(tok, pad_token_id), tok)
        new_tokens[:, step] = tok
        if lp is not None:
            lp.add(step, logits, tok)
        if eos.numel():
            finished = finished | torch.isin(tok, eos)
        if seen is not None:
            seen.scatter_(1, tok[:, None], True)
        if counts is not None:
            counts.scatter_add_(1, tok[:, None], torch.ones_like(tok[:, None], dtype=torch.int32))
        last = step == N - 1
        if (step + 1 - checked) >= check_every or last:
            host = new_tokens[:, : step + 1].tolist()  # the only host sync, every check_every steps
            keep = []
            for i, ids in enumerate(host):
                if results[rows[i]] is not None:  # finished earlier, kept in the batch until compaction
                    continue
                out = finish_row(ids, params, decode, last)
                if on_tokens is not None:
                    shown = out.token_ids if out else ids
                    on_tokens(rows[i], shown[streamed[rows[i]]:])
                    streamed[rows[i]] = len(shown)
                if out is None:
                    keep.append(i)
                else:
                    results[rows[i]] = out if lp is None else lp.attach(out, i)
                    finished[i] = True
            checked = step + 1
            if not keep:
                break
            # Compact: finished rows stop costing work. On CUDA only when the batch halves, since a new batch
            # size means a new CUDA graph; until then finished rows decode padding that is thrown away.
            if len(keep) < len(rows) and (device.type != "cuda" or len(keep) <= len(rows) // 2):
                idx = torch.tensor(keep, device=device)
                rows = [rows[i] for i in keep]
                new_tokens, finished, rope_deltas, attention_mask, tok = (
                    t.index_select(0, idx) for t in (new_tokens, finished, rope_deltas, attention_mask, tok))
                if lp is not None:
                    lp.select(idx)
                seen = seen.index_select(0, idx) if seen is not None else None
                counts = counts.index_select(0, idx) if counts is not None else None
                cache = _compact(cache, idx, model.config.text)
        logits = step_fn(model, tok, input_pos, rope_deltas, attention_mask, cache)
        input_pos = input_pos + 1  # on the device: no host-to-device copy per token
    synchronize(device)
    timings.decode += time.perf_counter() - t1
    outputs = [r if r is not None else GenerationOutput([], "length") for r in results]
    timings.generated_tokens += sum(len(o.token_ids) for o in outputs)
    return outputs


class _LogprobRecord:
    """Per-step logprobs of the chosen tokens and the k most likely, kept on the device (no host sync) and
    compacted with the batch."""

    def __init__(self, B: int, N: int, k: int, device: torch.device) -> None:
        self.k = k
        self.chosen = torch.zeros(B, N, dtype=torch.float32, device=device)
        self.top_v = torch.zeros(B, N, k, dtype=torch.float32, device=device)
        self.top_i = torch.zeros(B, N, k, dtype=torch.long, device=device)

    def add(self, step: int, logits: Tensor, tok: Tensor) -> None:
        logp = torch.log_softmax(logits.float(), -1)  # [B, V]
        self.chosen[:, step] = logp.gather(1, tok[:, None])[:, 0]
        if self.k:
            v, i = logp.topk(self.k, -1)
            self.top_v[:, step], self.top_i[:, step] = v, i

    def select(self, idx: Tensor) -> None:
        self.chosen, self.top_v, self.top_i = (t.index_select(0, idx) for t in (self.chosen, self.top_v, self.top_i))

    def attach(self, out: GenerationOutput, row: int) -> GenerationOutput:
        n = len(out.token_ids)
        chosen = self.chosen[row, :n].tolist()
        ids, vals = self.top_i[row, :n].tolist(), self.top_v[row, :n].tolist()
        out.logprobs = [(c, list(zip(i, v))) for c, i, v in zip(chosen, ids, vals)]
        return out


@torch.inference_mode()
def teacher_force(model: Qwen3VL, input_ids: Tensor, attention_mask: Tensor | None, start: int, *, k: int = 0,
                  query: list[list[list[int]]] | None = None, image_grid_thw: Tensor | None = None,
                  video_grid_thw: Tensor | None = None, visual=None, pixel_values: Tensor | None = None,
                  pixel_values_videos: Tensor | None = None) -> list[TokenScores]:
    """Score each row's tokens at positions `start..S-1` by teacher forcing: one forward over the whole
    left-padded sequence [B, S] without a KV cache (MRoPE positions from `rope_index` over it, so text after
    the prompt continues the prompt's count exactly as decoding does). `query[b][j]`: token ids whose logprobs
    to report at the row's j-th scored position (e.g. another model's top-k)."""
    position_ids, _ = rope_index(input_ids, image_grid_thw, video_grid_thw, attention_mask, model.config)
    kwargs = dict(pixel_values=pixel_values, image_grid_thw=image_grid_thw, pixel_values_videos=pixel_values_videos,
                  video_grid_thw=video_grid_thw)
    if visual is not None:
        kwargs["visual"] = visual
    logits = model(input_ids, position_ids, attention_mask=attention_mask, **kwargs)  # [B, S, V]
    B, S = input_ids.shape
    chosen, rank, argmax, top_v, top_i = ([[] for _ in range(B)] for _ in range(5))
    query_out: list[list[list[float]]] = [[] for _ in range(B)]
    for a in range(start, S, SCORE_CHUNK):  # log-softmax a chunk of positions at a time (float32 [B, chunk, V])
        b = min(S, a + SCORE_CHUNK)
        logp = torch.log_softmax(logits[:, a - 1: b - 1].float(), -1)  # position t-1 predicts token t
        tgt = logp.gather(2, input_ids[:, a:b, None])  # [B, n, 1]
        v, i = logp.topk(k, -1) if k else (logp[..., :0], tgt[..., :0].long())
        for r, (c, n, m, tv, ti) in enumerate(zip(tgt[..., 0].tolist(), ((logp > tgt).sum(-1) + 1).tolist(),
                                                  logp.argmax(-1).tolist(), v.tolist(), i.tolist())):
            chosen[r] += c
            rank[r] += n
            argmax[r] += m
            top_v[r] += tv
            top_i[r] += ti
            for j in range(a - start, min(b - start, len(query[r]))) if query is not None else ():
                ids = torch.tensor(query[r][j], dtype=torch.long, device=logp.device)
                query_out[r].append(logp[r, j - (a - start), ids].tolist())
        del logp
    return [TokenScores(chosen[r], rank[r], argmax[r], top_i[r], top_v[r], query_out[r]) for r in range(B)]


def _compact(cache: list[KVCache], idx: Tensor, config) -> list[KVCache]:
    """New caches holding only rows `idx` (the old ones may be owned by a CUDA-graph decoder and reused)."""
    k = cache[0].k_cache
    new = allocate_caches(config, idx.numel(), k.shape[2], dtype=k.dtype, device=k.device)
    for n, c in zip(new, cache):
        torch.index_select(c.k_cache, 0, idx, out=n.k_cache)
        torch.index_select(c.v_cache, 0, idx, out=n.v_cache)
    return new


def finish_row(ids: list[int], params: GenerationParams, decode, last: bool = True) -> GenerationOutput | None:
    """A generated row's output once it has finished, else None (only when not `last`).

    Cut at the fewest tokens that reach a stop string before the first eos (text before the stop string), else
    after the first eos (text without it), else, on the `last` step, the whole row ("length"). One rule for
    rows checked as they grow (`generate`, every few steps) and rows generated whole (`backends.hf`): padding
    after a finished row is dropped."""
    eos = set() if params.ignore_eos else set(params.eos_token_ids)
    end = next((j for j, t in enumerate(ids) if t in eos), None)
    body = ids if end is None else ids[:end]
    if params.stop:
        text = decode(body)
        cut = find_stop(text, params.stop)
        if cut >= 0:
            j = next(j for j in range(1, len(body) + 1) if find_stop(decode(body[:j]), params.stop) >= 0)
            return GenerationOutput(body[:j], "stop", text[:cut])
    if end is not None:
        return GenerationOutput(ids[: end + 1], "stop", decode(body) if decode else None)
    if last:
        return GenerationOutput(ids, "length", decode(ids) if decode else None)
    return None
