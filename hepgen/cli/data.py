"""``hepgen data ...``: make reference samples with the real generators."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from hepgen.cli.options import check_output_file, require_positive

app = typer.Typer(help="Make reference samples (Pythia 8 + FastJet, ...).", no_args_is_help=True)


class JetType(str, Enum):
    g = "g"
    q = "q"
    t = "t"
    w = "w"
    z = "z"


@app.command("jets")
def jets(
    jet_type: JetType = typer.Option(..., "--jet-type", help="g, q (light quark), t, w or z jets."),
    num_particles: int = typer.Option(30, "--num-particles", help="Particles kept per jet (JetNet: 30 or 150)."),
    num_jets: int = typer.Option(..., "--num-jets", help="Number of jets to produce."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same file."),
    out: Path = typer.Option(..., "--out", help="Output HDF5 file (JetNet layout)."),
    workers: int = typer.Option(None, "--workers", help="Local worker processes [default: all cores]."),
    scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler to run on instead."),
    mpi: bool = typer.Option(False, "--mpi/--no-mpi", help="Multi-parton interactions (off as in JetNet-like)."),
    pt_min: float = typer.Option(990.0, "--pt-min", help="Lower edge of the hard-process pT window [GeV]."),
    pt_max: float = typer.Option(1010.0, "--pt-max", help="Upper edge of the hard-process pT window [GeV]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Reference jets from Pythia 8 + FastJet (anti-kT R=0.8) in the JetNet HDF5 layout."""
    import time

    from hepgen.data.jetnet import write_jets
    from hepgen.errors import OptionError
    from hepgen.simulate.jets import generate_jets

    require_positive({"--num-jets": num_jets, "--num-particles": num_particles})
    if not 0 < pt_min < pt_max:
        raise OptionError(f"--pt-min/--pt-max: need 0 < pt-min < pt-max, got {pt_min}, {pt_max}")
    check_output_file(out)
    start = time.perf_counter()
    sample = generate_jets(
        jet_type.value, num_jets, num_particles, seed=seed, workers=workers, scheduler=scheduler,
        pt_window=(pt_min, pt_max), mpi=mpi, progress=progress,
    )
    elapsed = time.perf_counter() - start
    write_jets(sample, out, attrs={"seed": seed, "generator": "pythia8+fastjet", "mpi": int(mpi)})
    typer.echo(f"wrote {len(sample)} {jet_type.value} jets x {num_particles} particles to {out} "
               f"({len(sample) / elapsed:.0f} jets/s)")


class DarkJetKind(str, Enum):
    aachen = "aachen"
    qcd = "qcd"


