"""Dataset adapters: rows of a benchmark, in its Hugging Face schema, -> `Sample`s.

Rows come from (first match wins): `--data PATH` (a parquet/JSONL/arrow file, a `save_to_disk` folder or a
downloaded HF dataset folder with the same columns), `--data org/name[@revision]` (another Hub id), the local
Hugging Face hub cache (`huggingface-cli download --repo-type dataset ...`), the `datasets` cache, or, for
synthetic tasks, `synth.py`. Nothing is downloaded. Images stay as HF stores them (`{"bytes", "path"}`
structs, read lazily from the memory-mapped table) until the runner opens them.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from qwen3vl_eval.checkpoints.hub import hf_home, hub_cache_dir
from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.parsers import LETTERS
from qwen3vl_eval.eval.task import DataSpec, TaskSpec


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


class LazyCell:
    """One cell of a (memory-mapped) arrow column, converted to Python only when asked."""

    def __init__(self, column: Any, index: int):
        self.column, self.index = column, index

    def get(self) -> Any:
        return self.column[self.index].as_py()


@dataclass
class Context:
    spec: TaskSpec
    base_dir: Path
    media_root: Path | None

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


# ---------------------------------------------------------------- reading tables

def _table_rows(table: Any) -> list[dict]:
    import pyarrow as pa

    cols: dict[str, list] = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_struct(col.type) and col.type.get_field_index("bytes") >= 0:
            cols[name] = [LazyCell(col, i) for i in range(len(col))]
        else:
            cols[name] = col.to_pylist()
    n = table.num_rows
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


def _read_arrow(path: Path) -> Any:
    import pyarrow as pa

    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path) as f:
        text = f.read()
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise TaskError(f"{path}: not valid JSON: {e}") from None
        return list(data)
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise TaskError(f"{path}:{i}: not valid JSON: {e}") from None
    return rows


def read_files(files: list[Path]) -> list[dict]:
    """Rows of parquet, arrow or JSONL files, concatenated in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables, rows = [], []
    for f in files:
        try:
            if f.suffix == ".parquet":
                tables.append(pq.read_table(f, memory_map=True))
            elif f.suffix == ".arrow":
                tables.append(_read_arrow(f))
            elif f.suffix in (".jsonl", ".json"):
                rows.extend(_read_jsonl(f))
            else:
                raise TaskError(f"{f}: unsupported data file (expected .parquet, .jsonl, .json or .arrow)")
        except (OSError, pa.ArrowException) as e:
            raise TaskError(f"{f}: cannot read: {e}") from None
    if tables:
        try:
            table = pa.concat_tables(tables, promote_options="default")
        except pa.ArrowException as e:
            raise TaskError(f"{files[0].parent}: data files have different columns: {e}") from None
        rows = _table_rows(table) + rows
    return rows


def _split_files(root: Path, split: str, config: str | None) -> list[Path]:
    """Data files of `split` (and `config`, when folders are named by config) under a dataset folder."""
    exts = (".parquet", ".arrow", ".jsonl")
    files = [p for p in sorted(root.rglob("*")) if p.suffix in exts and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]

    def is_split(p: Path) -> bool:
        parts = p.relative_to(root).parts
        stem = p.name.split(".")[0]
        return (stem == split or stem.split("-")[0] == split or stem.endswith(f"-{split}")
                or re.search(rf"-{re.escape(split)}-\d+-of-\d+$", stem) is not None or split in parts[:-1])

    hits = [p for p in files if is_split(p)]
    if config:
        by_cfg = [p for p in hits if config in p.relative_to(root).parts[:-1]]
        hits = by_cfg or hits
    return hits


def _save_to_disk_files(root: Path, split: str) -> list[Path] | None:
    if (root / "dataset_dict.json").is_file():
        sub = root / split
        if not sub.is_dir():
            splits = json.loads((root / "dataset_dict.json").read_text()).get("splits", [])
            raise TaskError(f"{root}: no split {split!r} in this DatasetDict (has {', '.join(splits)})")
        root = sub
    if (root / "state.json").is_file():
        state = json.loads((root / "state.json").read_text())
        return [root / f["filename"] for f in state.get("_data_files", [])] or sorted(root.glob("*.arrow"))
    return None


