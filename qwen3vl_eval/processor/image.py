"""Image preprocessing as transformers' Qwen2VLImageProcessor (torchvision backend) does it for Qwen3-VL:
decode to RGB uint8, `smart_resize` to multiples of patch*merge inside the pixel budget, bicubic antialiased
resize on the uint8 tensor, fused rescale+normalise in float32, and flattening into (patches, C*T*p*p) rows
in 2x2 merge-window order. research/qwen3vl_spec.md section 5.1 and 5.3."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F

from qwen3vl_eval.errors import ProcessorError
from qwen3vl_eval.processor.media import Source
from qwen3vl_eval.processor.resize import MAX_ASPECT_RATIO, smart_resize  # noqa: F401 (re-exported)
from qwen3vl_eval.processor.settings import BICUBIC, ImageSettings, MediaSettings  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)



def max_image_pixels() -> int | None:
    """Decoded images with more pixels are refused as possible decompression bombs: PIL's own refusal threshold,
    2 x `PIL.Image.MAX_IMAGE_PIXELS` (178,956,970 by default, about 13377x13377, room for 100-megapixel camera
    images), which is also where transformers (loading through PIL) refuses. PIL's guard is never switched off
    here; None only when the caller switched it off."""
    limit = PIL.Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


# ------------------------------------------------------------------------------------------------ decoding
def _reduce_16bit(img: PIL.Image.Image) -> PIL.Image.Image:
    """16-bit grayscale ("I;16*", or "I" holding 16-bit values) to 8 bits by dropping the low byte, as PIL
    itself does for 16-bit RGB files. transformers feeds the raw 16-bit values (normalised values up to
    ~513) and PIL's own convert("RGB") clips them to white; both are unusable, so we deviate on purpose."""
    arr = np.asarray(img, dtype=np.int64)
    return PIL.Image.fromarray((np.clip(arr, 0, 65535) >> 8).astype(np.uint8), mode="L")


def pil_to_rgb(img: PIL.Image.Image, *, composite_alpha: bool) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array of `img`.

    `composite_alpha=True` blends transparency onto white (what transformers does for PIL images handed to
    the processor); False drops the alpha channel (what transformers' file decoding, torchvision's
    `decode_image(mode=RGB)`, does for paths, URLs and base64 - it equals PIL's `convert("RGB")`)."""
    if img.mode.startswith("I;16") or (img.mode == "I" and img.getextrema()[1] > 255):
        img = _reduce_16bit(img)
    if composite_alpha and ("A" in img.getbands() or img.info.get("transparency") is not None):
        rgba = img.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = PIL.Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"))


def _check_bomb(width: int, height: int, name: str) -> None:
    """ProcessorError for an image header claiming more than `max_image_pixels()`, before any decoding."""
    limit = max_image_pixels()
    if limit is not None and width * height > limit:
        raise ProcessorError(f"{name}: image of {width}x{height} = {width * height} pixels is over the {limit} "
                             "pixel limit (refused as a possible decompression bomb)")


_EXIF_ORIENTATION = 0x0112  # orientations 5-8 turn the image a quarter, swapping its sides


@contextlib.contextmanager
def _opened(source: Source) -> Iterator[PIL.Image.Image]:
    """The PIL image of a file or bytes source, its header read and checked for a bomb, pixels not yet decoded;
    PIL's failures (here or in the caller's block) as one ProcessorError naming the source."""
    try:
        with warnings.catch_warnings(), source.open() as f:
            # PIL warns between 1x and 2x MAX_IMAGE_PIXELS and raises above; we accept up to 2x, as
            # transformers does, and keep stderr clean
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(f) as img:
                _check_bomb(img.width, img.height, source.name)
                yield img
    except PIL.Image.DecompressionBombError as e:
        raise ProcessorError(f"{source.name}: refused as a possible decompression bomb ({e})") from None
    except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ProcessorError(f"{source.name}: cannot read image ({type(e).__name__}: {e})") from None


def image_size(source: Source) -> tuple[int, int]:
    """(width, height) of the image `decode_image` gives, from the header alone (no pixels decoded)."""
    if source.pixels is not None:
        return int(source.pixels.shape[2]), int(source.pixels.shape[1])
    if source.obj is not None:
        return int(decode_image(source).shape[2]), int(decode_image(source).shape[1])
    with _opened(source) as img:
        quarter = img.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8)
        return (img.height, img.width) if quarter else (img.width, img.height)


