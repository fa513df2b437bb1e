"""Position maths worked by hand: pos-embed interpolation, ViT patch order, MRoPE ids and channel interleave."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS
from qwen3vl_eval.model.rope import (
    decode_position_ids,
    mrope_axis,
    mrope_cos_sin,
    patch_coords,
    pos_embed_taps,
    rope_index,
)

CFG = TINY_CONFIGS["default"]
IMG, VID, VS, VE = CFG.image_token_id, CFG.video_token_id, CFG.vision_start_token_id, CFG.vision_end_token_id


def test_patch_coords_merge_window_order():
    row, col, _, _ = patch_coords(torch.tensor([[1, 4, 6]]), merge=2)
    pairs = list(zip(row.tolist(), col.tolist()))
    assert pairs[:8] == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]  # spec 1.4
    assert pairs[12:16] == [(2, 0), (2, 1), (3, 0), (3, 1)]
    row, col, _, _ = patch_coords(torch.tensor([[2, 2, 2]]), merge=2)  # repeats per temporal group
    assert row.tolist() == [0, 0, 1, 1] * 2 and col.tolist() == [0, 1, 0, 1] * 2


def test_pos_embed_interpolation_by_hand():
    # A 3x3 table E[r, c] = 10 r + c is linear, so bilinear sampling gives 10 u + v exactly, with
    # u = i (3-1)/(2-1) = 2 i and v = j (3-1)/(4-1) = 2 j / 3 for a 2x4 patch grid (align_corners).
    table = torch.tensor([[10.0 * r + c] for r in range(3) for c in range(3)])  # [9, 1]
    index, weight = pos_embed_taps(torch.tensor([[1, 2, 4]]), side=3, merge=2)
    pe = (table[index] * weight[..., None]).sum(1).squeeze(1)
    # merge-window order: (0,0) (0,1) (1,0) (1,1) | (0,2) (0,3) (1,2) (1,3)
    expected = torch.tensor([0, 2 / 3, 20, 20 + 2 / 3, 4 / 3, 2, 20 + 4 / 3, 22])
    torch.testing.assert_close(pe, expected)
    # patch (0, 1): v = 2/3 between columns 0 and 1 of row 0; row taps (0, 1) with weights (1, 0)
    assert index[1].tolist() == [0, 1, 3, 4]
    torch.testing.assert_close(weight[1], torch.tensor([1 / 3, 2 / 3, 0, 0]))


def test_pos_embed_interpolation_matches_f_interpolate():
    side, C, H, W = 5, 3, 4, 6
    table = torch.randn(side * side, C)
    index, weight = pos_embed_taps(torch.tensor([[1, H, W]]), side=side, merge=2)
    ours = (table[index] * weight[..., None]).sum(1)  # [H*W, C] merge-window order
    grid = F.interpolate(table.T.reshape(1, C, side, side), size=(H, W), mode="bilinear", align_corners=True)
    ref = grid[0].reshape(C, H // 2, 2, W // 2, 2).permute(1, 3, 2, 4, 0).reshape(-1, C)  # window order
    torch.testing.assert_close(ours, ref)


def test_rope_index_worked_example():
    # spec 4.2: image grid (1,4,6) and video grid (2,4,4) (two frame groups), timestamps left out
    ids = ([1, 1, VS] + [IMG] * 6 + [VE, 1, 1, VS] + [VID] * 4 + [VE, 1, VS] + [VID] * 4 + [VE, 1, 1])
    pos, delta = rope_index(torch.tensor([ids]), torch.tensor([[1, 4, 6]]), torch.tensor([[2, 4, 4]]), None, CFG)
    t, h, w = pos[:, 0].tolist()
    assert t[:3] == h[:3] == w[:3] == [0, 1, 2]
    assert list(zip(t[3:9], h[3:9], w[3:9])) == [(3, 3, 3), (3, 3, 4), (3, 3, 5), (3, 4, 3), (3, 4, 4), (3, 4, 5)]
    assert t[9:13] == [6, 7, 8, 9]
    assert list(zip(t[13:17], h[13:17], w[13:17])) == [(10, 10, 10), (10, 10, 11), (10, 11, 10), (10, 11, 11)]
    assert t[17:20] == [12, 13, 14]
    assert list(zip(t[20:24], h[20:24], w[20:24])) == [(15, 15, 15), (15, 15, 16), (15, 16, 15), (15, 16, 16)]
    assert t[24:] == h[24:] == w[24:] == [17, 18, 19]
    assert delta.tolist() == [[20 - 27]]


def test_rope_index_left_padding_and_decode():
    ids = torch.tensor([[0, 0, 5, 6, 7], [5, 6, 7, 8, 9]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    pos, delta = rope_index(ids, None, None, mask, CFG)
    assert pos[0].tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]  # padded slots hold 0
    assert (pos[0] == pos[1]).all() and (pos[0] == pos[2]).all()
    assert delta.tolist() == [[-2], [0]]  # next slot 5 -> positions 3 and 5
    assert decode_position_ids(torch.tensor([5]), delta)[:, :, 0].tolist() == [[3, 5]] * 3


def test_mrope_channel_interleave():
    axis = mrope_axis(64, (24, 20, 20))
    assert "".join("THW"[a] for a in axis.tolist()) == "THW" * 20 + "TTTT"
    assert axis.bincount().tolist() == [24, 20, 20]
    assert "".join("THW"[a] for a in mrope_axis(8, (4, 2, 2)).tolist()) == "THWTHWTT"


def test_mrope_cos_sin_reads_the_right_axis():
    freqs = torch.ones(8)
    axis = mrope_axis(8, (4, 2, 2))
    pos = torch.tensor([1, 2, 3]).view(3, 1, 1)  # t=1, h=2, w=3 for one token
    cos, sin = mrope_cos_sin(pos, freqs, axis, torch.float32)
    angles = torch.tensor([1.0, 2, 3, 1, 2, 3, 1, 1])
    torch.testing.assert_close(cos[0, 0], torch.cat([angles, angles]).cos())
    torch.testing.assert_close(sin[0, 0], torch.cat([angles, angles]).sin())