def read_local(path: Path, spec: DataSpec) -> tuple[list[dict], Path]:
    """Rows from a local file or folder; returns (rows, folder media paths resolve against)."""
    if path.is_file():
        return read_files([path]), path.parent
    if not path.is_dir():
        raise TaskError(f"--data {path}: no such file or folder")
    files = _save_to_disk_files(path, spec.split)
    if files is None:
        files = _split_files(path, spec.split, spec.name)
    if not files:
        raise TaskError(f"--data {path}: no parquet/arrow/jsonl files for split {spec.split!r}"
                        + (f" (config {spec.name})" if spec.name else ""))
    return read_files(files), path


# ---------------------------------------------------------------- finding data without --data

def datasets_cache_dir() -> Path:
    return Path(os.environ.get("HF_DATASETS_CACHE") or hf_home() / "datasets").expanduser()


def hub_snapshot(spec: DataSpec) -> Path | None:
    """The dataset's snapshot folder in the hub cache, for its revision, if downloaded."""
    repo = hub_cache_dir() / ("datasets--" + spec.path.replace("/", "--"))
    ref = repo / "refs" / spec.revision
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
    else:
        snap = repo / "snapshots" / spec.revision
    return snap if snap.is_dir() else None


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def datasets_cache_files(spec: DataSpec) -> list[Path]:
    """Arrow files `datasets.load_dataset` left in its cache for this dataset, config and split."""
    root = datasets_cache_dir()
    if not root.is_dir() or "/" not in spec.path:
        return []
    org, name = spec.path.split("/", 1)
    for d in sorted(root.glob(f"{org}___*")):
        if _norm(d.name.split("___", 1)[1]) == _norm(name):
            cfg = d / (spec.name or "default")
            base = cfg if cfg.is_dir() else d
            files = sorted(base.glob(f"*/*/*-{spec.split}.arrow")) + sorted(
                base.glob(f"*/*/*-{spec.split}-*-of-*.arrow"))
            if files:
                return files
    return []


def find_local(spec: DataSpec) -> tuple[list[Path], Path] | None:
    """(files, base folder) of a locally available HF dataset split, or None."""
    snap = hub_snapshot(spec)
    if snap is not None:
        files = _split_files(snap, spec.split, spec.name)
        if files:
            return files, snap
    files = datasets_cache_files(spec)
    if files:
        return files, files[0].parent
    return None


def missing_data_error(task: str, spec: DataSpec) -> TaskError:
    repo = hub_cache_dir() / ("datasets--" + spec.path.replace("/", "--"))
    cfg = f" --include '{spec.name}/*'" if spec.name else ""
    return TaskError(
        f"{task}: dataset {spec.describe()} is not available locally; looked in the Hugging Face hub cache "
        f"({repo}) and the datasets cache ({datasets_cache_dir()}), and this tool never downloads. Fetch it where "
        f"there is network with `huggingface-cli download --repo-type dataset {spec.path} --revision "
        f"{spec.revision}{cfg}` (set HF_HOME/HF_HUB_CACHE to that cache), or pass --data PATH "
        f"(parquet, JSONL, a save_to_disk folder or a downloaded dataset folder)"
    )


def load_rows(spec: TaskSpec, data: str | None = None) -> Rows:
    """The rows of a task's split, from --data, the local caches or the synthetic generator."""
    dspec = spec.data
    if data:
        path = Path(data).expanduser()
        if path.exists():
            rows, base = read_local(path, dspec)
            return Rows(rows, base, str(path))
        m = re.fullmatch(r"([\w.-]+/[\w.-]+)(?:@([\w./-]+))?", data)
        if not m:
            raise TaskError(f"--data {data}: no such file or folder")
        dspec = replace(dspec, source="hf", path=m.group(1), revision=m.group(2) or dspec.revision)
    if dspec.source == "synth":
        from qwen3vl_eval.eval.synth import ensure

        path = ensure(dspec.path)
        return Rows(read_files([path]), path.parent, f"synthetic {dspec.path} ({path.parent})")
    found = find_local(dspec)
    if found is None:
        raise missing_data_error(spec.task, dspec)
    files, base = found
    return Rows(read_files(files), base, f"{dspec.describe()} ({base})")


