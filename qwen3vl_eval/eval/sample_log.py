"""`samples.jsonl`, the run's log (CONTRACTS section 5): one JSON line per finished sample.

Crash safety: each finished batch is appended in one write, flushed and fsync'd (`append_records`), so a crash
(even SIGKILL) loses at most the batch in flight. Reading drops a torn last line, and a resume cuts it off
(`read_records(repair=True)`). A data-parallel run writes one `samples.rank{r}.jsonl` per rank; `merge_logs`
folds them into `samples.jsonl` in dataset order.

Field names: what the model wrote is `prediction` (raw), `reasoning`, `prediction_answer` and
`parsed_prediction[_flexible]`; the gold is `target`. Files written before these names (`answer`, `extracted`)
are read through `parsed_prediction` and `prediction_answer` here.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import IO, Any

from qwen3vl_eval.errors import TaskError
from qwen3vl_eval.eval.adapters import Sample
from qwen3vl_eval.eval.media import LazyCell
from qwen3vl_eval.jsonio import read_jsonl
from qwen3vl_eval.report.files import write_text

log = logging.getLogger(__name__)


# field names of older samples.jsonl files, still read
_OLD_NAMES = {"parsed_prediction": "extracted", "parsed_prediction_flexible": "extracted_flexible",
              "prediction_answer": "answer"}


def read_field(rec: dict, name: str) -> Any:
    """A model-side field of a record (`parsed_prediction`, `parsed_prediction_flexible`, `prediction_answer`),
    under its current name or the one files written before it used."""
    if name in rec:
        return rec[name]
    return rec.get(_OLD_NAMES.get(name, name))


def has_field(rec: dict, name: str) -> bool:
    """Whether a record carries `name` (or its older name)."""
    return name in rec or _OLD_NAMES.get(name, name) in rec


def media_reference(ref: Any) -> str | None:
    """Where a sample's image or video is, as text for the log: its path or the file name in the dataset; None
    for media held only as bytes. Bytes never go into samples.jsonl."""
    if isinstance(ref, (str, os.PathLike)):
        return str(ref)
    if isinstance(ref, LazyCell):
        try:
            path = ref.column[ref.index]["path"].as_py()  # the struct's path, without materialising the bytes
        except (KeyError, TypeError, IndexError, AttributeError):
            return None
        return str(path) if path else None
    if isinstance(ref, dict):
        return str(ref["path"]) if ref.get("path") else None
    return None


def prompt_fields(messages: list[dict]) -> dict[str, Any]:
    """`prompt` (the user turn's text with each image and video as an `<image k>` / `<video k>` placeholder, in
    the order the model sees them) and `media` (placeholder -> path or dataset file name, when one is known) of
    a sample's conversation as `eval.prompts.build_messages` writes it (media not opened)."""
    parts, media = [], {}
    counts = {"image": 0, "video": 0}
    for message in messages:
        content = message.get("content")
        for item in [{"type": "text", "text": content}] if isinstance(content, str) else content or []:
            kind = item.get("type")
            if kind == "text":
                parts.append(str(item.get("text", "")))
            elif kind in counts:
                tag = f"<{kind} {counts[kind]}>"
                counts[kind] += 1
                parts.append(tag)
                ref = media_reference(item.get(kind))
                if ref is not None:
                    media[tag] = ref
    out: dict[str, Any] = {"prompt": "\n".join(parts)}
    if media:
        out["media"] = media
    return out


def read_records(path: Path, repair: bool = False) -> list[dict]:
    """Records of a samples.jsonl. A torn last line (a crash mid-write) is ignored, and cut off when `repair`;
    a bad complete line is an error naming the line."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    records = []
    for i, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        if line.strip():
            rec = _record(line)
            if rec is None:
                raise TaskError(f"{path}:{i}: bad record (not a JSON object with an id)")
            records.append(rec)
    tail = data[end:]
    if tail.strip():
        rec = _record(tail)
        if rec is not None:  # complete but for its newline
            records.append(rec)
            if repair:
                with open(path, "ab") as f:
                    f.write(b"\n")
        elif repair:
            with open(path, "r+b") as f:
                f.truncate(end)
    return records


def _record(line: bytes) -> dict | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and "id" in rec else None


def _lines(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def append_records(f: IO[str], records: list[dict]) -> None:
    """Append records as JSON lines in one write, then flush and fsync (a checkpoint per batch)."""
    f.write(_lines(records))
    f.flush()
    os.fsync(f.fileno())


def write_records(path: Path, records: list[dict]) -> None:
    """Replace `path` with `records` atomically and durably."""
    write_text(path, _lines(records))


def rank_logs(out_dir: Path) -> list[Path]:
    """The `samples.rank{r}.jsonl` logs of a data-parallel run in `out_dir`, by rank."""
    logs = [(int(m.group(1)), p) for p in out_dir.glob("samples.rank*.jsonl")
            if (m := re.fullmatch(r"samples\.rank(\d+)\.jsonl", p.name))]
    return [p for _, p in sorted(logs)]


def merge_logs(out_dir: Path, samples: list[Sample]) -> list[dict]:
    """Merge `samples.jsonl` and every rank log into `samples.jsonl` (dataset order, the first record of each
    id kept; ids not in `samples` kept at the end), written atomically; then delete the rank logs. A file
    already in order, with no rank logs, is only repaired. Returns the records."""
    path = out_dir / "samples.jsonl"
    parts = rank_logs(out_dir)
    records: list[dict] = []
    seen: set = set()
    duplicates = 0
    for p in [path, *parts]:
        for r in read_records(p, repair=True):
            if r["id"] not in seen:
                seen.add(r["id"])
                records.append(r)
            else:
                duplicates += 1
    if duplicates:  # two writers interleaved (before the run lock), or logs merged twice
        log.warning("warning: %s: %d duplicate record(s); keeping the first record of each id", path, duplicates)
    order = {s.id: i for i, s in enumerate(samples)}
    ranked = sorted(records, key=lambda r: order.get(r["id"], len(order)))
    if not parts and not duplicates and ranked == records:
        return records
    write_records(path, ranked)
    for p in parts:
        p.unlink()
    return ranked


def read_predictions(path: Path) -> dict[str, dict]:
    """`{"id": ..., "prediction": "..."}` lines (a run's samples.jsonl works too) -> records by id."""
    if not path.is_file():
        raise TaskError(f"--predictions {path}: no such file")
    out: dict[str, dict] = {}
    for i, rec in read_jsonl(path, what="predictions file", error=TaskError):
        if not isinstance(rec, dict) or "id" not in rec:
            raise TaskError(f"{path}:{i}: field id missing")
        if "prediction" not in rec:
            raise TaskError(f"{path}:{i}: field prediction missing")
        pred = rec["prediction"]
        if pred is None and not rec.get("error"):
            raise TaskError(f"{path}:{i}: field prediction is null without an error")
        if pred is not None and not isinstance(pred, str):
            raise TaskError(f"{path}:{i}: field prediction must be a string")
        sid = str(rec["id"])
        if sid in out:
            raise TaskError(f"{path}:{i}: duplicate id {sid!r}")
        out[sid] = rec
    return out
