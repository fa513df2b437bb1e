"""Per-item video budgets in the units of Qwen's scripts: qwen-vl-utils 0.0.14 (`fetch_video`, `smart_nframes`).

A video item (or a task's `media.video`) carrying any of `KEYS` is sampled and sized by these rules instead of
the checkpoint's video processor config (which transformers follows, and which stays the default):

- frames: `nframes` (rounded to an even count), or `fps` (default 2) times the clip's length, clamped to
  [`min_frames` rounded up to even (default 4), `max_frames` rounded down to even (default min(768, N))] and to
  the N frames of the clip, then rounded down to even; it must end in [2, N];
- size, one for every frame: `min_pixels` / `max_pixels` bound ONE frame (defaults 128 and 768 tokens of
  (patch*merge)^2 pixels); `total_pixels` (default 128000 * 0.9 tokens) caps the per-frame maximum at
  total_pixels / frames * 2 (qwen-vl-utils' formula, kept as is), never below 1.05 * min_pixels;
  `resized_height` + `resized_width` (both) ask for a size directly (rounded to the factor, image bounds).

The resize rounds like qwen-vl-utils' `smart_resize` (`image.smart_resize(..., qwen_vl_utils=True)`).
tests/test_video_budget.py pins frame counts and sizes produced by qwen-vl-utils 0.0.14 itself
(reference/make_video_budget_cases.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from qwen3vl_eval.errors import ProcessorError
from qwen3vl_eval.processor.messages import INT_KEYS, VIDEO_BUDGET_KEYS, check_options
from qwen3vl_eval.processor.resize import smart_resize

FRAME_FACTOR = 2
FPS = 2.0
MIN_FRAMES = 4
MAX_FRAMES = 768
FRAME_MIN_TOKENS = 128  # per frame, in (patch*merge)^2 pixel units
FRAME_MAX_TOKENS = 768
IMAGE_MIN_TOKENS, IMAGE_MAX_TOKENS = 4, 16384  # bounds of `resized_height`/`resized_width`
MODEL_SEQ_LEN = 128000  # qwen-vl-utils reads it from $MODEL_SEQ_LEN; here it is fixed
KEYS = VIDEO_BUDGET_KEYS


def _round_by(x: float, f: int) -> int:
    return round(x / f) * f


def _ceil_by(x: float, f: int) -> int:
    return math.ceil(x / f) * f


def _floor_by(x: float, f: int) -> int:
    return math.floor(x / f) * f


@dataclass(frozen=True)
class VideoBudget:
    """The qwen-vl-utils keys one video item gave (None: qwen-vl-utils' default)."""

    fps: float | None = None
    nframes: int | None = None
    min_frames: int | None = None
    max_frames: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: float | None = None
    resized_height: int | None = None
    resized_width: int | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> VideoBudget | None:
        """The budget of an item's options (`KEYS`), None when it gives none; checked by `messages.check_options`
        (ProcessorError naming the key)."""
        given = check_options("video", {k: v for k, v in options.items() if v is not None})
        if "video_processor" in given:
            raise ProcessorError("video_processor is not a budget key")
        if not given:
            return None
        return cls(**{f.name: (int(given[f.name]) if f.name in INT_KEYS else given[f.name])
                      for f in fields(cls) if f.name in given})

    def frame_count(self, total_frames: int, native_fps: float) -> int:
        """qwen-vl-utils' `smart_nframes`: how many frames of a clip of `total_frames` at `native_fps`."""
        if self.nframes is not None:
            n = _round_by(self.nframes, FRAME_FACTOR)
        else:
            fps = self.fps if self.fps is not None else FPS
            low = _ceil_by(self.min_frames if self.min_frames is not None else MIN_FRAMES, FRAME_FACTOR)
            high = _floor_by(self.max_frames if self.max_frames is not None else min(MAX_FRAMES, total_frames),
                             FRAME_FACTOR)
            n = _floor_by(min(min(max(total_frames / native_fps * fps, low), high), total_frames), FRAME_FACTOR)
        if not FRAME_FACTOR <= n <= total_frames:
            raise ProcessorError(f"these budget keys give {n} frame(s) for a clip of {total_frames}; qwen-vl-utils "
                                 f"needs between {FRAME_FACTOR} and the clip's frame count")
        return n

    def frame_size(self, nframes: int, height: int, width: int, factor: int) -> tuple[int, int]:
        """qwen-vl-utils' `fetch_video` size of every frame, sides multiples of `factor` (patch * merge)."""
        try:
            if self.resized_height is not None and self.resized_width is not None:
                return smart_resize(self.resized_height, self.resized_width, factor, IMAGE_MIN_TOKENS * factor ** 2,
                                    IMAGE_MAX_TOKENS * factor ** 2, qwen_vl_utils=True)
            low = self.min_pixels if self.min_pixels is not None else FRAME_MIN_TOKENS * factor ** 2
            total = self.total_pixels if self.total_pixels is not None else MODEL_SEQ_LEN * factor ** 2 * 0.9
            high = max(min(FRAME_MAX_TOKENS * factor ** 2, total / nframes * FRAME_FACTOR), int(low * 1.05))
            if self.max_pixels is not None:
                high = min(self.max_pixels, high)
            if high < low:
                raise ProcessorError(f"max_pixels {self.max_pixels} is below the per-frame min_pixels {low} "
                                     f"(qwen-vl-utils' default is {FRAME_MIN_TOKENS}*{factor}*{factor}); "
                                     "give min_pixels too")
            return smart_resize(height, width, factor, low, high, qwen_vl_utils=True)
        except ValueError as e:
            raise ProcessorError(f"{width}x{height} video: {e}") from None

    def as_dict(self) -> dict[str, Any]:
        """The keys given, for records."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
