"""Reference collision events from Pythia 8 + FastJet + a parametrised detector, in the
Dark Machines text format.

This is the "expensive simulator" the event-level surrogates learn from (issue 6,
seed 003 sec. 3). It follows the Dark Machines recipe (MadGraph + Pythia 8 + Delphes with
an ATLAS card) as far as Pythia alone allows:

* 13 TeV pp collisions, parton shower and hadronisation with Pythia's default tune; one
  process per ``--process`` (the file's process ID is the Dark Machines name):

  ==========  ==========  ===============================================================
  process     process ID  Pythia
  ==========  ==========  ===============================================================
  ttbar       ttbar       ``Top:gg2ttbar`` + ``Top:qqbar2ttbar``, all top/W decays
  wjets       w_jets      ``WeakBosonAndParton:qqbar2Wg`` + ``qg2Wq``, pTHat > 30 GeV,
                          all W decays
  zjets       z_jets      ``WeakBosonAndParton:qqbar2gmZg`` + ``qg2gmZq`` with a pure Z
                          (``WeakZ0:gmZmode = 2``), pTHat > 30 GeV, all Z decays
  multijet    njets       ``HardQCD:all`` (light and heavy flavour), pTHat > 60 GeV: most
                          events pass the 60 GeV jet trigger
  gammajets   gam_jets    ``PromptPhoton:all``, pTHat > 25 GeV
  stop        stop_01     stop pairs (``SUSY:gg2squarkantisquark`` +
                          ``qqbar2squarkantisquark``, stop_1 only), m(stop) = 220 GeV,
                          stop -> top + neutralino with m(neutralino) = 20 GeV, as the
                          Dark Machines stop_01 sample; the spectrum is a small SLHA file
                          written by this module (:data:`STOP_SLHA`: everything else
                          decoupled at 5 TeV, neutralino_1 a pure bino)
  htautau     hToTauTau   BSM scalar h0 (``HiggsBSM:gg2H2``, PDG 35), m = 60 GeV,
                          h0 -> tau+ tau- only; the CMS anomaly-detection challenge's
                          h0 -> tau tau signal (seed 002 L1383-1388, AnomalyCLR Table 5.2)
  hcharged    hChToTauNu  charged scalar (``HiggsBSM:ffbar2H+-``, c sbar -> H+), m = 60 GeV,
                          H+- -> tau nu only; the challenge's h+- -> tau nu signal
  leptoquark  leptoquark  scalar leptoquark pairs (``LeptoQuark:gg2LQLQbar`` +
                          ``qqbar2LQLQbar``, PDG 42), m = 80 GeV, LQ -> b tau; the
                          challenge's LQ -> b tau signal. (Its fourth, A(50) -> Z* Z*
                          -> 4 leptons, is not here: Pythia's ``gg2A3`` does not
                          initialise with both Z far off shell.)
  ==========  ==========  ===============================================================

* multi-parton interactions are off by default (``mpi=False``, ``--mpi`` turns them on):
  with them a tt-bar event costs about three times the CPU time (13 instead of 4 ms; the
  underlying event doubles the event record), while at R = 0.4 they add about 0.2 jets
  per tt-bar event and change the mean MET by a GeV;
* the truth final state goes through :mod:`hepgen.simulate.detector` (hepgen's stand-in
  for Delphes, see there): isolated, identified electrons, muons and photons become
  objects; all other visible particles with |eta| < 4.9 (no neutrinos, no neutralinos)
  are clustered with anti-kT R = 0.4 (FastJet); jets, leptons and photons are smeared;
  jets are b-tagged by truth flavour; MET is minus the vector sum of everything visible
  after smearing;
* then the Dark Machines object selection (seed 003 L345-350: jets and b-jets
  pT > 20 GeV, |eta| < 2.8; electrons and muons pT > 15 GeV, |eta| < 2.7; photons
  pT > 20 GeV, |eta| < 2.37 -- objects failing it are dropped) and event selection
  (L335-344: at least one jet or b-jet with pT > 60 GeV and |eta| < 2.8, or an electron
  with pT > 25 GeV, |eta| < 2.47 outside 1.37-1.52, or a muon with pT > 25 GeV,
  |eta| < 2.7, or a photon with pT > 25 GeV, |eta| < 2.37). Pythia keeps generating
  until the requested number of events pass.

The file is written as the real Dark Machines files are: E, pT and MET in **MeV**, every
number rounded to six significant digits (e.g. ``j,254038.0,196573.0,0.625305,-2.05165``),
objects ordered b-jets, jets, e-, e+, mu- (``m-``), mu+ (``m+``), photons, each type by
descending pT. The event ID is the event's 1-based position in the file.

**Event weights** (the convention of every hepgen event file, producer and sampler alike,
:func:`cross_section_weight`): each event of a file carries the same weight, the
cross-section after the selection in **pb** divided by the number of events in the file,
``w = sigma_gen x efficiency / N``. The weights of a file sum to its selected
cross-section, so ``sum(w) x L`` (L in pb^-1) is the expected number of selected events
at a luminosity L, and a cocktail of processes is assembled by concatenating files:
every histogram filled with the weights is then a correctly normalised mixture,
whatever the number of events in each file. (The real Dark Machines weights scale to
10 fb^-1; multiply by 1e4 to compare. Files written before this convention carry 1.0.)
:class:`GenerationSummary` reports the same cross-section. :func:`selection_mask` is
the selection as a validity check on any :class:`~hepgen.data.darkmachines.EventSample`
(e.g. generated events).

**Stop mass scans**: ``--stop-mass`` / ``--lsp-mass`` (:func:`stop_slha`) replace the two
masses of the built-in spectrum; the default point keeps the Dark Machines process ID
``stop_01``, any other is written as ``stop<M>_neutralino<m>`` (GeV, the naming of the Dark
Machines signal files, e.g. ``stop2b1000_neutralino300``), which
:func:`parse_process_id` reads back, so a file says which mass point it holds.

Work is split into chunks of :data:`CHUNK_EVENTS` accepted events whose Pythia and
detector seeds derive from (seed, chunk index) only, so the output does not depend on
the number of workers; chunks run through :mod:`hepgen.simulate.parallel` (Dask) and are
streamed into the output file in order as they finish.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from hepgen.data.darkmachines import OBJECT_TYPES, TYPE_CODE, EventSample, concatenate, format_event
from hepgen.errors import OptionError
from hepgen.simulate import detector as det
from hepgen.simulate.parallel import chunk_sizes, derive_seed, run_chunks

CHUNK_EVENTS = 250   # accepted events per task
BATCH_EVENTS = 50    # events clustered together by FastJet's multi-event interface
JET_RADIUS = 0.4
UNITS = {"MeV": 1000.0, "GeV": 1.0}
#: order of the object types on a line: b-jets, jets, e-, e+, mu-, mu+, photons
LINE_ORDER = ("b", "j", "e-", "e+", "m-", "m+", "g")
_RANK = np.array([LINE_ORDER.index(t) for t in OBJECT_TYPES])  # by type code
_INVISIBLE = (12, 14, 16, 1000022, 1000039)

# --- the Dark Machines selection -------------------------------------------------------

#: object cuts (seed 003 L345-350): minimum pT [GeV] and maximum |eta| by type code
OBJECT_CUTS = {"j": (20.0, 2.8), "b": (20.0, 2.8), "e-": (15.0, 2.7), "e+": (15.0, 2.7),
               "m-": (15.0, 2.7), "m+": (15.0, 2.7), "g": (20.0, 2.37)}
#: trigger-like event selection (L335-344): at least one object passing its cut
TRIGGER_CUTS = {"j": (60.0, 2.8), "b": (60.0, 2.8), "e-": (25.0, 2.47), "e+": (25.0, 2.47),
                "m-": (25.0, 2.7), "m+": (25.0, 2.7), "g": (25.0, 2.37)}
ELECTRON_CRACK = (1.37, 1.52)


def _cut_table(cuts: dict[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    pt = np.full(len(TYPE_CODE) + 1, np.inf)   # the last entry serves padding (code -1)
    eta = np.zeros(len(TYPE_CODE) + 1)
    for name, (p, e) in cuts.items():
        pt[TYPE_CODE[name]], eta[TYPE_CODE[name]] = p, e
    return pt, eta


_OBJ_PT, _OBJ_ETA = _cut_table(OBJECT_CUTS)
_TRIG_PT, _TRIG_ETA = _cut_table(TRIGGER_CUTS)


def _gev(unit: str) -> float:
    if unit not in UNITS:
        raise OptionError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    return UNITS[unit]


def object_mask(sample: EventSample, unit: str = "MeV") -> np.ndarray:
    """(N, M) bool: the slot holds an object that passes its Dark Machines object cut."""
    t = sample.types.astype(np.int64)
    pt = sample.objects[..., 1] / _gev(unit)
    aeta = np.abs(sample.objects[..., 2])
    return (t >= 0) & (pt > _OBJ_PT[t]) & (aeta < _OBJ_ETA[t])


def trigger_mask(sample: EventSample, unit: str = "MeV") -> np.ndarray:
    """(N,) bool: at least one object passes the trigger-like event selection."""
    t = sample.types.astype(np.int64)
    pt = sample.objects[..., 1] / _gev(unit)
    aeta = np.abs(sample.objects[..., 2])
    electron = (t == TYPE_CODE["e-"]) | (t == TYPE_CODE["e+"])
    crack = electron & (aeta > ELECTRON_CRACK[0]) & (aeta < ELECTRON_CRACK[1])
    return ((t >= 0) & (pt > _TRIG_PT[t]) & (aeta < _TRIG_ETA[t]) & ~crack).any(1)


def selection_mask(sample: EventSample, unit: str = "MeV") -> np.ndarray:
    """(N,) bool: every object passes its object cut and the event passes the event selection.

    The Dark Machines selection (seed 003 sec. 3.1, cuts in :data:`OBJECT_CUTS` and
    :data:`TRIGGER_CUTS`, strict inequalities) as a validity check for any events, real or
    generated. ``unit``: energy unit of the sample ('MeV' as in the Dark Machines files and
    hepgen's, or 'GeV').
    """
    obj = object_mask(sample, unit)
    return (obj | (sample.types < 0)).all(1) & trigger_mask(sample, unit)


# --- processes ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcessSpec:
    process_id: str              # the Dark Machines process ID written in the file
    settings: tuple[str, ...]
    slha: str | None = None      # an SLHA spectrum the process needs


STOP_SLHA = """\
# hepgen: stop_1 220 GeV -> top + neutralino_1 20 GeV (Dark Machines stop_01), rest at 5 TeV
BLOCK MODSEL
    1    0
BLOCK SMINPUTS
    1   1.27934000E+02
    2   1.16637000E-05
    3   1.18000000E-01
    4   9.11876000E+01
    5   4.18000000E+00
    6   1.73000000E+02
    7   1.77700000E+00
BLOCK MINPAR
    3   1.00000000E+01
BLOCK GAUGE Q= 1.0E+03
    1   3.6E-01
    2   6.4E-01
    3   1.06E+00
BLOCK MSOFT Q= 1.0E+03
    1   5.0E+03
    2   5.0E+03
    3   5.0E+03
BLOCK MASS
   1000001   5.0E+03
   2000001   5.0E+03
   1000002   5.0E+03
   2000002   5.0E+03
   1000003   5.0E+03
   2000003   5.0E+03
   1000004   5.0E+03
   2000004   5.0E+03
   1000005   5.0E+03
   2000005   5.0E+03
   1000006   2.2E+02
   2000006   5.0E+03
   1000011   5.0E+03
   2000011   5.0E+03
   1000012   5.0E+03
   1000013   5.0E+03
   2000013   5.0E+03
   1000014   5.0E+03
   1000015   5.0E+03
   2000015   5.0E+03
   1000016   5.0E+03
   1000021   5.0E+03
   1000022   2.0E+01
   1000023   5.0E+03
   1000025  -5.01E+03
   1000035   5.02E+03
   1000024   5.0E+03
   1000037   5.02E+03
        25   1.25E+02
        35   5.0E+03
        36   5.0E+03
        37   5.0E+03
BLOCK NMIX
  1  1   1.0
  1  2   0.0
  1  3   0.0
  1  4   0.0
  2  1   0.0
  2  2   1.0
  2  3   0.0
  2  4   0.0
  3  1   0.0
  3  2   0.0
  3  3   0.70710678
  3  4   0.70710678
  4  1   0.0
  4  2   0.0
  4  3  -0.70710678
  4  4   0.70710678
BLOCK UMIX
  1  1   1.0
  1  2   0.0
  2  1   0.0
  2  2   1.0
BLOCK VMIX
  1  1   1.0
  1  2   0.0
  2  1   0.0
  2  2   1.0
BLOCK STOPMIX
  1  1   0.0
  1  2   1.0
  2  1  -1.0
  2  2   0.0
BLOCK SBOTMIX
  1  1   1.0
  1  2   0.0
  2  1   0.0
  2  2   1.0
BLOCK STAUMIX
  1  1   1.0
  1  2   0.0
  2  1   0.0
  2  2   1.0
BLOCK ALPHA
  -1.0E-01
BLOCK HMIX Q= 1.0E+03
  1   5.0E+03
  2   1.0E+01
  3   2.45E+02
  4   2.5E+07
BLOCK YU Q= 1.0E+03
  3  3   8.9E-01
BLOCK YD Q= 1.0E+03
  3  3   1.4E-01
BLOCK YE Q= 1.0E+03
  3  3   1.0E-01
BLOCK AU Q= 1.0E+03
  3  3   0.0
BLOCK AD Q= 1.0E+03
  3  3   0.0
BLOCK AE Q= 1.0E+03
  3  3   0.0
DECAY   1000006   1.0E+00
     1.0E+00   2     1000022         6
DECAY   1000022   0.0
"""

#: the stop and neutralino_1 masses [GeV] of the built-in spectrum (Dark Machines stop_01)
STOP_MASSES = (220.0, 20.0)
TOP_MASS = 173.0


def stop_slha(stop_mass: float = STOP_MASSES[0], lsp_mass: float = STOP_MASSES[1]) -> str:
    """The built-in SLHA spectrum with m(stop_1) and m(neutralino_1) replaced (GeV).

    The stop decays to top + neutralino only, so ``stop_mass > lsp_mass + 173 GeV`` is
    required (two-body decay); the default point returns :data:`STOP_SLHA` unchanged."""
    if not (lsp_mass > 0 and stop_mass > lsp_mass + TOP_MASS):
        raise OptionError(f"--stop-mass {stop_mass:g} / --lsp-mass {lsp_mass:g}: need lsp-mass > 0 and "
                          f"stop-mass > lsp-mass + {TOP_MASS:g} GeV (stop -> top + neutralino)")
    if (float(stop_mass), float(lsp_mass)) == STOP_MASSES:
        return STOP_SLHA
    text = STOP_SLHA.replace("   1000006   2.2E+02", f"   1000006   {float(stop_mass):.6E}")
    text = text.replace("   1000022   2.0E+01", f"   1000022   {float(lsp_mass):.6E}")
    return text.replace("stop_1 220 GeV -> top + neutralino_1 20 GeV (Dark Machines stop_01)",
                        f"stop_1 {stop_mass:g} GeV -> top + neutralino_1 {lsp_mass:g} GeV")


def process_id(process: str, masses: tuple[float, float] | None = None) -> str:
    """The process ID written in the file: the Dark Machines name of ``process``; for a stop
    mass point other than the default ``stop<M>_neutralino<m>``."""
    if process not in PROCESSES:
        raise OptionError(f"--process: unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
    if process != "stop" or masses is None or tuple(map(float, masses)) == STOP_MASSES:
        return PROCESSES[process].process_id
    return f"stop{float(masses[0]):g}_neutralino{float(masses[1]):g}"


def parse_process_id(pid: str) -> tuple[str, tuple[float, float] | None]:
    """(process name, (stop mass, LSP mass) or None) of a process ID; unknown IDs (e.g. other
    Dark Machines samples) are their own name."""
    import re

    pid = str(pid)
    for name, spec in PROCESSES.items():
        if pid == spec.process_id:
            return name, (STOP_MASSES if name == "stop" else None)
    m = re.fullmatch(r"stop(\d+(?:\.\d+)?)_neutralino(\d+(?:\.\d+)?)", pid)
    if m:
        return "stop", (float(m.group(1)), float(m.group(2)))
    return pid, None


def cross_section_weight(selected_sigma_pb: float, num_events: int) -> float:
    """The event weight of the convention (module docstring): selected cross-section [pb]
    shared equally by the ``num_events`` events of a file."""
    return float(selected_sigma_pb) / max(int(num_events), 1)


PROCESSES: dict[str, ProcessSpec] = {
    "ttbar": ProcessSpec("ttbar", ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on")),
    "wjets": ProcessSpec("w_jets", ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on",
                                    "PhaseSpace:pTHatMin = 30")),
    "zjets": ProcessSpec("z_jets", ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on",
                                    "WeakZ0:gmZmode = 2", "PhaseSpace:pTHatMin = 30")),
    "multijet": ProcessSpec("njets", ("HardQCD:all = on", "PhaseSpace:pTHatMin = 60")),
    "gammajets": ProcessSpec("gam_jets", ("PromptPhoton:all = on", "PhaseSpace:pTHatMin = 25")),
    "stop": ProcessSpec("stop_01", ("SUSY:gg2squarkantisquark = on", "SUSY:qqbar2squarkantisquark = on",
                                    "SUSY:idA = 1000006", "SUSY:idB = 1000006"), slha=STOP_SLHA),
}
#: the BSM signals of AnomalyCLR (seed 002 L1383-1388), in the same format as the SM processes
PROCESSES.update({
    "htautau": ProcessSpec("hToTauTau", ("Higgs:useBSM = on", "HiggsBSM:gg2H2 = on", "35:m0 = 60",
                                         "35:onMode = off", "35:onIfMatch = 15 -15")),
    "hcharged": ProcessSpec("hChToTauNu", ("Higgs:useBSM = on", "HiggsBSM:ffbar2H+- = on", "37:m0 = 60",
                                           "37:onMode = off", "37:onIfAny = 15")),
    "leptoquark": ProcessSpec("leptoquark", ("LeptoQuark:gg2LQLQbar = on", "LeptoQuark:qqbar2LQLQbar = on",
                                             "42:m0 = 80", "42:0:products = 5 -15")),
})


def _make_pythia(process: str, seed: int, mpi: bool, masses: tuple[float, float] | None = None):
    from hepgen.simulate.pythia import make_pythia

    spec = PROCESSES[process]
    if spec.slha is None:
        return make_pythia(spec.settings, seed, mpi, f"process {process!r}")
    fd, slha_path = tempfile.mkstemp(prefix="hepgen-", suffix=".slha")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(spec.slha if masses is None else stop_slha(*masses))
        return make_pythia((*spec.settings, "SLHA:verbose = 0", f"SLHA:file = {slha_path}"), seed, mpi,
                           f"process {process!r}")
    finally:
        os.unlink(slha_path)


def _flavour(ida: int) -> int:
    """BOTTOM for a b-hadron |PDG id|, CHARM for a c hadron, LIGHT for anything else.

    From the quark digits of the code; partons, diquarks (tens digit 0) and BSM particles
    are not hadrons.
    """
    if not 100 < ida < 1_000_000:
        return det.LIGHT
    x = ida % 10000
    digits = (x // 1000, (x // 100) % 10, (x // 10) % 10)
    if x >= 1000 and digits[2] == 0:
        return det.LIGHT
    if 5 in digits:
        return det.BOTTOM
    if 4 in digits:
        return det.CHARM
    return det.LIGHT


_FLAVOUR: dict[int, int] = {}


def _read_event(event) -> tuple[list, list]:
    """Final-state particles (id, px, py, pz, e) and heavy-flavour hadrons (flavour, px, py, pz).

    The one Python loop over Pythia's event record, so kept lean (flavours are cached).
    """
    final, heavy = [], []
    cache = _FLAVOUR
    for p in event:
        if p.isFinal():
            final.append((p.id(), p.px(), p.py(), p.pz(), p.e()))
            continue
        ida = p.idAbs()
        flav = cache.get(ida)
        if flav is None:
            flav = cache[ida] = _flavour(ida)
        if flav:
            heavy.append((flav, p.px(), p.py(), p.pz()))
    return final, heavy


def _stack(rows: list[list], width: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    flat = np.array([x for r in rows for x in r], dtype=np.float64).reshape(-1, width)
    return flat, np.repeat(np.arange(len(rows)), counts)


def _round6(x: np.ndarray) -> np.ndarray:
    """Six significant digits, as the Dark Machines files print them."""
    x = np.asarray(x, dtype=np.float64)
    if not x.size:
        return x
    return np.char.mod("%.6g", x).astype(np.float64)


def reconstruct(events: list[tuple[list, list]], rng: np.random.Generator,
                card: det.DetectorCard = det.ATLAS_LIKE) -> EventSample:
    """Detector response and objects of a batch of truth events (no selection applied yet).

    ``events``: per event the ``(final, heavy)`` lists of :func:`_read_event` (GeV). Returns
    an :class:`EventSample` in MeV, rounded, objects in line order, with event ID and
    process still to fill in; objects below the detector thresholds are already dropped.
    """
    import awkward as ak
    import fastjet
    from fastjet import _swig

    _swig.ClusterSequence.set_fastjet_banner_stream(None)
    n = len(events)
    parts, pev = _stack([f for f, _ in events], 5)
    heavy, hev = _stack([h for _, h in events], 4)
    pid = parts[:, 0].astype(np.int64)
    aid = np.abs(pid)
    px, py, pz, e = parts[:, 1], parts[:, 2], parts[:, 3], parts[:, 4]
    pt, eta, phi = det.kinematics(px, py, pz)
    visible = ~np.isin(aid, _INVISIBLE) & (np.abs(eta) < card.calo_eta)

    # isolated, identified e, mu, gamma
    kinds = {11: "e", 13: "mu", 22: "gamma"}
    cand = np.flatnonzero(visible & np.isin(aid, list(kinds)) & (pt > card.id_min_pt))
    identified = np.zeros(len(pid), dtype=bool)
    if len(cand):
        ratio = np.empty(len(cand))
        starts = np.searchsorted(pev, np.arange(n))
        ends = np.searchsorted(pev, np.arange(n), side="right")
        for ev in np.unique(pev[cand]):
            sel = cand[pev[cand] == ev]
            lo, hi = starts[ev], ends[ev]
            vis = np.flatnonzero(visible[lo:hi]) + lo
            ratio[np.searchsorted(cand, sel)] = det.isolation_ratio(
                pt[sel], eta[sel], phi[sel], np.searchsorted(vis, sel), pt[vis], eta[vis], phi[vis], card)
        eff = np.zeros(len(cand))
        for code, kind in kinds.items():
            k = aid[cand] == code
            eff[k] = det.identification_efficiency(kind, pt[cand[k]], eta[cand[k]], card)
        identified[cand] = (ratio < card.iso_ratio) & (rng.random(len(cand)) < eff)

    # jets from every other visible particle
    inputs = np.flatnonzero(visible & ~identified)
    counts = np.bincount(pev[inputs], minlength=n)
    arr = ak.unflatten(ak.zip({"px": px[inputs], "py": py[inputs], "pz": pz[inputs], "E": e[inputs]}), counts)
    seq = fastjet.ClusterSequence(arr, fastjet.JetDefinition(fastjet.antikt_algorithm, JET_RADIUS))
    jets = seq.inclusive_jets(min_pt=card.jet_met_threshold)
    njets = ak.to_numpy(ak.num(jets))
    jev = np.repeat(np.arange(n), njets)
    jpx, jpy, jpz, je = (ak.to_numpy(ak.flatten(jets[f])).astype(np.float64) for f in ("px", "py", "pz", "E"))
    in_hard = np.zeros(len(inputs), dtype=bool)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    const = seq.constituent_index(min_pt=card.jet_met_threshold)
    local = ak.to_numpy(ak.flatten(const, axis=None)).astype(np.int64)
    owner = np.repeat(np.arange(n), ak.to_numpy(ak.sum(ak.num(const, axis=2), axis=1)))
    in_hard[offsets[owner] + local] = True
    jpt, jeta, jphi = det.kinematics(jpx, jpy, jpz)

    # jet response and b-tagging
    scale = det.smear_factors(rng, det.jet_resolution(je, card))
    jpx, jpy, jpz, je, jpt = jpx * scale, jpy * scale, jpz * scale, je * scale, jpt * scale
    flavour = np.full(len(jev), det.LIGHT, dtype=np.int8)
    if len(jev) and len(hev):
        _, heta, hphi = det.kinematics(heavy[:, 1], heavy[:, 2], heavy[:, 3])
        hpt = np.hypot(heavy[:, 1], heavy[:, 2])
        usable = hpt > card.btag_hadron_pt
        same = jev[:, None] == hev[None, usable]
        dr = det.delta_r(jeta[:, None], jphi[:, None], heta[None, usable], hphi[None, usable])
        near = same & (dr < card.btag_dr)
        flav = heavy[usable, 0]
        flavour[(near & (flav == det.CHARM)[None]).any(1)] = det.CHARM
        flavour[(near & (flav == det.BOTTOM)[None]).any(1)] = det.BOTTOM
    tagged = det.btag(rng, flavour, jeta, card)

    # lepton and photon response
    obj = np.flatnonzero(identified)
    oid = pid[obj]
    sigma = np.where(np.abs(oid) == 13, det.muon_resolution(pt[obj], eta[obj], card), det.em_resolution(e[obj], card))
    oscale = det.smear_factors(rng, sigma)
    ocode = np.select([oid == 11, oid == -11, oid == 13, oid == -13],
                      [TYPE_CODE["e-"], TYPE_CODE["e+"], TYPE_CODE["m-"], TYPE_CODE["m+"]], TYPE_CODE["g"])

    # soft term: particles outside the jets above the MET threshold, smeared one by one
    soft = inputs[~in_hard]
    sscale = det.smear_factors(rng, card.soft_stochastic / np.sqrt(np.maximum(e[soft], 1e-3)))

    met, met_phi = det.missing_et(
        np.concatenate([jpx, px[obj] * oscale, px[soft] * sscale]),
        np.concatenate([jpy, py[obj] * oscale, py[soft] * sscale]),
        np.concatenate([jev, pev[obj], pev[soft]]), n)

    # objects of the line, MeV, six digits
    code = np.concatenate([np.where(tagged, TYPE_CODE["b"], TYPE_CODE["j"]), ocode]).astype(np.int64)
    oev = np.concatenate([jev, pev[obj]])
    feats = np.stack([np.concatenate([je, e[obj] * oscale]) * 1e3, np.concatenate([jpt, pt[obj] * oscale]) * 1e3,
                      np.concatenate([jeta, eta[obj]]), det.wrap_phi(np.concatenate([jphi, phi[obj]]))], axis=1)
    feats = _round6(feats).reshape(-1, 4)
    keep = (feats[:, 1] > _OBJ_PT[code] * 1e3) & (np.abs(feats[:, 2]) < _OBJ_ETA[code])
    code, oev, feats = code[keep], oev[keep], feats[keep]
    order = np.lexsort((-feats[:, 1], _RANK[code], oev))
    code, oev, feats = code[order], oev[order], feats[order]
    per_event = np.bincount(oev, minlength=n)
    width = max(int(per_event.max()) if n else 0, 1)
    slot = np.arange(len(oev)) - np.concatenate([[0], np.cumsum(per_event)])[oev]
    objects = np.zeros((n, width, 4))
    types = np.full((n, width), -1, dtype=np.int8)
    objects[oev, slot] = feats
    types[oev, slot] = code
    return EventSample(np.zeros(n, dtype=np.int64), np.full(n, "", dtype=object), np.ones(n), _round6(met * 1e3),
                       _round6(met_phi), objects, types)


def simulate_chunk(
    process: str,
    num_events: int,
    seed: int,
    first_id: int = 1,
    mpi: bool = False,
    card: det.DetectorCard = det.ATLAS_LIKE,
    masses: tuple[float, float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[EventSample, int, int, float]:
    """``num_events`` selected events from one Pythia instance seeded by ``seed``.

    Returns ``(events, generated, passed, sigma_pb)``: the events (IDs from ``first_id``,
    weight 1.0 until :func:`generate_events` knows the file's cross-section), how many
    Pythia events were generated and how many of them passed the selection (a few more
    than returned: the last batch overshoots), and Pythia's estimate of the generated
    cross-section. ``masses``: (stop, LSP) masses of the ``stop`` process (default
    :data:`STOP_MASSES`).
    """
    pythia = _make_pythia(process, seed, mpi, masses)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    kept: list[EventSample] = []
    have = generated = passed = 0
    max_events = 200 * num_events + 2000
    while have < num_events:
        if generated >= max_events:
            raise RuntimeError(f"only {have} of {num_events} {process} events passed the selection "
                               f"in {generated} generated events")
        # a full batch, or about what the remaining events need at the efficiency so far
        size = BATCH_EVENTS
        if passed:
            size = min(size, max(10, int(np.ceil(1.2 * (num_events - have) * generated / passed))))
        batch = []
        while len(batch) < size:
            if pythia.next():
                batch.append(_read_event(pythia.event))
            generated += 1
        sample = reconstruct(batch, rng, card)
        sample = sample[trigger_mask(sample)]
        passed += len(sample)
        sample = sample[: num_events - have]
        if len(sample):
            kept.append(sample)
            have += len(sample)
            if progress is not None:
                progress(len(sample))
    sigma_pb = pythia.infoPython().sigmaGen() * 1e9
    out = concatenate(kept)
    out.event_id = np.arange(first_id, first_id + len(out)).astype(object)
    out.process = np.full(len(out), process_id(process, masses), dtype=object)
    return out, generated, passed, sigma_pb


@dataclass
class GenerationSummary:
    """What :func:`generate_events` made: events (when not written to a file) and rates."""

    sample: EventSample | None
    num_events: int
    generated: int           # Pythia events generated
    passed: int              # of which passed the selection
    sigma_pb: float          # generated cross-section (Pythia's estimate, chunk average)
    seconds: float

    @property
    def efficiency(self) -> float:
        """Fraction of the generated events that pass the selection."""
        return self.passed / max(self.generated, 1)

    @property
    def selected_sigma_pb(self) -> float:
        return self.sigma_pb * self.efficiency


def generate_events(
    process: str,
    num_events: int,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    mpi: bool = False,
    card: det.DetectorCard = det.ATLAS_LIKE,
    progress: bool = True,
    stop_mass: float | None = None,
    lsp_mass: float | None = None,
) -> GenerationSummary:
    """Simulate ``num_events`` selected events of ``process`` (see the module docstring).

    With ``out``, events are streamed into that Dark Machines file (written atomically:
    a temporary file moved into place at the end, after a second pass that writes the
    cross-section weight of every event) and not kept; otherwise they are returned in the
    summary, weighted the same way. ``workers`` local processes (default: all cores) or
    the Dask cluster at ``scheduler`` share the chunks; the result depends only on
    ``seed``. ``stop_mass`` / ``lsp_mass`` (GeV): the mass point of ``stop`` (default
    :data:`STOP_MASSES`).
    """
    if process not in PROCESSES:
        raise OptionError(f"--process: unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
    if num_events <= 0:
        raise OptionError(f"--num-events must be positive, got {num_events}")
    masses = None
    if stop_mass is not None or lsp_mass is not None:
        if process != "stop":
            raise OptionError(f"--stop-mass/--lsp-mass: only the stop process has masses, not {process!r}")
        masses = (float(STOP_MASSES[0] if stop_mass is None else stop_mass),
                  float(STOP_MASSES[1] if lsp_mass is None else lsp_mass))
        stop_slha(*masses)  # checks the mass point
    sizes = chunk_sizes(num_events, CHUNK_EVENTS)
    firsts = np.concatenate([[1], 1 + np.cumsum(sizes)[:-1]]).tolist()
    tasks = [(process, size, derive_seed(seed, i), firsts[i], mpi, card, masses)
             for i, size in enumerate(sizes)]
    stats = {"generated": 0, "passed": 0, "sigma": []}
    kept: list[EventSample] = []
    start = time.perf_counter()

    def run(consume):
        run_chunks(simulate_chunk, tasks, weights=sizes, workers=workers, scheduler=scheduler,
                   desc=f"Pythia {process} events", unit="ev", progress=progress, consume=consume)

    def collect(write):
        def consume(i, result):
            sample, generated, passed, sigma = result
            stats["generated"] += generated
            stats["passed"] += passed
            stats["sigma"].append((sigma, generated))
            write(sample)
        return consume

    def summary(sample: EventSample | None) -> GenerationSummary:
        sig = np.array(stats["sigma"], dtype=np.float64).reshape(-1, 2)
        sigma_pb = float(np.average(sig[:, 0], weights=sig[:, 1])) if len(sig) and sig[:, 1].sum() else 0.0
        return GenerationSummary(sample, num_events, stats["generated"], stats["passed"], sigma_pb,
                                 time.perf_counter() - start)

    if out is None:
        run(collect(kept.append))
        result = summary(concatenate(kept))
        result.sample.weight[:] = cross_section_weight(result.selected_sigma_pb, num_events)
        return result
    from hepgen.data.atomic import atomic_output, discard, temporary_beside

    out = Path(out)
    with atomic_output(out) as tmp:
        unweighted = temporary_beside(out)
        try:
            with open(unweighted, "w") as f:
                run(collect(lambda s: f.writelines(format_event(s, i) + "\n" for i in range(len(s)))))
            result = summary(None)
            set_weights(unweighted, tmp, cross_section_weight(result.selected_sigma_pb, num_events))
        finally:
            discard(unweighted)
    result.seconds = time.perf_counter() - start
    return result


def set_weights(source: str | os.PathLike, target: str | os.PathLike, weight: float) -> None:
    """Copy a Dark Machines file line by line with the event-weight field (the third) set to ``weight``."""
    text = repr(float(weight))
    with open(source) as src, open(target, "w") as dst:
        for line in src:
            event_id, process, _, rest = line.split(";", 3)
            dst.write(f"{event_id};{process};{text};{rest}")
