"""Per-shower response calibration of a shower generator by conditional quantile mapping.

The idea: a generator can get the average response E_vis / E_inc right and still spread it
too widely from shower to shower (the CPU-size photon BIB-AE: sigma90 of the response 2-3x
the reference's below 40 GeV, because its latent collapsed and the decoder's noise moves
whole showers). A per-cell Post Processor cannot narrow that, as no cell knows its shower's
total. So the response is mapped after generation, shower by shower: a shower at level
u = F_model(r | E_inc) of the model's own response distribution at its energy is scaled to
the reference's response at the same level, r' = F_ref^-1(u | E_inc). Ranks are kept, so a
shower that was bright for its energy stays bright, and whatever correlates with the
response (depth, number of hits) keeps its order; only the scale of each shower changes.

This is the one-dimensional form of what two-stage calorimeter surrogates do with a
separate energy model (CaloFlow's flow I, Krause and Shih, arXiv:2106.05285; CaloDREAM's
energy network, arXiv:2405.09629): the shower's energy comes from a model of the energy
alone, the shape from the shape model. It is not in seed 001; a model that uses it says so
on its card (``sampler.calibrate: response``).

Both conditional distributions are :class:`~hepgen.models.conditions.BinnedQuantileSampler`
fits of log r in bins of E_inc (the model's from showers it generated at the training
energies, the reference's from the training showers), kept in ``calibration.yaml``. The
response counts cells above the grid's hit cut (as the evaluation does); scaling moves a few
cells across the cut, so the scale is refined once for that (kept only where it comes closer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from hepgen.errors import InvalidDataError
from hepgen.models.conditions import BinnedQuantileSampler


def visible_response(showers: np.ndarray, e_inc: np.ndarray, hit_cut: float) -> np.ndarray:
    """E_vis / E_inc per shower: the sum of the cells above ``hit_cut`` (MeV) over the incident
    energy. showers: (N, cells), e_inc: (N,) or (N, 1)."""
    showers = np.asarray(showers)
    e = np.asarray(e_inc, np.float64).reshape(len(showers))
    vis = np.where(showers > hit_cut, showers, 0).sum(1, dtype=np.float64)
    return vis / e


class ResponseCalibration:
    """Maps each generated shower's response onto the reference's at the same conditional
    quantile (module docstring).

    Args:
        model: log-response quantiles of generated showers in bins of E_inc.
        target: log-response quantiles of the reference (training) showers in bins of E_inc.
        hit_cut: the cell threshold of the response (MeV).
    """

    FILE = "calibration.yaml"

    def __init__(self, model: BinnedQuantileSampler, target: BinnedQuantileSampler, hit_cut: float):
        self.model, self.target, self.hit_cut = model, target, float(hit_cut)

    @classmethod
    def fit(cls, gen_showers, gen_e, ref_showers, ref_e, hit_cut: float, bins: int = 10,
            knots: int = 200) -> "ResponseCalibration":
        """From generated showers at energies ``gen_e`` and reference showers at ``ref_e``
        (MeV); ``bins`` equal-count bins of E_inc per sample."""
        fits = []
        for showers, e in ((gen_showers, gen_e), (ref_showers, ref_e)):
            r = visible_response(showers, e, hit_cut)
            ok = r > 0
            if ok.sum() < 2 * bins:
                raise InvalidDataError(f"response calibration: {ok.sum()} showers with visible energy, "
                                       f"need at least {2 * bins}")
            fits.append(BinnedQuantileSampler.fit(np.log(r[ok]), np.asarray(e, np.float64).ravel()[ok],
                                                  bins=bins, knots=knots))
        return cls(fits[0], fits[1], hit_cut)

    def target_response(self, response: np.ndarray, e_inc: np.ndarray) -> np.ndarray:
        """The reference's response at each shower's model quantile level."""
        e = np.asarray(e_inc, np.float64).ravel()
        log_r = np.log(np.maximum(response, 1e-30))
        return np.exp(self.target.at(e, self.model.cdf(log_r, e)))

    def apply(self, showers: np.ndarray, e_inc: np.ndarray) -> np.ndarray:
        """``showers`` (N, cells) scaled shower by shower onto the reference's response (a new
        array; showers without visible energy are left as they are)."""
        showers = np.asarray(showers)
        e = np.asarray(e_inc, np.float64).ravel()
        r = visible_response(showers, e, self.hit_cut)
        want = self.target_response(r, e)
        scale = np.where(r > 0, want / np.where(r > 0, r, 1.0), 1.0)
        out = showers * scale[:, None].astype(showers.dtype)
        r2 = visible_response(out, e, self.hit_cut)  # cells moved across the cut: refine once,
        scale2 = np.where(r2 > 0, want / np.where(r2 > 0, r2, 1.0), 1.0)  # where that comes closer
        refined = out * scale2[:, None].astype(showers.dtype)
        r3 = visible_response(refined, e, self.hit_cut)
        better = np.abs(r3 - want) < np.abs(r2 - want)
        return np.where(better[:, None], refined, out)

    def to_dict(self) -> dict:
        return {"hit_cut": self.hit_cut, "model": self.model.to_dict(), "target": self.target.to_dict()}

    @classmethod
    def from_dict(cls, state: dict) -> "ResponseCalibration":
        return cls(BinnedQuantileSampler.from_dict(state["model"]), BinnedQuantileSampler.from_dict(state["target"]),
                   state["hit_cut"])

    def save(self, folder) -> Path:
        path = Path(folder) / self.FILE
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def load(cls, folder) -> "ResponseCalibration | None":
        """The calibration of a model folder, None if it has none."""
        path = Path(folder) / cls.FILE
        return cls.from_dict(yaml.safe_load(path.read_text())) if path.is_file() else None