def decode_image(source: Source) -> torch.Tensor:
    """The (3, H, W) uint8 RGB tensor of an image source, decoded once (kept on the source): files and bytes
    upright per their EXIF orientation, alpha dropped (as transformers decodes paths, URLs and base64);
    in-memory PIL images used as given (no EXIF transpose, alpha composited on white), as transformers does.
    ProcessorError naming the source for a decompression bomb (refused from the header), a file PIL cannot
    read, or an empty image."""
    if source.pixels is not None:
        return source.pixels
    if source.obj is not None:
        if not isinstance(source.obj, PIL.Image.Image):
            raise ProcessorError(f"{source.name}: not an image (expected a path, URL, data URI or PIL image)")
        _check_bomb(source.obj.width, source.obj.height, source.name)
        arr = pil_to_rgb(source.obj, composite_alpha=True)
    else:
        with _opened(source) as img:
            if getattr(img, "n_frames", 1) > 1:  # PIL decodes the first frame
                log.warning("warning: %s: an animated image of %d frames; only frame 0 is used (pass moving "
                            "pictures as a video)", source.name, img.n_frames)
            img.load()
            arr = pil_to_rgb(PIL.ImageOps.exif_transpose(img), composite_alpha=False)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ProcessorError(f"{source.name}: empty image")
    source.pixels = torch.from_numpy(np.array(arr)).permute(2, 0, 1).contiguous()
    return source.pixels


# ------------------------------------------------------------------------------------------------ pixels
def resize_bicubic(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic antialiased resize of (N, C, H, W) uint8 frames to uint8, the same kernel torchvision's
    `resize` calls on CPU (torch's native uint8 path: no float round trip)."""
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    # torch's vectorised uint8 antialias kernel works on channels-last data (same result, several times faster)
    frames = frames.contiguous(memory_format=torch.channels_last)
    out = F.interpolate(frames, size=[height, width], mode="bicubic", align_corners=False, antialias=True)
    return out.contiguous()


def normalize(frames: torch.Tensor, settings: ImageSettings) -> torch.Tensor:
    """Rescale and normalise (..., C, H, W) uint8 frames to float32, computing exactly transformers' fused
    `(x - mean/r) / (std/r)` (torchvision `normalize` with the rescale folded into mean and std)."""
    out = frames.to(torch.float32)
    if settings.do_normalize:
        mean = torch.tensor(settings.image_mean, dtype=torch.float32)
        std = torch.tensor(settings.image_std, dtype=torch.float32)
        if settings.do_rescale:
            mean = mean * (1.0 / settings.rescale_factor)
            std = std * (1.0 / settings.rescale_factor)
        out.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))
    elif settings.do_rescale:
        out = out * settings.rescale_factor
    return out


def patchify(frames: torch.Tensor, patch: int, merge: int, temporal: int) -> tuple[torch.Tensor, tuple]:
    """(T, C, H, W) frames, T a multiple of `temporal`, to contiguous rows (T/t * H/p * W/p, C*t*p*p) in merge-window
    order (research/qwen3vl_spec.md 5.3), and the grid (T/t, H/p, W/p)."""
    t_all, c, h, w = frames.shape
    gt, gh, gw = t_all // temporal, h // patch, w // patch
    x = frames.reshape(gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # gt, bh, bw, ih, iw, c, t, y, x
    return x.reshape(gt * gh * gw, c * temporal * patch * patch).contiguous(), (gt, gh, gw)


@dataclass
class ImageFeatures:
    """One processed image."""

    pixel_values: torch.Tensor  # (gh*gw, C*T*p*p) float32
    grid_thw: tuple[int, int, int]
    content_hash: str


def process_image(image: torch.Tensor, settings: ImageSettings, source_hash: str | None = None,
                  name: str = "image") -> ImageFeatures:
    """Process one (3, H, W) uint8 image. `source_hash` (of the file bytes) keys the content hash; without
    it the decoded pixels are hashed."""
    _, h, w = image.shape
    if settings.do_resize:
        try:
            rh, rw = smart_resize(h, w, settings.factor, settings.min_pixels, settings.max_pixels)
        except ValueError as e:
            raise ProcessorError(f"{name}: {w}x{h} image: {e}") from None
        image = resize_bicubic(image[None], rh, rw)[0]
    frames = normalize(image, settings)[None].expand(settings.temporal_patch_size, -1, -1, -1)  # both time slots
    pixel_values, grid = patchify(frames, settings.patch_size, settings.merge_size, settings.temporal_patch_size)
    digest = hashlib.sha256(settings.key().encode())
    digest.update(source_hash.encode() if source_hash else image.numpy().tobytes())
    digest.update(repr(grid).encode())
    return ImageFeatures(pixel_values, grid, digest.hexdigest())
