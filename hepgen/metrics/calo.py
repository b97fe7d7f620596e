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
* :func:`per_energy_separations` -- E_tot/E_inc per discrete incident energy (DS1), with
  hepgen's binning or the challenge's ``hist`` mode.
* :func:`classifier_auc` -- the challenge's classifier test: an MLP (3 hidden layers of
  512 by default, 2048 in the challenge's 2024-25 ``evaluate.py``; leaky ReLU, optional
  dropout, Adam with lr 2e-4, batches of 1000, binary cross-entropy) trained to tell
  reference (label 1) from generated (label 0) showers on a 60/20/20
  train/validation/test split (or fixed split sizes, ``split_counts``). hepgen's recipe
  standardises the inputs with the training split's mean and std and keeps the epoch
  with the lowest validation loss; the challenge's (``standardise=False,
  select="accuracy", calibrated_auc=True``) feeds the raw inputs, keeps the epoch of the
  best validation accuracy and reports the AUC after isotonic calibration on the
  validation split. It returns the test AUC (mean and standard deviation over ``runs``
  seeded repetitions), the JSD estimate ``(ln 2 - BCE)/ln 2`` and the classifier outputs
  C on the test showers, from which the weights ``w = C / (1 - C)`` describe where the
  generated distribution under- or over-populates the reference (Das et al.,
  arXiv:2309.15229 discuss such weights). The rows come from arrays or from row stores
  (:class:`FileRows`: raw scratch files read batch by batch), with the same numbers.
  :func:`low_level_inputs`, :func:`high_level_inputs` (the classic 1 + L + 4 L_alpha
  vector) and :func:`calochallenge_inputs` (the 2024-25 challenge's 2 + 4 L + 4 L_alpha
  vector, 30 for DS1 photons) prepare the inputs.
* :func:`physics_distances` -- FPD and KPD (jetnet's definitions, reused from
  :mod:`hepgen.metrics.jets`) on the high-level feature vector of the classifier.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from hepgen.data.geometry import CaloGeometry
