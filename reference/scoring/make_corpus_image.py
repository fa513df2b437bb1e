"""Build the reply corpus that pins the issue #16 image tasks' headline metrics to lmms-eval 0.7.3.

Writes `tests/data/reference_scoring/image/corpus.jsonl`: one line per reply, `{"id", "task", "split", "group",
"reply", "thinking", "doc"}` where `doc` is the dataset row in its own schema (image columns left out), so the
test runs our adapter on it. Rows come in the groups the benchmarks score together (MMBench's circular copies,
HallusionBench's figures and questions), parts `tune` and `heldout` with different seeds and style weights, as
`make_corpus.py` does (its style mixer and Thinking wrapper are reused). Pure standard library:

    python3 reference/scoring/make_corpus_image.py

Then `run_reference_image.py` (in the reference venv) scores every reply with the real lmms-eval code.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_corpus import LETTER_STYLES, OPTIONS, WORDS, Mix, perturb, thinking, wrap_answer, write_corpus  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "reference_scoring" / "image" / "corpus.jsonl"
PER_TASK = {"tune": 160, "heldout": 60}  # replies per task and part (group tasks round up to whole groups)
SEEDS = {"tune": 71, "heldout": 4099}
LETTER_STYLES_MORE = LETTER_STYLES + ["Option {L}", "{L}\n", "({l})", "The answer is {L}", "A {t}", ""]


def letters(rng: random.Random, mix: Mix, options: list[str], gold: int, p_right: float = 0.6) -> str:
    n = len(options)
    pick = gold if rng.random() < p_right else rng.randrange(n)
    other = rng.choice([i for i in range(n) if i != pick]) if n > 1 else pick
    return mix.pick(LETTER_STYLES_MORE).format(L=chr(65 + pick), l=chr(97 + pick), O=chr(65 + other),
                                               T=options[pick], t=options[pick].lower(),
                                               t2=options[other].lower())


OCR = [("IIIT5K", "Regular Text Recognition", ["CITY"]), ("IC13", "Irregular Text Recognition", ["Starbucks"]),
       ("WordArt", "Artistic Text Recognition", ["dreams"]), ("IAM", "Handwriting Recognition", ["because"]),
       ("Digit", "Digit String Recognition", ["0735"]), ("NonSem", "Non-Semantic Text Recognition", ["xkqzt"]),
       ("textVQA", "Scene Text-centric VQA", ["coca cola", "coke"]), ("docVQA", "Doc-oriented VQA", ["$1,250.00"]),
       ("FUNSD", "Key Information Extraction", ["March 3, 1998"]),
       ("HME100k", "Handwritten Mathematical Expression Recognition", ["x ^ { 2 } + 1", "\\frac { a } { b }"])]
FULLWIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})


def ocrbench(rng: random.Random, mix: Mix, k: int) -> list[dict]:
    dataset, qtype, answers = OCR[k % len(OCR)]
    gold = rng.choice(answers)
    near = rng.choice([gold, gold, gold.upper(), gold.lower(), perturb(rng, gold), gold.translate(FULLWIDTH),
                       gold.replace(" ", ""), gold.replace(" ", "\n"), rng.choice(WORDS)])
    styles = [lambda: near, lambda: f'The text in the image is "{near}".', lambda: f"**{near}**",
              lambda: f"{near}\nIt is printed in bold.", lambda: f" {near} ", lambda: f"${near}$",
              lambda: f"The answer is {near}.", lambda: "I cannot read the text.", lambda: near[: len(near) // 2]]
    doc = {"dataset": dataset, "question": "what is written in the image?", "question_type": qtype, "answer": answers}
    return [{"reply": mix.pick(styles)(), "doc": doc}]


def infovqa(rng: random.Random, mix: Mix, k: int) -> list[dict]:
    gold = rng.choice(WORDS + ["37%", "pinterest", "2,315", "Asia"])
    answers = [gold] + ([gold.lower()] if rng.random() < 0.3 else [])
    ans = gold if rng.random() < 0.65 else perturb(rng, gold)
    doc = {"questionId": str(k), "question": "What is shown?", "answers": answers}
    return [{"reply": wrap_answer(rng, mix, ans, "The infographic says so."), "doc": doc}]


def ai2d(rng: random.Random, mix: Mix, k: int) -> list[dict]:
    options = list(rng.choice(OPTIONS))[: rng.choice([4, 4, 3])]
    gold = rng.randrange(len(options))
    doc = {"question": "Which label fits the diagram?", "options": options, "answer": str(gold)}
    return [{"reply": letters(rng, mix, options, gold), "doc": doc}]


def mmbench(rng: random.Random, mix: Mix, k: int) -> list[dict]:
    """One question with every rotation of its options (index + r * 1e6); the model is consistent 70% of the
    time."""
    options = list(rng.choice(OPTIONS))[: rng.choice([2, 3, 4, 4])]
    gold_text = rng.choice(options)
    hint = rng.choice(["nan", "nan", "The picture was taken in summer."])
    category = rng.choice(["attribute_recognition", "image_scene", "ocr", "spatial_relationship"])
    consistent = rng.random() < 0.7
    style = mix.pick(LETTER_STYLES_MORE)
    rows = []
    for r in range(len(options)):
        rot = options[r:] + options[:r]
        gold = rot.index(gold_text)
        doc = {"index": k + r * 1_000_000, "question": "Which is correct?", "hint": hint, "answer": chr(65 + gold),
               "category": category, "L2-category": "perception", "source": "MMBench", "split": "dev",
               **{c: (rot[i] if i < len(rot) else "nan") for i, c in enumerate("ABCD")}}
        if consistent:
            pick = gold if rng.random() < 0.85 else rng.randrange(len(rot))
            other = (pick + 1) % len(rot)
            reply = style.format(L=chr(65 + pick), l=chr(97 + pick), O=chr(65 + other), T=rot[pick],
                                 t=rot[pick].lower(), t2=rot[other].lower())
        else:
            reply = letters(rng, mix, rot, gold)
        rows.append({"reply": reply, "doc": doc, "group": str(k)})
    return rows


MMSTAR_L2 = {"coarse perception": ["image scene and topic", "image emotion"], "math": ["geometry",
             "statistical reasoning"], "logical reasoning": ["diagram reasoning"]}


def mmstar(rng: random.Random, mix: Mix, k: int) -> list[dict]:
    options = list(rng.choice(OPTIONS))[:4]
    while len(options) < 4:
        options.append("none")
    gold = rng.randrange(4)
    category = rng.choice(sorted(MMSTAR_L2))
    q = "What is shown?\nOptions: " + ", ".join(f"{chr(65 + i)}: {o}" for i, o in enumerate(options))
    doc = {"index": k, "question": q, "answer": chr(65 + gold), "category": category,
           "l2_category": rng.choice(MMSTAR_L2[category])}
    return [{"reply": letters(rng, mix, options, gold), "doc": doc}]


def realworldqa(rng: random.Random, mix: Mix, k: int) -> list[dict]:
    if rng.random() < 0.6:
        options = list(rng.choice(OPTIONS))[:3]
        gold = rng.randrange(len(options))
        doc = {"question": "Which is it?\n" + "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(options)),
               "answer": chr(65 + gold)}
        return [{"reply": letters(rng, mix, options, gold), "doc": doc}]
    gold = rng.choice(["Downhill", "2", "0", "Left", "Yes", "3"])
    ans = rng.choice([gold, gold.lower(), f"{gold}.", {"2": "two", "3": "three", "0": "zero"}.get(gold, gold.upper()),
                      f"There are {gold}.", perturb(rng, gold), f" {gold} "])
    return [{"reply": ans, "doc": {"question": "How many lanes?", "answer": gold}}]


def mathvista(rng: random.Random, mix: Mix, k: int) -> list[dict]:
    kind = rng.choice(["mc", "mc", "int", "float", "float", "list"])
    doc = {"pid": str(k), "question": "Solve it.", "unit": None, "precision": None, "choices": None,
           "metadata": {"category": "math-targeted-vqa", "task": "geometry problem solving"}}
    if kind == "mc":
        options = rng.choice([["30", "45", "60", "90"], ["1.2", "1.3", "1.4"], ["yes", "no"],
                              ["triangle", "square", "circle", "pentagon", "hexagon"]])
        gold = rng.randrange(len(options))
        doc.update(choices=options, answer=options[gold], question_type="multi_choice", answer_type="text")
        pick = options[gold] if rng.random() < 0.6 else rng.choice(options)
        reply = rng.choice([pick, letters(rng, mix, options, gold), f"({chr(65 + options.index(pick))})",
                            f"The answer is {pick}.", pick.upper(), f" {pick}"])
    elif kind == "int":
        v = rng.choice([7, 12, 0, 3, 250])
        doc.update(answer=str(v), question_type="free_form", answer_type="integer")
        p = v if rng.random() < 0.6 else v + 1
        reply = rng.choice([str(p), f"{p}.0", f"{p} objects", f"The answer is {p}.", f" {p} ", f"+{p}", f"{p:,}"])
    elif kind == "float":
        prec = rng.choice([1.0, 2.0])
        v = rng.choice([3.5, 0.25, 12.75, 1.0, 2.33])
        gold = f"{round(v, int(prec))}"
        doc.update(answer=gold, question_type="free_form", answer_type="float", precision=prec, unit="cm")
        p = v if rng.random() < 0.6 else v + 0.1
        reply = rng.choice([f"{p}", f"{p:.2f}", f"{p:.3f}", f"{p} cm", f"The length is {p}.", f"{p:.1f}", "1e1"])
    else:
        doc.update(answer="[2007, 2008]", question_type="free_form", answer_type="list")
        reply = rng.choice(["[2007, 2008]", "[2007,2008]", "2007 and 2008", "[2006, 2007]",
                            "The years are [2007, 2008]."])
    doc["query"] = f"Hint: answer it.\nQuestion: {doc['question']}"
    return [{"reply": reply, "doc": doc}]


YES = ["Yes", "yes", "Yes, it is.", "Yes.", "The answer is yes.", "YES", "Yes, the left one is larger."]
NO = ["No", "no", "No, they are the same size.", "No.", "The answer is no.", "Not at all.", "Nope."]
UNSURE = ["I cannot tell from the image.", "It is unclear.", "Yesterday's chart shows no change.", ""]


def hallusionbench(rng: random.Random, mix: Mix, k: int) -> list[dict]:
    """One set: two figures (original, edited) x two questions, the answers flipping with the figure."""
    category, sub = rng.choice([("VD", "illusion"), ("VD", "math"), ("VS", "chart"), ("VS", "table")])
    rows = []
    for fig in ("0", "1"):
        for q in ("0", "1"):
            gt = str((int(fig) + int(q)) % 2)
            p = rng.random()
            pool = (YES if gt == "1" else NO) if p < 0.65 else (NO if gt == "1" else YES) if p < 0.9 else UNSURE
            doc = {"category": category, "subcategory": sub, "visual_input": "1" if fig == "0" else "2",
                   "set_id": str(k), "figure_id": fig, "question_id": q, "question": "Is it so?",
                   "gt_answer_details": "yes" if gt == "1" else "no", "gt_answer": gt}
            rows.append({"reply": rng.choice(pool), "doc": doc, "group": str(k)})
    return rows


def screenspot(rng: random.Random, mix: Mix, k: int) -> list[dict]:
    x1, y1 = rng.uniform(0, 0.8), rng.uniform(0, 0.8)
    box = [round(x1, 4), round(y1, 4), round(x1 + rng.uniform(0.02, 0.2), 4), round(y1 + rng.uniform(0.02, 0.1), 4)]
    inside = rng.random() < 0.6
    px = (box[0] + box[2]) / 2 if inside else rng.uniform(0, 1)
    py = (box[1] + box[3]) / 2 if inside else rng.uniform(0, 1)
    x, y = int(px * 1000), int(py * 1000)
    bx = [int(v * 1000) for v in box]
    styles = [lambda: f"[{x}, {y}]", lambda: f"({x},{y})", lambda: f'{{"point_2d": [{x}, {y}]}}',
              lambda: f'```json\n[{{"point_2d": [{x}, {y}], "label": "button"}}]\n```', lambda: f"x={x}, y={y}",
              lambda: f"<bbox>{bx[0]} {bx[1]} {bx[2]} {bx[3]}</bbox>", lambda: f"Click at {x} {y}.",
              lambda: f'{{"bbox_2d": [{bx[0]}, {bx[1]}, {bx[2]}, {bx[3]}]}}', lambda: f"[{px:.3f}, {py:.3f}]",
              lambda: f"The element is at ({x}, {y}) on the screen.", lambda: "I cannot find it.",
              lambda: f"{x / 10:.0f}%, {y / 10:.0f}%", lambda: f"[{x} {y}]"]
    doc = {"bbox": box, "instruction": "open settings", "data_type": rng.choice(["text", "icon"]),
           "data_source": rng.choice(["ios", "android", "windows", "macos", "web"])}
    return [{"reply": mix.pick(styles)(), "doc": doc}]


TASKS = {"ocrbench": ocrbench, "infovqa_val": infovqa, "ai2d_test": ai2d, "mmbench_en_dev": mmbench,
         "mmstar": mmstar, "realworldqa": realworldqa, "mathvista_testmini": mathvista,
         "hallusionbench": hallusionbench, "screenspot_v2": screenspot}


def build() -> list[dict]:
    rows = []
    for split, n in PER_TASK.items():
        rng = random.Random(SEEDS[split])
        mix = Mix(rng, split)
        for task, make in TASKS.items():
            count, k = 0, 0
            while count < n:
                for item in make(rng, mix, k):
                    row = thinking(rng, item)
                    rows.append({"id": f"{split}/{task}/{count}", "task": task, "split": split,
                                 "group": item.get("group"), "reply": row["reply"], "thinking": row["thinking"],
                                 "doc": item["doc"]})
                    count += 1
                k += 1
    return rows


def main() -> None:
    rows = build()
    write_corpus(rows, OUT)


if __name__ == "__main__":
    main()
