"""`qwen3vl-eval parity CASE [CASE ...]`: compare our model with golden cases made by transformers."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from qwen3vl_eval.commands import handle_errors, resolve_target


@handle_errors
def main(
    cases: list[Path] = typer.Argument(..., help="golden case folders (CASE/model + CASE/golden.safetensors)"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (float32 on CPU, bfloat16 on CUDA), float32, "
                                                      "bfloat16, float16"),
    atol: float = typer.Option(None, "--atol", help="absolute tolerance (default by dtype: float32 1e-5, "
                                                    "bfloat16 5e-2, float16 1e-2)"),
    rtol: float = typer.Option(None, "--rtol", help="tolerance relative to max|golden| (default by dtype: "
                                                    "float32 1e-4, bfloat16 5e-2, float16 1e-2)"),
    json_file: Path = typer.Option(None, "--json", help="write the per-key rows as JSON to this file"),
    dump: Path = typer.Option(None, "--dump", help="write every produced tensor to DIR/<case>.safetensors"),
) -> None:
    """Run each golden case and print a per-key table; exit 1 when any key fails."""
    from qwen3vl_eval.model.parity import load_case, run_case  # heavy imports after --help
    from qwen3vl_eval.report.files import write_json

    target = resolve_target(None, device, dtype)  # each case names its own checkpoint folder
    dev, dt = target.device, target.dtype
    loaded = [load_case(c) for c in cases]  # all validated before anything runs
    console = Console(width=max(Console().width, 120))  # keep key names whole when piped
    results = []
    for case in loaded:
        result = run_case(case, device=dev, dtype=dt, atol=atol, rtol=rtol, dump=dump)
        results.append(result)
        table = Table(title=f"{case.path}  ({result.dtype} on {result.device}, atol {result.atol:g}, "
                            f"rtol {result.rtol:g})", title_justify="left")
        for col in ("key", "shape", "max abs err", "max err / max|golden|", "cosine", "result"):
            table.add_column(col, justify="left" if col in ("key", "shape", "result") else "right",
                             no_wrap=col in ("key", "shape"))
        for r in result.rows:
            verdict = "[green]pass[/green]" if r.passed else "[bold red]FAIL[/bold red]"
            table.add_row(r.key, "x".join(map(str, r.shape)), f"{r.max_abs_err:.3g}", f"{r.max_rel_err:.3g}",
                          f"{r.cosine:.7f}", f"{verdict} {r.note}".rstrip())
        console.print(table)
    if json_file is not None:
        write_json(json_file, [row for r in results for row in r.to_json()])
    failed = [(r.case, row.key) for r in results for row in r.rows if not row.passed]
    for case, key in failed:
        console.print(f"[bold red]FAIL[/bold red] {case}: {key}")
    if failed:
        raise typer.Exit(1)
    console.print(f"[green]all {sum(len(r.rows) for r in results)} keys of {len(results)} case(s) pass[/green]")