from hepgen.errors import InputFileError, InvalidDataError, OptionError
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
    ``HighLevelFeatures((incident_energies, showers), geometry)``, or
    :meth:`HighLevelFeatures.from_chunks` for showers read chunk by chunk (the same
    numbers). Voxels below ``cut`` (MeV) are set to zero first.

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
        self._begin(geo, cut, brightest)
        step = chunk_rows(geo.num_voxels, chunk_size)
        for lo in range(0, len(showers), step):
            self._add(e_inc[lo:lo + step], showers[lo:lo + step])
        self._finish()

    @classmethod
    def from_chunks(cls, chunks: Iterable, geometry: CaloGeometry, cut: float = 0.0,
                    brightest: Sequence[int] = BRIGHTEST_K) -> "HighLevelFeatures":
        """The features of showers given chunk by chunk: ``chunks`` yields pairs
        ``(incident_energies, showers)`` (or :class:`~hepgen.data.calo.ShowerSample`), so
        that only one chunk of voxels is held at a time. Chunks of
        :func:`chunk_rows` showers, aligned as in the constructor, give bit-identical
        features to ``HighLevelFeatures((all energies, all showers), geometry)``."""
        self = cls.__new__(cls)
        self._begin(geometry, cut, brightest)
        for chunk in chunks:
            e_inc, showers, _ = _as_arrays(chunk, geometry)
            self._add(e_inc, showers)
        self._finish()
        return self

    # -- accumulation: _begin, _add per chunk, _finish -------------------------------------
    def _begin(self, geo: CaloGeometry, cut: float, brightest: Sequence[int]) -> None:
        if cut < 0:
            raise OptionError(f"cut must be >= 0 MeV, got {cut}")
        self.geometry, self.cut = geo, float(cut)
        self.layer_ids = np.array(list(geo.layer_slices), dtype=int)
        self.alpha_layers = alpha_binned_layers(geo)
        self._bounds = geo.layer_boundaries
        self.layer_sizes = np.diff(self._bounds)
        self.brightest_k = tuple(sorted({int(k) for k in brightest if int(k) >= 1}))
        self.r_edges = radial_edges(geo)
        table = geo.voxel_table()
        self._coords = {k: table[k].astype(np.float64) for k in ("x", "y", "r")}
        rbin = np.clip(np.searchsorted(self.r_edges, self._coords["r"], side="right") - 1, 0, len(self.r_edges) - 2)
        self._onehot = np.zeros((geo.num_voxels, len(self.r_edges) - 1))
        self._onehot[np.arange(geo.num_voxels), rbin] = 1.0
        self._layer_no = np.arange(len(self.layer_ids), dtype=np.float64)
        self._parts: dict[str, list] = {}
        self._e_inc: list[np.ndarray] = []
        self.voxel_spectrum = LogSpectrum()

    def _add(self, e_inc: np.ndarray, showers: np.ndarray) -> None:
        parts = self._parts

        def put(name, value):
            parts.setdefault(name, []).append(value)

        self._e_inc.append(np.asarray(e_inc, dtype=np.float64).reshape(-1))
        e = np.array(showers, dtype=np.float64)  # a copy: the cut below must not touch the caller's array
        if self.cut > 0:
            e[e < self.cut] = 0.0
        self.voxel_spectrum.fill(e)
        starts = self._bounds[:-1]
        e_layer = np.add.reduceat(e, starts, axis=1)
        norm = 1.0 / (e_layer + EPS)
        put("e_layer", e_layer)
        for name, coord in self._coords.items():
            m1 = np.add.reduceat(e * coord, starts, axis=1) * norm
            m2 = np.add.reduceat(e * coord * coord, starts, axis=1) * norm
            put(f"center_{name}", m1)
            put(f"width_{name}", np.sqrt(np.clip(m2 - m1 * m1, 0.0, None)))
        put("sparsity", 1.0 - np.add.reduceat((e > 0).astype(np.float64), starts, axis=1) / self.layer_sizes)
        e_tot = e_layer.sum(1)
        d1 = (e_layer @ self._layer_no) / (e_tot + EPS)
        d2 = (e_layer @ self._layer_no**2) / (e_tot + EPS)
        put("e_tot", e_tot)
        put("depth", d1)
        put("depth_width", np.sqrt(np.clip(d2 - d1 * d1, 0.0, None)))
        put("mean_r", (e @ self._coords["r"]) / (e_tot + EPS))
        put("radial", e @ self._onehot)
        if self.brightest_k:
            put("_top", self._top_fractions(e, e_layer, self._bounds, self.geometry.is_regular))

    def _finish(self) -> None:
        parts, num_layers = self._parts, len(self.layer_ids)
        empty = {"e_tot": (0,), "depth": (0,), "depth_width": (0,), "mean_r": (0,),
                 "radial": (0, len(self.r_edges) - 1), "_top": (0, num_layers, max(self.brightest_k, default=0))}
        for name in ("e_layer", "sparsity", *(f"{m}_{c}" for m in ("center", "width") for c in "xyr")):
            empty[name] = (0, num_layers)
        self.e_inc = np.concatenate(self._e_inc) if self._e_inc else np.zeros(0)
        for name, shape in empty.items():
            value = np.concatenate(parts[name]) if name in parts else np.zeros(shape)
            if name != "_top":
                setattr(self, name, value)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.e_ratio = self.e_tot / self.e_inc
        self.brightest: dict[int, np.ndarray] = {}
        if self.brightest_k:
            top = np.concatenate(parts["_top"]) if "_top" in parts else np.zeros(empty["_top"])  # (N, L, kmax)
            for k in self.brightest_k:
                self.brightest[k] = top[:, :, k - 1]
        del self._parts, self._e_inc, self._onehot

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
                     cut: float = 0.0, energy_unit: float = 1e3, dtype=np.float32) -> np.ndarray:
    """Voxel inputs of the challenge's low-level classifier ``(N, 1 + voxels)``:
    ``log10(E_inc / energy_unit)`` followed by the voxels divided by E_inc; ``normed``: the
    voxels divided by their layer energy, followed by ``log10(E_layer + 1e-8)``
    (``cls-low-normed``). hepgen's protocol takes E_inc in GeV (``energy_unit=1e3``), the
    challenge's ``evaluate.py`` in MeV (``energy_unit=1``). Computed in float64 and returned
    as ``dtype`` (float32 by default)."""
    e_inc, showers, geo = _as_arrays(sample_or_arrays, geometry)
    bounds = geo.layer_boundaries
    n = len(showers)
    width = 1 + geo.num_voxels + (geo.num_layers if normed else 0)
    out = np.empty((n, width), dtype=dtype)
    out[:, 0] = np.log10(e_inc / energy_unit)
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


