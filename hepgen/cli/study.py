"""``hepgen study NAME --out DIR [--quick]``: the seeds' method studies, each writing
metrics.json and report.html."""

from __future__ import annotations

from pathlib import Path

import typer

from hepgen.cli.options import check_output_folder, comma_list, require_positive

app = typer.Typer(help="Run a method study of the seeds (trains, evaluates, reports).", no_args_is_help=True)

#: the --out of every study
OUT = typer.Option(..., "--out", help="Folder for metrics.json, report.html and the plots.")


def _run_study(run, out: Path, **options) -> None:
    """``run(out, echo=typer.echo, **options)`` (a study's ``run``), then print where its report is."""
    run(out, echo=typer.echo, **options)
    typer.echo(f"report: {out / 'report.html'}")


@app.command("interpolation")
def interpolation(
    out: Path = OUT,
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
    chosen = [p.lower() for p in comma_list(parts)]
    if not chosen or any(p not in PARTS for p in chosen):
        raise OptionError(f"--parts: {parts!r}; choose from {', '.join(PARTS)}")
    extra = {} if repeats is None else {"repeats": repeats}
    require_positive({"--repeats": repeats})
    _run_study(run, out, quick=quick, seed=seed, parts=chosen, progress=progress, **extra)


@app.command("bump-hunt")
def bump_hunt(
    out: Path = OUT,
    quick: bool = typer.Option(False, "--quick", help="Reduced budget (400k points, 4 flows, 4 passes): minutes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stream and the flows."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    resume: bool = typer.Option(False, "--resume", help="Continue the ensemble's training saved in --out by a killed "
                                "run of the same budget and seed (it is saved every 5 min)."),
) -> None:
    """OnlineFlow bump hunt (seed 001 sec. 9.2): BumpHunter significance of the full, prescaled and flow data."""
    from hepgen.studies.bump_hunt import run

    check_output_folder(out)
    _run_study(run, out, quick=quick, seed=seed, progress=progress, resume=resume)


@app.command("online-cwola")
def online_cwola(
    out: Path = OUT,
    quick: bool = typer.Option(False, "--quick", help="Reduced budget (small flow, 3 passes per buffer, 8 CWoLa "
                               "epochs; a 12k-event synthetic toy without --data): minutes."),
    data: Path = typer.Option(None, "--data", help="Background dijet file (hepgen data dijets --process qcd)."),
    signal: Path = typer.Option(None, "--signal", help="Signal dijet file (--process wprime) injected at --s-over-b; "
                                "the events not injected form the test signal."),
    test_data: Path = typer.Option(None, "--test-data", help="Separate background test file (default: a held-out "
                                   "20 % of --data)."),
    test_signal: Path = typer.Option(None, "--test-signal", help="Separate signal test file."),
    s_over_b: float = typer.Option(None, "--s-over-b", help="Injected signal per background event (default 0.01)."),
    max_events: int = typer.Option(None, "--max-events", help="Read at most this many background events."),
    buffer: int = typer.Option(None, "--buffer", help="OnlineFlow buffer (default 10000)."),
    iterations: int = typer.Option(None, "--iterations", help="Passes over each buffer (default 1000, --quick 3)."),
    batch: int = typer.Option(None, "--batch", help="OnlineFlow mini-batch (default 250)."),
    blocks: int = typer.Option(None, "--blocks", help="MADE blocks (default 10, --quick 3)."),
    hidden: int = typer.Option(None, "--hidden", help="Nodes of the MADE layers (default 128, --quick 32)."),
    lr: float = typer.Option(None, "--lr", help="OnlineFlow learning rate (default 1e-5, --quick 1e-3)."),
    epochs: int = typer.Option(None, "--epochs", help="CWoLa epochs (default 50, --quick 8)."),
    prescales: str = typer.Option(None, "--prescales", help="Comma-separated prescale factors (default 2,5,10,20)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, injection, flow and classifiers."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """OnlineFlow on LHCO-like dijets (seed 001 sec. 9.3): CWoLa on the data, prescaled data and flow samples."""
    from hepgen.errors import OptionError
    from hepgen.studies.online_cwola import run

    check_output_folder(out)
    factors = None
    if prescales is not None:
        try:
            factors = [int(f) for f in prescales.split(",") if f.strip()]
        except ValueError:
            raise OptionError(f"--prescales: {prescales!r} is not a comma-separated list of integers") from None
    if s_over_b is not None and not 0 < s_over_b < 1:
        raise OptionError(f"--s-over-b must lie in (0, 1), got {s_over_b}")
    require_positive({"--lr": lr, "--max-events": max_events})
    _run_study(run, out, quick=quick, seed=seed, data=data, signal=signal, test_data=test_data,
               test_signal=test_signal, progress=progress, s_over_b=s_over_b, max_events=max_events, buffer=buffer,
               iterations=iterations, batch=batch, blocks=blocks, hidden=hidden, lr=lr, epochs=epochs,
               prescales=factors)


@app.command("two-moons")
def two_moons(
    out: Path = OUT,
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
    _run_study(run, out, quick=quick, seed=seed, models=comma_list(models) or None, progress=progress,
               resume=resume, epochs=epochs, iterations=iterations)


@app.command("amplification")
def amplification(
    out: Path = OUT,
    quick: bool = typer.Option(False, "--quick", help="Reduced budget (2 training sets, 300 epochs): minutes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the training sets and the models."),
    toys: str = typer.Option("", "--toys", help="Comma-separated subset of camel, ring, sphere (default: all)."),
    runs: int = typer.Option(None, "--runs", help="Independent training sets per toy (default: 100, --quick 2)."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per training (default: 10000, --quick 300)."),
    models: str = typer.Option("gan,cfm", "--models", help="Comma-separated subset of gan, cfm."),
    ensemble: int = typer.Option(None, "--ensemble", min=1,
                                 help="GANs trained together in one vectorised training (default: all runs)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """GANplification (seed 001 ch. 5): quantile-MSE amplification factors of a GAN, a CFM model and the fit."""
    from hepgen.errors import OptionError
    from hepgen.studies.amplification import TOYS, run

    check_output_folder(out)
    chosen = comma_list(toys) or None
    bad = [t for t in chosen or [] if t not in TOYS]
    if bad:
        raise OptionError(f"--toys: unknown {', '.join(bad)}; choose from {', '.join(TOYS)}")
    chosen_models = comma_list(models)
    if not chosen_models or any(m not in ("gan", "cfm") for m in chosen_models):
        raise OptionError(f"--models: {models!r}; choose from gan, cfm")
    _run_study(run, out, quick=quick, seed=seed, toys=chosen, progress=progress, runs=runs, epochs=epochs,
               models=chosen_models, ensemble=ensemble)
