"""Headline rules of the issue #16 image tasks: each reproduces the named reference scorer rule for rule
(reimplemented from its definition; `tests/test_tasks_image_reference.py` pins them to the real lmms-eval 0.7.3
code on a corpus of replies, `reference/scoring/run_reference_image.py`).

- OCRBench (lmms-eval `ocrbench_process_results`): the stripped reply contains an answer, after folding
  full-width ASCII and lowercasing (HME100k formulas: with all spaces removed, case kept).
- AI2D (lmms-eval `ai2d` filter + exact_match): a leading "X." gives the letter, else the reply; stripped,
  lowercased, ASCII punctuation removed, equal to the letter.
- MMBench (lmms-eval `mmbench_en_dev_static`): MMBench's `can_infer` (a lone letter among the words, then
  option text), else lmms-eval's `extract_mcq_answer`; CircularEval in `eval.group_metrics`.
- RealWorldQA (lmms-eval `realworldqa_process_results`): letters by `extract_mcq_answer`, other answers by
  lowercase equality without a final ".".
- MathVista (lmms-eval `mathvista_testmini_format`): `mathvista_rule_extract`, the rules lmms-eval applies before
  its judge, then `mathvista_normalize` and string equality. Where the rules cannot read a reply, lmms-eval asks
  a judge; without one its extraction is "" (counted here as `judge_fallback`). The seam for a judge is
  `mathvista_rule_extract` returning None (the `mathvista_rules` parser of the task's `judge:` block). One
  deviation: lmms-eval rounds float answers with the dataset's float `precision`, which Python refuses (every
  float question scores 0 there); here `int(precision)`, as MathVista's own `calculate_score.py` does.
- HallusionBench (lmms-eval `hb_aggregation_result_*_intern`, the judge-free reading): "yes" anywhere in the
  lowercased reply is yes ("1"), else no ("0").
- ScreenSpot-v2: the standard click accuracy (the point inside the target box, edges included) with the point
  read as lmms-eval screenspot_v2's `_parse_point` reads it, on Qwen3-VL's 0-1000 scale (lmms-eval asks for
  fractions and divides larger values by the image size).
"""

from __future__ import annotations

import re
import string
from typing import Any

from qwen3vl_eval.eval.metrics import levenshtein, scorer
from qwen3vl_eval.eval.parsers import LETTERS, register
from qwen3vl_eval.eval.reference_lmms import lmms_mcq_letter


@register("stripped", version=1, strip=False)
def _stripped(text: str, sample: Any) -> str:
    """lmms-eval's generate_until metrics (anls, exact_match) read the reply stripped of surrounding whitespace."""
    return text.strip()


# ---------------------------------------------------------------- OCRBench


def fold_fullwidth(text: str) -> str:
    """Full-width ASCII (U+FF01-FF5E) to ASCII and the ideographic space to a space; nothing else changes."""
    return "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else " " if c == "\u3000" else c
                   for c in text)


def ocrbench_correct(reply: str, answers: list[str], dataset: str) -> bool:
    """OCRBench's containment rule (lmms-eval 0.7.3)."""
    pred = reply.strip()
    if dataset == "HME100k":
        squash = lambda s: s.strip().replace("\n", " ").replace(" ", "")  # noqa: E731
        return any(squash(a) in squash(pred) for a in answers)
    norm = lambda s: fold_fullwidth(s).lower().strip().replace("\n", " ")  # noqa: E731
    return any(norm(a) in norm(pred) for a in answers)


@scorer("ocrbench_lmms")
def _ocrbench(pred: str | None, target: dict) -> dict[str, float]:
    return {"accuracy": float(pred is not None and ocrbench_correct(pred, target["answers"], target["dataset"]))}


# ---------------------------------------------------------------- AI2D

_PUNCT = str.maketrans("", "", string.punctuation)


@register("ai2d_lmms", version=1, strip=False)
def _ai2d(text: str, sample: Any) -> str | None:
    """lmms-eval ai2d's MultiChoiceRegexFilter: the letter of a leading "X.", else the whole reply; stripped."""
    m = re.match(r"\s*([A-Z])\.", text)
    return (m.group(1) if m else text).strip() or None


@scorer("exact_match_lmms")
def _exact_match(pred: str | None, target: str) -> dict[str, float]:
    """lmms-eval exact_match with ignore_case and ignore_punctuation."""
    ok = pred is not None and pred.lower().translate(_PUNCT) == str(target).lower().translate(_PUNCT)
    return {"accuracy": float(ok)}


