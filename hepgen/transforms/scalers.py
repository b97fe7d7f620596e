"""Per-feature scalers: standardisation, Box-Cox, and chains of them.

Box-Cox uses :func:`scipy.stats.boxcox` to fit the exponent (maximum likelihood) and
:func:`scipy.special.inv_boxcox` for the inverse.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import special, stats

from hepgen.errors import InvalidDataError
from hepgen.transforms.base import Transform, from_dict, masked_values


class StandardScaler(Transform):
    """(x - mean) / std per feature."""

    name = "standard"

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.std = None if std is None else np.asarray(std, np.float64)

    def fit(self, x, mask=None):
        v = masked_values(x, mask).astype(np.float64)  # float64 state: identical after reload
        if len(v) == 0:
            raise InvalidDataError("cannot fit a scaler on an empty sample")
        self.mean = v.mean(0)
        self.std = np.where(v.std(0) > 0, v.std(0), 1.0)
        return self

    def transform(self, x):
        return ((x - self.mean) / self.std).astype(np.asarray(x).dtype)

    def inverse_transform(self, x):
        return (x * self.std + self.mean).astype(np.asarray(x).dtype)

    def inverse_torch(self, x):
        """Differentiable inverse on a torch tensor (for losses on physical quantities)."""
        return x * x.new_tensor(self.std) + x.new_tensor(self.mean)

    def params(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


class BoxCox(Transform):
    """Box-Cox power transform of selected (positive) feature columns."""

    name = "boxcox"

    def __init__(self, columns: Sequence[int] = (2,), lmbda: Sequence[float] | None = None):
        self.columns = list(columns)
        self.lmbda = None if lmbda is None else list(map(float, lmbda))

    def fit(self, x, mask=None):
        v = masked_values(x, mask)
        self.lmbda = []
        for c in self.columns:
            col = v[:, c].astype(np.float64)
            if np.any(col <= 0):
                raise InvalidDataError(f"Box-Cox needs positive values in feature {c}")
            self.lmbda.append(float(stats.boxcox(col)[1]))
        return self

    def transform(self, x):
        out = np.array(x, copy=True)
        for c, lam in zip(self.columns, self.lmbda):
            out[..., c] = stats.boxcox(np.clip(out[..., c].astype(np.float64), 1e-12, None), lam)
        return out

    def inverse_transform(self, x):
        out = np.array(x, copy=True)
        for c, lam in zip(self.columns, self.lmbda):
            y = out[..., c].astype(np.float64)
            if lam > 0:  # stay inside the image of (0, inf)
                y = np.maximum(y, -1.0 / lam + 1e-12)
            out[..., c] = special.inv_boxcox(y, lam)
        return out

    def inverse_torch(self, x):
        import torch

        cols = []
        for c in range(x.shape[-1]):
            y = x[..., c]
            if c in self.columns:
                lam = self.lmbda[self.columns.index(c)]
                y = torch.exp(y) if lam == 0 else torch.clamp(lam * y + 1, min=1e-12) ** (1 / lam)
            cols.append(y)
        return torch.stack(cols, -1)

    def params(self) -> dict[str, Any]:
        return {"columns": self.columns, "lmbda": self.lmbda}


class Chain(Transform):
    """Transforms applied in order (fitted in order on the transformed data)."""

    name = "chain"

    def __init__(self, steps: Sequence[Transform]):
        self.steps = list(steps)

    @classmethod
    def from_params(cls, state):
        return cls([from_dict(s) for s in state["steps"]])

    def fit(self, x, mask=None):
        for step in self.steps:
            x = step.fit(x, mask).transform(x)
        return self

    def transform(self, x):
        for step in self.steps:
            x = step.transform(x)
        return x

    def inverse_transform(self, x):
        for step in reversed(self.steps):
            x = step.inverse_transform(x)
        return x

    def inverse_torch(self, x):
        for step in reversed(self.steps):
            x = step.inverse_torch(x)
        return x

    def params(self) -> dict[str, Any]:
        return {"steps": [s.to_dict() for s in self.steps]}
