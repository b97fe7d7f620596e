"""Sampling a continuous condition (the relative jet mass of NF(c)) by its inverse CDF.

The quantile function of the training values is interpolated with a monotone PCHIP
(:class:`scipy.interpolate.PchipInterpolator`, seed 000 L2047-2050) through up to
``knots`` empirical quantiles; sampling evaluates it at uniform random numbers.
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

    def to_dict(self) -> dict[str, Any]:
        return {"levels": self.levels.tolist(), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, state) -> "PchipQuantileSampler":
        return cls(**state)
