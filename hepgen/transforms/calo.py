"""Shower preprocessing shared by the calorimeter models (CaloINN, CaloDREAM; seed 002 ch. 4).

A shower with voxel energies E_v (MeV) and incident energy E_inc becomes

* energy variables ``u`` (L values for L read-out layers):
  u_0 = sum_v E_v / (f E_inc) and u_i = E_{i-1} / sum_{j >= i-1} E_j for i = 1..L-1,
  where E_i is the energy of layer i (seed 002 eq. 4.2, f = 2.85 for DS2). The inverse is
  exact: E_tot = f E_inc u_0, E_0 = u_1 E_tot, E_1 = u_2 (E_tot - E_0), ..., and the last
  layer receives what is left, so the layer energies always sum to E_tot;
* shape variables ``x``: each voxel divided by its layer energy (each layer sums to 1),
  then a regularised logit y -> log(y' / (1 - y')), y' = alpha + (1 - 2 alpha) y
  (alpha = 1e-6), then standardised per voxel with statistics of the training set;
* the condition c = (log E_inc - log E_min) / (log E_max - log E_min) in [0, 1].

:meth:`CaloShowerTransform.inverse_transform` undoes every step and post-processes the
network output as in CaloDREAM: voxels below the recorded minimum become 0, and each
layer is rescaled so that it carries exactly the energy the energy variables assign to it.

The class follows the scikit-learn transformer pattern (fit / transform /
inverse_transform) and saves as JSON with the run, like :mod:`hepgen.transforms.scalers`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hepgen.data.geometry import CaloGeometry, load_geometry
from hepgen.errors import InvalidDataError
from hepgen.transforms.base import Transform


def layer_energies(showers: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """(N, L) energy of each read-out layer from (N, voxels) showers."""
    return np.add.reduceat(showers, boundaries[:-1], axis=1)


def energies_to_u(layers: np.ndarray, e_inc: np.ndarray, f: float) -> np.ndarray:
    """(N, L) layer energies and (N,) incident energies -> (N, L) energy variables u."""
    layers = np.asarray(layers, np.float64)
    total = layers.sum(1)
    remaining = np.cumsum(layers[:, ::-1], axis=1)[:, ::-1]  # sum_{j >= i} E_j
    ratios = np.divide(layers[:, :-1], remaining[:, :-1], out=np.zeros_like(layers[:, :-1]),
                       where=remaining[:, :-1] > 0)
    return np.concatenate([(total / (f * np.asarray(e_inc, np.float64).reshape(-1)))[:, None], ratios], axis=1)


def u_to_energies(u: np.ndarray, e_inc: np.ndarray, f: float) -> np.ndarray:
    """Exact inverse of :func:`energies_to_u` (u clipped to its physical range first)."""
    u = np.asarray(u, np.float64)
    total = np.clip(u[:, 0], 0, None) * f * np.asarray(e_inc, np.float64).reshape(-1)
    ratios = np.clip(u[:, 1:], 0.0, 1.0)
    out = np.empty((len(u), u.shape[1]))
    remaining = total.copy()
    for i in range(u.shape[1] - 1):
        out[:, i] = ratios[:, i] * remaining
        remaining = remaining - out[:, i]
    out[:, -1] = np.clip(remaining, 0, None)
    return out


def logit(y: np.ndarray, alpha: float) -> np.ndarray:
    y = alpha + (1 - 2 * alpha) * y
    return np.log(y) - np.log1p(-y)


def expit(z: np.ndarray, alpha: float) -> np.ndarray:
    y = 1.0 / (1.0 + np.exp(-z))
    return (y - alpha) / (1 - 2 * alpha)


class CaloShowerTransform(Transform):
    """Showers <-> (energy variables u, normalised shape variables x, condition c).

    Parameters
    ----------
    geometry: name of the geometry (for the layer boundaries)
    f: scale of u_0 (seed 002: 2.85 for DS2)
    alpha: logit regularisation
    threshold: voxels below this energy (MeV) are set to 0 after the inverse
    e_range: (E_min, E_max) of the incident energies in MeV for the condition
    """

    name = "calo-shower"

    def __init__(self, geometry: str = "ds2", f: float = 2.85, alpha: float = 1e-6, threshold: float = 15.15e-3,
                 e_range: Sequence[float] = (1e3, 1e6), mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, u_mean: Sequence[float] | None = None,
                 u_std: Sequence[float] | None = None):
        self.geometry_name = geometry
        self.f, self.alpha, self.threshold = float(f), float(alpha), float(threshold)
        self.e_range = (float(e_range[0]), float(e_range[1]))
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.std = None if std is None else np.asarray(std, np.float64)
        self.u_mean = None if u_mean is None else np.asarray(u_mean, np.float64)
        self.u_std = None if u_std is None else np.asarray(u_std, np.float64)

    @property
    def geometry(self) -> CaloGeometry:
        return load_geometry(self.geometry_name)

    # -- pieces ------------------------------------------------------------------------
    def condition(self, e_inc: np.ndarray) -> np.ndarray:
        lo, hi = np.log(self.e_range[0]), np.log(self.e_range[1])
        return ((np.log(np.asarray(e_inc, np.float64).reshape(-1)) - lo) / (hi - lo))[:, None]

    def energy_of_condition(self, c: np.ndarray) -> np.ndarray:
        lo, hi = np.log(self.e_range[0]), np.log(self.e_range[1])
        return np.exp(np.asarray(c, np.float64).reshape(-1) * (hi - lo) + lo)

    def _normalised(self, showers: np.ndarray, layers: np.ndarray) -> np.ndarray:
        per_voxel = np.repeat(layers, np.diff(self.geometry.layer_boundaries), axis=1)
        return np.divide(showers, per_voxel, out=np.zeros_like(per_voxel), where=per_voxel > 0)

    def fit(self, showers, e_inc=None, mask=None) -> "CaloShowerTransform":
        showers = np.asarray(showers, np.float64)
        if len(showers) == 0:
            raise InvalidDataError("cannot fit the shower transform on an empty sample")
        layers = layer_energies(showers, self.geometry.layer_boundaries)
        z = logit(self._normalised(showers, layers), self.alpha)
        self.mean = z.mean(0)
        self.std = np.where(z.std(0) > 1e-6, z.std(0), 1.0)  # constant voxels (never hit) stay 0
        if e_inc is not None:  # statistics of the logit energy variables for the energy networks
            u = energies_to_u(layers, e_inc, self.f)
            lu = logit(np.clip(u, 0, 1), self.alpha)
            self.u_mean, self.u_std = lu.mean(0), np.where(lu.std(0) > 1e-6, lu.std(0), 1.0)
        return self

    def fractions(self, showers: np.ndarray) -> np.ndarray:
        """(N, voxels) showers -> each voxel's share of its layer energy, in [0, 1] (each
        hit layer sums to 1, empty layers are 0): the normalised shower before the logit,
        the Bernoulli target of the VAE+INN."""
        showers = np.asarray(showers, np.float64)
        return self._normalised(showers, layer_energies(showers, self.geometry.layer_boundaries))

    def x_from_fractions(self, y: np.ndarray) -> np.ndarray:
        """Layer fractions y in [0, 1] -> the standardised logits x of :meth:`transform`
        (exact inverse of the first step of :meth:`inverse_transform`)."""
        return (logit(np.clip(np.asarray(y, np.float64), 0, 1), self.alpha) - self.mean) / self.std

    def u_to_latent(self, u: np.ndarray) -> np.ndarray:
        """Energy variables -> standardised logits (what the energy networks model)."""
        if self.u_mean is None:
            raise InvalidDataError("the shower transform was fitted without incident energies")
        return (logit(np.clip(u, 0, 1), self.alpha) - self.u_mean) / self.u_std

    def u_from_latent(self, z: np.ndarray) -> np.ndarray:
        return np.clip(expit(np.asarray(z, np.float64) * self.u_std + self.u_mean, self.alpha), 0, 1)

    def transform(self, showers, e_inc=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, voxels) showers and (N,) or (N, 1) E_inc -> (u (N, L), x (N, voxels), c (N, 1))."""
        showers = np.asarray(showers, np.float64)
        if e_inc is None:
            raise InvalidDataError("the shower transform needs the incident energies")
        layers = layer_energies(showers, self.geometry.layer_boundaries)
        u = energies_to_u(layers, e_inc, self.f)
        x = (logit(self._normalised(showers, layers), self.alpha) - self.mean) / self.std
        return u, x, self.condition(e_inc)

    def inverse_transform(self, u, x=None, c=None) -> tuple[np.ndarray, np.ndarray]:
        """(u, x, c) -> (showers (N, voxels) MeV, E_inc (N,) MeV) with post-processing."""
        if x is None or c is None:
            raise InvalidDataError("inverse_transform needs u, x and c")
        e_inc = self.energy_of_condition(c)
        layers = u_to_energies(u, e_inc, self.f)
        y = np.clip(expit(np.asarray(x, np.float64) * self.std + self.mean, self.alpha), 0, None)
        b = self.geometry.layer_boundaries
        sums = layer_energies(y, b)
        norm = np.divide(layers, sums, out=np.zeros_like(layers), where=sums > 0)
        showers = y * np.repeat(norm, np.diff(b), axis=1)
        showers[showers < self.threshold] = 0.0
        return showers, e_inc

    def params(self) -> dict[str, Any]:
        return {"geometry": self.geometry_name, "f": self.f, "alpha": self.alpha, "threshold": self.threshold,
                "e_range": list(self.e_range), "mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist(),
                "u_mean": None if self.u_mean is None else self.u_mean.tolist(),
                "u_std": None if self.u_std is None else self.u_std.tolist()}
