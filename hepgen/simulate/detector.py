"""A parametrised detector response: hepgen's stand-in for Delphes (ATLAS-like card).

The Dark Machines events (seed 003 sec. 3.1) went through Delphes with an ATLAS card.
hepgen does not run Delphes; it applies the same kinds of effects as simple, vectorised
(numpy) parametrisations of the generator-level (truth) final state. All energies here
are in GeV; the producer (:mod:`hepgen.simulate.events`) converts to MeV for the file.

=====================  ================================================================
acceptance             calorimeters |eta| < 4.9 (everything outside is lost, and so
                       shows up as missing energy), tracker |eta| < 2.5 (electrons and
                       b-tagging), muon system |eta| < 2.7
jets                   sigma_E / E = N/E (+) S/sqrt(E) (+) C with N = 1.5 GeV, S = 100%,
                       C = 5% (``(+)`` = in quadrature); the whole four-vector is scaled,
                       so eta, phi and m/E are kept
electrons, photons     sigma_E / E = 10%/sqrt(E) (+) 0.7% (ECAL), four-vector scaled
muons                  sigma_pT / pT = a (+) b pT with a = 1% (|eta| < 1.5) or 1.5%
                       (endcap), b = 1e-4 / GeV: 1% at 25 GeV, 1.4% at 100 GeV, 3% at
                       300 GeV
identification         e: 95% (|eta| < 1.5), 85% (1.5 < |eta| < 2.5);
                       mu: 95% (|eta| < 1.5), 85% (1.5 < |eta| < 2.7);
                       gamma: 95% (|eta| < 1.5), 85% (1.5 < |eta| < 2.5);
                       10 points lower for 10 < pT < 20 GeV, zero below 10 GeV
isolation              the scalar pT sum of the other visible particles with pT > 0.5 GeV
                       within Delta R < 0.3 must stay below 15% of the candidate's pT
b-tagging              |eta| < 2.5: 70% for jets within Delta R < 0.4 of a b hadron
                       (pT > 5 GeV), 10% for jets near a c hadron (c mistag), 1% for
                       the others (light mistag)
missing E_T            magnitude and phi of minus the vector sum of the transverse
                       momenta of all visible smeared final-state objects within
                       |eta| < 4.9: the smeared jets (clustered pT >= 10 GeV), the
                       smeared identified e, mu, gamma, and the soft term (particles of
                       the softer jets) with each particle's pT smeared by 50%/sqrt(E)
=====================  ================================================================

Identified isolated electrons, muons and photons are objects of their own; every other
visible particle (including non-isolated or unidentified leptons and photons, which in a
real detector end up in jets or are mis-identified as jets) is clustered into jets.
Neutrinos and the neutralino are invisible, so they -- like particles beyond
|eta| = 4.9 and jet mismeasurement -- create missing energy.

All numbers live in :class:`DetectorCard`; every random draw comes from the numpy
``Generator`` passed in, so a seeded generator reproduces the response exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: flavour labels of jets for b-tagging
LIGHT, CHARM, BOTTOM = 0, 1, 2


@dataclass(frozen=True)
class DetectorCard:
    """Every parameter of the detector response (GeV, see the module docstring)."""

    calo_eta: float = 4.9
    tracker_eta: float = 2.5
    muon_eta: float = 2.7
    barrel_eta: float = 1.5
    # jets: sigma_E/E = noise/E (+) stochastic/sqrt(E) (+) constant
    jet_noise: float = 1.5
    jet_stochastic: float = 1.0
    jet_constant: float = 0.05
    jet_met_threshold: float = 10.0   # clustered pT at and above which a jet is smeared as a jet in MET
    soft_stochastic: float = 0.5      # per-particle resolution of the MET soft term
    # electrons and photons
    em_stochastic: float = 0.10
    em_constant: float = 0.007
    # muons: sigma_pT/pT = a (+) b pT
    muon_a_barrel: float = 0.01
    muon_a_endcap: float = 0.015
    muon_b: float = 1e-4
    # identification
    id_min_pt: float = 10.0
    id_low_pt: float = 20.0
    id_low_pt_loss: float = 0.10
    eff_e: tuple[float, float] = (0.95, 0.85)      # barrel, endcap
    eff_mu: tuple[float, float] = (0.95, 0.85)
    eff_gamma: tuple[float, float] = (0.95, 0.85)
    # isolation
    iso_dr: float = 0.3
    iso_ratio: float = 0.15
    iso_min_pt: float = 0.5
    # b-tagging
    btag_dr: float = 0.4
    btag_hadron_pt: float = 5.0
    btag_eff: float = 0.70
    ctag_mistag: float = 0.10
    light_mistag: float = 0.01


ATLAS_LIKE = DetectorCard()


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Angles wrapped to (-pi, pi]."""
    wrapped = np.mod(np.asarray(phi) + np.pi, 2 * np.pi) - np.pi
    return np.where(wrapped == -np.pi, np.pi, wrapped)


def delta_r(eta1, phi1, eta2, phi2) -> np.ndarray:
    """Delta R with broadcasting."""
    dphi = wrap_phi(np.asarray(phi1) - np.asarray(phi2))
    return np.hypot(np.asarray(eta1) - np.asarray(eta2), dphi)


