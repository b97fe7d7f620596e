"""A parametrised calorimeter shower simulator: the reference showers of hepgen.

**A stand-in for Geant4, not a replacement.** Neither the CaloChallenge / ILD Geant4
samples nor Geant4's physics tables can be downloaded here, so the reference showers
come from a fast parametrisation in the spirit of GFlash, voxelised onto the real
geometries (:mod:`hepgen.data.geometry`). It gives the models a realistic *kind* of
target (strongly correlated, sparse, energy-dependent, with physical fluctuations) and the
evaluation a ground truth whose distortions we control; numbers obtained on it are not
Geant4 numbers.

Electromagnetic showers (Grindhammer, Rudowicz, Peters, NIM A290 (1990) 469;
Grindhammer & Peters, hep-ex/0001020):

* longitudinal profile dE/dt = E f(t), f a gamma distribution in depth t (radiation
  lengths X0) with shape alpha and rate beta = (alpha - 1)/T, T the depth of the maximum;
  event by event (ln T, ln alpha) are drawn from a correlated normal with
  <ln T> = ln(ln y - 0.812), sigma = 1/(-1.4 + 1.26 ln y),
  <ln alpha> = ln(0.81 + (0.458 + 2.26/Z) ln y), sigma = 1/(-0.58 + 0.86 ln y),
  rho = 0.705 - 0.023 ln y, y = E/E_c (the homogeneous-medium fit of the paper);
  photons first travel an exponential conversion depth (mean 9/7 X0);
* radial profile f(r) = p 2r R_C^2/(r^2 + R_C^2)^2 + (1 - p) 2r R_T^2/(r^2 + R_T^2)^2 in
  Moliere radii, with core radius R_C = z1 + z2 tau, tail radius
  R_T = k1 (exp(k3 (tau - k2)) + exp(k4 (tau - k2))) and core fraction
  p = p1 exp((p2 - tau)/p3 - exp((p2 - tau)/p3)) evaluated at tau = t/T of each layer
  (the paper's Z- and E-dependent coefficients), plus a 5 % event-by-event scale
  fluctuation of both radii;
* energy deposits in the active layers, of two kinds. *MIP crossings* of charged tracks:
  a Landau distribution (``scipy.stats.landau``, cut at its 99.5 % quantile where delta
  electrons escape a thin layer) of relative FWHM ``landau_fwhm`` (0.30 for 0.3 mm Si,
  Bichsel, Rev. Mod. Phys. 60 (1988) 663: w/Delta_p ~ 0.3 at 300 um), stretched by the path
  length 1/cos(theta) of a track crossing at an angle (cos(theta) uniform in [0.5, 1]: the
  broad angular spread of shower electrons; GFlash itself has no angles). *Soft deposits*:
  dN/dE ~ 1/E from half the recorded minimum up to the MIP value, the electrons that stop
  in, or Compton electrons that start in, the active layer; they carry ``soft_share``
  (20 %) of the visible energy, spread further out (half the core fraction), and give the
  continuum below the MIP peak that Geant4 showers have (the share is a choice: about a
  fifth of DS2 hits below 1 MeV; no Geant4 spectrum is at hand to fit it).
  The number of each kind per (shower, layer) is Poisson, so sampling fluctuations follow
  from the counting. Up to ``spot_cap`` deposits per (shower, layer) are placed one by one
  around the shower axis; beyond it the counts per voxel are drawn at once (multinomial
  with the voxels' exact probabilities under the radial profile, a voxel's energy the sum
  of its deposits), which samples the same distribution at bounded cost, so the spectrum
  has no step in E_inc (the earlier version merged crossings above 2000 per layer, and
  the MIP peak vanished abruptly near 70 GeV);
* the shower axis jitters: from the shower's start it is offset and tilted at random
  (Gaussian, 0.1 R_M and 0.02 R_M per X0 at 1 GeV, falling like 1/sqrt(E)), as the first
  few particles set the direction of the core; the widths are a choice of the same order
  as the per-layer centre spread of Geant4 showers, not a fit.

Charged pions (DS1 pions): the pion travels as a MIP to an exponentially distributed
first interaction (one nuclear interaction length lambda); there the energy splits into
an electromagnetic fraction f_em = 1 - (E/E0)^(k-1) (E0 = 1 GeV, k = 0.82; Gabriel et al.,
NIM A338 (1994) 336) with a beta-distributed event-by-event spread, showering as above,
and a hadronic rest with a gamma profile in lambda (shape 1.5 + 0.25 ln E, maximum at
0.2 + 0.1 ln E lambda), a wider core+tail radial profile and response h/e = 0.75.
*Neglected*: hadronic sub-showers' own EM parts, the particle composition, nuclear
binding fluctuations beyond the f_em spread, delayed neutrons and the sampling-calorimeter
corrections of GFlash (F_S, e/mip terms).

ILD pions (``ild-pions``, seed 001 ch. 7): the same pion model in the AHCAL
(48 x 17.2 mm steel + 3 mm scintillator, 3 x 3 cm tiles on a 25 x 25 x 48 grid, no ECAL
in front), energies uniform in 10-100 GeV, visible energy in MeV with the MIP at ~0.5 MeV;
as in the seed's data set, only showers with at least 70 cells above 0.5 MIP (0.25 MeV)
are kept (pions passing as a MIP are redrawn). *Also neglected there*: the magnetic
field's bend of the shower core (the seed's slight x-y asymmetry), the scintillator's
Birks saturation and SiPM response, and the time structure (neutron capture).

Detectors (per geometry, :data:`DETECTORS`): the layer sequence in X0 and lambda, dead
material in front and between read-out layers, the visible fraction (sampling fraction
for electrons) of each active layer, the crossing energy, and whether the stored
energies are calibrated (divided by the sampling fraction, CaloChallenge) or visible
(ILD, MeV in the silicon with the MIP at 0.2 MeV). Incident energies are drawn as in the
datasets: the 15 energies 256 MeV x 2^k of DS1, log-uniform 1 GeV - 1 TeV for DS2/DS3,
uniform 10-100 GeV for the ILD grid. Voxels below the recorded minimum (15.15 keV for
DS2/DS3, 2 keV for DS1) are zero.

Written by hand because no Python library provides a GFlash-type parametrisation (Geant4's
GFlash is C++ inside Geant4, which is not available here); the sampling is vectorised
numpy over all spots of a chunk of showers, and chunks run in parallel with Dask.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import gammainc

from hepgen.data.calo import ShowerSample, ShowerWriter
from hepgen.data.geometry import CaloGeometry, load_geometry
from hepgen.errors import OptionError
from hepgen.simulate.parallel import chunk_sizes, derive_seed, run_chunks


#: Version of the stand-in's physics, written into every shower file it makes
#: (``producer_version``): cached reference samples of an older version are made again.
#: 2: Landau MIP peak with track angles, soft continuum, exact voxel counts, axis jitter.
PRODUCER_VERSION = 2


@dataclass(frozen=True)
class Segment:
    """A slab of the detector: thickness in X0 and lambda, the read-out layer it belongs to
    (index into the geometry's read-out layers, or None for dead material), its visible
    fraction and its critical energy (MeV, for MIP losses)."""

    x0: float
    lam: float
    readout: int | None
    visible: float = 1.0
    critical_energy: float = 10.0


@dataclass(frozen=True)
class Detector:
    """Material and response of one geometry."""

    name: str
    segments: tuple[Segment, ...]
    z: float                      # effective atomic number
    critical_energy: float        # MeV
    moliere_radius: float         # mm
    crossing_mpv: float           # MeV deposited in the active layer by one crossing
    calibrated: bool              # store visible / sampling fraction (True) or visible (False)
    calibration: float            # 1 / nominal visible fraction when calibrated
    threshold: float              # MeV, minimum recorded voxel energy
    energies: str                 # "ds1" | "log-uniform" | "uniform"
    energy_range: tuple[float, float]  # MeV
    spot_cap: int = 1024          # deposits per (shower, layer) placed one by one; above, voxel counts are multinomial
    hadronic_radii: tuple[float, float, float] = (60.0, 250.0, 0.6)  # R_C, R_T (mm), core fraction
    soft_share: float = 0.2       # share of the visible energy in soft (sub-MIP) deposits
    landau_fwhm: float = 0.3      # FWHM / MPV of one perpendicular crossing
    cos_min: float = 0.5          # track angles: cos(theta) uniform in [cos_min, 1]
    axis_jitter: tuple[float, float] = (0.1, 0.02)  # axis offset, tilt per X0: x R_M / sqrt(E / GeV)
    particle: str = "electron"
    min_hits: int = 0             # keep only showers with this many cells above hit_cut (ILD pions)
    hit_cut: float = 0.0          # MeV

    @property
    def num_readout(self) -> int:
        return 1 + max(s.readout for s in self.segments if s.readout is not None)


def _siw_layers(n: int, w_mm: float, si_mm: float) -> list[Segment]:
    x0 = w_mm / 3.504 + si_mm / 93.7
    lam = w_mm / 99.46 + si_mm / 465.2
    mip_w, mip_si = 1.145 * 19.3 * w_mm / 10, 1.664 * 2.33 * si_mm / 10  # MeV per crossing
    visible = 0.75 * mip_si / (mip_w + mip_si)  # e/mip ~ 0.75 for W
    return [Segment(x0, lam, i, visible, 7.97) for i in range(n)]


def _ds23() -> Detector:
    segs = tuple(_siw_layers(45, 1.4, 0.3))
    return Detector("SiW (CaloChallenge DS2/DS3: 1.4 mm W + 0.3 mm Si)", segs, z=74.0, critical_energy=7.97,
                    moliere_radius=9.327 * 1.7 / 1.4, crossing_mpv=0.084, calibrated=True,
                    calibration=1 / segs[0].visible, threshold=15.15e-3, energies="log-uniform",
                    energy_range=(1e3, 1e6))


def _ild() -> Detector:
    segs = _siw_layers(20, 2.1, 0.5) + _siw_layers(10, 4.2, 0.5)
    segs = tuple(Segment(s.x0, s.lam, i, s.visible, s.critical_energy) for i, s in enumerate(segs))
    return Detector("ILD-like SiW ECAL (20 x 2.1 mm + 10 x 4.2 mm W, 0.5 mm Si, 5.08 mm cells)", segs, z=74.0,
                    critical_energy=7.97, moliere_radius=18.0, crossing_mpv=0.16, calibrated=False,
                    calibration=1.0, threshold=0.0, energies="uniform", energy_range=(10e3, 100e3),
                    landau_fwhm=0.27, particle="photon")


def _ahcal() -> Detector:
    # ILD AHCAL (seed 001 L659, L1989): 48 x (17.2 mm steel + 3 mm scintillator), 3 x 3 cm
    # tiles, the ECAL in front removed as in the seed's data set. Steel: X0 17.57 mm,
    # lambda 167.7 mm; polystyrene: X0 413 mm, lambda 701 mm; MIP losses 1.451 / 1.936 MeV
    # cm^2/g. Visible (scintillator) energy in MeV, the MIP at ~0.5 MeV (seed L1993).
    mip_fe, mip_sc = 1.451 * 7.874 * 1.72, 1.936 * 1.032 * 0.30
    visible = 0.8 * mip_sc / (mip_fe + mip_sc)  # e/mip ~ 0.8 for steel-scintillator
    seg = Segment(17.2 / 17.57 + 3.0 / 413.0, 17.2 / 167.7 + 3.0 / 701.0, 0, visible, 21.0)
    segs = tuple(Segment(seg.x0, seg.lam, i, seg.visible, seg.critical_energy) for i in range(48))
    return Detector("ILD AHCAL-like steel/scintillator (48 x 17.2 mm Fe + 3 mm scintillator, 30 mm tiles)", segs,
                    z=26.0, critical_energy=21.0, moliere_radius=24.0, crossing_mpv=0.5, calibrated=False,
                    calibration=1.0, threshold=0.0, energies="uniform", energy_range=(10e3, 100e3),
                    hadronic_radii=(45.0, 200.0, 0.6), landau_fwhm=0.35, particle="pion",
                    min_hits=70, hit_cut=0.25)


def _atlas(particle: str) -> Detector:
    # ATLAS barrel at |eta| ~ 0.2-0.25 (DS1): upstream material, presampler, EMB1-3,
    # cryostat, TileCal A, BC, D. Read-out indices follow the geometry's relevant layers.
    pb, fe = 7.4, 21.0
    segs = [Segment(2.0, 0.10, None, 1.0, pb), Segment(0.3, 0.015, 0, 1.0, pb), Segment(0.3, 0.015, None, 1.0, pb),
            Segment(4.3, 0.17, 1, 1.0, pb), Segment(16.0, 0.65, 2, 1.0, pb), Segment(2.0, 0.09, 3, 1.0, pb),
            Segment(3.0, 0.20, None, 1.0, fe)]
    if particle == "photon":
        segs += [Segment(14.0, 1.5, 4, 1.0, fe), Segment(60.0, 6.0, None, 1.0, fe)]
    else:
        segs += [Segment(14.0, 1.5, 4, 1.0, fe), Segment(39.0, 4.1, 5, 1.0, fe), Segment(17.0, 1.8, 6, 1.0, fe)]
    return Detector(f"ATLAS-like barrel (CaloChallenge DS1 {particle}s): LAr/Pb EM + Fe/scintillator tiles",
                    tuple(segs), z=60.0, critical_energy=pb, moliere_radius=40.0, crossing_mpv=6.0,
                    calibrated=False, calibration=1.0, threshold=2e-3, energies="ds1",
                    energy_range=(256.0, 256.0 * 2 ** 14), landau_fwhm=0.3,
                    particle="photon" if particle == "photon" else "pion")


DETECTORS = {"ds1-photons": _atlas("photon"), "ds1-pions": _atlas("pion"), "ds2": _ds23(), "ds3": _ds23(),
             "ild-photons": _ild(), "ild-pions": _ahcal()}


@lru_cache(maxsize=None)
def _landau_table() -> tuple[np.ndarray, np.ndarray, float, float]:
    """Quantile table of the Landau distribution (``scipy.stats.landau``) for fast
    inverse-CDF sampling, cut at its 99.5 % quantile (delta electrons that carry more
    energy leave a thin active layer), with the most probable value and the FWHM of
    scipy's parametrisation (measured on its pdf, so no convention is assumed)."""
    from scipy.stats import landau

    u = np.linspace(0.0, 0.995, 8001)
    u[0] = 1e-9
    x = np.linspace(-4.0, 12.0, 160_001)
    pdf = landau.pdf(x)
    above = x[pdf > 0.5 * pdf.max()]
    return u, landau.ppf(u), float(x[np.argmax(pdf)]), float(above.max() - above.min())


def _mip_energies(rng: np.random.Generator, n: int, fwhm: float, cos_min: float) -> np.ndarray:
    """Energies of charged-track crossings in units of the perpendicular MPV: a Landau
    distribution of relative FWHM ``fwhm`` with its peak at 1, times the path length
    1/cos(theta) of a track at an angle with cos(theta) uniform in [cos_min, 1]."""
    u, q, mode, width = _landau_table()
    lam = np.interp(rng.random(n) * u[-1], u, q)
    path = 1.0 / rng.uniform(cos_min, 1.0, n)
    return path * np.maximum(1.0 + fwhm / width * (lam - mode), 0.05)


def _soft_energies(rng: np.random.Generator, n: int, lowest: float) -> np.ndarray:
    """Soft deposits in units of the MPV: dN/dE ~ 1/E between ``lowest`` and the MPV
    (electrons that stop in, or Compton electrons that start in, the active layer)."""
    return np.exp(rng.uniform(np.log(lowest), 0.0, n))


def _soft_lowest(det: Detector) -> float:
    """Lower end of the soft spectrum (units of the MPV): half the recorded minimum in
    visible energy, or 1 % of the MPV where nothing is cut."""
    if det.threshold <= 0:
        return 0.01
    return 0.5 * det.threshold / det.calibration / det.crossing_mpv


@lru_cache(maxsize=None)
def _moments(det: Detector) -> tuple[tuple[float, float], tuple[float, float]]:
    """(mean, variance) of one MIP crossing and of one soft deposit in MPV units (fixed-seed
    estimates from 400k draws, so a run's showers do not depend on anything else)."""
    rng = np.random.default_rng(12345)
    mip = _mip_energies(rng, 400_000, det.landau_fwhm, det.cos_min)
    soft = _soft_energies(rng, 400_000, _soft_lowest(det))
    return (float(mip.mean()), float(mip.var())), (float(soft.mean()), float(soft.var()))


def incident_energies(detector: Detector, n: int, rng: np.random.Generator) -> np.ndarray:
    """Incident energies (MeV) distributed as in the dataset."""
    lo, hi = detector.energy_range
    if detector.energies == "ds1":
        return 256.0 * 2.0 ** rng.integers(0, 15, n)
    if detector.energies == "log-uniform":
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    return rng.uniform(lo, hi, n)


def _layer_bounds(detector: Detector, unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative depth of each segment's front and back in ``unit`` ('x0' or 'lam')."""
    t = np.array([getattr(s, unit) for s in detector.segments])
    back = np.cumsum(t)
    return back - t, back, np.array([-1 if s.readout is None else s.readout for s in detector.segments])


def _segment_fractions(shape, rate, start, front, back) -> np.ndarray:
    """Fraction of a gamma profile starting at ``start`` deposited in each segment (B, S)."""
    lo = np.clip(front[None, :] - start[:, None], 0, None)
    hi = np.clip(back[None, :] - start[:, None], 0, None)
    return gammainc(shape[:, None], rate[:, None] * hi) - gammainc(shape[:, None], rate[:, None] * lo)


def _to_readout(values: np.ndarray, readout: np.ndarray, num_readout: int, mean: bool = False) -> np.ndarray:
    """Sum (or average) per-segment values (B, S) over the segments of each read-out layer."""
    out = np.zeros((values.shape[0], num_readout))
    count = np.zeros(num_readout)
    for s, r in enumerate(readout):
        if r >= 0:
            out[:, r] += values[:, s]
            count[r] += 1
    return out / np.maximum(count, 1) if mean else out


@dataclass
class _Component:
    """Visible energy per (shower, read-out layer) and radial parameters (mm) per entry."""

    visible: np.ndarray       # (B, L) MeV in the active material
    r_core: np.ndarray        # (B, L) mm
    r_tail: np.ndarray        # (B, L) mm
    p_core: np.ndarray        # (B, L)


def _em_component(det: Detector, energy: np.ndarray, start_x0: np.ndarray, rng: np.random.Generator) -> _Component:
    """GFlash electromagnetic shower starting at ``start_x0`` (X0) with ``energy`` (MeV)."""
    b = len(energy)
    e_safe = np.maximum(energy, 1e-3)
    y = np.maximum(e_safe / det.critical_energy, 3.0)
    ln_y = np.log(y)
    mean_ln_t = np.log(np.maximum(ln_y - 0.812, 0.05))
    mean_ln_a = np.log(0.81 + (0.458 + 2.26 / det.z) * ln_y)
    sig_t = 1.0 / np.maximum(-1.4 + 1.26 * ln_y, 0.8)
    sig_a = 1.0 / np.maximum(-0.58 + 0.86 * ln_y, 0.8)
    rho = np.clip(0.705 - 0.023 * ln_y, -0.99, 0.99)
    z1, z2 = rng.standard_normal(b), rng.standard_normal(b)
    ln_t = mean_ln_t + sig_t * z1
    ln_a = mean_ln_a + sig_a * (rho * z1 + np.sqrt(1 - rho ** 2) * z2)
    t_max, alpha = np.exp(ln_t), np.maximum(np.exp(ln_a), 1.05)
    beta = (alpha - 1.0) / t_max
    front, back, readout = _layer_bounds(det, "x0")
    frac = _segment_fractions(alpha, beta, start_x0, front, back)
    visible_seg = frac * energy[:, None] * np.array([s.visible for s in det.segments])[None, :]
    visible = _to_readout(visible_seg, readout, det.num_readout)
    # radial parameters at tau = depth of the read-out layer centre / T
    mid = 0.5 * (front + back)
    tau_seg = np.clip(mid[None, :] - start_x0[:, None], 0, None) / t_max[:, None]
    tau = _to_readout(tau_seg, readout, det.num_readout, mean=True)
    ln_e = np.log(e_safe / 1e3)[:, None]
    z = det.z
    r_c = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z) * tau
    k1, k2, k3, k4 = 0.659 - 0.00309 * z, 0.645, -2.59, 0.3585 + 0.0421 * ln_e
    r_t = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1, p2, p3 = 0.2632 - 0.00094 * z, 0.401 + 0.00187 * z, np.maximum(1.313 - 0.0686 * ln_e, 0.2)
    p = np.clip(p1 * np.exp((p2 - tau) / p3 - np.exp((p2 - tau) / p3)), 0.0, 1.0)
    scale = np.exp(0.05 * rng.standard_normal(b))[:, None] * det.moliere_radius
    return _Component(visible, np.maximum(r_c, 0.01) * scale, np.maximum(r_t, 0.05) * scale, p)


def _x0_of_lambda(det: Detector, lam: np.ndarray) -> np.ndarray:
    """Depth in X0 at depth ``lam`` in interaction lengths (piecewise linear through the segments)."""
    lam_edges = np.concatenate([[0], np.cumsum([s.lam for s in det.segments])])
    x0_edges = np.concatenate([[0], np.cumsum([s.x0 for s in det.segments])])
    return np.interp(lam, lam_edges, x0_edges, right=x0_edges[-1] + 1e3)


def _pion_components(det: Detector, energy: np.ndarray, rng: np.random.Generator) -> tuple[list[_Component], np.ndarray]:
    """The pion's EM, hadronic and MIP parts, and the depth (X0) of its first interaction."""
    b = len(energy)
    start_lam = rng.exponential(1.0, b)
    start_x0 = _x0_of_lambda(det, start_lam)
    # electromagnetic fraction with an event-by-event beta spread (mean f, std ~0.12)
    f_mean = np.clip(1.0 - (np.maximum(energy, 1e3) / 1e3) ** (0.82 - 1.0), 0.05, 0.95)
    conc = f_mean * (1 - f_mean) / 0.12 ** 2 - 1
    f_em = rng.beta(np.maximum(f_mean * conc, 0.2), np.maximum((1 - f_mean) * conc, 0.2))
    em = _em_component(det, energy * f_em, start_x0, rng)
    # hadronic remainder: gamma profile in lambda
    ln_e = np.log(np.maximum(energy, 1e3) / 1e3)
    shape = 1.5 + 0.25 * ln_e
    t_max = 0.2 + 0.1 * ln_e
    rate = (shape - 1.0) / t_max
    front, back, readout = _layer_bounds(det, "lam")
    frac = _segment_fractions(shape, rate, start_lam, front, back)
    visible_seg = 0.75 * frac * (energy * (1 - f_em))[:, None] * np.array([s.visible for s in det.segments])[None, :]
    rc, rt, pc = det.hadronic_radii
    had_vis = _to_readout(visible_seg, readout, det.num_readout)
    widen = np.exp(0.1 * rng.standard_normal(b))[:, None]
    ones = np.ones_like(had_vis)
    had = _Component(had_vis, rc * widen * ones, rt * widen * ones, pc * ones)
    # the pion as a MIP before its first interaction: E_c per X0 crossed, on the axis
    x0_front, x0_back, readout_x0 = _layer_bounds(det, "x0")
    crossed = np.clip(np.minimum(x0_back[None, :], start_x0[:, None]) - x0_front[None, :], 0, None)
    mip_seg = crossed * np.array([s.critical_energy * s.visible for s in det.segments])[None, :]
    mip = _Component(_to_readout(mip_seg, readout_x0, det.num_readout), 2.0 * ones, 10.0 * ones, 1.0 * ones)
    return [em, had, mip], start_x0


def _shower_axis(det: Detector, energy: np.ndarray, start_x0: np.ndarray, rng: np.random.Generator):
    """Transverse position (mm) of the shower axis in each read-out layer, (B, L) for x and y.

    The first interactions set the direction of the shower's core: from its start the axis
    is displaced by a random offset and tilted by a random angle, both Gaussian with widths
    ``axis_jitter`` x R_M / sqrt(E / GeV) (offset; tilt per X0), shrinking like the
    fluctuations of the first few particles. Before the start (a pion's MIP track, a photon
    before it converts) the particle follows the nominal axis."""
    front, back, readout = _layer_bounds(det, "x0")
    depth = _to_readout(0.5 * (front + back)[None, :], readout, det.num_readout, mean=True)[0]
    after = np.clip(depth[None, :] - start_x0[:, None], 0.0, None)
    scale = det.moliere_radius / np.sqrt(np.maximum(energy, 1.0) / 1e3)
    j0, j1 = det.axis_jitter
    axes = []
    for _ in range(2):
        offset, tilt = rng.standard_normal(len(energy)) * j0 * scale, rng.standard_normal(len(energy)) * j1 * scale
        axes.append(np.where(after > 0, offset[:, None] + tilt[:, None] * after, 0.0))
    return axes[0], axes[1]


@lru_cache(maxsize=None)
def _layer_tables(geometry: CaloGeometry):
    """Per read-out layer: first voxel, number of voxels, and for a polar geometry the
    radial edges (padded), the radial bin of each local voxel (-1 beyond the layer) and the
    number of angular bins; plus the largest layer's number of voxels."""
    bounds = geometry.layer_boundaries
    first, sizes = bounds[:-1], np.diff(bounds)
    width = int(sizes.max())
    if geometry.kind == "grid":
        return first, sizes, width, None, None, None
    layers = [lay for lay in geometry.layers if lay.num_voxels]
    n_edges = max(len(lay.r_edges) for lay in layers)
    edges = np.array([list(lay.r_edges) + [lay.r_edges[-1]] * (n_edges - len(lay.r_edges)) for lay in layers])
    r_bin = np.full((len(layers), width), -1)
    for k, lay in enumerate(layers):
        r_bin[k, :lay.num_voxels] = np.tile(np.arange(lay.n_r), lay.n_alpha)
    return first, sizes, width, edges, r_bin, np.array([lay.n_alpha for lay in layers])


def _rectangle_cdf(x: np.ndarray, y: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """P(X < x, Y < y) for the 2-D density R^2 / (pi (x^2 + y^2 + R^2)^2) whose radial
    distribution is the GFlash profile 2 r R^2 / (r^2 + R^2)^2 (derived by integrating the
    density; checked against numerical quadrature in the tests)."""
    a, b = np.sqrt(radius ** 2 + y ** 2), np.sqrt(radius ** 2 + x ** 2)
    return (0.25 + x / (4 * b) + y / (4 * a) + x / (2 * np.pi * b) * np.arctan(y / b)
            + y / (2 * np.pi * a) * np.arctan(x / a))


def _ray_mass(r: np.ndarray, s: np.ndarray, c2: np.ndarray, radius2: np.ndarray) -> np.ndarray:
    """Antiderivative in r of the profile density times r along a ray from the origin:
    with v = r - s (s the axis's projection on the ray, c^2 = t^2 + R^2, t its distance
    from the ray), R^2 / pi * [ -1 / (2 (v^2 + c^2)) + s (v / (2 c^2 (v^2 + c^2)) + arctan(v / c) / (2 c^3)) ]."""
    v = r - s
    q = v ** 2 + c2
    c = np.sqrt(c2)
    return radius2 / np.pi * (-0.5 / q + s * (v / (2 * c2 * q) + np.arctan(v / c) / (2 * c2 * c)))


def _profile_probabilities(geometry: CaloGeometry, layer: np.ndarray, ax: np.ndarray, ay: np.ndarray,
                           radius: np.ndarray) -> np.ndarray:
    """Probability of each voxel of ``layer`` (local order, padded) and of leaving the read-out
    (last column) for the 2-D profile R^2 / (pi (|x - a|^2 + R^2)^2) of ``radius`` R (mm)
    around the axis a = (ax, ay), shape (m, width + 1). The radial distribution of this
    density is the GFlash profile 2 r R^2 / (r^2 + R^2)^2.

    Grids: exact, from the density's rectangle CDF (:func:`_rectangle_cdf`). Polar layers:
    the radial integral along each ray from the origin is closed-form (:func:`_ray_mass`),
    the angular one Gauss-Legendre per angular bin; exact for a centred axis."""
    first, sizes, width, edges, r_bin, n_alpha = _layer_tables(geometry)
    m = len(layer)
    p = np.zeros((m, width + 1))
    if geometry.kind == "grid":
        _, nx, ny = geometry.grid_shape
        c = geometry.cell_size
        xe = (np.arange(nx + 1) - nx / 2) * c
        ye = (np.arange(ny + 1) - ny / 2) * c
        cdf = _rectangle_cdf(xe[None, :, None] - ax[:, None, None], ye[None, None, :] - ay[:, None, None],
                             radius[:, None, None])
        cells = cdf[:, 1:, 1:] - cdf[:, :-1, 1:] - cdf[:, 1:, :-1] + cdf[:, :-1, :-1]
        p[:, :width] = np.clip(cells.reshape(m, -1), 0.0, None)
    else:
        for k in np.unique(layer):
            rows = np.flatnonzero(layer == k)
            na, nr = int(n_alpha[k]), int(sizes[k]) // int(n_alpha[k])
            nodes, weights = np.polynomial.legendre.leggauss(max(8, 64 // na))
            step = 2 * np.pi / na
            alpha = (-np.pi + step * (np.arange(na)[:, None] + 0.5 * (nodes[None, :] + 1))).ravel()
            s = ax[rows, None] * np.cos(alpha) + ay[rows, None] * np.sin(alpha)          # (m, A)
            c2 = np.maximum(ax[rows, None] ** 2 + ay[rows, None] ** 2 - s ** 2, 0.0) + radius[rows, None] ** 2
            e = edges[k, :nr + 1]
            h = _ray_mass(e[None, None, :], s[..., None], c2[..., None], radius[rows, None, None] ** 2)
            ring = np.diff(h, axis=2).reshape(len(rows), na, len(nodes), nr)
            cell = np.einsum("manr,n->mar", ring, weights) * (step / 2)
            p[rows, :na * nr] = np.clip(cell.reshape(len(rows), -1), 0.0, None)
    p[:, width] = np.clip(1.0 - p[:, :width].sum(1), 0.0, None)
    return p / p.sum(1, keepdims=True)


def _voxelise(det: Detector, geometry: CaloGeometry, components: list[_Component], axis, rng: np.random.Generator,
              block: int = 1024) -> np.ndarray:
    """Deposit every component's energy as MIP crossings and soft deposits and bin them into
    voxels: (B, voxels) stored energies.

    The number of each kind per (shower, layer) is Poisson, with means that split the
    visible energy into the soft share and the MIP rest. Where a (shower, layer) has at most
    ``spot_cap`` deposits each one is placed at a radius drawn from the radial profile and a
    uniform azimuth around the shower axis. Above, the counts per voxel are drawn at once,
    multinomial with the voxels' probabilities under the profile
    (:func:`_profile_probabilities`), and a voxel's energy is the sum of its deposits
    (single draws up to 16 deposits, beyond a gamma with the same mean and variance). Both
    branches sample the same distribution, so nothing changes where a layer crosses the cap.
    """
    b, n_layers = components[0].visible.shape
    nv = geometry.num_voxels
    (m_mip, v_mip), (m_soft, v_soft) = _moments(det)
    mpv, lowest = det.crossing_mpv, _soft_lowest(det)
    draw = (lambda k: _mip_energies(rng, k, det.landau_fwhm, det.cos_min),
            lambda k: _soft_energies(rng, k, lowest))
    moments = ((m_mip, v_mip), (m_soft, v_soft))
    first, sizes, width = _layer_tables(geometry)[:3]
    ax, ay = axis[0].ravel(), axis[1].ravel()
    out = np.zeros(b * nv)

    def add(rows, voxel, energy):
        ok = voxel >= 0
        out[:] += np.bincount((rows[ok] // n_layers) * nv + voxel[ok], weights=energy[ok], minlength=b * nv)

    for comp in components:
        vis = np.maximum(comp.visible.ravel(), 0.0)
        counts = (rng.poisson((1.0 - det.soft_share) * vis / (m_mip * mpv)),
                  rng.poisson(det.soft_share * vis / (m_soft * mpv)))
        p_core = comp.p_core.ravel()
        core_share = (p_core, 0.5 * p_core)  # soft deposits (photons) spread further out
        r_core, r_tail = comp.r_core.ravel(), comp.r_tail.ravel()
        small = counts[0] + counts[1] <= det.spot_cap
        # -- one by one -----------------------------------------------------------------
        for kind in (0, 1):
            n = np.where(small, counts[kind], 0)
            rows = np.repeat(np.arange(b * n_layers), n)
            if not len(rows):
                continue
            energy = draw[kind](len(rows)) * mpv
            core = rng.random(len(rows)) < core_share[kind][rows]
            u = rng.random(len(rows))
            r = np.where(core, r_core[rows], r_tail[rows]) * np.sqrt(u / np.maximum(1.0 - u, 1e-12))
            phi = rng.uniform(-np.pi, np.pi, len(rows))
            add(rows, geometry.voxel_index(rows % n_layers, ax[rows] + r * np.cos(phi), ay[rows] + r * np.sin(phi)),
                energy)
        # -- voxel counts at once ----------------------------------------------------------
        big = np.flatnonzero(~small)
        for lo in range(0, len(big), block):
            rows = big[lo:lo + block]
            layer = rows % n_layers
            core, tail = (_profile_probabilities(geometry, layer, ax[rows], ay[rows], radius[rows])
                          for radius in (r_core, r_tail))
            voxel = first[layer][:, None] + np.arange(width)[None, :]
            voxel = np.where(np.arange(width)[None, :] < sizes[layer][:, None], voxel, -1)
            for kind in (0, 1):
                share = core_share[kind][rows, None]
                c = rng.multinomial(counts[kind][rows], share * core + (1.0 - share) * tail)[:, :width]
                few = (c > 0) & (c <= 16)
                reps = c[few]
                energy = draw[kind](int(reps.sum())) * mpv
                add(np.repeat(np.broadcast_to(rows[:, None], c.shape)[few], reps), np.repeat(voxel[few], reps), energy)
                many = c > 16
                if many.any():
                    mean, var = moments[kind]
                    energy = rng.gamma(c[many] * mean ** 2 / var, var / mean) * mpv
                    add(np.broadcast_to(rows[:, None], c.shape)[many], voxel[many], energy)
    showers = out.reshape(b, nv) * det.calibration
    showers[showers < det.threshold] = 0.0
    return showers


def simulate_chunk(geometry_name: str, n: int, seed: int, progress=None,
                   energies: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` showers with seed ``seed``: (incident energies (n,), showers (n, voxels)) in MeV.

    ``energies`` fixes the incident energies (MeV, length ``n``) instead of drawing them
    from the dataset's spectrum (scans at fixed energy)."""
    det = DETECTORS[geometry_name]
    geometry = load_geometry(geometry_name)
    rng = np.random.default_rng(seed)
    if energies is not None and len(energies) != n:
        raise OptionError(f"energies: {len(energies)} values for {n} showers")
    parts_e, parts, kept = [], [], 0
    while kept < n:  # with min_hits: redraw until n showers pass (pions that do not shower)
        k = n - kept if not det.min_hits else max(8, int(1.1 * (n - kept)))
        if energies is None:
            energy = incident_energies(det, k, rng)
        else:
            energy = np.resize(np.asarray(energies, dtype=float)[kept:], k)
        if det.particle == "pion":
            components, start = _pion_components(det, energy, rng)
        else:
            start = rng.exponential(9.0 / 7.0, k) if det.particle == "photon" else np.zeros(k)
            components = [_em_component(det, energy, start, rng)]
        showers = _voxelise(det, geometry, components, _shower_axis(det, energy, start, rng), rng)
        if det.min_hits:
            keep = (showers > det.hit_cut).sum(1) >= det.min_hits
            energy, showers = energy[keep], showers[keep]
        parts_e.append(energy[: n - kept])
        parts.append(showers[: n - kept])
        kept += len(parts_e[-1])
    if progress is not None:
        progress(n)
    return np.concatenate(parts_e).astype(np.float32), np.concatenate(parts).astype(np.float32)


def default_chunk(geometry: CaloGeometry) -> int:
    return max(20, min(500, 2_000_000 // geometry.num_voxels))


def generate_showers(geometry: str, num_showers: int, seed: int = 0, *, workers: int | None = None,
                     scheduler: str | None = None, progress: bool = True, out=None, attrs: dict | None = None,
                     chunk: int | None = None) -> ShowerSample | None:
    """Reference showers on ``geometry``.

    The showers are made in chunks whose seeds depend only on ``seed`` and the chunk
    index, so the result is the same for any number of workers or a Dask cluster. With
    ``out`` (a path), chunks stream into the file in order (nothing larger than a chunk
    is held in memory) and None is returned; otherwise the sample is returned.
    """
    if geometry not in DETECTORS:
        raise OptionError(f"unknown geometry '{geometry}'; choose one of {', '.join(DETECTORS)}")
    if num_showers <= 0:
        raise OptionError(f"--num-showers must be positive, got {num_showers}")
    geo = load_geometry(geometry)
    attrs = {"generator": "hepgen parametrised showers (GFlash-type)", "seed": int(seed), **(attrs or {}),
             "producer_version": PRODUCER_VERSION}  # the seed always: a file says how to make it again
    sizes = chunk_sizes(num_showers, chunk or default_chunk(geo))
    tasks = [(geometry, size, derive_seed(seed, i)) for i, size in enumerate(sizes)]
    desc = f"{geometry} showers"
    if out is None:
        parts = run_chunks(simulate_chunk, tasks, weights=sizes, workers=workers, scheduler=scheduler,
                           desc=desc, unit="showers", progress=progress)
        return ShowerSample(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), geo)
    with ShowerWriter(out, geo, attrs) as writer:
        run_chunks(simulate_chunk, tasks, weights=sizes, workers=workers, scheduler=scheduler, desc=desc,
                   unit="showers", progress=progress,
                   consume=lambda i, part: writer.write(ShowerSample(part[0], part[1], geo)))
    return None
