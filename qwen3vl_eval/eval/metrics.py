"""Per-sample scorers and the aggregate metrics built on them, as the benchmarks' standard scripts define them.

A scorer (`SCORERS`, named by a task's `scorer:`) maps (extracted answer, target) to a dict of per-sample values
in [0, 1], e.g. {"iou": 0.62}; the extracted answer is None when parsing failed. A metric (`METRICS`, listed in
a task's `metrics:`) aggregates one of those values over samples, in percent: the mean, or the fraction at or
above a threshold (R1@0.5, Acc@0.5). Aggregation over a task's records, by the one denominator rule, and the
table of metric directions are `eval.aggregate`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from qwen3vl_eval.eval.parsers import _negated, parse_number

SCORERS: dict[str, Callable[[Any, Any], dict[str, float]]] = {}


def scorer(name: str) -> Callable:
    """Decorator: add a per-sample scorer to SCORERS."""

    def deco(fn: Callable) -> Callable:
        SCORERS[name] = fn
        return fn

    return deco


@dataclass(frozen=True)
class Metric:
    """Aggregate of the per-sample value `key`: 100 * mean, or 100 * fraction >= threshold."""

    name: str
    key: str
    threshold: float | None = None
    higher_is_better: bool = True

    def sample_value(self, scores: dict[str, float] | None) -> float:
        v = (scores or {}).get(self.key, 0.0)
        return float(v >= self.threshold) if self.threshold is not None else float(v)

    def aggregate(self, per_sample: Iterable[dict[str, float] | None]) -> float | None:
        """100 * the mean of the per-sample values over every sample; a failed one (None) counts 0
        (`eval.aggregate.DENOMINATOR_RULE`). A reference rule that aggregates otherwise overrides this."""
        vals = [self.sample_value(s) for s in per_sample]
        return 100.0 * sum(vals) / len(vals) if vals else None

    def aggregate_records(self, records: list[dict]) -> float | None:
        """The metric over sample records (failed ones count 0); group metrics also read the records' meta."""
        return self.aggregate([None if r.get("error") else r.get("scores") for r in records])


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("anls", "anls"),
        Metric("relaxed_accuracy", "relaxed_accuracy"),
        Metric("vqa_accuracy", "vqa_accuracy"),
        Metric("accuracy", "accuracy"),
        Metric("exact_match", "exact_match"),
        Metric("exact_match_strict", "exact_match_strict"),
        Metric("r1@0.3", "iou", 0.3),
        Metric("r1@0.5", "iou", 0.5),
        Metric("r1@0.7", "iou", 0.7),
        Metric("acc@0.5", "iou", 0.5),
        Metric("miou", "iou"),
    ]
}


FLEXIBLE = "_flexible"
JUDGED = "_judged"


def get_metric(name: str) -> Metric:
    """A metric by name; `<metric>_flexible` (`<metric>_judged`) aggregates the `<key>_flexible` (`<key>_judged`)
    per-sample values the same way."""
    if name in METRICS:
        return METRICS[name]
    suffix = next((x for x in (FLEXIBLE, JUDGED) if name.endswith(x)), "")
    base = METRICS[name.removesuffix(suffix)] if suffix else METRICS[name]
    return replace(base, name=name, key=base.key + suffix)  # the same aggregation (a subclass's too)


# ---------------------------------------------------------------- ANLS (DocVQA)

def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def anls(prediction: str, answers: list[str], threshold: float = 0.5) -> float:
    """DocVQA ANLS of one question: 1 - min normalized Levenshtein distance over the references (lowercased,
    whitespace collapsed); 0 when that similarity is below `threshold`."""
    det = " ".join(prediction.strip().lower().split())
    dists = []
    for ans in answers:
        gt = " ".join(str(ans).strip().lower().split())
        length = max(len(gt), len(det))
        dists.append(0.0 if length == 0 else levenshtein(gt, det) / length)
    if not dists:
        return 0.0
    score = 1.0 - min(dists)
    return score if score >= threshold else 0.0


@scorer("anls")
def _anls(pred: str | None, target: list[str]) -> dict[str, float]:
    return {"anls": anls(pred, target) if pred is not None else 0.0}


# ---------------------------------------------------------------- relaxed accuracy (ChartQA)

def relaxed_correctness(prediction: str, target: str, max_relative_change: float = 0.05) -> bool:
    """ChartQA (pix2struct) relaxed match: numbers within 5% of a nonzero target ("%" divides by 100),
    otherwise case-insensitive exact match."""

    def to_float(text: str) -> float | None:
        try:
            return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            return None

    p, t = to_float(prediction), to_float(target)
    if p is not None and t:
        return abs(p - t) / abs(t) <= max_relative_change
    return prediction.lower() == target.lower()


@scorer("relaxed_accuracy")
def _relaxed(pred: str | None, target: str | list[str]) -> dict[str, float]:
    targets = target if isinstance(target, list) else [target]
    ok = pred is not None and any(relaxed_correctness(pred.strip(), str(t).strip()) for t in targets)
    return {"relaxed_accuracy": float(ok)}


# ---------------------------------------------------------------- VQA accuracy (TextVQA), EvalAI normalisation

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
          "!"]


