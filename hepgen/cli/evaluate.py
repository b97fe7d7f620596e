"""``hepgen evaluate ...``: generated vs reference samples -> metrics.json + report.html."""

from __future__ import annotations

from pathlib import Path

import typer

from hepgen.cli.options import require_positive

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
    from hepgen.evaluate.jets import evaluate_jets

    require_positive({"--num-eval-samples": num_eval_samples, "--num-particles": num_particles})
    result = evaluate_jets(real, gen, out, truth_floor, seed=seed, num_eval_samples=num_eval_samples,
                           num_particles=num_particles, plots=plots, echo=typer.echo)
    typer.echo(f"report: {result.report}")


@app.command("calo")
def calo(
    real: Path = typer.Option(..., "--real", help="Reference showers (CaloChallenge-layout HDF5)."),
    gen: Path = typer.Option(..., "--gen", help="Generated showers (CaloChallenge-layout HDF5)."),
    out: Path = typer.Option(..., "--out", help="Report folder (metrics.json, report.html, plots)."),
    geometry: str = typer.Option(None, "--geometry", help="ds1-photons, ds1-pions, ds2, ds3, ild-photons or a binning XML file (default: from the files)."),
    protocol: str = typer.Option("hepgen", "--protocol", help="hepgen (default) or calochallenge: the recipe of the CaloChallenge evaluate.py (1 MeV cut on DS1, 30 high-level features for DS1 photons, raw classifier inputs, best-accuracy epoch, isotonically calibrated AUC), for comparison with the published table."),
    cut: float = typer.Option(None, "--cut", help="Set voxels below this energy (MeV) to 0 in both samples first (default: none for --protocol hepgen; the challenge's threshold for calochallenge: 1 MeV DS1, 15.15 keV DS2/DS3)."),
    classifier_epochs: int = typer.Option(50, "--classifier-epochs", help="Epochs per classifier run."),
    classifier_runs: int = typer.Option(3, "--classifier-runs", help="Classifier runs with different seeds (AUC = mean ± std); 0 skips the classifiers."),
    classifiers: str = typer.Option("low,high", "--classifiers", help="Comma-separated: low (voxels/E_inc), high (high-level features), low_normed (voxels/E_layer)."),
    flag_threshold: float = typer.Option(0.01, "--flag-threshold", help="Flag histograms whose separation power exceeds the statistical floor by more than this."),
    hit_cut: float = typer.Option(None, "--hit-cut", help="Hit threshold (MeV) of the grid observables (grid geometries only; default: half a MIP of the cells, 0.1 ild-photons, 0.25 ild-pions)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the classifier splits/initialisation and the bootstraps."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Make the plots."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar over classifier epochs."),
    stream: bool = typer.Option(True, "--stream/--in-memory", help="Read the files in chunks and train the voxel classifiers from scratch files beside --out (bounded memory, the default), or read both files whole (same numbers)."),
    classifier_hidden: str = typer.Option(None, "--classifier-hidden", help="Hidden widths of the classifier, comma-separated (default: the protocol's; calochallenge: 2048,2048,2048 as the 2024-25 evaluate.py, about 50 CPU-minutes per run at 10k showers; 512,512,512 is its 2022 default). Recorded in metrics.json info."),
    classifier_dtype: str = typer.Option(None, "--classifier-dtype", help="float32 or float64 (default: the protocol's; calochallenge: float64 as the official script)."),
) -> None:
    """CaloChallenge evaluation: separation powers, classifier AUCs and weights, FPD/KPD, plots, HTML report."""
    from hepgen.cli.options import classifier_recipe
    from hepgen.evaluate.calo import evaluate_calo

    kinds = tuple(k.strip() for k in classifiers.split(",") if k.strip())
    options = classifier_recipe(classifier_hidden, classifier_dtype)
    result = evaluate_calo(real, gen, out, geometry=geometry, cut=cut, classifier_epochs=classifier_epochs,
                           classifier_runs=classifier_runs, seed=seed, plots=plots, echo=typer.echo,
                           flag_threshold=flag_threshold, hit_cut=hit_cut, classifiers=kinds, progress=progress,
                           protocol=protocol, stream=stream, classifier_options=options or None)
    typer.echo(f"report: {result.report}")


