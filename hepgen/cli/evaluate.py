"""``hepgen evaluate ...``: generated vs reference samples -> metrics.json + report.html."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Compare generated with reference samples.", no_args_is_help=True)


@app.command("jets")
def jets(
    real: Path = typer.Option(..., "--real", help="Reference jets (JetNet-layout HDF5)."),
    gen: Path = typer.Option(..., "--gen", help="Generated jets (JetNet-layout HDF5)."),
    out: Path = typer.Option(..., "--out", help="Report folder (metrics.json, report.html, plots)."),
    truth_floor: Path = typer.Option(None, "--truth-floor", help="A second reference sample: adds the real-vs-real row."),
    num_particles: int = typer.Option(None, "--num-particles", help="Truncate every sample to the P hardest particles (e.g. 30 of JetNet150)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap draws."),
    num_eval_samples: int = typer.Option(50_000, "--num-eval-samples", help="Jets per W1 bootstrap (jetnet: 50000)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Make the distribution plots."),
) -> None:
    """W1M, W1P, W1EFP, FPD, KPD (jetnet definitions) with plots and an HTML report."""
    from hepgen.errors import OptionError
    from hepgen.evaluate.jets import evaluate_jets

    if num_eval_samples <= 0:
        raise OptionError(f"--num-eval-samples must be positive, got {num_eval_samples}")
    if num_particles is not None and num_particles <= 0:
        raise OptionError(f"--num-particles must be positive, got {num_particles}")
    result = evaluate_jets(real, gen, out, truth_floor, seed=seed, num_eval_samples=num_eval_samples,
                           num_particles=num_particles, plots=plots, echo=typer.echo)
    typer.echo(f"report: {result.report}")
