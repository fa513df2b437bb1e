"""Headline extraction and scoring: each task's reference scorer, rule for rule, reimplemented from its definition.

The references (pinned in each task YAML's `reference:`): lmms-eval 0.7.3 task utils for docvqa, chartqa,
textvqa, mmmu, videomme and charades_sta; the standard top-1 Acc@0.5 for RefCOCO (the first box of lmms-eval's
refcoco_grounding box reader, read on the 0-1000 scale only); lm-evaluation-harness 0.4.13 for gsm8k and mmlu in
`reference_lm_eval.py`. Quirks of a reference are kept on purpose (e.g. lmms-eval's ChartQA reads the raw
reply); our lenient readings are the `*_flexible` metrics (`parsers.py`). `tests/test_reference_scoring.py` pins
agreement with the real reference code on a corpus of replies.

The one random step of a reference, MMMU's letter guess when no option is found, is made deterministic: the
guess is drawn by `random.Random(f"{MMMU_FALLBACK_SEED}:{sample id}")` and flagged (`random_fallback`), and
results count it (`n_random_fallback`).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any

from qwen3vl_eval.eval.metrics import levenshtein, relaxed_correctness, scorer, vqa_accuracy
from qwen3vl_eval.eval.parsers import register

MMMU_FALLBACK_SEED = 0


# ---------------------------------------------------------------- lmms-eval: the raw reply

@register("raw", version=2)
def _raw(text: str, sample: Any) -> str:
    """lmms-eval docvqa / chartqa / textvqa score the reply as generated (after the Thinking split), stripped of
    surrounding whitespace: ConfigurableTask.process_results strips every generate_until reply first."""
    return text


@scorer("anls_lmms")
def _anls_lmms(pred: str | None, target: list[str]) -> dict[str, float]:
    """lmms-eval `anls`: distance of the lowercased, whitespace-collapsed strings over the longer *raw* length
    (measured upper-cased), best reference, 0 under 0.5."""
    if pred is None:
        return {"anls": 0.0}
    det = " ".join(pred.strip().lower().split())
    dists = []
    for ans in target:
        gt = " ".join(ans.strip().lower().split())
        length = max(len(ans.upper()), len(pred.upper()))
        dists.append(0.0 if length == 0 else levenshtein(gt, det) / length)
    score = 1.0 - min(dists) if dists else 0.0
    return {"anls": score if score >= 0.5 else 0.0}


@scorer("relaxed_lmms")
def _relaxed_lmms(pred: str | None, target: str) -> dict[str, float]:
    """lmms-eval chartqa: relaxed correctness of the raw reply against the one answer."""
    return {"relaxed_accuracy": float(pred is not None and relaxed_correctness(pred, str(target)))}


@scorer("vqa_lmms")
def _vqa_lmms(pred: str | None, target: list[str]) -> dict[str, float]:
    """lmms-eval textvqa: EvalAI processing of the whole reply, leave-one-out VQA accuracy."""
    return {"vqa_accuracy": vqa_accuracy(pred, target) if pred is not None else 0.0}


# ---------------------------------------------------------------- lmms-eval: multiple-choice letters

_ANSWER_PHRASES = ("the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
                   "best answer is", "the correct option is", "correct option is", "the best option is",
                   "best option is", "the choice is", "choice is", "the correct choice is", "correct choice is",
                   "i choose", "i select", "i pick", "my answer is", "my choice is", "옵션", "정답은", "답은", "답:",
                   "答案是", "答案为", "选", "答えは")
# format -> rank; the best-ranked format wins, then the later position
_RANK = {"start": 10, "end": 9, "phrase": 7, "paren": 6, "period": 5, "colon": 4, "right_paren": 3, "space": 2,
         "any": 0}


def lmms_mcq_letter(response: str, letters: str = "ABCD") -> str:
    """lmms-eval `extract_mcq_answer`: every letter found in each format, ranked; "" when none."""
    if not response or not response.strip():
        return ""
    t = response.strip()
    for ch in ",.!?;:'\"":
        t = t.strip(ch)
    t = f" {t} "
    found: list[tuple[int, int, str]] = []  # (rank, position, letter)
    for fmt, pattern in (("paren", "({})"), ("period", "{}."), ("colon", "{}:"), ("right_paren", "{})"),
                         ("space", "{} ")):
        for c in letters:
            pos = t.rfind(pattern.format(c))
            if pos >= 0:
                found.append((_RANK[fmt], pos, c))
    low = t.lower()
    for phrase in _ANSWER_PHRASES:
        at = low.find(phrase)
        if at >= 0:
            for c in letters:
                pos = t.find(c, at + len(phrase))
                if pos >= 0:
                    found.append((_RANK["phrase"], pos, c))
    core = t.strip()
    for c in letters:
        if core.startswith(c) and (len(core) == 1 or not core[1].isalpha()):
            found.append((_RANK["start"], 0, c))
        if core.endswith(c) and (len(core) == 1 or not core[-2].isalpha()):
            found.append((_RANK["end"], len(t) - 1, c))
    if not found:
        found = [(_RANK["any"], t.rfind(c), c) for c in letters if c in t]
    if not found:
        return ""
    return max(found, key=lambda f: (f[0], f[1]))[2]


@register("lmms_mcq", version=1, strip=False)
def _lmms_mcq(text: str, sample: Any) -> str | None:
    """Video-MME: the letter lmms-eval extracts (A-D); None when it finds none."""
    return lmms_mcq_letter(text) or None


@scorer("accuracy_nocase")
def _accuracy_nocase(pred: str | None, target: str) -> dict[str, float]:
    """lmms-eval videomme: the extracted letter equals the answer, ignoring case."""
    return {"accuracy": float(pred is not None and pred.lower() == str(target).lower())}


# ---------------------------------------------------------------- MMMU (lmms-eval = the official MMMU rules)

def mmmu_choice(response: str, options: list[str], sample_id: str = "") -> tuple[str, bool]:
    """The MMMU multiple-choice reading: "(X)", then "X ", then "X.", then (replies over five words) option
    text; several candidates -> the last-placed one. Returns (letter, guessed): with no candidate the letter is a
    seeded draw (see module docstring)."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    r = response
    for ch in ",.!?;:'":
        r = r.strip(ch)
    r = f" {r} "
    by_text = False
    cands = [c for c in letters if f"({c})" in r]
    bracketed = bool(cands)
    if not cands:
        cands = [c for c in letters if f"{c} " in r]
    if not cands:
        cands = [c for c in letters if f"{c}." in r]
    if not cands and len(r.split()) > 5:
        cands = [c for c, o in zip(letters, options) if o.lower() in r.lower()]
        by_text = bool(cands)
    if not cands:
        return random.Random(f"{MMMU_FALLBACK_SEED}:{sample_id}").choice(letters), True
    if len(cands) == 1:
        return cands[0], False
    if by_text:
        where = [r.lower().rfind(options[letters.index(c)].lower()) for c in cands]
    elif bracketed:
        where = [r.rfind(f"({c})") for c in cands]
    else:
        where = [r.rfind(f" {c} ") for c in cands]
    return cands[where.index(max(where))], False


