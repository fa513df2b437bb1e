"""The messages format (CONTRACTS section 4): validation, batching, the one walk over a conversation's content
items (`walk`), the one per-item option validator (`check_options`) and the media items in prompt order."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from qwen3vl_eval.errors import ProcessorError
from qwen3vl_eval.processor.media import Source

ROLES = ("system", "user", "assistant", "tool")
SOURCE_KEYS = {"image": ("image", "url", "path", "base64"), "video": ("video", "url", "path")}
# Video keys are qwen-vl-utils 0.0.14's (processor/video_budget.py): min_pixels/max_pixels per frame, total_pixels
# for the clip; `video_processor` is a mapping of video preprocessor config fields for this item, transformers'
# meanings (`VideoSettings.with_config`). Image bounds are per image (transformers' and qwen-vl-utils' alike).
VIDEO_BUDGET_KEYS = ("fps", "nframes", "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels",
                     "resized_height", "resized_width")
INT_KEYS = ("nframes", "min_frames", "max_frames", "resized_height", "resized_width")
ITEM_OPTIONS = {"image": ("min_pixels", "max_pixels"), "video": (*VIDEO_BUDGET_KEYS, "video_processor")}
# Ceilings of per-item options. Pixel budgets: 4x the released checkpoints' largest (16384 * 32 * 32 =
# 16,777,216 pixels per image, and per video frame; 25,165,824 per clip for a `video_processor.size`), so an option
# cannot make the resize allocate gigabytes (a 1e9-pixel target is 3 GB uint8 + 12 GB float32). Frames: the most
# Qwen documents (QwenLM/Qwen3-VL#1540), so per-frame budgets bound memory. fps: sampling above the native rate
# just keeps every frame.
MAX_IMAGE_PIXEL_BUDGET = 4 * 16384 * 32 * 32
MAX_VIDEO_PIXEL_BUDGET = 4 * 25165824
MAX_SAMPLING_FPS = 1000.0
MAX_BUDGET_FRAMES = 2048

Conversation = list[dict[str, Any]]


@dataclass
class MediaItem:
    """One content item of a conversation (an image or video; `walk` also yields text items), with where it
    was found (for error messages)."""

    kind: str  # "image" | "video" | "text" (or a passthrough type)
    value: Any  # path, URL, data URI, bytes or an in-memory object; the text of a text item
    options: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    def describe(self) -> str:
        """`conversation 0, message 1, item 0 (image 'cat.png')`."""
        shown = (self.value if isinstance(self.value, str) else self.value.name if isinstance(self.value, Source)
                 else f"<{type(self.value).__name__}>")
        if isinstance(shown, str) and len(shown) > 80:
            shown = shown[:77] + "..."
        return f"{self.where} ({self.kind} {shown!r})"


def as_batch(conversations: Any) -> tuple[list[Conversation], bool]:
    """A list of conversations, and whether the input already was one (a list of lists)."""
    if isinstance(conversations, dict):
        conversations = [conversations]
    if not isinstance(conversations, list) or not conversations:
        raise ProcessorError("messages: expected a conversation (a list of messages) or a list of them")
    if all(isinstance(c, list) for c in conversations):
        return conversations, True
    if all(isinstance(m, dict) for m in conversations):
        return [conversations], False
    raise ProcessorError("messages: mixes messages and conversations; give a list of messages or of lists")


def item_kind(item: Any, where: str) -> str:
    """"text", "image" or "video" for one content item; a ProcessorError for anything else."""
    if not isinstance(item, dict):
        raise ProcessorError(f"{where}: a content item must be an object, got {type(item).__name__}")
    kind = item.get("type")
    if kind is None:
        raise ProcessorError(f"{where}: item has no 'type' (expected text, image or video)")
    if kind not in ("text", "image", "video"):
        raise ProcessorError(f"{where}: unknown content type {kind!r} (expected text, image or video)")
    if kind == "text" and not isinstance(item.get("text"), str):
        raise ProcessorError(f"{where}: a text item needs a string 'text'")
    return kind


def item_options(kind: str, *sources: Any) -> dict[str, Any]:
    """The per-item options of a `kind` item found in `sources` (dicts; later ones win), None values left out."""
    found: dict[str, Any] = {}
    for src in sources:
        if isinstance(src, dict):
            found.update({k: src[k] for k in ITEM_OPTIONS[kind] if src.get(k) is not None})
    return found


def check_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The one validator of per-item options (CONTRACTS section 4), typed: fps and total_pixels as float, the
    other numbers as int, `video_processor` passed on (checked by `VideoSettings.with_config`). ProcessorError
    naming the option for an unknown key, a value that is not a finite number (Python's json reads `Infinity`,
    `NaN` and `1e999`) or not positive, frame counts and sizes that are not integers (min_frames >= 0, others >= 1),
    fps over MAX_SAMPLING_FPS, frame counts over MAX_BUDGET_FRAMES, a pixel minimum (images: both bounds) over the
    per-image ceiling, a minimum above the maximum when an item gives both, or what qwen-vl-utils refuses (fps with
    nframes, one resized side without the other). One image bound alone may cross the checkpoint's other bound
    (smart_resize then follows max_pixels, as transformers)."""
    for key, value in options.items():
        if key not in ITEM_OPTIONS[kind]:
            raise ProcessorError(f"unknown {kind} option {key!r} (known: {', '.join(ITEM_OPTIONS[kind])})")
        if key == "video_processor":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProcessorError(f"{key} must be a positive number, got {value!r}")
        if not math.isfinite(value):
            raise ProcessorError(f"{key} must be a finite number, got {value!r}")
        if key in INT_KEYS:
            low = 0 if key == "min_frames" else 1
            if value != int(value) or value < low:
                raise ProcessorError(f"{key} must be an integer >= {low}, got {value!r}")
        elif value <= 0:
            raise ProcessorError(f"{key} must be a positive number, got {value!r}")
    out: dict[str, Any] = {k: v if k == "video_processor" else float(v) if k in ("fps", "total_pixels") else int(v)
                           for k, v in options.items()}
    if out.get("fps", 0) > MAX_SAMPLING_FPS:
        raise ProcessorError(f"fps must be in (0, {MAX_SAMPLING_FPS:g}], got {options['fps']!r}")
    for key in ("nframes", "min_frames", "max_frames"):
        if out.get(key, 0) > MAX_BUDGET_FRAMES:
            raise ProcessorError(f"{key} {out[key]} is over the {MAX_BUDGET_FRAMES} frame limit")
    what = "an image" if kind == "image" else "a video frame"
    for key in ("min_pixels", "max_pixels") if kind == "image" else ("min_pixels",):
        if out.get(key, 0) > MAX_IMAGE_PIXEL_BUDGET:
            raise ProcessorError(f"{key} {out[key]} is over the {MAX_IMAGE_PIXEL_BUDGET} pixel limit for {what}")
    side = math.isqrt(MAX_IMAGE_PIXEL_BUDGET)
    for key in ("resized_height", "resized_width"):
        if out.get(key, 0) > side:
            raise ProcessorError(f"{key} {out[key]} is over the {side} side limit for a video frame")
    for low, high in (("min_frames", "max_frames"), ("min_pixels", "max_pixels")):
        if low in out and high in out and out[low] > out[high]:
            raise ProcessorError(f"{low} {out[low]} is above {high} {out[high]}")
    if "fps" in out and "nframes" in out:
        raise ProcessorError("give fps or nframes, not both (qwen-vl-utils refuses both)")
    if ("resized_height" in out) != ("resized_width" in out):
        raise ProcessorError("resized_height and resized_width go together")
    return out


