"""`qwen3vl-eval tasks`: the suites and tasks, their data sources and metrics, and whether data is local."""

from __future__ import annotations

import sys

from qwen3vl_eval.commands import handle_errors


def availability(spec) -> str:  # noqa: ANN001
    """'yes (path)', 'no', or for synthetic tasks whether they are generated yet."""
    from qwen3vl_eval.checkpoints.hub import cache_dir
    from qwen3vl_eval.eval.data import find_local

    if spec.data.source == "synth":
        from qwen3vl_eval.eval.synth import VERSION

        done = (cache_dir() / "synth" / f"{spec.data.path}-v{VERSION}" / "data.parquet").is_file()
        return "generated" if done else "on first use"
    found = find_local(spec.data)
    return f"yes ({found[1]})" if found else "no"


@handle_errors
def tasks() -> None:
    """List suites and tasks with their data sources, metrics and local data availability."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from qwen3vl_eval.eval.task import load_registry

    registry = load_registry()
    t = Table("suite", "task", "version", "data", "metrics", "local data")
    rows = sorted(registry.values(), key=lambda s: (s.suites[0] if s.suites else "", s.task))
    for s in rows:
        t.add_row(",".join(s.suites), s.task, str(s.version), escape(s.data.describe()), ", ".join(s.metrics),
                  escape(availability(s)))
    Console(file=sys.stdout, width=200).print(t)
