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
* :class:`ShowerSizeModel`: n and the total energy given E_inc jointly (quadratic trends,
  Gaussian copula of the empirical residuals per E_inc bin); sampled showers are rescaled
  to its total energy when the run's ``sampler.rescale_energy`` is on;
* post-processing: :func:`rotate_alpha` (a random rotation of each shower, sec. 6.3.2)
  and :func:`resolve_collisions` (vectorised: a hit that lands in an occupied cell moves to
  a free neighbouring cell, else to the nearest free cell of its shower), then
  :func:`hits_to_showers` bins the hits back onto the geometry.
"""

from __future__ import annotations

import functools
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


class ShowerSizeModel:
    """(n_hits, E_tot / E_inc) | E_inc, jointly: a quadratic trend in log E_inc for
    y = (log n, log(E_tot / E_inc)) and, in quantile bins of E_inc, a Gaussian copula of
    the residuals (their empirical quantiles and the correlation of their normal scores).

    The sampled total energy sets the energy scale of a generated shower (its hit
    energies are rescaled to it), so the response E_tot / E_inc, the feature a classifier
    sees first, does not hinge on the network getting the mean of thousands of hit
    energies right (a shift of 0.1 sigma in the Box-Cox hit energy is ~20% in E_tot).
    """

    def __init__(self, coef, edges, levels, quantiles, rho, max_hits: int):
        self.coef = np.asarray(coef, np.float64)            # (2, 3)
        self.edges = np.asarray(edges, np.float64)          # (bins + 1,)
        self.levels = np.asarray(levels, np.float64)        # (Q,)
        self.quantiles = np.asarray(quantiles, np.float64)  # (bins, 2, Q)
        self.rho = np.asarray(rho, np.float64)              # (bins,)
        self.max_hits = int(max_hits)

    @classmethod
    def fit(cls, e_inc: np.ndarray, counts: np.ndarray, e_tot: np.ndarray, max_hits: int, bins: int = 10,
            num_quantiles: int = 41) -> "ShowerSizeModel":
        x = np.log(np.asarray(e_inc, np.float64))
        ok = (np.asarray(counts) > 0) & (np.asarray(e_tot) > 0)
        if ok.sum() < 2 * bins:
            raise InvalidDataError(f"need at least {2 * bins} showers with hits to fit the shower-size model")
        x = x[ok]
        y = np.stack([np.log(np.asarray(counts, np.float64)[ok]), np.log(np.asarray(e_tot, np.float64)[ok]) - x])
        coef = np.stack([np.polyfit(x, yi, 2) for yi in y])
        resid = y - np.stack([np.polyval(c, x) for c in coef])
        edges = np.quantile(x, np.linspace(0, 1, bins + 1))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
        levels = np.linspace(0, 1, num_quantiles)
        quantiles, rho = np.zeros((bins, 2, num_quantiles)), np.zeros(bins)
        for b in range(bins):
            rb = resid[:, which == b]
            quantiles[b] = np.quantile(rb, levels, axis=1).T
            scores = special.ndtri(np.clip((stats.rankdata(rb, axis=1) - 0.5) / rb.shape[1], 1e-6, 1 - 1e-6))
            rho[b] = np.corrcoef(scores)[0, 1] if rb.shape[1] > 2 else 0.0
        return cls(coef, edges, levels, quantiles, np.nan_to_num(rho), max_hits)

    def sample(self, e_inc: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(n_hits (int), E_tot) for every incident energy."""
        x = np.log(np.asarray(e_inc, np.float64))
        which = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, len(self.rho) - 1)
        z = rng.standard_normal((2, len(x)))
        rho = self.rho[which]
        z[1] = rho * z[0] + np.sqrt(1 - rho ** 2) * z[1]
        u = special.ndtr(z)
        resid = np.zeros((2, len(x)))
        for b in np.unique(which):
            sel = which == b
            for k in range(2):
                resid[k, sel] = np.interp(u[k, sel], self.levels, self.quantiles[b, k])
        y = np.stack([np.polyval(c, x) for c in self.coef]) + resid
        n = np.clip(np.rint(np.exp(y[0])), 1, self.max_hits).astype(np.int64)
        return n, np.exp(y[1] + x)

    def to_dict(self) -> dict[str, Any]:
        return {"coef": self.coef.tolist(), "edges": self.edges.tolist(), "levels": self.levels.tolist(),
                "quantiles": self.quantiles.tolist(), "rho": self.rho.tolist(), "max_hits": self.max_hits}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ShowerSizeModel":
        return cls(d["coef"], d["edges"], d["levels"], d["quantiles"], d["rho"], d["max_hits"])


