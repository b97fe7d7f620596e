"""``hepgen train``, ``hepgen sample``, ``hepgen models``."""

from __future__ import annotations

from pathlib import Path

import typer

from hepgen.cli.options import check_output_file, require_positive


def trainable_models() -> list[str]:
    """Every model ``hepgen train`` knows, pillar by pillar (jets, showers, grids, hit clouds, events)."""
    from hepgen.models.assemblies.calo import CALO_MODELS
    from hepgen.models.assemblies.events import EVENT_MODELS
    from hepgen.models.assemblies.grids import GRID_MODELS
    from hepgen.models.assemblies.hits import HIT_MODELS
    from hepgen.training.run import MODELS as JET_MODELS

    return [*JET_MODELS, *CALO_MODELS, *GRID_MODELS, *HIT_MODELS, *EVENT_MODELS]


def train(
    model: str = typer.Argument(..., help="Model name: jets mdma-gan, mdma-flow, epic-fm, epic-gan, nf, nf-c, nf-cc, "
                                          "tnf, tgan, ipf, pf, apf; showers calodream (with a latent section: laViT), caloinn, "
                                          "caloinn-vae, mdma-calo; grids gan-3d, wgan-3d, bib-ae; hit clouds "
                                          "ddpm-hits; events event-cflow, event-rqs, event-maf-types, event-maf-next."),
    data: list[Path] = typer.Option(..., "--data", help="Training data: jets (JetNet layout), showers (CaloChallenge layout) or events (Dark Machines text). event-cflow: repeat for several processes (one file each; the process ID field of the events says which), giving one process-conditioned model."),
    out: Path = typer.Option(..., "--out", help="Run folder to create (config, transforms, checkpoints, weights)."),
    config: Path = typer.Option(None, "--config", help="YAML overriding sections network/training/sampler."),
    max_epochs: int = typer.Option(None, "--max-epochs", help="Stop after this many epochs."),
    max_time: float = typer.Option(None, "--max-time", help="Stop after this many minutes."),
    num_particles: int = typer.Option(None, "--num-particles", help="Truncate the data to P particles (e.g. 30)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    devices: str = typer.Option("auto", "--devices", help="Lightning devices: auto, a count, or a list like 0,1."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Nodes for multi-node DDP (launched by your scheduler)."),
    num_showers: int = typer.Option(None, "--num-showers", help="Use only the first N showers of --data (calorimeter models)."),
    num_events: int = typer.Option(None, "--num-events", help="Use only the first N events of --data (event models)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar (off for background runs with a log file)."),
) -> None:
    """Train a generative model; the run folder then samples with `hepgen sample RUN_DIR`."""
    from importlib import import_module

    from hepgen.models.assemblies.calo import CALO_MODELS
    from hepgen.models.assemblies.events import EVENT_MODELS
    from hepgen.models.assemblies.grids import GRID_MODELS
    from hepgen.models.assemblies.hits import HIT_MODELS
    from hepgen.training.run import train_jet_model

    # model family -> (trainer, the --num-* option it takes)
    trainers = [(GRID_MODELS, "hepgen.training.grids:train_grid_model", {"num_showers": num_showers}),
                (HIT_MODELS, "hepgen.training.hits:train_hits_model", {}),
                (EVENT_MODELS, "hepgen.training.events:train_event_model", {"num_events": num_events}),
                (CALO_MODELS, "hepgen.training.calo:train_calo_model", {"num_showers": num_showers})]
    from hepgen.training.run import MODELS as JET_MODELS

    from hepgen.errors import OptionError

    if model not in (*JET_MODELS, *(n for names, _, _ in trainers for n in names)):
        raise OptionError(f"unknown model {model!r}; choose from {', '.join(trainable_models())}")
    if len(data) > 1 and model != "event-cflow":
        raise OptionError(f"--data: {model} trains on one file; only event-cflow takes several (one per process)")
    if model != "event-cflow":
        data = data[0]
    for names, target, extra in trainers:
        if model in names:
            module, func = target.split(":")
            run = getattr(import_module(module), func)(model, data, out, config, max_epochs, max_time, seed, resume,
                                                       progress=progress, devices=devices, num_nodes=num_nodes,
                                                       **extra)
            typer.echo(f"run folder: {run}")
            return

    run = train_jet_model(model, data, out, config, max_epochs, max_time, num_particles, seed, resume, progress=progress,
                          devices=devices, num_nodes=num_nodes)
    typer.echo(f"run folder: {run}")


