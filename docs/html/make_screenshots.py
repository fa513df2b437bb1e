"""Regenerate the screenshots of the HTML pages in this folder (needs headless Chromium: apt-get install chromium).

Scores made-up replies for the smoke suite (some right, some wrong, some unparseable) as two runs with `score`,
writes their index pages and a comparison, screenshots them in Chromium and saves small palette PNGs here:

    PYTHONPATH=. python docs/html/make_screenshots.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from _browser import screenshot  # noqa: E402
from helpers import oracle_prediction  # noqa: E402

from qwen3vl_eval.eval.data import load_samples  # noqa: E402
from qwen3vl_eval.eval.task import load_registry  # noqa: E402
from qwen3vl_eval.report.html import write_index  # noqa: E402

TASKS = ["synth_imageqa", "synth_videoqa", "synth_temporal_grounding", "synth_grounding", "synth_text"]
OUT = Path(__file__).resolve().parent


def reply(task: str, sample, k: int, shift: int) -> str:
    """Right for most samples; wrong, unparseable or off by a little for some (which ones depends on `shift`)."""
    spec = load_registry()[task]
    right = oracle_prediction(spec.scorer, sample.target)
    kind = (k + shift) % 4
    if kind != 1:
        return right if kind != 2 else "I cannot tell from this <image>."
    if task == "synth_grounding":
        x1, y1, x2, y2 = sample.target["bbox"]
        return json.dumps([{"bbox_2d": [x1 * 5 + 150, y1 * 10 + 120, x2 * 5 + 150, y2 * 10 + 100], "label": "box"}])
    if task == "synth_temporal_grounding":
        a, b = sample.target
        return f"The event happens in {a + 1.5} - {b + 2.0} seconds."
    return {"synth_imageqa": "purple", "synth_videoqa": "D", "synth_text": "B"}[task]


def make_run(folder: Path, shift: int) -> None:
    for task in TASKS:
        samples = load_samples(load_registry()[task])
        preds = folder / f"{task}.jsonl"
        preds.parent.mkdir(parents=True, exist_ok=True)
        preds.write_text("".join(json.dumps({"id": s.id, "prediction": reply(task, s, k, shift)}) + "\n"
                                 for k, s in enumerate(samples)))
        subprocess.run([sys.executable, "-m", "qwen3vl_eval", "score", "--task", task, "--predictions",
                        str(preds.relative_to(folder.parent)), "--output", str(folder / task)], check=True,
                       cwd=folder.parent, stdout=subprocess.DEVNULL)
    write_index(folder)


def save(page: Path, name: str, height: int, width: int = 1280, scale: float = 0.75) -> None:
    shot = screenshot(page, OUT / f"{name}.full.png", width, height)
    (OUT / f"{name}.full.png").unlink()
    small = shot.resize((round(shot.width * scale), round(shot.height * scale)), Image.Resampling.LANCZOS)
    palette = small.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(OUT / f"{name}.png", optimize=True)
    print(f"{name}.png {(OUT / f'{name}.png').stat().st_size / 1024:.0f} KB")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ.setdefault("QWEN3VL_EVAL_CACHE", str(work / "cache"))
        make_run(work / "baseline", shift=3)
        make_run(work / "candidate", shift=0)
        subprocess.run([sys.executable, "-m", "qwen3vl_eval", "compare", "baseline", "candidate", "--no-charts",
                        "--resamples", "2000", "--max-drop", "5", "-o", "comparison"], cwd=work,
                       stdout=subprocess.DEVNULL)
        save(work / "candidate" / "synth_grounding" / "report.html", "task-grounding", 1150)
        save(work / "candidate" / "synth_temporal_grounding" / "report.html", "task-temporal", 1000)
        save(work / "candidate" / "index.html", "index", 640)
        save(work / "comparison" / "compare.html", "compare", 2200, scale=0.6)


if __name__ == "__main__":
    main()
