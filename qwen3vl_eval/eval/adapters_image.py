"""Adapters of the image benchmarks Qwen3-VL is reported on (issue #16), each reading its Hugging Face dataset's
own schema as lmms-eval 0.7.3's task of the same name loads it. Where lmms-eval builds the question text from
several columns (MMBench's hint and options, MathVista's format prompt), the adapter builds it the same way and
the task's prompt adds the instruction. Group fields that group metrics read (`eval.group_metrics`) go in `meta`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from qwen3vl_eval.errors import ProcessorError
from qwen3vl_eval.eval.adapters import Context, Rows, Sample, _image_list, adapter
from qwen3vl_eval.eval.media import image_source
from qwen3vl_eval.eval.parsers import LETTERS


def _text(v: Any) -> str | None:
    """A cell as text; None for a null or a float NaN (pandas' missing value)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return str(v)


@adapter("ocrbench")
def _ocrbench(rows: Rows, ctx: Context) -> Iterator[Sample]:
    """echo840/OCRBench: no id column (ids are row numbers); `answer` is a list; `dataset` decides the rule."""
    for i, r in enumerate(rows.rows):
        answers = r["answer"] if isinstance(r["answer"], list) else [r["answer"]]
        yield Sample(str(i), {"answers": [str(a) for a in answers], "dataset": str(r["dataset"])},
                     str(r["question"]).strip(), images=[r["image"]],
                     meta={"question_type": r["question_type"], "dataset": r["dataset"]})


@adapter("ai2d")
def _ai2d(rows: Rows, ctx: Context) -> Iterator[Sample]:
    """lmms-lab-encoder/ai2d: `options` a list, `answer` the option's index as text; target its letter."""
    for i, r in enumerate(rows.rows):
        options = [str(o) for o in r["options"]]
        yield Sample(str(i), LETTERS[int(r["answer"])], str(r["question"]), choices=options, images=[r["image"]])


MMBENCH_OPTIONS = "There are several options:"  # lmms-eval mmbench.yaml metadata.sys_prompt


@adapter("mmbench")
def _mmbench(rows: Rows, ctx: Context) -> Iterator[Sample]:
    """lmms-lab-encoder/MMBench: options in columns A-E ("nan" or null when absent), `index` >= 1e6 for the
    circular copies of question `index % 1e6`. The text is lmms-eval's: "[hint ]question There are several
    options:\\nA. ..."; `meta.option_texts` keeps A-D as the reference's answer matcher sees them."""
    for r in rows.rows:
        present = {c: _text(r.get(c)) for c in "ABCDE"}
        shown = {c: t for c, t in present.items() if t and t != "nan"}
        options = "\n".join([MMBENCH_OPTIONS] + [f"{c}. {t}" for c, t in sorted(shown.items())])
        hint = _text(r.get("hint"))
        question = f"{hint} {r['question']} {options}" if hint and hint != "nan" else f"{r['question']} {options}"
        index = int(r["index"])
        yield Sample(str(index), str(r["answer"]).strip(), question, choices=[shown[c] for c in sorted(shown)],
                     images=[r["image"]],
                     meta={"circular_group": index % 1_000_000, "category": r.get("category"),
                           "l2_category": r.get("L2-category"),
                           "option_texts": {c: t for c, t in present.items() if c in "ABCD" and t is not None}})


@adapter("mmstar")
def _mmstar(rows: Rows, ctx: Context) -> Iterator[Sample]:
    """Lin-Chen/MMStar: options are part of `question`; lmms-eval's Qwen3-VL prompt drops its yes/no suffix."""
    for r in rows.rows:
        question = str(r["question"]).strip().replace(" Please answer yes or no.", "")
        yield Sample(str(r["index"]), str(r["answer"]).strip(), question, images=[r["image"]],
                     meta={"category": r["category"], "l2_category": r["l2_category"]})


@adapter("realworldqa")
def _realworldqa(rows: Rows, ctx: Context) -> Iterator[Sample]:
    """lmms-lab-encoder/RealWorldQA: the question carries its options and instruction; answers are letters or
    short text ("0", "Downhill")."""
    for i, r in enumerate(rows.rows):
        yield Sample(str(i), str(r["answer"]).strip(), str(r["question"]).strip(), images=[r["image"]])


_MATHVISTA_HINTS = {"integer": "Answer the question using a single integer number.",
                    ("float", 1): "Answer the question using a single floating-point number with one decimal place.",
                    ("float", 2): "Answer the question using a single floating-point number with two decimal places.",
                    "list": "Answer the question using a Python list."}


def mathvista_query(r: dict) -> str:
    """lmms-eval's `format-prompt` query (mathvista_testmini_format, zero-shot): question, " (Unit: u)", the
    choices as "A. text" lines, then the answer-format hint for the question and answer type."""
    choices = list(r.get("choices") or [])
    if r["question_type"] == "multi_choice":
        hint = "Answer with the option's letter from the given choices directly."
    elif r["answer_type"] == "float":
        hint = _MATHVISTA_HINTS.get(("float", r.get("precision")), "")
    else:
        hint = _MATHVISTA_HINTS.get(r["answer_type"], "")
    question = str(r["question"]) + (f" (Unit: {r['unit']})" if r.get("unit") else "")
    lines = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return "\n".join(e for e in (question, lines, hint) if e).strip()


@adapter("mathvista")
def _mathvista(rows: Rows, ctx: Context) -> Iterator[Sample]:
    """AI4Math/MathVista: `decoded_image` holds the image (`image` is its file name), `choices` is null for
    free-form questions, `precision` the decimals of float answers, `metadata` a struct."""
    for r in rows.rows:
        choices = [str(c) for c in r.get("choices") or []]
        meta = r.get("metadata") or {}
        target = {"answer": r.get("answer"), "question_type": r["question_type"], "answer_type": r["answer_type"],
                  "precision": r.get("precision"), "choices": choices, "query": r.get("query")}
        yield Sample(str(r["pid"]), target, mathvista_query(r), choices=choices,
                     images=_image_list(r, ["decoded_image"]),
                     meta={"question_type": r["question_type"], "answer_type": r["answer_type"],
                           "category": meta.get("category"), "task": meta.get("task")})


@adapter("hallusionbench")
def _hallusionbench(rows: Rows, ctx: Context) -> Iterator[Sample]:
    """lmms-lab-encoder/HallusionBench: yes/no questions, `gt_answer` "1" (yes) or "0"; a figure is
    category_subcategory_set_figure, a question category_subcategory_set_question (the benchmark's keys)."""
    for r in rows.rows:
        base = "_".join(str(r[k]) for k in ("category", "subcategory", "set_id"))
        yield Sample(f"{base}_{r['figure_id']}_{r['question_id']}", str(r["gt_answer"]).strip(), str(r["question"]),
                     images=_image_list(r, ["image"]),
                     meta={"category": r["category"], "subcategory": r["subcategory"],
                           "figure_group": f"{base}_{r['figure_id']}", "question_group": f"{base}_{r['question_id']}"})


def _is_fractions(box: list[float]) -> bool:
    return all(0 <= v <= 1 for v in box) and box[2] >= box[0] and box[3] >= box[1]


def normalized_box(bbox: list[float], width: float, height: float) -> list[float]:
    """A target box as fractions of the image [x1, y1, x2, y2], from what the data holds: fractions already, pixel
    corners, or pixel [x, y, w, h] (lmms-eval screenspot_v2's reading, with the image's own size)."""
    x1, y1, a, b = (float(v) for v in bbox)
    if _is_fractions([x1, y1, a, b]):
        return [x1, y1, a, b]
    if a > x1 and b > y1:
        return [x1 / width, y1 / height, a / width, b / height]
    return [x1 / width, y1 / height, (x1 + a) / width, (y1 + b) / height]


@adapter("screenspot")
def _screenspot(rows: Rows, ctx: Context) -> Iterator[Sample]:
    """HongxinLi/ScreenSpot_v2: `instruction`, `bbox` (fractions [x1, y1, x2, y2]), `data_type` (text, icon),
    `data_source` (ios, android, windows, macos, web). Pixel boxes are scaled by the image's size. The target's
    `box` is in fractions (not the pixel `bbox` that reports draw on the image)."""
    for i, r in enumerate(rows.rows):
        bbox, size, err = [float(v) for v in r["bbox"]], (1, 1), None
        if not _is_fractions(bbox):
            from qwen3vl_eval.processor.image import image_size  # imports torch: only for pixel boxes
            try:
                size = (r["image_width"], r["image_height"]) if r.get("image_width") else \
                    image_size(image_source(r["image"], ctx.roots))
            except ProcessorError as e:
                err = str(e)
        target = {"box": normalized_box(bbox, float(size[0]), float(size[1])), "data_type": r.get("data_type")}
        yield Sample(str(i), target, str(r["instruction"]), images=[r["image"]], error=err,
                     meta={"data_type": r.get("data_type"), "data_source": r.get("data_source")})
