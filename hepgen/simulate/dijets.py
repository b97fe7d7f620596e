"""LHCO-like dijet events from Pythia 8 + FastJet (seed 001 L2465-2480, the LHC Olympics
2020 R&D set) with the high-level features of CWoLa and the OnlineFlow (L2477-2480).

The R&D set (Kasieczka et al., arXiv:2101.08320) is Pythia 8 + Delphes; hepgen has no
Delphes, so jets are clustered from Pythia's visible final state (a particle-level
stand-in). The recipe:

* 13 TeV pp collisions, parton shower and hadronisation with Pythia's default tune,
  multi-parton interactions off by default (``mpi=False``; ``--mpi`` turns them on: they
  add an underlying event that shifts the R = 1.0 jet masses up by tens of GeV);
* ``qcd``: ``HardQCD:all`` with ``PhaseSpace:pTHatMin`` = :data:`QCD_PTHAT_MIN`
  (1100 GeV). With the 1.2 TeV jet trigger below, the dijet mass then starts at about
  2.4 TeV and falls steeply through the CWoLa signal region 3.3-3.7 TeV (about a quarter
  of the events lie in 3.1-3.9 TeV), so almost no generated event is wasted below the
  trigger while the spectrum around the SR is the trigger-level one. (The R&D set's
  background is the same trigger on an inclusive sample; a lower pT-hat cut only adds
  events far below the SR.)
* ``wprime``: the R&D signal W' -> X Y, X -> q q, Y -> q q with m(W') = 3.5 TeV,
  m(X) = 500 GeV, m(Y) = 100 GeV. Pythia has no X and Y, so two of its Higgs states stand
  in for them: the charged Higgs H+ (id 37) is X (the charges add up: W'+ -> H+ h0) and
  the light Higgs h0 (id 25) is Y. ``NewGaugeBoson:ffbar2Wprime`` makes the W' (id 34);
  all its decay channels are closed and one is added, ``34:addChannel = 1 1.0 100 37 25``
  (phase-space decay); H+ decays only to u dbar and c sbar (``37:oneChannel``/
  ``addChannel`` with fixed branching ratios 1/2, 1/2), h0 only to quark pairs
  (``25:onIfAny = 1 2 3 4 5``, mostly b bbar). The W' line shape is Pythia's Breit-Wigner
  (width 142 GeV from its default couplings) restricted to 2.8-4.2 TeV (``34:mMin``,
  ``34:mMax``): without that window the steep parton luminosity fills an off-shell tail
  down to a few hundred GeV;
* all visible final-state particles (no neutrinos) with |eta| < :data:`MAX_ABS_ETA_PARTICLES`,
  as massive four-vectors, clustered with anti-kT R = 1.0 (FastJet); an event is kept if it
  has two jets and a jet with pT > 1.2 TeV and |eta| < 2.5 (the R&D trigger);
* the two highest-pT jets, ordered by mass (J1 the heavier, as the LHCO features);
  features m_jj (of the sum of the two), m_J1, m_J1 - m_J2, tau21 of J1 and of J2;
* N-subjettiness (Thaler & Van Tilburg, arXiv:1011.2268) with beta = 1 and exclusive-kT
  axes: the constituents reclustered with the kT algorithm and stopped at N subjets
  (fjcontrib's ``KT_Axes``; Delphes refines them by one pass of minimisation, which
  lowers tau_N slightly); tau_N = sum_i pT_i min_k dR_ik / (sum_i pT_i R0), R0 = 1.0,
  dR in rapidity-phi. No library here has it (FastJet's Python package ships no
  fjcontrib), so :func:`nsubjettiness` is written out and tested against a hand-computed
  case.

Work is split into chunks of :data:`CHUNK_EVENTS` kept events whose Pythia seeds derive
from (seed, process, chunk index) only, so the output does not depend on the number of
workers. Chunks run in parallel through :mod:`hepgen.simulate.parallel`.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from hepgen.data.dijets import COLUMNS, DijetSample
from hepgen.errors import OptionError
from hepgen.simulate.parallel import chunk_sizes, derive_seed, run_chunks

CHUNK_EVENTS = 100
JET_RADIUS = 1.0
TRIGGER_PT = 1200.0
TRIGGER_ETA = 2.5
MAX_ABS_ETA_PARTICLES = 4.9
QCD_PTHAT_MIN = 1100.0
M_WPRIME, M_X, M_Y = 3500.0, 500.0, 100.0
_NEUTRINOS = (12, 14, 16)
_PROCESS_INDEX = {"qcd": 0, "wprime": 1}

PROCESSES: dict[str, tuple[str, ...]] = {
    "qcd": ("HardQCD:all = on", f"PhaseSpace:pTHatMin = {QCD_PTHAT_MIN}"),
    "wprime": (
        "NewGaugeBoson:ffbar2Wprime = on",
        f"34:m0 = {M_WPRIME}",
        "34:mMin = 2800",
        "34:mMax = 4200",
        "34:onMode = off",
        "34:addChannel = 1 1.0 100 37 25",
        f"37:m0 = {M_X}",
        "37:oneChannel = 1 0.5 100 2 -1",
        "37:addChannel = 1 0.5 100 4 -3",
        f"25:m0 = {M_Y}",
        "25:onMode = off",
        "25:onIfAny = 1 2 3 4 5",
    ),
}


def _make_pythia(process: str, seed: int, mpi: bool):
    from hepgen.simulate.pythia import make_pythia

    return make_pythia(PROCESSES[process], seed, mpi, f"process {process!r}")


def _delta_phi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.mod(a - b + np.pi, 2 * np.pi) - np.pi


def nsubjettiness(pt, rap, phi, axes_rap, axes_phi, beta: float = 1.0, r0: float = JET_RADIUS) -> float:
    """Normalised N-subjettiness of one jet for given axes.

    tau_N = sum_i pT_i min_k dR_ik^beta / sum_i pT_i R0^beta (arXiv:1011.2268 eq. 1-2,
    fjcontrib's ``NormalizedMeasure``), with dR in rapidity and azimuth.

    Args:
        pt, rap, phi: the constituents' transverse momenta, rapidities and azimuths.
        axes_rap, axes_phi: the N axes' rapidities and azimuths (N may be 0: tau = 0
            only for an empty jet; no axes gives the full normalisation, i.e. 1).
        beta: the angular exponent (1 as in the LHCO features).
        r0: the characteristic jet radius of the normalisation.
    """
    pt, rap, phi = (np.asarray(a, dtype=np.float64) for a in (pt, rap, phi))
    axes_rap, axes_phi = np.asarray(axes_rap, dtype=np.float64), np.asarray(axes_phi, dtype=np.float64)
    norm = float(np.sum(pt)) * r0**beta
    if norm <= 0:
        return 0.0
    if axes_rap.size == 0:
        return 1.0
    dr = np.hypot(rap[:, None] - axes_rap[None, :], _delta_phi(phi[:, None], axes_phi[None, :]))
    return float(np.sum(pt * dr.min(axis=1) ** beta) / norm)


def _rap(pj) -> float:
    return pj.rap()


def jet_taus(jet, max_n: int = 3) -> list[float]:
    """tau_1 .. tau_max_n of a FastJet jet with exclusive-kT axes (see the module docstring)."""
    import fastjet

    consts = list(jet.constituents())
    pt = [c.pt() for c in consts]
    rap = [_rap(c) for c in consts]
    phi = [c.phi() for c in consts]
    kt = fastjet.JetDefinition(fastjet.kt_algorithm, fastjet.JetDefinition.max_allowable_R)
    seq = fastjet.ClusterSequence(consts, kt)
    taus = []
    for n in range(1, max_n + 1):
        if len(consts) <= n:
            taus.append(0.0)
            continue
        axes = seq.exclusive_jets(n)
        taus.append(nsubjettiness(pt, rap, phi, [_rap(a) for a in axes], [a.phi() for a in axes]))
    del seq
    return taus


def _cluster(event, jet_def):
    import fastjet

    pjs = []
    for p in event:
        if p.isFinal() and p.idAbs() not in _NEUTRINOS and abs(p.eta()) < MAX_ABS_ETA_PARTICLES:
            pjs.append(fastjet.PseudoJet(p.px(), p.py(), p.pz(), p.e()))
    seq = fastjet.ClusterSequence(pjs, jet_def)
    return seq, fastjet.sorted_by_pt(seq.inclusive_jets(20.0))


def _jet_row(jet) -> list[float]:
    return [jet.pt(), jet.eta(), jet.phi_std(), jet.m(), *jet_taus(jet)]


def event_features(j1: list[float], j2: list[float], mjj: float) -> tuple[np.ndarray, np.ndarray]:
    """The LHCO features of one event from its two leading jets' rows (pt, eta, phi, m,
    tau1, tau2, tau3): jets reordered by mass; returns (features (5,), jets (2, 7))."""
    a, b = (j1, j2) if j1[3] >= j2[3] else (j2, j1)

    def tau21(row):
        return row[5] / row[4] if row[4] > 0 else 0.0

    features = np.array([mjj, a[3], a[3] - b[3], tau21(a), tau21(b)], dtype=np.float32)
    return features, np.array([a, b], dtype=np.float32)


def simulate_chunk(
    process: str,
    num_events: int,
    seed: int,
    mpi: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """``num_events`` triggered dijet events from one Pythia instance seeded by ``seed``.

    Args:
        process: ``qcd`` or ``wprime``.
        num_events: events to keep.
        seed: Pythia's seed.
        mpi: multi-parton interactions on.
        progress: called with 1 per kept event.

    Returns (features (n, 5), jets (n, 2, 7), number of generated events).
    """
    import fastjet
    from fastjet import _swig

    _swig.ClusterSequence.set_fastjet_banner_stream(None)
    pythia = _make_pythia(process, seed, mpi)
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_RADIUS)
    feats, jets = [], []
    generated = 0
    max_events = 50 * num_events + 1000
    while len(feats) < num_events:
        if generated >= max_events:
            raise RuntimeError(f"only {len(feats)} of {num_events} {process} events passed the trigger in {generated}")
        generated += 1
        if not pythia.next():
            continue
        seq, inclusive = _cluster(pythia.event, jet_def)
        if len(inclusive) < 2 or not any(j.pt() > TRIGGER_PT and abs(j.eta()) < TRIGGER_ETA for j in inclusive):
            del seq
            continue
        j1, j2 = inclusive[0], inclusive[1]
        mjj = (j1 + j2).m()
        f, j = event_features(_jet_row(j1), _jet_row(j2), mjj)
        del seq
        feats.append(f)
        jets.append(j)
        if progress is not None:
            progress(1)
    return np.stack(feats), np.stack(jets), generated


def generate_dijets(
    process: str,
    num_events: int,
    seed: int = 0,
    workers: int | None = None,
    scheduler: str | None = None,
    mpi: bool = False,
    progress: bool = True,
) -> DijetSample:
    """Simulate ``num_events`` LHCO-like dijet events (see the module docstring).

    Args:
        process: ``qcd`` (background) or ``wprime`` (the R&D signal).
        num_events: events passing the trigger.
        seed: the result depends only on it (and ``process``, ``mpi``).
        workers: local processes (default: all cores).
        scheduler: address of a Dask scheduler to run on instead.
        mpi: multi-parton interactions on.
        progress: show a progress bar.
    """
    if process not in PROCESSES:
        raise OptionError(f"--process: unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
    if num_events <= 0:
        raise OptionError(f"--num-events must be positive, got {num_events}")
    sizes = chunk_sizes(num_events, CHUNK_EVENTS)
    base = derive_seed(seed, 1_000_000 + _PROCESS_INDEX[process])
    tasks = [(process, size, derive_seed(base, i), mpi) for i, size in enumerate(sizes)]
    results = run_chunks(simulate_chunk, tasks, weights=sizes, workers=workers, scheduler=scheduler,
                         desc=f"Pythia {process} dijets", unit="event", progress=progress)
    features = np.concatenate([r[0] for r in results])
    jets = np.concatenate([r[1] for r in results])
    generated = int(sum(r[2] for r in results))
    attrs = {"process": process, "seed": seed, "mpi": int(mpi), "generated": generated,
             "jet_radius": JET_RADIUS, "trigger_pt": TRIGGER_PT, "generator": "pythia8+fastjet",
             "units": "GeV"}
    if process == "qcd":
        attrs["pthat_min"] = QCD_PTHAT_MIN
    return DijetSample(features, COLUMNS, jets, np.full(len(features), int(process == "wprime"), dtype=np.int8),
                       attrs)