_COMMA_NUM = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_SCI_NUM = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_PLAIN_NUM = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_KEY_MARKERS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")


def mmmu_normalize(s: str) -> list[Any]:
    """MMMU `normalize_str`: a number (commas dropped) -> [its value to 2 decimals]; text -> [lowercase], a single
    character padded both ways to avoid trivial matches."""
    s = s.strip()
    try:
        return [round(float(s.replace(",", "")), 2)]
    except ValueError:
        s = s.lower()
        return [" " + s, s + " "] if len(s) == 1 else [s]


def mmmu_open_candidates(response: str) -> list[Any]:
    """MMMU `parse_open_response`: the tail after the last key marker of each sentence (with "=" in the last
    one), or the whole reply, plus every number in those tails; all normalised."""
    resp = response.strip().strip(".").lower()
    parts = re.split(r"\.\s(?=[A-Z])|\n", resp)
    keys = []
    for i, part in enumerate(parts):
        markers = _KEY_MARKERS + (("=",) if i == len(parts) - 1 else ())
        best = ""
        for tail in (part.split(m)[-1].strip() for m in markers if m in part):
            if not best or len(tail) < len(best):  # an empty tail is replaced by the next one, as in MMMU
                best = tail
        if best and best.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(best)
    keys = keys or [resp]
    found = list(keys)
    for k in keys:
        found += _COMMA_NUM.findall(k) + _SCI_NUM.findall(k) + _PLAIN_NUM.findall(k)
    out: list[Any] = []
    for f in found:
        for v in mmmu_normalize(f):
            if v not in out:
                out.append(v)
    return out