def load_samples(spec: TaskSpec, data: str | None = None, media_root: str | Path | None = None) -> list[Sample]:
    """All samples of a task, in dataset order, with unique ids."""
    rows = load_rows(spec, data)
    ctx = Context(spec, rows.base_dir, Path(media_root).expanduser() if media_root else None)
    try:
        samples = list(ADAPTERS[spec.adapter](rows, ctx))
    except KeyError as e:
        raise TaskError(f"{rows.source}: {spec.task}: missing column {e}") from None
    seen: set[str] = set()
    for s in samples:
        s.media_roots = ctx.roots
        if s.id in seen:
            raise TaskError(f"{rows.source}: {spec.task}: duplicate sample id {s.id!r}")
        seen.add(s.id)
    return samples


# ---------------------------------------------------------------- media

def open_image(ref: Any, roots: tuple[Path, ...] = ()) -> Image.Image:
    """An image as HF stores it ({"bytes", "path"}), a lazy arrow cell, a path, or a PIL image -> PIL image.

    A path comes from task data, so it must name a file inside one of `roots` (see `confine`); embedded bytes
    need no file."""
    if isinstance(ref, Image.Image):
        return ref
    if isinstance(ref, LazyCell):
        ref = ref.get()
    if isinstance(ref, dict):
        data = ref.get("bytes")
        if data:
            if isinstance(data, str):
                data = base64.b64decode(data)
            return Image.open(io.BytesIO(data))
        ref = ref.get("path")
    if isinstance(ref, str) and ref:
        p = find_confined("image", ref, roots)
        if p is None:
            raise TaskError(f"image {ref} not found (looked in {', '.join(map(str, roots))}; set --media-root)")
        return Image.open(p)
    raise TaskError(f"image {ref!r}: neither bytes nor a path")


def find_confined(kind: str, name: str, roots: tuple[Path, ...] | list[Path]) -> Path | None:
    """The file `name` under the first root that has it, or None. Names come from task data, so they must stay
    inside the roots: an absolute name, a `..` component, a file whose resolved path (symlinks followed) leaves
    its root, or a name with no roots to look in raises TaskError. The roots themselves may be symlinks."""
    if Path(name).is_absolute() or ".." in Path(name).parts or not roots:
        raise TaskError(f"{kind} {name}: path escapes the media root")
    for root in roots:
        p = root / name
        if p.is_file():
            if not p.resolve().is_relative_to(root.resolve()):
                raise TaskError(f"{kind} {name}: path escapes the media root")
            return p
    return None


def resolve_video(name: str, ctx: Context) -> tuple[str, str | None]:
    """(path, error): the first existing candidate for a video file name (with each of the task's extensions
    when it has none) in the task's video folders under the media roots, or a per-sample error: not found
    (naming where we looked), or a path that escapes them (see `find_confined`)."""
    roots = list(ctx.roots)
    if ctx.spec.data.cache_dir:
        roots.append(hf_home() / ctx.spec.data.cache_dir)
    folders = tuple(root / sub for root in roots for sub in ctx.spec.data.video_dirs)
    names = [name] if Path(name).suffix else [name + e for e in ctx.spec.data.video_exts]
    fallback = str(folders[0] / names[0]) if folders else name
    try:
        for n in names:
            if (p := find_confined("video", n, folders)) is not None:
                return str(p), None
    except TaskError as e:
        return fallback, str(e)
    where = ", ".join(map(str, dict.fromkeys(folders)))
    return fallback, f"video {name} not found (looked in {where}; set --media-root)"


def _image_list(row: dict, keys: list[str]) -> list[Any]:
    out = []
    for k in keys:
        v = row.get(k)
        if isinstance(v, LazyCell):
            if v.column[v.index].is_valid:
                out.append(v)
        elif v:
            out.append(v)
    return out


# ---------------------------------------------------------------- adapters (one per dataset schema)

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
    for r in rows.rows:
        try:  # boxes are scored in the image's pixels
            w, h = open_image(r["image"], ctx.roots).size
            err = None
        except (TaskError, OSError) as e:
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
