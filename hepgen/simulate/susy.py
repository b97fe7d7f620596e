"""Gluino pairs of the simplified model T5qqqqWW and the single-lepton signal region of the
seed's SUSY search (seed 000 sec. 7.2), through the project's Pythia set-up and detector.

The process (seed 000 L2906-2915, eq. 7.6): pp -> gluino gluino (``SUSY:gg2gluinogluino`` +
``SUSY:qqbar2gluinogluino``), each gluino -> q q' chargino_1 (three-body, u/d and c/s
doublets, both charges equally), chargino_1 -> W neutralino_1; all W decays. Masses as in
the seed's figure 7.11: m(gluino) = 2200 GeV, m(LSP) = 100 GeV, and the chargino at the
mass mixing ``eps``::

    m(chargino) = m(LSP) + eps * (m(gluino) - m(LSP))     (eq. 7.6)

so 625 / 1150 / 1675 GeV at eps = 0.25 / 0.5 / 0.75. The spectrum is the project's stop
spectrum (:data:`hepgen.simulate.events.STOP_SLHA`: everything else decoupled at 5 TeV)
with these four masses and the two decay tables replaced (:func:`gluino_slha`).

Events are read and reconstructed exactly as :mod:`hepgen.simulate.events` does it
(``_read_event``, ``reconstruct``: the ATLAS-like :mod:`hepgen.simulate.detector`, anti-kT
R = 0.4, truth-flavour b-tagging, smeared MET); the background processes are that
module's :data:`~hepgen.simulate.events.PROCESSES` settings, optionally with a raised
``PhaseSpace:pTHatMin`` (:data:`BACKGROUNDS`: 300 GeV for tt-bar, 250 GeV for W+jets, whose
W is forced to decay to leptons, :data:`BACKGROUND_SETTINGS`). The cut makes the background
affordable here (0.35 % / 0.3 % of the generated events pass the signal region instead of
~0.1 %), at a price: it is a truncation, not a reweighting, so signal-region events with a
softer hard process are missing and the background is underestimated (the Pythia
cross-section includes the cut and the branching ratio, so the weights of what is
generated are right).

Signal region (seed Table 7.1, L2938-2946; the seed's lepton-quality and b-tag working
point details, footnote 6, are the detector card's): exactly one electron or muon with
pT > 25 GeV, leading and subleading jet pT > 80 GeV, L_T = MET + pT(lep) > 250 GeV,
H_T = sum of jet pT > 500 GeV, at least five jets, no b-tagged jet; jets (b-tagged or not)
count with pT > 30 GeV and |eta| < 2.4 (CMS's jet definition of the search).

:func:`features` gives the seed's 15 classifier / CNF variables (L2954, L3035-3039) and the
control variable Delta phi (angle between the lepton and the W reconstructed from lepton
plus MET, Fig. 7.12), in GeV.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from hepgen.simulate.parallel import derive_seed

M_GLUINO = 2200.0
M_LSP = 100.0
#: the seed's mass-mixing points (eq. 7.6)
MIXINGS = (0.25, 0.5, 0.75)
#: the 15 variables of the seed (L2954): lepton, two leading jets, H_T, n_jets, jet masses, MET
FEATURES = ("pt_lep", "eta_lep", "phi_lep", "pt_j1", "eta_j1", "phi_j1", "pt_j2", "eta_j2", "phi_j2",
            "ht", "n_jets", "m_j1", "m_j2", "met", "phi_met")
#: preprocessing groups of the seed (L3035-3039)
BOXCOX = ("pt_lep", "pt_j1", "pt_j2", "met", "m_j1", "m_j2", "ht")
STANDARD = ("eta_lep", "eta_j1", "eta_j2", "n_jets")
ANGLES = ("phi_lep", "phi_j1", "phi_j2", "phi_met")
JET_PT, JET_ETA = 30.0, 2.4


def chargino_mass(eps: float, m_gluino: float = M_GLUINO, m_lsp: float = M_LSP) -> float:
    """Chargino mass at mass mixing ``eps`` (seed eq. 7.6), GeV."""
    return m_lsp + eps * (m_gluino - m_lsp)


def gluino_slha(eps: float, m_gluino: float = M_GLUINO, m_lsp: float = M_LSP) -> str:
    """The T5qqqqWW spectrum at mass mixing ``eps``: the project's stop SLHA file with the
    gluino, chargino_1 and neutralino_1 masses set, the stop decoupled, and the decay tables
    gluino -> q q' chargino_1 (1/4 each of d u~ chi+, u d~ chi-, s c~ chi+, c s~ chi-) and
    chargino_1 -> W neutralino_1."""
    from hepgen.simulate.events import STOP_SLHA

    masses = {1000006: 5.0e3, 1000021: m_gluino, 1000022: m_lsp, 1000024: chargino_mass(eps, m_gluino, m_lsp)}
    text = STOP_SLHA.split("DECAY")[0]
    for pid, m in masses.items():
        text, n = re.subn(rf"(?m)^(\s*{pid}\s+)\S+", rf"\g<1>{m:.6E}", text, count=1)
        if n != 1:
            raise RuntimeError(f"SLHA template has no mass line for {pid}")
    text = text.replace("# hepgen: stop_1 220 GeV -> top + neutralino_1 20 GeV (Dark Machines stop_01), rest at 5 TeV",
                        f"# hepgen: T5qqqqWW, gluino {m_gluino:g}, LSP {m_lsp:g}, mass mixing {eps:g}")
    decays = ("DECAY   1000021   1.0E+00\n"
              "     2.5E-01   3     1000024         1        -2\n"
              "     2.5E-01   3    -1000024         2        -1\n"
              "     2.5E-01   3     1000024         3        -4\n"
              "     2.5E-01   3    -1000024         4        -3\n"
              "DECAY   1000024   1.0E+00\n"
              "     1.0E+00   2     1000022        24\n"
              "DECAY   1000022   0.0\n")
    return text + decays


GLUINO_SETTINGS = ("SUSY:gg2gluinogluino = on", "SUSY:qqbar2gluinogluino = on")


def _pythia(settings, slha: str | None, seed: int, mpi: bool, what: str):
    from hepgen.simulate.pythia import make_pythia

    if slha is None:
        return make_pythia(settings, seed, mpi, what)
    fd, path = tempfile.mkstemp(prefix="hepgen-", suffix=".slha")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(slha)
        return make_pythia((*settings, "SLHA:verbose = 0", f"SLHA:file = {path}"), seed, mpi, what)
    finally:
        os.unlink(path)


@dataclass
class RegionSample:
    """Events of one process in the signal region: ``x`` (N, 15) :data:`FEATURES`, ``dphi``
    (N,), ``weight`` (N,) in fb (sum = selected cross-section), plus the bookkeeping."""

    x: np.ndarray
    dphi: np.ndarray
    weight: np.ndarray
    generated: int
    sigma_fb: float
    seconds: float

    def __len__(self) -> int:
        return len(self.x)


def features(sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signal-region mask, the 15 :data:`FEATURES` and Delta phi of an
    :class:`~hepgen.data.darkmachines.EventSample` (MeV, as the producer writes it).

    Returns ``(mask (N,), x (n_pass, 15), dphi (n_pass,))`` in GeV.
    """
    from hepgen.data.darkmachines import TYPE_CODE

    o = sample.objects / np.array([1e3, 1e3, 1, 1])
    t = sample.types.astype(np.int64)
    e, pt, eta, phi = o[..., 0], o[..., 1], o[..., 2], o[..., 3]
    is_jet = ((t == TYPE_CODE["j"]) | (t == TYPE_CODE["b"])) & (pt > JET_PT) & (np.abs(eta) < JET_ETA)
    is_b = (t == TYPE_CODE["b"]) & is_jet
    is_lep = np.isin(t, [TYPE_CODE[k] for k in ("e-", "e+", "m-", "m+")]) & (pt > 25.0)
    met = sample.met / 1e3
    n_lep, n_jet, n_b = is_lep.sum(1), is_jet.sum(1), is_b.sum(1)
    jpt = np.where(is_jet, pt, -1.0)
    order = np.argsort(-jpt, axis=1)
    j1, j2 = order[:, 0], order[:, min(1, t.shape[1] - 1)]
    lep = np.argmax(np.where(is_lep, pt, -1.0), axis=1)
    r = np.arange(len(t))
    ht = np.where(is_jet, pt, 0.0).sum(1)
    lt = met + pt[r, lep]
    mask = ((n_lep == 1) & (n_jet >= 5) & (n_b == 0) & (jpt[r, j1] > 80) & (jpt[r, j2] > 80) & (lt > 250)
            & (ht > 500))

    def mass(i):
        p2 = (pt[r, i] * np.cosh(eta[r, i])) ** 2
        return np.sqrt(np.maximum(e[r, i] ** 2 - p2, 0.0))

    x = np.stack([pt[r, lep], eta[r, lep], phi[r, lep], pt[r, j1], eta[r, j1], phi[r, j1], pt[r, j2], eta[r, j2],
                  phi[r, j2], ht, n_jet.astype(np.float64), mass(j1), mass(j2), met, sample.met_phi], 1)[mask]
    lx, ly = x[:, 0] * np.cos(x[:, 2]), x[:, 0] * np.sin(x[:, 2])
    wx, wy = lx + x[:, 13] * np.cos(x[:, 14]), ly + x[:, 13] * np.sin(x[:, 14])
    dphi = np.abs(np.angle(np.exp(1j * (np.arctan2(wy, wx) - x[:, 2]))))
    return mask, x, dphi


