"""Reading untrusted JSON (messages files, checkpoint configs, data files, HTTP bodies) with bounds: a size cap
checked before reading, UTF-8 decoding, and a nesting limit, each failure one `InputError` line naming the
source. Python's `json` recurses once per nesting level, so a deep document is a `RecursionError` there (and in
every walker after it); here it is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qwen3vl_eval.errors import InputError

MAX_DEPTH = 64  # a conversation is 4 levels deep; configs and data rows a few more
MAX_CONFIG_BYTES = 16 << 20  # config.json, index and generation/processor configs
MAX_MESSAGES_BYTES = 16 << 20  # a messages file, inline base64 media included (large media: pass paths)
MAX_LINE_BYTES = 64 << 20  # one JSONL record (a data row may embed an image)
MAX_JSON_DATA_BYTES = 1 << 30  # a data file that is one JSON list


def nesting_depth(value: Any) -> int:
    """How deeply lists and dicts nest in `value` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node if isinstance(child, (list, dict)))
    return deepest


def loads(text: str | bytes, where: str, *, max_depth: int = MAX_DEPTH, error: type[InputError] = InputError,
          ) -> Any:
    """Parse JSON text; `error(f"{where}: ...")` when it is not UTF-8, not JSON or nested over `max_depth`."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise error(f"{where}: JSON nested deeper than {max_depth} levels") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise error(f"{where}: not valid JSON ({e})") from None
    if nesting_depth(value) > max_depth:
        raise error(f"{where}: JSON nested deeper than {max_depth} levels")
    return value


def read_bytes(path: str | os.PathLike, max_bytes: int, *, what: str = "file",
               error: type[InputError] = InputError) -> bytes:
    """A file's bytes, refused (one line naming it) when missing, unreadable or larger than `max_bytes`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise error(f"{path}: {what} of {size} bytes is over the {max_bytes} byte limit")
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, expected a {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if len(data) > max_bytes:  # grew while being read, or a special file
        raise error(f"{path}: {what} is over the {max_bytes} byte limit")
    return data


def read_json(path: str | os.PathLike, *, max_bytes: int = MAX_CONFIG_BYTES, what: str = "JSON file",
              error: type[InputError] = InputError, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON file parsed with the bounds above."""
    return loads(read_bytes(path, max_bytes, what=what, error=error), str(path), max_depth=max_depth,
                 error=error)


def read_object(path: str | os.PathLike, *, error: type[InputError] = InputError,
                max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """A JSON file that must hold one object (a config file)."""
    value = read_json(path, max_bytes=max_bytes, error=error)
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_text(path: str | os.PathLike, max_bytes: int, *, what: str = "file",
              error: type[InputError] = InputError) -> str:
    """A UTF-8 text file, bounded; a file that is not UTF-8 is one line naming it."""
    data = read_bytes(path, max_bytes, what=what, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_jsonl(path: str | os.PathLike, *, what: str = "JSONL file", error: type[InputError] = InputError,
               max_line_bytes: int | None = None) -> list[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSONL file; errors name `path:line`. Lines over
    `max_line_bytes` (default `MAX_LINE_BYTES`) are refused (the file is read line by line, never whole)."""
    path = Path(path)
    max_line_bytes = max_line_bytes or MAX_LINE_BYTES
    out = []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what} ({e.strerror or e})") from None
    with f:
        for i, line in enumerate(iter(lambda: f.readline(max_line_bytes + 1), b""), 1):
            if len(line) > max_line_bytes:
                raise error(f"{path}:{i}: line over the {max_line_bytes} byte limit")
            if line.strip():
                out.append((i, loads(line, f"{path}:{i}", error=error)))
    return out
