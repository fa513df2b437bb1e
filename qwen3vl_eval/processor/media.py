"""Where image and video bytes come from: local paths (relative ones against a base folder), `file://` URLs,
`http(s)://` URLs, `data:` URIs and bare base64, objects already in memory (PIL images, bytes), images as
Hugging Face datasets store them (`{"bytes", "path"}`), and names from task data, which must stay inside the
task's media roots (`find_confined`).

Loading is separate from decoding (`image.decode_image`, `video.decode_clip`) so that a content hash can be
taken of the source bytes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3vl_eval.errors import ProcessorError

URL_TIMEOUT_S = 30.0


@dataclass
class Source:
    """A media item's bytes (or a file path for large local files) and a printable name for messages."""

    name: str
    data: bytes | None = None
    path: Path | None = None
    obj: Any = None  # an in-memory object, e.g. a PIL image
    pixels: Any = field(default=None, compare=False, repr=False)  # kept by `image.decode_image`: decoded once

    def open(self) -> io.BufferedIOBase:
        """A binary file object over the source."""
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def sha256(self) -> str | None:
        """sha256 of the source bytes, or None for in-memory objects."""
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        if self.path is not None:
            h = hashlib.sha256()
            with open(self.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()
        return None


def short(value: str, limit: int = 80) -> str:
    """A source string shortened for error messages (data URIs are long)."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


def find_confined(kind: str, name: str, roots: tuple[Path, ...] | list[Path]) -> Path | None:
    """The file `name` under the first root that has it, or None. Names come from task data, so they must stay
    inside the roots: an absolute name, a `..` component, a file whose resolved path (symlinks followed) leaves
    its root, or a name with no roots to look in raises ProcessorError. The roots themselves may be symlinks."""
    if Path(name).is_absolute() or ".." in Path(name).parts or not roots:
        raise ProcessorError(f"{kind} {name}: path escapes the media root")
    for root in roots:
        p = Path(root) / name
        if p.is_file():
            if not p.resolve().is_relative_to(Path(root).resolve()):
                raise ProcessorError(f"{kind} {name}: path escapes the media root")
            return p
    return None


def resolve_source(value: Any, base_dir: str | os.PathLike | None = None,
                   roots: tuple[Path, ...] | None = None, kind: str = "image") -> Source:
    """Turn an item's `image`/`video`/`url`/`path` value (or a Source, returned as is) into a Source. With
    `roots` (task data), a path is a name confined to them (`find_confined`), and URLs are not fetched. Raises
    ProcessorError for missing files, paths escaping the roots, unreachable URLs and malformed data URIs."""
    if isinstance(value, Source):
        return value
    if isinstance(value, dict):  # a Hugging Face datasets image: embedded bytes (bytes or base64), else a path
        data, path = value.get("bytes"), value.get("path")
        if data:
            name = str(path) if path else "<bytes>"
            return Source(name=name, data=_b64decode(data, name) if isinstance(data, str) else bytes(data))
        if not path:
            raise ProcessorError(f"{kind} {value!r}: neither bytes nor a path")
        value = path
    if isinstance(value, (bytes, bytearray)):
        return Source(name="<bytes>", data=bytes(value))
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        return Source(name=f"<{type(value).__name__}>", obj=value)
    if roots is not None:
        if not value:
            raise ProcessorError(f"{kind} {value!r}: neither bytes nor a path")
        found = find_confined(kind, value, roots)
        if found is None:
            raise ProcessorError(f"{kind} {value} not found (looked in {', '.join(map(str, roots))}; "
                                 f"set --media-root)")
        return Source(name=value, path=found)
    text = value.strip()
    if text.startswith("data:"):
        return Source(name=short(text), data=_decode_data_uri(text))
    if text.startswith(("http://", "https://")):
        return Source(name=text, data=_fetch_url(text))
    if text.startswith("file://"):
        parsed = urllib.parse.urlparse(text)
        path = Path(urllib.request.url2pathname(parsed.netloc + parsed.path))
    else:
        path = Path(text).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
    if len(text) > 256 and _looks_base64(text):  # bare base64 (transformers accepts it too)
        return Source(name=short(text), data=_b64decode(text, short(text)))
    if path.is_file():
        return Source(name=str(value), path=path)
    raise ProcessorError(f"{value}: no such file" + (f" (looked in {path})" if str(path) != text else ""))


def _looks_base64(text: str) -> bool:
    return all(c.isalnum() or c in "+/=\n\r" for c in text[:256])


def _b64decode(text: str, name: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProcessorError(f"{name}: invalid base64 data ({e})") from None


def _decode_data_uri(uri: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep:
        raise ProcessorError(f"{short(uri)}: malformed data URI (no comma)")
    if header.endswith(";base64"):
        return _b64decode(payload, short(uri))
    return urllib.parse.unquote_to_bytes(payload)


def _fetch_url(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as r:  # noqa: S310 - http(s) only
            return r.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ProcessorError(f"{url}: cannot download ({reason}); this machine may be offline - download the "
                             f"file and pass a local path") from None
