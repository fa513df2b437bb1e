"""What a page shows of one sample record: its status (correct, wrong, parse failure, error), prompt text, reply,
extracted answer, target and scores, and its media with the overlays its answer shape calls for. Shapes are
read from the data, not the task name: a target with a pixel `bbox` gets boxes drawn on the first image; a
video sample whose target is a [start, end] span gets a timeline; any other video gets a strip of frames."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qwen3vl_eval.eval.sample_log import has_field, read_field
from qwen3vl_eval.report.html.media import TIMELINE_FRAMES, Clip, MediaStore, SampleMedia, Thumb

CORRECT_AT = 0.5  # a sample is correct when its primary metric's per-sample value is at least this
TIMELINE_WIDTH = 280  # pixels


def _numbers(v: Any, n: int) -> list[float] | None:
    if isinstance(v, (list, tuple)) and len(v) == n and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
        return [float(x) for x in v]
    return None


def primary_value(rec: dict, metric: str) -> float | None:
    """The per-sample value of `metric` in a record: through the metric's definition (a threshold metric such
    as acc@0.5 gives 0 or 1), else a score of that name."""
    from qwen3vl_eval.eval.metrics import METRICS

    scores = rec.get("scores") if isinstance(rec.get("scores"), dict) else None
    if scores is None:
        return None
    if metric in METRICS and METRICS[metric].key in scores:
        return METRICS[metric].sample_value(scores)
    v = scores.get(metric)
    return float(v) if isinstance(v, (int, float)) else None


def status(rec: dict, metric: str) -> str:
    """correct, wrong, parse_failure or error (see `CORRECT_AT`)."""
    if rec.get("error"):
        return "error"
    if not rec.get("parsed", read_field(rec, "parsed_prediction") is not None):
        return "parse_failure"
    v = primary_value(rec, metric)
    return "correct" if v is not None and v >= CORRECT_AT else "wrong"


@dataclass
class Boxes:
    """Boxes in the pixels of the image `thumb` shows (SVG user units), drawn at the thumbnail's size."""

    thumb: Thumb
    target: list[float] | None
    pred: list[float] | None


@dataclass
class Span:
    kind: str  # target or pred
    start: float
    end: float
    x: float
    width: float


@dataclass
class Timeline:
    """A [0, axis] seconds timeline `TIMELINE_WIDTH` pixels wide: the spans, a tick per sampled frame, and the
    clip whose frames are shown under it."""

    axis: float
    spans: list[Span]
    ticks: list[float]
    clip: Clip
    width: int = TIMELINE_WIDTH

    def x(self, seconds: float) -> float:
        return round(max(0.0, seconds) / self.axis * self.width, 2)


@dataclass
class Row:
    id: str
    status: str
    prompt: str
    prediction: Any
    extracted: Any
    target: Any
    scores: list[tuple[str, Any]]
    error: str | None
    media: SampleMedia
    reasoning: str | None = None
    extracted_flexible: Any = None
    has_flexible: bool = False
    meta: dict = field(default_factory=dict)
    boxes: Boxes | None = None
    timeline: Timeline | None = None

    def srcs(self) -> set[str]:
        return self.media.srcs()


def _timeline(clip: Clip, target: list[float], pred: list[float] | None) -> Timeline:
    ends = [clip.duration, target[1]] + ([pred[1]] if pred else [])
    axis = max(e for e in ends if math.isfinite(e)) or 1.0
    tl = Timeline(axis, [], clip.sampled, clip)
    for kind, span in (("target", target), ("pred", pred)):
        if span:
            a, b = sorted(span)
            tl.spans.append(Span(kind, a, b, tl.x(a), max(1.0, tl.x(b) - tl.x(a))))
    tl.ticks = [tl.x(t) for t in clip.sampled]
    return tl


def prompt_text(sample: Any, spec: Any) -> str:
    """The text the model was asked, as the task's prompt template writes it."""
    if sample is None:
        return ""
    if spec is not None:
        from qwen3vl_eval.eval.prompts import PROMPTS

        if spec.prompt in PROMPTS:
            return PROMPTS[spec.prompt].text(sample)
    return sample.question


def build_row(store: MediaStore, rec: dict, sample: Any, spec: Any, metric: str) -> Row:
    """The view of one record (and its sample, when the task data is at hand)."""
    target = rec.get("target", getattr(sample, "target", None))
    video_span = bool(sample is not None and sample.videos and _numbers(target, 2))
    media = store.sample_media(sample, spec, TIMELINE_FRAMES if video_span else None)
    scores = rec.get("scores") if isinstance(rec.get("scores"), dict) else {}
    row = Row(id=str(rec.get("id")), status=status(rec, metric), prompt=prompt_text(sample, spec),
              prediction=rec.get("prediction"), extracted=read_field(rec, "parsed_prediction"), target=target,
              scores=list(scores.items()), error=rec.get("error"), media=media, reasoning=rec.get("reasoning"),
              extracted_flexible=read_field(rec, "parsed_prediction_flexible"),
              has_flexible=has_field(rec, "parsed_prediction_flexible"),
              meta=rec.get("meta") if isinstance(rec.get("meta"), dict) else {})
    box = _numbers(target.get("bbox"), 4) if isinstance(target, dict) else None
    if box and media.images:
        row.boxes = Boxes(media.images[0], box, _numbers(read_field(rec, "parsed_prediction"), 4))
    if video_span and media.clips:
        row.timeline = _timeline(media.clips[0], _numbers(target, 2),
                                 _numbers(read_field(rec, "parsed_prediction"), 2))
    return row