def sample(
    model: str = typer.Argument(..., help="A run folder or a shipped model (see `hepgen models`)."),
    num: int = typer.Option(..., "--num", help="Number of jets, showers or events."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same file."),
    out: Path = typer.Option(..., "--out", help="Output file: HDF5 (JetNet or CaloChallenge layout) or Dark Machines text for events."),
    batch_size: int = typer.Option(None, "--batch-size", help="Jets (default: the model's, 256 unless its config says otherwise) or showers (default 1000) per forward pass."),
    solver: str = typer.Option(None, "--solver", help="ODE solver of flow-matching models (euler, midpoint, rk4, dopri5, bespoke); ancestral or ddim for ddpm-hits."),
    steps: int = typer.Option(None, "--steps", help="ODE solver steps of flow-matching models."),
    process: str = typer.Option(None, "--process", help="Event models: the process to generate (ttbar, wjets, zjets, multijet, gammajets, stop); needed for a multi-process model such as event-cflow/sm; stop without --stop-mass/--lsp-mass is the default point 220/20 GeV."),
    stop_mass: float = typer.Option(None, "--stop-mass", help="Event models with stop: the stop mass in GeV (a mass scan is a condition); default 220 (the Dark Machines stop_01 point 220/20 GeV, a trained point of event-cflow/sm). A mass point the model was not trained on is interpolated between the trained ones (extrapolated outside the scan; the sampler prints which)."),
    lsp_mass: float = typer.Option(None, "--lsp-mass", help="Event models with stop: the neutralino mass in GeV; default 20."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar (off for background runs with a log file)."),
) -> None:
    """Sample jets, showers or events from a trained or shipped model. Events are written in
    the Dark Machines format with the process ID set and every event weighted by the
    process's selected cross-section in pb over --num (files concatenate into a cocktail)."""
    import time

    from hepgen.data.jetnet import write_jets
    from hepgen.errors import OptionError
    from hepgen.models.registry import load_model

    require_positive({"--batch-size": batch_size, "--num": num})
    check_output_file(out)
    surrogate = load_model(model)
    from hepgen.models.assemblies.calo import CaloSurrogate
    from hepgen.models.assemblies.events import EventSurrogate

    if isinstance(surrogate, EventSurrogate):
        from hepgen.data.darkmachines import write_events

        start = time.perf_counter()
        events = surrogate.sample(num, seed=seed, batch_size=batch_size or 10_000, method=solver, steps=steps,
                                  process=process, stop_mass=stop_mass, lsp_mass=lsp_mass, progress=progress)
        elapsed = time.perf_counter() - start
        write_events(events, out)
        note = surrogate.point_note(process, stop_mass, lsp_mass)
        if note:
            typer.echo(note)
        typer.echo(f"wrote {num} {events.process[0]} events to {out} ({num / elapsed:.0f} events/s; "
                   f"{100 * surrogate.rejected_fraction:.1f}% of drawn events failed the selection and were redrawn)")
        return
    if process is not None or stop_mass is not None or lsp_mass is not None:
        raise OptionError("--process/--stop-mass/--lsp-mass: only event models generate processes")

    from hepgen.models.assemblies.hits import HitSurrogate

    if isinstance(surrogate, HitSurrogate):
        from hepgen.data.hits import write_hits

        start = time.perf_counter()
        clouds = surrogate.sample(num, seed=seed, batch_size=batch_size, method=solver, steps=steps, progress=progress)
        elapsed = time.perf_counter() - start
        write_hits(clouds, out)
        typer.echo(f"wrote {num} hit clouds to {out} ({1e6 * elapsed / num:.0f} µs per jet)")
        return

    from hepgen.models.assemblies.grids import GridSurrogate

    if isinstance(surrogate, (CaloSurrogate, GridSurrogate)):
        from hepgen.data.calo import write_showers

        start = time.perf_counter()
        default_batch = None if isinstance(surrogate, GridSurrogate) else 1000  # grid decoders: 100
        showers = surrogate.sample(num, seed=seed, batch_size=batch_size or default_batch, method=solver, steps=steps,
                                   progress=progress)
        elapsed = time.perf_counter() - start
        write_showers(showers, out, attrs={"model": surrogate.cfg["model"], "seed": seed})
        typer.echo(f"wrote {num} {surrogate.cfg['geometry']} showers to {out} ({1e3 * elapsed / num:.2f} ms per shower)")
        return
    start = time.perf_counter()
    jets = surrogate.sample(num, seed=seed, batch_size=batch_size, method=solver, steps=steps, progress=progress)
    elapsed = time.perf_counter() - start
    write_jets(jets, out, attrs={"model": surrogate.cfg["model"], "seed": seed, "relative_jet_features": 1})
    typer.echo(f"wrote {num} jets to {out} ({1e6 * elapsed / num:.1f} µs per jet)")


def student(
    run: Path = typer.Argument(..., help="Run folder of a flow-matching model (mdma-flow, epic-fm, event-cflow) or of ddpm-hits."),
    steps: list[int] = typer.Option([4], "--steps", help="Steps (= network evaluations) of a bespoke solver; repeat for several. For ddpm-hits: the distilled sampler's steps."),
    pairs: int = typer.Option(2048, "--pairs", help="Noise / reference pairs to fit on."),
    reference_steps: int = typer.Option(None, "--reference-steps", help="Midpoint steps of the teacher's reference solve [default: 32] (ddpm-hits: the teacher's DDIM steps, halved each round [default: 64]).", show_default=False),
    iterations: int = typer.Option(400, "--iterations", help="Optimisation steps per solver (ddpm-hits: per distillation round)."),
    default: int = typer.Option(None, "--default", help="Make the solver with this many steps the run's sampler."),
    data: Path = typer.Option(None, "--data", help="ddpm-hits: training clouds to distil on [default: the run's training file]."),
) -> None:
    """Few-step students: bespoke solvers for a flow-matching jet or event model (RUN/solvers.pt), progressive distillation for ddpm-hits (RUN/student.pt)."""
    import yaml

    from hepgen.errors import InputFileError, OptionError
    from hepgen.training.student import fit_jet_solvers

    if not run.is_dir() or not (run / "config.yaml").exists():
        raise InputFileError(f"{run}: not a run folder")
    run_cfg = yaml.safe_load((run / "config.yaml").read_text())
    is_hits = run_cfg.get("model") == "ddpm-hits"
    # ddpm-hits distils from 64 DDIM steps: the student copies its teacher's few-step solve,
    # and the shipped network's DDIM 16 / 64 give a mean total energy of 1093 / 1260 GeV
    # against 1275 in the test clouds (its 8-step student of 16 steps: W1 189 GeV, of 64: 89)
    if reference_steps is None:  # ddpm-hits: 64, or the largest power of two within a shorter chain
        chain = int(run_cfg.get("diffusion", {}).get("steps", 512))
        reference_steps = 2 ** min(6, max(chain, 1).bit_length() - 1) if is_hits else 32
    if any(k < 1 for k in steps) or pairs < 2 or iterations < 1 or reference_steps < 1:
        raise OptionError("--steps, --pairs, --iterations and --reference-steps must be positive")
    if is_hits:
        from hepgen.training.hits import distill_hits_run

        if len(steps) != 1:
            raise OptionError("ddpm-hits: give one --steps, the distilled sampler's")
        start = reference_steps if reference_steps > steps[0] else 64
        report = distill_hits_run(run, steps[0], start, iterations, data=data, set_default=default is not None)
        for r in report:
            typer.echo(f"distilled to {r['steps']} DDIM steps: loss {r['loss_first']:.3g} -> {r['loss_last']:.3g}")
        if default is not None:
            typer.echo(f"{run} now samples with the {steps[0]}-step distilled sampler")
        return
    if yaml.safe_load((run / "config.yaml").read_text()).get("model") == "event-cflow":
        from hepgen.training.student import fit_event_solvers

        report = fit_event_solvers(run, steps, pairs, {"method": "midpoint", "steps": reference_steps}, iterations,
                                   set_default=default)
    else:
        report = fit_jet_solvers(run, steps, pairs, {"method": "midpoint", "steps": reference_steps}, iterations,
                                 set_default=default)
    for k, r in report.items():
        typer.echo(f"bespoke solver, {k} steps: MSE to the {reference_steps}-step midpoint solve {r['mse']:.2e}")
    if default is not None:
        typer.echo(f"{run} now samples with the {default}-step bespoke solver")


def calibrate(
    run: Path = typer.Argument(..., help="Run folder of a grid model (bib-ae, wgan-3d, gan-3d)."),
    data: Path = typer.Option(None, "--data", help="Training showers to calibrate on [default: the run's training file]."),
    num: int = typer.Option(5000, "--num", help="Showers generated to learn the model's own response distribution."),
    seed: int = typer.Option(7, "--seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Per-shower response calibration of a grid model (RUN/calibration.yaml, then its default sampler): each
    generated shower is scaled onto the training showers' E_vis / E_inc at the same quantile of its energy."""
    from hepgen.training.grids import calibrate_grid_run

    report = calibrate_grid_run(run, data, num, seed, progress)
    for tag, dev in report.items():
        typer.echo(f"response per energy bin, largest deviation {tag}: mu90 {dev['mu90']:.4f}, sigma90 {dev['sigma90']:.4f}")
    typer.echo(f"{run} now samples with the response calibration (sampler.calibrate: response)")


def models() -> None:
    """List the trained models shipped with hepgen."""
    from hepgen.shipped import card, shipped_models

    found = shipped_models()
    if not found:
        typer.echo("no shipped models")
    from hepgen.simulate.showers import PRODUCER_VERSION

    for name, folder in found.items():  # one line per model, NAME first (INTERFACE.md)
        info = card(folder)
        version = info.get("stand_in_version")
        flag = ""
        if version is not None and int(version) < PRODUCER_VERSION:
            flag = (f" [older stand-in: trained on version {version} of the shower stand-in, `hepgen data calo` "
                    f"now makes version {PRODUCER_VERSION}; against new showers it scores worse than its card]")
        summary = " ".join(str(info.get("summary", "")).split())
        typer.echo(f"{name:20s} {summary}{flag}")
