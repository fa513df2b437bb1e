"""Video preprocessing as transformers' Qwen3VLVideoProcessor does it (research/qwen3vl_spec.md 5.2): PyAV
decoding to rgb24, frame sampling at `fps` (default 2) clamped to [min_frames, max_frames] and the clip
length, one `smart_resize` for the whole clip within a total pixel budget (T*H*W), bicubic antialiased resize,
temporal padding by repeating the last frame, and one timestamp per frame group. An item with per-item budget
keys (`video_budget.KEYS`) is sampled and sized by qwen-vl-utils' rules instead (`video_budget.VideoBudget`).

Decoding streams: only the sampled frames are kept, each resized as soon as it is decoded, so memory stays
within the processed clip's size. Files whose header lacks a frame count are counted by decoding first."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch

from qwen3vl_eval.errors import ProcessorError
from qwen3vl_eval.processor.image import normalize, patchify, resize_bicubic
from qwen3vl_eval.processor.media import Source
from qwen3vl_eval.processor.resize import MAX_ASPECT_RATIO
from qwen3vl_eval.processor.settings import CONFIG_KEYS, ImageSettings, VideoSettings  # noqa: F401 (re-exported)

DEFAULT_FPS = 24.0  # assumed native rate when a file does not say (as transformers)


def sample_indices(total_frames: int, native_fps: float | None, settings: VideoSettings) -> np.ndarray:
    """Indices of the frames to keep: `int(N / native_fps * fps)` frames, clamped to [min_frames,
    max_frames] and to N (or the budget's `frame_count`), spread evenly with `round(linspace(0, N-1, n))`."""
    native = native_fps or DEFAULT_FPS
    if settings.budget is not None:
        n = settings.budget.frame_count(total_frames, native)
    else:
        n = int(min(total_frames / native * settings.fps, settings.max_frames))  # no huge float reaches int()
        n = min(max(n, settings.min_frames), settings.max_frames, total_frames)
    return np.linspace(0, total_frames - 1, n).round().astype(int)


def smart_resize_video(num_frames: int, height: int, width: int, factor: int = 32, temporal_factor: int = 2,
                       min_pixels: int = 4096, max_pixels: int = 25165824) -> tuple[int, int]:
    """Target (height, width) of every frame: sides multiples of `factor`, frames*height*width within
    [min_pixels, max_pixels]. Frames smaller than `factor` are first scaled up. ValueError for fewer than
    `temporal_factor` frames or an aspect ratio over 200."""
    if num_frames < temporal_factor:
        raise ValueError(f"{num_frames} frame(s); at least {temporal_factor} are needed")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.1f} is over "
                         f"{MAX_ASPECT_RATIO}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def frame_group_timestamps(indices: list[int], native_fps: float | None, temporal_patch_size: int = 2
                           ) -> list[float]:
    """Seconds of each frame group: the sampled indices padded to a multiple of the temporal patch by
    repeating the last, divided by the native fps, first and last of each group averaged."""
    fps = native_fps or DEFAULT_FPS
    idx = list(indices)
    if len(idx) % temporal_patch_size:
        idx += [idx[-1]] * (temporal_patch_size - len(idx) % temporal_patch_size)
    seconds = [i / fps for i in idx]
    return [(seconds[i] + seconds[i + temporal_patch_size - 1]) / 2 for i in range(0, len(seconds),
                                                                                  temporal_patch_size)]


def format_timestamp(seconds: float) -> str:
    """The prompt text of one frame group's time, e.g. `<1.3 seconds>`."""
    return f"<{seconds:.1f} seconds>"


# ------------------------------------------------------------------------------------------------ decoding
@dataclass
class DecodedClip:
    """The sampled frames of a video, already resized: (n, 3, h, w) uint8."""

    frames: torch.Tensor
    indices: list[int]
    total_frames: int
    native_fps: float | None


