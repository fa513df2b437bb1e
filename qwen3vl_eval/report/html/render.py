"""The page writer shared by every HTML page: one jinja2 environment (autoescape on for every template), value
formatting, and page weight (the bytes of a page plus the media files it references), which each page states
about itself and the commands print."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from qwen3vl_eval.report import files

TEXT_LIMIT = 20_000  # characters of a reply or prompt shown in a page (samples.jsonl keeps all of it)
STATUSES = {"correct": "correct", "wrong": "wrong", "parse_failure": "parse failure", "error": "error"}


@functools.cache
def environment() -> jinja2.Environment:
    """The jinja2 environment of every page: autoescape on for all templates, missing names an error."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("qwen3vl_eval.report.html", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=num, signed=signed, kb=kb, text=text)
    env.globals["STATUSES"] = STATUSES
    return env


def num(v: Any, digits: int = 2) -> str:
    """A metric value for a table cell ("–" when missing)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def signed(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:+.{digits}f}"


def kb(n: int) -> str:
    """Bytes as KB or MB."""
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MB"


def text(v: Any, limit: int = TEXT_LIMIT) -> str:
    """Any value as display text (JSON for non-strings), cut at `limit` characters with a note."""
    if v is None:
        return ""
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= limit else s[:limit] + f"\n… ({len(s) - limit} more characters in samples.jsonl)"


@dataclass
class Weight:
    """What one page costs to open: its HTML and the media files it references."""

    path: Path
    html_bytes: int = 0
    media: dict[str, int] = field(default_factory=dict)  # media file (relative) -> bytes

    @property
    def media_bytes(self) -> int:
        return sum(self.media.values())

    @property
    def total(self) -> int:
        return self.html_bytes + self.media_bytes

    def describe(self) -> str:
        return (f"{kb(self.total)} ({kb(self.html_bytes)} HTML + {kb(self.media_bytes)} in "
                f"{len(self.media)} media file(s))")


@dataclass
class PageSet:
    """The pages written for one task, run index or comparison (a paginated task has several)."""

    name: str
    pages: list[Weight] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.pages[0].path

    @property
    def total(self) -> int:
        media: dict[str, int] = {}
        for p in self.pages:
            media.update({str(p.path.parent / k): v for k, v in p.media.items()})
        return sum(p.html_bytes for p in self.pages) + sum(media.values())

    def describe(self) -> str:
        """One console line: where the page is and what it weighs."""
        n = len(self.pages)
        extra = f", {n} pages" if n > 1 else ""
        return f"{self.name}: {self.path} ({kb(self.total)} with its media{extra})"


def write_page(path: Path, template: str, context: dict[str, Any], media: dict[str, int]) -> Weight:
    """Render `template` to `path` (atomically); the page states its own weight, so it is rendered until the
    stated size is the written size."""
    weight = Weight(path, 0, dict(media))
    tpl = environment().get_template(template)
    for _ in range(4):
        html = tpl.render(**context, weight=weight).encode("utf-8")
        if len(html) == weight.html_bytes:
            break
        weight.html_bytes = len(html)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(path, html.decode("utf-8"))
    return weight


def read_json(path: Path) -> Any:
    """A JSON file written by the harness, or None when it is missing or unreadable."""
    return files.read_json(path, default=None)
