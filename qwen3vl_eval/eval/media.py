"""Images named by task data: HF image structs, lazy arrow cells, paths confined to the media roots, PIL images.

Task data is untrusted: a path must stay inside the task's media roots (`find_confined`), and an image whose header
declares more pixels than the processor accepts is refused before it is decoded (`checked_image`).
"""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path
from typing import Any

from PIL import Image

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.processor.image import max_image_pixels


class LazyCell:
    """One cell of a (memory-mapped) arrow column, converted to Python only when asked."""

    def __init__(self, column: Any, index: int):
        self.column, self.index = column, index

    def get(self) -> Any:
        return self.column[self.index].as_py()

    @property
    def is_valid(self) -> bool:
        """False for a null cell (no image in this row)."""
        return bool(self.column[self.index].is_valid)


def open_image(ref: Any, roots: tuple[Path, ...] = ()) -> Image.Image:
    """An image as HF stores it ({"bytes", "path"}), a lazy arrow cell, a path, or a PIL image -> PIL image.

    A path comes from task data, so it must name a file inside one of `roots` (see `find_confined`); embedded
    bytes need no file."""
    if isinstance(ref, Image.Image):
        return ref
    if isinstance(ref, LazyCell):
        ref = ref.get()
    if isinstance(ref, dict):
        data = ref.get("bytes")
        if data:
            if isinstance(data, str):
                data = base64.b64decode(data)
            return Image.open(io.BytesIO(data))
        ref = ref.get("path")
    if isinstance(ref, str) and ref:
        p = find_confined("image", ref, roots)
        if p is None:
            raise TaskError(f"image {ref} not found (looked in {', '.join(map(str, roots))}; set --media-root)")
        return Image.open(p)
    raise TaskError(f"image {ref!r}: neither bytes nor a path")


def checked_image(ref: Any, roots: tuple[Path, ...]) -> Image.Image:
    """Open an image lazily (a path must lie inside `roots`), refuse a decompression bomb from its header size,
    then decode it as RGB."""
    with warnings.catch_warnings():  # PIL warns from 1x its limit; the processor's limit is PIL's 2x
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = open_image(ref, roots)
        except Image.DecompressionBombError as e:
            raise TaskError(f"refused as a possible decompression bomb ({e})") from None
        w, h = img.size
        limit = max_image_pixels()
        if limit is not None and w * h > limit:
            raise TaskError(f"image of {w}x{h} = {w * h} pixels is over the {limit} pixel limit "
                            "(refused as a possible decompression bomb)")
        return img.convert("RGB")


def find_confined(kind: str, name: str, roots: tuple[Path, ...] | list[Path]) -> Path | None:
    """The file `name` under the first root that has it, or None. Names come from task data, so they must stay
    inside the roots: an absolute name, a `..` component, a file whose resolved path (symlinks followed) leaves
    its root, or a name with no roots to look in raises TaskError. The roots themselves may be symlinks."""
    if Path(name).is_absolute() or ".." in Path(name).parts or not roots:
        raise TaskError(f"{kind} {name}: path escapes the media root")
    for root in roots:
        p = root / name
        if p.is_file():
            if not p.resolve().is_relative_to(root.resolve()):
                raise TaskError(f"{kind} {name}: path escapes the media root")
            return p
    return None
