"""Position math of Qwen3-VL: the ViT's 2D rotary embedding and learned-grid interpolation, the decoder's
interleaved 3-axis MRoPE, and `rope_index`, the (t, h, w) position ids of a prompt.

Reference: transformers 5.23 `models/qwen3_vl/modeling_qwen3_vl.py` (`Qwen3VLVisionRotaryEmbedding`,
`Qwen3VLTextRotaryEmbedding`, `get_rope_index`) and `vision_utils.py`; research/qwen3vl_spec.md sections 1.3,
1.4, 2.1 and 4. Everything here is integer bookkeeping or elementwise maths on small tables: no weights.

Legend: B batch, L sequence, N patches, F rotary frequencies (= D/2), D head dim, m spatial merge size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from qwen3vl_eval.model.config import Qwen3VLConfig


# ------------------------------------------------------------------------------------------------ shared
def inv_freq(dim: int, theta: float) -> Tensor:
    """Rotary inverse frequencies theta^(-2j/dim), j < dim/2, in fp32 on the CPU (as the reference builds them)."""
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device="cpu") / dim))  # [dim/2]


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x * cos + rotate_half(x) * sin; cos/sin broadcast against x."""
    return x * cos + rotate_half(x) * sin


# ------------------------------------------------------------------------------------------------ vision
def patch_coords(grid_thw: Tensor, merge: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(row, col) of every patch within its own frame, in the merge-window order of `pixel_values` rows
    (window row, window col, row in window, col in window), repeated for each temporal group; plus each
    patch's frame height and width. All [N] int64."""
    counts = grid_thw.prod(-1)  # [n_items]
    heights = grid_thw[:, 1].repeat_interleave(counts)  # [N]
    widths = grid_thw[:, 2].repeat_interleave(counts)  # [N]
    starts = F.pad(counts.cumsum(0)[:-1], (1, 0)).repeat_interleave(counts)  # [N] first row of the item
    within = (torch.arange(int(counts.sum()), device=grid_thw.device) - starts) % (heights * widths)
    windows_per_row = widths // merge
    window = within // (merge * merge)
    row = (window // windows_per_row) * merge + (within // merge) % merge
    col = (window % windows_per_row) * merge + within % merge
    return row, col, heights, widths


def _bilinear_taps(index: Tensor, size: Tensor, side: int) -> tuple[Tensor, Tensor]:
    """The 2 taps and weights, along one axis, that sample a `side`-long table at `index` of a `size`-long
    axis with align_corners=True. Weights are the linear hat kernel 1 - |distance|, in fp32."""
    src = index.to(torch.float32) * (side - 1) / torch.clamp(size - 1, min=1)  # [N] source coordinate
    lo = torch.floor(src)
    offsets = torch.arange(2, device=index.device)  # lo, lo + 1
    taps = (lo.long()[:, None] + offsets).clamp(0, side - 1)  # [N, 2]
    weights = (1 - (src[:, None] - lo[:, None] - offsets).abs()).clamp(min=0)  # [N, 2]
    return taps, weights


def pos_embed_taps(grid_thw: Tensor, side: int, merge: int) -> tuple[Tensor, Tensor]:
    """Bilinear (align_corners) resampling of the learned side x side position grid to each item's patch grid:
    per patch, 4 row-major table indices and their fp32 weights, in `pixel_values` row order. [N, 4] each."""
    row, col, heights, widths = patch_coords(grid_thw, merge)
    r_taps, r_w = _bilinear_taps(row, heights, side)
    c_taps, c_w = _bilinear_taps(col, widths, side)
    index = (r_taps[:, :, None] * side + c_taps[:, None, :]).reshape(-1, 4)  # [N, 4] (r0c0, r0c1, r1c0, r1c1)
    weight = (r_w[:, :, None] * c_w[:, None, :]).reshape(-1, 4)  # [N, 4]
    return index, weight


def vision_cos_sin(grid_thw: Tensor, merge: int, freqs: Tensor) -> tuple[Tensor, Tensor]:
    """cos/sin of the ViT's 2D rotary embedding, fp32 [N, D]: angles [row * f | col * f], duplicated."""
    row, col, _, _ = patch_coords(grid_thw, merge)
    angles = torch.stack([row, col], dim=-1)[..., None].float() * freqs.to(row.device)  # [N, 2, D/4]
    angles = angles.flatten(1)  # [N, D/2]
    emb = torch.cat([angles, angles], dim=-1)  # [N, D]
    return emb.cos(), emb.sin()


# ------------------------------------------------------------------------------------------------ text
def mrope_axis(n_freq: int, mrope_section: tuple[int, int, int]) -> Tensor:
    """Axis (0 = t, 1 = h, 2 = w) of each rotary frequency channel: interleaved t h w t h w ..., each axis
    stopping after its section, the remaining channels t. [F] int64."""
    j = torch.arange(n_freq, device="cpu")
    axis = torch.zeros(n_freq, dtype=torch.long, device="cpu")
    axis[(j % 3 == 1) & (j < 3 * mrope_section[1])] = 1
    axis[(j % 3 == 2) & (j < 3 * mrope_section[2])] = 2
    return axis


def mrope_cos_sin(position_ids: Tensor, freqs: Tensor, axis: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos/sin of the interleaved MRoPE for position ids [3, B, L]: channel j rotates by
    pos[axis[j]] * freqs[j]; computed in fp32, returned in `dtype` as [B, L, D]."""
    pos = position_ids[axis].permute(1, 2, 0)  # [B, L, F] the position each channel reads
    angles = pos.float() * freqs  # [B, L, F]
    emb = torch.cat([angles, angles], dim=-1)  # [B, L, D]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rope_index(input_ids: Tensor, image_grid_thw: Tensor | None, video_grid_thw: Tensor | None,
               attention_mask: Tensor | None, config: Qwen3VLConfig) -> tuple[Tensor, Tensor]:
    """MRoPE position ids of a (left-padded) prompt and the per-row offset that continues them.

    Text tokens count up on all three axes; the tokens of an image (or of one temporal group of a video: video
    grids are split per frame group) take t = start, h = start + row, w = start + col over the merged grid,
    and the count resumes at start + max(rows, cols). Grids are consumed in order across the batch. Positions
    are computed on the real tokens of each row; padded slots get 0.

    Returns position_ids [3, B, L] int64 and rope_deltas [B, 1] int64 such that the token in cache slot s >= L
    has position s + rope_deltas (all three axes). Unlike transformers' `rope_deltas`, which pairs with
    `attention_mask.cumsum`, ours counts padded slots, so it equals theirs minus the row's padding.
    """
    B, L = input_ids.shape
    merge = config.vision.spatial_merge_size
    grids = {config.image_token_id: [], config.video_token_id: []}
    if image_grid_thw is not None:
        grids[config.image_token_id] = image_grid_thw.tolist()
    if video_grid_thw is not None:
        grids[config.video_token_id] = [[1, h, w] for t, h, w in video_grid_thw.tolist() for _ in range(t)]
    next_grid = {k: 0 for k in grids}
    ids_cpu = input_ids.cpu()
    mask = torch.ones_like(ids_cpu, dtype=torch.bool) if attention_mask is None else attention_mask.cpu().bool()
    position_ids = torch.zeros(3, B, L, dtype=torch.long)
    deltas = torch.zeros(B, 1, dtype=torch.long)
    for b in range(B):
        ids = ids_cpu[b][mask[b]]  # [n] real tokens
        kind = torch.zeros_like(ids)
        for token_id in grids:
            kind[ids == token_id] = token_id
        # Maximal runs of equal kind: text runs, or vision runs (one or more consecutive grids).
        bounds = (torch.nonzero(kind[1:] != kind[:-1]).flatten() + 1).tolist()
        parts, cur = [], 0
        for start, end in zip([0] + bounds, bounds + [len(ids)]):
            token_id = int(kind[start])
            if token_id == 0:
                parts.append(torch.arange(cur, cur + end - start).expand(3, -1))
                cur += end - start
                continue
            while start < end:  # one grid per frame group
                if next_grid[token_id] >= len(grids[token_id]):
                    raise ValueError(f"more vision placeholder tokens ({token_id}) than grids describe")
                _, h, w = grids[token_id][next_grid[token_id]]
                next_grid[token_id] += 1
                h, w = h // merge, w // merge
                rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
                parts.append(torch.stack([torch.zeros(h * w, dtype=torch.long), rows.flatten(), cols.flatten()]) + cur)
                cur += max(h, w)
                start += h * w
            if start != end:
                raise ValueError("vision placeholder tokens do not match the grids' token counts")
        pos = torch.cat(parts, dim=1) if parts else torch.zeros(3, 0, dtype=torch.long)  # [3, n]
        position_ids[:, b, mask[b]] = pos
        deltas[b] = (int(pos.max()) + 1 if pos.numel() else 0) - L
    return position_ids.to(input_ids.device), deltas.to(input_ids.device)


def decode_position_ids(input_pos: Tensor, rope_deltas: Tensor) -> Tensor:
    """MRoPE position ids [3, B, S] of tokens in cache slots `input_pos` [S] that follow a prompt (text)."""
    return (input_pos[None, :] + rope_deltas).expand(3, -1, -1)  # [3, B, S]
