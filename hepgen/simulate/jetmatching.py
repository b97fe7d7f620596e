"""Jets from Pythia events matched to targets, in the JetNet layout: the loop shared by the
jet producers (:mod:`hepgen.simulate.jets`, :mod:`hepgen.simulate.darkjets`).

Each event's visible final-state particles, taken massless, are clustered with anti-kT
(FastJet); each target direction of the event (a hard parton, a resonance, a dark quark)
takes the closest unused jet within the jet radius that the producer accepts
(:func:`matched_jets`); a matched jet becomes one row of particle features (etarel,
phirel wrapped to (-pi, pi], ptrel, mask; the P hardest constituents) and jet features
(pt, eta, mass, number of constituents) (:func:`jet_arrays`).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np


def delta_r(eta1: float, phi1: float, eta2: float, phi2: float) -> float:
    """Delta R of two directions, the phi difference wrapped."""
    dphi = (phi1 - phi2 + math.pi) % (2 * math.pi) - math.pi
    return math.hypot(eta1 - eta2, dphi)


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Wrap angles to (-pi, pi]."""
    wrapped = np.mod(phi + np.pi, 2 * np.pi) - np.pi
    return np.where(wrapped == -np.pi, np.pi, wrapped)


def cluster_visible(event, jet_def, visible: Callable, pt_min: float):
    """Anti-kT jets (pT >= ``pt_min``, hardest first) of the particles of ``event`` that pass
    ``visible``, taken massless; returns (cluster sequence, jets): keep the sequence alive
    while the jets are used."""
    import fastjet

    pjs = []
    for p in event:
        if visible(p):
            px, py, pz = p.px(), p.py(), p.pz()
            pjs.append(fastjet.PseudoJet(px, py, pz, math.sqrt(px * px + py * py + pz * pz)))
    seq = fastjet.ClusterSequence(pjs, jet_def)
    return seq, fastjet.sorted_by_pt(seq.inclusive_jets(pt_min))


def matched_jets(jets, targets, radius: float, accept: Callable) -> Iterator:
    """For each (eta, phi) of ``targets`` in order, the closest jet within ``radius`` that
    passes ``accept`` and is not matched yet (targets without one are skipped)."""
    used: set[int] = set()
    for eta, phi in targets:
        best, best_dr = None, radius
        for k, jet in enumerate(jets):
            if k in used or not accept(jet):
                continue
            dr = delta_r(jet.eta(), jet.phi(), eta, phi)
            if dr < best_dr:
                best, best_dr = k, dr
        if best is not None:
            used.add(best)
            yield jets[best]


def jet_arrays(jet, num_particles: int) -> tuple[np.ndarray, np.ndarray]:
    """(particle_features (P, 4), jet_features (4,)) float32 of a FastJet jet (module docstring)."""
    consts = jet.constituents()
    pt = np.array([c.pt() for c in consts])
    eta = np.array([c.eta() for c in consts])
    phi = np.array([c.phi() for c in consts])
    order = np.argsort(-pt, kind="stable")[:num_particles]
    pf = np.zeros((num_particles, 4), dtype=np.float32)
    n = len(order)
    pf[:n, 0] = eta[order] - jet.eta()
    pf[:n, 1] = wrap_phi(phi[order] - jet.phi())
    pf[:n, 2] = pt[order] / jet.pt()
    pf[:n, 3] = 1.0
    jf = np.array([jet.pt(), jet.eta(), jet.m(), len(consts)], dtype=np.float32)
    return pf, jf


def simulate_matched_jets(
    pythia,
    num_jets: int,
    num_particles: int,
    *,
    radius: float,
    targets: Callable,
    visible: Callable,
    pt_min: float,
    accept: Callable,
    max_events: int,
    what: str,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``num_jets`` matched jets from the events of ``pythia`` (module docstring).

    Args:
        pythia: a seeded ``pythia8.Pythia``, initialised.
        num_jets, num_particles: jets to return and constituents kept per jet.
        radius: the anti-kT radius, also the matching radius.
        targets: event -> list of (eta, phi) to match (events without any are skipped).
        visible: particle -> whether it enters the clustering.
        pt_min: the clustering's minimum jet pT (GeV).
        accept: jet -> whether it may be matched.
        max_events: events to try before giving up with ``RuntimeError("only n of N WHAT in
            max_events events")``.
        what: the jets in that message, e.g. ``"t jets matched"``.
        progress: called with 1 per kept jet.

    Returns ``(particle_features (n, P, 4), jet_features (n, 4))`` as float32.
    """
    import fastjet
    from fastjet import _swig

    # FastJet prints its citation banner on stdout at first use; hepgen cites it in
    # the README instead so that command output stays clean
    _swig.ClusterSequence.set_fastjet_banner_stream(None)
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    pfs, jfs = [], []
    for _ in range(max_events):
        if len(pfs) >= num_jets:
            break
        if not pythia.next():
            continue
        event = pythia.event
        objects = targets(event)
        if not objects:
            continue
        seq, jets = cluster_visible(event, jet_def, visible, pt_min)
        # the closest unused jet within R of each target
        for jet in matched_jets(jets, objects, radius, accept):
            pf, jf = jet_arrays(jet, num_particles)
            pfs.append(pf)
            jfs.append(jf)
            if progress is not None:
                progress(1)
            if len(pfs) >= num_jets:
                break
        del seq
    else:
        raise RuntimeError(f"only {len(pfs)} of {num_jets} {what} in {max_events} events")
    return np.stack(pfs), np.stack(jfs)


__all__ = ["cluster_visible", "delta_r", "jet_arrays", "matched_jets", "simulate_matched_jets", "wrap_phi"]
