"""Bench workloads: configurations, their command-line forms, and the conversations a configuration sends.

A configuration is (batch size, text prompt tokens, images, video, new tokens). Its inputs are CONTRACTS
section 4 conversations, one per row, processed by each backend's own processor exactly as `run` sends a
task's samples: the chat template, the media decoded from files, a video laid out with its `<t seconds>`
timestamps. Media are seeded noise (timings do not depend on content), different in every row so that a batch
encodes every item; they are written once per configuration into a work folder.
"""

from __future__ import annotations

import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from qwen3vl_eval.errors import InputError
from qwen3vl_eval.processor import Processor

_SIZE = re.compile(r"^(\d+)x(\d+)$")
_VIDEO = re.compile(r"^(\d+(?:\.\d+)?)x(\d+(?:\.\d+)?)(?:@(\d+)x(\d+))?$")
DEFAULT_VIDEO_FRAME = (640, 360)
# Filler words for the text prompt: each is one token with its leading space in the Qwen tokenizer (and the
# tiny checkpoints' cut of it), so a row of P words is P text tokens (checked when the prompt is built).
WORDS = ("the of and to in is that for it with as was on be at by this not are but from or have an they one "
         "you all").split()


@dataclass(frozen=True)
class VideoSpec:
    """A synthetic clip (`seconds` at `fps`, all its frames sampled, of `width`x`height`) or a media file."""

    seconds: float = 0.0
    fps: float = 0.0
    width: int = DEFAULT_VIDEO_FRAME[0]
    height: int = DEFAULT_VIDEO_FRAME[1]
    path: str | None = None

    @property
    def frames(self) -> int:
        n = max(2, round(self.seconds * self.fps))
        return n + n % 2  # whole temporal patches of 2 frames

    def label(self) -> str:
        return self.path or f"{self.seconds:g}sx{self.fps:g}fps@{self.width}x{self.height}"


def parse_image(text: str) -> tuple[int, int]:
    """`WxH` to (width, height)."""
    m = _SIZE.match(text.strip())
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise InputError(f"--image {text!r}: expected WIDTHxHEIGHT, e.g. 448x448")
    return int(m[1]), int(m[2])


def parse_video(text: str) -> VideoSpec:
    """`SECONDSxFPS[@WxH]` (synthetic frames) or the path of a media file."""
    m = _VIDEO.match(text.strip())
    if m:
        w, h = (int(m[3]), int(m[4])) if m[3] else DEFAULT_VIDEO_FRAME
        spec = VideoSpec(float(m[1]), float(m[2]), w, h)
        if spec.seconds <= 0 or spec.fps <= 0 or w < 1 or h < 1:
            raise InputError(f"--video {text!r}: seconds, fps and frame size must be positive")
        return spec
    if Path(text).is_file():
        return VideoSpec(path=str(Path(text)))
    raise InputError(f"--video {text!r}: expected SECONDSxFPS[@WxH] (e.g. 8x2) or an existing media file")


def parse_int_list(text: str, flag: str) -> list[int]:
    """`1,8,32` to [1, 8, 32] (positive integers)."""
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected a positive integer or a comma-separated list") from None
    if not vals or any(v < 1 for v in vals):
        raise InputError(f"{flag} {text!r}: expected positive integers")
    return vals


@dataclass(frozen=True)
class BenchConfig:
    batch_size: int
    prompt_tokens: int
    new_tokens: int
    images: tuple[tuple[int, int], ...] = ()
    video: VideoSpec | None = None

    def describe(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "prompt_tokens": self.prompt_tokens, "new_tokens": self.new_tokens,
                "images": [f"{w}x{h}" for w, h in self.images], "video": self.video.label() if self.video else None}

    def short(self) -> str:
        d = self.describe()
        extra = (" img=" + ",".join(d["images"]) if d["images"] else "") + (f" video={d['video']}" if d["video"]
                                                                             else "")
        return f"bs={self.batch_size} prompt={self.prompt_tokens} new={self.new_tokens}{extra}"