# ---------------------------------------------------------------- MMBench

_AFFIXES = [("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."), (":", ""), (":", ","),
            (":", "."), (":", ")"), (":", ").")]


def mmbench_letter_in_words(answer: str, letters: str = "ABCDE") -> str | None:
    """MMBench `can_infer_option`: the one letter standing as a word (not a lone "A" in a reply of over three
    words), else the one letter written as a word with one of MMBench's affixes ("B.", "(C)", ":D")."""
    words = [w.strip() for w in answer.split()]

    def once(prefix: str = "", suffix: str = "") -> str | None:
        hits = [c for c in letters if prefix + c + suffix in words]
        return hits[0] if len(hits) == 1 else None

    bare = once()
    if bare is not None and not ("A" in words and len(words) > 3):
        return bare
    for prefix, suffix in _AFFIXES:
        if (c := once(prefix, suffix)) is not None:
            return c
    return None


def mmbench_letter(reply: str, option_texts: dict[str, str]) -> str | None:
    """The letter MMBench's static evaluation reads: `can_infer` (a letter, else the one option whose lowercased
    text the lowercased reply contains), else lmms-eval's `extract_mcq_answer` over the options' letters."""
    letter = mmbench_letter_in_words(reply)
    if letter is None:
        low = reply.lower()
        hits = [c for c, t in option_texts.items() if str(t).lower() in low]
        letter = hits[0] if len(hits) == 1 else None
    return letter or lmms_mcq_letter(reply, "".join(sorted(option_texts))) or None


@register("mmbench_lmms", version=1, strip=False)
def _mmbench(text: str, sample: Any) -> str | None:
    return mmbench_letter(text.strip(), dict(sample.meta.get("option_texts") or {}))


# ---------------------------------------------------------------- RealWorldQA

@scorer("realworldqa_lmms")
def _realworldqa(pred: str | None, target: str) -> dict[str, float]:
    if pred is None:
        return {"accuracy": 0.0}
    gt = str(target).strip()
    if gt.upper() in ("A", "B", "C", "D"):
        return {"accuracy": float(lmms_mcq_letter(pred) == gt.upper())}
    return {"accuracy": float(pred.lower().strip().rstrip(".") == gt.lower())}


# ---------------------------------------------------------------- MathVista

def mathvista_rule_extract(response: str, problem: dict) -> str | None:
    """The answer lmms-eval's MathVista reads without a judge, or None where it would ask one: "" for an empty
    reply, the reply itself when it is one of the choices (multiple choice), or parses as an int (integer
    answers) or a float (float answers, as Python's float() writes it)."""
    response = response.strip()
    if not response:
        return ""
    if problem["question_type"] == "multi_choice" and response in (problem.get("choices") or []):
        return response
    for kind, conv in (("integer", lambda s: str(int(s))), ("float", lambda s: str(float(s)))):
        if problem["answer_type"] == kind:
            try:
                return conv(response)
            except ValueError:
                pass
    return None


def mathvista_normalize(extraction: str, problem: dict) -> str | None:
    """MathVista `normalize_extracted_answer`: for multiple choice the choice named by a "(x)" letter or a bare
    letter, else the choice nearest in edit distance; integers as int(float()), floats rounded to `precision`
    decimals, lists as text. None when a number does not parse."""
    choices, atype = list(problem.get("choices") or []), problem["answer_type"]
    if problem["question_type"] == "multi_choice":
        extraction = str(extraction).strip()
        letters = re.findall(r"\(([a-zA-Z])\)", extraction)
        if letters:
            extraction = letters[0].upper()
        if extraction in list(LETTERS[: len(choices)]):
            return choices[LETTERS.index(extraction)]
        dists = [levenshtein(extraction, c) for c in choices]
        return choices[dists.index(min(dists))] if choices else None
    try:
        if atype == "integer":
            return str(int(float(extraction)))
        if atype == "float":
            precision = problem.get("precision")
            return str(round(float(extraction), None if precision is None else int(precision)))
    except (ValueError, OverflowError, TypeError):
        return None
    return str(extraction) if atype == "list" else extraction


