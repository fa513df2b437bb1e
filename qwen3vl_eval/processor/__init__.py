"""The Qwen3-VL processor: chat template, tokenizer, image and video preprocessing (output identical to
transformers' Qwen3VLProcessor for the same checkpoint).

The names below load on first use (PEP 562), so importing a torch-free submodule (`processor.settings`,
`processor.messages`, `processor.media`, `processor.chat`) does not import torch."""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {"BatchInputs": "batch", "ImageSettings": "settings", "smart_resize": "resize", "Processor": "processor",
         "VIDEO_PROMPTS": "processor", "Tokenizer": "tokenizer", "VideoSettings": "settings",
         "frame_group_timestamps": "video", "sample_indices": "video", "smart_resize_video": "video"}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
