"""The messages format (CONTRACTS section 4): validation, batching, and the media items in prompt order."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qwen3vl_eval.errors import ProcessorError

ROLES = ("system", "user", "assistant", "tool")
SOURCE_KEYS = {"image": ("image", "url", "path", "base64"), "video": ("video", "url", "path")}
ITEM_OPTIONS = {"image": ("min_pixels", "max_pixels"),
                "video": ("fps", "min_frames", "max_frames", "min_pixels", "max_pixels")}

Conversation = list[dict[str, Any]]


@dataclass
class MediaItem:
    """One image or video of a conversation, with where it was found (for error messages)."""

    kind: str  # "image" | "video"
    value: Any  # path, URL, data URI, bytes or an in-memory object
    options: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    def describe(self) -> str:
        """`conversation 0, message 1, item 0 (image 'cat.png')`."""
        shown = self.value if isinstance(self.value, str) else f"<{type(self.value).__name__}>"
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
    if kind is None:  # untyped items are recognised by their keys, as the chat templates do
        kind = next((k for k in ("image", "video", "text") if k in item), None)
    if kind not in ("text", "image", "video"):
        raise ProcessorError(f"{where}: unknown content type {kind!r} (expected text, image or video)")
    if kind == "text" and not isinstance(item.get("text"), str):
        raise ProcessorError(f"{where}: a text item needs a string 'text'")
    return kind


def check_option(key: str, value: Any, where: str) -> None:
    """Type checks of one per-item option: a finite number (Python's json reads `Infinity`, `NaN` and `1e999`),
    positive, and an integer for min_frames (>= 0) and max_frames (>= 1). Upper bounds and min <= max are
    checked where the option is applied (`ImageSettings.with_overrides`, `VideoSettings.with_overrides`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProcessorError(f"{where}: {key} must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise ProcessorError(f"{where}: {key} must be a finite number, got {value!r}")
    if key in ("min_frames", "max_frames"):
        low = 0 if key == "min_frames" else 1
        if value != int(value) or value < low:
            raise ProcessorError(f"{where}: {key} must be an integer >= {low}, got {value!r}")
    elif value <= 0:
        raise ProcessorError(f"{where}: {key} must be a positive number, got {value!r}")


def media_items(conversation: Conversation, index: int) -> list[MediaItem]:
    """Validate one conversation and list its images and videos in order."""
    items: list[MediaItem] = []
    for m, message in enumerate(conversation):
        where = f"conversation {index}, message {m}"
        if not isinstance(message, dict):
            raise ProcessorError(f"{where}: a message must be an object, got {type(message).__name__}")
        if message.get("role") not in ROLES:
            role = message.get("role")
            raise ProcessorError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ProcessorError(f"{where}: content must be a string or a list of items")
        for i, item in enumerate(content):
            item_where = f"{where}, item {i}"
            kind = item_kind(item, item_where)
            if kind == "text":
                continue
            value = next((item[k] for k in SOURCE_KEYS[kind] if item.get(k) is not None), None)
            if value is None:
                raise ProcessorError(f"{item_where}: {kind} item has none of the keys "
                                     f"{', '.join(SOURCE_KEYS[kind])}")
            options = {k: item[k] for k in ITEM_OPTIONS[kind] if item.get(k) is not None}
            for k, v in options.items():
                check_option(k, v, item_where)
            items.append(MediaItem(kind, value, options, item_where))
    return items
