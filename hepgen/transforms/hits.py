"""Preprocessing of hit clouds (seed 004 L690-937): min-max, logit, standardise.

Each feature (eta, phi, E) of the real hits is scaled to (0, 1) by the training
minimum and maximum (widened by ``margin`` so the logit stays finite), mapped by
logit(y) = log(y / (1 - y)) and standardised; the inverse clips to the training range.
Padded hits are left at zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepgen.transforms.base import Transform, masked_values


class HitTransform(Transform):
    name = "hits-minmax-logit"

    def __init__(self, margin: float = 1e-3, lo=None, hi=None, mean=None, std=None, log_energy: bool = False):
        self.margin, self.log_energy = float(margin), bool(log_energy)
        self.lo = None if lo is None else np.asarray(lo, np.float64)
        self.hi = None if hi is None else np.asarray(hi, np.float64)
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.std = None if std is None else np.asarray(std, np.float64)

    def _pre(self, x):
        x = np.asarray(x, np.float64).copy()
        if self.log_energy:  # optional: min-max on log E (the seed: on E; the logit acts like a log near 0)
            x[..., 2] = np.log(np.maximum(x[..., 2], 1e-6))
        return x

    def _logit(self, x):
        y = (x - self.lo) / (self.hi - self.lo)
        y = np.clip(y, 1e-6, 1 - 1e-6)
        return np.log(y) - np.log1p(-y)

    def fit(self, x, mask=None) -> "HitTransform":
        v = masked_values(self._pre(x), mask)
        lo, hi = v.min(0), v.max(0)
        pad = self.margin * (hi - lo)
        self.lo, self.hi = lo - pad, hi + pad
        z = self._logit(v)
        self.mean, self.std = z.mean(0), np.where(z.std(0) > 0, z.std(0), 1.0)
        return self

    def transform(self, x, mask=None):
        z = (self._logit(self._pre(x)) - self.mean) / self.std
        return z if mask is None else z * np.asarray(mask)[..., None]

    def inverse_transform(self, z, mask=None):
        y = 1 / (1 + np.exp(-(np.asarray(z, np.float64) * self.std + self.mean)))
        x = self.lo + y * (self.hi - self.lo)
        # clip to the training range (the fitted range less its margin): the margin would
        # otherwise let sampled energies fall below the producer's threshold, even below 0
        width = (self.hi - self.lo) / (1 + 2 * self.margin)
        x = np.clip(x, self.lo + self.margin * width, self.hi - self.margin * width)
        if self.log_energy:
            x[..., 2] = np.exp(x[..., 2])
        return x if mask is None else x * np.asarray(mask)[..., None]

    def params(self) -> dict[str, Any]:
        as_list = lambda a: None if a is None else np.asarray(a).tolist()  # noqa: E731
        return {"margin": self.margin, "log_energy": self.log_energy, "lo": as_list(self.lo), "hi": as_list(self.hi),
                "mean": as_list(self.mean), "std": as_list(self.std)}