def calochallenge_inputs(features: HighLevelFeatures) -> np.ndarray:
    """The high-level feature vector of the 2024-25 CaloChallenge evaluation (high-level
    classifier and FPD/KPD), float64 ``(N, 2 + 4 L + 4 L_alpha)``, in the column order of
    the challenge's ``evaluate.py`` (``prepare_high_data_for_classifier``):

    * ``log10(E_inc / MeV)``,
    * ``log10(E_layer + 1e-8)`` of every read-out layer (L),
    * the centres in eta (x), then in phi (y), then the widths in eta, then in phi of the
      angularly binned layers (4 x L_alpha), divided by 100 mm,
    * ``log10(E_tot + 1e-8)``,
    * the sparsity (fraction of voxels without energy) of every layer (L),
    * the energy-weighted centre in r, then the width in r of every layer (2 x L),
      divided by 100 mm.

    That is the classic 1 + L + 4 L_alpha vector of :func:`high_level_inputs` (with E_inc
    in MeV) followed by 1 + 3 L columns. For DS1 photons (5 layers, 2 of them binned in
    angle) that is 2 + 20 + 8 = 30 columns; DS1 pions 2 + 28 + 16 = 46; DS2/DS3 (45
    layers, all binned in angle) 362. Layers without angular bins get no eta/phi entries
    (the challenge's ``HighLevelFeatures`` computes them only for ``layersBinnedInAlpha``);
    the radial moments exist for every layer. Empty layers give centre and width 0 (the
    challenge divides by ``E_layer + 1e-16``) and ``log10(1e-8) = -8``, as there. The
    order does not change FPD or KPD (both are invariant under a common permutation of
    the features) but fixes which weights of the classifier's first layer meet which
    feature, as in the challenge."""
    a = features.alpha_layers
    return np.concatenate([
        np.log10(features.e_inc)[:, None],
        np.log10(features.e_layer + 1e-8),
        features.center_x[:, a] / 1e2, features.center_y[:, a] / 1e2,
        features.width_x[:, a] / 1e2, features.width_y[:, a] / 1e2,
        np.log10(features.e_tot + 1e-8)[:, None],
        features.sparsity,
        features.center_r / 1e2, features.width_r / 1e2,
    ], axis=1)


def calochallenge_names(features: HighLevelFeatures) -> list[str]:
    """Column names of :func:`calochallenge_inputs`."""
    ids = features.layer_ids
    alpha_ids = ids[features.alpha_layers]
    return (["log_e_inc"] + [f"log_e_layer_{i}" for i in ids]
            + [f"{n}_{i}" for n in ("center_eta", "center_phi", "width_eta", "width_phi") for i in alpha_ids]
            + ["log_e_tot"]
            + [f"{n}_{i}" for n in ("sparsity", "center_r", "width_r") for i in ids])


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
# E_tot / E_inc per incident energy (DS1's discrete energies)
# ---------------------------------------------------------------------------------------
def discrete_energies(e_inc, max_values: int = 32) -> np.ndarray | None:
    """The distinct incident energies of a sample (MeV, ascending) when there are at most
    ``max_values`` of them (DS1: the 15 energies 256 MeV x 2^k), else None. Values are
    compared after rounding to float32, so that files written in float32 and float64 agree."""
    e = np.asarray(e_inc, dtype=np.float64).ravel()
    if e.size == 0:
        return None
    values = np.unique(e.astype(np.float32))
    return values.astype(np.float64) if len(values) <= max_values else None


def _per_energy_selections(real_e: np.ndarray, gen_e: np.ndarray, protocol: str, geometry_name: str):
    """[(energy, real mask, gen mask, edges or None)] of the per-energy histograms."""
    if protocol == "calochallenge" and geometry_name.startswith("ds1"):
        # the challenge's plot_Etot_Einc_discrete: E_inc in [2^k, 2^(k+1)) MeV, k = 8..22,
        # 20 bins over [0.4, 1.4], over [0.9, 1.1] for photons from 2^12 MeV = 4.1 GeV on
        out = []
        for i, k in enumerate(range(8, 23)):
            lo, hi = 2.0**k, 2.0**(k + 1)
            m_real, m_gen = (real_e >= lo) & (real_e < hi), (gen_e >= lo) & (gen_e < hi)
            if not m_real.any():
                continue
            narrow = i > 3 and "photons" in geometry_name
            edges = np.linspace(0.9, 1.1, 21) if narrow else np.linspace(0.4, 1.4, 21)
            out.append((lo, m_real, m_gen, edges))
        return out
    values = discrete_energies(real_e)
    if values is None:
        return []
    r32, g32 = real_e.astype(np.float32), gen_e.astype(np.float32)
    return [(float(v), r32 == np.float32(v), g32 == np.float32(v), None) for v in values]


