"""Loading a task's rows: `--data PATH`, the local Hugging Face caches or the synthetic generator -> `Rows` ->
`Sample`s (through the task's adapter, `eval.adapters`).

Rows come from (first match wins): `--data PATH` (a parquet/JSONL/arrow file, a `save_to_disk` folder or a
downloaded HF dataset folder with the same columns), `--data org/name[@revision]` (another Hub id), the local
Hugging Face hub cache (`huggingface-cli download --repo-type dataset ...`), the `datasets` cache, or, for
synthetic tasks, `synth.py`. Nothing is downloaded. Image structs are read lazily from the memory-mapped table.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from qwen3vl_eval.checkpoints.hub import hf_home, hub_cache_dir
from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.adapters import ADAPTERS, Context, Rows, Sample
from qwen3vl_eval.eval.media import LazyCell
from qwen3vl_eval.eval.task import DataSpec, TaskSpec
from qwen3vl_eval.jsonio import MAX_JSON_DATA_BYTES, read_json, read_jsonl

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
    """Rows of a JSONL file (or a .json list), bounded in size and nesting; one TaskError naming the line."""
    with open(path, "rb") as f:
        whole = path.suffix == ".json" and f.read(4096).lstrip().startswith(b"[")
    if whole:
        data = read_json(path, max_bytes=MAX_JSON_DATA_BYTES, what="data file", error=TaskError)
        numbered = list(enumerate(data, 1))
    else:
        numbered = read_jsonl(path, what="data file", error=TaskError)
    for i, row in numbered:
        if not isinstance(row, dict):
            raise TaskError(f"{path}:{i}: a row must be a JSON object, got {type(row).__name__}")
    return [row for _, row in numbered]


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
    if not hits and len(files) == 1 and not re.search(r"(?:^|[-_.])(?:train|test|val|validation|dev)(?:$|[-_.])",
                                                         files[0].stem):
        hits = files  # one file named after the dataset (Lin-Chen/MMStar's mmstar.parquet): its only split
    if config:
        by_cfg = [p for p in hits if config in p.relative_to(root).parts[:-1]]
        hits = by_cfg or hits
    return hits


def _config_files(root: Path, split: str, configs: list[str]) -> list[Path]:
    """Files of every config of a multi-config task (`DataSpec.configs`), in config order: each config's split
    files under a folder named after it (the Hub's parquet layout `<config>/<split>/...`), else one file named
    after it (MVBench's `json/<config>.json`). [] when none is there; TaskError naming the configs missing when
    only some are."""
    found: dict[str, list[Path]] = {}
    split_files = _split_files(root, split, None)
    for c in configs:
        files = [p for p in split_files if c in p.relative_to(root).parts[:-1]]
        found[c] = files or [p for p in sorted(root.rglob(f"{c}.*")) if p.is_file()
                             and p.suffix in (".json", ".jsonl", ".parquet", ".arrow")]
    missing = [c for c, files in found.items() if not files]
    if missing and len(missing) < len(configs):
        raise TaskError(f"{root}: no data files for config(s) {', '.join(missing)} (split {split!r})")
    return [] if missing else [f for c in configs for f in found[c]]


def read_rows(files: list[Path], spec: DataSpec) -> list[dict]:
    """Rows of `files` (`read_files`); for a multi-config task, each file's rows tagged `_config` with the config
    it belongs to (named by its file or a folder above it)."""
    if not spec.configs:
        return read_files(files)
    rows = []
    for f in files:
        names = [f.name.split(".")[0], *reversed(f.parent.parts)]  # its own name first, then the nearest folder
        config = next((n for n in names if n in spec.configs), None)
        if config is None:
            raise TaskError(f"{f}: not a file of any of the task's configs (name it <config>.json or pass the "
                            "dataset folder)")
        rows.extend({**r, "_config": config} for r in read_files([f]))
    return rows


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


def read_local(path: Path, spec: DataSpec) -> tuple[list[dict], Path, list[Path]]:
    """Rows from a local file or folder; returns (rows, folder media paths resolve against, files read)."""
    if path.is_file():
        return read_rows([path], spec), path.parent, [path]
    if not path.is_dir():
        raise TaskError(f"--data {path}: no such file or folder")
    files = _save_to_disk_files(path, spec.split)
    if files is None:
        files = _data_files(path, spec)
    if not files:
        raise TaskError(f"--data {path}: no parquet/arrow/jsonl files for split {spec.split!r}"
                        + (f" (config {spec.name})" if spec.name else "")
                        + (f" (configs {', '.join(spec.configs)})" if spec.configs else ""))
    return read_rows(files, spec), path, files


def _data_files(root: Path, spec: DataSpec) -> list[Path]:
    return _config_files(root, spec.split, spec.configs) if spec.configs else _split_files(root, spec.split,
                                                                                           spec.name)


# ---------------------------------------------------------------- finding data without --data

def datasets_cache_dir() -> Path:
    return Path(os.environ.get("HF_DATASETS_CACHE") or hf_home() / "datasets").expanduser()


def is_commit(revision: str) -> bool:
    """A (possibly abbreviated) commit hash rather than a branch or tag name."""
    return re.fullmatch(r"[0-9a-f]{7,40}", revision) is not None


def hub_snapshot(spec: DataSpec, task: str = "") -> Path | None:
    """The dataset's snapshot folder in the hub cache, for its revision (a branch, tag or commit, abbreviated or
    not), if downloaded. TaskError naming both when `revision` pins a commit and the cache holds other ones."""
    repo = hub_cache_dir() / ("datasets--" + spec.path.replace("/", "--"))
    ref = repo / "refs" / spec.revision
    snaps = repo / "snapshots"
    if ref.is_file():
        snap = snaps / ref.read_text().strip()
        return snap if snap.is_dir() else None
    if (snaps / spec.revision).is_dir():
        return snaps / spec.revision
    if not is_commit(spec.revision) or not snaps.is_dir():
        return None
    present = sorted(p.name for p in snaps.iterdir() if p.is_dir())
    matches = [n for n in present if n.startswith(spec.revision)]
    if len(matches) == 1:
        return snaps / matches[0]
    if present:
        raise TaskError(f"{task or spec.path}: data.revision {spec.revision} pins a commit, but the local snapshot "
                        f"of {spec.path} is {', '.join(present)} ({snaps}); download the pinned revision or change "
                        "the pin")
    return None


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def samples_sha256(samples: list[Sample]) -> str:
    """A hash of what the samples hold, in order: id, question, choices, target, metadata, video names and each
    image's bytes (or path). Two runs with the same hash evaluated the same rows."""
    digest = hashlib.sha256()
    for s in samples:
        images = []
        for ref in s.images:
            value = ref.get() if isinstance(ref, LazyCell) else ref
            if isinstance(value, dict) and value.get("bytes") is not None:
                value = hashlib.sha256(value["bytes"]).hexdigest()
            elif isinstance(value, dict):
                value = value.get("path")
            images.append(value if isinstance(value, str) else str(value))
        row = {"id": s.id, "question": s.question, "choices": s.choices, "target": s.target, "meta": s.meta,
               "videos": [Path(v).name for v in s.videos], "images": images}
        digest.update(json.dumps(row, sort_keys=True, default=str).encode() + b"\n")
    return digest.hexdigest()


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


def find_local(spec: DataSpec, task: str = "") -> tuple[list[Path], Path, dict] | None:
    """(files, base folder, provenance) of a locally available HF dataset split, or None. Provenance names the
    hub snapshot's commit, or the datasets-cache files' sha256 (that cache keeps no commit)."""
    snap = hub_snapshot(spec, task)
    if snap is not None:
        files = _data_files(snap, spec)
        if files:
            return files, snap, {"kind": "hf-snapshot", "repo": spec.path, "revision": spec.revision,
                                 "commit": snap.name, "files": [str(f.relative_to(snap)) for f in files]}
    if is_commit(spec.revision) or spec.configs:  # that cache keeps no commit, and one folder per config
        return None
    files = datasets_cache_files(spec)
    if files:
        return files, files[0].parent, {"kind": "datasets-cache", "repo": spec.path, "revision": spec.revision,
                                        "files": {f.name: file_sha256(f) for f in files}}
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
        + (f"; videos: {spec.videos} (docs/data.md)" if spec.videos else "")
    )


