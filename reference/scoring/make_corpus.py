"""Build the reply corpus that pins our headline metrics to the reference scorers.

Writes `tests/data/reference_scoring/corpus.jsonl`: realistic Qwen3-VL-style replies over the nine tasks, each
line `{"id", "task", "split", "reply", "thinking", "target", ...task fields}`. Two parts, drawn with different
seeds and style mixes: `tune` (what the headline rules were checked against while writing them) and `heldout`
(never looked at while tuning; its agreement is reported separately). Pure standard library; run from the
repository root with any Python:

    python3 reference/scoring/make_corpus.py

Then `run_reference.py` (in the reference venv) scores every reply with the real reference code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "reference_scoring" / "corpus.jsonl"
PER_TASK = {"tune": 200, "heldout": 50}
SEEDS = {"tune": 13, "heldout": 2027}

WORDS = ["invoice", "total", "Smith & Co.", "March 3, 1998", "R.J. Reynolds", "Tobacco Institute", "confidential",
         "Dr. Alan Brown", "Philip Morris", "$1,250.00", "2,315", "Page 4", "ITC", "Brand A", "Winston-Salem",
         "12/05/1987", "ext. 4412", "Q3 report", "St. Louis", "none", "two", "the memo", "N/A", "45%", "a.m."]
ENTITIES = ["Canada", "United States", "Germany", "Yes", "No", "Blue", "2015", "Apple", "Asia Pacific", "Online",
            "Female", "Men", "Retail", "Mobile"]
OPTIONS = [["dog", "cat", "horse", "rabbit"], ["increase", "decrease", "no change", "cannot be determined"],
           ["10 N", "20 N", "30 N", "40 N"], ["Mitochondria", "Nucleus", "Ribosome", "Golgi apparatus"],
           ["$1,200", "$1,500", "$1,800", "$2,100"], ["red", "green", "blue", "yellow", "black"],
           ["Paris", "Rome", "Madrid", "Berlin", "Vienna", "Prague"], ["0.25", "0.5", "0.75", "1.0"],
           ["A man riding a bike", "A woman cooking", "Two kids playing", "A dog running"],
           ["clockwise", "counterclockwise", "it stays still", "it flips over"]]
OPEN_GOLDS = ["24", "3.5", "1,000", "2.5e-3", "0.75", "-12", "1200", "photosynthesis", "Renaissance", "45",
              "['24', '24.0']", "12.50", "x = 2", "100%", "7", "cortex", "1.25", "600"]
THINK = ["Let me look at the image carefully. The question asks about {q}. I see several values: 12, 30 and 2.5.",
         "Okay, first I need to read the chart. The bars show 15, 22 and 40. Hmm, option A seems wrong because it "
         "ignores the trend.", "The user wants the answer. Let me think step by step.\nStep 1: identify the "
         "objects.\nStep 2: compare them. So the answer is probably (C)... wait, let me re-check."]


class Mix:
    """Weighted choice of reply styles; the held-out part uses other weights and extra styles."""

    def __init__(self, rng: random.Random, split: str):
        self.rng, self.split = rng, split

    def pick(self, styles: list) -> object:
        if self.split == "heldout":  # reversed weighting: the rare styles become common
            weights = [1 + i for i in range(len(styles))]
        else:
            weights = [len(styles) - i for i in range(len(styles))]
        return self.rng.choices(styles, weights=weights)[0]


def wrap_answer(rng: random.Random, mix: Mix, ans: str, explain: str = "") -> str:
    styles = [
        lambda: ans, lambda: ans + ".", lambda: f"Answer: {ans}", lambda: f"**{ans}**", lambda: f'"{ans}"',
        lambda: ans.lower(), lambda: f"The answer is {ans}.", lambda: f"{ans}\n\n{explain or 'It is written there.'}",
        lambda: f" {ans} ", lambda: f"Final answer: **{ans}**", lambda: f"'{ans}'", lambda: ans.upper(),
        lambda: f"{explain or 'Looking at the document,'} the answer is {ans}.", lambda: f"`{ans}`",
        lambda: f"Answer:\n{ans}", lambda: f"The final answer is: {ans}",
    ]
    return mix.pick(styles)()


def perturb(rng: random.Random, s: str) -> str:
    """A near miss: a typo, a dropped word, a different value."""
    k = rng.randrange(4)
    if k == 0 and len(s) > 3:
        i = rng.randrange(len(s))
        return s[:i] + rng.choice("aeiorst") + s[i + 1 :]
    if k == 1 and " " in s:
        return s.split(" ", 1)[1]
    if k == 2:
        return s + " " + rng.choice(["Inc.", "only", "total", "(approx.)"])
    return rng.choice(WORDS)


def docvqa(rng: random.Random, mix: Mix) -> dict:
    gold = rng.choice(WORDS)
    answers = [gold] + ([gold.lower()] if rng.random() < 0.3 else []) + ([perturb(rng, gold)] if rng.random() < .2
                                                                        else [])
    ans = gold if rng.random() < 0.65 else perturb(rng, gold)
    return {"reply": wrap_answer(rng, mix, ans, "The header of the page shows it."), "target": answers}


def textvqa(rng: random.Random, mix: Mix) -> dict:
    gold = rng.choice(["stop", "coca-cola", "2", "nike", "the beatles", "yes", "12:30", "red bull", "3", "exit",
                       "samsung", "new york", "one way", "10", "dell"])
    variants = {"2": "two", "3": "three", "10": "ten", "the beatles": "beatles", "coca-cola": "coca cola",
                "12:30": "12.30", "one way": "one-way"}
    pool = [gold] * 6 + [variants.get(gold, gold.upper())] * 2 + [rng.choice(["unanswerable", "sign", "logo"])] * 2
    rng.shuffle(pool)
    ans = rng.choice([gold, gold, variants.get(gold, gold), gold.title(), perturb(rng, gold), f"a {gold}"])
    return {"reply": wrap_answer(rng, mix, ans, "The text on the sign reads so."), "target": pool}


def chartqa(rng: random.Random, mix: Mix) -> dict:
    if rng.random() < 0.65:
        v = rng.choice([42, 3.5, 17, 1234, 0.82, 56.4, 7, 2019, 105, 12.25, 0, 61])
        gold = rng.choice([str(v), f"{v}%"]) if rng.random() < 0.2 else str(v)
        near = v * rng.choice([1, 1, 1.03, 0.97, 1.08, 1.5])
        form = mix.pick([lambda x: f"{x:g}", lambda x: f"{x:,.2f}", lambda x: f"{x:g}%", lambda x: f"${x:g}",
                         lambda x: f"{x:g} million", lambda x: f"about {x:g}", lambda x: f"{x:.1e}",
                         lambda x: f"{x:g}.", lambda x: f"{x:,.0f}", lambda x: f"The value is {x:g}."])
        ans = form(near)
    else:
        gold = rng.choice(ENTITIES)
        ans = rng.choice([gold, gold.lower(), gold, perturb(rng, gold), rng.choice(ENTITIES)])
    reply = ans if rng.random() < 0.6 else wrap_answer(rng, mix, ans, "The tallest bar shows it.")
    return {"reply": reply, "target": gold, "type": rng.choice(["human_test", "augmented_test"])}


LETTER_STYLES = [
    "{L}", "({L})", "{L}.", "The answer is ({L}).", "Answer: {L}", "{l}", "{L}. {T}", "{T}", "**{L}**",
    "The correct answer is {L}.", "{L}\n\nOption {O} is wrong because it ignores the {t2}.", "{L} or {O}",
    "I think the answer is {L}, not {O}.", "The answer is not {O}; it is {L}.", "Answer: ({l})",
    "Based on the image, the {t} is shown, so the answer is {L}.", "Option {L}: {T}", "{L})",
    "It could be {O} or {L}; the best answer is {L}.", "I cannot determine the answer from the image.",
    "None of the options fit exactly.", "{L} {T}", "The best answer is: {L}", "Looking at each option: A is "
    "unlikely, B is possible, C is unlikely. Therefore {L}.", "{L}: {T}", "my answer is {L}",
]


def letter_reply(rng: random.Random, mix: Mix, options: list[str], gold: int) -> str:
    n = len(options)
    pick = gold if rng.random() < 0.6 else rng.randrange(n)
    other = rng.choice([i for i in range(n) if i != pick])
    letter, o = chr(65 + pick), chr(65 + other)
    style = mix.pick(LETTER_STYLES)
    return style.format(L=letter, l=letter.lower(), O=o, T=options[pick], t=options[pick].lower(),
                        t2=options[other].lower())


def mmmu(rng: random.Random, mix: Mix) -> dict:
    if rng.random() < 0.75:
        options = rng.choice(OPTIONS)
        gold = rng.randrange(len(options))
        return {"reply": letter_reply(rng, mix, options, gold), "target": chr(65 + gold), "choices": options,
                "question_type": "multiple-choice"}
    gold = rng.choice(OPEN_GOLDS)
    g = gold.strip("[]'").split("'")[0]
    wrong = rng.choice(["48", "12", "3", "0.5", "mitosis", "1.0e-3", "(1,2)", "99"])
    styles = [
        lambda: g, lambda: f"The answer is {g}.", lambda: f"{g} seconds", lambda: f"24 * 2 = 48, so {wrong}",
        lambda: f"Therefore, the result is {g}", lambda: wrong, lambda: f"The answer is not {g}, it is {wrong}.",
        lambda: f"x = {g}", lambda: f"Answer: {g}\nBecause the area doubles.", lambda: f"approximately {g}",
        lambda: f"**{g}**", lambda: f"The value is (1,2) and {g}", lambda: f"{float(g.replace(',', '')):.3g}"
        if g.replace(",", "").replace(".", "").replace("-", "").replace("e", "").isdigit() else g.upper(),
        lambda: f"So the final answer is {g}.", lambda: f"It is {wrong}. Thus {g}",
    ]
    return {"reply": mix.pick(styles)(), "target": gold, "choices": [], "question_type": "open"}


def mcq(rng: random.Random, mix: Mix) -> dict:
    options = [o for o in rng.choice(OPTIONS)][:4]
    while len(options) < 4:
        options.append(rng.choice(ENTITIES))
    gold = rng.randrange(4)
    return {"reply": letter_reply(rng, mix, options, gold), "target": chr(65 + gold), "choices": options}


def charades(rng: random.Random, mix: Mix) -> dict:
    a = round(rng.uniform(0, 25), 1)
    b = round(a + rng.uniform(1.5, 12), 1)
    gt = [a, b]
    if rng.random() < 0.4:  # a prediction off by a bit
        a, b = round(a + rng.uniform(-3, 3), 1), round(b + rng.uniform(-3, 3), 1)
    a, b = max(a, 0.0), max(b, 0.0)
    styles = [
        lambda: f"The event happens in {a} - {b} seconds.", lambda: f"{a}-{b}", lambda: f"from {a} to {b} seconds",
        lambda: f"between {a} and {b} seconds", lambda: f"The event starts at {a}s and ends at {b}s.",
        lambda: f"{a} - {b}", lambda: f"00:{int(a):02d} - 00:{int(b):02d}",
        lambda: f"The video is 30 seconds long. The event happens at {a} and {b}.",
        lambda: f"The video is 30 seconds long, starting at {a} and ending at {b}.",
        lambda: f"It starts at {a}.", lambda: f"Start time: {a}\nEnd time: {b}", lambda: f"{a} to {b}",
        lambda: f"The person takes the towel from {a} to {b} seconds.", lambda: f"[{a}, {b}]",
        lambda: f"The event happens in {b} - {a} seconds.", lambda: f"At around {a} seconds until {b} seconds.",
        lambda: f"0:{int(a):02d}.5 to 0:{int(b):02d}", lambda: "I cannot find this event in the video.",
        lambda: f"The event happens in the {a} - {b} seonds.",
    ]
    return {"reply": mix.pick(styles)(), "target": gt}


def gsm8k(rng: random.Random, mix: Mix) -> dict:
    v = rng.choice([72, 10, 5, 42, 1080, 18, 3, 624, 15, 0, -4, 2500, 7, 36, 12])
    ans = f"Natalia sold {v} clips in May.\n#### {v:,}"
    p = v if rng.random() < 0.6 else v + rng.choice([1, -1, 10, 100])
    steps = f"First, 48 / 2 = 24. Then 24 + 48 = {p + 3}. Subtract 3 to get {p}."
    styles = [
        lambda: f"{steps}\n#### {p}", lambda: f"{steps}\nThe answer is {p}.", lambda: f"{steps}\n#### {p:,}",
        lambda: f"{steps}\n#### ${p}", lambda: f"{steps} So the answer is **{p}**.", lambda: f"{steps}\n#### {p}.00",
        lambda: f"{steps}\n#### {p}.", lambda: f"{steps}\nFinal answer: ${p:,}", lambda: f"#### {p}\n{steps}",
        lambda: f"{steps}\nThe total is {p} dollars.", lambda: f"{steps}\n####{p}", lambda: f"{steps}\n#### {p} clips",
        lambda: f"{steps}\nAnswer: {p}.0", lambda: steps, lambda: f"{steps}\n#### {p}\nI hope this helps (step 3).",
    ]
    return {"reply": mix.pick(styles)(), "target": ans}


def refcoco(rng: random.Random, mix: Mix) -> dict:
    w, h = rng.choice([(640, 480), (500, 375), (427, 640), (612, 612), (640, 427)])
    x1, y1 = rng.uniform(0, w * 0.6), rng.uniform(0, h * 0.6)
    x2, y2 = x1 + rng.uniform(20, w - x1), y1 + rng.uniform(20, h - y1)
    gt = [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)]
    jit = rng.choice([0, 0, 5, 30, 150])
    rel = [int(round(min(1000, max(0, v / s * 1000 + rng.uniform(-jit, jit)))))
           for v, s in zip(gt, (w, h, w, h))]
    a, b, c, d = rel
    other = [max(0, a - 200), max(0, b - 100), max(0, c - 300), max(0, d - 50)]
    styles = [
        lambda: f'```json\n[\n\t{{"bbox_2d": [{a}, {b}, {c}, {d}], "label": "the man"}}\n]\n```',
        lambda: f'[{{"bbox_2d": [{a}, {b}, {c}, {d}]}}]', lambda: f"[{a}, {b}, {c}, {d}]",
        lambda: f'```json\n[{{"bbox_2d": {other}, "label": "a"}}, {{"bbox_2d": [{a}, {b}, {c}, {d}], "label": "b"}}]'
                f'\n```',
        lambda: f"<|box_start|>({a},{b}),({c},{d})<|box_end|>", lambda: f"({a},{b}),({c},{d})",
        lambda: f"The object is at [{a}, {b}, {c}, {d}].", lambda: f'{{"bbox_2d": [{c}, {d}, {a}, {b}]}}',
        lambda: f'```json\n[{{"bbox_2d": [{a}, {b}, {c + 400}, {d}]}}]\n```',
        lambda: f'{{"bbox": [{a / 1000:.3f}, {b / 1000:.3f}, {c / 1000:.3f}, {d / 1000:.3f}]}}',
        lambda: f"{a} {b} {c} {d}", lambda: "I don't see such an object.",
        lambda: f'```json\n[{{"bbox_2d": [{a}, {b}, {c}, {d}], "label": "cut',
        lambda: f"<|object_ref_start|>the man<|object_ref_end|><|box_start|>({a},{b}),({c},{d})<|box_end|>",
    ]
    return {"reply": mix.pick(styles)(), "target": {"bbox": gt, "width": w, "height": h}}


TASKS = {"docvqa_val": docvqa, "chartqa_test": chartqa, "textvqa_val": textvqa, "mmmu_val": mmmu,
         "videomme": mcq, "charades_sta": charades, "gsm8k": gsm8k, "mmlu": mcq, "refcoco_val": refcoco}


def thinking(rng: random.Random, row: dict) -> dict:
    """About 1 in 8 replies come from a Thinking checkpoint (reasoning, `</think>`, answer); 1 in 4 of those
    were cut off before `</think>`."""
    if rng.random() >= 0.125:
        return {**row, "thinking": False}
    reasoning = rng.choice(THINK).format(q="the object")
    if rng.random() < 0.25:
        return {**row, "reply": reasoning, "thinking": True}
    return {**row, "reply": f"{reasoning}\n</think>\n\n{row['reply']}", "thinking": True}


def build() -> list[dict]:
    rows = []
    for split, n in PER_TASK.items():
        rng = random.Random(SEEDS[split])
        mix = Mix(rng, split)
        for task, make in TASKS.items():
            for i in range(n):
                row = thinking(rng, make(rng, mix))
                rows.append({"id": f"{split}/{task}/{i}", "task": task, "split": split, **row})
    return rows


def write_corpus(rows: list[dict], out: Path) -> None:
    """The replies as JSONL at `out` (one line per reply, UTF-8)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{out}: {len(rows)} replies")


def main() -> None:
    rows = build()
    write_corpus(rows, OUT)


if __name__ == "__main__":
    main()
