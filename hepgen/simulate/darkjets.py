"""Semi-visible (dark) jets from Pythia's Hidden Valley module and their QCD background, in
the JetNet layout (DarkCLR, seed 002 L1349-1364, eqs. 5.2-5.3).

The "Aachen" benchmark (seed 002 L1352-1356, refs. [183, 184]; the Hidden Valley module of
Carloni and Sjostrand, ref. [185]): pp -> Z' -> q_d q_d-bar with m(Z') = 2 TeV and a dark
quark of 500 MeV, charged under a dark SU(3); the dark sector showers and hadronises into
dark pions (4 GeV) and dark rho mesons (5 GeV); the neutral diagonal dark rho mixes with
the Z' and decays to SM quarks, every other dark meson is stable and invisible. The Pythia
settings (:data:`AACHEN`)::

    HiddenValley:ffbar2Zv = on          4900023 (Z_v = Z'): m0 = 2000, decays only to 4900101
    HiddenValley:Ngauge = 3             dark SU(3)
    HiddenValley:nFlav = 2              two dark flavours
    HiddenValley:fragment = on          dark hadronisation
    HiddenValley:FSR = on, alphaOrder = 1, setLambda = on, Lambda = 5.0, pTminFSR = 5.5
                                        running dark coupling, Lambda_d = 5 GeV (the mass
                                        scale the seed varies to 10 and 20 GeV, L1360)
    HiddenValley:spinFv = 0
    HiddenValley:probVector = 0.5       fraction of dark vector mesons
    4900101:m0 = 0.5                    dark quark
    4900111, 4900211:m0 = 4             dark pions, stable (mayDecay = off)
    4900113, 4900213:m0 = 5             dark rhos; 4900213 stable, 4900113 -> q qbar (d, u, s, c, b)

``probVector = 0.5`` (not Pythia's 0.75) gives the benchmark's invisible fraction: stable
over all dark mesons r_inv = 0.74 in 40 events (0.63 with 0.75).

Hepgen differs from the seed's recipe (MadGraph + Pythia 8.2 + Delphes) in using Pythia for
the hard process and no detector: all visible final-state particles (no neutrinos, no
Hidden Valley particles) are clustered with anti-kT R = 0.8 (FastJet), taken massless as
in the jet producer (:mod:`hepgen.simulate.jets`; the loop of both is
:func:`hepgen.simulate.jetmatching.simulate_matched_jets`). A jet is kept if it lies within
Delta R < 0.8 of a dark quark (signal) or of a hard-process parton (background) and has
pT = 150-300 GeV and |eta| < 2 (eq. 5.3). The background ("qcd") is Pythia's
``HardQCD:all`` with pT-hat in 130-350 GeV (leading-order dijets, L1360).

Chunks of :data:`CHUNK_JETS` jets with seeds derived from (seed, chunk): the same file for
any number of workers.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from hepgen.data.jetnet import JetSample
from hepgen.errors import OptionError
from hepgen.simulate.jetmatching import simulate_matched_jets
from hepgen.simulate.parallel import chunk_sizes, derive_seed, run_chunks

CHUNK_JETS = 200
JET_RADIUS = 0.8
PT_WINDOW = (150.0, 300.0)   # eq. 5.3
MAX_ABS_ETA = 2.0
DARK_QUARK = 4900101

#: the Aachen benchmark (module docstring)
AACHEN = (
    "HiddenValley:ffbar2Zv = on", "4900023:m0 = 2000", "4900023:onMode = off", "4900023:onIfAny = 4900101",
    "HiddenValley:Ngauge = 3", "HiddenValley:nFlav = 2", "HiddenValley:fragment = on", "HiddenValley:FSR = on",
    "HiddenValley:alphaOrder = 1", "HiddenValley:setLambda = on", "HiddenValley:Lambda = 5.0",
    "HiddenValley:pTminFSR = 5.5", "HiddenValley:spinFv = 0", "HiddenValley:probVector = 0.5",
    "4900101:m0 = 0.5", "4900111:m0 = 4", "4900211:m0 = 4", "4900113:m0 = 5", "4900213:m0 = 5",
    "4900111:mayDecay = off", "4900211:mayDecay = off", "4900213:mayDecay = off",
    "4900113:oneChannel = 1 0.2 91 1 -1", "4900113:addChannel = 1 0.2 91 2 -2", "4900113:addChannel = 1 0.2 91 3 -3",
    "4900113:addChannel = 1 0.2 91 4 -4", "4900113:addChannel = 1 0.2 91 5 -5",
)
KINDS = {"aachen": AACHEN, "qcd": ("HardQCD:all = on", "PhaseSpace:pTHatMin = 130", "PhaseSpace:pTHatMax = 350")}
_NEUTRINOS = (12, 14, 16)


def _visible(p) -> bool:
    a = p.idAbs()
    return p.isFinal() and a not in _NEUTRINOS and not (4900000 <= a < 5000000)


def _seeds(event, kind: str) -> list[tuple[float, float]]:
    """(eta, phi) of the objects a jet must match: the dark quarks from the Z' (aachen) or
    the outgoing hard partons (qcd, entries 5 and 6)."""
    if kind == "qcd":
        return [(event[i].eta(), event[i].phi()) for i in (5, 6)]
    out = []
    for p in event:
        if p.idAbs() == DARK_QUARK and event[p.mother1()].idAbs() == 4900023:
            out.append((p.eta(), p.phi()))
    return out


def simulate_chunk(kind: str, num_jets: int, num_particles: int, seed: int, mpi: bool = False,
                   progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``num_jets`` selected jets of ``kind`` from one Pythia instance seeded by ``seed``:
    (particle_features (n, P, 4), jet_features (n, 4)) float32."""
    from hepgen.simulate.pythia import make_pythia

    return simulate_matched_jets(
        make_pythia(KINDS[kind], seed, mpi, f"dark-jet kind {kind!r}"), num_jets, num_particles,
        radius=JET_RADIUS, targets=lambda event: _seeds(event, kind), visible=_visible, pt_min=PT_WINDOW[0],
        accept=lambda j: abs(j.eta()) < MAX_ABS_ETA and PT_WINDOW[0] <= j.pt() <= PT_WINDOW[1],
        max_events=200 * num_jets + 1000, what=f"{kind} jets selected", progress=progress)