def load_rows(spec: TaskSpec, data: str | None = None) -> Rows:
    """The rows of a task's split, from --data, the local caches or the synthetic generator, with their
    provenance (`Rows.provenance`: the hub snapshot's commit, or the sha256 of the files read)."""
    dspec = spec.data
    if data:
        path = Path(data).expanduser()
        if path.exists():
            rows, base, files = read_local(path, dspec)
            if not rows:
                raise TaskError(f"--data {path}: no rows (an empty data file gives no samples to score)")
            prov = {"kind": "file", "path": str(path),
                    "files": {str(f.relative_to(base)): file_sha256(f) for f in files}}
            return Rows(rows, base, str(path), prov)
        m = re.fullmatch(r"([\w.-]+/[\w.-]+)(?:@([\w./-]+))?", data)
        if not m:
            raise TaskError(f"--data {data}: no such file or folder")
        dspec = replace(dspec, source="hf", path=m.group(1), revision=m.group(2) or dspec.revision)
    if dspec.source == "synth":
        from qwen3vl_eval.eval.synth import ensure

        path = ensure(dspec.path)
        prov = {"kind": "synth", "files": {path.name: file_sha256(path)}}
        return Rows(read_files([path]), path.parent, f"synthetic {dspec.path} ({path.parent})", prov)
    found = find_local(dspec, spec.task)
    if found is None:
        raise missing_data_error(spec.task, dspec)
    files, base, prov = found
    return Rows(read_rows(files, dspec), base, f"{dspec.describe()} ({base})", prov)


def load_samples(spec: TaskSpec, data: str | None = None, media_root: str | Path | None = None) -> list[Sample]:
    """All samples of a task, in dataset order, with unique ids."""
    return load_task_data(spec, data, media_root)[0]


def load_task_data(spec: TaskSpec, data: str | None = None, media_root: str | Path | None = None
                   ) -> tuple[list[Sample], dict]:
    """All samples of a task (as `load_samples`) and the provenance of the rows they came from."""
    rows = load_rows(spec, data)
    d = spec.data
    ctx = Context(rows.base_dir, Path(media_root).expanduser() if media_root else None,
                  video_dirs=tuple(d.video_dirs), video_exts=tuple(d.video_exts),
                  video_cache=hf_home() / d.cache_dir if d.cache_dir else None)
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
    return samples, rows.provenance
