"""Offline synthetic suites (suite `smoke`): tiny images and videos drawn with PIL and av, in the real
benchmarks' HF schemas, with known answers. Generated deterministically into a cache folder on first use
(`$QWEN3VL_EVAL_CACHE/synth/<name>-v<version>/`, default `~/.cache/qwen3vl-eval`).

| task | schema | content |
|---|---|---|
| synth_imageqa | DocVQA | colour of a rectangle, or the word drawn in the image (ANLS) |
| synth_videoqa | Video-MME | colour / direction of a moving square, A-D (accuracy, by duration) |
| synth_temporal_grounding | Charades-STA | when the screen turns red (R1@0.3/0.5/0.7, mIoU) |
| synth_grounding | RefCOCO | box of a coloured rectangle, two expressions each (Acc@0.5, mIoU) |
| synth_text | MMLU | one-digit arithmetic, A-D (accuracy) |

The tests' `helpers.oracle_prediction` writes, for any task, a reply that its parser and scorer take as exactly right.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from qwen3vl_eval.checkpoints.hub import cache_dir
from qwen3vl_eval.eval.parsers import LETTERS

VERSION = 1
COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 70, 220), "yellow": (240, 220, 40)}


# ---------------------------------------------------------------- writing data the way HF stores it

def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def hf_image(img: Image.Image, name: str) -> dict:
    """An image cell as HF datasets stores it in parquet."""
    return {"bytes": png_bytes(img), "path": name}


def arrow_schemas() -> dict[str, Any]:
    """Column types of each benchmark's HF parquet files (harness_anchors section 6)."""
    import pyarrow as pa

    s, i64, img = pa.string(), pa.int64(), pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    ls = pa.list_(pa.string())
    return {
        "docvqa": pa.schema([("questionId", s), ("question", s), ("question_types", ls), ("image", img),
                             ("docId", i64), ("ucsf_document_id", s), ("ucsf_document_page_no", s),
                             ("answers", ls), ("data_split", s)]),
        "chartqa": pa.schema([("type", s), ("question", s), ("answer", s), ("image", img)]),
        "textvqa": pa.schema([("image_id", s), ("question_id", pa.int32()), ("question", s),
                              ("question_tokens", ls), ("image", img), ("image_width", pa.int32()),
                              ("image_height", pa.int32()), ("flickr_original_url", s), ("flickr_300k_url", s),
                              ("answers", ls), ("image_classes", ls), ("set_name", s), ("ocr_tokens", ls)]),
        "mmmu": pa.schema([("id", s), ("question", s), ("options", s), ("explanation", s)]
                          + [(f"image_{k}", img) for k in range(1, 8)]
                          + [("img_type", s), ("answer", s), ("topic_difficulty", s), ("question_type", s),
                             ("subfield", s)]),
        "videomme": pa.schema([("video_id", s), ("duration", s), ("domain", s), ("sub_category", s), ("url", s),
                               ("videoID", s), ("question_id", s), ("task_type", s), ("question", s),
                               ("options", ls), ("answer", s)]),
        "charades_sta": pa.schema([("video", s), ("caption", s), ("timestamp", pa.list_(pa.float16()))]),
        "refcoco": pa.schema([("question_id", s), ("image", img), ("question", s), ("answer", ls),
                              ("segmentation", pa.list_(pa.float32())), ("bbox", pa.list_(pa.float32())),
                              ("iscrowd", pa.int8()), ("file_name", s)]),
        "mmlu": pa.schema([("question", s), ("subject", s), ("choices", ls), ("answer", i64)]),
        "gsm8k": pa.schema([("question", s), ("answer", s)]),
    }


def write_parquet(path: Path, schema_name: str, rows: list[dict]) -> Path:
    """Rows in a benchmark's exact column types (missing columns null), with HF `Image` feature metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schemas()[schema_name]
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    if schema_name == "charades_sta":
        cols["timestamp"] = [np.asarray(t, dtype=np.float16) for t in cols["timestamp"]]
    table = pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema}, schema=schema)
    feats = {f.name: {"_type": "Image"} for f in schema if pa.types.is_struct(f.type)}
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": feats}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """An H.264 (or MPEG-4 part 2) mp4 from RGB uint8 frames [H, W, 3]."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            s.options = {"threads": "1", "preset": "veryfast"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def square_video(color: str, direction: str, n: int = 8, size: int = 64, bg: int = 30) -> list[np.ndarray]:
    """A coloured 16x16 square moving across a grey background."""
    frames = []
    for t in range(n):
        f = np.full((size, size, 3), bg, np.uint8)
        step = int(t * (size - 16) / max(1, n - 1))
        x, y = {"right": (step, 24), "left": (size - 16 - step, 24), "down": (24, step),
                "up": (24, size - 16 - step)}[direction]
        f[y : y + 16, x : x + 16] = COLORS[color]
        frames.append(f)
    return frames


def red_span_video(start: float, end: float, seconds: float, fps: int = 2, size: int = 64) -> list[np.ndarray]:
    """Dark frames, red while start <= t < end."""
    frames = []
    for k in range(int(seconds * fps)):
        t = k / fps
        frames.append(np.full((size, size, 3), COLORS["red"] if start <= t < end else (20, 20, 20), np.uint8))
    return frames


# ---------------------------------------------------------------- generators

