"""Model parts against direct reference formulations: segmented ViT attention, MoE dispatch paths, RMSNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS
from qwen3vl_eval.model.moe import SparseMoeBlock
from qwen3vl_eval.model.text import RMSNorm
from qwen3vl_eval.model.vision import Segments


def test_segmented_attention_equals_per_segment_loop():
    grid = torch.tensor([[1, 4, 4], [2, 2, 4], [1, 2, 2], [1, 2, 4]])  # segment lengths 16, 8, 8, 4, 8
    lengths = [16, 8, 8, 4, 8]
    N, H, d = sum(lengths), 2, 8
    q, k, v = torch.randn(3, N, H, d).unbind(0)
    seg = Segments.from_grid(grid, torch.device("cpu"))
    assert seg.lengths == [4, 8, 16]
    ours = seg.attend(q, k, v, scale=d**-0.5)
    ref, start = [], 0
    for n in lengths:
        sl = slice(start, start + n)
        att = torch.softmax(q[sl].transpose(0, 1) @ k[sl].transpose(0, 1).transpose(1, 2) * d**-0.5, dim=-1)
        ref.append((att @ v[sl].transpose(0, 1)).transpose(0, 1))
        start += n
    torch.testing.assert_close(ours, torch.cat(ref))
    one = Segments.from_grid(torch.tensor([[3, 2, 2]]), torch.device("cpu"))  # equal lengths: reshape path
    assert one.rows == [None]


def test_moe_block_matches_dense_reference_both_paths():
    cfg = TINY_CONFIGS["moe"].text
    torch.manual_seed(0)
    block = SparseMoeBlock(cfg)
    for p in block.parameters():
        p.data.normal_(0, 0.2)
    E, I = cfg.num_experts, cfg.moe_intermediate_size
    for T in (3, 40):  # 3*2 <= 8 experts: gather path; 40*2 pairs: the prefill path
        x = torch.randn(1, T, cfg.hidden_size)
        probs = F.softmax(block.gate(x[0]), dim=-1)
        w, e = probs.topk(cfg.num_experts_per_tok, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        ref = torch.zeros(T, cfg.hidden_size)
        for t in range(T):
            for j in range(cfg.num_experts_per_tok):
                gate_up = x[0, t] @ block.experts.gate_up_proj[e[t, j]]  # [2I]: gate | up
                act = F.silu(gate_up[:I]) * gate_up[I:]
                ref[t] += w[t, j] * (act @ block.experts.down_proj[e[t, j]])
        assert E == 8
        torch.testing.assert_close(block(x)[0], ref, atol=1e-5, rtol=1e-4)


def test_rmsnorm_weight_after_cast_back():
    norm = RMSNorm(4, 1e-6)
    norm.weight.data = torch.tensor([1.0, 2.0, 3.0, 4.0])
    x = torch.tensor([[1.0, -1.0, 1.0, -1.0]], dtype=torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.float32  # fp32 weight times the bf16-cast normalised input, as the reference
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 3.0, -4.0]]), atol=1e-2, rtol=0)


def test_vision_grid_tables_cached_per_grid_and_exact():
    """Segments, position taps and rotary tables are built once per grid (on the weights' device) and reused;
    the cached tower output equals a fresh one."""
    from qwen3vl_eval.checkpoints.tiny import TINY_CONFIGS
    from qwen3vl_eval.model.rope import inv_freq, pos_embed_taps, vision_cos_sin
    from qwen3vl_eval.model.vision import GRID_TABLES, VisionTower

    cfg = TINY_CONFIGS["default"].vision
    torch.manual_seed(0)
    tower = VisionTower(cfg).eval()
    for p in tower.parameters():
        p.data.normal_(0, 0.1)
    grid = torch.tensor([[1, 4, 6], [2, 2, 2]])
    pixels = torch.randn(int(grid.prod(-1).sum()), cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2)
    with torch.inference_mode():
        first = tower(pixels, grid)
        tables = tower.grid_tables(grid)
        assert tower.grid_tables(grid.clone()) is tables and len(tower._tables) == 1
        again = tower(pixels, grid)
        tower._tables.clear()
        fresh = tower(pixels, grid)
    torch.testing.assert_close(again[0], first[0], rtol=0, atol=0)
    torch.testing.assert_close(fresh[0], first[0], rtol=0, atol=0)
    side = int(cfg.num_position_embeddings**0.5)
    index, weight = pos_embed_taps(grid, side, cfg.spatial_merge_size)
    cos, _ = vision_cos_sin(grid, cfg.spatial_merge_size, inv_freq(cfg.head_dim // 2, cfg.rope_theta))
    assert torch.equal(tables[1], index) and torch.equal(tables[2], weight) and torch.equal(tables[3], cos)
    for h in range(2, 2 + GRID_TABLES + 2):  # bounded: the oldest grids are dropped
        tower.grid_tables(torch.tensor([[1, 2, 2 * h]]))
    assert len(tower._tables) == GRID_TABLES