def kinematics(px, py, pz) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pt, eta, phi) of momenta; eta = +-inf along the beam."""
    px, py, pz = (np.asarray(a, dtype=np.float64) for a in (px, py, pz))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), np.sign(pz) * np.inf)
    return pt, eta, np.arctan2(py, px)


# --- resolutions --------------------------------------------------------------------

def jet_resolution(e: np.ndarray, card: DetectorCard = ATLAS_LIKE) -> np.ndarray:
    """Relative jet energy resolution sigma_E / E at energy ``e`` (GeV)."""
    e = np.maximum(np.asarray(e, dtype=np.float64), 1e-3)
    return np.sqrt((card.jet_noise / e) ** 2 + card.jet_stochastic ** 2 / e + card.jet_constant ** 2)


def em_resolution(e: np.ndarray, card: DetectorCard = ATLAS_LIKE) -> np.ndarray:
    """Relative electron/photon energy resolution sigma_E / E."""
    e = np.maximum(np.asarray(e, dtype=np.float64), 1e-3)
    return np.sqrt(card.em_stochastic ** 2 / e + card.em_constant ** 2)


def muon_resolution(pt: np.ndarray, eta: np.ndarray, card: DetectorCard = ATLAS_LIKE) -> np.ndarray:
    """Relative muon transverse-momentum resolution sigma_pT / pT."""
    a = np.where(np.abs(eta) < card.barrel_eta, card.muon_a_barrel, card.muon_a_endcap)
    return np.hypot(a, card.muon_b * np.asarray(pt, dtype=np.float64))


def smear_factors(rng: np.random.Generator, sigma: np.ndarray) -> np.ndarray:
    """Multiplicative response 1 + sigma * N(0, 1), kept positive."""
    sigma = np.asarray(sigma, dtype=np.float64)
    return np.maximum(1.0 + sigma * rng.standard_normal(sigma.shape), 1e-3)


# --- identification, isolation, tagging ---------------------------------------------

def identification_efficiency(kind: str, pt: np.ndarray, eta: np.ndarray,
                              card: DetectorCard = ATLAS_LIKE) -> np.ndarray:
    """Probability that a true isolated e, mu or gamma (``kind`` = 'e', 'mu', 'gamma') is identified."""
    eff, reach = {"e": (card.eff_e, card.tracker_eta), "mu": (card.eff_mu, card.muon_eta),
                  "gamma": (card.eff_gamma, card.tracker_eta)}[kind]
    pt = np.asarray(pt, dtype=np.float64)
    aeta = np.abs(np.asarray(eta, dtype=np.float64))
    out = np.where(aeta < card.barrel_eta, eff[0], np.where(aeta < reach, eff[1], 0.0))
    out = np.where(pt < card.id_low_pt, out - card.id_low_pt_loss, out)
    return np.where(pt < card.id_min_pt, 0.0, np.clip(out, 0.0, 1.0))


def isolation_ratio(cand_pt, cand_eta, cand_phi, cand_index, pt, eta, phi,
                    card: DetectorCard = ATLAS_LIKE) -> np.ndarray:
    """Scalar pT sum of the other particles (pT > iso_min_pt) within iso_dr, over the candidate's pT.

    ``cand_*`` describe K candidates taken from the particle list (``cand_index`` their
    positions in it, so that a candidate does not count itself); ``pt, eta, phi`` are the
    visible particles of the same event.
    """
    cand_pt = np.asarray(cand_pt, dtype=np.float64)
    if not len(cand_pt):
        return np.zeros(0)
    soft = np.asarray(pt) > card.iso_min_pt
    dr = delta_r(np.asarray(cand_eta)[:, None], np.asarray(cand_phi)[:, None], np.asarray(eta)[None],
                 np.asarray(phi)[None])
    inside = (dr < card.iso_dr) & soft[None]
    inside[np.arange(len(cand_pt)), cand_index] = False
    return (inside * np.asarray(pt)[None]).sum(1) / cand_pt


def jet_flavour(jet_eta, jet_phi, b_eta, b_phi, c_eta, c_phi, card: DetectorCard = ATLAS_LIKE) -> np.ndarray:
    """Truth label of each jet: BOTTOM if a b hadron lies within btag_dr, else CHARM for a c hadron, else LIGHT.

    Pass only heavy-flavour hadrons above ``btag_hadron_pt``.
    """
    jet_eta, jet_phi = np.asarray(jet_eta), np.asarray(jet_phi)
    out = np.full(jet_eta.shape, LIGHT, dtype=np.int8)

    def near(eta, phi):
        if not len(eta):
            return np.zeros(jet_eta.shape, dtype=bool)
        return (delta_r(jet_eta[:, None], jet_phi[:, None], np.asarray(eta)[None], np.asarray(phi)[None])
                < card.btag_dr).any(1)

    out[near(c_eta, c_phi)] = CHARM
    out[near(b_eta, b_phi)] = BOTTOM
    return out


def btag(rng: np.random.Generator, flavour: np.ndarray, eta: np.ndarray,
         card: DetectorCard = ATLAS_LIKE) -> np.ndarray:
    """Which jets are b-tagged: efficiency by truth flavour, none outside the tracker."""
    flavour = np.asarray(flavour)
    prob = np.select([flavour == BOTTOM, flavour == CHARM], [card.btag_eff, card.ctag_mistag], card.light_mistag)
    prob = np.where(np.abs(eta) < card.tracker_eta, prob, 0.0)
    return rng.random(flavour.shape) < prob


def missing_et(px: np.ndarray, py: np.ndarray, event: np.ndarray, num_events: int) -> tuple[np.ndarray, np.ndarray]:
    """(MET, METphi) per event from the visible (smeared) transverse momenta ``px, py`` of event ``event``."""
    sx = np.bincount(event, weights=px, minlength=num_events)
    sy = np.bincount(event, weights=py, minlength=num_events)
    return np.hypot(sx, sy), np.arctan2(-sy, -sx)
