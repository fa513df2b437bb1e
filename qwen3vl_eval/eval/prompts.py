"""Named, versioned prompt templates: Sample -> chat messages (CONTRACTS section 4 format).

Templates are format strings over the sample's fields: `{question}`, `{options}` (one "A. text" line per
choice), `{options_paren}` (one "(A) text" line per choice) and `{Question}` (the question capitalised, as
lmms-eval does for TextVQA). Visuals come first, then the text, as Qwen3-VL's evaluation scripts do. Sources
are listed in `harness_anchors.md` (VLMEvalKit's `qwen3_vl/prompt.py`, lmms-eval task YAML, the Qwen3-VL
cookbooks). Bump a version whenever the text changes: results record each prompt's name, version and hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from qwen3vl_eval.eval.parsers import LETTERS


@dataclass(frozen=True)
class Prompt:
    """A template for samples with choices (`template`) and, optionally, for open ones (`open_template`)."""

    name: str
    version: int
    template: str
    open_template: str | None = None

    def text(self, sample: Any) -> str:
        tpl = self.open_template if (self.open_template and not sample.choices) else self.template
        options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(sample.choices))
        paren = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(sample.choices))
        q = sample.question
        return tpl.format(question=q, Question=q[:1].upper() + q[1:], options=options, options_paren=paren)

    @property
    def hash(self) -> str:
        blob = json.dumps([self.name, self.version, self.template, self.open_template])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_LETTER_DIRECTLY = "Answer with the option's letter from the given choices directly."
PROMPTS: dict[str, Prompt] = {
    p.name: p
    for p in [
        # lmms-eval docvqa/textvqa default; VLMEvalKit Qwen3-VL VQA prompts are of the same kind.
        Prompt("vqa_short", 1, "{question}\nAnswer the question using a single word or phrase."),
        Prompt("textvqa_short", 1, "{Question}\nAnswer the question using a single word or phrase."),
        # lmms-eval chartqa.
        Prompt("chartqa_short", 1, "{question}\nAnswer the question with a single word."),
        # VLMEvalKit qwen3_vl/prompt.py MCQ (also lmms-eval's videomme `format: qwen3_vl`).
        Prompt("mcq_qwen3vl", 1, "Question: {question}\nOptions:\n{options}\nAnswer with the option letter only."),
        # lmms-eval mmmu_val_qwen: MC as above; open questions as a short answer.
        Prompt("mmmu_qwen3vl", 1, "Question: {question}\nOptions:\n{options}\nAnswer with the option letter only.",
               open_template="Question: {question}\nAnswer the question using a single word or phrase."),
        # lmms-eval 0.7.3 video tasks, default kwargs (issue #16): mvbench, longvideobench_val_v, mlvu_dev, lvbench.
        # MLVU's and LVBench's questions carry their options inline ("(A) ..." lines).
        Prompt("mvbench_lmms", 1, "Question:{question}\nOption:\n{options_paren}\nOnly give the best option.\n"),
        Prompt("longvideobench_lmms", 1,
               "{question}\n{options}\nAnswer with the option's letter from the given choices directly.\n"),
        Prompt("mlvu_lmms", 1, "{question}\nOnly give the best option.\nBest option: ("),
        Prompt("lvbench_lmms", 1, "{question}\nAnswer the question with the option letter"),
        # lmms-eval timelens_* (the official Charades-STA prompt is not public).
        Prompt("tvg_timelens", 1,
               "Please find the visual event described by the sentence '{question}', determining its starting "
               "and ending times. The format should be: 'The event happens in <start time> - <end time> "
               "seconds'."),
        # lmms-eval refcoco_grounding (PR #1373), Qwen3-VL JSON boxes on the 0-1000 scale.
        Prompt("rec_qwen3vl", 1,
               'Locate every object that matches the description "{question}" in the image. '
               "Report bbox coordinates in JSON format."),
        # Issue #16 image tasks, lmms-eval 0.7.3's texts: ocrbench / realworldqa / hallusion_bench / mathvista
        # format-prompt (`plain`: the adapter builds MathVista's query), ai2d, mmbench_en (the adapter writes hint,
        # question and options), mmstar's qwen3_vl kwargs (no newline before the instruction, as there), and
        # screenspot_v2's instruction asking for Qwen3-VL's 0-1000 scale instead of fractions.
        Prompt("plain", 1, "{question}"),
        Prompt("ai2d_mcq", 1, "{question}\n{options}\n" + _LETTER_DIRECTLY),
        Prompt("mmbench_letter", 1, "{question}\n" + _LETTER_DIRECTLY),
        Prompt("mmstar_qwen3vl", 1, "Question: {question}Answer with the option letter only."),
        Prompt("screenspot_point_1000", 1, "Identify the UI element for the instruction and output exactly one click "
               "point as [x, y], with x and y on a 0-1000 scale of the image width and height. Do not output a "
               "bounding box.\nInstruction: {question}"),
        # Zero-shot chain of thought with the GSM8K "#### n" final line (lm-eval strict-match target).
        Prompt("gsm8k_cot", 1,
               "Question: {question}\nSolve the problem step by step. On the last line, write the final answer "
               'as "#### <number>".'),
    ]
}


def build_messages(prompt: Prompt, sample: Any, images: list, media: dict[str, dict] | None = None) -> list[dict]:
    """One user turn: the (opened) images, then the sample's videos, each with the task's per-item options
    (`media: {image: {...}, video: {...}}`), then the text."""
    media = media or {}
    content: list[dict] = []
    for img in images:
        content.append({"type": "image", "image": img, **media.get("image", {})})
    for vid in sample.videos:
        content.append({"type": "video", "video": str(vid), **media.get("video", {})})
    content.append({"type": "text", "text": prompt.text(sample)})
    return [{"role": "user", "content": content}]