def vqa_normalize(text: str) -> str:
    """EvalAI answer processing (as in the VQA/TextVQA eval and lmms-eval): lowercase, punctuation, number
    words to digits, articles dropped, contractions restored."""
    t = text.lower().replace(",", "").replace("?", "").replace("'s", " 's")
    t = t.replace("\n", " ").replace("\t", " ").strip()
    out = t
    for p in _PUNCT:
        if (p + " " in t or " " + p in t) or _COMMA_STRIP.search(t) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD_STRIP.sub("", out)
    words = []
    for w in out.split():
        w = _NUMBER_WORDS.get(w, w)
        if w not in _ARTICLES:
            words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """VQA accuracy: mean over the 10 leave-one-out subsets of min(1, matches among the other 9 / 3)."""
    pred = vqa_normalize(prediction)
    gts = [vqa_normalize(str(a)) for a in answers]
    if not gts:
        return 0.0
    accs = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1 :]
        accs.append(min(1.0, sum(g == pred for g in others) / 3.0))
    return sum(accs) / len(accs)


@scorer("vqa_accuracy")
def _vqa(pred: str | None, target: list[str]) -> dict[str, float]:
    return {"vqa_accuracy": vqa_accuracy(pred, target) if pred is not None else 0.0}


# ---------------------------------------------------------------- accuracy / exact match

@scorer("accuracy")
def _accuracy(pred: Any, target: Any) -> dict[str, float]:
    return {"accuracy": float(pred is not None and str(pred).strip().upper() == str(target).strip().upper())}


def numbers_equal(a: str | None, b: str | None) -> bool:
    """Same number (after removing ",", "$", a trailing "."), else same text ignoring case."""
    if a is None or b is None:
        return False
    fa, fb = parse_number(a), parse_number(b)
    if fa is not None and fb is not None:
        return abs(fa - fb) < 1e-9
    return a.strip().lower() == b.strip().lower()


@scorer("gsm8k")
def _gsm8k(pred: dict | None, target: str) -> dict[str, float]:
    pred = pred or {}
    return {"exact_match": float(numbers_equal(pred.get("flexible"), target)),
            "exact_match_strict": float(numbers_equal(pred.get("strict"), target))}


# ---------------------------------------------------------------- MMMU

_ANSWER_MARKER = re.compile(r"(?:final answer|answer is|answer:|answer|therefore|thus|hence|so|=)\s*:?\s*",
                            re.IGNORECASE)


def final_answer_text(prediction: str) -> str:
    """The part of a reply that states its answer: what follows the last "answer is" / "therefore" / "so" / "="
    up to the end of that line, else the first non-empty line."""
    marks = list(_ANSWER_MARKER.finditer(prediction))
    if marks:
        tail = prediction[marks[-1].end():].strip()
        if tail:
            return tail.splitlines()[0]
    return next((line for line in prediction.strip().splitlines() if line.strip()), "")


def mmmu_open_correct(prediction: str, gold: str) -> bool:
    """MMMU open question: the last (not negated) number of the reply's stated answer equals a gold number (to
    within 1%, and to 2 decimals), or the normalized gold text occurs as words, not negated, there or in the
    first line. A gold written as a list literal accepts any element."""
    golds: list[str] = [gold]
    if gold.strip().startswith("["):
        try:
            golds = [str(g) for g in ast.literal_eval(gold.strip())]
        except (ValueError, SyntaxError):
            pass
    part = final_answer_text(prediction)
    nums = [n for n in re.finditer(r"(?<![\d,.])[-+]?\$?(?:\d[\d,]*)?\.?\d+(?:[eE][-+]?\d+)?%?", part)
            if not _negated(part, n.start())]
    last = parse_number(nums[-1].group(0)) if nums else None
    first = next((line for line in prediction.strip().splitlines() if line.strip()), "")
    low = part.lower() + "\n" + first.lower()
    for g in golds:
        gv = parse_number(g)
        if gv is not None:
            if last is not None and round(last, 2) == round(gv, 2) and abs(last - gv) <= 0.01 * abs(gv):
                return True
            continue
        text = g.strip().lower().rstrip(".")
        for m in re.finditer(rf"(?<!\w){re.escape(text)}(?!\w)", low) if text else ():
            if not _negated(low, m.start()):
                return True
    return False


@scorer("mmmu")
def _mmmu(pred: str | None, target: dict) -> dict[str, float]:
    if pred is None:
        return {"accuracy": 0.0}
    if target.get("choices"):
        return {"accuracy": float(pred == target["answer"])}
    return {"accuracy": float(mmmu_open_correct(pred, target["answer"]))}


# ---------------------------------------------------------------- IoU (temporal and boxes)

def temporal_iou(pred: list[float], gt: list[float]) -> float:
    """IoU of two [start, end] spans in seconds (0 when disjoint or either is empty)."""
    inter = min(pred[1], gt[1]) - max(pred[0], gt[0])
    union = max(pred[1], gt[1]) - min(pred[0], gt[0])
    return inter / union if inter > 0 and union > 0 else 0.0


@scorer("temporal_iou")
def _tiou(pred: list[float] | None, target: list[float]) -> dict[str, float]:
    return {"iou": temporal_iou(pred, target) if pred is not None else 0.0}


def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of two [x1, y1, x2, y2] pixel boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@scorer("box_iou")
def _biou(pred: list[float] | None, target: dict) -> dict[str, float]:
    return {"iou": box_iou(pred, target["bbox"]) if pred is not None else 0.0}