def mmmu_open_match(candidates: list[Any], gold: str) -> bool:
    """MMMU `eval_open`: a text candidate contains a normalised gold text, or a number equals the gold number."""
    golds = mmmu_normalize(gold)
    for c in candidates:
        if isinstance(c, str):
            if any(isinstance(g, str) and g in c for g in golds):
                return True
        elif c in golds:
            return True
    return False


@register("mmmu_ref", version=1, strip=False)
def _mmmu_ref(text: str, sample: Any) -> dict[str, Any]:
    """{"choice": letter, "random_fallback": bool} for multiple choice, {"open": candidates} for open ones."""
    if sample.choices:
        letter, guessed = mmmu_choice(text, list(sample.choices), str(sample.id))
        return {"choice": letter, "random_fallback": guessed}
    return {"open": mmmu_open_candidates(text)}


@scorer("mmmu_ref")
def _mmmu_ref_score(pred: dict | None, target: dict) -> dict[str, float]:
    if pred is None:
        return {"accuracy": 0.0}
    if "choice" in pred:
        out = {"accuracy": float(pred["choice"] == target["answer"])}
        if pred.get("random_fallback"):
            out["random_fallback"] = 1.0
        return out
    return {"accuracy": float(mmmu_open_match(pred["open"], str(target["answer"])))}


# ---------------------------------------------------------------- Charades-STA (lmms-eval extract_time)

_RANGE_CLOCK = re.compile(r"\b(\d{1,2}:\d{2}(?::\d{2})?)\s*[–-]\s*(\d{1,2}:\d{2}(?::\d{2})?)\b")
_RANGE = re.compile(r"(\d+(?:\.\d+)?)\s*[–-]\s*(\d+(?:\.\d+)?)")
_CLOCK1 = re.compile(r"\b(\d{1,2}:\d{2}(?::\d{2})?)\b")
_NUMBER1 = re.compile(r"\b(\d+(?:\.\d+)?)\b")
_RANGE_S = re.compile(r"(\d+(?:\.\d+)?)\s*s?\s*[–-]\s*(\d+(?:\.\d+)?)\s*s?")
_TVG_KEYWORDS = ("starts", "ends", "happens in", "start time", "end time", "start", "end", "happen")


def _clock(tok: str) -> float:
    parts = [float(p) for p in tok.split(":")]
    return parts[0] * 3600 + parts[1] * 60 + parts[2] if len(parts) == 3 else parts[0] * 60 + parts[1]


