"""Sampling a continuous condition by its inverse CDF.

:class:`PchipQuantileSampler` (the relative jet mass of NF(c)): the quantile function of
the training values is interpolated with a monotone PCHIP
(:class:`scipy.interpolate.PchipInterpolator`, seed 000 L2047-2050) through up to
``knots`` empirical quantiles; sampling evaluates it at uniform random numbers.

:class:`BinnedQuantileSampler` draws a value given another one (the total energy of a
hit cloud given its number of hits): PCHIP quantile functions in bins of the given
variable, interpolated between the bins at equal quantile level, with a quantile function
of its own for each value that is a point mass (the cloud size at its cap). scipy's
Gaussian KDE has no conditional sampling, and a few hundred stored quantiles are small and
reproduce each bin's distribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator


class PchipQuantileSampler:
    def __init__(self, levels, values):
        self.levels = np.asarray(levels, np.float64)
        self.values = np.asarray(values, np.float64)
        self._q = PchipInterpolator(self.levels, self.values)

    @classmethod
    def fit(cls, x, knots: int = 1000) -> "PchipQuantileSampler":
        x = np.sort(np.asarray(x, np.float64))
        levels = (np.arange(len(x)) + 0.5) / len(x)
        pick = np.unique(np.linspace(0, len(x) - 1, min(knots, len(x))).round().astype(int))
        values, levels = x[pick], levels[pick]
        keep = np.concatenate([[True], np.diff(values) > 0])  # strictly increasing knots
        return cls(levels[keep], values[keep])

    def sample(self, num: int, rng=None) -> np.ndarray:
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        return self._q(rng.uniform(self.levels[0], self.levels[-1], num))

    def at(self, u) -> np.ndarray:
        """The quantile function at uniform numbers ``u`` in [0, 1), mapped onto the fitted levels."""
        return self._q(self.levels[0] + np.asarray(u, np.float64) * (self.levels[-1] - self.levels[0]))

    def to_dict(self) -> dict[str, Any]:
        return {"levels": self.levels.tolist(), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, state) -> "PchipQuantileSampler":
        return cls(**state)


class BinnedQuantileSampler:
    """Values ``x`` drawn given ``given``: empirical PCHIP quantile functions Q_b(u) in
    bins of ``given`` (equal training counts), interpolated in ``given`` between the bins'
    centres (their median ``given``) at the same u, i.e. horizontal template morphing
    (A. L. Read, NIM A 425 (1999) 357), so a trend of x with ``given`` inside a bin is
    followed. Each value in ``atoms`` (a point mass of ``given``, such as a cloud size at
    its cap) keeps its own quantile function and is not interpolated."""

    def __init__(self, centres, samplers, atoms=(), atom_samplers=()):
        self.centres = np.asarray(centres, np.float64)
        self.samplers = list(samplers)
        self.atoms = np.asarray(atoms, np.float64)
        self.atom_samplers = list(atom_samplers)
        if len(self.samplers) != len(self.centres) or len(self.atom_samplers) != len(self.atoms):
            raise ValueError("BinnedQuantileSampler: one quantile function per centre and per atom")
        if not len(self.centres) and not len(self.atoms):
            raise ValueError("BinnedQuantileSampler: no bins")

    @classmethod
    def fit(cls, x, given, bins: int = 10, atoms=(), knots: int = 200) -> "BinnedQuantileSampler":
        """Up to ``bins`` bins of equal counts over the values of ``given`` not in ``atoms``;
        an atom gets its own quantile function when the data hold it."""
        x, given = np.asarray(x, np.float64), np.asarray(given, np.float64)
        if len(x) != len(given) or len(x) < 2:
            raise ValueError("BinnedQuantileSampler.fit needs two equally long arrays of at least 2 values")

        def quantiles(values):
            if len(values) > 1 and np.ptp(values) > 0:
                return PchipQuantileSampler.fit(values, knots)
            return PchipQuantileSampler([0.0, 1.0], [values[0], values[0] + 1e-12])

        atoms = sorted(float(a) for a in atoms if np.any(given == a))
        at_atom = np.isin(given, atoms)
        rest, xr = given[~at_atom], x[~at_atom]
        centres, samplers = [], []
        if len(rest):
            order = np.argsort(rest, kind="stable")
            for part in np.array_split(order, min(bins, len(rest))):
                if len(part):
                    centres.append(float(np.median(rest[part])))
                    samplers.append(quantiles(xr[part]))
        return cls(centres, samplers, atoms, [quantiles(x[given == a]) for a in atoms])

    def sample(self, given, rng=None) -> np.ndarray:
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        given = np.asarray(given, np.float64)
        return self.at(given, rng.random(len(given)))

    def _apply(self, given, fn) -> np.ndarray:
        """``fn(quantile_function, rows)`` per bin (atoms: their own), combined between the two
        bins around each ``given`` with its interpolation weight."""
        given = np.asarray(given, np.float64)
        out = np.empty(len(given))
        atom = np.full(len(given), -1)
        for k, a in enumerate(self.atoms):
            atom[given == a] = k
        for k in np.unique(atom[atom >= 0]):
            idx = np.flatnonzero(atom == k)
            out[idx] = fn(self.atom_samplers[k], idx)
        idx = np.flatnonzero(atom < 0)
        if len(idx) and not len(self.centres):  # only atoms were fitted: the nearest one
            near = np.abs(given[idx, None] - self.atoms[None, :]).argmin(1)
            for k in np.unique(near):
                out[idx[near == k]] = fn(self.atom_samplers[k], idx[near == k])
        elif len(idx):
            g = np.clip(given[idx], self.centres[0], self.centres[-1])
            j = np.clip(np.searchsorted(self.centres, g, side="right") - 1, 0, max(len(self.centres) - 2, 0))
            lo = np.empty(len(idx))
            hi = np.empty(len(idx))
            w = np.zeros(len(idx))
            for b in np.unique(j):
                sel = j == b
                lo[sel] = fn(self.samplers[b], idx[sel])
                if b + 1 < len(self.centres):
                    hi[sel] = fn(self.samplers[b + 1], idx[sel])
                    width = self.centres[b + 1] - self.centres[b]
                    w[sel] = (g[sel] - self.centres[b]) / width if width > 0 else 0.0
                else:
                    hi[sel] = lo[sel]
            out[idx] = (1 - w) * lo + w * hi
        return out

    def at(self, given, u) -> np.ndarray:
        """The conditional quantile function: the value at quantile level ``u`` in [0, 1) of
        each ``given`` (``sample`` is this at uniform random ``u``)."""
        u = np.asarray(u, np.float64)
        return self._apply(given, lambda q, rows: q.at(u[rows]))

    def cdf(self, x, given, tol: float = 1e-9) -> np.ndarray:
        """The conditional CDF level in [0, 1] of each value ``x`` given ``given``: the inverse
        of :meth:`at` (``cdf(at(given, u), given) = u``), found by bisection, since the
        quantile function morphed between two bins is monotone in u; values outside the fitted
        range get 0 or 1."""
        x = np.asarray(x, np.float64)
        given = np.asarray(given, np.float64)
        lo, hi = np.zeros(len(x)), np.ones(len(x))
        for _ in range(int(np.ceil(np.log2(1 / tol)))):
            mid = 0.5 * (lo + hi)
            below = self.at(given, mid) < x
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def to_dict(self) -> dict[str, Any]:
        return {"centres": self.centres.tolist(), "samplers": [s.to_dict() for s in self.samplers],
                "atoms": self.atoms.tolist(), "atom_samplers": [s.to_dict() for s in self.atom_samplers]}

    @classmethod
    def from_dict(cls, state) -> "BinnedQuantileSampler":
        return cls(state["centres"], [PchipQuantileSampler.from_dict(s) for s in state["samplers"]],
                   state.get("atoms", ()), [PchipQuantileSampler.from_dict(s) for s in state.get("atom_samplers", ())])
