"""Walker's alias method (Vose's construction) for discrete distributions (seed 003).

The event models draw the object-count vector of an event (n_j, n_b, n_e-, n_e+, n_mu-,
n_mu+, n_gamma) from its empirical distribution in the training data. After an O(n)
table construction, each draw costs O(1): pick a column uniformly, keep it with
probability ``prob[column]``, otherwise take ``alias[column]`` (Walker 1977; Vose,
IEEE TSE 17 (1991) 972). The tables reproduce the training frequencies exactly.

Written by hand: numpy's ``Generator.choice`` draws by inverse CDF with a binary search
(O(log n) per draw), and no maintained Python package provides the alias tables as a
serialisable object.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepgen.errors import InvalidDataError


class AliasSampler:
    """Samples the rows of ``values`` with probabilities ``weights``."""

    def __init__(self, values: np.ndarray, weights: np.ndarray):
        values = np.asarray(values)
        p = np.asarray(weights, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if len(values) == 0 or len(values) != len(p):
            raise InvalidDataError("the alias sampler needs as many weights as values, at least one")
        if (p < 0).any() or not np.isfinite(p).all() or p.sum() <= 0:
            raise InvalidDataError("alias sampler weights must be finite, non-negative and not all zero")
        self.values = values
        self.p = p / p.sum()
        self.prob, self.alias = self._tables(self.p)

    @staticmethod
    def _tables(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(p)
        scaled = p * n
        prob = np.ones(n)
        alias = np.arange(n)
        small = [i for i in range(n) if scaled[i] < 1.0]
        large = [i for i in range(n) if scaled[i] >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            prob[s], alias[s] = scaled[s], g
            scaled[g] = scaled[g] + scaled[s] - 1.0
            (small if scaled[g] < 1.0 else large).append(g)
        # what is left has probability 1 up to rounding
        return prob, alias

    @classmethod
    def fit(cls, rows: np.ndarray) -> "AliasSampler":
        """The empirical distribution of the rows (e.g. (N, 7) count vectors)."""
        rows = np.asarray(rows)
        if len(rows) == 0:
            raise InvalidDataError("cannot fit the alias sampler on an empty sample")
        values, counts = np.unique(rows.reshape(len(rows), -1), axis=0, return_counts=True)
        return cls(values, counts)

    def probabilities(self) -> np.ndarray:
        """The distribution the tables encode (equals ``p`` up to rounding)."""
        n = len(self.prob)
        out = self.prob / n
        np.add.at(out, self.alias, (1.0 - self.prob) / n)
        return out

    def sample_indices(self, num: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        column = rng.integers(0, len(self.prob), num)
        keep = rng.random(num) < self.prob[column]
        return np.where(keep, column, self.alias[column])

    def sample(self, num: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """(num, D) rows drawn from the distribution."""
        return self.values[self.sample_indices(num, rng)]

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values.tolist(), "weights": self.p.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "AliasSampler":
        return cls(np.asarray(state["values"]), np.asarray(state["weights"]))