def per_energy_separations(real: HighLevelFeatures, gen: HighLevelFeatures, protocol: str = "hepgen",
                           bins: int = 30, bootstrap: int = 20, seed: int = 0) -> dict[float, Separation]:
    """Separation power of the E_tot/E_inc histograms at each discrete incident energy,
    ``{energy (MeV): Separation}``; empty when the reference's energies are not discrete.

    ``protocol="hepgen"``: one histogram per distinct reference energy, ``bins`` bins over
    the central 99.8 % of that energy's reference values (+5 %), with under-/overflow bins,
    bootstrap errors and the statistical floor as for every other histogram.
    ``protocol="calochallenge"`` on DS1: the challenge's ``hist`` mode -- energies grouped
    in [2^k, 2^(k+1)) MeV, its fixed bins (20 over [0.4, 1.4]; [0.9, 1.1] for photons above
    4 GeV) and, as there, showers outside the bins are dropped (the histograms are
    normalised in range)."""
    rng = np.random.default_rng(seed)
    out: dict[float, Separation] = {}
    for energy, m_real, m_gen, edges in _per_energy_selections(real.e_inc, gen.e_inc, protocol,
                                                              real.geometry.name):
        v_real, v_gen = real.e_ratio[m_real], gen.e_ratio[m_gen]
        if edges is None:
            s = histogram_separation(v_real, v_gen, feature_edges(v_real, "linear", bins), bootstrap, rng)
        else:
            c1, c2 = counts_with_flow(v_real, edges), counts_with_flow(v_gen, edges)
            c1[[0, -1]] = 0
            c2[[0, -1]] = 0
            s = separation_from_counts(c1, c2, edges, bootstrap, rng)
        out[energy] = s
    return out


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
    """A monotone map score -> P(label=1) fitted by isotonic regression, the challenge's
    ``IsotonicRegression(out_of_bounds='clip', y_min=1e-6, y_max=1-1e-6)``.

    scikit-learn is not a dependency of hepgen (it is not in ``requirements.lock``), so the
    fit is written out with :func:`scipy.optimize.isotonic_regression` the way
    scikit-learn's ``IsotonicRegression.fit`` / ``predict`` do it: equal scores are merged
    first into one point (the mean label, weighted by the count), the weighted isotonic
    (pool-adjacent-violators) fit of those points is clipped to ``[clip, 1 - clip]``, and
    a new score is mapped by linear interpolation between the fitted points, constant
    beyond the smallest and the largest fitted score."""
    from scipy.optimize import isotonic_regression

    x = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    ux, inv = np.unique(x, return_inverse=True)
    weight = np.bincount(inv).astype(np.float64)
    uy = np.bincount(inv, weights=y) / weight
    fitted = np.clip(isotonic_regression(uy, weights=weight, increasing=True).x, clip, 1 - clip)
    if len(ux) == 1:
        return lambda s: np.full(np.shape(s), fitted[0])
    return lambda s: np.interp(np.asarray(s, dtype=np.float64), ux, fitted)


@dataclass
class ClassifierResult:
    """Outcome of :func:`classifier_auc`: one entry per run.

    ``aucs``: the reported test AUCs (after isotonic calibration on the validation split
    when the classifier was run with ``calibrated_auc``, else of the raw outputs);
    ``raw_aucs``: always those of the raw outputs. ``split_sizes``: showers of each sample
    in the train, validation and test split. ``outputs_*``: classifier outputs
    C = P(reference | shower) on the test showers; ``calibrated_*``: the same after
    isotonic calibration on the validation split (equal to the raw outputs when
    calibration is off).
    """

    aucs: list[float]
    jsds: list[float]
    best_epochs: list[int]
    outputs_real: list[np.ndarray] = field(repr=False)
    outputs_gen: list[np.ndarray] = field(repr=False)
    calibrated_real: list[np.ndarray] = field(repr=False)
    calibrated_gen: list[np.ndarray] = field(repr=False)
    raw_aucs: list[float] = field(default_factory=list)
    split_sizes: tuple[int, int, int] = (0, 0, 0)

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


# -- row stores: where the classifier reads its input rows from -----------------------------
class ArrayRows:
    """Classifier input rows held in an array ``(N, F)``."""

    def __init__(self, array: np.ndarray):
        self.array = np.asarray(array)
        if self.array.ndim != 2:
            raise InvalidDataError(f"classifier inputs must be (N, F), got {self.array.shape}")

    def __len__(self) -> int:
        return len(self.array)

    @property
    def width(self) -> int:
        return self.array.shape[1]

    @property
    def dtype(self):
        return self.array.dtype

    def take(self, index: np.ndarray) -> np.ndarray:
        return self.array[np.asarray(index, dtype=np.int64)]

    def close(self) -> None:
        pass


