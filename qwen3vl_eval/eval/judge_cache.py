"""The judge's answers on disk, so that a rerun, a resume or `score` of the same replies asks the judge nothing.

An entry is keyed by (judge model, judge prompt id and hash, the judge's input text, its token budget): the
sha256 of those, stored as `<root>/<key[:2]>/<key>.json` holding the judge's raw reply and what it was asked.
The root is `$QWEN3VL_EVAL_CACHE/judge` (default `$XDG_CACHE_HOME/qwen3vl-eval/judge`, i.e.
`~/.cache/qwen3vl-eval/judge`), or the folder given (`--judge-cache`). Only replies the server returned are
stored (also unreadable ones: the same judge answers the same way at temperature 0); failed requests are not,
so a rerun asks again. Each entry is written to a temp file of its own and renamed over the target, so
concurrent writers (threads, processes, two runs) never leave a torn entry; a damaged entry reads as a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from qwen3vl_eval.checkpoints.hub import cache_dir

log = logging.getLogger(__name__)


def default_root() -> Path:
    """`$QWEN3VL_EVAL_CACHE/judge` (our cache folder, see `checkpoints.hub.cache_dir`)."""
    return cache_dir() / "judge"


def cache_key(model: str, prompt_id: str, prompt_hash: str, text: str, max_tokens: int) -> str:
    """The sha256 naming one judge question."""
    blob = json.dumps({"model": model, "prompt": prompt_id, "prompt_hash": prompt_hash, "input": text,
                       "max_tokens": max_tokens}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class JudgeCache:
    """Judge replies by `cache_key`, under `root`."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self._warned = False

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The judge's stored reply, None when absent or damaged."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        output = entry.get("output") if isinstance(entry, dict) else None
        return output if isinstance(output, str) and entry.get("key") == key else None

    def put(self, key: str, output: str, about: dict[str, Any]) -> None:
        """Store `output` (the judge's reply) with `about` (model, prompt, input); atomic, safe with others
        writing the same key. A cache that cannot be written (read-only, full) is skipped: the judgement stands."""
        path = self.path(key)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"key": key, **about, "output": output}, f, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            if not self._warned:  # once: a read-only or full cache fails every write alike
                self._warned = True
                log.warning("warning: judge cache %s not written (%s); judgements stand but are not cached",
                            path, e.strerror or e)
            try:
                tmp.unlink()
            except OSError:
                pass