def _pairs(values: list[float]) -> list[list[float]]:
    values = values[: len(values) // 2 * 2]
    return [[values[i], values[i + 1]] for i in range(0, len(values), 2)]


def _first_ranges(pool: list[str], pattern: re.Pattern, conv: Callable[[str], float]) -> list[list[float]]:
    """Every (a, b) match of `pattern` in the first sentence of `pool` that has one, converted; [] when none has."""
    for s in pool:
        if found := pattern.findall(s):
            return [[conv(a), conv(b)] for a, b in found]
    return []


def lmms_time_span(reply: str) -> list[float] | None:
    """lmms-eval `extract_time`: "to" becomes "-" everywhere, sentences split at ! ? and newlines, those with a
    start/end keyword searched (else all): a clock range, a number range, clock times paired, each sentence's
    first number paired, a range with "s"; the first span, ordered. None when nothing pairs."""
    text = reply.lower().replace("a specific example is : 20.8 - 30.0 seconds", "").replace("to", "-")
    sentences = re.split(r"[!?\n]", text)
    pool = [s for s in sentences if any(k in s for k in _TVG_KEYWORDS)] or sentences
    spans = _first_ranges(pool, _RANGE_CLOCK, _clock) or _first_ranges(pool, _RANGE, float)
    if not spans:
        spans = _pairs([_clock(c) for s in pool for c in _CLOCK1.findall(s)])
    if not spans:
        spans = _pairs([float(m[0]) for s in pool if (m := _NUMBER1.findall(s))])
    if not spans:
        spans = _first_ranges(pool, _RANGE_S, float)
    if not spans:
        return None
    a, b = spans[0]
    return [a, b] if b > a else [b, a]


@register("charades_lmms", version=1, strip=False)
def _charades_lmms(text: str, sample: Any) -> list[float] | None:
    return lmms_time_span(text)


# ---------------------------------------------------------------- RefCOCO: standard top-1 Acc@0.5

_BOX_DICT_KEYS = ("bbox_2d", "bbox", "box", "coordinates", "coord", "location", "position")
_N = r"(-?\d+(?:\.\d+)?)"
_SEP = r"\s*[,\s]\s*"
_BOX_RE = re.compile(r"\[?\s*" + _SEP.join([_N] * 4) + r"\s*\]?")


def _json_of(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    fenced = re.search(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL | re.IGNORECASE)
    for cand in ([fenced.group(1)] if fenced else []) + [text]:
        try:
            return json.loads(cand)
        except (ValueError, RecursionError):
            pass
    for open_, close in (("[", "]"), ("{", "}")):
        i, j = text.find(open_), text.rfind(close)
        if i != -1 and j > i:
            try:
                return json.loads(text[i : j + 1])
            except (ValueError, RecursionError):
                continue
    return None


def _boxes_of(data: Any) -> list[list[float]]:
    if isinstance(data, list):
        if len(data) == 4 and all(isinstance(v, (int, float)) for v in data):
            return [[float(v) for v in data]]
        return [b for item in data for b in _boxes_of(item)]
    if isinstance(data, dict):
        for k in _BOX_DICT_KEYS:
            v = data.get(k)
            if isinstance(v, (list, tuple)) and len(v) == 4:
                try:
                    return [[float(x) for x in v]]
                except (TypeError, ValueError):
                    continue
        return [b for v in data.values() for b in _boxes_of(v)]
    return []


def first_box(text: str) -> list[float] | None:
    """The first box of a reply, as lmms-eval's refcoco_grounding reads boxes (JSON anywhere, else four numbers
    in a row), unscaled; None when there is none."""
    if not text:
        return None
    boxes = _boxes_of(_json_of(text)) or [[float(g) for g in m.groups()] for m in _BOX_RE.finditer(text)]
    return boxes[0] if boxes else None


@register("refcoco_top1", version=1, strip=False)
def _refcoco_top1(text: str, sample: Any) -> list[float] | None:
    """The first box, 0-1000 scaled to the original image's pixels (no clipping, no reordering)."""
    box = first_box(text)
    if box is None:
        return None
    w, h = sample.target["width"], sample.target["height"]
    return [box[0] / 1000.0 * w, box[1] / 1000.0 * h, box[2] / 1000.0 * w, box[3] / 1000.0 * h]


def plain_iou(a: list[float], b: list[float]) -> float:
    """IoU with negative extents clamped to 0 (a reversed box has no area)."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
             - inter)
    return inter / union if union > 0 else 0.0


@scorer("box_iou_top1")
def _box_iou_top1(pred: list[float] | None, target: dict) -> dict[str, float]:
    return {"iou": plain_iou(pred, target["bbox"]) if pred is not None else 0.0}
