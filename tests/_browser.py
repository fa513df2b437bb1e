"""Headless Chromium for page screenshots (Debian's `chromium` package), and finding drawn shapes in them by colour."""

from __future__ import annotations

import shutil
import subprocess
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image

INSTALL = "apt-get install -y chromium (Debian's package, /usr/bin/chromium)"


def chromium() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 1000) -> Image.Image:
    """A PNG screenshot of `page` opened from file:// (scripts run), at device scale 1."""
    binary = chromium()
    assert binary, f"chromium not installed: {INSTALL}"
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--force-device-scale-factor=1", f"--window-size={width},{height}", f"--screenshot={out}",
           page.resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return Image.open(out).convert("RGB")


def components(img: Image.Image, colour: str, tol: int = 24) -> list[tuple[int, int, int, int, int]]:
    """Connected regions (8-neighbour) of pixels within `tol` of `colour` (#rrggbb), largest first, as
    (x0, y0, x1, y1, pixel count) with inclusive corners."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    mask = (np.abs(np.asarray(img, dtype=np.int16) - rgb) <= tol).all(axis=2)
    seen = np.zeros_like(mask)
    out = []
    h, w = mask.shape
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        seen[y, x] = True
        queue, box, n = deque([(y, x)]), [x, y, x, y], 0
        while queue:
            cy, cx = queue.popleft()
            n += 1
            box = [min(box[0], cx), min(box[1], cy), max(box[2], cx), max(box[3], cy)]
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        out.append((*box, n))
    return sorted(out, key=lambda c: -c[4])


def extent(img: Image.Image, colour: str, min_pixels: int = 10) -> tuple[int, int, int, int]:
    """The bounding box (x0, y0, x1, y1, inclusive) of every region of `colour` with at least `min_pixels` pixels
    (an outline crossed by another shape drawn over it falls into pieces)."""
    parts = [c for c in components(img, colour) if c[4] >= min_pixels]
    assert parts, f"nothing drawn in {colour}"
    return (min(c[0] for c in parts), min(c[1] for c in parts), max(c[2] for c in parts), max(c[3] for c in parts))
