"""Answer extraction: model text -> the value a metric scores. Deterministic (never random), versioned, and
referenced by name from task YAML through `PARSERS`. Every parser returns None when it cannot extract an
answer; the runner counts those in `parse_failure_rate` and the metric scores them as wrong.

Bump a parser's version whenever its output can change for some input: results record it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Parser:
    """A named extraction function `fn(text, sample) -> value | None` with a version."""

    name: str
    version: int
    fn: Callable[[str, Any], Any]

    strip: bool = True  # False: `fn` reads the reply as generated (reference scorers that do not strip)

    def __call__(self, text: str, sample: Any = None) -> Any:
        """`fn` on `text`, without its surrounding whitespace unless the parser reads the raw reply."""
        return self.fn(text.strip() if self.strip else text, sample)


PARSERS: dict[str, Parser] = {}


def register(name: str, version: int, *, strip: bool = True) -> Callable:
    """Decorator: add `fn` to PARSERS under `name` (`strip=False`: it sees the reply as generated)."""

    def deco(fn: Callable) -> Callable:
        PARSERS[name] = Parser(name, version, fn, strip)
        return fn

    return deco


# ---------------------------------------------------------------- letters (multiple choice)

def parse_letter(text: str, n_choices: int = 4, choices: list[str] | None = None) -> str | None:
    """The option letter in `text`: "B", "(B)", "Answer: C", "The answer is (D)", "C. text", or a unique option
    text. Only the first `n_choices` letters (A-J) count; ambiguous text gives None."""
    valid = LETTERS[: max(1, min(n_choices, len(LETTERS)))]
    t = text.strip()
    if not t:
        return None
    bare = t.strip(" \t\n.:;,!*()[]'\"`")
    if len(bare) == 1 and bare.upper() in valid and (bare.isupper() or len(t) <= 3):
        return bare.upper()
    cls = f"[{valid}]"
    m = re.search(rf"answer\s*(?:is|:)?\s*:?\s*\**\s*[\(\[]?({cls})\b(?![a-z'])", t, re.IGNORECASE)
    if m and m.group(1).isupper():
        return m.group(1)
    m = re.match(rf"^\**\s*[\(\[]?({cls})\s*(?:[\)\].:]|$)", t)
    if m:
        return m.group(1)
    first = t.splitlines()[0].strip(" \t.:;,!*()[]'\"`")  # "B\n\nOption A is wrong because ..."
    if len(first) == 1 and first in valid:
        return first
    if re.search(rf"(?<![\w'])[\(\[]?({cls})[\)\]]?\s*(?:or|and|/|,)\s*[\(\[]?(?!\1)({cls})\b(?![a-z'])", t):
        return None  # "B or C": two letters offered
    for pattern in (rf"[\(\[]({cls})[\)\]]", rf"(?<![\w'])({cls})(?:[.):;,](?!\w)|$)"):
        found = {m.group(1) for m in re.finditer(pattern, t) if not _negated(t, m.start())}
        if len(found) == 1:
            return found.pop()
    if choices:
        low = t.lower()
        hits = [LETTERS[i] for i, c in enumerate(choices[: len(valid)]) if c and c.strip().lower() in low]
        if len(hits) == 1:
            return hits[0]
    return None


_NEGATION = re.compile(r"(?:\bnot|n't|\bnever|\bno|\brather than|\binstead of)\s+(?:the\s+|an?\s+)?"
                       r"(?:option\s+|choice\s+)?[\(\[]?$",
                       re.IGNORECASE)


def _negated(text: str, start: int) -> bool:
    """Whether the mention at `start` is negated ("not B", "isn't (C)", "rather than 24")."""
    return bool(_NEGATION.search(text[max(0, start - 24) : start]))


@register("mc_letter", version=2)
def _mc_letter(text: str, sample: Any) -> str | None:
    choices = list(getattr(sample, "choices", None) or [])
    return parse_letter(text, len(choices) or 4, choices)


# ---------------------------------------------------------------- numbers

_NUM = (r"[-+]?\$?(?:\d{1,3}(?:,\d{3}(?!\d))+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?%?"
        r"|[-+]?\$?\.\d+(?:[eE][-+]?\d+)?%?")


def parse_number(text: str) -> float | None:
    """A number written as "1,000", "$5", "-3.5%", "2.5e-3" or "2." -> float (percent kept as its number: 3.5).
    Commas count only as thousands separators: "1,2" is not a number."""
    m = re.fullmatch(r"\s*(" + _NUM + r")\s*\.?\s*", text)
    if not m:
        return None
    s = m.group(1).replace("$", "").replace(",", "").rstrip("%")
    try:
        return float(s)
    except ValueError:
        return None


def numbers_in(text: str) -> list[float]:
    """Every number in `text`, in order (thousands separators, currency and percent signs removed)."""
    out = []
    for tok in re.findall(rf"(?<![\d.])(?:{_NUM})", text):
        v = parse_number(tok)
        if v is not None:
            out.append(v)
    return out


def format_number(v: float) -> str:
    """Canonical text of a number: integers without a decimal point."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


