"""Anomaly-detection models. CWoLa (seed 001 L2490-2510): a classifier that tells the
signal region from the sidebands.

Classification without labels (Metodiev, Nachman & Thaler, arXiv:1708.02949): two mixed
samples that differ only in their signal fraction - events in a signal region (SR) of
m_jj and in its sidebands (SB) - are separated by an ordinary classifier; the optimal
classifier for SR vs SB is a monotonic function of the signal vs background likelihood
ratio, so its output ranks events by how signal-like they are. The seed's classifier
(L2498-2500, after arXiv:2109.00546): three fully connected layers of 64 nodes, ReLU, a
sigmoid output trained with cross entropy; the score is
R_CWoLa(x) = p(SR | x) / p(SB | x) (eq. 9.3.2).

A :class:`CWoLaEnsemble` is what a run folder holds: per fold the checkpoints of the
lowest validation losses (seed: 10), all with the input standardisation of their
training data; it scores any dijet sample by the mean probability over its members.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from hepgen.errors import InputFileError

PROBABILITY_CLIP = 1e-7


class CWoLaClassifier(nn.Module):
    """SR-vs-SB classifier: standardisation, an MLP, one logit.

    Args:
        num_features: input features (the dijet features other than m_jj: 4).
        hidden: hidden layer widths (seed: three of 64).
        mean, std: the standardisation of the inputs (buffers saved with the weights).
    """

    def __init__(self, num_features: int, hidden: Sequence[int] = (64, 64, 64),
                 mean: np.ndarray | None = None, std: np.ndarray | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        width = num_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("mean", torch.as_tensor(np.zeros(num_features) if mean is None else mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.ones(num_features) if std is None else std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logit of p(SR | x) for inputs ``x`` (B, F) in raw units."""
        return self.net((x - self.mean) / self.std).squeeze(-1)


def likelihood_ratio(probability: np.ndarray) -> np.ndarray:
    """R = p / (1 - p) (eq. 9.3.2), with p clipped away from 0 and 1."""
    p = np.clip(np.asarray(probability, dtype=np.float64), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return p / (1 - p)


class CWoLaEnsemble:
    """The classifiers of a CWoLa run and how to score with them.

    Args:
        members: per fold, a list of classifier state dicts (the kept checkpoints).
        num_features: inputs of each classifier.
        hidden: hidden layer widths.
        feature_columns: the dijet feature names the classifiers read, in order.
        meta: the run's settings (signal region, sidebands, ...), saved with it.
    """

    def __init__(self, members: list[list[dict]], num_features: int, hidden: Sequence[int],
                 feature_columns: Sequence[str], meta: dict | None = None):
        self.members = members
        self.num_features = num_features
        self.hidden = tuple(hidden)
        self.feature_columns = tuple(feature_columns)
        self.meta = dict(meta or {})

    def _model(self, state: dict) -> CWoLaClassifier:
        model = CWoLaClassifier(self.num_features, self.hidden)
        model.load_state_dict(state)
        return model.eval()

    @torch.no_grad()
    def probability(self, x: np.ndarray, folds: Sequence[int] | None = None, batch: int = 65536) -> np.ndarray:
        """Mean p(SR | x) over the members of ``folds`` (default: all folds).

        Args:
            x: inputs (N, F), columns as :attr:`feature_columns`.
            folds: which folds' members to average.
            batch: events per forward pass.
        """
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        folds = range(len(self.members)) if folds is None else folds
        total = torch.zeros(len(x), dtype=torch.float64)
        count = 0
        for k in folds:
            for state in self.members[k]:
                model = self._model(state)
                for i in range(0, len(x), batch):
                    total[i:i + batch] += torch.sigmoid(model(x[i:i + batch])).double()
                count += 1
        return (total / max(count, 1)).numpy()

    def save(self, path: str | Path) -> Path:
        """Write the ensemble to ``path`` (a torch file)."""
        path = Path(path)
        torch.save({"members": self.members, "num_features": self.num_features, "hidden": list(self.hidden),
                    "feature_columns": list(self.feature_columns), "meta": self.meta}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CWoLaEnsemble":
        """Read an ensemble written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path}: no such file (not a CWoLa run?)")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise InputFileError(f"{path}: not a CWoLa model file ({type(exc).__name__})") from None
        return cls(d["members"], d["num_features"], d["hidden"], d["feature_columns"], d.get("meta"))
