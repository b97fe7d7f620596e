"""Reference jets from Pythia 8 + FastJet, in the JetNet layout.

This is the "expensive simulator" every jet surrogate in hepgen learns from. It follows
the recipe of the JetNet datasets (Kansal et al., arXiv:2106.11535; seed 000 L2003-2042)
as closely as Pythia alone allows:

* 13 TeV pp collisions, one 2->2 hard process per jet type with the hard scale in a
  narrow window around 1 TeV (``pt_window``, default 990-1010 GeV, i.e. the JetNet
  spread dpT/pT = 0.01):

  ====  ==========================================================================
  g     ``HardQCD:gg2gg`` -- both outgoing gluons are candidates
  q     ``HardQCD:qq2qq`` + ``HardQCD:qqbar2qqbarNew`` -- outgoing u, d, s quarks
  t     ``Top:gg2ttbar`` + ``Top:qqbar2ttbar`` with W -> hadrons
  w     ``WeakDoubleBoson:ffbar2WW`` with W -> hadrons
  z     ``WeakDoubleBoson:ffbar2gmZgmZ`` (pure Z) with Z -> hadrons
  ====  ==========================================================================

* parton shower and hadronisation with Pythia's default tune;
* all visible final-state particles (neutrinos dropped), taken massless as in JetNet,
  clustered with anti-kT R = 0.8 (FastJet);
* a jet is kept if |eta| < 2.5 and its axis lies within Delta R < 0.8 of its
  hard-process object (gluon, light quark, t, W or Z); for W and Z both decay quarks,
  for t the two quarks of its W, must lie within Delta R < 0.8 of the resonance. The b
  of the top is not required to be inside: JetNet's top jets show the W peak of jets
  that miss the b-quark products (seed 000 L2038-2041), and this keeps that shoulder;
* multi-parton interactions are off by default (``mpi=False``): with them on, the
  underlying event shifts the W/Z/t mass peaks up by several GeV and the top-jet
  multiplicity far above JetNet's mean of about 60;
* constituents sorted by pT, truncated to the P hardest; features (etarel, phirel
  wrapped to (-pi, pi], ptrel = pT/pT_jet, mask); ``jet_features`` = (pt, eta, mass,
  num_particles) of the full jet (mass from the massless constituents).

The event loop, the clustering and the matching are those of
:mod:`hepgen.simulate.jetmatching`, shared with the dark-jet producer.

Work is split into chunks of :data:`CHUNK_JETS` jets whose Pythia seeds derive from
(seed, chunk index) only, so the output does not depend on the number of workers.
Chunks run in parallel through :mod:`hepgen.simulate.parallel` (Dask).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from hepgen.data.jetnet import JET_TYPES, JetSample
from hepgen.errors import OptionError
from hepgen.simulate.jetmatching import delta_r, simulate_matched_jets
from hepgen.simulate.parallel import chunk_sizes, derive_seed, run_chunks

CHUNK_JETS = 200
JET_RADIUS = 0.8
MAX_ABS_ETA = 2.5
_NEUTRINOS = (12, 14, 16)
_HADRONIC = "1 2 3 4 5"


@dataclass(frozen=True)
class ProcessSpec:
    """Pythia settings and the hard-process objects that seed a jet of one type."""

    settings: tuple[str, ...]
    candidate_ids: tuple[int, ...]  # |PDG id| of hard outgoing objects that make a jet
    resonance: bool  # match on decay products (t, W, Z) instead of the parton itself


PROCESSES: dict[str, ProcessSpec] = {
    "g": ProcessSpec(("HardQCD:gg2gg = on",), (21,), False),
    "q": ProcessSpec(("HardQCD:qq2qq = on", "HardQCD:qqbar2qqbarNew = on"), (1, 2, 3), False),
    "t": ProcessSpec(
        ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", f"24:onIfAny = {_HADRONIC}"),
        (6,),
        True,
    ),
    "w": ProcessSpec(
        ("WeakDoubleBoson:ffbar2WW = on", "24:onMode = off", f"24:onIfAny = {_HADRONIC}"), (24,), True
    ),
    "z": ProcessSpec(
        (
            "WeakDoubleBoson:ffbar2gmZgmZ = on",
            "WeakZ0:gmZmode = 2",
            "23:onMode = off",
            f"23:onIfAny = {_HADRONIC}",
        ),
        (23,),
        True,
    ),
}


def _make_pythia(jet_type: str, seed: int, pt_window: tuple[float, float], mpi: bool = False):
    from hepgen.simulate.pythia import make_pythia

    return make_pythia((f"PhaseSpace:pTHatMin = {pt_window[0]}", f"PhaseSpace:pTHatMax = {pt_window[1]}",
                        *PROCESSES[jet_type].settings), seed, mpi, f"jet type {jet_type!r}")


def _boson_quarks(event, i: int) -> list[int]:
    """Indices of the quarks from the W/Z decays in the decay chain of resonance ``i``.

    For a W or Z these are its own decay quarks; for a top, those of its W (the b is
    deliberately left out, see the module docstring).
    """
    out = []
    for d in event[event[i].iBotCopyId()].daughterList():
        if event[d].idAbs() in (23, 24):
            out.extend(_boson_quarks(event, d))
        elif event[i].idAbs() in (23, 24):
            out.append(d)
    return out


def _hard_objects(event, spec: ProcessSpec) -> list[tuple[float, float]]:
    """(eta, phi) of the hard-process objects that qualify as jet seeds.

    In Pythia's event record the outgoing objects of a 2->2 hard process sit at
    entries 5 and 6. A resonance qualifies only if all its decay quarks lie within
    Delta R < R of its direction (a boosted, contained hadronic decay).
    """
    found = []
    for i in (5, 6):
        part = event[i]
        if part.idAbs() not in spec.candidate_ids:
            continue
        eta, phi = part.eta(), part.phi()
        if spec.resonance and any(
            delta_r(eta, phi, event[m].eta(), event[m].phi()) >= JET_RADIUS for m in _boson_quarks(event, i)
        ):
            continue
        found.append((eta, phi))
    return found


def simulate_chunk(
    jet_type: str,
    num_jets: int,
    num_particles: int,
    seed: int,
    pt_window: tuple[float, float] = (990.0, 1010.0),
    mpi: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``num_jets`` matched jets with one Pythia instance seeded by ``seed``.

    Returns ``(particle_features (n, P, 4), jet_features (n, 4))`` as float32.
    """
    spec = PROCESSES[jet_type]
    return simulate_matched_jets(
        _make_pythia(jet_type, seed, pt_window, mpi),
        num_jets,
        num_particles,
        radius=JET_RADIUS,
        targets=lambda event: _hard_objects(event, spec),
        visible=lambda p: p.isFinal() and p.idAbs() not in _NEUTRINOS,
        pt_min=100.0,
        accept=lambda j: abs(j.eta()) < MAX_ABS_ETA,
        max_events=100 * num_jets + 1000,
        what=f"{jet_type} jets matched",
        progress=progress,
    )


