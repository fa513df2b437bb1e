"""Write tests/data/video_budget_cases.json: frame counts, frame indices and frame sizes that qwen-vl-utils 0.0.14
itself computes for video items with per-item budget keys (fps, nframes, min/max_frames, min/max/total_pixels,
resized_height/width), at Qwen3-VL's patch size 16. The test suite checks `processor.video_budget` against the
numbers; it never imports qwen-vl-utils.

Run outside the project, in a venv with `qwen-vl-utils==0.0.14`, torch, numpy, pillow, av, packaging and what
tests/helpers.py imports (httpx):

    python reference/make_video_budget_cases.py

qwen-vl-utils imports torchvision, whose compiled ops are not needed for this: a stand-in module provides
`io.read_video` (PyAV decoding, as torchvision's) and a shape-only `transforms.functional.resize`, so every
number below comes from qwen-vl-utils' own `smart_nframes`, `smart_resize` and `fetch_video` budget code.
Clips too long to decode here are described by their metadata: a reader then hands `fetch_video` a zero tensor
of the right shape, with the frame count from qwen-vl-utils' `smart_nframes` and indices from the same
`linspace(...).round()` as its torchvision reader."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import write_video  # noqa: E402  (the same deterministic clips the test writes)

OUT = ROOT / "tests" / "data" / "video_budget_cases.json"
PATCH = 16


def _stand_in_torchvision() -> None:
    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.28.0"
    io = types.ModuleType("torchvision.io")

    def read_video(path, start_pts=0.0, end_pts=None, pts_unit="sec", output_format="TCHW"):
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            fps = float(s.average_rate)
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2), None, {"video_fps": fps}

    io.read_video = read_video
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.resize = lambda video, size, interpolation=None, antialias=True: torch.zeros(
        video.shape[0], video.shape[1], *size, dtype=torch.uint8)
    transforms.functional = functional
    transforms.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
    tv.io, tv.transforms = io, transforms
    sys.modules.update({"torchvision": tv, "torchvision.io": io, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})


_stand_in_torchvision()
import qwen_vl_utils.vision_process as qvu  # noqa: E402

QWEN_VIDEOMME = {"fps": 2, "min_frames": 4, "max_frames": 512, "min_pixels": 3584, "max_pixels": 401408,
                 "total_pixels": 19267584}  # QwenLM/Qwen3-VL evaluation/VideoMME/infer_instruct.sh
LMMS_PR912 = {"fps": 2, "max_frames": 128, "max_pixels": 768 * 32 * 32}  # lmms-eval PR #912's Video-MME recipe
COOKBOOK = {"fps": 2, "max_frames": 2048, "total_pixels": 20480 * 32 * 32}  # cookbooks/video_understanding

# (name, total frames, native fps, height, width, options): clips described by metadata
META_CASES = [
    ("30s_480p_task_default", 900, 30.0, 480, 854, {"fps": 2, "max_frames": 128}),
    ("120s_720p_qwen_videomme", 3600, 30.0, 720, 1280, QWEN_VIDEOMME),
    ("40min_720p_qwen_videomme", 72000, 30.0, 720, 1280, QWEN_VIDEOMME),
    ("40min_360p_lmms_pr912", 60000, 25.0, 360, 640, LMMS_PR912),
    ("40min_720p_lmms_pr912", 72000, 30.0, 720, 1280, LMMS_PR912),
    ("128f_720p_qwen_max_pixels_only", 7680, 30.0, 720, 1280, {"fps": 2, "max_frames": 128, "max_pixels": 401408}),
    ("10min_1080p_cookbook", 18000, 30.0, 1080, 1920, COOKBOOK),
    ("10s_480p_nframes16", 240, 24.0, 480, 640, {"nframes": 16}),
    ("300f_nframes7_rounds", 300, 30.0, 360, 640, {"nframes": 7}),
    ("1080p_resized", 300, 30.0, 1080, 1920, {"fps": 1, "resized_height": 300, "resized_width": 500}),
    ("short_min_frames9", 30, 25.0, 40, 56, {"min_frames": 9}),
    ("odd_frames_total_cap", 9, 3.0, 64, 96, {"fps": 10}),
    ("portrait_min_pixels", 600, 30.0, 1280, 720, {"fps": 0.5, "min_pixels": 256 * 32 * 32}),
    ("total_pixels_small", 1800, 30.0, 720, 1280, {"fps": 2, "total_pixels": 16 * 768 * 32 * 32}),
]

# (name, write_video kwargs, options): real files, decoded
FILE_CASES = [
    ("file_24f_8fps", {"frames": 24, "fps": 8, "size": (96, 64)}, {"fps": 2, "min_pixels": 4096, "max_pixels": 16384}),
    ("file_20f_10fps_nframes", {"frames": 20, "fps": 10, "size": (80, 48)}, {"nframes": 6, "min_pixels": 2048}),
    ("file_15f_5fps_defaults", {"frames": 15, "fps": 5, "size": (64, 64)}, {"fps": 4}),
]


def _metadata_reader(total: int, fps: float, h: int, w: int):
    def read(ele):
        n = qvu.smart_nframes(ele, total_frames=total, video_fps=fps)
        idx = torch.linspace(0, total - 1, n).round().long()
        return torch.zeros(1, 3, h, w, dtype=torch.uint8).expand(n, -1, -1, -1), {"frames_indices": idx}, fps
    return read


def run(ele: dict) -> tuple[list[int], int, int]:
    qvu.get_video_reader_backend.cache_clear()
    video, meta = qvu.fetch_video(ele, image_patch_size=PATCH, return_video_metadata=True)
    idx = meta["frames_indices"]
    return [int(i) for i in (idx.tolist() if hasattr(idx, "tolist") else idx)], video.shape[2], video.shape[3]


def main() -> None:
    qvu.FORCE_QWENVL_VIDEO_READER = None
    qvu.is_torchcodec_available = qvu.is_decord_available = lambda: False  # its torchvision reader
    cases = []
    for name, total, fps, h, w, opts in META_CASES:
        qvu.VIDEO_READER_BACKENDS["torchvision"] = _metadata_reader(total, fps, h, w)
        idx, rh, rw = run({"video": "meta", **opts})
        cases.append({"name": name, "total_frames": total, "native_fps": fps, "height": h, "width": w,
                      "options": opts, "nframes": len(idx), "first_indices": idx[:4], "last_index": idx[-1],
                      "resized_height": rh, "resized_width": rw})
    qvu.VIDEO_READER_BACKENDS["torchvision"] = qvu._read_video_torchvision
    tmp = ROOT / ".video_budget_tmp"
    tmp.mkdir(exist_ok=True)
    for name, kw, opts in FILE_CASES:
        path = write_video(tmp / f"{name}.mp4", **kw)
        idx, rh, rw = run({"video": str(path), **opts})
        cases.append({"name": name, "file": kw, "options": opts, "indices": idx, "nframes": len(idx),
                      "resized_height": rh, "resized_width": rw})
        path.unlink()
    tmp.rmdir()
    OUT.write_text(json.dumps({"source": "qwen-vl-utils 0.0.14 (fetch_video, image_patch_size=16)",
                               "cases": cases}, indent=1) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
