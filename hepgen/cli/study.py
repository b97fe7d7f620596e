"""``hepgen study NAME --out DIR [--quick]``: the seeds' method studies, each writing
metrics.json and report.html."""

from __future__ import annotations

from pathlib import Path

import typer

from hepgen.cli.options import check_output_folder

app = typer.Typer(help="Run a method study of the seeds (trains, evaluates, reports).", no_args_is_help=True)


@app.command("interpolation")
def interpolation(
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, report.html and the plots."),
    quick: bool = typer.Option(False, "--quick", help="Reduced budget (small samples, short trainings): minutes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the toys, the Pythia samples and the trainings."),
    parts: str = typer.Option("a,b", "--parts", help="a: rotating Gaussian, b: gluino search (comma-separated)."),
    repeats: int = typer.Option(None, "--repeats", help="Classifier trainings per approach (default: 10, --quick 2)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
) -> None:
    """Interpolation with flow matching (seed 000 ch. 7): rotating Gaussian; gluino search, OT-CFM eps 0.25 -> 0.75, Asimov Z."""
    from hepgen.errors import OptionError
    from hepgen.studies.interpolation import PARTS, run

    check_output_folder(out)
    chosen = [p.strip().lower() for p in parts.split(",") if p.strip()]
    if not chosen or any(p not in PARTS for p in chosen):
        raise OptionError(f"--parts: {parts!r}; choose from {', '.join(PARTS)}")
    extra = {} if repeats is None else {"repeats": repeats}
    if repeats is not None and repeats < 1:
        raise OptionError(f"--repeats must be at least 1, got {repeats}")
    run(out, quick=quick, seed=seed, parts=chosen, progress=progress, echo=typer.echo, **extra)
    typer.echo(f"report: {out / 'report.html'}")


@app.command("bump-hunt")
def bump_hunt(
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, report.html and the plots."),
    quick: bool = typer.Option(False, "--quick", help="Reduced budget (400k points, 4 flows, 4 passes): minutes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stream and the flows."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """OnlineFlow bump hunt (seed 001 sec. 9.2): BumpHunter significance of the full, prescaled and flow data."""
    from hepgen.studies.bump_hunt import run

    check_output_folder(out)
    run(out, quick=quick, seed=seed, progress=progress, echo=typer.echo)
    typer.echo(f"report: {out / 'report.html'}")


@app.command("two-moons")
def two_moons(
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, report.html and the plots."),
    quick: bool = typer.Option(False, "--quick", help="Reduced budget (3 x 500 iterations per model): minutes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, the trainings and the tests."),
    models: str = typer.Option("", "--models", help="Comma-separated subset of the models (default: all 13)."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per model (default: 50, --quick 3)."),
    iterations: int = typer.Option(None, "--iterations", help="Iterations per epoch (default: 1000, --quick 500)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    resume: bool = typer.Option(False, "--resume", help="Keep the models already finished in --out (same budget and seed) and train only the rest: the full budget can span several sessions."),
) -> None:
    """Two moons (seed 000 ch. 4, app. A): 13 generative models on one backbone; W1, binary AUC, multiclass test."""
    from hepgen.studies.two_moons import run

    check_output_folder(out)
    run(out, quick=quick, seed=seed, models=[m.strip() for m in models.split(",") if m.strip()] or None,
        progress=progress, echo=typer.echo, resume=resume, epochs=epochs, iterations=iterations)
    typer.echo(f"report: {out / 'report.html'}")


@app.command("amplification")
def amplification(
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, report.html and the plots."),
    quick: bool = typer.Option(False, "--quick", help="Reduced budget (2 training sets, 300 epochs): minutes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the training sets and the models."),
    toys: str = typer.Option("", "--toys", help="Comma-separated subset of camel, ring, sphere (default: all)."),
    runs: int = typer.Option(None, "--runs", help="Independent training sets per toy (default: 100, --quick 2)."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per training (default: 10000, --quick 300)."),
    models: str = typer.Option("gan,cfm", "--models", help="Comma-separated subset of gan, cfm."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """GANplification (seed 001 ch. 5): quantile-MSE amplification factors of a GAN, a CFM model and the fit."""
    from hepgen.errors import OptionError
    from hepgen.studies.amplification import TOYS, run

    check_output_folder(out)
    chosen = [t.strip() for t in toys.split(",") if t.strip()] or None
    bad = [t for t in chosen or [] if t not in TOYS]
    if bad:
        raise OptionError(f"--toys: unknown {', '.join(bad)}; choose from {', '.join(TOYS)}")
    chosen_models = [m.strip() for m in models.split(",") if m.strip()]
    if not chosen_models or any(m not in ("gan", "cfm") for m in chosen_models):
        raise OptionError(f"--models: {models!r}; choose from gan, cfm")
    run(out, quick=quick, seed=seed, toys=chosen, progress=progress, echo=typer.echo, runs=runs, epochs=epochs,
        models=chosen_models)
    typer.echo(f"report: {out / 'report.html'}")
