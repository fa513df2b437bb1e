"""Conversations in the messages format (CONTRACTS section 4) as OpenAI chat-completions messages, for
`OpenAIBackend`: images as data URLs of their source bytes (PNG for in-memory PIL images), http(s) URLs as given;
videos as `video_url` parts (the server samples) or as frames sampled here, each frame group a `<t seconds>` text
part followed by its frames as PNG `image_url` parts. The walk over the items is `processor.messages.walk`."""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import PIL.Image

from qwen3vl_eval.errors import ProcessorError
from qwen3vl_eval.processor.image import pil_to_rgb
from qwen3vl_eval.processor.media import Source, resolve_source
from qwen3vl_eval.processor.messages import walk
from qwen3vl_eval.processor.video import VideoSettings, decode_clip, format_timestamp, frame_group_timestamps

_VIDEO_MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska",
               ".avi": "video/x-msvideo", ".mov": "video/quicktime", ".mpeg": "video/mpeg", ".mpg": "video/mpeg"}


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_data_url(rgb: Any) -> str:
    """A lossless PNG data URL of an (H, W, 3) uint8 array or PIL image."""
    img = rgb if isinstance(rgb, PIL.Image.Image) else PIL.Image.fromarray(rgb)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return data_url(buf.getvalue(), "image/png")


def _image_mime(data: bytes) -> str:
    try:
        with PIL.Image.open(io.BytesIO(data)) as img:
            return PIL.Image.MIME.get(img.format or "", "image/png")
    except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return "application/octet-stream"  # the server will say what is wrong with it


def _source_bytes(source: Source) -> bytes:
    if source.data is not None:
        return source.data
    assert source.path is not None
    return source.path.read_bytes()


def image_url(value: Any, base_dir: str | os.PathLike | None) -> str:
    """The `image_url.url` of an image item's value: http(s) and data URLs as given, files, bytes and base64
    as data URLs of their bytes, PIL images as PNG (alpha composited on white, as the native processor)."""
    if isinstance(value, str) and value.strip().startswith(("http://", "https://", "data:")):
        return value.strip()
    source = resolve_source(value, base_dir)
    if source.obj is not None:
        if not isinstance(source.obj, PIL.Image.Image):
            raise ProcessorError(f"{source.name}: not an image (expected a path, URL, data URI or PIL image)")
        return png_data_url(pil_to_rgb(source.obj, composite_alpha=True))
    data = _source_bytes(source)
    return data_url(data, _image_mime(data))


def video_url(value: Any, base_dir: str | os.PathLike | None, scheme: str) -> str:
    """The `video_url.url` of a video item's value: http(s) and data URLs as given, local files as `file://`
    URLs (scheme "file") or data URLs (scheme "data"), bytes as data URLs."""
    if isinstance(value, str) and value.strip().startswith(("http://", "https://", "data:")):
        return value.strip()
    source = resolve_source(value, base_dir)
    if source.obj is not None:
        raise ProcessorError("videos must be files, URLs or data URIs")
    if scheme == "file" and source.path is not None:
        return source.path.resolve().as_uri()
    mime = _VIDEO_MIME.get(source.path.suffix.lower(), "video/mp4") if source.path is not None else "video/mp4"
    return data_url(_source_bytes(source), mime)


def video_frame_parts(value: Any, options: dict[str, Any], settings: VideoSettings,
                      base_dir: str | os.PathLike | None) -> list[dict]:
    """A video as content parts: per frame group `<t seconds>` then its frames as PNG image_url parts, sampled
    and resized exactly as the native processor samples the clip."""
    source = resolve_source(value, base_dir)
    if source.obj is not None:
        raise ProcessorError("videos must be files, URLs or data URIs")
    clip = decode_clip(source, settings.with_overrides(**options))
    t = settings.temporal_patch_size
    stamps = frame_group_timestamps(clip.indices, clip.native_fps, t)
    frames = clip.frames.permute(0, 2, 3, 1).contiguous().numpy()  # (n, h, w, 3) uint8
    parts: list[dict] = []
    for g, ts in enumerate(stamps):
        parts.append({"type": "text", "text": format_timestamp(ts)})
        for f in frames[g * t: (g + 1) * t]:
            parts.append({"type": "image_url", "image_url": {"url": png_data_url(f)}})
    return parts


def to_openai_messages(conversation: list[dict], *, base_dir: str | os.PathLike | None = None,
                       video_mode: str = "frames", video_url_scheme: str = "data",
                       video_settings: VideoSettings | None = None, index: int = 0) -> list[dict]:
    """One conversation in the messages format (CONTRACTS section 4) as OpenAI chat messages. Items already
    in OpenAI form (`image_url`, `video_url`) pass through. Per-item options (min_pixels, fps, ...) ride on the
    part as extra keys, which `qwen3vl-eval serve` reads and other servers ignore; in frames mode the video
    options drive the sampling here."""
    out = []
    for message, items in walk(conversation, index, passthrough=("image_url", "video_url")):
        if items is None:
            out.append({"role": message["role"], "content": message.get("content") or ""})
            continue
        parts: list[dict] = []
        for item in items:
            if item.kind in ("image_url", "video_url"):
                parts.append(item.value)
                continue
            if item.kind == "text":
                parts.append({"type": "text", "text": item.value})
                continue
            try:
                if item.kind == "image":
                    parts.append({"type": "image_url", "image_url": {"url": image_url(item.value, base_dir)},
                                  **item.options})
                elif video_mode == "url":
                    parts.append({"type": "video_url", "video_url": {"url": video_url(item.value, base_dir,
                                                                                      video_url_scheme)},
                                  **item.options})
                else:
                    parts.extend(video_frame_parts(item.value, item.options, video_settings or VideoSettings(),
                                                   base_dir))
            except ProcessorError as e:
                raise ProcessorError(f"{item.where}: {e}") from None
        out.append({"role": message["role"], "content": parts})
    return out
