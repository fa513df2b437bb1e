"""Image and video processor settings (`preprocessor_config.json`, `video_preprocessor_config.json`) and their
per-item overrides. No torch here: task files and command-line media options are checked with these before
anything heavy loads; `processor.image` and `processor.video` apply them."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Self

from qwen3vl_eval.errors import CheckpointError, ProcessorError
from qwen3vl_eval.processor.messages import MAX_VIDEO_PIXEL_BUDGET, check_options
from qwen3vl_eval.processor.video_budget import VideoBudget

BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, the only resample Qwen3-VL checkpoints use
CONFIG_KEYS = ("fps", "min_frames", "max_frames", "size")  # what an item's `video_processor` may replace


@dataclass(frozen=True)
class MediaSettings:
    """What image and video settings share: patching, rescale and normalisation (transformers' key names)."""

    kind = "image"  # the messages item kind whose per-item options apply (class attributes, not fields)
    config_name = "preprocessor_config.json"  # the checkpoint file they are read from
    patch_size: int = 16
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    rescale_factor: float = 1 / 255
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> Self:
        """Settings from a checkpoint folder's `config_name` file, the defaults when it has none;
        CheckpointError for a file that cannot be read as a JSON object."""
        path = Path(folder) / cls.config_name
        if not path.is_file():
            return cls.from_config({})  # type: ignore[attr-defined]
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: {e}") from None
        if not isinstance(cfg, dict):
            raise CheckpointError(f"{path}: expected a JSON object")
        return cls.from_config(cfg)  # type: ignore[attr-defined]

    def with_overrides(self, **options: Any) -> Self:
        """A copy with an item's options (None keeps the setting) applied, checked by
        `messages.check_options` (ProcessorError naming the option)."""
        given = check_options(self.kind, {k: v for k, v in options.items() if v is not None})
        return replace(self, **given) if given else self

    @property
    def factor(self) -> int:
        """Side lengths are multiples of this (patch_size * merge_size)."""
        return self.patch_size * self.merge_size

    def key(self) -> str:
        """A stable string of every setting, for content hashes."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class ImageSettings(MediaSettings):
    """Image processor settings, read from `preprocessor_config.json`; per-item options: min_pixels, max_pixels."""

    min_pixels: int = 65536
    max_pixels: int = 16777216
    do_convert_rgb: bool = True

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ImageSettings:
        """Settings from a preprocessor config dict; `size.shortest_edge/longest_edge` are the pixel bounds
        (legacy `min_pixels`/`max_pixels` keys override them, as in transformers)."""
        d = cls()
        size = cfg.get("size") or {}
        resample = cfg.get("resample", BICUBIC)
        if resample not in (BICUBIC, None):
            raise ProcessorError(f"resample={resample} is not supported (Qwen3-VL uses 3, bicubic)")
        return cls(
            patch_size=int(cfg.get("patch_size", d.patch_size)),
            temporal_patch_size=int(cfg.get("temporal_patch_size", d.temporal_patch_size)),
            merge_size=int(cfg.get("merge_size", d.merge_size)),
            min_pixels=int(cfg.get("min_pixels") or size.get("shortest_edge") or size.get("min_pixels")
                           or d.min_pixels),
            max_pixels=int(cfg.get("max_pixels") or size.get("longest_edge") or size.get("max_pixels")
                           or d.max_pixels),
            image_mean=_triple(cfg.get("image_mean", d.image_mean)),
            image_std=_triple(cfg.get("image_std", d.image_std)),
            rescale_factor=float(cfg.get("rescale_factor", d.rescale_factor)),
            do_resize=bool(cfg.get("do_resize", True)),
            do_rescale=bool(cfg.get("do_rescale", True)),
            do_normalize=bool(cfg.get("do_normalize", True)),
            do_convert_rgb=bool(cfg.get("do_convert_rgb", True)),
        )



def _triple(v: Any) -> tuple[float, ...]:
    return tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else (float(v),) * 3


@dataclass(frozen=True)
class VideoSettings(MediaSettings):
    """Video processor settings, read from `video_preprocessor_config.json` (transformers' key names).
    `min_pixels`/`max_pixels` bound the whole sampled clip (frames x height x width), as in transformers;
    `budget` holds an item's own keys (per frame, qwen-vl-utils' units), which replace those rules."""

    kind = "video"
    config_name = "video_preprocessor_config.json"
    min_pixels: int = 4096
    max_pixels: int = 25165824
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 768
    cap_pixels_per_frame: bool = False
    max_video_tokens: int = 768
    budget: VideoBudget | None = None

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> VideoSettings:
        """Settings from a video preprocessor config dict."""
        d = cls()
        size = cfg.get("size") or {}
        if cfg.get("resample", BICUBIC) not in (BICUBIC, None):
            raise ProcessorError(f"resample={cfg.get('resample')} is not supported (Qwen3-VL uses bicubic)")
        norm = ImageSettings.from_config({k: v for k, v in cfg.items() if k != "size"})
        return cls(
            patch_size=int(cfg.get("patch_size", d.patch_size)),
            temporal_patch_size=int(cfg.get("temporal_patch_size", d.temporal_patch_size)),
            merge_size=int(cfg.get("merge_size", d.merge_size)),
            min_pixels=int(size.get("shortest_edge") or d.min_pixels),
            max_pixels=int(size.get("longest_edge") or d.max_pixels),
            fps=float(cfg.get("fps") or d.fps),
            min_frames=int(cfg.get("min_frames", d.min_frames)),
            max_frames=int(cfg.get("max_frames", d.max_frames)),
            cap_pixels_per_frame=bool(cfg.get("cap_pixels_per_frame") or False),
            max_video_tokens=int(cfg.get("max_video_tokens", d.max_video_tokens)),
            image_mean=norm.image_mean, image_std=norm.image_std, rescale_factor=norm.rescale_factor,
            do_resize=bool(cfg.get("do_resize", True)), do_rescale=norm.do_rescale,
            do_normalize=norm.do_normalize,
        )

    def with_overrides(self, video_processor: dict | None = None, **overrides: Any) -> VideoSettings:
        """A copy for one item: `video_processor` replaces fields of the checkpoint's video preprocessor config
        with transformers' meanings (`fps`, `min_frames`, `max_frames`, `size` = whole-clip pixel bounds), then
        the item's budget keys (`video_budget.KEYS`, qwen-vl-utils' meanings) replace those rules. The same
        settings when it gives neither. ProcessorError naming the key for a bad value."""
        out = self if not video_processor else self.with_config(video_processor)
        budget = VideoBudget.from_options(overrides)
        return out if budget is None else replace(out, budget=budget)

    def with_config(self, cfg: Any) -> VideoSettings:
        """A copy with some `video_preprocessor_config.json` fields replaced (transformers' meanings): fps in
        (0, 1000], min_frames >= 0 and max_frames >= 1 integers, size.shortest_edge/longest_edge whole-clip pixel
        bounds in (0, MAX_VIDEO_PIXEL_BUDGET]."""
        if not isinstance(cfg, dict) or set(cfg) - set(CONFIG_KEYS):
            raise ProcessorError(f"video_processor must be a mapping of {', '.join(CONFIG_KEYS)}, got {cfg!r}")
        size = cfg.get("size") or {}
        if not isinstance(size, dict) or set(size) - {"shortest_edge", "longest_edge"}:
            raise ProcessorError(f"video_processor.size takes shortest_edge and longest_edge, got {size!r}")
        frames = VideoBudget.from_options({k: cfg[k] for k in ("fps", "min_frames", "max_frames") if k in cfg})
        for k, v in size.items():
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_VIDEO_PIXEL_BUDGET:
                raise ProcessorError(f"video_processor.size.{k} must be an integer in (0, {MAX_VIDEO_PIXEL_BUDGET}]"
                                     f", got {v!r}")
        return replace(self, **(frames.as_dict() if frames else {}),
                       min_pixels=size.get("shortest_edge", self.min_pixels),
                       max_pixels=size.get("longest_edge", self.max_pixels))

    def normalization(self) -> ImageSettings:
        """The rescale/normalise part, in the form the image code takes."""
        return ImageSettings(image_mean=self.image_mean, image_std=self.image_std,
                             rescale_factor=self.rescale_factor, do_rescale=self.do_rescale,
                             do_normalize=self.do_normalize)
