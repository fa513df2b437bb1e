"""`BatchInputs`: the model inputs of a batch of conversations (the `input.*` tensors of CONTRACTS section 2,
plus what the engine needs to cache and to explain them)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch


@dataclass
class BatchInputs:
    """Processed inputs. Images and videos are listed across the batch in prompt order."""

    input_ids: torch.Tensor  # (B, L) int64, left-padded
    attention_mask: torch.Tensor  # (B, L) int64
    mm_token_type_ids: torch.Tensor  # (B, L) int64: 0 text, 1 image pad, 2 video pad
    prompts: list[str]  # rendered and expanded, one per conversation
    pixel_values: torch.Tensor | None = None  # (P, C*T*p*p) float32
    image_grid_thw: torch.Tensor | None = None  # (n_images, 3) int64
    pixel_values_videos: torch.Tensor | None = None  # (P, C*T*p*p) float32
    video_grid_thw: torch.Tensor | None = None  # (n_videos, 3) int64
    image_hashes: list[str] = field(default_factory=list)  # content hash per image
    video_hashes: list[str] = field(default_factory=list)  # content hash per video
    video_timestamps: list[list[float]] = field(default_factory=list)  # seconds per frame group, per video
    video_frame_indices: list[list[int]] = field(default_factory=list)  # sampled frame indices, per video
    video_fps: list[float | None] = field(default_factory=list)  # native frame rate, per video

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> BatchInputs:
        """A copy on `device`; floating-point tensors are also cast to `dtype` when given."""
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(device=device, dtype=dtype if dtype is not None and v.is_floating_point() else None)
            moved[f.name] = v
        return replace(self, **moved)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The `input.*` tensors of CONTRACTS section 2 that are present, under their golden key names."""
        names = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "pixel_values_videos",
                 "video_grid_thw")
        return {f"input.{n}": getattr(self, n) for n in names if getattr(self, n) is not None}
