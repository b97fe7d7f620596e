"""Calorimeter-shower metrics of the CaloChallenge evaluation (Krause et al., arXiv:2410.21611).

What this module computes, on plain arrays (incident energies ``(N,)`` or ``(N, 1)`` and
voxel energies ``(N, voxels)``, both MeV, in the voxel order of
:mod:`hepgen.data.geometry`):

* :class:`HighLevelFeatures` -- the challenge's per-shower high-level features: incident
  energy, deposited energy E_tot and E_tot/E_inc, energy per read-out layer, the centre of
  energy in x and y per layer (energy-weighted mean of the voxel centres; 0 for an empty
  layer), the widths in x and y per layer (energy-weighted standard deviation), the
  sparsity per layer (the challenge's definition: the fraction of voxels *without*
  energy), the longitudinal centre of gravity ("shower depth": energy-weighted mean layer
  number) and its width, the energy-weighted mean radius, the radial profile, the energy
  fraction of the k-th brightest voxel of each layer (k = 1, 2, 5, 10 by default) and the
  spectrum of the non-zero voxel energies (kept as a fine log-spaced histogram,
  :class:`LogSpectrum`, so that even DS3 fits in memory). As in the challenge's
  ``HighLevelFeatures.py``, centres and widths exist only for layers binned in the
  angle (``n_alpha > 1``). An optional ``cut`` (MeV) sets every voxel below it to zero
  first. All features are computed vectorised over chunks of showers.
* :func:`separation_power` -- the triangular discriminator
  ``1/2 sum_i (p_i - q_i)^2 / (p_i + q_i)`` of two normalised histograms (eq. 15 of
  arXiv:2009.03796, used throughout the CaloChallenge): 0 for identical histograms, 1 for
  disjoint ones. :func:`histogram_separation` adds the histogramming of two samples
  (with under- and overflow bins, so that nothing generated outside the reference range
  is lost), a bootstrap error and the value expected from finite statistics alone.
* :func:`classifier_auc` -- the challenge's classifier test: an MLP (3 hidden layers of
  512, leaky ReLU as in the challenge's ``evaluate.py``, optional dropout, Adam with lr
  2e-4, batches of 1000, binary cross-entropy) trained to tell reference (label 1) from
  generated (label 0) showers on a 60/20/20 train/validation/test split, keeping the
  epoch with the lowest validation loss. It returns the test AUC (mean and standard
  deviation over ``runs`` seeded repetitions), the JSD estimate ``(ln 2 - BCE)/ln 2`` and
  the classifier outputs C on the test showers, from which the weights
  ``w = C / (1 - C)`` (optionally after isotonic calibration on the validation split, as
  the challenge does) describe where the generated distribution under- or
  over-populates the reference (Das et al., arXiv:2309.15229 discuss such weights).
  :func:`low_level_inputs` and :func:`high_level_inputs` prepare the inputs as the
  challenge does; every input is standardised with the training split's statistics.
* :func:`physics_distances` -- FPD and KPD (jetnet's definitions, reused from
  :mod:`hepgen.metrics.jets`) on the high-level feature vector of the classifier.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from hepgen.data.geometry import CaloGeometry
from hepgen.errors import InvalidDataError, OptionError
from hepgen.metrics import jets

#: k of the "k-th brightest voxel / layer energy" features.
BRIGHTEST_K = (1, 2, 5, 10)
#: The challenge adds 1e-16 to every energy sum it divides by (0 for empty layers).
EPS = 1e-16
#: Showers per chunk when computing features (bounds the memory of the (n, voxels) temporaries).
CHUNK = 2000
#: ... and at most this many voxel values per chunk (DS3: about 400 showers).
CHUNK_VALUES = 2**24


def chunk_rows(num_voxels: int, chunk_size: int = CHUNK) -> int:
    """Showers per chunk: ``chunk_size``, fewer for many voxels."""
    return max(1, min(int(chunk_size), CHUNK_VALUES // max(int(num_voxels), 1)))


# ---------------------------------------------------------------------------------------
# fine log-spaced histogram of positive values
# ---------------------------------------------------------------------------------------
class LogSpectrum:
    """Counts of positive values on a fixed fine grid in log10 (1e-6 to 1e7, 50 bins per
    decade, values outside go to the first/last bin), plus the number of zeros.

    Lets voxel/hit spectra of millions of entries be kept, compared and plotted without
    holding the values; :meth:`coarse` rebins to a plotting/comparison grid.
    """

    LOG_LO, LOG_HI, PER_DECADE = -6.0, 7.0, 50

    def __init__(self) -> None:
        self.num_fine = int(round((self.LOG_HI - self.LOG_LO) * self.PER_DECADE))
        self.counts = np.zeros(self.num_fine, dtype=np.int64)
        self.zeros = 0

    @property
    def fine_edges(self) -> np.ndarray:
        return np.logspace(self.LOG_LO, self.LOG_HI, self.num_fine + 1)

    @property
    def total(self) -> int:
        """Number of positive entries."""
        return int(self.counts.sum())

    def fill(self, values: np.ndarray) -> "LogSpectrum":
        v = np.asarray(values).ravel()
        pos = v[v > 0]
        self.zeros += int(v.size - pos.size)
        if pos.size:
            idx = np.floor((np.log10(pos.astype(np.float64)) - self.LOG_LO) * self.PER_DECADE).astype(np.int64)
            np.clip(idx, 0, self.num_fine - 1, out=idx)
            self.counts += np.bincount(idx, minlength=self.num_fine)
        return self

    def quantile(self, q: float) -> float:
        """Lower edge of the fine bin holding the q-quantile of the positive entries (q=1: the
        upper edge of the highest filled bin)."""
        if self.total == 0:
            return float("nan")
        edges = self.fine_edges
        if q >= 1:
            return float(edges[np.nonzero(self.counts)[0][-1] + 1])
        cum = np.cumsum(self.counts) / self.total
        return float(edges[int(np.searchsorted(cum, q, side="right"))])

    def coarse(self, lo: float, hi: float, per_decade: int = 10) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Rebin to ``per_decade`` bins per decade covering [lo, hi] (widened to the fine grid):
        ``(edges, counts, underflow, overflow)``."""
        f = max(1, self.PER_DECADE // per_decade)
        i_lo = int(np.floor((np.log10(lo) - self.LOG_LO) * self.PER_DECADE / f)) * f
        i_hi = int(np.ceil((np.log10(hi) - self.LOG_LO) * self.PER_DECADE / f)) * f
        i_lo, i_hi = max(i_lo, 0), min(max(i_hi, i_lo + f), self.num_fine)
        inside = self.counts[i_lo:i_hi]
        pad = (-len(inside)) % f
        inside = np.concatenate([inside, np.zeros(pad, np.int64)]).reshape(-1, f).sum(1)
        edges = self.fine_edges[i_lo:i_lo + f * len(inside) + 1:f]
        return edges, inside, int(self.counts[:i_lo].sum()), int(self.counts[i_lo + f * len(inside):].sum())


# ---------------------------------------------------------------------------------------
# high-level features
# ---------------------------------------------------------------------------------------
def _as_arrays(sample_or_arrays, geometry: CaloGeometry | None):
    from hepgen.data.calo import ShowerSample

    if isinstance(sample_or_arrays, ShowerSample):
        energies, showers = sample_or_arrays.incident_energies, sample_or_arrays.showers
        geometry = geometry or sample_or_arrays.geometry
    else:
        try:
            energies, showers = sample_or_arrays
        except (TypeError, ValueError):
            raise InvalidDataError("expected a ShowerSample or a pair (incident_energies, showers)") from None
    if geometry is None:
        raise OptionError("plain arrays need a geometry (hepgen.data.geometry.load_geometry)")
    energies = np.asarray(energies, dtype=np.float64).reshape(-1)
    showers = np.asarray(showers)
    if showers.ndim != 2 or showers.shape[1] != geometry.num_voxels:
        raise InvalidDataError(f"showers must have shape (N, {geometry.num_voxels}) for geometry "
                               f"{geometry.name}, got {showers.shape}")
    if len(energies) != len(showers):
        raise InvalidDataError(f"{len(energies)} incident energies but {len(showers)} showers")
    return energies, showers, geometry


def radial_edges(geometry: CaloGeometry) -> np.ndarray:
    """Radial bins of the radial profile (mm): the union of the layers' r edges (polar) or
    one cell size per bin (grid)."""
    if geometry.kind == "grid":
        rmax = float(geometry.voxel_table()["r"].max())
        return np.arange(0.0, rmax + geometry.cell_size, geometry.cell_size)
    edges = sorted({e for layer in geometry.layers if layer.num_voxels for e in layer.r_edges})
    return np.asarray(edges, dtype=np.float64)


def alpha_binned_layers(geometry: CaloGeometry) -> np.ndarray:
    """(L,) bool: read-out layers with more than one angular bin (all layers of a grid).
    Only these have meaningful centres and widths in x and y."""
    if geometry.kind == "grid":
        return np.ones(geometry.num_layers, bool)
    return np.array([layer.n_alpha > 1 for layer in geometry.layers if layer.num_voxels])


def apply_cut(showers: np.ndarray, cut: float) -> np.ndarray:
    """A copy of ``showers`` with voxels below ``cut`` (MeV) set to zero (no copy for cut <= 0)."""
    if cut <= 0:
        return showers
    return np.where(showers < cut, np.zeros((), showers.dtype), showers)


class HighLevelFeatures:
    """The CaloChallenge high-level features of a set of showers.

    ``HighLevelFeatures(sample)`` with a :class:`~hepgen.data.calo.ShowerSample`, or
    ``HighLevelFeatures((incident_energies, showers), geometry)``. Voxels below ``cut``
    (MeV) are set to zero first.

    Attributes (numpy arrays, N showers, L read-out layers)
    ---------------------------------------------------------
    e_inc, e_tot, e_ratio: (N,) incident energy, deposited energy, their ratio
    e_layer: (N, L) energy per layer
    center_x, center_y, width_x, width_y: (N, L) energy-weighted mean and standard
        deviation of the voxel centres (mm) per layer; 0 for empty layers
    center_r, width_r: (N, L) the same for the radius
    sparsity: (N, L) fraction of the layer's voxels without energy (challenge definition)
    depth, depth_width: (N,) energy-weighted mean and std of the layer number 0..L-1
    mean_r: (N,) energy-weighted mean voxel radius (mm) over the whole shower
    radial: (N, R) energy per radial bin of :attr:`r_edges`
    brightest: {k: (N, L)} energy of the k-th brightest voxel of a layer / layer energy
    voxel_spectrum: :class:`LogSpectrum` of all voxel energies
    layer_ids: (L,) the layer numbers of the geometry file (used in feature names)
    alpha_layers: (L,) bool, layers with angular binning (centres/widths defined)
    """

    LAYER_FEATURES = ("e_layer", "center_x", "center_y", "width_x", "width_y", "sparsity")

    def __init__(self, sample_or_arrays, geometry: CaloGeometry | None = None, cut: float = 0.0,
                 brightest: Sequence[int] = BRIGHTEST_K, chunk_size: int = CHUNK):
        e_inc, showers, geo = _as_arrays(sample_or_arrays, geometry)
        if cut < 0:
            raise OptionError(f"cut must be >= 0 MeV, got {cut}")
        self.geometry, self.cut = geo, float(cut)
        self.layer_ids = np.array(list(geo.layer_slices), dtype=int)
        self.alpha_layers = alpha_binned_layers(geo)
        bounds = geo.layer_boundaries
        self.layer_sizes = np.diff(bounds)
        self.brightest_k = tuple(sorted({int(k) for k in brightest if int(k) >= 1}))
        self.r_edges = radial_edges(geo)
        table = geo.voxel_table()
        x, y, r = (table[k].astype(np.float64) for k in ("x", "y", "r"))
        rbin = np.clip(np.searchsorted(self.r_edges, r, side="right") - 1, 0, len(self.r_edges) - 2)
        onehot = np.zeros((geo.num_voxels, len(self.r_edges) - 1))
        onehot[np.arange(geo.num_voxels), rbin] = 1.0
        num_layers = len(self.layer_ids)
        layer_no = np.arange(num_layers, dtype=np.float64)
        regular = geo.is_regular

        parts: dict[str, list] = {}
        self.voxel_spectrum = LogSpectrum()

        def put(name, value):
            parts.setdefault(name, []).append(value)

        chunk_size = chunk_rows(geo.num_voxels, chunk_size)
        for lo in range(0, len(showers), chunk_size):
            e = np.asarray(showers[lo:lo + chunk_size], dtype=np.float64)
            if self.cut > 0:
                e[e < self.cut] = 0.0
            self.voxel_spectrum.fill(e)
            starts = bounds[:-1]
            e_layer = np.add.reduceat(e, starts, axis=1)
            norm = 1.0 / (e_layer + EPS)
            put("e_layer", e_layer)
            for name, coord in (("x", x), ("y", y), ("r", r)):
                m1 = np.add.reduceat(e * coord, starts, axis=1) * norm
                m2 = np.add.reduceat(e * coord * coord, starts, axis=1) * norm
                put(f"center_{name}", m1)
                put(f"width_{name}", np.sqrt(np.clip(m2 - m1 * m1, 0.0, None)))
            put("sparsity", 1.0 - np.add.reduceat((e > 0).astype(np.float64), starts, axis=1) / self.layer_sizes)
            e_tot = e_layer.sum(1)
            d1 = (e_layer @ layer_no) / (e_tot + EPS)
            d2 = (e_layer @ layer_no**2) / (e_tot + EPS)
            put("e_tot", e_tot)
            put("depth", d1)
            put("depth_width", np.sqrt(np.clip(d2 - d1 * d1, 0.0, None)))
            put("mean_r", (e @ r) / (e_tot + EPS))
            put("radial", e @ onehot)
            if self.brightest_k:
                put("_top", self._top_fractions(e, e_layer, bounds, regular))

        self.e_inc = e_inc
        for name, chunks in parts.items():
            if name != "_top":
                setattr(self, name, np.concatenate(chunks))
        self.e_ratio = self.e_tot / self.e_inc
        self.brightest: dict[int, np.ndarray] = {}
        if self.brightest_k:
            top = np.concatenate(parts["_top"])  # (N, L, kmax)
            for k in self.brightest_k:
                self.brightest[k] = top[:, :, k - 1]

    def _top_fractions(self, e, e_layer, bounds, regular) -> np.ndarray:
        """(n, L, kmax) energies of the 1st..kmax-th brightest voxel per layer / layer energy
        (0 where a layer has fewer voxels than k)."""
        kmax = self.brightest_k[-1]
        n, num_layers = e_layer.shape
        out = np.zeros((n, num_layers, kmax))
        groups = [np.arange(num_layers)] if regular else [np.array([i]) for i in range(num_layers)]
        for layers in groups:
            size = int(self.layer_sizes[layers[0]])
            block = e[:, bounds[layers[0]]:bounds[layers[-1] + 1]].reshape(n, len(layers), size)
            k = min(kmax, size)
            if k < size:
                block = -np.partition(-block, k - 1, axis=-1)[..., :k]
            top = -np.sort(-block, axis=-1)[..., :k]
            out[:, layers, :k] = top
        return out / (e_layer[:, :, None] + EPS)

    def __len__(self) -> int:
        return len(self.e_inc)

    # -- named per-shower features ---------------------------------------------------------
    def layer_valid(self, feature: str) -> np.ndarray:
        """(L,) bool: the layers in which a per-layer feature is defined."""
        if feature.startswith(("center_x", "center_y", "width_x", "width_y")):
            return self.alpha_layers
        if feature.startswith("brightest"):
            return self.layer_sizes >= int(feature[len("brightest"):])
        return np.ones(len(self.layer_ids), bool)

    def per_layer(self) -> dict[str, np.ndarray]:
        """Per-layer features by name: ``e_layer``, ``center_x``, ..., ``sparsity``,
        ``brightest1``, ``brightest2``, ... each (N, L)."""
        out = {name: getattr(self, name) for name in self.LAYER_FEATURES}
        out.update({f"brightest{k}": v for k, v in self.brightest.items()})
        return out

    def histogram_features(self) -> dict[str, np.ndarray]:
        """Every per-shower scalar compared as a histogram: ``e_ratio``, ``depth``,
        ``depth_width``, ``mean_r`` and ``<feature>_<layer id>`` for each per-layer feature
        and each layer where it is defined (e.g. ``e_layer_12``, ``center_x_1``,
        ``brightest5_20``)."""
        out = {"e_ratio": self.e_ratio, "depth": self.depth, "depth_width": self.depth_width,
               "mean_r": self.mean_r}
        for name, values in self.per_layer().items():
            valid = self.layer_valid(name)
            for j, layer_id in enumerate(self.layer_ids):
                if valid[j]:
                    out[f"{name}_{layer_id}"] = values[:, j]
        return out


# ---------------------------------------------------------------------------------------
# classifier inputs
# ---------------------------------------------------------------------------------------
def low_level_inputs(sample_or_arrays, geometry: CaloGeometry | None = None, normed: bool = False,
                     cut: float = 0.0) -> np.ndarray:
    """Voxel inputs of the challenge's low-level classifier, float32 ``(N, 1 + voxels)``:
    ``log10(E_inc / 1 GeV)`` followed by the voxels divided by E_inc; ``normed``: the voxels
    divided by their layer energy, followed by ``log10(E_layer + 1e-8)`` (``cls-low-normed``)."""
    e_inc, showers, geo = _as_arrays(sample_or_arrays, geometry)
    bounds = geo.layer_boundaries
    n = len(showers)
    width = 1 + geo.num_voxels + (geo.num_layers if normed else 0)
    out = np.empty((n, width), dtype=np.float32)
    out[:, 0] = np.log10(e_inc / 1e3)
    step = chunk_rows(geo.num_voxels)
    for lo in range(0, n, step):
        e = apply_cut(np.asarray(showers[lo:lo + step], dtype=np.float64), cut)
        if normed:
            e_layer = np.add.reduceat(e, bounds[:-1], axis=1)
            out[lo:lo + step, 1:1 + geo.num_voxels] = e / (np.repeat(e_layer, np.diff(bounds), axis=1) + EPS)
            out[lo:lo + step, 1 + geo.num_voxels:] = np.log10(e_layer + 1e-8)
        else:
            out[lo:lo + step, 1:] = e / e_inc[lo:lo + step, None]
    return out


def high_level_inputs(features: HighLevelFeatures) -> np.ndarray:
    """High-level inputs of the challenge's classifier (and of FPD/KPD), float64
    ``(N, 1 + L + 4 L_alpha)``: ``log10(E_inc / 1 GeV)``, ``log10(E_layer + 1e-8)``, and the
    centres and widths in x and y of the angularly binned layers divided by 100 mm."""
    a = features.alpha_layers
    return np.concatenate([
        np.log10(features.e_inc / 1e3)[:, None],
        np.log10(features.e_layer + 1e-8),
        features.center_x[:, a] / 1e2, features.center_y[:, a] / 1e2,
        features.width_x[:, a] / 1e2, features.width_y[:, a] / 1e2,
    ], axis=1)


def high_level_names(features: HighLevelFeatures) -> list[str]:
    """Column names of :func:`high_level_inputs`."""
    ids = features.layer_ids
    alpha_ids = ids[features.alpha_layers]
    return (["log_e_inc"] + [f"log_e_layer_{i}" for i in ids]
            + [f"{n}_{i}" for n in ("center_x", "center_y", "width_x", "width_y") for i in alpha_ids])


# ---------------------------------------------------------------------------------------
# separation power
# ---------------------------------------------------------------------------------------
def separation_power(h_real, h_gen):
    """Triangular discriminator ``1/2 sum (p - q)^2 / (p + q)`` of two histograms (counts or
    densities on the same bins), each normalised to unit sum first; along the last axis.

    0 for identical shapes, 1 for disjoint ones; 1 when exactly one histogram is empty, 0
    when both are.
    """
    p = np.asarray(h_real, dtype=np.float64)
    q = np.asarray(h_gen, dtype=np.float64)
    if p.shape != q.shape:
        raise InvalidDataError(f"histograms have different shapes {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise InvalidDataError("histograms must not have negative entries")
    sp, sq = p.sum(-1, keepdims=True), q.sum(-1, keepdims=True)
    p = np.divide(p, sp, out=np.zeros_like(p), where=sp > 0)
    q = np.divide(q, sq, out=np.zeros_like(q), where=sq > 0)
    s = p + q
    terms = np.divide((p - q) ** 2, s, out=np.zeros_like(s), where=s > 0)
    out = 0.5 * terms.sum(-1)
    one_empty = (sp[..., 0] > 0) != (sq[..., 0] > 0)
    out = np.where(one_empty, 1.0, out)
    return float(out) if out.ndim == 0 else out


@dataclass
class Separation:
    """Separation power of one histogram pair.

    value: the separation power; error: std over multinomial resamplings of both
    histograms; floor: the value expected for two samples of these sizes drawn from the
    *same* distribution, ``n_bins_filled * (1/n_real + 1/n_gen) / 4``; edges: the bins
    (without the under-/overflow bins that ``counts_*`` hold first and last).
    """

    value: float
    error: float
    floor: float
    edges: np.ndarray
    counts_real: np.ndarray
    counts_gen: np.ndarray


def counts_with_flow(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Histogram counts with an underflow bin first and an overflow bin last."""
    v = np.asarray(values, dtype=np.float64).ravel()
    inside, _ = np.histogram(v, edges)
    return np.concatenate([[np.sum(v < edges[0])], inside, [np.sum(v > edges[-1])]])


def separation_from_counts(counts_real, counts_gen, edges, bootstrap: int = 20, rng=None) -> Separation:
    """:class:`Separation` of two count histograms (flow bins included in the counts)."""
    c1 = np.asarray(counts_real, dtype=np.float64)
    c2 = np.asarray(counts_gen, dtype=np.float64)
    value = separation_power(c1, c2)
    n1, n2 = c1.sum(), c2.sum()
    error = 0.0
    if bootstrap > 1 and n1 > 0 and n2 > 0:
        rng = np.random.default_rng(rng)
        b1 = rng.multinomial(int(n1), c1 / n1, size=bootstrap)
        b2 = rng.multinomial(int(n2), c2 / n2, size=bootstrap)
        error = float(np.std(separation_power(b1, b2)))
    filled = int(np.count_nonzero(c1 + c2))
    floor = filled * (1 / max(n1, 1) + 1 / max(n2, 1)) / 4 if n1 > 0 and n2 > 0 else 0.0
    return Separation(float(value), error, float(floor), np.asarray(edges), c1, c2)


def histogram_separation(real_values, gen_values, edges, bootstrap: int = 20, rng=None) -> Separation:
    """Histogram two samples on ``edges`` (plus under-/overflow) -> :class:`Separation`."""
    return separation_from_counts(counts_with_flow(real_values, edges), counts_with_flow(gen_values, edges),
                                  edges, bootstrap, rng)


def feature_edges(reference: np.ndarray, kind: str = "linear", bins: int = 50, num_voxels: int | None = None,
                  quantiles=(0.001, 0.999)) -> np.ndarray:
    """Bins derived from the *reference* sample only (generated values outside land in the
    flow bins): ``linear`` over the central quantiles (+5 % margin), ``log`` over the positive
    values (zeros underflow), ``fraction`` over [0, 1] (aligned with the k/n values of a
    layer of ``num_voxels`` voxels when that is at most ``bins``)."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    ref = ref[np.isfinite(ref)]
    if kind == "fraction":
        if num_voxels and num_voxels <= bins:
            return (np.arange(num_voxels + 2) - 0.5) / num_voxels
        return np.linspace(0.0, 1.0 + 1e-9, bins + 1)
    if kind == "log":
        pos = ref[ref > 0]
        if pos.size == 0:
            return np.geomspace(1e-3, 1.0, bins + 1)
        lo, hi = np.quantile(pos, quantiles[0]), pos.max()
        if hi <= lo * 1.0001:
            lo, hi = lo / 2, hi * 2
        return np.geomspace(lo, hi * 1.0001, bins + 1)
    if ref.size == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    lo, hi = np.quantile(ref, quantiles)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, bins + 1)


#: How each histogram feature is binned (by name prefix).
FEATURE_KIND = {"e_layer": "log", "sparsity": "fraction", "brightest": "linear", "e_ratio": "linear",
                "depth": "linear", "depth_width": "linear", "mean_r": "linear", "center": "linear",
                "width": "linear"}


def feature_kind(name: str) -> str:
    for prefix, kind in FEATURE_KIND.items():
        if name.startswith(prefix):
            return kind
    return "linear"


def separation_powers(real: HighLevelFeatures, gen: HighLevelFeatures, bins: int = 50, bootstrap: int = 20,
                      seed: int = 0) -> dict[str, Separation]:
    """Separation power of every histogram feature (:meth:`HighLevelFeatures.histogram_features`)
    and of the voxel spectrum (``voxel_energy``, 10 bins per decade over the reference's
    non-zero voxels, zero voxels excluded: their fraction is what ``sparsity`` compares)."""
    rng = np.random.default_rng(seed)
    f_real, f_gen = real.histogram_features(), gen.histogram_features()
    sizes = dict(zip(real.layer_ids.tolist(), real.layer_sizes.tolist()))
    out: dict[str, Separation] = {}
    for name, values in f_real.items():
        kind = feature_kind(name)
        nvox = sizes.get(int(name.rsplit("_", 1)[1])) if name.startswith("sparsity") else None
        edges = feature_edges(values, kind, bins, num_voxels=nvox)
        out[name] = histogram_separation(values, f_gen[name], edges, bootstrap, rng)
    out["voxel_energy"] = spectrum_separation(real.voxel_spectrum, gen.voxel_spectrum, bootstrap=bootstrap, rng=rng)
    return out


def spectrum_separation(real: LogSpectrum, gen: LogSpectrum, lo: float | None = None, per_decade: int = 10,
                        bootstrap: int = 20, rng=None) -> Separation:
    """Separation of two :class:`LogSpectrum` (positive entries only) on ``per_decade`` bins
    per decade from ``lo`` (default: the reference's 0.1 % quantile) to the reference maximum."""
    if real.total == 0:
        edges = np.geomspace(1e-3, 1.0, 4)
        c1 = np.zeros(len(edges) + 1)
        c2 = np.zeros(len(edges) + 1)
        c2[0] = gen.total
        return separation_from_counts(c1, c2, edges, 0)
    lo = lo if lo is not None else real.quantile(0.001)
    hi = real.quantile(1.0)
    edges, c1, u1, o1 = real.coarse(lo, hi, per_decade)
    _, c2, u2, o2 = gen.coarse(lo, hi, per_decade)
    return separation_from_counts(np.concatenate([[u1], c1, [o1]]), np.concatenate([[u2], c2, [o2]]),
                                  edges, bootstrap, rng)


# ---------------------------------------------------------------------------------------
# classifier test
# ---------------------------------------------------------------------------------------
def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties counted half."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise InvalidDataError("AUC needs both classes")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def isotonic_calibration(scores: np.ndarray, labels: np.ndarray, clip: float = 1e-6):
    """A monotone map score -> P(label=1) fitted by isotonic regression (as the challenge's
    ``IsotonicRegression(out_of_bounds='clip', y_min=1e-6, y_max=1-1e-6)``)."""
    from scipy.optimize import isotonic_regression

    order = np.argsort(scores, kind="stable")
    x = np.asarray(scores, dtype=np.float64)[order]
    fitted = isotonic_regression(np.asarray(labels, dtype=np.float64)[order], increasing=True).x
    fitted = np.clip(fitted, clip, 1 - clip)
    # one value per distinct score (mean of ties), then piecewise-linear in between
    ux, inv = np.unique(x, return_inverse=True)
    uy = np.bincount(inv, weights=fitted) / np.bincount(inv)
    return lambda s: np.interp(np.asarray(s, dtype=np.float64), ux, uy)


@dataclass
class ClassifierResult:
    """Outcome of :func:`classifier_auc`: one entry per run.

    ``outputs_*``: classifier outputs C = P(reference | shower) on the test showers;
    ``calibrated_*``: the same after isotonic calibration on the validation split (equal to
    the raw outputs when calibration is off).
    """

    aucs: list[float]
    jsds: list[float]
    best_epochs: list[int]
    outputs_real: list[np.ndarray] = field(repr=False)
    outputs_gen: list[np.ndarray] = field(repr=False)
    calibrated_real: list[np.ndarray] = field(repr=False)
    calibrated_gen: list[np.ndarray] = field(repr=False)

    @property
    def value(self) -> float:
        return float(np.mean(self.aucs))

    @property
    def error(self) -> float:
        return float(np.std(self.aucs))

    def weights(self, which: str = "gen", calibrated: bool = False) -> np.ndarray:
        """w = C / (1 - C) of the test showers of all runs (``which`` = gen or real), from the
        raw outputs or (``calibrated``) the isotonically calibrated ones. Isotonic
        calibration on a small validation split maps the extreme outputs to 0 or 1 and so
        inflates the tails; the raw outputs of the early-stopped classifier are the default."""
        src = {("gen", True): self.calibrated_gen, ("gen", False): self.outputs_gen,
               ("real", True): self.calibrated_real, ("real", False): self.outputs_real}[(which, calibrated)]
        c = np.clip(np.concatenate(src).astype(np.float64), 1e-12, 1 - 1e-12)
        return c / (1 - c)


def weight_tails(weights: np.ndarray, low: float = 0.1, high: float = 10.0) -> dict[str, dict[str, float]]:
    """Fractions of weights below ``low`` and above ``high`` with binomial errors."""
    w = np.asarray(weights, dtype=np.float64)
    out = {}
    for key, frac in ((f"lt_{low:g}", np.mean(w < low)), (f"gt_{high:g}", np.mean(w > high))):
        out[key] = {"value": float(frac), "error": float(math.sqrt(frac * (1 - frac) / max(len(w), 1)))}
    return out


def _mlp(input_dim: int, hidden: Sequence[int], dropout: float, activation: str):
    import torch

    acts = {"leaky_relu": torch.nn.LeakyReLU, "relu": torch.nn.ReLU}
    if activation not in acts:
        raise OptionError(f"activation must be one of {', '.join(acts)}, got {activation!r}")
    layers, width = [], input_dim
    for h in hidden:
        layers += [torch.nn.Linear(width, int(h)), acts[activation]()]
        if dropout > 0:
            layers.append(torch.nn.Dropout(dropout))
        width = int(h)
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def classifier_auc(
    real_features,
    gen_features,
    *,
    epochs: int = 50,
    runs: int = 3,
    hidden: Sequence[int] = (512, 512, 512),
    dropout: float = 0.0,
    lr: float = 2e-4,
    batch_size: int = 1000,
    activation: str = "leaky_relu",
    split: Sequence[float] = (0.6, 0.2, 0.2),
    calibrate: bool = True,
    seed: int = 0,
    device=None,
    progress: bool = False,
    desc: str = "classifier",
) -> ClassifierResult:
    """The challenge's classifier test on two feature arrays (N, F) -> :class:`ClassifierResult`.

    Each run draws (with ``seed`` and the run number) equally many showers of both samples
    (the smaller sample size), splits each 60/20/20 into train/validation/test, standardises
    with the training split's mean and std, trains for ``epochs`` epochs and keeps the
    parameters of the epoch with the lowest validation loss. ``result.value`` is the mean
    test AUC over runs, ``result.error`` its standard deviation. Deterministic on the CPU for
    a given seed.
    """
    import torch
    from tqdm.auto import tqdm

    from hepgen.device import default_device

    real = np.asarray(real_features, dtype=np.float32)
    gen = np.asarray(gen_features, dtype=np.float32)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise InvalidDataError(f"classifier inputs must be (N, F) with equal F, got {real.shape} and {gen.shape}")
    if not (np.isfinite(real).all() and np.isfinite(gen).all()):
        raise InvalidDataError("classifier inputs contain NaN or inf")
    if epochs < 1 or runs < 1:
        raise OptionError(f"classifier needs epochs >= 1 and runs >= 1, got {epochs} and {runs}")
    n = min(len(real), len(gen))
    split = np.asarray(split, dtype=np.float64) / np.sum(split)
    n_train, n_val = int(n * split[0]), int(n * split[1])
    n_test = n - n_train - n_val
    if min(n_train, n_val, n_test) < 2:
        raise InvalidDataError(f"the classifier test needs at least 10 showers per sample, got {n}")
    device = torch.device(device) if device is not None else default_device()
    bce = torch.nn.BCEWithLogitsLoss()

    def to_dev(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    def logits_of(model, x):
        model.eval()
        with torch.no_grad():
            return torch.cat([model(x[i:i + 4 * batch_size]).squeeze(1) for i in range(0, len(x), 4 * batch_size)])

    result = ClassifierResult([], [], [], [], [], [], [])
    for run in range(runs):
        rng = np.random.default_rng([seed, run])
        idx_r = rng.permutation(len(real))[:n]
        idx_g = rng.permutation(len(gen))[:n]
        parts = {}
        for name, lo, hi in (("train", 0, n_train), ("val", n_train, n_train + n_val), ("test", n_train + n_val, n)):
            x = np.concatenate([real[idx_r[lo:hi]], gen[idx_g[lo:hi]]])
            y = np.concatenate([np.ones(hi - lo, np.float32), np.zeros(hi - lo, np.float32)])
            parts[name] = (x, y)
        mean = parts["train"][0].mean(0, dtype=np.float64)
        std = parts["train"][0].std(0, dtype=np.float64)
        std[std < 1e-8] = 1.0
        tensors = {k: (to_dev(((x - mean) / std).astype(np.float32)), to_dev(y)) for k, (x, y) in parts.items()}
        x_tr, y_tr = tensors["train"]
        x_va, y_va = tensors["val"]
        x_te, y_te = tensors["test"]
        torch_seed = int(rng.integers(2**31 - 1))
        fork = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(torch_seed)
            model = _mlp(real.shape[1], hidden, dropout, activation).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            gen_perm = torch.Generator().manual_seed(torch_seed)
            best = (float("inf"), -1, None)
            bar = tqdm(range(epochs), desc=f"{desc} run {run + 1}/{runs}", disable=not progress, leave=False)
            for epoch in bar:
                model.train()
                perm = torch.randperm(len(x_tr), generator=gen_perm).to(device)
                for i in range(0, len(perm), batch_size):
                    b = perm[i:i + batch_size]
                    loss = bce(model(x_tr[b]).squeeze(1), y_tr[b])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                val_loss = float(bce(logits_of(model, x_va), y_va))
                if val_loss < best[0]:
                    best = (val_loss, epoch + 1, copy.deepcopy(model.state_dict()))
                bar.set_postfix(val_loss=f"{val_loss:.4f}", best_epoch=best[1])
            model.load_state_dict(best[2])
            test_logits = logits_of(model, x_te)
            test_bce = float(bce(test_logits, y_te))
            c_test = torch.sigmoid(test_logits).double().cpu().numpy()
            c_val = torch.sigmoid(logits_of(model, x_va)).double().cpu().numpy()
        y_test = parts["test"][1].astype(bool)
        result.aucs.append(roc_auc(y_test, c_test))
        result.jsds.append((math.log(2) - test_bce) / math.log(2))
        result.best_epochs.append(best[1])
        result.outputs_real.append(c_test[y_test])
        result.outputs_gen.append(c_test[~y_test])
        if calibrate:
            cal = isotonic_calibration(c_val, parts["val"][1])
            result.calibrated_real.append(cal(c_test[y_test]))
            result.calibrated_gen.append(cal(c_test[~y_test]))
        else:
            result.calibrated_real.append(c_test[y_test])
            result.calibrated_gen.append(c_test[~y_test])
    return result


# ---------------------------------------------------------------------------------------
# FPD / KPD on high-level features
# ---------------------------------------------------------------------------------------
def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_psd(mu1, sigma1, mu2, sigma2) -> float:
    """``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))`` like
    :func:`hepgen.metrics.jets.frechet_distance`, with ``Tr sqrt(S1 S2)`` as the sum of the
    square roots of the eigenvalues of the symmetric ``S1^1/2 S2 S1^1/2`` (the same numbers
    for covariance matrices). scipy's ``sqrtm`` needs over a second for the nearly singular
    covariance of the calorimeter features (empty layers), this some milliseconds."""
    diff = np.asarray(mu1) - np.asarray(mu2)
    r1 = _sqrt_psd(np.asarray(sigma1, dtype=np.float64))
    inner = r1 @ np.asarray(sigma2, dtype=np.float64) @ r1
    eig = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fpd(real_features, gen_features, min_samples: int = 20_000, max_samples: int = 50_000,
        num_batches: int = 20, num_points: int = 10, normalise: bool = True, seed: int = 42):
    """Frechet physics distance with the procedure of :func:`hepgen.metrics.jets.fpd`
    (jetnet: features divided by the reference's max |x|, ``num_batches`` batches drawn
    with replacement at each of ``num_points`` sizes spaced in 1/N, linear fit in 1/N
    extrapolated to 0; value and fit error) but :func:`frechet_distance_psd` per batch."""
    with _single_blas_thread():
        return jets.fpd(real_features, gen_features, min_samples, max_samples, num_batches, num_points,
                        normalise, seed, distance=frechet_distance_psd)


def _single_blas_thread():
    """One BLAS thread for the many small (F x F) decompositions: several times faster than
    threads fighting over busy cores (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def physics_distances(real_features, gen_features, seed: int = 42) -> dict[str, dict[str, float]]:
    """FPD (:func:`fpd`) and KPD (:func:`hepgen.metrics.jets.kpd`) of two high-level feature
    arrays, jetnet's definitions. jetnet's batch sizes (FPD 20k-50k, KPD 5000) are capped at
    the smaller sample size (FPD from half of it); batches are drawn with replacement."""
    import warnings

    x = np.asarray(real_features, dtype=np.float64)
    y = np.asarray(gen_features, dtype=np.float64)
    n = min(len(x), len(y))
    if n < 4:
        raise InvalidDataError(f"FPD/KPD need at least 4 showers per sample, got {n}")
    max_samples = min(50_000, n)
    min_samples = min(20_000, max(2, max_samples // 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v, e = fpd(x, y, min_samples=min_samples, max_samples=max_samples, seed=seed)
        kv, ke = jets.kpd(x, y, batch_size=min(5_000, n), seed=seed)
    return {"fpd": {"value": v, "error": e}, "kpd": {"value": kv, "error": ke}}