class FileRows:
    """Classifier input rows in a raw binary file (C order, ``width`` values of ``dtype`` per
    row), read with plain unbuffered file reads. Nothing is memory-mapped, so a batch of
    rows costs the process only that batch: the operating system's page cache may hold
    the file, but that memory is not the process's and is given back under pressure.
    Consecutive rows of a request are read in one call."""

    def __init__(self, path, width: int, dtype, length: int):
        self.path, self._width, self._dtype, self._length = Path(path), int(width), np.dtype(dtype), int(length)
        self._row_bytes = self._width * self._dtype.itemsize
        if self.path.stat().st_size != self._row_bytes * self._length:
            raise InvalidDataError(f"{self.path}: expected {self._length} rows of {self._width} x {self._dtype}")
        self._file = open(self.path, "rb", buffering=0)

    def __len__(self) -> int:
        return self._length

    @property
    def width(self) -> int:
        return self._width

    @property
    def dtype(self):
        return self._dtype

    def take(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64).ravel()
        out = np.empty((len(index), self._width), self._dtype)
        if not len(index):
            return out
        if index.min() < 0 or index.max() >= self._length:
            raise IndexError(f"row index out of range 0..{self._length - 1}")
        order = np.argsort(index, kind="stable")
        rows = index[order]
        # runs of consecutive (sorted) rows, one read each
        breaks = np.nonzero(np.diff(rows) != 1)[0] + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [len(rows)]])
        for a, b in zip(starts.tolist(), stops.tolist()):
            first, count = int(rows[a]), b - a
            buf = np.empty((count, self._width), self._dtype)
            self._file.seek(first * self._row_bytes)
            view, done = memoryview(buf).cast("B"), 0
            while done < count * self._row_bytes:
                got = self._file.readinto(view[done:])
                if not got:
                    raise InputFileError(f"{self.path}: file ended early")
                done += got
            out[order[a:b]] = buf
        return out

    def close(self) -> None:
        self._file.close()


class RowFileWriter:
    """Append row blocks to a new :class:`FileRows` file; :meth:`finish` returns the reader."""

    def __init__(self, path, width: int, dtype=np.float32):
        self.path, self.width, self.dtype = Path(path), int(width), np.dtype(dtype)
        self._file = open(self.path, "wb")
        self.count = 0

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise InvalidDataError(f"rows must be (n, {self.width}), got {rows.shape}")
        self._file.write(rows.tobytes())
        self.count += len(rows)

    def finish(self) -> FileRows:
        self._file.close()
        return FileRows(self.path, self.width, self.dtype, self.count)


def as_rows(features) -> "ArrayRows | FileRows":
    """An :class:`ArrayRows` for an array; row stores (:class:`ArrayRows`, :class:`FileRows`)
    unchanged."""
    return features if isinstance(features, (ArrayRows, FileRows)) else ArrayRows(features)


class _SplitRows:
    """One split of a classifier run: ``m`` reference rows then ``m`` generated rows."""

    def __init__(self, real, gen, idx_real: np.ndarray, idx_gen: np.ndarray):
        self.real, self.gen = real, gen
        self.idx_real, self.idx_gen = np.asarray(idx_real, np.int64), np.asarray(idx_gen, np.int64)
        self.m = len(self.idx_real)
        self.labels = np.concatenate([np.ones(self.m, np.float32), np.zeros(len(self.idx_gen), np.float32)])

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, j: np.ndarray) -> np.ndarray:
        j = np.asarray(j, dtype=np.int64)
        is_real = j < self.m
        out = np.empty((len(j), self.real.width), self.real.dtype)
        if is_real.any():
            out[is_real] = self.real.take(self.idx_real[j[is_real]])
        if (~is_real).any():
            out[~is_real] = self.gen.take(self.idx_gen[j[~is_real] - self.m])
        return out


#: Rows per block when the classifier computes statistics or evaluates: 4 batches, at most
#: this many values (DS3: 828 rows).
EVAL_VALUES = 2**25
#: Values standardised at a time (bounds the float64 temporaries).
STANDARDISE_VALUES = 2**23


