"""Throughput and latency benchmark: measurement core, synthetic inputs, backends, rows and reports.

One *configuration* is (batch size, text prompt tokens, images, video, new tokens). For each configuration and
backend, every repeat times four calls, each on its own, after `warmup` untimed repeats:

1. `prepare`  - preprocessing of the synthetic images/video into model inputs (CPU)  -> `preprocess_ms`
2. `vision`   - the vision encoder alone on those inputs                              -> `vision_ms`
3. `generate(1)` - a full generation of one token: vision + prefill + first token    -> `ttft_ms`
4. `generate(N)` - a full generation of exactly N tokens (no early stop)              -> `latency_ms`

Derived per repeat: `prefill_tokens_per_s = batch * input_tokens / ttft_ms` (input tokens include the visual
ones; TTFT includes the vision encoder), `tpot_ms = (latency_ms - ttft_ms) / (N - 1)`, `decode_tokens_per_s =
batch * 1000 / tpot_ms`, `e2e_ms = preprocess_ms + latency_ms`. Every figure is the median over repeats with
`_min` / `_max` beside it. CUDA work is timed with CUDA events and a synchronisation; CPU work with
`time.perf_counter`. Peak memory covers the timed repeats.

On CUDA the rows also give the decode step's fraction of the memory-bandwidth limit (bytes of weights and KV
cache read per step / `tpot` / peak bandwidth) and the prefill's fraction of peak FLOP/s, with device peaks
from `DEVICE_PEAKS` (datasheet figures, overridable).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from qwen3vl_eval.errors import InputError
from qwen3vl_eval.model.config import Qwen3VLConfig
from qwen3vl_eval.report.stats import summarize
from qwen3vl_eval.runtime.provenance import device_name, software_versions
from qwen3vl_eval.runtime.timing import Stopwatch, free, peak_memory_mb, reset_peak_memory

# ------------------------------------------------------------------------------------------------ device peaks


@dataclass(frozen=True)
class DevicePeak:
    """Datasheet peaks: memory bandwidth (GB/s), dense bf16/fp16 tensor-core and plain fp32 TFLOP/s."""

    name: str
    bandwidth_gbs: float
    bf16_tflops: float
    fp32_tflops: float

    def tflops(self, dtype: torch.dtype) -> float:
        return self.fp32_tflops if dtype == torch.float32 else self.bf16_tflops


# Matched in order against the lower-cased `torch.cuda.get_device_name()`; the first pattern found wins.
DEVICE_PEAKS: list[tuple[str, DevicePeak]] = [
    ("h200", DevicePeak("H200 SXM", 4800, 989, 67)),
    ("h100 nvl", DevicePeak("H100 NVL", 3900, 835, 60)),
    ("h100 pcie", DevicePeak("H100 PCIe", 2000, 756, 51)),
    ("h100", DevicePeak("H100 SXM", 3350, 989, 67)),
    ("a100 80gb pcie", DevicePeak("A100 80GB PCIe", 1935, 312, 19.5)),
    ("a100-sxm4-80gb", DevicePeak("A100 SXM 80GB", 2039, 312, 19.5)),
    ("a100", DevicePeak("A100 40GB", 1555, 312, 19.5)),
    ("l40s", DevicePeak("L40S", 864, 362, 91.6)),
    ("l4", DevicePeak("L4", 300, 121, 30.3)),
    ("a10", DevicePeak("A10", 600, 125, 31.2)),
    ("rtx 4090", DevicePeak("RTX 4090", 1008, 165, 82.6)),
]


def device_peak(device_name: str, *, bandwidth_gbs: float | None = None,
                tflops: float | None = None) -> DevicePeak | None:
    """Peaks for a CUDA device name, with either figure overridden; None when unknown and not overridden."""
    low = device_name.lower()
    known = next((p for pat, p in DEVICE_PEAKS if pat in low), None)
    if known is None and (bandwidth_gbs is None or tflops is None):
        return None
    known = known or DevicePeak(device_name, 0.0, 0.0, 0.0)
    return DevicePeak(known.name, bandwidth_gbs or known.bandwidth_gbs, tflops or known.bf16_tflops,
                      tflops or known.fp32_tflops)


# ------------------------------------------------------------------------------------------------ configurations

_SIZE = re.compile(r"^(\d+)x(\d+)$")
_VIDEO = re.compile(r"^(\d+(?:\.\d+)?)x(\d+(?:\.\d+)?)(?:@(\d+)x(\d+))?$")
DEFAULT_VIDEO_FRAME = (640, 360)


@dataclass(frozen=True)
class VideoSpec:
    """A synthetic clip (`seconds` at `fps` sampled frames of `width`x`height`) or a media file."""

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


# ------------------------------------------------------------------------------------------------ synthetic inputs


@dataclass
class Prepared:
    """Model inputs in the Hugging Face layout (CONTRACTS section 2 `input.*`) plus their token counts."""

    tensors: dict[str, torch.Tensor]
    input_tokens: int  # per row, visual tokens included
    visual_tokens: int  # per row
    grids: list[tuple[int, int, int]] = field(default_factory=list)  # one row's image and video grids (t, h, w)

    @property
    def has_vision(self) -> bool:
        return "pixel_values" in self.tensors or "pixel_values_videos" in self.tensors

    def to(self, device: torch.device, dtype: torch.dtype) -> Prepared:
        moved = {k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device))
                 for k, v in self.tensors.items()}
        return Prepared(moved, self.input_tokens, self.visual_tokens, self.grids)


def _preprocessor_configs(model_dir: Path | None) -> tuple[dict, dict]:
    """The checkpoint's image and video preprocessor configs, else the released Qwen3-VL ones."""
    from qwen3vl_eval.checkpoints.tiny import ASSETS

    out = []
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        path = model_dir / name if model_dir is not None and (model_dir / name).is_file() else ASSETS / "qwen3vl" / name
        out.append(json.loads(path.read_text()))
    return out[0], out[1]