@app.command("dark-jets")
def dark_jets(
    kind: DarkJetKind = typer.Option(..., "--kind", help="aachen (semi-visible jets: Hidden Valley Z'(2 TeV) -> "
                                     "dark quarks, r_inv ~ 0.75) or qcd (their background, HardQCD)."),
    num_jets: int = typer.Option(..., "--num-jets", help="Number of jets to produce."),
    num_particles: int = typer.Option(50, "--num-particles", help="Constituents kept per jet (DarkCLR: 50)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same file."),
    out: Path = typer.Option(..., "--out", help="Output HDF5 file (JetNet layout)."),
    workers: int = typer.Option(None, "--workers", help="Local worker processes [default: all cores]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Jets of pT 150-300 GeV, |eta| < 2, anti-kT R=0.8 for DarkCLR (seed 002 eqs. 5.2-5.3;
    hepgen.simulate.darkjets documents the Hidden Valley settings)."""
    from hepgen.data.jetnet import write_jets
    from hepgen.simulate.darkjets import generate_dark_jets

    require_positive({"--num-jets": num_jets, "--num-particles": num_particles})
    check_output_file(out)
    sample = generate_dark_jets(kind.value, num_jets, num_particles, seed=seed, workers=workers, progress=progress)
    write_jets(sample, out, attrs={"seed": seed, "generator": "pythia8+fastjet", "kind": kind.value})
    typer.echo(f"wrote {len(sample)} {kind.value} jets x {num_particles} particles to {out} "
               f"(mean multiplicity {sample.jet_features[:, 3].mean():.1f})")


class Geometry(str, Enum):
    ds1_photons = "ds1-photons"
    ds1_pions = "ds1-pions"
    ds2 = "ds2"
    ds3 = "ds3"
    ild_photons = "ild-photons"
    ild_pions = "ild-pions"


@app.command("calo")
def calo(
    geometry: Geometry = typer.Option(..., "--geometry", help="CaloChallenge geometry or an ILD-like grid (photons: ECAL, pions: AHCAL)."),
    num_showers: int = typer.Option(..., "--num-showers", help="Number of showers to produce."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same file."),
    out: Path = typer.Option(..., "--out", help="Output HDF5 file (CaloChallenge layout)."),
    workers: int = typer.Option(None, "--workers", help="Local worker processes [default: all cores]."),
    scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler to run on instead."),
    chunk: int = typer.Option(None, "--chunk", help="Showers per task [default: by geometry size]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Reference showers from the parametrised (GFlash-type) simulator, a stand-in for Geant4."""
    import time

    from hepgen.simulate.showers import generate_showers

    require_positive({"--num-showers": num_showers, "--chunk": chunk})
    check_output_file(out)
    start = time.perf_counter()
    generate_showers(geometry.value, num_showers, seed=seed, workers=workers, scheduler=scheduler,
                     progress=progress, out=out, chunk=chunk,
                     attrs={"seed": seed})
    elapsed = time.perf_counter() - start
    typer.echo(f"wrote {num_showers} {geometry.value} showers to {out} ({num_showers / elapsed:.0f} showers/s)")


@app.command("hits")
def hits(
    jet_type: JetType = typer.Option(..., "--jet-type", help="g, q (light quark), t, w or z jets."),
    num_jets: int = typer.Option(..., "--num-jets", help="Number of jets to produce."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same file."),
    out: Path = typer.Option(..., "--out", help="Output HDF5 file (keys hits, mask)."),
    max_hits: int = typer.Option(300, "--max-hits", help="Most energetic cells kept per jet."),
    workers: int = typer.Option(None, "--workers", help="Local worker processes [default: all cores]."),
    scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler to run on instead."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Calorimeter hit clouds of jets: Pythia jets on a 125 x 125 ECAL-like eta-phi grid (seed 004)."""
    import time

    from hepgen.data.hits import write_hits
    from hepgen.simulate.hits import generate_hits

    require_positive({"--num-jets": num_jets})
    check_output_file(out)
    start = time.perf_counter()
    sample = generate_hits(jet_type.value, num_jets, seed=seed, max_hits=max_hits, workers=workers,
                           scheduler=scheduler, progress=progress)
    write_hits(sample, out)
    typer.echo(f"wrote {len(sample)} {jet_type.value}-jet hit clouds (up to {max_hits} hits, mean "
               f"{sample.multiplicity.mean():.0f}) to {out} ({len(sample) / (time.perf_counter() - start):.0f} jets/s)")


class Process(str, Enum):
    ttbar = "ttbar"
    wjets = "wjets"
    zjets = "zjets"
    multijet = "multijet"
    gammajets = "gammajets"
    stop = "stop"
    htautau = "htautau"
    hcharged = "hcharged"
    leptoquark = "leptoquark"


@app.command("events")
def events(
    process: Process = typer.Option(..., "--process", help="ttbar, wjets, zjets, multijet, gammajets or stop "
                                    "(stop pairs, 220 GeV -> top + 20 GeV neutralino); the AnomalyCLR signals "
                                    "htautau (h0 60 GeV -> tau tau), hcharged (H+- 60 GeV -> tau nu), "
                                    "leptoquark (LQ pairs 80 GeV -> b tau)."),
    num_events: int = typer.Option(..., "--num-events", help="Number of selected events to produce."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same file."),
    out: Path = typer.Option(..., "--out", help="Output text file (Dark Machines format, MeV)."),
    workers: int = typer.Option(None, "--workers", help="Local worker processes [default: all cores]."),
    scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler to run on instead."),
    mpi: bool = typer.Option(False, "--mpi/--no-mpi", help="Multi-parton interactions (off: ~3x faster)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    stop_mass: float = typer.Option(None, "--stop-mass", help="stop: the stop mass in GeV [default 220]."),
    lsp_mass: float = typer.Option(None, "--lsp-mass", help="stop: the neutralino mass in GeV [default 20]."),
) -> None:
    """Reference collision events: Pythia 8, FastJet anti-kT R=0.4 and a parametrised detector
    (a stand-in for Delphes), with the Dark Machines object and event selection. Every event
    is weighted by the selected cross-section in pb over the number of events in the file
    (the weights of a file sum to its cross-section; files concatenate into a cocktail)."""
    from hepgen.simulate.events import generate_events

    require_positive({"--num-events": num_events})
    check_output_file(out)
    summary = generate_events(process.value, num_events, seed=seed, out=out, workers=workers,
                              scheduler=scheduler, mpi=mpi, progress=progress, stop_mass=stop_mass,
                              lsp_mass=lsp_mass)
    typer.echo(f"wrote {num_events} {process.value} events to {out} ({num_events / summary.seconds:.1f} events/s; "
               f"{summary.efficiency:.0%} of {summary.generated} generated passed the selection, "
               f"sigma x eff = {summary.selected_sigma_pb:.4g} pb, the sum of the event weights)")


class DijetProcess(str, Enum):
    qcd = "qcd"
    wprime = "wprime"


@app.command("dijets")
def dijets(
    process: DijetProcess = typer.Option(..., "--process", help="qcd (HardQCD, pT-hat > 1.1 TeV) or wprime "
                                         "(the LHCO R&D signal W'(3.5 TeV) -> X(500 GeV) Y(100 GeV), X, Y -> qq)."),
    num_events: int = typer.Option(..., "--num-events", help="Number of events passing the 1.2 TeV jet trigger."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same file."),
    out: Path = typer.Option(..., "--out", help="Output HDF5 file (features with columns, mjj, jets)."),
    workers: int = typer.Option(None, "--workers", help="Local worker processes [default: all cores]."),
    scheduler: str = typer.Option(None, "--scheduler", help="Address of a Dask scheduler to run on instead."),
    mpi: bool = typer.Option(False, "--mpi/--no-mpi", help="Multi-parton interactions (off: faster, lighter jets)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """LHCO-like dijet events: Pythia 8, anti-kT R=1.0 (FastJet), the features mjj, mj1, mj1-mj2, tau21 of both jets."""
    import time

    from hepgen.data.dijets import write_dijets
    from hepgen.simulate.dijets import generate_dijets

    require_positive({"--num-events": num_events})
    check_output_file(out)
    start = time.perf_counter()
    sample = generate_dijets(process.value, num_events, seed=seed, workers=workers, scheduler=scheduler, mpi=mpi,
                             progress=progress)
    elapsed = time.perf_counter() - start
    write_dijets(sample, out)
    typer.echo(f"wrote {len(sample)} {process.value} dijet events to {out} ({len(sample) / elapsed:.1f} events/s; "
               f"{len(sample) / sample.attrs['generated']:.0%} of {sample.attrs['generated']} generated passed the trigger)")
