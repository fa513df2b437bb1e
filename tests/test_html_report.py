"""HTML pages: report.html per task and index.html from `run` (the smoke suite on the tiny checkpoint) and `score`,
compare.html from `compare`; structure and escaping read back with the stdlib HTML parser, and boxes and timelines
checked in headless Chromium screenshots (skipped, saying why, where Chromium is absent)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _browser import INSTALL, chromium, components, extent, screenshot
from helpers import oracle_prediction, write_preds
from PIL import Image
from typer.testing import CliRunner

from qwen3vl_eval.cli import app
from qwen3vl_eval.eval.data import load_samples
from qwen3vl_eval.eval.results import score_predictions
from qwen3vl_eval.eval.task import load_registry
from qwen3vl_eval.report.html import write_task_page
from qwen3vl_eval.report.html.media import MAX_SIDE
from qwen3vl_eval.report.html.views import TIMELINE_WIDTH

REGISTRY = load_registry()
SMOKE = ["synth_imageqa", "synth_videoqa", "synth_temporal_grounding", "synth_grounding", "synth_text"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
TARGET, PRED = "#00d084", "#ff2bd6"
HOSTILE = ['<script>alert("reply")</script>', '"><img src=x onerror=alert(1)>', "</pre><b>bold</b> & more"]
needs_chromium = pytest.mark.skipif(chromium() is None, reason=f"headless Chromium is not installed: {INSTALL}")


# ------------------------------------------------------------------------------------------------ reading pages
class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent, self.children, self.parts = tag, attrs, parent, [], []

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text for p in self.parts)

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        out = []
        for c in self.children:
            if (tag is None or c.tag == tag) and (cls is None or cls in c.attrs.get("class", "").split()) and all(
                    c.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                out.append(c)
            out += c.find(tag, cls, **attrs)
        return out


class Dom(HTMLParser):
    """A tree of the page; fails on a closing tag that closes nothing (the page's own markup must nest)."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", {}, None)
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        self.cur.parts.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        self.cur.parts.append(node)

    def handle_endtag(self, tag):
        assert self.cur.tag == tag, f"</{tag}> closes <{self.cur.tag}>"
        self.cur = self.cur.parent

    def handle_data(self, data):
        self.cur.parts.append(data)


def page(path: Path) -> Node:
    dom = Dom(path.read_text(encoding="utf-8"))
    assert dom.cur is dom.root, f"{path}: <{dom.cur.tag}> left open"
    return dom.root


def check_self_contained(root: Node, folder: Path) -> None:
    """At most one inline script, one style; every src/href a local file or an anchor; thumbnails capped JPEGs."""
    scripts = root.find("script")  # the sample table's filter (a compare page has none)
    assert len(scripts) <= 1 and all("src" not in s.attrs for s in scripts)
    assert len(root.find("style")) == 1 and not root.find("link")
    for node in root.find():
        for key in ("src", "href"):
            ref = node.attrs.get(key)
            if ref is None:
                continue
            assert not re.match(r"^[a-z]+:", ref), f"{key}={ref} leaves the folder"
            if not ref.startswith("#"):
                assert (folder / ref).is_file(), f"{key}={ref} missing"
            if ref.startswith("media/"):
                with Image.open(folder / ref) as im:
                    assert im.format == "JPEG" and max(im.size) <= MAX_SIDE, (ref, im.format, im.size)


def stated_html_kb(root: Node) -> str:
    weight = root.find(id="weight")[0].text
    return re.search(r"\(([\d.]+) KB HTML", weight).group(1)


def score(task: str, preds: dict[str, str], out: Path, *extra: str) -> CliRunner:
    r = CliRunner().invoke(app, ["score", "--task", task, "--predictions", str(write_preds(out.with_suffix(".jsonl"),
                                                                                              preds)),
                                 "--output", str(out), *extra])
    assert r.exit_code == 0, r.output
    return r


def oracle(task: str) -> dict[str, str]:
    spec = REGISTRY[task]
    return {s.id: oracle_prediction(spec.scorer, s.target) for s in load_samples(spec)}


# ------------------------------------------------------------------------------------------------ run: the smoke suite
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "run"
    r = CliRunner().invoke(app, ["run", "--task", "smoke", "--model", "tiny", "--limit", "2", "--batch-size", "2",
                                 "--max-new-tokens", "4", "--device", "cpu", "--output", str(out)])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_run_writes_a_page_per_task_and_an_index(smoke_run):
    out, console = smoke_run
    index = page(out / "index.html")
    check_self_contained_index(index, out)
    links = {a.attrs["href"] for a in index.find("a")}
    for task in SMOKE:
        assert f"{task}/report.html" in links
        folder = out / task
        results = json.loads((folder / "results.json").read_text())
        root = page(folder / "report.html")
        check_self_contained(root, folder)
        assert root.find("h1")[0].text == task
        names = [r.find("td")[0].text.split(" (")[0] for r in root.find("table", "metrics")[0].find("tr")[1:]]
        # headline metrics, each with its `_flexible` companion in the same row
        assert names == [m for m in results["metrics"] if not m.startswith("parse_failure_rate")
                         and not m.endswith("_flexible")]
        rows = root.find("table", "samples")[0].find("tbody")[0].find("tr")
        assert len(rows) == results["n_samples"] == 2
        assert {r.attrs["data-status"] for r in rows} <= {"correct", "wrong", "parse_failure", "error"}
        assert stated_html_kb(root) == f"{(folder / 'report.html').stat().st_size / 1024:.1f}"
        assert re.search(rf"html {task}: .*report\.html \([\d.]+ KB with its media\)", console)
    assert re.search(r"html index: .*index\.html \([\d.]+ KB", console)


def check_self_contained_index(root: Node, folder: Path) -> None:
    assert not root.find("script") and len(root.find("style")) == 1
    for a in root.find("a"):
        assert (folder / a.attrs["href"]).is_file(), a.attrs["href"]


def test_run_pages_show_each_media_kind(smoke_run):
    out, _ = smoke_run
    image = page(out / "synth_imageqa" / "report.html").find("table", "samples")[0]
    assert len(image.find("img")) == 2  # one thumbnail per sample
    video = page(out / "synth_videoqa" / "report.html").find("table", "samples")[0]
    for row in video.find("tbody")[0].find("tr"):
        captions = [c.text for c in row.find("figcaption")]
        shown, sampled = map(int, re.search(r"(\d+) of (\d+) sampled frames", row.text).groups())
        assert shown == len(captions) == min(8, sampled) and sampled >= 4  # 2 s at fps 2, min_frames 4
        assert all(re.fullmatch(r"\d+\.\d s", c) for c in captions) and captions[0] == "0.0 s"
        assert "Question:" in row.find("td")[2].text  # the prompt text as the template wrote it
    grounding = page(out / "synth_grounding" / "report.html")
    assert len(grounding.find("rect", "box-target")) == 2 and grounding.find("svg", "boxes")
    temporal = page(out / "synth_temporal_grounding" / "report.html")
    assert len(temporal.find("rect", "span-target")) == 2 and temporal.find("line", "tick")


# ------------------------------------------------------------------------------------------------ escaping
def test_replies_and_dataset_text_render_as_text(tmp_path):
    spec = REGISTRY["synth_imageqa"]
    samples = load_samples(spec)
    samples[0].id = 'x" onmouseover="alert(1)'
    samples[1].question = "<script>alert('data')</script> What colour?"
    preds = {s.id: HOSTILE[i % 3] for i, s in enumerate(samples)}
    score_predictions(spec, samples, write_preds(tmp_path / "p.jsonl", preds), tmp_path / "t")
    write_task_page(tmp_path / "t", spec, samples)
    root = page(tmp_path / "t" / "report.html")
    check_self_contained(root, tmp_path / "t")
    assert not [n for n in root.find() if any(k.startswith("on") for k in n.attrs)]
    assert not root.find("img", src="x") and not [b for pre in root.find("pre") for b in pre.find("b")]
    rows = root.find("table", "samples")[0].find("tbody")[0].find("tr")
    assert rows[0].attrs["id"] == 's-x" onmouseover="alert(1)'
    replies = [r.find("pre", "reply")[0].text for r in rows]
    assert replies == [preds[s.id] for s in samples]
    assert "<script>alert('data')</script> What colour?" in rows[1].find("td")[2].text
    html = (tmp_path / "t" / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;reply&#34;)" in html


# ------------------------------------------------------------------------------------------------ boxes and timelines
def grounding_page(tmp_path: Path) -> Path:
    """synth1/0: target the green rectangle [100, 20, 180, 80] of a 200x100 image; predicted [20, 10, 120, 90]."""
    # --missing skip: the one predicted sample alone on the page
    score("synth_grounding", {"synth1/0": '{"bbox_2d": [100, 100, 600, 900], "label": "x"}'}, tmp_path / "g",
          "--missing", "skip")
    return tmp_path / "g" / "synth_grounding" / "report.html"


def temporal_page(tmp_path: Path) -> Path:
    """Sample 1: an 8 s clip, target [2, 6] s; predicted [4, 7] s."""
    score("synth_temporal_grounding", {"1": "The event happens in 4.0 - 7.0 seconds."}, tmp_path / "t",
          "--missing", "skip")
    return tmp_path / "t" / "synth_temporal_grounding" / "report.html"


def attrs(node: Node, *keys: str) -> list[float]:
    return [float(node.attrs[k]) for k in keys]


def test_boxes_are_drawn_where_the_boxes_are(tmp_path):
    root = page(grounding_page(tmp_path))
    svg = root.find("svg", "boxes")[0]
    assert svg.attrs["viewbox" if "viewbox" in svg.attrs else "viewBox"] == "0 0 200 100"
    assert attrs(svg.find("rect", "box-target")[0], "x", "y", "width", "height") == [100, 20, 80, 60]
    assert attrs(svg.find("rect", "box-pred")[0], "x", "y", "width", "height") == [20, 10, 100, 80]
    assert (tmp_path / "g" / "synth_grounding" / svg.find("image")[0].attrs["href"]).is_file()


def test_timeline_spans_and_frames(tmp_path):
    root = page(temporal_page(tmp_path))
    svg = root.find("svg", "timeline")[0]
    px = TIMELINE_WIDTH / 8.0
    assert attrs(svg.find("rect", "span-target")[0], "x", "width") == [2 * px, 4 * px]
    assert attrs(svg.find("rect", "span-pred")[0], "x", "width") == [4 * px, 3 * px]
    assert len(svg.find("line", "tick")) == 16  # 8 s at fps 2, max_frames 16: the frames the processor samples
    captions = [c.text for c in root.find("figcaption")]
    assert len(captions) == 12 and captions[0] == "0.0 s" and captions[-1] == "7.5 s"


@needs_chromium
def test_screenshot_shows_the_boxes(tmp_path):
    shot = screenshot(grounding_page(tmp_path), tmp_path / "g.png")
    target, pred = extent(shot, TARGET), extent(shot, PRED)
    w = lambda c: c[2] - c[0]  # noqa: E731
    h = lambda c: c[3] - c[1]  # noqa: E731
    # 3-pixel outlines centred on the edges of boxes 80x60 and 100x80 pixels, 80 px apart (thumbnail at scale 1)
    assert abs(w(target) - 80) <= 4 and abs(h(target) - 60) <= 4, target
    assert abs(w(pred) - 100) <= 4 and abs(h(pred) - 80) <= 4, pred
    assert abs((target[0] - pred[0]) - 80) <= 2 and abs((target[1] - pred[1]) - 10) <= 2
    inside = shot.crop((pred[0] + 5, pred[1] + 5, pred[0] + 15, pred[1] + 15))
    assert not components(inside, PRED), "outline only"


@needs_chromium
def test_screenshot_shows_the_timeline(tmp_path):
    shot = screenshot(temporal_page(tmp_path), tmp_path / "t.png")
    target, pred = extent(shot, TARGET), extent(shot, PRED)
    px = TIMELINE_WIDTH / 8.0
    assert abs(target[2] - target[0] + 1 - 4 * px) <= 2 and abs(pred[2] - pred[0] + 1 - 3 * px) <= 2
    assert abs((pred[0] - target[0]) - 2 * px) <= 2 and pred[1] > target[3]  # prediction bar under the target's


# ------------------------------------------------------------------------------------------------ pagination
def test_long_tasks_are_paginated_and_media_pruned(tmp_path):
    score("synth_imageqa", oracle("synth_imageqa"), tmp_path / "p")
    pages = write_task_page(tmp_path / "p" / "synth_imageqa", page_size=2)
    assert [p.path.name for p in pages.pages] == ["report.html", "report-2.html", "report-3.html"]
    for k, p in enumerate(pages.pages, 1):
        root = page(p.path)
        assert len(root.find("table", "samples")[0].find("tbody")[0].find("tr")) == 2
        pager = root.find("span", "pager")[0]
        assert pager.find("b")[0].text == str(k) and len(pager.find("a")) == 2
        assert stated_html_kb(root) == f"{p.path.stat().st_size / 1024:.1f}"
        assert len(p.media) == 2
    stale = tmp_path / "p" / "synth_imageqa" / "media" / ("0" * 20 + ".jpg")
    stale.write_bytes(b"old")
    assert len(write_task_page(tmp_path / "p" / "synth_imageqa").pages) == 1
    assert not (tmp_path / "p" / "synth_imageqa" / "report-2.html").exists() and not stale.exists()
    assert len(list((tmp_path / "p" / "synth_imageqa" / "media").iterdir())) == 6


# ------------------------------------------------------------------------------------------------ compare
def test_compare_page_deltas_and_flips(tmp_path):
    task = "synth_imageqa"
    right = oracle(task)
    ids = list(right)
    base = dict(right, **{ids[5]: "purple"})
    cand = dict(right, **{ids[0]: HOSTILE[0], ids[1]: "no idea"})
    score(task, base, tmp_path / "base")
    score(task, cand, tmp_path / "cand")
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "base"), str(tmp_path / "cand"), "--resamples", "200",
                                 "--no-charts", "-o", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    assert re.search(r"html compare: .*compare\.html \([\d.]+ KB", r.output)
    root = page(tmp_path / "cmp" / "compare.html")
    check_self_contained(root, tmp_path / "cmp")
    row = next(tr for tr in root.find("table", "deltas")[0].find("tr") if "anls" in tr.text)
    assert "-16.67" in row.text and re.search(r"\[[-+]\d+\.\d+, [-+]\d+\.\d+\] n=6", row.text)
    assert row.find("svg", "ci")[0].find("circle")
    flips = root.find("div", "flip")
    assert [f.attrs["id"] for f in flips] == [f"flip-{ids[0]}", f"flip-{ids[1]}", f"flip-{ids[5]}"]  # lower first
    first = flips[0].find("div", "pair")[0].find("pre", "reply")
    assert [p.text for p in first] == [right[ids[0]], HOSTILE[0]]
    assert flips[0].find("img") and "What" in flips[0].text
    assert not root.find("img", src="x")


def test_headline_and_flexible_metrics_with_the_reference_named(tmp_path):
    score("synth_imageqa", oracle("synth_imageqa"), tmp_path / "f")
    path = tmp_path / "f" / "synth_imageqa" / "results.json"
    results = json.loads(path.read_text())
    results["metrics"] |= {"anls_flexible": 91.25, "parse_failure_rate_flexible": 0.0}
    results["reference"] = "lmms-eval 0.7.3 tasks/docvqa <anls>"
    path.write_text(json.dumps(results))
    log = tmp_path / "f" / "synth_imageqa" / "samples.jsonl"
    log.write_text("".join(json.dumps(dict(json.loads(line), parsed_prediction_flexible="<i>flex</i>")) + "\n"
                           for line in log.read_text().splitlines()))
    write_task_page(tmp_path / "f" / "synth_imageqa")
    root = page(tmp_path / "f" / "synth_imageqa" / "report.html")
    table = root.find("table", "metrics")[0]
    assert [th.text for th in table.find("th")] == ["metric", "headline", "flexible"]
    assert [[td.text for td in tr.find("td")] for tr in table.find("tbody")[0].find("tr")] == [
        ["anls (primary)", "100.00", "91.25"]]
    assert "lmms-eval 0.7.3 tasks/docvqa <anls>" in root.find("p", "ref")[0].text
    cells = root.find("table", "samples")[0].find("tbody")[0].find("tr")[0].find("td")
    assert "flexible" in cells[4].text and "<i>flex</i>" in cells[4].text and not cells[4].find("i")


def test_compare_page_shows_both_boxes_of_a_changed_grounding_sample(tmp_path):
    task = "synth_grounding"
    right = oracle(task)
    cand = dict(right, **{"synth1/0": '{"bbox_2d": [100, 100, 600, 900]}'})
    score(task, right, tmp_path / "base")
    score(task, cand, tmp_path / "cand")
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "base"), str(tmp_path / "cand"), "--resamples", "200",
                                 "--no-charts", "-o", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    root = page(tmp_path / "cmp" / "compare.html")
    check_self_contained(root, tmp_path / "cmp")
    row = next(tr for tr in root.find("table", "deltas")[0].find("tr") if "acc@0.5" in tr.text)
    assert "-12.50" in row.text and re.search(r"\[-\d+\.\d+, [-+]\d+\.\d+\] n=8", row.text)  # per-sample IoU >= 0.5
    flip = root.find("div", "flip")[0]
    assert flip.attrs["id"] == "flip-synth1/0"
    base_panel, cand_panel = [d for d in flip.find("div", "pair")[0].children if d.tag == "div"]
    assert attrs(base_panel.find("rect", "box-pred")[0], "x", "y", "width", "height") == [100, 20, 80, 60]
    assert attrs(cand_panel.find("rect", "box-pred")[0], "x", "y", "width", "height") == [20, 10, 100, 80]