@register("mathvista_lmms", version=1, strip=False)
def _mathvista(text: str, sample: Any) -> dict[str, Any]:
    """{"extraction", "prediction", "judge_fallback"}: the rules' reading, or lmms-eval's "" where a judge would
    be asked and none is configured."""
    extraction = mathvista_rule_extract(text, sample.target)
    fallback = extraction is None
    extraction = "" if fallback else extraction
    return {"extraction": extraction, "prediction": mathvista_normalize(extraction, sample.target),
            "judge_fallback": fallback}


@register("mathvista_rules", version=1, strip=False)
def _mathvista_rules(text: str, sample: Any) -> dict[str, Any] | None:
    """The rules alone (the `judge:` block's `rules`): as `mathvista_lmms`, None where a judge must read."""
    extraction = mathvista_rule_extract(text, sample.target)
    if extraction is None:
        return None
    return {"extraction": extraction, "prediction": mathvista_normalize(extraction, sample.target),
            "judge_fallback": False}


@scorer("mathvista_lmms")
def _mathvista_score(pred: dict | str | None, target: dict) -> dict[str, float]:
    """String equality of the normalised prediction and the answer; a str is an extraction (a judge's) to
    normalise first."""
    if pred is None:
        return {"accuracy": 0.0}
    if isinstance(pred, str):
        pred = {"prediction": mathvista_normalize(pred.strip(), target)}
    out = {"accuracy": float(str(pred["prediction"]).strip() == str(target["answer"]).strip())}
    if pred.get("judge_fallback"):
        out["judge_fallback"] = 1.0
    return out


# ---------------------------------------------------------------- HallusionBench

@register("hallusion_lmms", version=1, strip=False)
def _hallusion(text: str, sample: Any) -> str:
    """lmms-eval `hb_aggregation_result_intern`: "1" when the reply contains "yes" (any case), else "0"."""
    return "1" if "yes" in text.lower() else "0"


@scorer("hallusion_lmms")
def _hallusion_score(pred: str | None, target: str) -> dict[str, float]:
    """The yes/no reading ("1", "0") equals `gt_answer`."""
    return {"accuracy": float(pred is not None and pred == str(target))}


# ---------------------------------------------------------------- ScreenSpot-v2

_NUM = r"-?\d+(?:\.\d+)?%?"
_BBOX_TAG = re.compile(r"<\s*bbox[^>]*>(.*?)<\s*/\s*bbox\s*>", re.IGNORECASE | re.DOTALL)
_PAIR = re.compile(rf"[\[\(]\s*({_NUM})\s*(?:,|\s)\s*({_NUM})\s*[\]\)]")
_XY = re.compile(rf"['\"]?x['\"]?\s*[:=]\s*({_NUM}).*?['\"]?y['\"]?\s*[:=]\s*({_NUM})", re.IGNORECASE | re.DOTALL)


def _value(token: str) -> float:
    token = token.strip()
    return float(token[:-1]) / 100.0 if token.endswith("%") else float(token)


def _center(nums: list[str]) -> tuple[float, float]:
    x1, y1, x2, y2 = (_value(v) for v in nums[:4])
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0


def click_point(reply: str) -> tuple[float, float] | None:
    """lmms-eval screenspot_v2 `_parse_point`, unscaled: the centre of a <bbox>...</bbox> tag, a bracketed pair,
    "x: .. y: ..", the centre of four numbers in a reply naming a box, else the first two numbers."""
    tag = _BBOX_TAG.search(reply)
    if tag and len(nums := re.findall(_NUM, tag.group(1))) >= 4:
        return _center(nums)
    for pattern in (_PAIR, _XY):
        if m := pattern.search(reply):
            return _value(m.group(1)), _value(m.group(2))
    nums = re.findall(_NUM, reply)
    if len(nums) >= 4 and any(k in reply.lower() for k in ("bbox", "box", "rect", "rectangle")):
        return _center(nums)
    return (_value(nums[0]), _value(nums[1])) if len(nums) >= 2 else None


@register("click_point_1000", version=1, strip=False)
def _click(text: str, sample: Any) -> list[float] | None:
    """The point on the 0-1000 scale, as fractions of the image."""
    p = click_point(text)
    return None if p is None else [p[0] / 1000.0, p[1] / 1000.0]


@scorer("point_in_box")
def _point_in_box(pred: list[float] | None, target: dict) -> dict[str, float]:
    """1 when the point (fractions) lies in the target box (fractions), edges included."""
    b = target["box"]
    ok = pred is not None and b[0] <= pred[0] <= b[2] and b[1] <= pred[1] <= b[3]
    return {"accuracy": float(ok)}