def rotate_alpha(bins: np.ndarray, n_alpha: int, rng: np.random.Generator) -> np.ndarray:
    """Rotate every shower by a random whole number of angular bins."""
    out = bins.copy()
    out[..., 1] = (out[..., 1] + rng.integers(0, n_alpha, (len(bins), 1))) % n_alpha
    return out


_RING = [(0, da, 0) for da in (-1, 1)] + [(0, 0, dr) for dr in (-1, 1)] + \
    [(0, da, dr) for da in (-1, 1) for dr in (-1, 1)] + [(dz, 0, 0) for dz in (-1, 1)]
#: neighbour offsets (layer, alpha, r) in the order they are tried: the ring above first,
#: then the rest of a 5 x 7 x 7 box by distance, same layer first on ties
_NEIGHBOURS = np.array(_RING + sorted(
    ((dz, da, dr) for dz in range(-2, 3) for da in range(-3, 4) for dr in range(-3, 4)
     if (dz, da, dr) != (0, 0, 0) and (dz, da, dr) not in _RING),
    key=lambda o: (o[0] ** 2 + o[1] ** 2 + o[2] ** 2, abs(o[0]), abs(o[2]), o)))
_NEAR = 26  # the ring and the nearest cells after it


@functools.lru_cache(maxsize=8)
def _neighbour_table(shape: tuple[int, int, int]) -> np.ndarray:
    """(voxels, K) flat index of every cell's neighbours in search order; -1 outside the grid
    (alpha wraps around; an offset that wraps onto a cell already listed, or onto the cell
    itself, is -1 too)."""
    layers, n_alpha, n_r = shape
    z, a, r = (g.reshape(-1, 1) for g in np.unravel_index(np.arange(layers * n_alpha * n_r), shape))
    z2, a2, r2 = z + _NEIGHBOURS[:, 0], (a + _NEIGHBOURS[:, 1]) % n_alpha, r + _NEIGHBOURS[:, 2]
    inside = (z2 >= 0) & (z2 < layers) & (r2 >= 0) & (r2 < n_r)
    table = np.where(inside, (z2 * n_alpha + a2) * n_r + r2, -1).astype(np.int32)
    order = np.argsort(table, axis=1, kind="stable")  # a cell reached twice keeps its first offset
    srt = np.take_along_axis(table, order, 1)
    again = np.zeros_like(srt, dtype=bool)
    again[:, 1:] = srt[:, 1:] == srt[:, :-1]
    again |= srt == np.arange(len(table))[:, None]  # wrapped onto the cell itself
    np.put_along_axis(table, order, np.where(again, -1, srt), 1)
    table.setflags(write=False)
    return table


