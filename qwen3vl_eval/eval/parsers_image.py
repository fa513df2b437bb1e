"""Flexible readings (`<metric>_flexible`) of the issue #16 image tasks: this harness' lenient parsing beside the
reference-exact headline (`eval.reference_image`). Letters use `parsers.parse_letter` (negations and "B or C"
are no answer); numbers the last one of the stated answer; points Qwen3-VL's JSON first.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from qwen3vl_eval.eval.metrics import _NUMBER_WORDS, final_answer_text, scorer
from qwen3vl_eval.eval.parsers import (
    format_number,
    numbers_in,
    parse_box_relative,
    parse_letter,
    parse_short_answer,
    register,
)
from qwen3vl_eval.eval.reference_image import click_point, mathvista_normalize


def _squash(text: str) -> str:
    """NFKC, lowercase, without whitespace and markdown emphasis or quotes."""
    return re.sub(r"[\s*`\"'“”]", "", unicodedata.normalize("NFKC", text).lower())


@scorer("ocrbench_flexible")
def _ocrbench_flexible(pred: str | None, target: dict) -> dict[str, float]:
    """An answer contained in the reply, compared without case, width, spacing and quotes (formulas keep case)."""
    if pred is None:
        return {"accuracy": 0.0}
    if target["dataset"] == "HME100k":
        ok = any(re.sub(r"\s", "", a) in re.sub(r"\s", "", pred) for a in target["answers"])
    else:
        ok = any(_squash(a) in _squash(pred) for a in target["answers"] if _squash(a))
    return {"accuracy": float(ok)}


@register("realworldqa_flexible", version=1)
def _realworldqa(text: str, sample: Any) -> str | None:
    """A letter for letter questions (`parse_letter`), else the short answer without a final "." and with number
    words as digits."""
    if str(sample.target).upper() in ("A", "B", "C", "D"):
        return parse_letter(text, 4)
    ans = parse_short_answer(text)
    if ans is None:
        return None
    ans = ans.rstrip(".").strip()
    return _NUMBER_WORDS.get(ans.lower(), ans)


@register("mathvista_flexible", version=1)
def _mathvista(text: str, sample: Any) -> str | None:
    """Multiple choice: the letter (or the one option named) -> that choice. Numbers: the last number of the
    stated answer, normalised as MathVista does. Lists: the last bracketed list, spaces after commas."""
    target = sample.target
    if target["question_type"] == "multi_choice":
        choices = target["choices"]
        letter = parse_letter(text, len(choices), choices)
        return None if letter is None else choices["ABCDEFGHIJ".index(letter)]
    part = final_answer_text(text)
    if target["answer_type"] == "list":
        lists = re.findall(r"\[[^\[\]]*\]", part) or re.findall(r"\[[^\[\]]*\]", text)
        return re.sub(r"\s*,\s*", ", ", lists[-1]) if lists else None
    nums = numbers_in(part) or numbers_in(text)
    return None if not nums else mathvista_normalize(format_number(nums[-1]), target)


@scorer("mathvista_flexible")
def _mathvista_score(pred: str | None, target: dict) -> dict[str, float]:
    return {"accuracy": float(pred is not None and pred.strip() == str(target["answer"]).strip())}


@register("yes_no", version=1)
def _yes_no(text: str, sample: Any) -> str | None:
    """"1" for yes, "0" for no: the first yes/no word of the reply; None when its first sentence says both."""
    first = re.split(r"(?<=[.!?])\s|\n", text.strip(), maxsplit=1)[0].lower()
    words = re.findall(r"\b(yes|no)\b", first) or re.findall(r"\b(yes|no)\b", text.lower())
    if not words or len(set(re.findall(r"\b(yes|no)\b", first))) > 1:
        return None
    return "1" if words[0] == "yes" else "0"


_POINT_JSON = re.compile(r"\"?point(?:_2d)?\"?\s*:\s*\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]",
                         re.IGNORECASE)


@register("click_point_qwen3vl", version=1)
def _click(text: str, sample: Any) -> list[float] | None:
    """Qwen3-VL's `{"point_2d": [x, y]}`, else the centre of its first box (`bbox_2d`, box tokens), else the
    reference reading; on the 0-1000 scale, or fractions when both values are at most 1."""
    if m := _POINT_JSON.search(text):
        p = (float(m.group(1)), float(m.group(2)))
    elif (box := parse_box_relative(text)) is not None:
        p = ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
    elif (q := click_point(text)) is not None:
        p = q
    else:
        return None
    scale = 1.0 if max(abs(p[0]), abs(p[1])) <= 1 else 1000.0
    return [p[0] / scale, p[1] / scale]
