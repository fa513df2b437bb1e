"""Images named by task data (HF image structs, lazy arrow cells, paths, PIL images) as processor sources.

Task data is untrusted: a path must stay inside the task's media roots, and an image whose header declares more
pixels than the processor accepts is refused before it is decoded. Both, and the decoding itself, are the
processor's (`qwen3vl_eval.processor.media.resolve_source` with the roots, `processor.image.decode_image`), so an
image decodes the same in `run` as in `generate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qwen3vl_eval.processor.media import Source, resolve_source


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


def image_source(ref: Any, roots: tuple[Path, ...] = ()) -> Source:
    """The processor source of an image as task data holds it: embedded bytes, or a path that must name a file
    inside one of `roots`. ProcessorError for a path outside them or not found."""
    return resolve_source(ref.get() if isinstance(ref, LazyCell) else ref, roots=tuple(roots), kind="image")


def checked_image(ref: Any, roots: tuple[Path, ...]) -> Source:
    """`image_source`, decoded (once; the processor reuses it): a broken image or a decompression bomb is a
    ProcessorError here, before the sample reaches a backend."""
    from qwen3vl_eval.processor.image import decode_image  # imports torch: only once media are checked

    source = image_source(ref, roots)
    decode_image(source)
    return source
