"""Qwen3-VL (dense and MoE): the glue between the vision tower and the text decoder.

Reference: transformers 5.23 `models/qwen3_vl/modeling_qwen3_vl.py` (`Qwen3VLModel.forward`,
`Qwen3VLForConditionalGeneration`); research/qwen3vl_spec.md sections 0 and 2.2. The module tree mirrors the
checkpoint keys (`model.visual.*`, `model.language_model.*`, `lm_head.weight`), so loading is a strict
name-for-name copy. The model holds no state between calls: position ids, cache slots and the cache itself
are arguments (see `rope.rope_index`, `rope.decode_position_ids`, `kv_cache.allocate_caches`).

Legend: B batch, S tokens in this forward, Hd text hidden size, V vocabulary, N patches, m spatial merge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.config import Qwen3VLConfig
from qwen3vl_eval.model.kv_cache import KVCache
from qwen3vl_eval.model.text import TextDecoder
from qwen3vl_eval.model.vision import VisionTower


class Qwen3VL(nn.Module):
    def __init__(self, config: Qwen3VLConfig) -> None:
        super().__init__()
        self.config = config
        self.model = nn.ModuleDict(dict(visual=VisionTower(config.vision), language_model=TextDecoder(config.text)))
        if not config.tie_word_embeddings:  # tied: the head is embed_tokens.weight, no lm_head in the checkpoint
            self.lm_head = nn.Linear(config.text.hidden_size, config.text.vocab_size, bias=False)

    def forward(self, input_ids: Tensor, position_ids: Tensor, *, attention_mask: Tensor | None = None,
                cache: list[KVCache] | None = None, input_pos: Tensor | None = None,
                pixel_values: Tensor | None = None, image_grid_thw: Tensor | None = None,
                pixel_values_videos: Tensor | None = None, video_grid_thw: Tensor | None = None,
                visual: dict[int, tuple[Tensor, list[Tensor]]] | None = None, last_only: bool = False,
                first: int | None = None, chunk: int | None = None,
                capture: dict[str, Tensor] | None = None) -> Tensor:
        """Logits [B, S, V] (or [B, 1, V] for the last position with `last_only`).

        input_ids [B, S]; position_ids [3, B, S] MRoPE ids (`rope_index` for a prompt, `decode_position_ids`
        after it); attention_mask [B, T] 1 = real token over key slots 0..T-1 (slots >= T count as real; None =
        no padding). With `cache` (one KVCache per layer), the tokens are written at slots input_pos [S] and
        attend over the cache; without, they attend to each other causally. `first` (host int) = input_pos[0]
        when the caller knows it: attention then reads only the written slots, with no dense mask, and a
        prompt longer than `chunk` is prefilled `chunk` tokens at a time (`TextDecoder.forward`). Images/videos: the
        processor's patches and grids; their placeholder tokens in input_ids are replaced by visual tokens.
        `visual` maps a placeholder token id to precomputed (tokens, deepstack) from `self.model.visual` (e.g.
        cached by content), used instead of running the tower on that modality's pixels.
        `capture`, a dict, receives the golden-case intermediates (vision.*, text.embed, text.layers.{i},
        text.norm) under their CONTRACTS section 2 names.
        """
        lm = self.model.language_model
        h = lm.embed_tokens(input_ids)  # [B, S, Hd]
        visual_index, deepstack = None, None
        if pixel_values is not None or pixel_values_videos is not None or visual:
            h, visual_index, deepstack = self._insert_visual(
                input_ids, h, [(self.config.image_token_id, pixel_values, image_grid_thw),
                               (self.config.video_token_id, pixel_values_videos, video_grid_thw)], visual or {},
                capture)
        if capture is not None:
            capture["text.embed"] = h
        h = lm(h, position_ids, attention_mask, cache=cache, input_pos=input_pos, first=first, chunk=chunk,
               visual_index=visual_index, deepstack=deepstack, last_only=last_only,
               capture=capture)  # [B, S, Hd], or [B, 1, Hd] with last_only
        if last_only:
            h = h[:, -1:]  # [B, 1, Hd]; with left padding the last slot is a real token
        head = lm.embed_tokens.weight if self.config.tie_word_embeddings else self.lm_head.weight
        return F.linear(h, head)  # [B, S, V]

    def _insert_visual(self, input_ids: Tensor, h: Tensor, items: list[tuple[int, Tensor | None, Tensor | None]],
                       visual: dict[int, tuple[Tensor, list[Tensor]]],
                       capture: dict[str, Tensor] | None) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Run the vision tower on the images, then on the videos; write their tokens over the placeholder rows
        (in sequence order) and return h, the flat indices of those rows [n_vis] and the DeepStack features
        aligned with them (one [n_vis, Hd] per level)."""
        B, S, Hd = h.shape
        flat = h.reshape(B * S, Hd)
        ids = input_ids.reshape(-1)
        indices: list[Tensor] = []
        levels: list[list[Tensor]] = []
        vision_capture: dict[str, list[Tensor]] = {}
        for token_id, pixels, grid in items:
            cap = {} if capture is not None else None
            if token_id in visual:
                tokens, deepstack = visual[token_id]  # precomputed by the caller
            elif pixels is None:
                continue
            elif grid is None:
                raise InputError("pixel values given without their grid_thw")
            else:
                tokens, deepstack = self.model.visual(pixels, grid, capture=cap)  # [n, Hd], levels of [n, Hd]
            index = (ids == token_id).nonzero().squeeze(1)  # [n] one host sync per modality, not per layer
            if index.numel() != tokens.shape[0]:
                raise InputError(f"{index.numel()} placeholder tokens (id {token_id}) in input_ids but the grids "
                                 f"describe {tokens.shape[0]} visual tokens")
            flat = flat.index_copy(0, index, tokens.to(flat.dtype))
            indices.append(index)
            levels.append(deepstack)
            for k, v in (cap or {}).items():
                vision_capture.setdefault(k, []).append(v)
        if capture is not None:  # vision keys: image rows first, then video rows
            capture.update({k: torch.cat(v) for k, v in vision_capture.items()})
        deepstack = [torch.cat(level) for level in zip(*levels)]  # pairs row-for-row with the indices
        return flat.view(B, S, Hd), torch.cat(indices), deepstack
