"""Checkpoint selection for the jet models on a combined score, with its learning curve.

Selecting on one metric picks bad checkpoints: W1M alone on 10k jets has a truth floor
(real vs real) of ~0.9e-3, so its epoch-to-epoch noise is as large as the differences
being selected on, and an epoch with a lucky W1M can be worse in every other metric.
Here every ``every`` epochs the sampling network generates ``num_jets`` jets **with the
sampler the model ships with** and is scored on

    score = geometric mean over m in (W1M, W1P, W1EFP, FD) of  m(gen, ref) / m(floor, ref)

where ``ref`` and ``floor`` are two disjoint sets of training jets, so each metric counts
in units of its own truth floor (measured once per run and kept in the checkpoint).
The W1s are plain 1-D Wasserstein distances on the whole sets (W1P and W1EFP as the
mean of the per-feature ratios); FD is the Frechet distance of the 36 EFPs (d <= 4) at
this sample size, without jetnet's 1/N extrapolation -- biased, but the same bias for
every epoch and the floor. A score of 1 means "as close as another real sample". The
geometric mean counts halving any one metric the same, so a metric far from its floor
(FD early in training, by factors of 10^4) cannot hide the others.

The history (every metric, the score, the learning rate) is part of the callback state,
so it survives ``--resume``; it is written to ``selection.csv`` and plotted as
``learning_curve.png`` in the run folder after every selection.
"""

from __future__ import annotations

import copy
import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from lightning import Callback
from scipy.stats import wasserstein_distance

from hepgen.metrics.efp import FPD_SET, W1EFP_SET, EFPCalculator
from hepgen.metrics.jets import frechet_distance, relative_mass

METRICS = ("w1m", "w1p", "w1efp", "fd")


class SelectionFeatures:
    """What the selection metrics need of a set of jets (N, P, 3 or 4), computed once."""

    _calc = None

    def __init__(self, particle_features: np.ndarray):
        if SelectionFeatures._calc is None:
            SelectionFeatures._calc = EFPCalculator(*FPD_SET)
        calc = SelectionFeatures._calc
        pf = np.asarray(particle_features, dtype=np.float32)
        mask = pf[..., 3] > 0.5 if pf.shape[-1] == 4 else np.linalg.norm(pf[..., :3], axis=-1) > 0
        self.mass = relative_mass(pf[..., :3])
        self.particles = pf[..., :3][mask]
        self.efps = calc(pf[..., :3])
        self.w1efp_columns = calc.columns_of(EFPCalculator(*W1EFP_SET))


def selection_metrics(ref: SelectionFeatures, other: SelectionFeatures) -> dict[str, float]:
    """W1M, W1P (mean over the 3 features), W1EFP (mean over the 5 EFPs) and FD of
    ``other`` against ``ref``; per-feature parts under ``w1p_0``..., ``w1efp_0``...."""
    out = {"w1m": float(wasserstein_distance(ref.mass, other.mass))}
    for i in range(3):
        out[f"w1p_{i}"] = float(wasserstein_distance(ref.particles[:, i], other.particles[:, i]))
    for k, col in enumerate(ref.w1efp_columns):
        out[f"w1efp_{k}"] = float(wasserstein_distance(ref.efps[:, col], other.efps[:, col]))
    scale = np.abs(ref.efps).max(0)
    scale[scale == 0] = 1
    a, b = ref.efps / scale, other.efps / scale
    out["fd"] = float(frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))
    return out


def combined_score(metrics: dict[str, float], floor: dict[str, float]) -> dict[str, float]:
    """Each metric as a multiple of its floor, and ``score``, their geometric mean."""
    def ratio(key):
        return metrics[key] / max(floor[key], 1e-30)

    r = {"w1m": ratio("w1m"),
         "w1p": float(np.mean([ratio(f"w1p_{i}") for i in range(3)])),
         "w1efp": float(np.mean([ratio(k) for k in metrics if k.startswith("w1efp_")])),
         "fd": ratio("fd")}
    r["score"] = float(np.exp(np.mean([np.log(max(r[m], 1e-30)) for m in METRICS])))
    return r