def _first_by_energy(keys: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Boolean mask of the entries with the highest energy among those sharing a key."""
    return _rank_by_energy(keys, energy) == 0


def _rank_by_energy(keys: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """0 for the brightest entry of each key, 1 for the next, ..."""
    order = np.lexsort((-energy, keys))
    k = keys[order]
    start = np.ones(len(k), dtype=bool)
    start[1:] = k[1:] != k[:-1]
    group_start = np.maximum.accumulate(np.where(start, np.arange(len(k)), 0))
    rank = np.empty(len(k), dtype=np.int64)
    rank[order] = np.arange(len(k)) - group_start
    return rank


def resolve_collisions(energy: np.ndarray, bins: np.ndarray, mask: np.ndarray, shape: tuple[int, int, int],
                       rounds: int = 5, chunk: int = 20_000) -> np.ndarray:
    """Move hits that share a cell to free cells nearby (the brightest hit of a cell stays).

    Vectorised over all showers and hits (numpy). The brightest hit of every cell keeps
    it; the others, brightest first, look for free cells among the neighbour offsets
    ``_NEIGHBOURS`` (alpha +-1, r +-1, the diagonals in (alpha, r), layer +-1, then a
    5 x 7 x 7 box by distance; alpha wraps around): the k-th brightest of the hits
    displaced from one cell takes the k-th free neighbour, and when hits from different
    cells claim the same free cell the brightest gets it and the others try again in the
    next round. Hits still without a cell after ``rounds`` rounds (or when no neighbour is
    free) take the nearest free cell of their shower one at a time, brightest first, all
    showers at once (squared distance in bin units, alpha circular). A hit stays,
    and merges with the occupant when binned, only when its shower has no free cell.
    Energies are not touched, so the binned energy is conserved. Returns the new bins.
    """
    layers, n_alpha, n_r = shape
    voxels = layers * n_alpha * n_r
    out = np.array(bins, dtype=np.int64, copy=True)
    hb, hj = np.nonzero(mask)
    if len(hb) == 0:
        return out
    e = np.asarray(energy, dtype=np.float64)[hb, hj]
    pos = out[hb, hj]  # (H, 3) current (layer, alpha, r) of every hit
    cell = hb * voxels + (pos[:, 0] * n_alpha + pos[:, 1]) * n_r + pos[:, 2]
    rank = _rank_by_energy(cell, e)
    occupied = np.zeros(len(mask) * voxels, dtype=bool)
    occupied[cell[rank == 0]] = True
    pending = np.nonzero(rank > 0)[0]

    def settle(p: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Give each claimed cell to its brightest claimant; returns who got one."""
        won = _first_by_energy(target, e[p])
        w, t = p[won], target[won]
        rest = t - hb[w] * voxels
        pos[w, 0], rest = np.divmod(rest, n_alpha * n_r)
        pos[w, 1], pos[w, 2] = np.divmod(rest, n_r)
        occupied[t] = True
        return won

    table = _neighbour_table(tuple(shape))
    for step in range(rounds):
        if len(pending) == 0:
            break
        width = _NEAR if step < 2 else table.shape[1]  # the nearest cells first: cheaper rounds
        left = []
        for lo in range(0, len(pending), chunk):
            p = pending[lo:lo + chunk]
            here = (pos[p, 0] * n_alpha + pos[p, 1]) * n_r + pos[p, 2]
            nb = table[here, :width]
            cand = hb[p, None] * voxels + nb
            free = (nb >= 0) & ~occupied[cand]
            # the k-th brightest of the hits waiting in one cell takes that cell's k-th free neighbour
            k = _rank_by_energy(hb[p] * voxels + here, e[p])
            pick = free & (np.cumsum(free, 1, dtype=np.int32) == (k + 1)[:, None])
            has = pick.any(1)
            won = np.zeros(len(p), dtype=bool)
            if has.any():
                won[has] = settle(p[has], cand[has, np.argmax(pick[has], 1)])
            left.append(p[~won])
        new = np.concatenate(left)
        if len(new) == len(pending) and width == table.shape[1]:
            break
        pending = new

    if len(pending):  # the rest, brightest first: the nearest free cell anywhere in the shower,
        # one hit per shower at a time (showers do not compete, so all showers go at once)
        occ = occupied.reshape(len(mask), voxels)
        grid = np.unravel_index(np.arange(voxels), shape)
        axes = [np.arange(k) for k in shape]
        sq = [(ax[:, None] - ax[None, :]) ** 2 for ax in axes]
        da = np.abs(axes[1][:, None] - axes[1][None, :])
        sq[1] = np.minimum(da, n_alpha - da) ** 2
        slot = _rank_by_energy(hb[pending], e[pending])
        order = np.argsort(slot, kind="stable")
        bounds = np.flatnonzero(np.diff(slot[order])) + 1
        for p in np.split(pending[order], bounds):
            shower = hb[p]
            dist = sq[0][pos[p, 0]][:, grid[0]] + sq[1][pos[p, 1]][:, grid[1]] + sq[2][pos[p, 2]][:, grid[2]]
            dist[occ[shower]] = np.iinfo(dist.dtype).max
            best = np.argmin(dist, 1)
            ok = ~occ[shower, best]
            p, best = p[ok], best[ok]
            pos[p, 0], rest = np.divmod(best, n_alpha * n_r)
            pos[p, 1], pos[p, 2] = np.divmod(rest, n_r)
            occ[shower[ok], best] = True
    out[hb, hj] = pos
    return out