class BenchInputs:
    """The conversations of each configuration (built once, kept), and their layout under `processor`.

    Row r holds the configuration's images (PNG files), its video (an mp4 of `frames` noise frames at `fps`,
    sampled whole: the item asks for that fps and frame count; a media-file video is used as given) and
    `prompt_tokens` filler words, in that order. Use as a context manager, or `close()`, to delete the files."""

    def __init__(self, processor: Processor, *, seed: int = 0, video_prompt: str = "trained",
                 workdir: Path | None = None) -> None:
        self.processor, self.seed, self.video_prompt = processor, seed, video_prompt
        self._own = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="qwen3vl-bench-")) if workdir is None else workdir
        self._convs: dict[BenchConfig, list[list[dict]]] = {}

    def __enter__(self) -> BenchInputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def conversations(self, cfg: BenchConfig) -> list[list[dict]]:
        """One single-turn conversation per row (CONTRACTS section 4)."""
        if cfg not in self._convs:
            self._convs[cfg] = [self._conversation(cfg, row, len(self._convs)) for row in range(cfg.batch_size)]
        return self._convs[cfg]

    def layout(self, cfg: BenchConfig) -> dict[str, Any]:
        """Row 0 as `processor` lays it out: `input_tokens` (template and visual tokens included),
        `visual_tokens` (image and video pads), `visual_grids` ((t, h, w) per image, then the video), and the
        rendered `prompt`."""
        batch = self.processor(self.conversations(cfg)[:1], video_prompt=self.video_prompt)
        grids = [g for t in (batch.image_grid_thw, batch.video_grid_thw) if t is not None for g in t.tolist()]
        return {"input_tokens": int(batch.attention_mask.sum()), "visual_tokens": int((batch.mm_token_type_ids > 0)
                                                                                        .sum()),
                "visual_grids": grids, "prompt": batch.prompts[0]}

    # -------------------------------------------------------------------------------------------- media
    def _conversation(self, cfg: BenchConfig, row: int, index: int) -> list[dict]:
        rng = np.random.default_rng([self.seed, index, row])
        content: list[dict] = []
        for i, (w, h) in enumerate(cfg.images):
            content.append({"type": "image", "image": str(self._image(rng, w, h, f"c{index}-r{row}-i{i}.png"))})
        if cfg.video is not None:
            content.append(self._video_item(cfg.video, rng, f"c{index}-r{row}-v.mp4"))
        content.append({"type": "text", "text": self._text(cfg.prompt_tokens, random.Random(f"{self.seed}/"
                                                                                               f"{index}/{row}"))})
        return [{"role": "user", "content": content}]

    def _image(self, rng: np.random.Generator, w: int, h: int, name: str) -> Path:
        import PIL.Image

        path = self.workdir / name
        PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        return path

    def _video_item(self, spec: VideoSpec, rng: np.random.Generator, name: str) -> dict:
        if spec.path is not None:
            return {"type": "video", "video": str(Path(spec.path).resolve())}
        from qwen3vl_eval.eval.synth import write_video

        frames = [rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8) for _ in range(spec.frames)]
        try:
            path = write_video(self.workdir / name, frames, Fraction(spec.fps).limit_denominator(1001))
        except ImportError as e:
            raise InputError(f"--video needs PyAV ({e})") from None
        return {"type": "video", "video": str(path), "fps": spec.fps, "min_frames": spec.frames,
                "max_frames": spec.frames}

    def _text(self, tokens: int, rng: random.Random) -> str:
        text = "".join(" " + rng.choice(WORDS) for _ in range(tokens))
        got = len(self.processor.tokenizer.encode(text))
        if got != tokens:
            raise InputError(f"the checkpoint's tokenizer splits the bench filler text into {got} tokens, not "
                             f"{tokens} (its vocabulary lacks common English words)")
        return text