@app.command("events")
def events(
    real: Path = typer.Option(..., "--real", help="Reference events (Dark Machines text format)."),
    gen: Path = typer.Option(..., "--gen", help="Generated events (Dark Machines text format)."),
    out: Path = typer.Option(..., "--out", help="Report folder (metrics.json, report.html, plots)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstraps and of the classifier splits/initialisation."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Make the plots."),
    classifier_runs: int = typer.Option(3, "--classifier-runs", help="Classifier runs with different seeds (AUC = mean ± std); 0 skips the classifier."),
    classifier_epochs: int = typer.Option(30, "--classifier-epochs", help="Epochs per classifier run."),
    max_events: int = typer.Option(None, "--max-events", help="Read at most this many events of each file."),
    bootstrap: int = typer.Option(5, "--bootstrap", help="Bootstrap replicas of the events for the errors (0: no errors)."),
    bins: int = typer.Option(50, "--bins", help="Histogram bins of KL and JS (over the reference range)."),
    unit: str = typer.Option("MeV", "--unit", help="Energy unit of the files: MeV (Dark Machines) or GeV; for the selection cuts and plot labels."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Per-type and pT-order W1/KL/JS with the count-weighted averages of seed 003 Table 7.20, count vectors, total E and pT, classifier AUC, valid fraction, plots, HTML report."""
    from hepgen.evaluate.events import evaluate_events

    result = evaluate_events(real, gen, out, seed=seed, plots=plots, classifier_runs=classifier_runs,
                             classifier_epochs=classifier_epochs, max_events=max_events, bootstrap=bootstrap,
                             bins=bins, unit=unit, progress=progress, echo=typer.echo)
    typer.echo(f"report: {result.report}")


@app.command("hits")
def hits(
    real: Path = typer.Option(..., "--real", help="Reference hit clouds (hepgen data hits)."),
    gen: Path = typer.Option(..., "--gen", help="Generated hit clouds."),
    out: Path = typer.Option(..., "--out", help="Report folder (metrics.json, report.html, plots)."),
    truth_floor: Path = typer.Option(None, "--truth-floor", help="A second reference sample: adds the real-vs-real row."),
    num_pairs: int = typer.Option(2000, "--num-pairs", help="Pairs of clouds for the EMD (the seed: 20000)."),
) -> None:
    """W1 of the total hit energy, the EMD between clouds, the hit multiplicity, marginals, report."""
    from hepgen.evaluate.hits import evaluate_hits

    require_positive({"--num-pairs": num_pairs})
    result = evaluate_hits(real, gen, out, truth_floor, num_pairs=num_pairs, echo=typer.echo)
    typer.echo(f"report: {result.report}")


@app.command("anomaly")
def anomaly(
    run: Path = typer.Option(..., "--run", help="Run folder of hepgen anomaly train, or a shipped run (nae/qcd)."),
    background: Path = typer.Option(..., "--background", help="Background events (e.g. hepgen data dijets --process qcd, another seed)."),
    signal: Path = typer.Option(..., "--signal", help="Signal events (e.g. hepgen data dijets --process wprime)."),
    out: Path = typer.Option(..., "--out", help="Report folder (metrics.json, report.html, plots)."),
    region_only: bool = typer.Option(True, "--signal-region-only/--all-events", help="Judge only events in the run's signal region (CWoLa), or all."),
    bootstrap: int = typer.Option(20, "--bootstrap", help="Bootstrap replicas for the errors (0: no errors)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap replicas."),
    score: str = typer.Option(None, "--score", help="Which of the run's scores metrics.json is of (default the method's; "
                              "nae runs also have ae, the pre-trained plain autoencoder, always in the report "
                              "and baseline_metrics.json)."),
) -> None:
    """AUC, maximal significance improvement, 1/eps_B at eps_s = 0.2 and 0.3; ROC and SI curves, HTML report."""
    from hepgen.errors import OptionError
    from hepgen.evaluate.anomaly import evaluate_anomaly

    if bootstrap < 0:
        raise OptionError(f"--bootstrap must be >= 0, got {bootstrap}")
    from hepgen.training.anomaly import resolve_run

    result = evaluate_anomaly(resolve_run(run), background, signal, out, region_only=region_only, bootstrap=bootstrap,
                              seed=seed, echo=typer.echo, score=score)
    typer.echo(f"report: {result.report}")
