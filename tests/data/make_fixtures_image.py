"""Regenerate the real-schema fixtures of the issue #16 image tasks in tests/data (a few rows each, in each
dataset's own column types, images embedded as HF stores them), the way `make_fixtures.py` builds the others.

    PYTHONPATH=. python tests/data/make_fixtures_image.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import card  # noqa: E402

from qwen3vl_eval.eval.synth import hf_image  # noqa: E402

HERE = Path(__file__).resolve().parent
S, I64, F64 = pa.string(), pa.int64(), pa.float64()
IMG = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
LS = pa.list_(pa.string())

SCHEMAS = {
    "ocrbench": [("dataset", S), ("question", S), ("question_type", S), ("answer", LS), ("image", IMG)],
    "infovqa": [("questionId", S), ("question", S), ("answers", LS), ("answer_type", LS), ("image", IMG),
                ("image_url", S), ("operation/reasoning", LS), ("ocr", S), ("data_split", S)],
    "ai2d": [("question", S), ("options", LS), ("answer", S), ("image", IMG)],
    "mmbench": [("index", I64), ("question", S), ("hint", S), ("answer", S), ("A", S), ("B", S), ("C", S), ("D", S),
                ("category", S), ("image", IMG), ("source", S), ("L2-category", S), ("comment", S), ("split", S)],
    "mmstar": [("index", I64), ("question", S), ("image", IMG), ("answer", S), ("category", S), ("l2_category", S),
               ("meta_info", pa.struct([("source", S), ("split", S), ("image_path", S)]))],
    "realworldqa": [("image", IMG), ("question", S), ("answer", S)],
    "mathvista": [("pid", S), ("question", S), ("image", S), ("decoded_image", IMG), ("choices", LS), ("unit", S),
                  ("precision", F64), ("answer", S), ("question_type", S), ("answer_type", S),
                  ("metadata", pa.struct([("category", S), ("context", S), ("grade", S), ("img_height", I64),
                                          ("img_width", I64), ("language", S), ("skills", LS), ("source", S),
                                          ("split", S), ("task", S)])), ("query", S)],
    "hallusionbench": [(k, S) for k in ("category", "subcategory", "visual_input", "set_id", "figure_id",
                                        "sample_note", "question_id", "question", "gt_answer_details", "gt_answer",
                                        "filename")] + [("image", IMG)],
    "screenspot_v2": [("file_name", S), ("bbox", pa.list_(F64)), ("instruction", S), ("data_type", S),
                      ("data_source", S), ("image", IMG)],
}


def write(path: Path, schema_name: str, rows: list[dict]) -> None:
    """Rows in the dataset's column types (missing columns null), with HF `Image` feature metadata."""
    schema = pa.schema(SCHEMAS[schema_name])
    table = pa.table({f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in schema}, schema=schema)
    feats = {f.name: {"_type": "Image"} for f in schema if f.type == IMG}
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": feats}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def img(text: str, size: tuple[int, int] = (80, 48)) -> dict:
    return hf_image(card(text, size), "")


def mmbench_rows() -> list[dict]:
    """Question 0 (four options) with its three circular copies, question 1 (two options) with one, question 2
    (three options, a hint) alone."""
    rows = []
    opts = ["red", "green", "blue", "yellow"]
    for k in range(4):  # rotation k: options shifted by k, the answer "green" moves with them
        rot = opts[k:] + opts[:k]
        rows.append({"index": k * 1_000_000, "question": "What color is the ball?", "hint": "nan",
                     "answer": "ABCD"[rot.index("green")], **dict(zip("ABCD", rot)),
                     "category": "attribute_recognition", "L2-category": "finegrained_perception (instance-level)"})
    for k, (a, b) in enumerate([("indoor", "outdoor"), ("outdoor", "indoor")]):
        rows.append({"index": 1 + k * 1_000_000, "question": "Where was the photo taken?", "hint": "nan",
                     "answer": "A" if a == "outdoor" else "B", "A": a, "B": b, "C": "nan", "D": "nan",
                     "category": "image_scene", "L2-category": "coarse_perception"})
    rows.append({"index": 2, "question": "Which season is it?", "hint": "The trees have no leaves.", "answer": "C",
                 "A": "summer", "B": "spring", "C": "winter", "D": "nan", "category": "image_scene",
                 "L2-category": "coarse_perception"})
    for r in rows:
        r.update(image=img(r["question"][:10]), source="MMBench", comment=None, split="dev")
    return rows