def simulate_region(settings, num_events: int, seed: int, slha: str | None = None, mpi: bool = False,
                    max_generated: int | None = None, what: str = "process", progress=None) -> RegionSample:
    """Generate events with Pythia ``settings`` (+ ``slha``) until ``num_events`` pass the
    signal region (or ``max_generated`` events were generated), through the project's
    detector; weights in fb such that their sum is the selected cross-section.

    Args:
        settings: Pythia process settings (beams, seed and MPI come from ``make_pythia``);
        num_events: signal-region events wanted; seed: Pythia and detector seed;
        slha: an SLHA spectrum for BSM processes; mpi: multi-parton interactions;
        max_generated: stop after this many generated events (default 400 x ``num_events``);
        what: name for error messages; progress: called with the number of new events.
    """
    from hepgen.simulate.events import _read_event, reconstruct

    start = time.perf_counter()
    pythia = _pythia(settings, slha, seed, mpi, what)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    max_generated = max_generated or 400 * num_events + 1000
    xs, dphis, have, generated = [], [], 0, 0
    while have < num_events and generated < max_generated:
        batch = []
        while len(batch) < 50 and generated < max_generated:
            if pythia.next():
                batch.append(_read_event(pythia.event))
            generated += 1
        if not batch:
            continue
        _, x, dphi = features(reconstruct(batch, rng))
        x, dphi = x[: num_events - have], dphi[: num_events - have]
        xs.append(x)
        dphis.append(dphi)
        have += len(x)
        if progress and len(x):
            progress(len(x))
    sigma_fb = pythia.infoPython().sigmaGen() * 1e12
    x = np.concatenate(xs) if xs else np.zeros((0, len(FEATURES)))
    # the events beyond the last accepted one of the final batch were generated but not looked
    # at; counting the whole batch biases the weight by at most one batch in ``generated``
    weight = np.full(len(x), sigma_fb / max(generated, 1))
    return RegionSample(x, np.concatenate(dphis) if dphis else np.zeros(0), weight, generated, sigma_fb,
                        time.perf_counter() - start)


