"""Showers as point clouds of hits, for the MDMA calorimeter model (seed 000 ch. 6).

* :func:`showers_to_hits`: every voxel with energy becomes a hit (E, layer, alpha bin,
  radial bin), sorted by energy, padded with a mask;
* :class:`LinearDequantiser`: integer bins -> continuous coordinates by sampling the
  offset inside a bin from the straight line between the yields of the bin and the next
  one (seed 000 Alg. 4), which avoids the steps of uniform dequantisation; alpha is
  dequantised uniformly (its distribution is flat);
* :class:`CaloPointTransform`: Box-Cox on the hit energies, min-max scaling of the
  coordinates clamped to (1e-5, 1 - 1e-5), logit, then standardisation (seed 000 sec. 6.2.1);
* :class:`HitCountModel`: the number of hits given E_inc (a quadratic fit of log n in
  log E_inc with a Gaussian spread in bins of E_inc; the thesis used the test-set counts);
* post-processing: :func:`rotate_alpha` (a random rotation of each shower, sec. 6.3.2)
  and :func:`resolve_collisions` (a hit that lands in an occupied cell moves to the free
  neighbouring cell nearest in (alpha, r, layer), or merges when none is free), then
  :func:`hits_to_showers` bins the hits back onto the geometry.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import special, stats

from hepgen.data.geometry import CaloGeometry, load_geometry
from hepgen.errors import InvalidDataError
from hepgen.transforms.base import Transform

CLAMP = 1e-5


def showers_to_hits(showers: np.ndarray, geometry: CaloGeometry, max_hits: int | None = None):
    """(N, voxels) -> energies (N, M), bins (N, M, 3) = (layer, alpha, r) ints, mask (N, M)."""
    layers, n_alpha, n_r = geometry.shape
    n = len(showers)
    counts = (showers > 0).sum(1)
    m = int(max_hits or max(counts.max(), 1))
    order = np.argsort(-showers, axis=1, kind="stable")[:, :m]
    energy = np.take_along_axis(showers, order, axis=1)
    mask = energy > 0
    energy = np.where(mask, energy, 0.0)
    layer, rest = np.divmod(order, n_alpha * n_r)
    alpha, r = np.divmod(rest, n_r)
    bins = np.stack([layer, alpha, r], -1) * mask[..., None]
    return energy.reshape(n, m), bins.reshape(n, m, 3), mask


def hits_to_showers(energy: np.ndarray, bins: np.ndarray, mask: np.ndarray, geometry: CaloGeometry) -> np.ndarray:
    """Bin hits back onto the geometry (energies of hits in the same cell add up)."""
    layers, n_alpha, n_r = geometry.shape
    n = len(energy)
    idx = (bins[..., 0] * n_alpha + bins[..., 1]) * n_r + bins[..., 2]
    flat = np.arange(n)[:, None] * geometry.num_voxels + idx
    out = np.bincount(flat[mask], weights=energy[mask], minlength=n * geometry.num_voxels)
    return out.reshape(n, geometry.num_voxels)


class LinearDequantiser:
    """Continuous coordinates for integer bins 0..K-1 by linear interpolation of the yields."""

    def __init__(self, yields: Sequence[float]):
        self.yields = np.asarray(yields, dtype=np.float64)

    @classmethod
    def fit(cls, bins: np.ndarray, num_bins: int) -> "LinearDequantiser":
        y = np.bincount(np.asarray(bins).ravel(), minlength=num_bins).astype(np.float64)
        return cls(y / max(y.sum(), 1.0))

    def offsets(self, bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Offsets in [0, 1) inside each bin, from p(x) ~ y_i + (y_{i+1} - y_i) x."""
        y = np.append(self.yields, self.yields[-1])
        y0, y1 = y[bins], y[bins + 1]
        s = y1 - y0
        k = 0.5 * (y0 + y1)
        u = rng.random(bins.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (np.sqrt(np.maximum(y0 ** 2 + 2 * s * k * u, 0)) - y0) / s
        x = np.where(np.abs(s) > 1e-12 * np.maximum(k, 1e-300), x, u)
        return np.clip(np.nan_to_num(x, nan=0.5), 0.0, 1.0 - 1e-9)

    def to_dict(self) -> list[float]:
        return self.yields.tolist()


class CaloPointTransform(Transform):
    """Hits (E, layer, alpha, r) <-> standardised network features (4 per hit)."""

    name = "calo-points"

    def __init__(self, geometry: str = "ds2", lmbda: float | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, yields: dict[str, list] | None = None,
                 threshold: float = 15.15e-3):
        self.geometry_name = geometry
        self.lmbda = lmbda
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.std = None if std is None else np.asarray(std, np.float64)
        self.yields = yields
        self.threshold = float(threshold)

    @property
    def geometry(self) -> CaloGeometry:
        return load_geometry(self.geometry_name)

    def _dequantisers(self) -> dict[str, LinearDequantiser]:
        return {k: LinearDequantiser(v) for k, v in self.yields.items()}

    def _continuous(self, bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        layers, n_alpha, n_r = self.geometry.shape
        deq = self._dequantisers()
        z = (bins[..., 0] + deq["layer"].offsets(bins[..., 0], rng)) / layers
        a = (bins[..., 1] + rng.random(bins[..., 1].shape)) / n_alpha
        r = (bins[..., 2] + deq["r"].offsets(bins[..., 2], rng)) / n_r
        return np.stack([z, a, r], -1)

    def _features(self, energy, bins, mask, rng) -> np.ndarray:
        coords = special.logit(np.clip(self._continuous(bins, rng), CLAMP, 1 - CLAMP))
        e = stats.boxcox(np.clip(energy, 1e-12, None), self.lmbda)
        return np.concatenate([e[..., None], coords], -1) * mask[..., None]

    def fit(self, energy, bins=None, mask=None, seed: int = 0) -> "CaloPointTransform":
        if mask is None or bins is None or not mask.any():
            raise InvalidDataError("cannot fit the point transform without hits")
        layers, n_alpha, n_r = self.geometry.shape
        self.yields = {"layer": LinearDequantiser.fit(bins[..., 0][mask], layers).to_dict(),
                       "r": LinearDequantiser.fit(bins[..., 2][mask], n_r).to_dict()}
        hits = energy[mask].astype(np.float64)
        rng = np.random.default_rng(seed)
        sub = rng.choice(hits, size=min(len(hits), 200_000), replace=False)
        self.lmbda = float(stats.boxcox(np.clip(sub, 1e-12, None))[1])
        feats = self._features(energy, bins, mask, rng)[mask]
        self.mean, self.std = feats.mean(0), np.where(feats.std(0) > 0, feats.std(0), 1.0)
        return self

    def transform(self, energy, bins=None, mask=None, seed: int = 0) -> np.ndarray:
        feats = self._features(energy, bins, mask, np.random.default_rng(seed))
        return ((feats - self.mean) / self.std * mask[..., None]).astype(np.float32)

    def inverse_transform(self, x, mask=None):
        """Network features -> (energy (N, M), bins (N, M, 3))."""
        layers, n_alpha, n_r = self.geometry.shape
        f = np.asarray(x, np.float64) * self.std + self.mean
        lam = self.lmbda
        e = f[..., 0]
        if lam > 0:
            e = np.maximum(e, -1.0 / lam + 1e-12)
        energy = np.nan_to_num(special.inv_boxcox(e, lam), nan=0.0, posinf=0.0)
        coords = special.expit(f[..., 1:])
        bins = np.stack([np.clip(np.floor(coords[..., 0] * layers), 0, layers - 1),
                         np.clip(np.floor(coords[..., 1] * n_alpha), 0, n_alpha - 1),
                         np.clip(np.floor(coords[..., 2] * n_r), 0, n_r - 1)], -1).astype(np.int64)
        if mask is not None:
            energy = energy * mask
        return energy, bins

    def params(self) -> dict[str, Any]:
        return {"geometry": self.geometry_name, "lmbda": self.lmbda, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "yields": self.yields, "threshold": self.threshold}


class HitCountModel:
    """n_hits | E_inc: log n = quadratic in log E_inc, Gaussian residual per E_inc bin."""

    def __init__(self, coef: Sequence[float], edges: Sequence[float], sigma: Sequence[float], max_hits: int):
        self.coef, self.edges, self.sigma = np.asarray(coef), np.asarray(edges), np.asarray(sigma)
        self.max_hits = int(max_hits)

    @classmethod
    def fit(cls, e_inc: np.ndarray, counts: np.ndarray, max_hits: int, bins: int = 10) -> "HitCountModel":
        x, y = np.log(e_inc), np.log(np.maximum(counts, 1))
        coef = np.polyfit(x, y, 2)
        resid = y - np.polyval(coef, x)
        edges = np.quantile(x, np.linspace(0, 1, bins + 1))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
        sigma = np.array([resid[which == b].std() if (which == b).sum() > 1 else resid.std() for b in range(bins)])
        return cls(coef, edges, sigma, max_hits)

    def sample(self, e_inc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = np.log(e_inc)
        which = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, len(self.sigma) - 1)
        n = np.exp(np.polyval(self.coef, x) + self.sigma[which] * rng.standard_normal(len(x)))
        return np.clip(np.rint(n), 1, self.max_hits).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"coef": self.coef.tolist(), "edges": self.edges.tolist(), "sigma": self.sigma.tolist(),
                "max_hits": self.max_hits}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HitCountModel":
        return cls(d["coef"], d["edges"], d["sigma"], d["max_hits"])


def rotate_alpha(bins: np.ndarray, n_alpha: int, rng: np.random.Generator) -> np.ndarray:
    """Rotate every shower by a random whole number of angular bins."""
    out = bins.copy()
    out[..., 1] = (out[..., 1] + rng.integers(0, n_alpha, (len(bins), 1))) % n_alpha
    return out


_NEIGHBOURS = [(0, da, 0) for da in (-1, 1)] + [(0, 0, dr) for dr in (-1, 1)] + \
    [(0, da, dr) for da in (-1, 1) for dr in (-1, 1)] + [(dz, 0, 0) for dz in (-1, 1)]


def resolve_collisions(energy: np.ndarray, bins: np.ndarray, mask: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Move hits that share a cell to a free neighbouring cell (highest energy stays).

    Neighbours are tried in the order alpha +-1, r +-1, diagonal in (alpha, r), layer +-1;
    a hit with no free neighbour stays and merges with the occupant when binned.
    Returns the new bins; only showers with collisions are looked at hit by hit.
    """
    layers, n_alpha, n_r = shape
    out = bins.copy()
    cell = (bins[..., 0] * n_alpha + bins[..., 1]) * n_r + bins[..., 2]
    cell = np.where(mask, cell, -1 - np.arange(cell.shape[1])[None, :])  # padding never collides
    srt = np.sort(cell, axis=1)
    has = (srt[:, 1:] == srt[:, :-1]).any(1)
    for i in np.nonzero(has)[0]:
        order = np.argsort(-energy[i] * mask[i], kind="stable")
        taken: set[int] = set()
        for j in order:
            if not mask[i, j]:
                continue
            z, a, r = out[i, j]
            c = (z * n_alpha + a) * n_r + r
            if c in taken:
                for dz, da, dr in _NEIGHBOURS:
                    z2, a2, r2 = z + dz, (a + da) % n_alpha, r + dr
                    if 0 <= z2 < layers and 0 <= r2 < n_r:
                        c2 = (z2 * n_alpha + a2) * n_r + r2
                        if c2 not in taken:
                            out[i, j] = (z2, a2, r2)
                            c = c2
                            break
            taken.add(int(c))
    return out