def _open(source: Source) -> av.container.InputContainer:
    try:
        return av.open(source.open() if source.path is None else str(source.path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise ProcessorError(f"{source.name}: cannot read video ({e})") from None


def _stream_info(container: av.container.InputContainer, name: str) -> tuple[int, float | None]:
    if not container.streams.video:
        raise ProcessorError(f"{name}: no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if isinstance(rate, Fraction) and rate > 0 else None
    return int(stream.frames or 0), fps


def _count_frames(source: Source) -> int:
    with _open(source) as container:
        try:
            return sum(1 for _ in container.decode(video=0))
        except av.error.FFmpegError as e:
            raise ProcessorError(f"{source.name}: corrupt video ({e})") from None


def decode_clip(source: Source, settings: VideoSettings) -> DecodedClip:
    """Decode the frames `settings` samples from a video source, resizing each as it arrives."""
    with _open(source) as container:
        total, fps = _stream_info(container, source.name)
    if total <= 0:
        total = _count_frames(source)
    for _ in range(2):  # a second pass only when the header's frame count was too high
        if total <= 0:
            raise ProcessorError(f"{source.name}: no decodable video frames")
        indices = sample_indices(total, fps, settings).tolist()
        frames, decoded = _decode_selected(source, indices, settings)
        if len(frames) == len(indices):
            return DecodedClip(torch.stack(frames), indices, total, fps)
        total = decoded
    raise ProcessorError(f"{source.name}: frames vanished while decoding")


def _decode_selected(source: Source, indices: list[int], settings: VideoSettings
                     ) -> tuple[list[torch.Tensor], int]:
    """Resized frames at `indices` and how many frames were decoded before stopping."""
    wanted, last = set(indices), indices[-1]
    out: list[torch.Tensor] = []
    target: tuple[int, int] | None = None
    decoded = 0
    with _open(source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(container.decode(stream)):
                decoded = i + 1
                if i > last:
                    break
                if i not in wanted:
                    continue
                rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[None]
                if target is None:
                    target = _target_size(len(indices), rgb.shape[-2], rgb.shape[-1], settings, source.name)
                out.append(resize_bicubic(rgb.contiguous(), *target)[0])
        except av.error.FFmpegError as e:
            if not out:
                raise ProcessorError(f"{source.name}: corrupt video ({e})") from None
    return out, decoded


def _target_size(n: int, h: int, w: int, settings: VideoSettings, name: str) -> tuple[int, int]:
    if not settings.do_resize:
        return h, w
    if settings.budget is not None:
        try:
            return settings.budget.frame_size(n, h, w, settings.factor)
        except ProcessorError as e:
            raise ProcessorError(f"{name}: {e}") from None
    max_pixels = settings.max_pixels
    if settings.cap_pixels_per_frame:
        frame_cap = settings.max_video_tokens * settings.factor ** 2
        max_pixels = max(min(frame_cap, settings.max_pixels // n), int(settings.min_pixels * 1.05)) * n
    try:
        return smart_resize_video(n, h, w, settings.factor, settings.temporal_patch_size, settings.min_pixels,
                                  max_pixels)
    except ValueError as e:
        raise ProcessorError(f"{name}: {w}x{h} video: {e}") from None


# ------------------------------------------------------------------------------------------------ pixels
@dataclass
class VideoFeatures:
    """One processed video."""

    pixel_values: torch.Tensor  # (T/t*gh*gw, C*t*p*p) float32
    grid_thw: tuple[int, int, int]
    timestamps: list[float]  # seconds, one per frame group
    frame_indices: list[int]
    total_frames: int
    native_fps: float | None
    content_hash: str


def process_clip(clip: DecodedClip, settings: VideoSettings, source_hash: str | None = None) -> VideoFeatures:
    """Pad, patchify and normalise decoded frames."""
    frames = normalize(clip.frames, settings.normalization())
    t = settings.temporal_patch_size
    if pad := -frames.shape[0] % t:
        frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
    pixel_values, grid = patchify(frames, settings.patch_size, settings.merge_size, t)
    digest = hashlib.sha256(settings.key().encode())
    digest.update(source_hash.encode() if source_hash else clip.frames.numpy().tobytes())
    digest.update(repr((clip.indices, grid)).encode())
    timestamps = frame_group_timestamps(clip.indices, clip.native_fps, t)
    return VideoFeatures(pixel_values, grid, timestamps, clip.indices, clip.total_frames, clip.native_fps,
                         digest.hexdigest())