def generate_jets(
    jet_type: str,
    num_jets: int,
    num_particles: int = 30,
    seed: int = 0,
    workers: int | None = None,
    scheduler: str | None = None,
    pt_window: tuple[float, float] = (990.0, 1010.0),
    mpi: bool = False,
    progress: bool = True,
) -> JetSample:
    """Simulate ``num_jets`` reference jets of one type (see the module docstring).

    ``workers`` local processes (default: all cores) or the Dask cluster at
    ``scheduler`` share the chunks; the result depends only on ``seed``.
    """
    if jet_type not in PROCESSES:
        raise OptionError(f"--jet-type: unknown jet type {jet_type!r}; choose one of {', '.join(JET_TYPES)}")
    if num_jets <= 0:
        raise OptionError(f"--num-jets must be positive, got {num_jets}")
    if num_particles <= 0:
        raise OptionError(f"--num-particles must be positive, got {num_particles}")
    sizes = chunk_sizes(num_jets, CHUNK_JETS)
    tasks = [
        (jet_type, size, num_particles, derive_seed(seed, i), pt_window, mpi) for i, size in enumerate(sizes)
    ]
    results = run_chunks(
        simulate_chunk,
        tasks,
        weights=sizes,
        workers=workers,
        scheduler=scheduler,
        desc=f"Pythia {jet_type} jets",
        unit="jet",
        progress=progress,
    )
    pf = np.concatenate([r[0] for r in results])
    jf = np.concatenate([r[1] for r in results])
    return JetSample(pf, jf, jet_type=jet_type)
