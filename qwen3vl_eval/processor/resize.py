"""The size rule of images and video frames (transformers' and qwen-vl-utils' `smart_resize`); no torch here, so
settings can be checked before torch is imported."""

from __future__ import annotations

import math

MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, factor: int = 32, min_pixels: float = 65536,
                 max_pixels: float = 16777216, *, qwen_vl_utils: bool = False) -> tuple[int, int]:
    """Target (height, width): multiples of `factor`, area within [min_pixels, max_pixels], aspect kept as
    far as possible. Python `round` (half to even), as transformers. ValueError beyond aspect ratio 200.
    `qwen_vl_utils=True` rounds as qwen-vl-utils 0.0.14 does: each side at least `factor` before the bounds
    are checked, none after shrinking (a side that shrinks to 0 is a ValueError)."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.1f} is over "
                         f"{MAX_ASPECT_RATIO}")
    floor = factor if qwen_vl_utils else 0  # the smallest side before the bounds
    h_bar = max(floor, round(height / factor) * factor)
    w_bar = max(floor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        least = 0 if qwen_vl_utils else factor  # the smallest side after shrinking
        h_bar = max(least, math.floor(height / beta / factor) * factor)
        w_bar = max(least, math.floor(width / beta / factor) * factor)
        if not h_bar or not w_bar:
            raise ValueError(f"{width}x{height} shrinks to a side of 0 within {max_pixels:g} pixels")
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
