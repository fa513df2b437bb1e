"""Self-contained HTML pages of runs and comparisons: `report.html` per task (beside report.md), `index.html` in
a run folder and `compare.html` beside a comparison report.

Pages are rendered with jinja2 (autoescape on for every template, so any text from a model or a dataset shows as
text), carry their CSS and JS inline (hand-written, no network), and reference downscaled JPEG thumbnails in a
`media/` folder beside them, so they open from `file://`. This package reads what `eval` and `compare` produce
(results.json, samples.jsonl, task specs, comparison objects); only the commands import it.
"""

from qwen3vl_eval.report.html.compare import write_compare_page
from qwen3vl_eval.report.html.index import write_index
from qwen3vl_eval.report.html.render import PageSet
from qwen3vl_eval.report.html.task import write_task_page

__all__ = ["PageSet", "write_compare_page", "write_index", "write_task_page"]
