"""Reading and writing report files: JSON in (a one-line error naming the file), JSON, text and markdown tables out.

Writes are atomic and durable: a temp file beside the target, flushed and fsync'd, renamed over it, then the
folder fsync'd, so a reader (or a crash) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qwen3vl_eval import jsonio
from qwen3vl_eval.errors import InputError

_REQUIRED: Any = object()


def read_json(path: Path, *, default: Any = _REQUIRED) -> Any:
    """The JSON value in `path` (bounded as `jsonio.read_json`); InputError (`PATH: ... not found` / `PATH: not
    valid JSON (...)`) otherwise, or `default` when one is given (a file that may be missing or damaged, e.g.
    for a page that shows what is there)."""
    try:
        return jsonio.read_json(path, max_bytes=jsonio.MAX_JSON_DATA_BYTES, what="file")
    except InputError:
        if default is not _REQUIRED:
            return default
        raise


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically and durably."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON (values JSON cannot hold written as their str), atomically and durably."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (where the platform has directory file descriptors)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fmt(v: Any, digits: int = 2, none: str = "-") -> str:
    """A table value: floats to `digits` decimals, None as `none`, anything else as its str."""
    if v is None:
        return none
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def cell(v: Any, limit: int = 160, none: str = "–") -> str:
    """Any value as the text of one markdown table cell: JSON for non-strings, `|` and `\\` escaped, line
    breaks shown as ⏎, cut to `limit` characters with an ellipsis."""
    if v is None:
        return none
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    s = s.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ⏎ ")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A markdown table; cells through `fmt` (strings unchanged)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
