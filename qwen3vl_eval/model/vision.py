"""The Qwen3-VL vision tower: patches -> ViT blocks -> 2x2 patch merger, plus the DeepStack mergers that tap
intermediate blocks.

Reference: transformers 5.23 `models/qwen3_vl/modeling_qwen3_vl.py` (`Qwen3VLVisionModel` and its parts);
research/qwen3vl_spec.md section 1. Attribute names are the checkpoint's (`model.visual.blocks.{i}.attn.qkv`).

Differences from the reference that do not change the maths: the Conv3d patch embedding is one linear map over
the flattened patch (kernel == stride), and attention runs on segments of equal length batched together
instead of one segment at a time (no block-diagonal mask); the per-grid tables (segments, position-embedding
taps, rotary cos/sin) are built on the weights' device once per grid and cached.

Legend: N patches (pixel_values rows), C vision hidden size, H heads, d head dim, P = C_in*T*p*p patch width,
m spatial merge size, C4 = C*m*m, D_out text hidden size.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qwen3vl_eval.model.config import VisionConfig
from qwen3vl_eval.model.rope import apply_rope, inv_freq, pos_embed_taps, vision_cos_sin

LAYER_NORM_EPS = 1e-6  # hard-coded in the reference, not a config field
GRID_TABLES = 16  # grids whose segments, position taps and rotary tables stay cached (most recent first)


class VisionTower(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config)
        self.pos_embed = nn.Embedding(config.num_position_embeddings, config.hidden_size)
        self.blocks = nn.ModuleList(VisionBlock(config) for _ in range(config.depth))
        self.merger = PatchMerger(config, postshuffle_norm=False)
        self.deepstack_merger_list = nn.ModuleList(
            PatchMerger(config, postshuffle_norm=True) for _ in config.deepstack_visual_indexes
        )
        self._tables: OrderedDict[tuple, tuple[Segments, Tensor, Tensor, Tensor, Tensor]] = OrderedDict()

    def forward(self, pixel_values: Tensor, grid_thw: Tensor,
                capture: dict[str, Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        """pixel_values [N, P], grid_thw [n_items, 3] (T, H, W in patches) -> visual tokens [N/m², D_out] and
        one DeepStack feature [N/m², D_out] per tap. `capture` receives vision.* intermediates."""
        cfg = self.config
        segments, index, weight, cos, sin = self.grid_tables(grid_thw)
        x = self.patch_embed(pixel_values)  # [N, C]
        if capture is not None:
            capture["vision.patch_embed"] = x
        pos = (self.pos_embed.weight[index] * weight[..., None]).sum(1)  # [N, 4, C] -> [N, C], fp32 weights
        x = x + pos.to(x.dtype)
        deepstack = []
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, segments)
            if capture is not None:
                capture[f"vision.blocks.{i}"] = x
            if i in cfg.deepstack_visual_indexes:
                j = cfg.deepstack_visual_indexes.index(i)
                deepstack.append(self.deepstack_merger_list[j](x))  # [N/m², D_out]
                if capture is not None:
                    capture[f"vision.deepstack.{j}"] = deepstack[-1]
        tokens = self.merger(x)  # [N/m², D_out]
        if capture is not None:
            capture["vision.merger"] = tokens
        return tokens, deepstack


    def grid_tables(self, grid_thw: Tensor) -> tuple[Segments, Tensor, Tensor, Tensor, Tensor]:
        """Per-grid bookkeeping, built on the weights' device and cached per (grids, device): the attention
        segments, the position-embedding taps (index, fp32 weight) [N, 4] and the rotary cos/sin [N, d] fp32."""
        device = self.pos_embed.weight.device
        key = (tuple(map(tuple, grid_thw.tolist())), str(device))  # one host read of the small grid tensor
        if key in self._tables:
            self._tables.move_to_end(key)
            return self._tables[key]
        cfg = self.config
        side = int(cfg.num_position_embeddings**0.5)
        grid = grid_thw.to(device)
        freqs = inv_freq(cfg.head_dim // 2, cfg.rope_theta).to(device)  # [d/4]
        tables = (Segments.from_grid(grid_thw.cpu(), device), *pos_embed_taps(grid, side, cfg.spatial_merge_size),
                  *vision_cos_sin(grid, cfg.spatial_merge_size, freqs))
        self._tables[key] = tables
        while len(self._tables) > GRID_TABLES:
            self._tables.popitem(last=False)
        return tables


class PatchEmbed(nn.Module):
    """Conv3d with kernel == stride over one (C_in, T, p, p) patch == a linear map of the flattened patch."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.proj = PatchProj(config)

    def forward(self, pixel_values: Tensor) -> Tensor:
        w = self.proj.weight
        return F.linear(pixel_values.to(w.dtype), w.view(w.shape[0], -1), self.proj.bias)  # [N, P] -> [N, C]