@register("last_number", version=2)
def _last_number(text: str, sample: Any) -> str | None:
    nums = numbers_in(text)
    return format_number(nums[-1]) if nums else None


@register("gsm8k", version=2)
def parse_gsm8k(text: str, sample: Any = None) -> dict[str, str | None] | None:
    """Both lm-eval GSM8K extractions: `flexible` = the last number, `strict` = the first "#### n"."""
    flex = re.findall(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", text)
    flexible = None
    for a, b in reversed(flex):
        v = parse_number((a or b).rstrip(".,"))
        if v is not None:
            flexible = format_number(v)
            break
    m = re.search(r"#### (\-?[0-9\.\,]+)", text)
    strict = None
    if m:
        v = parse_number(m.group(1).rstrip(".,"))
        strict = format_number(v) if v is not None else None
    if flexible is None and strict is None:
        return None
    return {"flexible": flexible, "strict": strict}


# ---------------------------------------------------------------- short answers

@register("short_answer", version=1)
def parse_short_answer(text: str, sample: Any = None) -> str | None:
    """The first non-empty line, without an "Answer:" prefix or surrounding quotes/markdown bold."""
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            line = re.sub(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*:\s*", "", line, flags=re.IGNORECASE)
            line = line.strip().strip("*").strip()
            if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'`":
                line = line[1:-1].strip()
            return line or None
    return None


@register("chart_answer", version=2)
def parse_chart_answer(text: str, sample: Any = None) -> str | None:
    """A short answer; a lone number written "1,000", "$5" or "5." becomes "1000"/"5" ("%" kept, the relaxed
    metric reads it), so the ChartQA float comparison can apply."""
    ans = parse_short_answer(text)
    if ans is None:
        return None
    v = parse_number(ans)
    if v is not None and not ans.strip().rstrip(".").endswith("%"):
        return format_number(v)
    if v is not None:
        return format_number(v) + "%"
    return ans


# ---------------------------------------------------------------- time spans (temporal grounding)

_CLOCK = r"\d+:\d{1,2}(?::\d{1,2})?(?:\.\d+)?"
_SEC = r"\d+(?:\.\d+)?"
_UNIT = r"(?:\s*(?:s|sec|secs|second|seconds)\b)?"


_DURATION = re.compile(r"\s*(?:s|sec|secs|seconds?)?[\s-]*(?:long|in length|in total|total|video|clip)\b")
_DURATION_BEFORE = re.compile(r"(?:lasts|duration(?: is| of)?|length(?: is| of)?|(?:video|clip) is)\s*(?:about\s*)?$")


def clock_to_seconds(tok: str) -> float:
    """"mm:ss(.ff)" or "hh:mm:ss(.ff)" -> seconds."""
    parts = [float(p) for p in tok.split(":")]
    total = 0.0
    for p in parts:
        total = total * 60 + p
    return total


def parse_time_span(text: str) -> tuple[float, float] | None:
    """The first (start, end) in seconds: "a - b", "a to b", "from a to b", "between a and b", clock times
    mm:ss(.ff) / hh:mm:ss, with or without "seconds", "starts at a ... ends at b"; else the first two loose
    numbers that are not a clip length. A reversed span is swapped; nothing found -> None."""
    t = text.lower().replace("\u2013", "-").replace("\u2014", "-")
    clocks = re.findall(_CLOCK, t)
    if len(clocks) >= 2:
        a, b = clock_to_seconds(clocks[0]), clock_to_seconds(clocks[1])
    else:
        m = re.search(rf"(?<![\d.])({_SEC}){_UNIT}\s*(?:-|~|to|until|and)\s*({_SEC}){_UNIT}", t)
        if m:
            a, b = float(m.group(1)), float(m.group(2))
        else:
            m = re.search(rf"start\w*\s+(?:at\s+|time:?\s*)?({_SEC})\b.*?\bend\w*\s+(?:at\s+|time:?\s*)?({_SEC})", t,
                          re.DOTALL)
            if m:
                a, b = float(m.group(1)), float(m.group(2))
            else:  # loose numbers, without clip lengths ("the video is 30 seconds long")
                nums = [n.group(1) for n in re.finditer(rf"(?<![\d.:])({_SEC})(?![\d:])", t)
                        if not _DURATION.match(t, n.end()) and not _DURATION_BEFORE.search(t[: n.start()])]
                if len(nums) < 2:
                    return None
                a, b = float(nums[0]), float(nums[1])
    return (a, b) if a <= b else (b, a)


@register("time_span", version=2)
def _time_span(text: str, sample: Any) -> list[float] | None:
    span = parse_time_span(text)
    return list(span) if span else None


# ---------------------------------------------------------------- boxes (Qwen3-VL JSON, 0-1000 relative)

_BOX_KEYS = ("bbox_2d", "bbox", "box", "coordinates", "bbox_2D")


def _find_box(obj: Any) -> list[float] | None:
    if isinstance(obj, dict):
        for k in _BOX_KEYS:
            if k in obj:
                box = _find_box(obj[k])
                if box:
                    return box
        for v in obj.values():
            box = _find_box(v)
            if box:
                return box
        return None
    if isinstance(obj, (list, tuple)):
        if len(obj) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj):
            return [float(v) for v in obj]
        for v in obj:
            box = _find_box(v)
            if box:
                return box
    return None


def parse_box_relative(text: str) -> list[float] | None:
    """The first box in Qwen3-VL's JSON (`{"bbox_2d": [x1, y1, x2, y2], ...}`, fenced or bare), Qwen2-VL's
    `(x1,y1),(x2,y2)` (inside box tokens or not), or a bare list of four numbers; still on the 0-1000 scale."""
    t = re.sub(r"```(?:json)?", "", text).strip()
    candidates = [t]
    for open_, close in (("[", "]"), ("{", "}")):
        i, j = t.find(open_), t.rfind(close)
        if 0 <= i < j:
            candidates.append(t[i : j + 1])
    for c in candidates:
        try:
            box = _find_box(json.loads(c))
        except (ValueError, RecursionError):
            continue
        if box:
            return box
    m = re.search(rf"\(\s*({_SEC})\s*,\s*({_SEC})\s*\)\s*,?\s*\(\s*({_SEC})\s*,\s*({_SEC})\s*\)", t)
    if m:  # Qwen2-VL style "<|box_start|>(x1,y1),(x2,y2)<|box_end|>"
        return [float(g) for g in m.groups()]
    m = re.search(rf"[\[\(]\s*({_SEC})\s*,\s*({_SEC})\s*,\s*({_SEC})\s*,\s*({_SEC})\s*[\]\)]", t)
    return [float(g) for g in m.groups()] if m else None


def box_to_pixels(box: list[float], width: float, height: float) -> list[float]:
    """0-1000 relative [x1, y1, x2, y2] -> pixels of a W x H image (clipped to [0, 1000], corners ordered)."""
    x1, y1, x2, y2 = (min(max(v, 0.0), 1000.0) for v in box)
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    return [x1 * width / 1000, y1 * height / 1000, x2 * width / 1000, y2 * height / 1000]


@register("bbox_qwen3vl", version=2)
def _bbox(text: str, sample: Any) -> list[float] | None:
    box = parse_box_relative(text)
    if box is None:
        return None
    target = sample.target
    return box_to_pixels(box, target["width"], target["height"])


# ---------------------------------------------------------------- MMMU (letter or open answer)

@register("mmmu", version=2)
def _mmmu(text: str, sample: Any) -> str | None:
    if sample.choices:
        return parse_letter(text, len(sample.choices), sample.choices)
    return text.strip() or None
