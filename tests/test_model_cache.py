"""The static KV cache: prefill + decode steps give the logits of one uncached forward (left padding, images)."""

from __future__ import annotations

import pytest
import torch

from qwen3vl_eval.model.kv_cache import allocate_caches, attention_mask_4d
from qwen3vl_eval.model.rope import decode_position_ids, rope_index
from qwen3vl_eval.model.weights import load_model


def _prompt(cfg):
    """Two left-padded rows: an image of grid (1, 4, 4) (4 tokens) and one of grid (1, 2, 4) (2 tokens)."""
    vs, ve, img = cfg.vision_start_token_id, cfg.vision_end_token_id, cfg.image_token_id
    rows = [[11, 12, vs, img, img, img, img, ve, 13], [14, vs, img, img, ve, 15, 16]]
    L = max(map(len, rows))
    ids = torch.tensor([[0] * (L - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (L - len(r)) + [1] * len(r) for r in rows])
    grid = torch.tensor([[1, 4, 4], [1, 2, 4]])
    pixels = torch.randn(int(grid.prod(-1).sum()), cfg.vision.patch_dim, generator=torch.Generator().manual_seed(0))
    return ids, mask, grid, pixels


@pytest.mark.parametrize("fixture", ["tiny_ckpt", "tiny_variant_ckpt", "tiny_moe_ckpt"])
def test_prefill_plus_decode_equals_full_forward(fixture, request):
    model = load_model(request.getfixturevalue(fixture), dtype=torch.float32)
    cfg = model.config
    ids, mask, grid, pixels = _prompt(cfg)
    B, L = ids.shape
    steps = torch.tensor([[21, 22, 23], [31, 32, 33]])  # fed tokens, N = 3
    N = steps.shape[1]
    pos, deltas = rope_index(ids, grid, None, mask, cfg)

    cache = allocate_caches(cfg.text, B, L + N + 2, dtype=torch.float32, device="cpu")
    step_logits = [model(ids, pos, attention_mask=mask, cache=cache, input_pos=torch.arange(L),
                         pixel_values=pixels, image_grid_thw=grid, last_only=True)]
    for i in range(N):
        slot = torch.tensor([L + i])
        step_logits.append(model(steps[:, i:i + 1], decode_position_ids(slot, deltas), attention_mask=mask,
                                 cache=cache, input_pos=slot))
    cached = torch.cat(step_logits, dim=1)  # [B, 1 + N, V]

    full_ids = torch.cat([ids, steps], dim=1)
    full_pos = torch.cat([pos, decode_position_ids(torch.arange(L, L + N), deltas)], dim=2)
    full_mask = torch.cat([mask, torch.ones(B, N, dtype=mask.dtype)], dim=1)
    full = model(full_ids, full_pos, attention_mask=full_mask, pixel_values=pixels, image_grid_thw=grid)
    torch.testing.assert_close(cached, full[:, L - 1:], atol=2e-5, rtol=1e-4)
    # the full-sequence rope_index agrees with the decode positions
    torch.testing.assert_close(rope_index(full_ids, grid, None, full_mask, cfg)[0], full_pos)


def test_last_only_matches_full(tiny_ckpt):
    model = load_model(tiny_ckpt, dtype=torch.float32)
    ids = torch.tensor([[5, 6, 7, 8]])
    pos = torch.arange(4).expand(3, 1, 4)
    torch.testing.assert_close(model(ids, pos, last_only=True), model(ids, pos)[:, -1:])


def test_mask_hides_padding_and_future_but_never_self():
    m = attention_mask_4d(torch.tensor([[0, 1, 1]]), torch.arange(3), 4)[0, 0]
    assert m.int().tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0]]
    assert attention_mask_4d(None, torch.tensor([2]), 4)[0, 0].int().tolist() == [[1, 1, 1, 0]]
