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

import math
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


# --------------------------------------------------------------------------------------
# The normalised autoencoder (NAE) of seed 002 L1409-1462 on jet images.
# --------------------------------------------------------------------------------------

NAE_ARCHITECTURE = {"image_size": [40, 40], "latent_dim": 3, "channels": 8, "hidden": 32, "spectral_norm": True}


def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer


class NormalizedAutoencoder(nn.Module):
    """Convolutional autoencoder of jet images whose reconstruction error is an energy.

    The NAE (Yoon, Noh & Park, arXiv:2105.05735; for LHC jets Dillon et al.,
    arXiv:2206.14225, seed 002 L1409-1462) reads the autoencoder's per-image MSE as the
    energy of a Boltzmann density p(x) = exp(-E(x)) / Z (eq. 5.6, 3.29):

        E(x) = 1/N_pixels sum_pixels |x - f_D(f_E(x))|^2.

    Architecture (L1439; Table B.9's numbers did not survive the seed's text, so widths and
    strides are ours): the encoder has 5 convolutions (3 x 3, 8 filters, the last with one),
    two of them with stride 2 (40 -> 20 -> 10), PReLU between them, the flattened 10 x 10
    map into two dense layers (``hidden``, then ``latent_dim`` = 3), linear output, then
    projected onto the unit sphere S^{D_z - 1} (L1431, Appendix B); the decoder mirrors it
    with two dense layers (``hidden``, 8 x 10 x 10) and 4 convolutions (two transposed with
    stride 2: 10 -> 20 -> 40), PReLU, a sigmoid output (images lie in [0, 1]). Every layer
    has spectral normalisation (Appendix B) unless ``spectral_norm`` is off.

    Args:
        image_size: (rows, columns) of the images; both divisible by 4 (seed: 40 x 40).
        latent_dim: D_z (seed: 3).
        channels: filters per convolution (seed: 8).
        hidden: width of the dense layer between the feature map and the latent space.
        spectral_norm: spectral normalisation of every layer.
    """

    def __init__(self, image_size=(40, 40), latent_dim: int = 3, channels: int = 8, hidden: int = 32,
                 spectral_norm: bool = True, input_scale: float | None = None):
        super().__init__()
        rows, cols = int(image_size[0]), int(image_size[1])
        if rows % 4 or cols % 4:
            raise ValueError(f"image size {rows} x {cols}: both must be divisible by 4")
        self.image_size = (rows, cols)
        self.latent_dim = int(latent_dim)
        # the encoder reads x * input_scale: a jet image sums to 1, so its pixels are ~1/(rows
        # cols) and an unscaled input leaves the first layers' outputs to their biases (the AE
        # then collapses onto the mean image); the default scales the mean pixel to 1
        self.input_scale = float(rows * cols if input_scale is None else input_scale)
        self.config = {"image_size": [rows, cols], "latent_dim": self.latent_dim, "channels": int(channels),
                       "hidden": int(hidden), "spectral_norm": bool(spectral_norm), "input_scale": self.input_scale}
        c, sn = int(channels), bool(spectral_norm)
        self._map = (rows // 4, cols // 4)
        flat = self._map[0] * self._map[1]
        self.encoder = nn.Sequential(
            _sn(nn.Conv2d(1, c, 3, padding=1), sn), nn.PReLU(),
            _sn(nn.Conv2d(c, c, 3, stride=2, padding=1), sn), nn.PReLU(),
            _sn(nn.Conv2d(c, c, 3, padding=1), sn), nn.PReLU(),
            _sn(nn.Conv2d(c, c, 3, stride=2, padding=1), sn), nn.PReLU(),
            _sn(nn.Conv2d(c, 1, 3, padding=1), sn), nn.PReLU(),
            nn.Flatten(),
            _sn(nn.Linear(flat, hidden), sn), nn.PReLU(),
            _sn(nn.Linear(hidden, latent_dim), sn),
        )
        self.decoder_dense = nn.Sequential(
            _sn(nn.Linear(latent_dim, hidden), sn), nn.PReLU(),
            _sn(nn.Linear(hidden, c * flat), sn), nn.PReLU(),
        )
        self.decoder_conv = nn.Sequential(
            _sn(nn.ConvTranspose2d(c, c, 4, stride=2, padding=1), sn), nn.PReLU(),
            _sn(nn.Conv2d(c, c, 3, padding=1), sn), nn.PReLU(),
            _sn(nn.ConvTranspose2d(c, c, 4, stride=2, padding=1), sn), nn.PReLU(),
            _sn(nn.Conv2d(c, 1, 3, padding=1), sn),
        )
        self._channels = c
        # start the sigmoid output at the mean pixel of a normalised image (1 / pixels),
        # not at 0.5: the first iterations then fit the shapes, not the overall level
        last = self.decoder_conv[-1]
        bias = last.parametrizations.bias.original if hasattr(last, "parametrizations") and hasattr(
            last.parametrizations, "bias") else last.bias
        with torch.no_grad():
            bias.fill_(-math.log(rows * cols - 1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, H, W) -> latent points on the unit sphere (B, D_z)."""
        z = self.encoder((x * self.input_scale).unsqueeze(1))
        return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent points (B, D_z) -> images (B, H, W) in [0, 1]."""
        h = self.decoder_dense(z).view(len(z), self._channels, *self._map)
        return torch.sigmoid(self.decoder_conv(h)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction f_D(f_E(x)) of images ``x`` (B, H, W)."""
        return self.decode(self.encode(x))

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """E(x): the per-image mean squared reconstruction error (B,) (eq. 5.6)."""
        return (x - self(x)).flatten(1).pow(2).mean(1)

    def latent_energy(self, z: torch.Tensor) -> torch.Tensor:
        """H(z) = E(f_D(z)) (eq. 5.7) for points ``z`` (B, D_z) (projected onto the sphere)."""
        z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self.energy(self.decode(z))

    def weight_norm(self) -> torch.Tensor:
        """Sum of the squared weights of all layers (the L2 regulariser of Appendix B)."""
        return sum(p.pow(2).sum() for n, p in self.named_parameters() if "weight" in n)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