def generate_dark_jets(kind: str, num_jets: int, num_particles: int = 50, seed: int = 0,
                       workers: int | None = None, scheduler: str | None = None, mpi: bool = False,
                       progress: bool = True) -> JetSample:
    """``num_jets`` jets of ``kind`` (``aachen``: semi-visible jets; ``qcd``: their
    background) in the JetNet layout with ``num_particles`` constituents (DarkCLR: N_c = 50).

    Args:
        kind: aachen or qcd.
        num_jets: number of selected jets.
        num_particles: constituents kept per jet (the hardest).
        seed: the file depends only on it.
        workers, scheduler: local worker processes or a Dask scheduler address.
        mpi: multi-parton interactions.
        progress: show a progress bar.
    """
    if kind not in KINDS:
        raise OptionError(f"--kind: unknown dark-jet kind {kind!r}; choose one of {', '.join(KINDS)}")
    if num_jets <= 0:
        raise OptionError(f"--num-jets must be positive, got {num_jets}")
    sizes = chunk_sizes(num_jets, CHUNK_JETS)
    tasks = [(kind, size, num_particles, derive_seed(seed, i), mpi) for i, size in enumerate(sizes)]
    results = run_chunks(simulate_chunk, tasks, weights=sizes, workers=workers, scheduler=scheduler,
                         desc=f"Pythia {kind} jets", unit="jet", progress=progress)
    return JetSample(np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]),
                     jet_type=None)


__all__ = ["AACHEN", "KINDS", "generate_dark_jets", "simulate_chunk"]