class InputBuilder:
    """Builds one configuration's inputs with the project's image and video processors.

    Media are synthetic uint8 pixels (seeded noise; timings do not depend on content) made once per
    configuration; `build` runs the preprocessing (resize, patchify, normalise) for every row, which is what
    `preprocess_ms` times. Each row holds `prompt_tokens` random text tokens, split around the visual blocks:
    per image `<vision_start> <image_pad>*n <vision_end>`, per video temporal patch the same with video pads.
    A media-file video is decoded (PyAV) on every build."""

    def __init__(self, config: Qwen3VLConfig, *, model_dir: Path | None = None, seed: int = 0) -> None:
        from qwen3vl_eval.processor.image import ImageSettings

        self.config = config
        self.seed = seed
        image_cfg, video_cfg = _preprocessor_configs(model_dir)
        self.image_settings = ImageSettings.from_config(image_cfg)
        self.video_cfg = video_cfg
        specials = (config.image_token_id, config.video_token_id, config.vision_start_token_id,
                    config.vision_end_token_id, config.text.vocab_size)
        self.text_vocab = max(2, min(specials))
        self._media: dict[BenchConfig, tuple[list[torch.Tensor], torch.Tensor | None]] = {}

    def _raw(self, cfg: BenchConfig) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        if cfg not in self._media:
            g = torch.Generator().manual_seed(self.seed)
            images = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for w, h in cfg.images]
            frames = None
            if cfg.video is not None and cfg.video.path is None:
                v = cfg.video
                frames = torch.randint(0, 256, (v.frames, 3, v.height, v.width), generator=g, dtype=torch.uint8)
            self._media[cfg] = (images, frames)
        return self._media[cfg]

    def _video(self, cfg: BenchConfig, frames: torch.Tensor | None) -> tuple[torch.Tensor, tuple[int, int, int]]:
        try:
            from qwen3vl_eval.processor import video as pv
        except ImportError as e:
            raise InputError(f"--video needs PyAV for the video processor ({e})") from None
        settings = pv.VideoSettings.from_config(self.video_cfg)
        if frames is None:  # a media file
            from qwen3vl_eval.processor.media import resolve_source

            assert cfg.video is not None and cfg.video.path is not None
            clip = pv.decode_clip(resolve_source(cfg.video.path), settings)
        else:
            from qwen3vl_eval.processor.image import resize_bicubic

            h, w = pv.smart_resize_video(frames.shape[0], frames.shape[2], frames.shape[3], settings.factor,
                                         settings.temporal_patch_size, settings.min_pixels, settings.max_pixels)
            clip = pv.DecodedClip(resize_bicubic(frames, h, w), list(range(frames.shape[0])), frames.shape[0],
                                  cfg.video.fps if cfg.video else None)
        feats = pv.process_clip(clip, settings, source_hash="bench")
        return feats.pixel_values, feats.grid_thw

    def build(self, cfg: BenchConfig) -> Prepared:
        """Preprocess every row's media and lay out the token ids (CPU tensors)."""
        from qwen3vl_eval.processor.image import process_image

        c, mu = self.config, self.config.vision.merge_unit
        images, frames = self._raw(cfg)
        pix, grids, vpix, vgrids = [], [], [], []
        for _ in range(cfg.batch_size):
            for img in images:
                f = process_image(img, self.image_settings, source_hash="bench")
                pix.append(f.pixel_values)
                grids.append(f.grid_thw)
            if cfg.video is not None:
                pv, grid = self._video(cfg, frames)
                vpix.append(pv)
                vgrids.append(grid)
        blocks: list[int] = []
        for t, h, w in grids[: len(images)]:
            blocks += [c.vision_start_token_id] + [c.image_token_id] * (t * h * w // mu) + [c.vision_end_token_id]
        for t, h, w in vgrids[:1]:
            for _ in range(t):
                blocks += [c.vision_start_token_id] + [c.video_token_id] * (h * w // mu) + [c.vision_end_token_id]
        g = torch.Generator().manual_seed(self.seed + 1)
        text = torch.randint(0, self.text_vocab, (cfg.batch_size, cfg.prompt_tokens), generator=g)
        half = cfg.prompt_tokens // 2
        vis = torch.tensor(blocks, dtype=torch.long).expand(cfg.batch_size, -1)
        ids = torch.cat([text[:, :half], vis, text[:, half:]], dim=1)
        tensors = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if pix:
            tensors["pixel_values"] = torch.cat(pix)
            tensors["image_grid_thw"] = torch.tensor(grids, dtype=torch.long)
        if vpix:
            tensors["pixel_values_videos"] = torch.cat(vpix)
            tensors["video_grid_thw"] = torch.tensor(vgrids, dtype=torch.long)
        row_grids = grids[: len(images)] + vgrids[:1]
        return Prepared(tensors, ids.shape[1], len(blocks), [tuple(map(int, g)) for g in row_grids])


# ------------------------------------------------------------------------------------------------ backends


class Backend(Protocol):
    """What the measurement loop needs from an implementation."""

    name: str
    config: Qwen3VLConfig

    def prepare(self, cfg: BenchConfig) -> Prepared:
        """Preprocess the configuration's inputs onto the device (timed as preprocessing)."""

    def vision(self, inputs: Prepared) -> Any:
        """Run the vision encoder alone on the inputs' pixels."""

    def generate(self, inputs: Prepared, new_tokens: int) -> int:
        """Generate exactly `new_tokens` tokens per row (no early stop); return how many were generated."""

    def close(self) -> None:
        """Free the model."""


class _ModelBackend:
    """Shared parts: synthetic inputs through our processor, moved to the device in the model dtype."""

    name = "?"

    def __init__(self, config: Qwen3VLConfig, builder: InputBuilder, device: torch.device,
                 dtype: torch.dtype) -> None:
        self.config, self.builder, self.device, self.dtype = config, builder, device, dtype
        self.model: Any = None

    def prepare(self, cfg: BenchConfig) -> Prepared:
        return self.builder.build(cfg).to(self.device, self.dtype)

    def close(self) -> None:
        self.model = None


class NativeBackend(_ModelBackend):
    """Our implementation: `qwen3vl_eval.model` and `qwen3vl_eval.model.generate`, with the CUDA-graph decode
    step of `qwen3vl_eval.model.cuda_graph` when `fast` (as the engine does on CUDA), compiled by inductor first
    with `compile`."""

    name = "native"

    def __init__(self, config: Qwen3VLConfig, builder: InputBuilder, device: torch.device, dtype: torch.dtype,
                 *, model_dir: Path | None = None, seed: int = 0, fast: bool = False, compile: bool = False) -> None:
        super().__init__(config, builder, device, dtype)
        from qwen3vl_eval.model.weights import build_model, load_model

        self.model = (load_model(model_dir, device=device, dtype=dtype) if model_dir is not None
                      else build_model(config, device=device, dtype=dtype, seed=seed))
        self.step_fn = None
        if fast:
            from qwen3vl_eval.model.cuda_graph import CudaGraphDecoder

            self.step_fn = CudaGraphDecoder(self.model, compile=compile)

    @torch.inference_mode()
    def vision(self, inputs: Prepared) -> Any:
        t = inputs.tensors
        visual = self.model.model["visual"]
        out = []
        if "pixel_values" in t:
            out.append(visual(t["pixel_values"], t["image_grid_thw"]))
        if "pixel_values_videos" in t:
            out.append(visual(t["pixel_values_videos"], t["video_grid_thw"]))
        return out

    def generate(self, inputs: Prepared, new_tokens: int) -> int:
        from qwen3vl_eval.model.generate import generate
        from qwen3vl_eval.model.sampling import GenerationParams

        t = dict(inputs.tensors)
        params = GenerationParams(max_new_tokens=new_tokens, temperature=0.0, ignore_eos=True)
        outs = generate(self.model, t.pop("input_ids"), t.pop("attention_mask"), params, step_fn=self.step_fn, **t)
        return min(len(o.token_ids) for o in outs)

    def close(self) -> None:
        self.step_fn = None
        super().close()


class HFBackend(_ModelBackend):
    """transformers' Qwen3-VL (the `golden` extra), imported only here, for `--baseline hf`."""

    name = "hf"

    def __init__(self, config: Qwen3VLConfig, builder: InputBuilder, device: torch.device, dtype: torch.dtype,
                 *, model_dir: Path | None = None, seed: int = 0) -> None:
        super().__init__(config, builder, device, dtype)
        try:
            import transformers
        except ImportError:
            raise InputError("--baseline hf needs transformers (pip install -e '.[golden]')") from None
        auto = transformers.AutoModelForImageTextToText
        if model_dir is not None:
            model = auto.from_pretrained(str(model_dir), dtype=dtype)
        else:
            hf = config.to_hf()
            hf_config = transformers.AutoConfig.for_model(hf.pop("model_type"), **hf)
            torch.manual_seed(seed)
            with torch.device(device):
                model = auto.from_config(hf_config, dtype=dtype)
        self.model = model.to(device).eval()
        self.model.generation_config.eos_token_id = None  # fixed output length: never stop early

    @torch.inference_mode()
    def vision(self, inputs: Prepared) -> Any:
        t = inputs.tensors
        visual = self.model.model.visual
        out = []
        if "pixel_values" in t:
            out.append(visual(t["pixel_values"], grid_thw=t["image_grid_thw"]))
        if "pixel_values_videos" in t:
            out.append(visual(t["pixel_values_videos"], grid_thw=t["video_grid_thw"]))
        return out

    @torch.inference_mode()
    def generate(self, inputs: Prepared, new_tokens: int) -> int:
        t = inputs.tensors
        out = self.model.generate(**t, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                  pad_token_id=0)
        return int(out.shape[1] - t["input_ids"].shape[1])


# ------------------------------------------------------------------------------------------------ measurement

# Keys of every bench JSON row (CONTRACTS section 3 names the first nine); None where not measured.
ROW_KEYS = ("batch_size", "prompt_tokens", "new_tokens", "ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s",
            "tpot_ms", "vision_ms", "peak_memory_mb", "preprocess_ms", "latency_ms", "e2e_ms",
            "input_tokens", "visual_tokens", "images", "video")
TIMED = ("preprocess_ms", "vision_ms", "ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s",
         "tpot_ms", "latency_ms", "e2e_ms")


def derive(stages: dict[str, float | None], *, batch_size: int, input_tokens: int, new_tokens: int) -> dict:
    """Per-repeat figures from the four stage times (ms): see the module docstring for the formulas."""
    pre, vis, ttft, lat = (stages.get(k) for k in ("preprocess_ms", "vision_ms", "ttft_ms", "latency_ms"))
    assert ttft is not None and lat is not None
    out: dict[str, float | None] = {
        "preprocess_ms": pre, "vision_ms": vis, "ttft_ms": ttft,
        "prefill_tokens_per_s": batch_size * input_tokens / max(ttft, 1e-6) * 1000.0,
        "latency_ms": lat, "e2e_ms": lat + (pre or 0.0), "tpot_ms": None, "decode_tokens_per_s": None,
    }
    if new_tokens > 1 and lat > ttft:  # timing noise can invert the two on a loaded CPU: no figure then
        tpot = (lat - ttft) / (new_tokens - 1)
        out["tpot_ms"] = tpot
        out["decode_tokens_per_s"] = batch_size * 1000.0 / tpot
    return out


def run_config(backend: Backend, cfg: BenchConfig, *, warmup: int, repeats: int,
               device: torch.device) -> tuple[dict[str, Any], list[dict]]:
    """Time one configuration; returns (row figures: medians, mins, maxes and token counts, per-repeat dicts)."""
    sw = Stopwatch(device)

    def once() -> tuple[dict, Prepared]:
        inputs, pre_ms = sw.time(lambda: backend.prepare(cfg))
        vis_ms = sw.time(lambda: backend.vision(inputs))[1] if inputs.has_vision else None
        ttft_ms = sw.time(lambda: _check(backend.generate(inputs, 1), 1))[1]
        lat_ms = sw.time(lambda: _check(backend.generate(inputs, cfg.new_tokens), cfg.new_tokens))[1]
        stages = {"preprocess_ms": pre_ms, "vision_ms": vis_ms, "ttft_ms": ttft_ms, "latency_ms": lat_ms}
        return derive(stages, batch_size=cfg.batch_size, input_tokens=inputs.input_tokens,
                      new_tokens=cfg.new_tokens), inputs

    for _ in range(warmup):
        once()
    reset_peak_memory(device)
    per_repeat, inputs = [], None
    for _ in range(repeats):
        figures, inputs = once()
        per_repeat.append(figures)
    assert inputs is not None
    row: dict[str, Any] = {"input_tokens": inputs.input_tokens, "visual_tokens": inputs.visual_tokens,
                           "visual_grids": [list(g) for g in inputs.grids]}
    for key in TIMED:
        vals = [r[key] for r in per_repeat if r[key] is not None]
        if not vals:
            row[key] = row[f"{key}_min"] = row[f"{key}_max"] = None
            continue
        s = summarize(vals)
        row[key], row[f"{key}_min"], row[f"{key}_max"] = s.median, s.min, s.max
    row["peak_memory_mb"], row["peak_memory_kind"] = peak_memory_mb(device)
    return row, per_repeat


def _check(generated: int, wanted: int) -> int:
    if generated != wanted:
        raise RuntimeError(f"backend generated {generated} tokens, expected exactly {wanted} (early stop?)")
    return generated


# ------------------------------------------------------------------------------------------------ rooflines


def _param_counts(config: Qwen3VLConfig) -> dict[str, int]:
    from qwen3vl_eval.model.weights import checkpoint_shapes

    out = {"vision": 0, "embed": 0, "lm_head": 0, "text_dense": 0, "experts": 0, "moe_layers": 0}
    for k, shape in checkpoint_shapes(config).items():
        n = math.prod(shape)
        if k.startswith("model.visual."):
            out["vision"] += n
        elif k.endswith("embed_tokens.weight"):
            out["embed"] += n
        elif k == "lm_head.weight":
            out["lm_head"] += n
        elif ".mlp.experts." in k:
            out["experts"] += n
        else:
            out["text_dense"] += n
    out["moe_layers"] = sum(config.text.is_moe_layer(i) for i in range(config.text.num_hidden_layers))
    if config.tie_word_embeddings:
        out["lm_head"] = out["embed"]
    return out


def decode_bytes_per_step(config: Qwen3VLConfig, *, batch_size: int, context: float, dtype_bytes: int) -> float:
    """Bytes read from device memory by one decode step: every text weight except the embedding table (the
    lm_head matrix included, read once), for MoE layers the experts the batch is expected to route to (uniform
    routing), plus the KV cache of `context` tokens per row."""
    t = config.text
    p = _param_counts(config)
    weights = p["text_dense"] + p["lm_head"]
    if t.num_experts:
        touched = t.num_experts * (1 - (1 - t.num_experts_per_tok / t.num_experts) ** batch_size)
        weights += p["experts"] * touched / t.num_experts
    kv = 2 * t.num_hidden_layers * t.num_key_value_heads * t.head_dim * context * batch_size
    return (weights + kv) * dtype_bytes


def prefill_flops(config: Qwen3VLConfig, *, batch_size: int, tokens: int) -> float:
    """Multiply-add FLOPs of the text prefill: 2 x active non-embedding weights per token, causal attention
    (QK^T and AV over the lower triangle), and the lm_head for the last position of each row."""
    t = config.text
    p = _param_counts(config)
    active = p["text_dense"]
    if t.num_experts and p["moe_layers"]:
        active += p["experts"] * t.num_experts_per_tok / t.num_experts
    attn = 2 * 2 * t.num_hidden_layers * t.num_attention_heads * t.head_dim * tokens * (tokens + 1) / 2
    return batch_size * (2 * active * tokens + attn + 2 * p["lm_head"])


def vision_flops(config: Qwen3VLConfig, grids: Sequence[tuple[int, int, int]], batch_size: int) -> float:
    """FLOPs of the vision tower: 2 x weights per patch (merger rows counted per merged token) plus attention
    within each frame (t=1 segments of h*w patches)."""
    v = config.vision
    p = _param_counts(config)
    patches = sum(t * h * w for t, h, w in grids)
    attn = sum(t * 4 * (h * w) ** 2 * v.hidden_size for t, h, w in grids) * v.depth
    return batch_size * (2 * p["vision"] * patches + attn)


def add_utilization(row: dict, config: Qwen3VLConfig, cfg: BenchConfig, dtype: torch.dtype,
                    peak: DevicePeak | None, grids: Sequence[tuple[int, int, int]]) -> None:
    """Fill the roofline fields of a CUDA row (None where a figure is missing)."""
    dtype_bytes = torch.empty((), dtype=dtype).element_size()
    context = row["input_tokens"] + cfg.new_tokens / 2
    row["decode_bytes_per_step"] = decode_bytes_per_step(config, batch_size=cfg.batch_size, context=context,
                                                          dtype_bytes=dtype_bytes)
    row["prefill_flops"] = prefill_flops(config, batch_size=cfg.batch_size, tokens=row["input_tokens"])
    row["vision_flops"] = vision_flops(config, grids, cfg.batch_size) if grids else None
    row["peak_bandwidth_gbs"] = peak.bandwidth_gbs if peak else None
    row["peak_tflops"] = peak.tflops(dtype) if peak else None
    row["decode_bandwidth_util"] = row["prefill_flops_util"] = row["vision_flops_util"] = None
    if peak is None:
        return
    if row.get("tpot_ms") and peak.bandwidth_gbs:
        row["decode_bandwidth_util"] = row["decode_bytes_per_step"] / (row["tpot_ms"] / 1e3) / (
            peak.bandwidth_gbs * 1e9)
    tf = peak.tflops(dtype) * 1e12
    if row.get("ttft_ms") and tf:
        work = row["prefill_flops"] + (row["vision_flops"] or 0.0)
        row["prefill_flops_util"] = work / (row["ttft_ms"] / 1e3) / tf
    if row.get("vision_ms") and row["vision_flops"] and tf:
        row["vision_flops_util"] = row["vision_flops"] / (row["vision_ms"] / 1e3) / tf


# ------------------------------------------------------------------------------------------------ the run


def bench(backends: Sequence[tuple[str, Callable[[], Backend]]], configs: Sequence[BenchConfig], *, model: str,
          device: torch.device, dtype: torch.dtype, warmup: int, repeats: int, peak: DevicePeak | None = None,
          log: Callable[[str], None] = print) -> list[dict]:
    """Run every configuration on every (name, factory) backend, built one at a time and freed after; return
    the rows. A backend or configuration that fails at run time (out of memory, say) gives rows with `error`
    set and the others still run; bad input (InputError) stops the run."""
    from qwen3vl_eval.runtime.device import dtype_name

    rows: list[dict] = []
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for name, make in backends:
        base = {"backend": name, "model": model, "device": str(device), "device_name": device_name(device),
                "dtype": dtype_name(dtype), "warmup": warmup, "repeats": repeats,
                "versions": software_versions(with_transformers=name == "hf"), "date": date, "error": None,
                **dict.fromkeys(ROW_KEYS)}
        backend = None
        try:
            log(f"[bench] building the {name} model ...")
            backend = make()
        except RuntimeError as e:
            log(f"[bench]   {name} failed to build: {_err(e)}")
            rows += [{**base, **cfg.describe(), "error": f"model build failed: {_err(e)}"} for cfg in configs]
            free(device)
            continue
        try:
            for cfg in configs:
                row: dict[str, Any] = {**base, **cfg.describe()}
                log(f"[bench] {name} {_short(cfg)} ...")
                try:
                    figures, _ = run_config(backend, cfg, warmup=warmup, repeats=repeats, device=device)
                    row.update(figures)
                    if device.type == "cuda":
                        add_utilization(row, backend.config, cfg, dtype, peak,
                                        [tuple(g) for g in row["visual_grids"]])
                    log(f"[bench]   ttft {row['ttft_ms']:.2f} ms, decode {_f(row['decode_tokens_per_s'])} tok/s, "
                        f"peak {row['peak_memory_mb']:.0f} MiB")
                except RuntimeError as e:  # torch.OutOfMemoryError included
                    row["error"] = _err(e)
                    log(f"[bench]   failed: {row['error']}")
                    free(device)
                rows.append(row)
        finally:
            backend.close()
            backend = None
            free(device)
    return rows


def _err(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"


def _short(cfg: BenchConfig) -> str:
    d = cfg.describe()
    extra = (" img=" + ",".join(d["images"]) if d["images"] else "") + (f" video={d['video']}" if d["video"] else "")
    return f"bs={cfg.batch_size} prompt={cfg.prompt_tokens} new={cfg.new_tokens}{extra}"


def _f(v: float | None, nd: int = 1) -> str:
    return "–" if v is None else f"{v:,.{nd}f}"


# ------------------------------------------------------------------------------------------------ reports

_ROW_KEY = ("model", "dtype", "prompt_tokens", "new_tokens", "images", "video")


def _workload(row: dict) -> str:
    parts = [f"prompt {row.get('prompt_tokens')}", f"new {row.get('new_tokens')}"]
    if row.get("images"):
        parts.append("images " + ",".join(row["images"]))
    if row.get("video"):
        parts.append(f"video {row['video']}")
    return ", ".join(parts)


def _group(rows: Sequence[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(json.dumps(r.get(k)) for k in _ROW_KEY), []).append(r)
    return groups


def _range(r: dict, key: str, nd: int = 1) -> str:
    v = r.get(key)
    if v is None:
        return "–"
    lo, hi = r.get(f"{key}_min"), r.get(f"{key}_max")
    return f"{v:,.{nd}f} ({lo:,.{nd}f}–{hi:,.{nd}f})" if lo is not None and hi is not None else f"{v:,.{nd}f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def footer(rows: Sequence[dict]) -> str:
    """What every figure must name: models, dtypes, devices, versions and dates of the rows."""
    def uniq(key: str) -> str:
        return ", ".join(sorted({str(r.get(key)) for r in rows if r.get(key) is not None})) or "?"

    vers: dict[str, str] = {}
    for r in rows:
        vers.update(r.get("versions") or {})
    v = ", ".join(f"{k} {val}" for k, val in sorted(vers.items()))
    return (f"model {uniq('model')} | dtype {uniq('dtype')} | device {uniq('device_name')} ({uniq('device')}) | "
            f"{v} | {uniq('date')}")


def render_report(rows: Sequence[dict], charts: dict[str, str] | None = None) -> str:
    """report.md: one table per workload (model, dtype, prompt, new tokens, media), rows by backend and batch."""
    out = ["# Benchmark report", "", footer(rows), ""]
    peaks = {(r.get("device_name"), r.get("peak_bandwidth_gbs"), r.get("peak_tflops")) for r in rows
             if r.get("peak_bandwidth_gbs")}
    for name, bw, tf in sorted(peaks, key=str):
        out.append(f"Device peaks used for utilisation ({name}): {bw:g} GB/s, {tf:g} TFLOP/s (datasheet unless "
                   "overridden).")
    for _, group in _group(rows).items():
        first = group[0]
        out += ["", f"## {first.get('model')} · {first.get('dtype')} · {_workload(first)}", "",
                "| backend | batch | input tok | TTFT ms | prefill tok/s | decode tok/s | TPOT ms | vision ms | "
                "preprocess ms | latency ms | e2e ms | peak MiB | decode BW | prefill FLOP/s |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(group, key=lambda r: (r["backend"] != "native", r["backend"], r["batch_size"])):
            if r.get("error"):
                out.append(f"| {r['backend']} | {r['batch_size']} | – | failed: {r['error']} |" + " |" * 10)
                continue
            out.append(
                f"| {r['backend']} | {r['batch_size']} | {r.get('input_tokens')} | {_range(r, 'ttft_ms', 2)} | "
                f"{_range(r, 'prefill_tokens_per_s', 0)} | {_range(r, 'decode_tokens_per_s', 1)} | "
                f"{_range(r, 'tpot_ms', 2)} | {_range(r, 'vision_ms', 2)} | {_range(r, 'preprocess_ms', 2)} | "
                f"{_range(r, 'latency_ms', 1)} | {_range(r, 'e2e_ms', 1)} | {_f(r.get('peak_memory_mb'), 0)} | "
                f"{_pct(r.get('decode_bandwidth_util'))} | {_pct(r.get('prefill_flops_util'))} |")
        out += _ratios(group)
    out += ["", "## Definitions", "",
            "Medians over repeats, (min–max) beside them. TTFT: a full generation of one token (vision + prefill + "
            "first token). Prefill tok/s: batch × input tokens (visual included) / TTFT. TPOT: (latency of N tokens − "
            "TTFT) / (N − 1); decode tok/s = batch × 1000 / TPOT. Output length is fixed (no early stop). "
            "Preprocessing uses the same synthetic inputs for every backend. Peak memory: "
            "`torch.cuda.max_memory_allocated` on CUDA, the process RSS peak on CPU. Decode BW: bytes of weights "
            "and KV cache read per step / TPOT / peak bandwidth; prefill FLOP/s: (text prefill + vision "
            "encoder FLOPs) / TTFT / peak FLOP/s."]
    if charts:
        out += ["", "## Charts", ""] + [f"![{k}]({v})" for k, v in charts.items()]
    return "\n".join(out) + "\n"


def _speedup(native: dict, other: dict, key: str, rate: bool) -> str:
    a, b = native.get(key), other.get(key)
    if not a or not b:
        return "–"
    return f"{(a / b if rate else b / a):.2f}×"


def _ratios(group: Sequence[dict]) -> list[str]:
    """native / baseline ratios per batch size, when both ran."""
    ok = [r for r in group if not r.get("error")]
    native = {r["batch_size"]: r for r in ok if r["backend"] == "native"}
    lines = []
    for r in ok:
        n = native.get(r["batch_size"])
        if r["backend"] == "native" or n is None:
            continue
        lines.append(f"| {r['backend']} | {r['batch_size']} | {_speedup(n, r, 'ttft_ms', False)} | "
                     f"{_speedup(n, r, 'prefill_tokens_per_s', True)} | "
                     f"{_speedup(n, r, 'decode_tokens_per_s', True)} | {_speedup(n, r, 'latency_ms', False)} |")
    if not lines:
        return []
    return ["", "Native speed-up over the baseline (above 1× is native faster):", "",
            "| baseline | batch | TTFT | prefill tok/s | decode tok/s | latency |", "|---|---|---|---|---|---|",
            *lines]


def write_charts(rows: Sequence[dict], out_dir: Path) -> dict[str, str]:
    """throughput.png (prefill and decode tokens/s vs batch) and latency.png (TTFT and TPOT vs batch)."""
    from qwen3vl_eval.report.charts import line_panels

    ok = [r for r in rows if not r.get("error")]
    if not ok:
        return {}
    series: dict[str, dict[str, tuple[list, list]]] = {k: {} for k in
                                                        ("prefill_tokens_per_s", "decode_tokens_per_s",
                                                         "ttft_ms", "tpot_ms")}
    multi_model = len({r.get("model") for r in ok}) > 1
    multi_work = len(_group(ok)) > len({r.get("model") for r in ok})
    for r in sorted(ok, key=lambda r: r["batch_size"]):
        label = r["backend"]
        if multi_model:
            label = f"{r.get('model')} {label}"
        if multi_work:
            label += f" ({_workload(r)})"
        for key, s in series.items():
            xs, ys = s.setdefault(label, ([], []))
            xs.append(r["batch_size"])
            ys.append(r.get(key))
    foot = footer(ok)
    made = {}
    line_panels(out_dir / "throughput.png", [("Prefill", "tokens/s", series["prefill_tokens_per_s"]),
                                             ("Decode", "tokens/s", series["decode_tokens_per_s"])],
                xlabel="batch size", footer=foot, title="Throughput vs batch size")
    made["throughput"] = "throughput.png"
    line_panels(out_dir / "latency.png", [("Time to first token", "ms", series["ttft_ms"]),
                                          ("Time per output token", "ms", series["tpot_ms"])],
                xlabel="batch size", footer=foot, title="Latency vs batch size")
    made["latency"] = "latency.png"
    return made


def write_outputs(rows: Sequence[dict], out_dir: Path, *, charts: bool = True) -> Path:
    """bench.json, report.md and the charts in `out_dir`; returns the report path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(list(rows), indent=2) + "\n")
    made = write_charts(rows, out_dir) if charts else {}
    report = out_dir / "report.md"
    report.write_text(render_report(rows, made))
    return report