def walk(conversation: Any, index: int = 0, passthrough: tuple[str, ...] = ()
         ) -> Iterator[tuple[dict[str, Any], list[MediaItem] | None]]:
    """The one walk over a conversation's content: validate it and yield each message with its items in order
    (None for string or absent content). Each item has its kind, value (the text, or the media source), checked
    per-item options and place. Items whose `type` is in `passthrough` (e.g. OpenAI `image_url` parts) are
    yielded unchecked, with that type as kind and the part itself as value."""
    if not isinstance(conversation, list):
        raise ProcessorError(f"conversation {index}: expected a list of messages")
    for m, message in enumerate(conversation):
        where = f"conversation {index}, message {m}"
        if not isinstance(message, dict):
            raise ProcessorError(f"{where}: a message must be an object, got {type(message).__name__}")
        if message.get("role") not in ROLES:
            role = message.get("role")
            raise ProcessorError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
        if "content" not in message:
            raise ProcessorError(f"{where}: message has no 'content' (a string or a list of items)")
        content = message.get("content")
        if content is None or isinstance(content, str):
            yield message, None
            continue
        if not isinstance(content, list):
            raise ProcessorError(f"{where}: content must be a string or a list of items")
        items = []
        for i, item in enumerate(content):
            item_where = f"{where}, item {i}"
            if isinstance(item, dict) and item.get("type") in passthrough:
                items.append(MediaItem(item["type"], item, {}, item_where))
                continue
            kind = item_kind(item, item_where)
            if kind == "text":
                items.append(MediaItem(kind, item["text"], {}, item_where))
                continue
            value = next((item[k] for k in SOURCE_KEYS[kind] if item.get(k) is not None), None)
            if value is None:
                raise ProcessorError(f"{item_where}: {kind} item has none of the keys "
                                     f"{', '.join(SOURCE_KEYS[kind])}")
            media = MediaItem(kind, value, item_options(kind, item), item_where)
            try:
                media.options = check_options(kind, media.options)
            except ProcessorError as e:
                raise ProcessorError(f"{media.describe()}: {e}") from None
            items.append(media)
        yield message, items


def media_items(conversation: Conversation, index: int) -> list[MediaItem]:
    """Validate one conversation and list its images and videos in order."""
    return [it for _, items in walk(conversation, index) for it in items or () if it.kind != "text"]
