"""The engine: a checkpoint's processor, model and generation defaults behind one `chat` call.

This is what the harness, `generate`, `bench` and `serve` run on. It holds no decoding policy of its own:
defaults come from the checkpoint's `generation_config.json` and the caller's `GenerationParams`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from qwen3vl_eval.backends.base import Reply
from qwen3vl_eval.checkpoints.hub import hub_cache_dir, resolve_model
from qwen3vl_eval.errors import CheckpointError, InputError
from qwen3vl_eval.model.generate import GenerationOutput, TokenScores, check_context, generate, teacher_force
from qwen3vl_eval.model.qwen3vl import Qwen3VL
from qwen3vl_eval.model.sampling import GenerationParams
from qwen3vl_eval.model.weights import load_model
from qwen3vl_eval.processor import BatchInputs, Processor
from qwen3vl_eval.processor.chat import split_reasoning
from qwen3vl_eval.processor.messages import as_batch, media_items
from qwen3vl_eval.runtime.device import dtype_name, resolve_device, resolve_dtype
from qwen3vl_eval.runtime.provenance import device_label, software_versions
from qwen3vl_eval.runtime.timing import Timings, free


class Engine:
    """Load a checkpoint (folder, Hub id in the local cache, or `tiny`) and answer conversations. Commands pass
    what they resolved (`commands.resolve_target`): the folder, torch device and dtype, and
    `model_name`, the `--model` value recorded in `info`.

    `fast` (default: on CUDA) replays the decode step from CUDA graphs, fused by inductor first with `compile`.
    Each image or video is encoded once and kept in a cache of `vision_cache_mb` MiB (0: no cache)."""

    def __init__(self, model: str | Path, *, device: str | torch.device = "auto",
                 dtype: str | torch.dtype = "auto", video_prompt: str = "trained", fast: bool | None = None,
                 compile: bool = False, vision_cache_mb: int = 1024, model_name: str | None = None) -> None:
        path = resolve_model(model)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        self._setup(load_model(path, device=dev, dtype=dt), path, name=model_name or str(model),
                    video_prompt=video_prompt, fast=fast, compile=compile, vision_cache_mb=vision_cache_mb)

    @classmethod
    def with_model(cls, model: Qwen3VL, processor_dir: Path, *, name: str, video_prompt: str = "trained",
                   fast: bool | None = None, compile: bool = False, vision_cache_mb: int = 1024) -> Engine:
        """An engine around a model already built (e.g. random weights of a preset), with the processor and
        generation defaults of the checkpoint-style folder `processor_dir`."""
        engine = cls.__new__(cls)
        engine._setup(model, processor_dir, name=name, video_prompt=video_prompt, fast=fast, compile=compile,
                      vision_cache_mb=vision_cache_mb)
        return engine

    def _setup(self, model: Qwen3VL, path: Path, *, name: str, video_prompt: str, fast: bool | None,
               compile: bool, vision_cache_mb: int) -> None:
        self.path, self.name, self.model = path, name, model
        first = next(model.parameters())
        self.device, self.dtype = first.device, first.dtype
        self.video_prompt = video_prompt
        self.processor = Processor.from_pretrained(self.path)
        self.defaults = GenerationParams.from_generation_config(self.path / "generation_config.json")
        check_token_ids(self.defaults, model.config.text.vocab_size, self.path / "generation_config.json")
        self.context = model.config.text.max_position_embeddings
        self.timings = Timings()
        self.vision_cache: OrderedDict[str, tuple[torch.Tensor, list[torch.Tensor]]] = OrderedDict()
        self.vision_cache_bytes, self.vision_cache_limit = 0, vision_cache_mb << 20
        self.decoder = None
        self.compile = bool(compile)
        if fast if fast is not None else self.device.type == "cuda":
            from qwen3vl_eval.model.cuda_graph import CudaGraphDecoder

            self.decoder = CudaGraphDecoder(self.model, compile=compile)
        elif compile:
            raise InputError("compile needs the CUDA-graph decode step (fast, on a CUDA device)")
        self._info: dict[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        """What a results file records about the model and the software it ran on (the checkpoint hashed once)."""
        if self._info is None:
            self._info = {**model_info(self.name, self.path, self.device, self.dtype,
                                        self.processor.thinking), "backend": "native",
                          "video_prompt": self.video_prompt, "cuda_graph": self.decoder is not None,
                          "compile": self.compile,
                          "attention": getattr(self.model, "attention_backend", "sdpa")}
        return self._info

    def close(self) -> None:
        """Drop the model, caches and graphs and return their memory."""
        self.model = self.decoder = None
        self.vision_cache.clear()
        self.vision_cache_bytes = 0
        free(self.device)

    def params(self, **overrides: Any) -> GenerationParams:
        """The checkpoint's defaults with overrides (None values keep the default)."""
        return self.defaults.with_overrides(**overrides)

    def chat(self, conversations: list, params: GenerationParams | None = None, *, base_dir: str | Path | None = None,
             on_tokens=None, fit_context: bool = False, max_pixels: int | None = None, logprobs: int | None = None,
             prompt_logprobs: int | None = None) -> list[Reply]:
        """Replies to a batch of conversations (CONTRACTS section 4 messages), generated together. A prompt plus
        `max_new_tokens` beyond the context is an InputError before anything runs; with `fit_context`,
        `max_new_tokens` is lowered to the room the prompt leaves instead. `max_pixels` bounds the processed
        pixels (patches x patch area) of each conversation, checked before the vision tower runs. `logprobs=k`
        fills `Reply.logprobs` from the decoding's logits; `prompt_logprobs=k` fills `Reply.prompt_logprobs`
        by teacher forcing the prompt (`score`)."""
        t0 = time.perf_counter()
        batch = self.processor(conversations, video_prompt=self.video_prompt, base_dir=base_dir)
        if max_pixels is not None:
            check_pixels(conversations, batch, self.model.config.vision.patch_size ** 2, max_pixels)
        return self._generate(batch, params, t0, on_tokens, fit_context, logprobs, prompt_logprobs)

    def complete(self, prompts: list[list[int]], params: GenerationParams | None = None, *, on_tokens=None,
                 fit_context: bool = False, logprobs: int | None = None,
                 prompt_logprobs: int | None = None) -> list[Reply]:
        """Replies continuing raw token prompts (no chat template, text only: `/v1/completions`)."""
        t0 = time.perf_counter()
        cfg, vocab = self.model.config, self.model.config.text.vocab_size
        for i, row in enumerate(prompts):
            if not row:
                raise InputError(f"prompt {i}: empty")
            bad = next((t for t in row if not 0 <= t < vocab or t in (cfg.image_token_id, cfg.video_token_id)), None)
            if bad is not None:
                raise InputError(f"prompt {i}: token id {bad} is outside the vocabulary or a media placeholder")
        tok = self.processor.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        length = max(len(r) for r in prompts)
        ids = torch.full((len(prompts), length), pad, dtype=torch.int64)
        mask = torch.zeros_like(ids)
        for b, row in enumerate(prompts):
            ids[b, length - len(row):], mask[b, length - len(row):] = torch.tensor(row), 1
        batch = BatchInputs(ids, mask, torch.zeros_like(ids), [tok.decode(r, skip_special_tokens=False)
                                                               for r in prompts])
        return self._generate(batch, params, t0, on_tokens, fit_context, logprobs, prompt_logprobs)

    def _generate(self, batch: BatchInputs, params: GenerationParams | None, t0: float, on_tokens,
                  fit_context: bool, logprobs: int | None, prompt_logprobs: int | None) -> list[Reply]:
        params = params or self.defaults
        if not params.eos_token_ids:
            params = replace(params, eos_token_ids=self.defaults.eos_token_ids)
        check_token_ids(params, self.model.config.text.vocab_size, "eos_token_ids")
        prompt_len = batch.input_ids.shape[1]
        if fit_context and 1 <= self.context - prompt_len < params.max_new_tokens:
            params = replace(params, max_new_tokens=self.context - prompt_len)
        check_context(prompt_len, params.max_new_tokens, self.context)
        batch = batch.to(self.device, self.dtype)
        self.timings.preprocess += time.perf_counter() - t0
        tok = self.processor.tokenizer
        visual = self.encode_visual(batch)
        outs = generate(self.model, batch.input_ids, batch.attention_mask, params, visual=visual,
                        image_grid_thw=batch.image_grid_thw, video_grid_thw=batch.video_grid_thw,
                        decode=lambda ids: tok.decode(ids, skip_special_tokens=True),
                        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else 0,
                        step_fn=self.decoder, timings=self.timings, on_tokens=on_tokens, logprobs=logprobs)
        prompt_tokens = batch.attention_mask.sum(-1).tolist()
        replies = [self._reply(o, n) for o, n in zip(outs, prompt_tokens)]
        for b, reply in enumerate(replies):
            reply.prompt_token_ids = batch.input_ids[b, batch.input_ids.shape[1] - reply.prompt_tokens:].tolist()
        if prompt_logprobs is not None:
            for b, reply in enumerate(replies):
                s = self._score_rows(batch, visual, b, 1, prompt_logprobs)
                reply.prompt_logprobs = [None] + [(c, r, list(zip(i, v))) for c, r, i, v in zip(
                    s.target_logprob, s.target_rank, s.top_ids, s.top_logprobs)]
        return replies

    def score(self, conversation: list[dict] | BatchInputs, continuation: list[int], *, k: int = 0,
              query: list[list[int]] | None = None, base_dir: str | Path | None = None,
              start: int | None = None) -> tuple[TokenScores, int]:
        """Teacher-forced scores of `continuation` after one conversation's prompt (one forward over prompt +
        continuation, no KV cache): positions from `start` (default: the first continuation token; 1 scores
        the prompt too). `query[j]`: ids whose logprobs to report at the j-th scored position. The
        conversation may come processed already (`self.processor([conversation])`). Returns the scores and
        the prompt length."""
        batch = conversation if isinstance(conversation, BatchInputs) else self.processor(
            [conversation], video_prompt=self.video_prompt, base_dir=base_dir)
        n = batch.input_ids.shape[1]
        if continuation:
            extra = torch.tensor([continuation], dtype=torch.int64)
            batch = replace(batch, input_ids=torch.cat([batch.input_ids, extra], 1),
                            attention_mask=torch.cat([batch.attention_mask, torch.ones_like(extra)], 1))
        check_context(batch.input_ids.shape[1], 0, self.context)
        batch = batch.to(self.device, self.dtype)
        visual = self.encode_visual(batch)
        return self._score_rows(batch, visual, 0, n if start is None else start, k, query), n

    def _score_rows(self, batch: BatchInputs, visual: dict, row: int, start: int, k: int,
                    query: list[list[int]] | None = None) -> TokenScores:
        """`teacher_force` on one row of a processed batch, its padding dropped (`start` counts real tokens)."""
        pad = int((batch.attention_mask[row] == 0).sum())
        ids = batch.input_ids[row: row + 1, pad:]
        if batch.input_ids.shape[0] > 1:  # the row's own media only
            visual, grids = _row_visual(batch, visual, row, self.model.config)
        else:
            grids = batch.image_grid_thw, batch.video_grid_thw
        return teacher_force(self.model, ids, None, start, k=k, query=None if query is None else [query],
                             image_grid_thw=grids[0], video_grid_thw=grids[1], visual=visual)[0]

    @torch.inference_mode()
    def encode_visual(self, batch: BatchInputs) -> dict[int, tuple[torch.Tensor, list[torch.Tensor]]]:
        """Visual tokens and DeepStack features per placeholder token id, for `Qwen3VL.forward(visual=...)`.

        Each image or video is encoded once per engine: items are looked up by their content hash (source bytes
        plus processing settings) and only unseen ones go through the vision tower, together in one call."""
        t0 = time.perf_counter()
        cfg = self.model.config
        out, fresh = {}, {}
        for token_id, pixels, grids, hashes in (
                (cfg.image_token_id, batch.pixel_values, batch.image_grid_thw, batch.image_hashes),
                (cfg.video_token_id, batch.pixel_values_videos, batch.video_grid_thw, batch.video_hashes)):
            if pixels is None:
                continue
            rows = grids.prod(-1).tolist()  # patches per item
            first = {h: i for i, h in reversed(list(enumerate(hashes)))}  # first occurrence of each item
            missing = sorted(i for h, i in first.items() if h not in self.vision_cache)
            if missing:
                parts = torch.split(pixels, rows)
                tokens, deepstack = self.model.model.visual(torch.cat([parts[i] for i in missing]), grids[missing])
                sizes = [rows[i] // cfg.vision.merge_unit for i in missing]
                for j, (i, t) in enumerate(zip(missing, torch.split(tokens, sizes))):
                    fresh[hashes[i]] = (t, [d.split(sizes)[j] for d in deepstack])
                    self._remember(hashes[i], fresh[hashes[i]])
            for h in hashes:
                if h in self.vision_cache:
                    self.vision_cache.move_to_end(h)
            items = [fresh[h] if h in fresh else self.vision_cache[h] for h in hashes]  # fresh: may be evicted
            out[token_id] = (torch.cat([t for t, _ in items]),
                             [torch.cat(level) for level in zip(*(d for _, d in items))])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings.vision += time.perf_counter() - t0
        return out

    def _remember(self, key: str, value: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
        if not self.vision_cache_limit:
            return
        self.vision_cache[key] = value
        size = lambda v: v[0].nbytes + sum(d.nbytes for d in v[1])  # noqa: E731
        self.vision_cache_bytes += size(value)
        while self.vision_cache_bytes > self.vision_cache_limit and len(self.vision_cache) > 1:
            _, old = self.vision_cache.popitem(last=False)
            self.vision_cache_bytes -= size(old)

    def _reply(self, out: GenerationOutput, prompt_tokens: int) -> Reply:
        text = out.text if out.text is not None else self.processor.tokenizer.decode(out.token_ids)
        reasoning, answer = split_reasoning(text)
        return Reply(text, out.token_ids, out.finish_reason, reasoning, answer, int(prompt_tokens), out.logprobs)


def _row_visual(batch: BatchInputs, visual: dict, row: int, cfg: Any) -> tuple[dict, tuple]:
    """The visual tokens and grids of one row of a batch (items are listed across the batch in prompt order)."""
    out, grids = {}, []
    for token_id, grid in ((cfg.image_token_id, batch.image_grid_thw), (cfg.video_token_id, batch.video_grid_thw)):
        if token_id not in visual:
            grids.append(None)
            continue
        per_row = (batch.input_ids == token_id).logical_and(batch.attention_mask == 1).sum(-1).tolist()
        merge = cfg.vision.merge_unit
        sizes = (grid.prod(-1) // merge).tolist()
        # items of earlier rows: skip whole items until their token counts add up to the rows before
        skip, first = sum(per_row[:row]), 0
        while skip > 0:
            skip -= sizes[first]
            first += 1
        last, need = first, per_row[row]
        while need > 0:
            need -= sizes[last]
            last += 1
        lo, hi = sum(sizes[:first]), sum(sizes[:last])
        if last > first:
            tokens, deep = visual[token_id]
            out[token_id] = (tokens[lo:hi], [d[lo:hi] for d in deep])
        grids.append(grid[first:last] if last > first else None)
    return out, tuple(grids)


def check_pixels(conversations: list, batch: BatchInputs, patch_area: int, limit: int) -> None:
    """InputError when one conversation's images and videos add up to more than `limit` processed pixels."""
    counts = [[it.kind for it in media_items(c, i)] for i, c in enumerate(as_batch(conversations)[0])]
    grids = {"image": iter(batch.image_grid_thw.prod(-1).tolist() if batch.image_grid_thw is not None else []),
             "video": iter(batch.video_grid_thw.prod(-1).tolist() if batch.video_grid_thw is not None else [])}
    for i, kinds in enumerate(counts):
        pixels = sum(next(grids[k]) for k in kinds) * patch_area
        if pixels > limit:
            raise InputError(f"conversation {i}: its images and videos come to {pixels} pixels after resizing, "
                             f"over the limit of {limit} per request; send fewer or smaller (max_pixels) media")


def check_token_ids(params: GenerationParams, vocab_size: int, source: object) -> None:
    """CheckpointError when an eos token id lies outside the model's vocabulary (it could never be sampled)."""
    bad = [i for i in params.eos_token_ids if not 0 <= i < vocab_size]
    if bad:
        raise CheckpointError(f"{source}: eos_token_id {bad[0]} is outside the vocabulary [0, {vocab_size})")


def checkpoint_fingerprint(path: Path) -> str:
    """sha256 over config.json and the weight files. Files up to 256 MiB are hashed whole; larger ones by size,
    safetensors header and 1 MiB from each end (a fingerprint, recorded as such, not a content hash)."""
    h = hashlib.sha256()
    h.update((path / "config.json").read_bytes())
    for f in sorted(path.glob("*.safetensors")):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with f.open("rb") as fh:
            if size <= 256 << 20:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            else:
                n = int.from_bytes(fh.read(8), "little")
                h.update(fh.read(min(n, 100 << 20)))
                h.update(fh.read(1 << 20))
                fh.seek(size - (1 << 20))
                h.update(fh.read())
    return h.hexdigest()


def model_info(name: str, path: Path, device: torch.device, dtype: torch.dtype,
               thinking: bool | None = None) -> dict[str, Any]:
    """What a results file records about the model and the software it ran on. `thinking`: a Thinking
    checkpoint, from its chat template (`Processor.thinking`; read here when None) or a name ending in Thinking."""
    if thinking is None:
        thinking = Processor.from_pretrained(path).thinking
    thinking = thinking or any("thinking" in Path(str(n)).name.lower() for n in (name, path))
    revision = None
    try:  # a Hub snapshot folder is named by its commit
        if path.resolve().is_relative_to(hub_cache_dir().resolve()):
            revision = path.resolve().name
    except OSError:
        pass
    cfg = json.loads((path / "config.json").read_text())
    return {
        "model": name,
        "path": str(path),
        "model_type": cfg.get("model_type"),
        "revision": revision,
        "checkpoint_sha256": checkpoint_fingerprint(path),
        "dtype": dtype_name(dtype),
        "device": device_label(device),
        "versions": software_versions(),
        "thinking": thinking,
    }
