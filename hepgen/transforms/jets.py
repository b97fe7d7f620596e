"""Preprocessing of JetNet particle features (seed 000 L2027-2034).

* ``"standard"``: standard scaling of etarel, phirel, ptrel (GAN and MDMA models);
* ``"boxcox"``: Box-Cox on ptrel, then standard scaling of all three (flows).

Fitted on the real particles of the training set only; padded particles stay zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepgen.errors import OptionError
from hepgen.transforms.base import Transform, from_dict
from hepgen.transforms.scalers import BoxCox, Chain, StandardScaler

KINDS = ("standard", "boxcox")


class JetPreprocessor(Transform):
    """(N, P, 4) particle features <-> (N, P, 3) scaled features and an (N, P) mask."""

    name = "jet-preprocessor"

    def __init__(self, kind: str = "standard", scaler: Transform | dict | None = None):
        if kind not in KINDS:
            raise OptionError(f"unknown preprocessing {kind!r}; choose from {', '.join(KINDS)}")
        self.kind = kind
        if isinstance(scaler, dict):
            scaler = from_dict(scaler)
        self.scaler = scaler or (
            Chain([BoxCox([2]), StandardScaler()]) if kind == "boxcox" else Chain([StandardScaler()])
        )

    def fit(self, particle_features, mask=None):
        pf = np.asarray(particle_features)
        self.scaler.fit(pf[..., :3], pf[..., 3] > 0.5)
        return self

    def transform(self, particle_features):
        pf = np.asarray(particle_features)
        mask = pf[..., 3] > 0.5
        out = np.zeros(pf.shape[:-1] + (3,), np.float32)
        out[mask] = self.scaler.transform(pf[..., :3][mask]).astype(np.float32)
        return out

    def inverse_transform(self, x, mask=None):
        """Scaled (N, P, 3) + mask (N, P) -> particle features (N, P, 4), padded zeros."""
        x = np.asarray(x)
        mask = np.ones(x.shape[:-1], bool) if mask is None else np.asarray(mask, bool)
        out = np.empty(x.shape[:-1] + (4,), np.float32)
        # the whole array at once (boolean indexing of the particles took most of the time);
        # padded slots may map to anything, even NaN (Box-Cox), and are zeroed after
        with np.errstate(all="ignore"):
            phys = self.scaler.inverse_transform(x.astype(np.float32, copy=False))
        out[..., :3] = np.where(mask[..., None], phys, 0.0)
        out[..., 3] = mask
        return out

    # Flows on the flattened cloud see every slot: padded particles are transformed as
    # (0, 0, PAD_PTREL) and recognised after sampling by ptrel < PAD_THRESHOLD (seed 000
    # L2131-2133).
    PAD_PTREL = 1e-6
    PAD_THRESHOLD = 1e-4

    def transform_all(self, particle_features):
        """(N, P, 4) -> (N, P, 3) with padded slots transformed as (0, 0, PAD_PTREL)."""
        pf = np.asarray(particle_features)
        x = pf[..., :3].astype(np.float64).copy()
        x[..., 2] = np.where(pf[..., 3] > 0.5, x[..., 2], self.PAD_PTREL)
        return self.scaler.transform(x).astype(np.float32)

    def inverse_transform_all(self, x):
        """(N, P, 3) from :meth:`transform_all` -> particle features, mask = ptrel >= threshold."""
        raw = self.scaler.inverse_transform(np.asarray(x, np.float64))
        mask = raw[..., 2] >= self.PAD_THRESHOLD
        out = np.zeros(raw.shape[:-1] + (4,), np.float32)
        out[..., :3] = np.where(mask[..., None], raw, 0.0)
        out[..., 3] = mask
        return out

    def params(self) -> dict[str, Any]:
        return {"kind": self.kind, "scaler": self.scaler.to_dict()}