def make_all(root: Path = HERE) -> None:
    write(root / "ocrbench/data/test-00000-of-00001.parquet", "ocrbench", [
        {"dataset": d, "question": q, "question_type": t, "answer": a, "image": img(a[0])} for d, q, t, a in [
            ("IIIT5K", "what is written in the image?", "Regular Text Recognition", ["CITY"]),
            ("HME100k", "Please write out the expression of the formula in the image using LaTeX format.",
             "Handwritten Mathematical Expression Recognition", ["x ^ { 2 } + 1"]),
            ("textVQA", "what brand is the drink?", "Scene Text-centric VQA", ["coca cola", "coke"]),
            ("docVQA", "What is the total amount?", "Doc-oriented VQA", ["$1,250.00"]),
            ("FUNSD", "what is the date?", "Key Information Extraction", ["March 3, 1998"]),
            ("Digit", "what is written in the image?", "Digit String Recognition", ["0735"])]])
    write(root / "infovqa/InfographicVQA/validation-00000-of-00001.parquet", "infovqa", [
        {"questionId": str(98313 + k), "question": q, "answers": a, "answer_type": ["single span"],
         "image": img(a[0]), "image_url": f"https://example.invalid/{k}.jpeg", "operation/reasoning": [],
         "ocr": "", "data_split": "val"} for k, (q, a) in enumerate([
             ("Which social platform has heavy female audience?", ["pinterest"]),
             ("What percentage of users are aged 18-29?", ["37%", "37"])])])
    write(root / "ai2d/data/test-00000-of-00001.parquet", "ai2d", [
        {"question": q, "options": o, "answer": a, "image": img(q[:8])} for q, o, a in [
            ("Which stage comes after the larva?", ["egg", "pupa", "adult", "nymph"], "1"),
            ("What does the sun provide to the plant?", ["water", "soil", "energy", "oxygen"], "2"),
            ("Which label shows the crust?", ["A", "B", "C", "D"], "0")]])
    write(root / "mmbench/en/dev-00000-of-00001.parquet", "mmbench", mmbench_rows())
    write(root / "mmstar/mmstar.parquet", "mmstar", [
        {"index": k, "question": q, "image": img(q[:8]), "answer": a, "category": c, "l2_category": l2,
         "meta_info": {"source": "MMBench", "split": "val", "image_path": f"images/{k}.jpg"}}
        for k, (q, a, c, l2) in enumerate([
            ("Which one is the main topic of the image?\nOptions: A: sports, B: cooking, C: travel, D: music", "A",
             "coarse perception", "image scene and topic"),
            ("What is the setting of the image?\nOptions: A: a beach, B: a city, C: a forest, D: a desert", "C",
             "coarse perception", "image scene and topic"),
            ("How does the person feel? Please answer yes or no.\nOptions: A: happy, B: sad, C: angry, D: calm", "B",
             "coarse perception", "image emotion"),
            ("What is the angle x?\nOptions: A: 30, B: 45, C: 60, D: 90", "D", "math", "geometry")])])
    write(root / "realworldqa/data/test-00000-of-00001.parquet", "realworldqa", [
        {"image": img(q[:8]), "question": q, "answer": a} for q, a in [
            ("Which object is closer?\nA. The car\nB. The tree\nC. The sign\nPlease answer directly with only the "
             "letter of the correct option and nothing else.", "B"),
            ("Is the road going uphill or downhill? Please answer directly with a single word or number.",
             "Downhill"),
            ("How many lanes are there? Please answer directly with a single word or number.", "2")]])
    meta = {"category": "math-targeted-vqa", "context": "geometry diagram", "grade": "high school",
            "img_height": 48, "img_width": 80, "language": "english", "skills": ["geometry reasoning"],
            "source": "Geometry3K", "split": "testmini", "task": "geometry problem solving"}
    write(root / "mathvista/data/testmini-00000-of-00001.parquet", "mathvista", [
        {"pid": str(k + 1), "question": q, "image": f"images/{k + 1}.jpg", "decoded_image": img(q[:8]),
         "choices": ch, "unit": u, "precision": p, "answer": a, "question_type": qt, "answer_type": at,
         "metadata": meta, "query": f"Hint: ...\nQuestion: {q}"} for k, (q, ch, u, p, a, qt, at) in enumerate([
             ("Find the measure of angle B.", ["30", "45", "60", "90"], None, None, "60", "multi_choice", "text"),
             ("How many objects are left?", None, None, None, "7", "free_form", "integer"),
             ("What is the length of the ruler?", None, "cm", 1.0, "3.5", "free_form", "float"),
             ("Between which two years is the peak?", None, None, None, "[2007, 2008]", "free_form", "list")])])
    hb = [("VD", "illusion", "1", "0", "0", "0", "Is the left circle larger than the right one?", "0"),
          ("VD", "illusion", "1", "0", "0", "1", "Are the two circles the same size?", "1"),
          ("VD", "illusion", "2", "0", "1", "0", "Is the left circle larger than the right one?", "1"),
          ("VD", "illusion", "2", "0", "1", "1", "Are the two circles the same size?", "0"),
          ("VS", "chart", "1", "1", "0", "0", "Is the blue bar the highest?", "1")]
    write(root / "hallusionbench/data/image-00000-of-00001.parquet", "hallusionbench", [
        {"category": c, "subcategory": sc, "visual_input": vi, "set_id": s, "figure_id": f, "sample_note": "note",
         "question_id": q, "question": text, "gt_answer_details": "yes" if a == "1" else "no", "gt_answer": a,
         "filename": f"./{c}/{sc}/{s}_{f}.png", "image": img(f"{c}{s}{f}")} for c, sc, vi, s, f, q, text, a in hb])
    write(root / "screenspot_v2/data/test-00000-of-00001.parquet", "screenspot_v2", [
        {"file_name": f"{src}_{k}.png", "bbox": b, "instruction": ins, "data_type": t, "data_source": src,
         "image": img(ins[:8], (120, 80))} for k, (b, ins, t, src) in enumerate([
             ([0.1, 0.2, 0.3, 0.4], "open settings", "text", "ios"),
             ([0.5, 0.5, 0.6, 0.55], "close this window", "icon", "windows"),
             ([0.7, 0.05, 0.95, 0.15], "search the web", "text", "web")])])


if __name__ == "__main__":
    make_all()
    print(f"fixtures written under {HERE}")