def _imageqa(out: Path) -> Path:
    rows = []
    for k, (color, word) in enumerate([("red", None), ("blue", None), ("green", "CAT"), ("yellow", None),
                                       (None, "DOG"), (None, "SUN")]):
        img = Image.new("RGB", (96, 64), (245, 245, 245))
        d = ImageDraw.Draw(img)
        if color:
            d.rectangle([20, 14, 76, 50], fill=COLORS[color])
        if word:
            d.text((36, 26), word, fill=(0, 0, 0))
        q, ans = (("What color is the rectangle?", color) if color and not word
                  else ("What word is written in the image?", word))
        rows.append({"questionId": f"synth-{k}", "question": q, "question_types": ["synthetic"],
                     "image": hf_image(img, f"img{k}.png"), "docId": k, "ucsf_document_id": f"doc{k}",
                     "ucsf_document_page_no": "1", "answers": [ans, ans.lower()], "data_split": "test"})
    return write_parquet(out / "data.parquet", "docvqa", rows)


def _videoqa(out: Path) -> Path:
    rows = []
    vids = [("red", "right", "short"), ("blue", "down", "medium"), ("green", "left", "long")]
    for v, (color, direction, duration) in enumerate(vids):
        vid = f"synthvid{v}"
        write_video(out / "videos" / f"{vid}.mp4", square_video(color, direction), fps=4)
        colors = list(COLORS)
        dirs = ["left", "right", "up", "down"]
        for q, (question, options, answer) in enumerate([
            ("What color is the moving square?", colors, colors.index(color)),
            ("In which direction does the square move?", dirs, dirs.index(direction)),
        ]):
            rows.append({"video_id": f"{v:03d}", "duration": duration, "domain": "Synthetic",
                         "sub_category": "Shapes", "url": "", "videoID": vid, "question_id": f"{v:03d}-{q + 1}",
                         "task_type": ["Attribute Perception", "Spatial Perception"][q], "question": question,
                         "options": [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)],
                         "answer": LETTERS[answer]})
    return write_parquet(out / "data.parquet", "videomme", rows)


def _temporal(out: Path) -> Path:
    rows = []
    for k, (start, end, seconds) in enumerate([(1.0, 3.0, 6.0), (2.0, 6.0, 8.0), (4.5, 7.5, 8.0)]):
        name = f"red{k}.mp4"
        write_video(out / "Charades_v1_480" / name, red_span_video(start, end, seconds), fps=2)
        rows.append({"video": name, "caption": "the screen turns red", "timestamp": [start, end]})
    return write_parquet(out / "data.parquet", "charades_sta", rows)


def _grounding(out: Path) -> Path:
    rows = []
    layouts = [("red", (20, 10, 60, 50), "blue", (120, 40, 50, 40)), ("green", (100, 20, 80, 60), "yellow",
                                                                        (10, 60, 40, 30)),
               ("blue", (0, 0, 100, 50), "red", (140, 50, 40, 40)), ("yellow", (60, 30, 60, 40), "green",
                                                                      (150, 10, 30, 20))]
    for k, (c1, b1, c2, b2) in enumerate(layouts):
        img = Image.new("RGB", (200, 100), (250, 250, 250))
        d = ImageDraw.Draw(img)
        for c, (x, y, w, h) in ((c1, b1), (c2, b2)):
            d.rectangle([x, y, x + w - 1, y + h - 1], fill=COLORS[c])
        rows.append({"question_id": f"synth{k}", "image": hf_image(img, f"box{k}.png"),
                     "question": "Please carefully observe the area circled in the image and come up with a "
                                 "caption for the area.",
                     "answer": [f"the {c1} rectangle", f"{c1} box"], "segmentation": [],
                     "bbox": list(b1), "iscrowd": 0, "file_name": f"box{k}.png"})
    return write_parquet(out / "data.parquet", "refcoco", rows)


def _text(out: Path) -> Path:
    rows = []
    for a, b in [(2, 3), (4, 4), (7, 1), (3, 6), (5, 2)]:
        right = a + b
        choices = [str(right + d) for d in (-1, 0, 1, 2)]
        shift = (a * 3 + b) % 4
        choices = choices[shift:] + choices[:shift]
        rows.append({"question": f"What is {a} + {b}?", "subject": "elementary_mathematics",
                     "choices": choices, "answer": choices.index(str(right))})
    return write_parquet(out / "data.parquet", "mmlu", rows)


GENERATORS: dict[str, Callable[[Path], Path]] = {
    "synth_imageqa": _imageqa,
    "synth_videoqa": _videoqa,
    "synth_temporal_grounding": _temporal,
    "synth_grounding": _grounding,
    "synth_text": _text,
}


def ensure(name: str) -> Path:
    """The data file of synthetic set `name`, generated into the cache folder on first use (atomically)."""
    from qwen3vl_eval.errors import TaskError

    if name not in GENERATORS:
        raise TaskError(f"synthetic data {name!r}: unknown (known: {', '.join(GENERATORS)})")
    folder = cache_dir() / "synth" / f"{name}-v{VERSION}"
    data = folder / "data.parquet"
    if data.is_file():
        return data
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        GENERATORS[name](tmp)
        tmp.chmod(0o755)
        try:
            tmp.rename(folder)
        except OSError:  # another process won the race
            if not data.is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return data