def simulate_signal(eps: float, num_events: int, seed: int, **kw) -> RegionSample:
    """T5qqqqWW events at mass mixing ``eps`` in the signal region (see :func:`simulate_region`)."""
    return simulate_region(GLUINO_SETTINGS, num_events, derive_seed(seed, int(round(eps * 1000))),
                           slha=gluino_slha(eps), what=f"gluino pairs at eps = {eps}", **kw)


#: SM backgrounds: the event producer's process and its generator-level pTHat cut (GeV); about
#: 0.35 % (tt-bar) and 0.3 % (W+jets) of the generated events then pass the signal region
BACKGROUNDS = {"ttbar": 300.0, "wjets": 250.0}
#: extra settings per background: W+jets with the W forced to leptons (one lepton is required;
#: Pythia's cross-section includes the branching ratio)
BACKGROUND_SETTINGS = {"wjets": ("24:onMode = off", "24:onIfAny = 11 13 15")}


def simulate_background(process: str, num_events: int, seed: int, pthat_min: float | None = None,
                        **kw) -> RegionSample:
    """Events of the event producer's ``process`` (:data:`hepgen.simulate.events.PROCESSES`)
    in the signal region, with ``PhaseSpace:pTHatMin`` raised to ``pthat_min`` (default
    :data:`BACKGROUNDS`) and the :data:`BACKGROUND_SETTINGS`."""
    from hepgen.simulate.events import PROCESSES

    spec = PROCESSES[process]
    cut = BACKGROUNDS.get(process) if pthat_min is None else pthat_min
    settings = [s for s in spec.settings if not (cut and s.startswith("PhaseSpace:pTHatMin"))]
    if cut:
        settings.append(f"PhaseSpace:pTHatMin = {cut:g}")
    settings += BACKGROUND_SETTINGS.get(process, ())
    index = 10_000 + list(PROCESSES).index(process)
    return simulate_region(tuple(settings), num_events, derive_seed(seed, index), slha=spec.slha,
                           what=f"background {process}", **kw)


__all__ = ["BACKGROUNDS", "FEATURES", "MIXINGS", "RegionSample", "chargino_mass", "features", "gluino_slha",
           "simulate_background", "simulate_region", "simulate_signal"]
