"""Small deterministic media for tests."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: int = 8, fps: int = 4, size: tuple[int, int] = (96, 64),
                codec: str = "libx264") -> Path:
    """A clip whose red channel steps with the frame index and whose left half is green; `size` is (W, H)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            arr = np.zeros((size[1], size[0], 3), np.uint8)
            arr[..., 0] = 30 * i % 256
            arr[:, : size[0] // 2, 1] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
