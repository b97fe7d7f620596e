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
* energy spots: the charged-particle crossings of each active layer. Their number is
  Poisson with mean (visible energy)/(mean crossing energy), so the sampling
  fluctuations follow from the counting; each crossing deposits a Landau-like
  (Moyal) energy around the MIP value, a fraction are soft (exponential) deposits.
  Above a cap per layer, crossings are merged into spots carrying several of them
  (a gamma distribution with the same mean and variance), which keeps the cost bounded
  at 1 TeV without changing the layer energies' fluctuations; spots are placed at a
  radius drawn from the radial profile and a uniform azimuth, then binned.

Charged pions (DS1 pions): the pion travels as a MIP to an exponentially distributed
first interaction (one nuclear interaction length lambda); there the energy splits into
an electromagnetic fraction f_em = 1 - (E/E0)^(k-1) (E0 = 1 GeV, k = 0.82; Gabriel et al.,
NIM A338 (1994) 336) with a beta-distributed event-by-event spread, showering as above,
and a hadronic rest with a gamma profile in lambda (shape 1.5 + 0.25 ln E, maximum at
0.2 + 0.1 ln E lambda), a wider core+tail radial profile and response h/e = 0.75.
*Neglected*: hadronic sub-showers' own EM parts, the particle composition, nuclear
binding fluctuations beyond the f_em spread, delayed neutrons, the sampling-calorimeter
corrections of GFlash (F_S, e/mip terms) and the transverse shower-axis jitter.

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
    spot_cap: int = 2000          # spots per (shower, layer) before crossings are merged
    hadronic_radii: tuple[float, float, float] = (60.0, 250.0, 0.6)  # R_C, R_T (mm), core fraction
    soft_fraction: float = 0.3
    landau_width: float = 0.1
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
                    spot_cap=4000, particle="photon")


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
                    spot_cap=3000, hadronic_radii=(45.0, 200.0, 0.6), landau_width=0.15, particle="pion",
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
                    energy_range=(256.0, 256.0 * 2 ** 14), spot_cap=3000, landau_width=0.3,
                    particle="photon" if particle == "photon" else "pion")


DETECTORS = {"ds1-photons": _atlas("photon"), "ds1-pions": _atlas("pion"), "ds2": _ds23(), "ds3": _ds23(),
             "ild-photons": _ild(), "ild-pions": _ahcal()}


@lru_cache(maxsize=None)
def _crossing_moments(width: float, soft: float) -> tuple[float, float]:
    """Mean and variance of one crossing's energy in units of the MIP MPV (fixed-seed estimate)."""
    e = _crossing_energies(np.random.default_rng(12345), 400_000, width, soft)
    return float(e.mean()), float(e.var())


def _crossing_energies(rng: np.random.Generator, n: int, width: float, soft: float) -> np.ndarray:
    """Energies of single crossings in units of the MPV: Moyal (Landau-like) or soft."""
    chi2 = np.maximum(rng.chisquare(1.0, n), 1e-12)
    landau = np.clip(1.0 + width * (-np.log(chi2)), 0.3, 30.0)
    soft_e = rng.exponential(0.25, n)
    return np.where(rng.random(n) < soft, soft_e, landau)


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


def _pion_components(det: Detector, energy: np.ndarray, rng: np.random.Generator) -> list[_Component]:
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
    return [em, had, mip]


def _voxelise(det: Detector, geometry: CaloGeometry, components: list[_Component], rng: np.random.Generator) -> np.ndarray:
    """Sample the spots of all components and bin them: (B, voxels) stored energies."""
    b, n_layers = components[0].visible.shape
    nv = geometry.num_voxels
    mean_c, var_c = _crossing_moments(det.landau_width, det.soft_fraction)
    mpv = det.crossing_mpv
    out = np.zeros(b * nv)
    for comp in components:
        vis = comp.visible.ravel()
        n_cross = rng.poisson(np.maximum(vis, 0) / (mean_c * mpv))
        merge = np.maximum(1, np.ceil(n_cross / det.spot_cap)).astype(np.int64)
        n_spots = np.ceil(n_cross / merge).astype(np.int64)
        total = int(n_spots.sum())
        if total == 0:
            continue
        group = np.repeat(np.arange(b * n_layers), n_spots)
        m = merge[group]
        single = m == 1
        energy = np.empty(total)
        energy[single] = _crossing_energies(rng, int(single.sum()), det.landau_width, det.soft_fraction)
        k = ~single
        if k.any():  # sum of m crossings ~ gamma with the same mean and variance
            mm = m[k].astype(float)
            shape = mm * mean_c ** 2 / var_c
            energy[k] = rng.gamma(shape, var_c / mean_c)
        energy *= mpv
        core = rng.random(total) < comp.p_core.ravel()[group]
        radius = np.where(core, comp.r_core.ravel()[group], comp.r_tail.ravel()[group])
        u = rng.random(total)
        r = radius * np.sqrt(u / np.maximum(1.0 - u, 1e-12))
        phi = rng.uniform(-np.pi, np.pi, total)
        layer = group % n_layers
        idx = geometry.voxel_index(layer, r * np.cos(phi), r * np.sin(phi))
        ok = idx >= 0
        shower = group // n_layers
        out += np.bincount(shower[ok] * nv + idx[ok], weights=energy[ok], minlength=b * nv)
    showers = out.reshape(b, nv) * det.calibration
    showers[showers < det.threshold] = 0.0
    return showers


def simulate_chunk(geometry_name: str, n: int, seed: int, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` showers with seed ``seed``: (incident energies (n,), showers (n, voxels)) in MeV."""
    det = DETECTORS[geometry_name]
    geometry = load_geometry(geometry_name)
    rng = np.random.default_rng(seed)
    energies, parts, kept = [], [], 0
    while kept < n:  # with min_hits: redraw until n showers pass (pions that do not shower)
        k = n - kept if not det.min_hits else max(8, int(1.1 * (n - kept)))
        energy = incident_energies(det, k, rng)
        if det.particle == "pion":
            components = _pion_components(det, energy, rng)
        else:
            start = rng.exponential(9.0 / 7.0, k) if det.particle == "photon" else np.zeros(k)
            components = [_em_component(det, energy, start, rng)]
        showers = _voxelise(det, geometry, components, rng)
        if det.min_hits:
            keep = (showers > det.hit_cut).sum(1) >= det.min_hits
            energy, showers = energy[keep], showers[keep]
        energies.append(energy[: n - kept])
        parts.append(showers[: n - kept])
        kept += len(energies[-1])
    if progress is not None:
        progress(n)
    return np.concatenate(energies).astype(np.float32), np.concatenate(parts).astype(np.float32)


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
