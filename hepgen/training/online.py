"""OnlineFlow (seed 001 ch. 9): a normalising flow trained in one pass over a data stream.

Incoming points fill a buffer of ``buffer`` points; the flow then iterates ``iterations``
times over that buffer in mini-batches while the next buffer fills, and the buffer is
discarded. Stochastic weight averaging (``torch.optim.swa_utils.AveragedModel``, updated
after every buffer but the first ``swa_start``) keeps what early buffers taught. For
uncertainties an ensemble of flows is trained on the same stream, each point carrying a
Poisson(1) weight drawn independently per flow (the online form of the bootstrap).

The flow is ``zuko``'s MAF: ``blocks`` MADE transforms with two hidden layers of
``hidden`` nodes; 1-D data are padded with ``pad`` standard-normal dimensions (MAFs are
ill-defined in one dimension) and log-transformed (the sharp edge at 0), as in the seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel


class OnlineFlow:
    """One flow of the ensemble (see the module docstring).

    Args:
        features: dimensions of the data (1 for the bump hunt).
        pad: Gaussian noise dimensions appended (seed: 3, to make 4).
        blocks, hidden: MADE transforms and their hidden width (seed: 5, 32).
        lr: Adam learning rate (seed: 1e-5).
        batch, iterations: mini-batch size and passes over each buffer (seed: 250, 100).
        swa_start: buffers before the weight average starts.
        log: log-transform the data.
        seed: initialisation, noise padding and bootstrap weights.
    """

    def __init__(self, features: int = 1, pad: int = 3, blocks: int = 5, hidden: int = 32, lr: float = 1e-5,
                 batch: int = 250, iterations: int = 100, swa_start: int = 2, log: bool = True, seed: int = 0):
        import zuko

        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.features, self.pad, self.log = features, pad, log
        self.flow = zuko.flows.MAF(features + pad, transforms=blocks, hidden_features=[hidden, hidden])
        self.opt = torch.optim.Adam(self.flow.parameters(), lr=lr)
        self.swa = AveragedModel(self.flow)
        self.batch, self.iterations, self.swa_start = batch, iterations, swa_start
        self.buffers = 0
        self.gen = torch.Generator().manual_seed(seed + 1)

    def _encode(self, x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x, np.float64).reshape(len(x), self.features)
        if self.log:
            x = np.log(np.maximum(x, 1e-12))
        noise = self.rng.standard_normal((len(x), self.pad))
        return torch.as_tensor(np.concatenate([x, noise], 1), dtype=torch.float32)

    def train_buffer(self, x: np.ndarray) -> float:
        """Iterate over one buffer of the stream; returns the last weighted NLL."""
        y = self._encode(x)
        w = torch.as_tensor(self.rng.poisson(1.0, len(y)), dtype=torch.float32)  # online bootstrap
        loss = torch.zeros(())
        for _ in range(self.iterations):
            perm = torch.randperm(len(y), generator=self.gen)
            for lo in range(0, len(y), self.batch):
                idx = perm[lo:lo + self.batch]
                wi = w[idx]
                if wi.sum() == 0:
                    continue
                loss = -(self.flow().log_prob(y[idx]) * wi).sum() / wi.sum()
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
        self.buffers += 1
        if self.buffers > self.swa_start:
            self.swa.update_parameters(self.flow)
        return float(loss)

    def network(self):
        return self.swa.module if self.buffers > self.swa_start else self.flow

    @torch.no_grad()
    def sample(self, num: int, seed: int = 0) -> np.ndarray:
        """``num`` points of the data variable(s) (noise dimensions dropped)."""
        torch.manual_seed(seed)
        y = self.network()().sample((num,))[:, : self.features].double().numpy()
        x = np.exp(y) if self.log else y
        return x[:, 0] if self.features == 1 else x


def train_online_ensemble(stream: np.ndarray, members: int = 20, buffer: int = 10_000, progress: bool = True,
                          seed: int = 0, **flow_kwargs) -> list[OnlineFlow]:
    """An ensemble of ``members`` OnlineFlows trained buffer by buffer on ``stream``."""
    from tqdm.auto import tqdm

    flows = [OnlineFlow(seed=seed + 1000 * k, **flow_kwargs) for k in range(members)]
    starts = range(0, len(stream), buffer)
    for lo in tqdm(starts, desc=f"OnlineFlow x {members}", unit="buffer", disable=not progress):
        for f in flows:
            f.train_buffer(stream[lo:lo + buffer])
    return flows