def _block_rows(batch_size: int, width: int) -> int:
    return max(1, min(4 * int(batch_size), EVAL_VALUES // max(int(width), 1)))


def _train_statistics(split: _SplitRows, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (float64) of a split's rows, read block by block.

    Equal, bit for bit, to ``x.mean(0, dtype=float64)`` and ``x.std(0, dtype=float64)`` of
    the whole array ``x``: numpy reduces over the first axis of a C-ordered array by adding
    the rows one after the other, and each block here is added to the running sum in the
    same way (the running sum is reduced as the first row of the block)."""
    n = len(split)
    total = None
    for lo in range(0, n, block):
        x = split.take(np.arange(lo, min(lo + block, n)))
        stack = x if total is None else np.concatenate([total[None], x.astype(np.float64)])
        total = np.add.reduce(stack, axis=0, dtype=np.float64)
    mean = total / n
    total2 = None
    for lo in range(0, n, block):
        d = split.take(np.arange(lo, min(lo + block, n))) - mean
        d *= d
        stack = d if total2 is None else np.concatenate([total2[None], d])
        total2 = np.add.reduce(stack, axis=0, dtype=np.float64)
    std = np.sqrt(total2 / n)
    return mean, std


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
    split_counts: Sequence[int] | None = None,
    calibrate: bool = True,
    standardise: bool = True,
    select: str = "loss",
    calibrated_auc: bool = False,
    dtype: str = "float32",
    cache_bytes: int = 2**28,
    seed: int = 0,
    device=None,
    progress: bool = False,
    desc: str = "classifier",
) -> ClassifierResult:
    """The challenge's classifier test on two feature sets (N, F) -> :class:`ClassifierResult`.

    ``real_features`` / ``gen_features``: arrays, or row stores (:class:`ArrayRows`,
    :class:`FileRows`) from which the rows of each batch are read when needed, so that
    neither sample has to be in memory; both give the same numbers for the same rows.

    Each run draws (with ``seed`` and the run number) equally many showers of both samples
    (the smaller sample size), splits each into train/validation/test by the fractions
    ``split`` (60/20/20) or, with ``split_counts = (n_train, n_val)``, into that many
    training and validation showers and the rest for the test (the challenge's fixed
    sizes, e.g. 80,000 / 20,000 / rest for DS1), trains for
    ``epochs`` epochs (Adam, binary cross-entropy, batches drawn afresh each epoch) and
    keeps the parameters of the epoch chosen on the validation split. Two recipes:

    * hepgen's (the defaults): inputs standardised with the training split's mean and std
      (``standardise``), the epoch of the lowest validation loss (``select="loss"``), the
      AUC of the raw test outputs, float32;
    * the CaloChallenge ``evaluate.py`` (``standardise=False, select="accuracy",
      calibrated_auc=True, hidden=(2048, 2048, 2048), dtype="float64"``, its fixed
      ``split_counts``; see :data:`hepgen.evaluate.calo.PROTOCOL_CLASSIFIER`): raw inputs, the first epoch
      of the highest validation accuracy (training stops early at accuracy 1), an isotonic
      calibration fitted on the validation outputs, and the AUC and JSD of the calibrated
      test outputs.

    ``result.value`` is the mean test AUC over runs, ``result.error`` its standard
    deviation. Splits (standardised, as ``dtype``) of at most ``cache_bytes`` are kept in
    memory after their first reading; larger ones are read batch by batch every epoch.
    Deterministic on the CPU for a given seed.
    """
    import torch
    from tqdm.auto import tqdm

    from hepgen.device import default_device

    real, gen = as_rows(real_features), as_rows(gen_features)
    if real.width != gen.width:
        raise InvalidDataError(f"classifier inputs must be (N, F) with equal F, got {real.width} and {gen.width}")
    if isinstance(real, ArrayRows) and isinstance(gen, ArrayRows):
        real, gen = ArrayRows(real.array.astype(np.float32, copy=False) if dtype == "float32" else real.array), \
            ArrayRows(gen.array.astype(np.float32, copy=False) if dtype == "float32" else gen.array)
        if not (np.isfinite(real.array).all() and np.isfinite(gen.array).all()):
            raise InvalidDataError("classifier inputs contain NaN or inf")
    if epochs < 1 or runs < 1:
        raise OptionError(f"classifier needs epochs >= 1 and runs >= 1, got {epochs} and {runs}")
    if select not in ("loss", "accuracy"):
        raise OptionError(f"select must be 'loss' or 'accuracy', got {select!r}")
    if dtype not in ("float32", "float64"):
        raise OptionError(f"dtype must be float32 or float64, got {dtype!r}")
    np_dtype = np.dtype(dtype)
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    n = min(len(real), len(gen))
    if split_counts is not None:
        n_train, n_val = (int(c) for c in split_counts)
        if n - n_train - n_val < 2 or min(n_train, n_val) < 2:
            raise InvalidDataError(f"split_counts {n_train} + {n_val} leave {n - n_train - n_val} of {n} showers "
                                   "per sample for the test split (at least 2 needed)")
    else:
        split = np.asarray(split, dtype=np.float64) / np.sum(split)
        n_train, n_val = int(n * split[0]), int(n * split[1])
    n_test = n - n_train - n_val
    if min(n_train, n_val, n_test) < 2:
        raise InvalidDataError(f"the classifier test needs at least 10 showers per sample, got {n}")
    device = torch.device(device) if device is not None else default_device()
    bce = torch.nn.BCEWithLogitsLoss()
    width = real.width
    block = _block_rows(batch_size, width)
    sub = max(1, STANDARDISE_VALUES // max(width, 1))

    class Prepared:
        """A split's rows as model inputs: read, standardised, converted, cached if small."""

        def __init__(self, rows: _SplitRows, mean, std):
            self.rows, self.mean, self.std = rows, mean, std
            self.y = torch.from_numpy(rows.labels.astype(np_dtype)).to(device)
            self.cached = None
            if len(rows) * width * np_dtype.itemsize <= cache_bytes:
                self.cached = torch.cat([self._read(np.arange(lo, min(lo + block, len(rows))))
                                         for lo in range(0, len(rows), block)])

        def __len__(self) -> int:
            return len(self.rows)

        def _read(self, j: np.ndarray):
            x = self.rows.take(j)
            if not np.isfinite(x).all():
                raise InvalidDataError("classifier inputs contain NaN or inf")
            if self.mean is None:
                x = x.astype(np_dtype, copy=False)
            else:  # standardised in float64, a few rows at a time (elementwise: the same values)
                out = np.empty(x.shape, np_dtype)
                for lo in range(0, len(x), sub):
                    out[lo:lo + sub] = (x[lo:lo + sub] - self.mean) / self.std
                x = out
            return torch.from_numpy(np.ascontiguousarray(x)).to(device)

        def batch(self, j: np.ndarray):
            if self.cached is not None:
                return self.cached[torch.from_numpy(j).to(device)]
            return self._read(j)

        def blocks(self):
            for lo in range(0, len(self), block):
                j = np.arange(lo, min(lo + block, len(self)))
                yield self.cached[lo:lo + block] if self.cached is not None else self._read(j)

    def logits_of(model, data: Prepared):
        model.eval()
        with torch.no_grad():
            return torch.cat([model(x).squeeze(1) for x in data.blocks()])

    result = ClassifierResult([], [], [], [], [], [], [], [], split_sizes=(n_train, n_val, n_test))
    for run in range(runs):
        rng = np.random.default_rng([seed, run])
        idx_r = rng.permutation(len(real))[:n]
        idx_g = rng.permutation(len(gen))[:n]
        rows = {name: _SplitRows(real, gen, idx_r[lo:hi], idx_g[lo:hi])
                for name, lo, hi in (("train", 0, n_train), ("val", n_train, n_train + n_val),
                                     ("test", n_train + n_val, n))}
        mean = std = None
        if standardise:
            mean, std = _train_statistics(rows["train"], block)
            std[std < 1e-8] = 1.0
        data = {k: Prepared(v, mean, std) for k, v in rows.items()}
        train, val, test = data["train"], data["val"], data["test"]
        torch_seed = int(rng.integers(2**31 - 1))
        fork = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(torch_seed)
            model = _mlp(width, hidden, dropout, activation).to(device=device, dtype=torch_dtype)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            gen_perm = torch.Generator().manual_seed(torch_seed)
            best = (float("inf"), -1, None)  # (score to minimise, epoch, state)
            bar = tqdm(range(epochs), desc=f"{desc} run {run + 1}/{runs}", disable=not progress, leave=False)
            for epoch in bar:
                model.train()
                perm = torch.randperm(len(train), generator=gen_perm).numpy()
                for i in range(0, len(perm), batch_size):
                    b = perm[i:i + batch_size]
                    loss = bce(model(train.batch(b)).squeeze(1), train.y[torch.from_numpy(b).to(device)])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                val_logits = logits_of(model, val)
                if select == "loss":
                    score = float(bce(val_logits, val.y))
                    bar.set_postfix(val_loss=f"{score:.4f}", best_epoch=best[1] if best[1] > 0 else epoch + 1)
                else:
                    pred = (torch.sigmoid(val_logits) > 0.5).to(val.y.dtype)
                    score = -float((pred == val.y).to(torch.float64).mean())
                    bar.set_postfix(val_acc=f"{-score:.4f}")
                if score < best[0]:
                    best = (score, epoch + 1, copy.deepcopy(model.state_dict()))
                if select == "accuracy" and score == -1.0:
                    break
            model.load_state_dict(best[2])
            test_logits = logits_of(model, test)
            test_bce = float(bce(test_logits, test.y))
            c_test = torch.sigmoid(test_logits).double().cpu().numpy()
            c_val = torch.sigmoid(logits_of(model, val)).double().cpu().numpy()
        y_test = rows["test"].labels.astype(bool)
        raw_auc = roc_auc(y_test, c_test)
        cal_test = c_test
        if calibrate or calibrated_auc:
            cal = isotonic_calibration(c_val, rows["val"].labels)
            cal_test = cal(c_test)
        if calibrated_auc:
            # as the challenge: AUC and BCE (hence JSD) of the calibrated outputs
            p = np.clip(cal_test, 1e-12, 1 - 1e-12)
            test_bce = float(-np.mean(y_test * np.log(p) + (~y_test) * np.log(1 - p)))
            result.aucs.append(roc_auc(y_test, cal_test))
        else:
            result.aucs.append(raw_auc)
        result.raw_aucs.append(raw_auc)
        result.jsds.append((math.log(2) - test_bce) / math.log(2))
        result.best_epochs.append(best[1])
        result.outputs_real.append(c_test[y_test])
        result.outputs_gen.append(c_test[~y_test])
        if calibrate or calibrated_auc:
            result.calibrated_real.append(cal_test[y_test])
            result.calibrated_gen.append(cal_test[~y_test])
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


#: Values per temporary of the FPD's bootstrap second moments (rows x feature pairs): the
#: row chunk of :func:`hepgen.metrics.jets._bootstrap_moments` (4096 rows) is lowered for
#: long feature vectors -- DS2/DS3's 362 features have 65,703 pairs, 2 GB per temporary
#: at 4096 rows.
MOMENT_VALUES = 2**24


def fpd(real_features, gen_features, min_samples: int = 20_000, max_samples: int = 50_000,
        num_batches: int = 20, num_points: int = 10, normalise: bool = True, seed: int = 42):
    """Frechet physics distance with the procedure of :func:`hepgen.metrics.jets.fpd`
    (jetnet: features divided by the reference's max |x|, ``num_batches`` batches drawn
    with replacement at each of ``num_points`` sizes spaced in 1/N, linear fit in 1/N
    extrapolated to 0; value and fit error) but :func:`frechet_distance_psd` per batch.
    For long feature vectors the bootstrap moments are summed over smaller row chunks
    (:data:`MOMENT_VALUES`), which bounds the memory; the draws and the formula are the
    same, the sums differ only by rounding."""
    f = np.shape(real_features)[1]
    chunk = max(1, min(4096, MOMENT_VALUES // max(f * (f + 1) // 2, 1)))
    with _single_blas_thread():
        return jets.fpd(real_features, gen_features, min_samples, max_samples, num_batches, num_points,
                        normalise, seed, distance=frechet_distance_psd, chunk=chunk)


def _single_blas_thread():
    """One BLAS thread for the many small (F x F) decompositions: several times faster than
    threads fighting over busy cores (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def physics_distances(real_features, gen_features, seed: int = 42,
                      jetnet_defaults: bool = False) -> dict[str, dict[str, float]]:
    """FPD (:func:`fpd`) and KPD (:func:`hepgen.metrics.jets.kpd`) of two high-level feature
    arrays, jetnet's definitions; batches are drawn with replacement.

    By default jetnet's batch sizes (FPD 20k-50k, KPD 5000) are capped at the smaller
    sample size (FPD from half of it). ``jetnet_defaults``: jetnet's sizes whatever the
    sample sizes, as the CaloChallenge's ``jetnet.evaluation.fpd(reference, generated)``
    and ``kpd(reference, generated)`` calls draw them (the same numbers for samples of
    50,000 or more)."""
    import warnings

    x = np.asarray(real_features, dtype=np.float64)
    y = np.asarray(gen_features, dtype=np.float64)
    n = min(len(x), len(y))
    if n < 4:
        raise InvalidDataError(f"FPD/KPD need at least 4 showers per sample, got {n}")
    if jetnet_defaults:
        min_samples, max_samples, kpd_batch = 20_000, 50_000, 5_000
    else:
        max_samples = min(50_000, n)
        min_samples = min(20_000, max(2, max_samples // 2))
        kpd_batch = min(5_000, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v, e = fpd(x, y, min_samples=min_samples, max_samples=max_samples, seed=seed)
        kv, ke = jets.kpd(x, y, batch_size=kpd_batch, seed=seed)
    return {"fpd": {"value": v, "error": e}, "kpd": {"value": kv, "error": ke}}
