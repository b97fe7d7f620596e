"""``hepgen bench ...``: speed measured as ratios against a reference in the same run."""

from __future__ import annotations

from pathlib import Path

import typer

from hepgen.cli.options import require_positive

app = typer.Typer(help="Benchmarks (ratios against the reference measured in the same run).", no_args_is_help=True)


@app.command("metrics")
def metrics(
    num_jets: int = typer.Option(50_000, "--num-jets", help="Jets per sample (jetnet recommends 50000)."),
    particles: list[int] = typer.Option([30, 150], "--num-particles", help="Particle counts to benchmark."),
    data_dir: Path = typer.Option(Path("data/bench"), "--data-dir", help="Where the Pythia samples are cached."),
    out: Path = typer.Option(Path("bench-results"), "--out", help="Folder for metrics_bench.md/.json."),
    jetnet_jobs: int = typer.Option(None, "--jetnet-jobs", help="Processes for jetnet's EFPs [default: all cores]."),
) -> None:
    """Time hepgen's jet metrics against jetnet's on the same two samples."""
    from hepgen.bench.metrics import run_metrics_bench

    report = run_metrics_bench(num_jets, particles, data_dir, out, jetnet_jobs=jetnet_jobs, echo=typer.echo)
    typer.echo(report)


@app.command("jets")
def jets(
    models: list[str] = typer.Option(None, "--model", help="Shipped model or run folder [default: all shipped]."),
    test: Path = typer.Option(None, "--test", help="Test jets (Pythia) [default: data/{type}{P}_test.h5 for the models' jet type and particle count, e.g. data/t150_test.h5]."),
    train: Path = typer.Option(None, "--train", help="Training jets (for the truth floor) [default: data/{type}{P}_train.h5]."),
    num_jets: int = typer.Option(50_000, "--num-jets", help="Generated jets per model."),
    batch_size: int = typer.Option(None, "--batch-size", help="Jets per forward pass [default: each model's own]."),
    time_jets: int = typer.Option(2000, "--time-jets", help="Jets sampled on one thread to time each model (per core, as Pythia)."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timing runs of Pythia and of each model; the fastest counts."),
    few_step: bool = typer.Option(True, "--few-step/--no-few-step", help="Solver x steps table for flow models."),
    few_step_jets: int = typer.Option(10_000, "--few-step-jets", help="Generated jets per solver setting."),
    grid: str = typer.Option("euler:4,midpoint:2,midpoint:4,midpoint:8,midpoint:16,rk4:4,bespoke:2,bespoke:4", "--grid",
                             help="Solver:steps settings of the few-step table, comma separated "
                                  "(bespoke: the model's fitted few-step solvers, skipped where it has none)."),
    out: Path = typer.Option(Path("bench-results"), "--out", help="Folder for jets_bench.md/.json."),
) -> None:
    """Thesis table (W1M, W1P, W1EFP, KPD, FPD, µs per jet, parameters) with the truth floor and Pythia."""
    from hepgen.bench.jets import run_jets_bench
    from hepgen.shipped import shipped_models

    names = list(models) if models else [n for n in shipped_models() if n.endswith("/t30")]
    from hepgen.errors import OptionError
    from hepgen.models.blocks.cfm import SOLVER_NFE

    try:
        grid = [(m.strip(), int(s)) for m, s in (item.split(":") for item in grid.split(",") if item.strip())]
    except ValueError:
        raise OptionError(f"--grid: expected solver:steps pairs like euler:8,rk4:4, got {grid!r}") from None
    for m, s in grid:
        if m not in (*SOLVER_NFE, "bespoke") or s < 1:
            raise OptionError(f"--grid: unknown solver or steps {m}:{s} (solvers: {', '.join(SOLVER_NFE)}, bespoke)")
    report = run_jets_bench(names, test, train, out, num_jets, batch_size, few_step=grid if few_step else None,
                            few_step_jets=few_step_jets, time_jets=time_jets, repeats=repeats, echo=typer.echo)
    typer.echo(report)


@app.command("calo")
def calo(
    models: list[str] = typer.Option(None, "--model", help="Shipped model or run folder [default: shipped for the geometry]."),
    geometry: str = typer.Option("ds2", "--geometry", help="Geometry of the reference samples (made if missing)."),
    num_showers: int = typer.Option(10_000, "--num-showers", help="Showers in the reference (and each generated) sample."),
    classifier_epochs: int = typer.Option(10, "--classifier-epochs", help="Epochs of each classifier run (batch 200, lr 1e-3)."),
    classifier_runs: int = typer.Option(2, "--classifier-runs", help="Repeated classifier runs (error = spread)."),
    solver: str = typer.Option(None, "--solver", help="Override the models' default shape solver."),
    steps: int = typer.Option(None, "--steps", help="Override the models' default solver steps."),
    data: Path = typer.Option(Path("data/calo"), "--data", help="Folder for the cached reference samples."),
    out: Path = typer.Option(Path("bench-results"), "--out", help="Folder for calo_bench.md/.json."),
    protocol: str = typer.Option("hepgen,calochallenge", "--protocol", help="Evaluation protocols, comma separated: hepgen (classifiers as above), calochallenge (the challenge's evaluate.py recipe, comparable with the published rows)."),
    cc_classifier_epochs: int = typer.Option(50, "--cc-classifier-epochs", help="Epochs of each classifier run of the calochallenge protocol (batch 1000, lr 2e-4, as the challenge)."),
    cc_classifier_hidden: str = typer.Option(None, "--cc-classifier-hidden", help="Hidden widths of the calochallenge classifier, comma-separated (default 2048,2048,2048 as the official script; 512,512,512 on a CPU)."),
    cc_classifier_dtype: str = typer.Option(None, "--cc-classifier-dtype", help="float32 or float64 for the calochallenge classifier (default float64 as the official script)."),
) -> None:
    """AUC low/high, FPD/KPD under hepgen's and the CaloChallenge protocol, separation power, ms per shower at batch 1/100/10000, parameters, published rows."""
    from hepgen.bench.calo import bench_calo
    from hepgen.data.geometry import load_geometry
    from hepgen.errors import OptionError
    from hepgen.shipped import shipped_models
    from hepgen.data.calo import shower_file_attrs
    from hepgen.simulate.showers import PRODUCER_VERSION, generate_showers

    load_geometry(geometry)
    require_positive({"--num-showers": num_showers})
    from hepgen.cli.options import classifier_recipe

    cc_options = classifier_recipe(cc_classifier_hidden, cc_classifier_dtype, prefix="--cc-classifier")
    require_positive({"--cc-classifier-epochs": cc_classifier_epochs})
    protocols = tuple(p.strip() for p in protocol.split(",") if p.strip())
    from hepgen.evaluate.calo import PROTOCOLS

    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise OptionError(f"--protocol: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(PROTOCOLS)}")
    data.mkdir(parents=True, exist_ok=True)
    reference = data / f"{geometry}_bench_reference_{num_showers}.h5"
    floor = data / f"{geometry}_bench_floor_{num_showers}.h5"
    for path, seed in ((reference, 9001), (floor, 9002)):
        if not path.exists() or shower_file_attrs(path).get("producer_version") != PRODUCER_VERSION:
            typer.echo(f"making {path} (stand-in version {PRODUCER_VERSION}) ...")
            generate_showers(geometry, num_showers, seed=seed, out=path)
    names = list(models) if models else [n for n in shipped_models() if n.endswith(f"/{geometry}")]
    bench_calo(names, reference, floor, out, out / "calo_work", classifier_epochs=classifier_epochs,
               classifier_runs=classifier_runs, solver=solver, steps=steps, protocols=protocols,
               calochallenge_epochs=cc_classifier_epochs, calochallenge_options=cc_options or None, echo=typer.echo)


@app.command("events")
def events(
    models: list[str] = typer.Option(None, "--model", help="Shipped model or run folder [default: the shipped event models]."),
    processes: list[str] = typer.Option(None, "--process", help="Process of the reference samples (made if missing); repeat for several [default: every process the models generate; ttbar for single-process models]."),
    num_events: int = typer.Option(20_000, "--num-events", help="Events in the reference (and each generated) sample, per process."),
    batch_size: int = typer.Option(10_000, "--batch-size", help="Events per forward pass when sampling."),
    classifier_epochs: int = typer.Option(20, "--classifier-epochs", help="Epochs of each classifier run."),
    classifier_runs: int = typer.Option(2, "--classifier-runs", help="Repeated classifier runs (error = spread)."),
    solver: str = typer.Option(None, "--solver", help="Override the ODE solver of event-cflow models."),
    steps: int = typer.Option(None, "--steps", help="Override the solver steps of event-cflow models."),
    time_events: int = typer.Option(300, "--time-events", help="Events of the producer's timing run (one core)."),
    stop_mass: float = typer.Option(None, "--stop-mass", help="stop: the mass point of the reference (GeV; an untrained one checks the interpolation)."),
    lsp_mass: float = typer.Option(None, "--lsp-mass", help="stop: the neutralino mass of the reference (GeV)."),
    data: Path = typer.Option(Path("data/events"), "--data", help="Folder for the cached reference samples."),
    out: Path = typer.Option(Path("bench-results"), "--out", help="Folder for events_bench.md/.json."),
) -> None:
    """The Table 7.20 columns (W1/KL/JS averages) plus total-E/pT agreement, AUC, events/s vs the producer;
    with several processes (a multi-process event-cflow) one table per process."""
    from hepgen.bench.events import bench_event_processes, bench_events, reference_files
    from hepgen.errors import OptionError
    from hepgen.models.registry import load_model
    from hepgen.shipped import shipped_models
    from hepgen.simulate.events import PROCESSES, STOP_MASSES

    for process in processes or []:
        if process not in PROCESSES:
            raise OptionError(f"--process: unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
    require_positive({"--num-events": num_events, "--batch-size": batch_size, "--time-events": time_events})
    masses = None
    if stop_mass is not None or lsp_mass is not None:
        if "stop" not in (processes or []):
            raise OptionError("--stop-mass/--lsp-mass: give --process stop too")
        masses = (STOP_MASSES[0] if stop_mass is None else stop_mass, STOP_MASSES[1] if lsp_mass is None else lsp_mass)
    names = list(models) if models else [n for n in shipped_models() if n.startswith("event-")]
    if not names:
        raise OptionError("--model: no event model given and none shipped")
    if not processes:
        generated = {p for n in names for p in load_model(n).processes}
        processes = [p for p in PROCESSES if p in generated] or ["ttbar"]
    if len(processes) > 1:
        bench_event_processes(names, list(processes), data, num_events, out, batch_size=batch_size,
                              classifier_runs=classifier_runs, classifier_epochs=classifier_epochs, solver=solver,
                              steps=steps, time_events=time_events, echo=typer.echo, masses=masses)
        typer.echo((out / "events_bench.md").read_text())
        return
    process = processes[0]
    reference, floor = reference_files(data, process, num_events, masses, echo=typer.echo)
    bench_events(names, reference, floor, out, out / "events_work", batch_size=batch_size,
                 classifier_runs=classifier_runs, classifier_epochs=classifier_epochs, solver=solver, steps=steps,
                 echo=typer.echo, process=process, time_events=time_events, masses=masses)
    typer.echo((out / "events_bench.md").read_text())


@app.command("hits")
def hits(
    models: list[str] = typer.Option(None, "--model", help="Shipped model or run folder [default: the shipped hit models]."),
    jet_type: str = typer.Option("t", "--jet-type", help="Jet type of the reference clouds (made if missing)."),
    num_jets: int = typer.Option(5000, "--num-jets", help="Clouds in the reference (and each generated) sample."),
    num_pairs: int = typer.Option(1000, "--num-pairs", help="Pairs of clouds for the EMD."),
    teacher_steps: int = typer.Option(64, "--teacher-steps", help="DDIM steps of the undistilled row (0: none)."),
    time_jets: int = typer.Option(200, "--time-jets", help="Jets of the producer's timing run (one worker)."),
    data: Path = typer.Option(Path("data/hits"), "--data", help="Folder for the cached reference clouds."),
    out: Path = typer.Option(Path("bench-results"), "--out", help="Folder for hits_bench.md/.json."),
) -> None:
    """W1 of the total energy, pair EMD and W1 of the multiplicity against a fresh reference, beside the
    truth floor, with µs per cloud against the producer timed in the same run (default and undistilled samplers)."""
    from hepgen.bench.hits import bench_hits, reference_files
    from hepgen.errors import OptionError
    from hepgen.shipped import shipped_models

    require_positive({"--num-jets": num_jets, "--num-pairs": num_pairs, "--time-jets": time_jets})
    if teacher_steps < 0:
        raise OptionError(f"--teacher-steps must be 0 or positive, got {teacher_steps}")
    names = list(models) if models else [n for n in shipped_models() if n.startswith("ddpm-hits/")]
    if not names:
        raise OptionError("--model: no hit model given and none shipped")
    reference, floor = reference_files(data, jet_type, num_jets, echo=typer.echo)
    bench_hits(names, reference, floor, out, num_pairs=num_pairs, teacher_steps=teacher_steps,
               time_jets=time_jets, echo=typer.echo)
    typer.echo(f"wrote {out / 'hits_bench.md'}")