class JetSelection(Callback):
    """Every ``every`` epochs: sample, score against the truth floor, keep the best weights.

    Args:
        surrogate: the run's :class:`~hepgen.models.assemblies.jets.JetSurrogate` (its
            network is replaced by a copy of the module's sampling network to score it).
        reference: training jets (N, P, 4) to compare with.
        floor: other training jets (M, P, 4), disjoint from ``reference``: the truth floor.
        out: the run folder (weights.pt, selection.yaml, selection.csv, learning_curve.png).
        every: epochs between selections.
        sampler: solver settings of the sampler the model ships with (CFM models).
        batch_size: jets per sampling batch (a few hundred: large batches are memory-bound).
    """

    def __init__(self, surrogate, reference: np.ndarray, floor: np.ndarray, out: Path, every: int = 1,
                 sampler: dict | None = None, batch_size: int = 512):
        self.surrogate = surrogate
        self.reference = reference
        self.floor_jets = floor
        self.out = Path(out)
        self.every = max(1, int(every))
        self.sampler = {k: v for k, v in (sampler or {}).items() if k in ("method", "steps")}
        self.batch_size = int(batch_size)
        self.num_jets = len(reference)
        self._ref = None
        self.floor: dict[str, float] | None = None
        self.best = np.inf
        self.history: list[dict[str, float]] = []
        self.hours_before = 0.0  # training hours of earlier sessions of this run
        self._started = None

    def hours(self) -> float:
        """Wall-clock hours this run has trained, over all its sessions."""
        now = time.monotonic()
        return self.hours_before + (now - (self._started or now)) / 3600

    def on_train_start(self, trainer, pl_module):
        self._started = time.monotonic()

    def _reference(self) -> SelectionFeatures:
        if self._ref is None:
            self._ref = SelectionFeatures(self.reference)
        if self.floor is None:
            self.floor = selection_metrics(self._ref, SelectionFeatures(self.floor_jets))
        return self._ref

    def score(self, network: torch.nn.Module, device=None) -> dict[str, float]:
        """The metrics and combined score of ``network`` (does not touch the global RNG)."""
        ref = self._reference()
        self.surrogate.network = copy.deepcopy(network).eval()
        sample = self.surrogate.sample(self.num_jets, seed=1234, batch_size=self.batch_size, device=device,
                                       method=self.sampler.get("method"), steps=self.sampler.get("steps"))
        metrics = selection_metrics(ref, SelectionFeatures(sample.particle_features))
        return {**{k: metrics[k] for k in ("w1m", "fd")}, **{f"{k}_ratio": v for k, v in
                                                              combined_score(metrics, self.floor).items()}}

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.every or not trainer.is_global_zero:
            return
        with torch.inference_mode(False), torch.no_grad():
            result = self.score(pl_module.sampling_network(), pl_module.device)
        lrs = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups[:1]]
        row = {"epoch": int(trainer.current_epoch), "step": int(trainer.global_step), "hours": self.hours(), "lr": lrs[0] if lrs else float("nan"),
               **result}
        self.history.append(row)
        pl_module.log("selection_score", result["score_ratio"], rank_zero_only=True)
        if result["score_ratio"] < self.best:
            self.best = result["score_ratio"]
            torch.save(self.surrogate.network.state_dict(), self.out / "weights.pt")
            (self.out / "selection.yaml").write_text(yaml.safe_dump(
                {"epoch": int(trainer.current_epoch), "num_jets": self.num_jets, "sampler": self.sampler,
                 "floor": self.floor, **row}, sort_keys=False))
        self.write_history()

    def write_history(self) -> None:
        if not self.history:
            return
        keys = list(dict.fromkeys(k for row in self.history for k in row))  # rows of older versions lack some
        with open(self.out / "selection.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys, restval="")
            writer.writeheader()
            writer.writerows(self.history)
        from hepgen.report.plots import learning_curve

        learning_curve(self.history, self.out / "learning_curve.png")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "floor": self.floor, "history": self.history, "hours": self.hours()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best", np.inf)
        self.floor = state_dict.get("floor")
        self.history = list(state_dict.get("history", []))
        self.hours_before = float(state_dict.get("hours", 0.0))
