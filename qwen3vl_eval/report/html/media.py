"""Media of one sample for a page: image thumbnails (with the target and predicted boxes of a grounding task
drawn over them by the page), and the frames a video task sampled, decoded by the project's processor with the
task's video settings (so they are the frames the model saw), each with its time.

Thumbnails are JPEGs capped at `MAX_SIDE` pixels on the longest side, named by a hash of their bytes in a
`media/` folder beside the page (a file shared by samples is written once; names never come from the data)."""

from __future__ import annotations

import hashlib
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from qwen3vl_eval.errors import InputError

MAX_SIDE = 256  # longest side of an image thumbnail, pixels
FRAME_SIDE = 128  # longest side of a video frame thumbnail
STRIP_FRAMES = 8  # frames shown for a video QA sample
TIMELINE_FRAMES = 12  # frames shown under a temporal grounding timeline
JPEG_QUALITY = 80
MEDIA_DIR = "media"
_NAME = re.compile(r"^[0-9a-f]{20}\.jpg$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thumb:
    """A thumbnail file: `src` relative to the page, its size, and the size of the image it shows."""

    src: str
    width: int
    height: int
    source_width: int
    source_height: int


@dataclass
class Frame:
    thumb: Thumb
    seconds: float


@dataclass
class Clip:
    """Frames shown for a video: a subset of the frames the processor sampled (`sampled`: the time of each), with
    the clip length in seconds."""

    frames: list[Frame]
    sampled: list[float]
    duration: float


@dataclass
class SampleMedia:
    """What a row shows: images, or a video's frames; `note` says why media are missing."""

    images: list[Thumb] = field(default_factory=list)
    clips: list[Clip] = field(default_factory=list)
    note: str = ""

    def srcs(self) -> set[str]:
        """Every media file the row references."""
        return {t.src for t in self.images} | {f.thumb.src for c in self.clips for f in c.frames}


class MediaStore:
    """Writes thumbnails into `folder/media/` and remembers the bytes of each (for page weights)."""

    def __init__(self, folder: Path, video_settings: Any = None):
        self.folder = folder / MEDIA_DIR
        self.sizes: dict[str, int] = {}
        self.video_settings = video_settings
        self._clips: dict[tuple, Clip] = {}

    def thumb(self, img: Image.Image, max_side: int = MAX_SIDE) -> Thumb:
        """A JPEG thumbnail of `img` (never enlarged)."""
        w, h = img.size
        small = img.convert("RGB")
        if max(w, h) > max_side:
            scale = max_side / max(w, h)
            small = small.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        data = buf.getvalue()
        name = hashlib.sha256(data).hexdigest()[:20] + ".jpg"
        path = self.folder / name
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        src = f"{MEDIA_DIR}/{name}"
        self.sizes[src] = len(data)
        return Thumb(src, small.width, small.height, w, h)

    def sample_media(self, sample: Any, spec: Any, frames: int | None = None) -> SampleMedia:
        """Thumbnails of a sample's images and frames of its videos; a missing or unreadable file is a note."""
        from qwen3vl_eval.eval.media import checked_image
        from qwen3vl_eval.processor.image import decode_image

        out = SampleMedia()
        if sample is None:
            out.note = "media not available (sample not in the task data)"
            return out
        if sample.error:
            out.note = f"media unavailable: {sample.error}"
            return out
        try:
            for ref in sample.images:  # decoded as the processor decodes it (upright, RGB)
                pixels = decode_image(checked_image(ref, sample.media_roots))
                out.images.append(self.thumb(Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())))
            for video in sample.videos:
                options = (spec.media or {}).get("video", {}) if spec is not None else {}
                out.clips.append(self.clip(str(video), options, frames or STRIP_FRAMES))
        except (InputError, OSError, ValueError) as e:
            out.note = f"media unavailable: {e}"
        return out

    def clip(self, path: str, options: dict, show: int) -> Clip:
        """Up to `show` of the frames the processor samples from `path` (evenly spread), with their times."""
        from qwen3vl_eval.processor.media import resolve_source
        from qwen3vl_eval.processor.messages import item_options
        from qwen3vl_eval.processor.video import DEFAULT_FPS, VideoSettings, decode_clip

        settings = (self.video_settings or VideoSettings()).with_overrides(**item_options("video", options))
        key = (path, settings.key(), show)
        if key not in self._clips:
            decoded = decode_clip(resolve_source(path), settings)
            fps = decoded.native_fps or DEFAULT_FPS
            n = len(decoded.indices)
            k = min(show, n)
            picks = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})
            frames = []
            for i in picks:
                img = Image.fromarray(decoded.frames[i].permute(1, 2, 0).contiguous().numpy())
                frames.append(Frame(self.thumb(img, FRAME_SIDE), decoded.indices[i] / fps))
            self._clips[key] = Clip(frames, [i / fps for i in decoded.indices], decoded.total_frames / fps)
        return self._clips[key]

    def prune(self, keep: set[str]) -> None:
        """Delete thumbnails this store's naming made that no page references any more (an earlier render)."""
        if not self.folder.is_dir():
            return
        for p in self.folder.iterdir():
            if _NAME.match(p.name) and f"{MEDIA_DIR}/{p.name}" not in keep:
                p.unlink()


def checkpoint_video_settings(model: str | None) -> Any:
    """The video settings of `model`'s checkpoint when it is available here (so frames match what the model
    sampled), else None (the processor's defaults)."""
    if not model:
        return None
    from qwen3vl_eval.checkpoints.hub import resolve_model
    from qwen3vl_eval.processor.video import VideoSettings

    try:
        return VideoSettings.from_folder(resolve_model(model))
    except InputError:
        return None
