"""Shower observables of a regular calorimeter grid (the ILD-like photon geometry).

The observables of the "Getting High" photon showers (Buhmann, Diefenbacher et al.,
arXiv:2005.05334) and of S. Diefenbacher's thesis, for showers on a regular
(layer, x, y) grid (:func:`hepgen.data.geometry.ild_grid`):

* hits: voxels above ``hit_cut`` (default half a MIP: 0.1 MeV for the Si cells of the
  photon grid, 0.25 MeV for the scintillator tiles of the pion grid),
  the same cut applied to both samples; the hit-energy spectrum (a
  :class:`~hepgen.metrics.calo.LogSpectrum`), the number of hits and the visible energy
  (sum of hit energies) per shower;
* the centre of gravity in x, y (mm) and z (layer number), energy-weighted over the hits;
* the longitudinal profile (hit energy per layer) and the radial profile (hit energy vs.
  transverse distance from the shower's own energy-weighted centre, bins of one cell);
* :func:`mu90_sigma90` -- mean and standard deviation of the 90 % core of a distribution
  (by default the narrowest interval holding 90 % of the entries, as used for ILD
  resolutions; ``narrowest=False`` takes the 5-95 % quantiles);
* :func:`per_energy_mu90_sigma90` -- mu90 and sigma90 of an observable per incident-energy bin
  for two samples, with their ratios (seed 001 Figs. 6.9, 7.11: the response and resolution
  against the incident energy);
* :func:`correlation_matrix` of per-shower observables (incident energy, hits, visible
  energy, centres of gravity, energy in the first, second and last third of the layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hepgen.data.geometry import CaloGeometry
from hepgen.errors import InvalidDataError, OptionError
from hepgen.metrics.calo import CHUNK, EPS, LogSpectrum, _as_arrays, chunk_rows

#: Most probable energy of a minimum-ionising particle in one Si cell (MeV).
MIP_MEV = 0.2
#: Default hit threshold: half a MIP.
HIT_CUT_MEV = 0.1
#: half a MIP of each grid's cells: 0.2 MeV in the ECAL's Si, ~0.5 MeV in the AHCAL's scintillator
HIT_CUTS = {"ild-photons": 0.1, "ild-pions": 0.25}

#: Observables of :meth:`GridObservables.correlation_inputs`, with plot labels.
CORRELATION_LABELS = {
    "e_inc": r"$E_{inc}$", "n_hits": r"$n_{hits}$", "e_vis": r"$E_{vis}$",
    "cog_x": "cog x", "cog_y": "cog y", "cog_z": "cog z",
    "e_first": r"$E_{1/3}$", "e_second": r"$E_{2/3}$", "e_third": r"$E_{3/3}$",
}


@dataclass
class GridObservables:
    """Per-shower observables of hits above ``hit_cut``.

    n_hits, e_vis, cog_x, cog_y, cog_z, e_inc: (N,); longitudinal: (N, layers);
    radial: (N, R) on :attr:`radial_edges` (mm); hit_spectrum: :class:`LogSpectrum`.
    """

    hit_cut: float
    e_inc: np.ndarray
    n_hits: np.ndarray
    e_vis: np.ndarray
    cog_x: np.ndarray
    cog_y: np.ndarray
    cog_z: np.ndarray
    longitudinal: np.ndarray
    radial: np.ndarray
    radial_edges: np.ndarray
    hit_spectrum: LogSpectrum = field(repr=False)

    def __len__(self) -> int:
        return len(self.e_vis)

    @property
    def response(self) -> np.ndarray:
        """Visible over incident energy per shower."""
        return self.e_vis / np.maximum(self.e_inc, 1e-12)

    def scalars(self) -> dict[str, np.ndarray]:
        """The per-shower scalars compared as histograms."""
        return {"n_hits": self.n_hits, "e_vis": self.e_vis, "cog_x": self.cog_x, "cog_y": self.cog_y,
                "cog_z": self.cog_z}

    def correlation_inputs(self) -> dict[str, np.ndarray]:
        """Observables of the correlation matrix (names as in :data:`CORRELATION_LABELS`)."""
        thirds = np.array_split(np.arange(self.longitudinal.shape[1]), 3)
        out = {"e_inc": self.e_inc, **self.scalars()}
        for name, cols in zip(("e_first", "e_second", "e_third"), thirds):
            out[name] = self.longitudinal[:, cols].sum(1)
        return out


def grid_observables(sample_or_arrays, geometry: CaloGeometry | None = None, hit_cut: float | None = None,
                     chunk_size: int = CHUNK) -> GridObservables:
    """:class:`GridObservables` of showers on a grid geometry (``kind == "grid"``); the hit
    cut defaults to half a MIP of the geometry's cells (:data:`HIT_CUTS`)."""
    e_inc, showers, geo = _as_arrays(sample_or_arrays, geometry)
    if geo.kind != "grid":
        raise OptionError(f"grid observables need a grid geometry, {geo.name} is {geo.kind}")
    if hit_cut is None:
        hit_cut = HIT_CUTS.get(geo.name, HIT_CUT_MEV)
    if hit_cut < 0:
        raise OptionError(f"hit cut must be >= 0 MeV, got {hit_cut}")
    table = geo.voxel_table()
    x, y = table["x"].astype(np.float64), table["y"].astype(np.float64)
    z = table["layer"].astype(np.float64)
    bounds = geo.layer_boundaries
    cell = geo.cell_size
    half_diag = float(np.hypot(np.abs(x).max(), np.abs(y).max()))
    r_edges = np.arange(0.0, 2 * half_diag + cell, cell)
    nbins = len(r_edges) - 1
    spectrum = LogSpectrum()
    cols: dict[str, list] = {k: [] for k in ("n_hits", "e_vis", "cog_x", "cog_y", "cog_z", "longitudinal", "radial")}
    chunk_size = chunk_rows(geo.num_voxels, chunk_size)
    for lo in range(0, len(showers), chunk_size):
        e = np.asarray(showers[lo:lo + chunk_size], dtype=np.float64)
        hit = e > hit_cut
        e = np.where(hit, e, 0.0)
        spectrum.fill(e[hit])
        e_vis = e.sum(1)
        norm = 1.0 / (e_vis + EPS)
        cx, cy, cz = (e @ x) * norm, (e @ y) * norm, (e @ z) * norm
        cols["n_hits"].append(hit.sum(1))
        cols["e_vis"].append(e_vis)
        cols["cog_x"].append(cx)
        cols["cog_y"].append(cy)
        cols["cog_z"].append(cz)
        cols["longitudinal"].append(np.add.reduceat(e, bounds[:-1], axis=1))
        # radial profile around each shower's own centre, only where there are hits
        rows, vox = np.nonzero(hit)
        d = np.hypot(x[vox] - cx[rows], y[vox] - cy[rows])
        b = np.minimum((d / cell).astype(np.int64), nbins - 1)
        n = len(e)
        radial = np.bincount(rows * nbins + b, weights=e[rows, vox], minlength=n * nbins)
        cols["radial"].append(radial.reshape(n, nbins))
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    return GridObservables(hit_cut=float(hit_cut), e_inc=e_inc, radial_edges=r_edges, hit_spectrum=spectrum, **arrays)