class PatchProj(nn.Module):
    """Holds the checkpoint's Conv3d weight [C, C_in, T, p, p] and bias [C] (no forward of its own)."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        c, p = config.hidden_size, config.patch_size
        self.weight = nn.Parameter(torch.empty(c, config.in_channels, config.temporal_patch_size, p, p))
        self.bias = nn.Parameter(torch.empty(c))


class VisionBlock(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=LAYER_NORM_EPS)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=LAYER_NORM_EPS)
        self.attn = VisionAttention(config)
        self.mlp = VisionMLP(config)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, segments: Segments) -> Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, segments)
        return x + self.mlp(self.norm2(x))


class VisionAttention(nn.Module):
    """Bidirectional attention within each segment (one image, or one temporal group of a video)."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, segments: Segments) -> Tensor:
        N, C = x.shape
        q, k, v = self.qkv(x).view(N, 3, self.num_heads, self.head_dim).unbind(1)  # [N, H, d] each
        cos, sin = cos[:, None, :], sin[:, None, :]  # [N, 1, d] fp32
        q = apply_rope(q.float(), cos, sin).to(x.dtype)  # rotary in fp32, as the reference
        k = apply_rope(k.float(), cos, sin).to(x.dtype)
        out = segments.attend(q, k, v, scale=self.head_dim**-0.5)  # [N, H, d]
        return self.proj(out.reshape(N, C))


class VisionMLP(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.linear_fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.linear_fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_fc2(F.gelu(self.linear_fc1(x), approximate="tanh"))


class PatchMerger(nn.Module):
    """Concatenate each 2x2 window of patches (consecutive rows) and project to the text width. The final merger
    normalises each patch before the shuffle; the DeepStack mergers normalise the shuffled C4 vector."""

    def __init__(self, config: VisionConfig, postshuffle_norm: bool) -> None:
        super().__init__()
        self.postshuffle_norm = postshuffle_norm
        self.width = config.hidden_size * config.merge_unit  # C4
        self.norm = nn.LayerNorm(self.width if postshuffle_norm else config.hidden_size, eps=LAYER_NORM_EPS)
        self.linear_fc1 = nn.Linear(self.width, self.width)
        self.linear_fc2 = nn.Linear(self.width, config.out_hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        if self.postshuffle_norm:
            x = self.norm(x.view(-1, self.width))  # [N/m², C4]
        else:
            x = self.norm(x).view(-1, self.width)  # [N, C] -> [N/m², C4]
        return self.linear_fc2(F.gelu(self.linear_fc1(x)))  # exact (erf) GELU here, tanh in the blocks


@dataclass
class Segments:
    """The attention segments of a packed patch sequence, grouped by length so that each group is one batched
    SDPA call over [n_seg, H, len, d] with no mask. `rows[g]` [n_seg, len] are the patch rows of group g's
    segments, or None when the group is the whole sequence in order (then a reshape is enough)."""

    lengths: list[int]
    rows: list[Tensor | None]

    @classmethod
    def from_grid(cls, grid_thw: Tensor, device: torch.device) -> Segments:
        seg_len = [h * w for t, h, w in grid_thw.tolist() for _ in range(t)]  # one segment per frame group
        starts = [0]
        for n in seg_len[:-1]:
            starts.append(starts[-1] + n)
        if len(set(seg_len)) <= 1:
            return cls(lengths=seg_len[:1], rows=[None])
        lengths, rows = [], []
        for n in sorted(set(seg_len)):
            first = torch.tensor([s for s, m in zip(starts, seg_len) if m == n])  # [n_seg]
            lengths.append(n)
            rows.append((first[:, None] + torch.arange(n)).to(device))  # [n_seg, len]
        return cls(lengths=lengths, rows=rows)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
        """Softmax attention of q, k, v [N, H, d] within each segment -> [N, H, d]."""
        N, H, d = q.shape
        if self.rows == [None]:
            n = self.lengths[0]
            q, k, v = (t.view(N // n, n, H, d).transpose(1, 2) for t in (q, k, v))  # [n_seg, H, len, d]
            out = F.scaled_dot_product_attention(q, k, v, scale=scale)
            return out.transpose(1, 2).reshape(N, H, d)
        out = torch.empty_like(q)
        for rows in self.rows:
            qg, kg, vg = (t[rows].transpose(1, 2) for t in (q, k, v))  # [n_seg, len, H, d] -> [n_seg, H, len, d]
            out[rows] = F.scaled_dot_product_attention(qg, kg, vg, scale=scale).transpose(1, 2)
        return out
