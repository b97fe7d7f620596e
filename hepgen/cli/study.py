"""``hepgen study NAME --out DIR [--quick]``: the seeds' method studies, each writing
metrics.json and report.html."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Run a method study of the seeds (trains, evaluates, reports).", no_args_is_help=True)


@app.command("bump-hunt")
def bump_hunt(
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, report.html and the plots."),
    quick: bool = typer.Option(False, "--quick", help="Reduced budget (400k points, 4 flows, 4 passes): minutes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stream and the flows."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """OnlineFlow bump hunt (seed 001 sec. 9.2): BumpHunter significance of the full, prescaled and flow data."""
    from hepgen.errors import OptionError
    from hepgen.studies.bump_hunt import run

    if out.exists() and not out.is_dir():
        raise OptionError(f"--out: {out} exists and is not a folder")
    if not out.parent.exists():
        raise OptionError(f"--out: parent folder {out.parent} does not exist")
    run(out, quick=quick, seed=seed, progress=progress, echo=typer.echo)
    typer.echo(f"report: {out / 'report.html'}")