def mu90_sigma90(values, narrowest: bool = True, fraction: float = 0.9) -> tuple[float, float]:
    """Mean and standard deviation of the 90 % core of ``values``: the entries inside the
    narrowest interval that holds ``fraction`` of them (``narrowest=False``: between the
    5 % and 95 % quantiles)."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise InvalidDataError("mu90/sigma90 of an empty sample")
    k = max(1, int(np.ceil(fraction * v.size)))
    if narrowest:
        widths = v[k - 1:] - v[:v.size - k + 1]
        start = int(np.argmin(widths))
        core = v[start:start + k]
    else:
        lo, hi = np.quantile(v, [(1 - fraction) / 2, 1 - (1 - fraction) / 2])
        core = v[(v >= lo) & (v <= hi)]
    return float(core.mean()), float(core.std())


@dataclass
class EnergyBinStats:
    """mu90 / sigma90 of one observable per incident-energy bin, reference and generated.

    edges: (B + 1,) bin edges of E_inc; n_real, n_gen: (B,) showers per bin; the mu90 /
    sigma90 arrays are (B,), NaN in a bin with fewer than ``min_count`` showers of either
    sample (or a reference mu90 / sigma90 of 0), so ratios there are NaN too."""

    edges: np.ndarray
    n_real: np.ndarray
    n_gen: np.ndarray
    mu90_real: np.ndarray
    sigma90_real: np.ndarray
    mu90_gen: np.ndarray
    sigma90_gen: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def ratio(self, stat: str) -> np.ndarray:
        """generated / reference of ``stat`` ("mu90" or "sigma90") per bin."""
        return getattr(self, f"{stat}_gen") / getattr(self, f"{stat}_real")

    def max_dev(self, stat: str) -> tuple[float, float] | None:
        """(largest |ratio - 1|, the E_inc centre of its bin), None if no bin is filled."""
        dev = np.abs(self.ratio(stat) - 1.0)
        if not np.isfinite(dev).any():
            return None
        i = int(np.nanargmax(dev))
        return float(dev[i]), float(self.centres[i])

    def errors(self, stat: str, which: str) -> np.ndarray:
        """Statistical error of ``stat`` for ``which`` ("real" / "gen"): sigma90 / sqrt(n90) for
        mu90, sigma90 / sqrt(2 n90) for sigma90 (Gaussian core)."""
        n90 = np.maximum(1.0, 0.9 * getattr(self, f"n_{which}"))
        sd = getattr(self, f"sigma90_{which}")
        return sd / np.sqrt(n90) if stat == "mu90" else sd / np.sqrt(2 * n90)

    def to_dict(self) -> dict:
        """JSON-ready lists (NaN as None)."""
        clean = lambda a: [None if not np.isfinite(v) else round(float(v), 6) for v in a]  # noqa: E731
        return {"e_inc_edges": [float(e) for e in self.edges], "n_real": self.n_real.tolist(),
                "n_gen": self.n_gen.tolist(), "mu90_real": clean(self.mu90_real), "mu90_gen": clean(self.mu90_gen),
                "sigma90_real": clean(self.sigma90_real), "sigma90_gen": clean(self.sigma90_gen),
                "mu90_ratio": clean(self.ratio("mu90")), "sigma90_ratio": clean(self.ratio("sigma90"))}


def energy_bin_edges(e_inc, n_bins: int | None = None) -> np.ndarray:
    """Edges of ``n_bins`` equal bins spanning ``e_inc`` (default: 10, fewer for small samples,
    at least ~50 showers a bin)."""
    e = np.asarray(e_inc, dtype=np.float64).ravel()
    if n_bins is None:
        n_bins = int(np.clip(len(e) // 50, 1, 10))
    return np.linspace(e.min(), e.max() + 1e-6, n_bins + 1)


def per_energy_mu90_sigma90(real, e_real, gen, e_gen, edges, min_count: int = 10) -> EnergyBinStats:
    """mu90 / sigma90 (:func:`mu90_sigma90`) of the per-shower values ``real`` (incident
    energies ``e_real``) and ``gen`` (``e_gen``) in each bin of ``edges``."""
    real, e_real = np.asarray(real, np.float64), np.asarray(e_real, np.float64)
    gen, e_gen = np.asarray(gen, np.float64), np.asarray(e_gen, np.float64)
    edges = np.asarray(edges, np.float64)
    b = len(edges) - 1
    n_real = np.histogram(e_real, edges)[0]
    n_gen = np.histogram(e_gen, edges)[0]
    out = {k: np.full(b, np.nan) for k in ("mu90_real", "sigma90_real", "mu90_gen", "sigma90_gen")}
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        sr, sg = (e_real >= lo) & (e_real < hi), (e_gen >= lo) & (e_gen < hi)
        if sr.sum() < min_count or sg.sum() < min_count:
            continue
        (mr, sdr), (mg, sdg) = mu90_sigma90(real[sr]), mu90_sigma90(gen[sg])
        if mr > 0 and sdr > 0:
            out["mu90_real"][i], out["sigma90_real"][i], out["mu90_gen"][i], out["sigma90_gen"][i] = mr, sdr, mg, sdg
    return EnergyBinStats(edges=edges, n_real=n_real, n_gen=n_gen, **out)


def correlation_matrix(observables: dict[str, np.ndarray]) -> np.ndarray:
    """Pearson correlation matrix of the observables (columns in dict order); a constant
    observable gets correlation 0 with the others (1 with itself)."""
    data = np.stack([np.asarray(v, dtype=np.float64) for v in observables.values()], axis=1)
    data = data - data.mean(0)
    std = data.std(0)
    ok = std > 0
    z = np.divide(data, std, out=np.zeros_like(data), where=ok)
    corr = z.T @ z / len(data)
    np.fill_diagonal(corr, 1.0)
    return corr
