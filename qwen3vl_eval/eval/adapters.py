"""Dataset adapters: rows of a benchmark, in its Hugging Face schema, -> `Sample`s (one adapter per schema).

An adapter reads only the rows and a `Context` (where media named in the rows may be); `eval.data` finds and
reads the rows. Images stay as HF stores them (`{"bytes", "path"}` structs or lazy arrow cells) until the
runner opens them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3vl_eval.errors import ProcessorError, TaskError
from qwen3vl_eval.eval.media import LazyCell, image_source
from qwen3vl_eval.eval.parsers import LETTERS
from qwen3vl_eval.processor.media import find_confined


@dataclass
class Sample:
    """One scored unit: prompt fields, visuals (image refs, video paths), target and breakdown metadata.
    `error` is set when the sample's media cannot be found; the runner logs it instead of generating."""

    id: str
    target: Any
    question: str = ""
    choices: list[str] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    media_roots: tuple[Path, ...] = ()  # folders that image paths in the data may point into


@dataclass
class Rows:
    """Rows of one split: light columns as Python values, image structs as `LazyCell`s."""

    rows: list[dict]
    base_dir: Path
    source: str
    provenance: dict = field(default_factory=dict)  # snapshot commit or files' sha256 (`data.load_rows`)


@dataclass
class Context:
    """Where media named in a task's rows may be. Videos: under each of `roots` and `video_cache`, in each of
    `video_dirs`, trying `video_exts` when a name has no extension."""

    base_dir: Path
    media_root: Path | None = None
    video_dirs: tuple[str, ...] = ("",)
    video_exts: tuple[str, ...] = (".mp4",)
    video_cache: Path | None = None  # $HF_HOME/<data.cache_dir>, when the task names one

    @property
    def roots(self) -> tuple[Path, ...]:
        """Where media named by path in the task data may be: --media-root, then the data's folder."""
        return tuple(r for r in (self.media_root, self.base_dir) if r is not None)


ADAPTERS: dict[str, Callable[[Rows, Context], Iterator[Sample]]] = {}


def adapter(name: str) -> Callable:
    """Decorator: add a rows -> samples adapter to ADAPTERS."""

    def deco(fn: Callable) -> Callable:
        ADAPTERS[name] = fn
        return fn

    return deco


def resolve_video(name: str, ctx: Context) -> tuple[str, str | None]:
    """(path, error): the first existing candidate for a video file name (with each of the task's extensions
    when it has none) in the task's video folders under the media roots, or a per-sample error: not found
    (naming where we looked), or a path that escapes them (see `find_confined`)."""
    roots = list(ctx.roots)
    if ctx.video_cache is not None:
        roots.append(ctx.video_cache)
    folders = tuple(root / sub for root in roots for sub in ctx.video_dirs)
    names = [name] if Path(name).suffix else [name + e for e in ctx.video_exts]
    fallback = str(folders[0] / names[0]) if folders else name
    try:
        for n in names:
            if (p := find_confined("video", n, folders)) is not None:
                return str(p), None
    except ProcessorError as e:
        return fallback, str(e)
    where = ", ".join(map(str, dict.fromkeys(folders)))
    return fallback, f"video {name} not found (looked in {where}; set --media-root)"


def _image_list(row: dict, keys: list[str]) -> list[Any]:
    out = []
    for k in keys:
        v = row.get(k)
        if isinstance(v, LazyCell):
            if v.is_valid:
                out.append(v)
        elif v:
            out.append(v)
    return out


@adapter("docvqa")
def _docvqa(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for r in rows.rows:
        yield Sample(str(r["questionId"]), list(r["answers"] or []), r["question"], images=[r["image"]],
                     meta={"question_types": ",".join(r.get("question_types") or [])})


@adapter("chartqa")
def _chartqa(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for i, r in enumerate(rows.rows):
        yield Sample(str(i), r["answer"], r["question"], images=[r["image"]], meta={"type": r.get("type")})


@adapter("textvqa")
def _textvqa(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for r in rows.rows:
        yield Sample(str(r["question_id"]), list(r["answers"] or []), r["question"], images=[r["image"]])


def _literal_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if not value:
        return []
    try:
        out = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise TaskError(f"options {value!r}: not a list literal") from None
    return [str(v) for v in out]


@adapter("mmmu")
def _mmmu(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for r in rows.rows:
        choices = _literal_list(r.get("options"))
        sid = str(r["id"])
        subject = re.sub(r"^(dev|validation|test)_", "", sid).rsplit("_", 1)[0]
        yield Sample(sid, {"answer": str(r["answer"]), "choices": choices}, r["question"], choices=choices,
                     images=_image_list(r, [f"image_{k}" for k in range(1, 8)]),
                     meta={"subject": subject, "question_type": r.get("question_type")})


def _strip_letter(option: str) -> str:
    return re.sub(r"^\s*\(?[A-J][.):]\s*", "", option)


@adapter("videomme")
def _videomme(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for r in rows.rows:
        path, err = resolve_video(str(r["videoID"]), ctx)
        yield Sample(str(r["question_id"]), str(r["answer"]).strip(), r["question"],
                     choices=[_strip_letter(o) for o in r["options"]], videos=[path], error=err,
                     meta={"duration": r.get("duration"), "domain": r.get("domain"),
                           "task_type": r.get("task_type"), "videoID": r.get("videoID")})


@adapter("charades_sta")
def _charades(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for i, r in enumerate(rows.rows):
        path, err = resolve_video(str(r["video"]), ctx)
        start, end = (float(t) for t in r["timestamp"])
        yield Sample(str(i), [start, end], str(r["caption"]).strip().rstrip("."), videos=[path], error=err,
                     meta={"video": r["video"]})


@adapter("refcoco")
def _refcoco(rows: Rows, ctx: Context) -> Iterator[Sample]:
    from qwen3vl_eval.processor.image import image_size  # imports torch: only once rows are read

    for r in rows.rows:
        try:  # boxes are scored in the image's pixels
            w, h = image_size(image_source(r["image"], ctx.roots))  # as the processor will decode it
            err = None
        except ProcessorError as e:
            w = h = 0
            err = str(e)
        x, y, bw, bh = (float(v) for v in r["bbox"])
        target = {"bbox": [x, y, x + bw, y + bh], "width": w, "height": h}
        for k, expr in enumerate(r["answer"] or []):
            yield Sample(f"{r['question_id']}/{k}", target, str(expr), images=[r["image"]], error=err)


@adapter("mmlu")
def _mmlu(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for i, r in enumerate(rows.rows):
        ans = r["answer"]
        letter = LETTERS[int(ans)] if not isinstance(ans, str) or ans.isdigit() else ans.strip().upper()
        yield Sample(str(i), letter, r["question"], choices=[str(c) for c in r["choices"]],
                     meta={"subject": r.get("subject")})


def gsm8k_target(answer: str) -> str:
    """The final number of a GSM8K solution ("... #### 1,234" -> "1234")."""
    final = answer.split("####")[-1].strip()
    return final.replace(",", "").replace("$", "").rstrip(".")


@adapter("gsm8k")
def _gsm8k(rows: Rows, ctx: Context) -> Iterator[Sample]:
    for i, r in enumerate(rows.rows):
        yield Sample(str(i), gsm8k_target(r["answer"]), r["question"])
