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

The same class serves the multi-dimensional stream of the dijet study (seed 001 sec. 9.3,
:mod:`hepgen.studies.online_cwola`): ``features`` columns, ``log`` naming which of them
are log-transformed (``True``: all), ``standardize`` shifting and scaling each column by
the mean and standard deviation of the *first buffer* (known when training starts, so
the preprocessing stays online), and ``bootstrap=False`` for the single flow trained
with unit weights (no ensemble) of that study.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel


class _StreamCoordinates:
    """Data <-> flow coordinates: the log of the columns in ``self.log``, then the shift and
    scale (identity unless fitted on the first buffer)."""

    features: int
    log: tuple
    shift: np.ndarray
    scale: np.ndarray

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Data -> flow coordinates (before the noise padding)."""
        x = np.array(x, np.float64).reshape(len(x), self.features)
        if self.log:
            cols = list(self.log)
            x[:, cols] = np.log(np.maximum(x[:, cols], 1e-12))
        return (x - self.shift) / self.scale

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        x = y * self.scale + self.shift
        if self.log:
            cols = list(self.log)
            x[:, cols] = np.exp(x[:, cols])
        return x


def _log_columns(log, features: int) -> tuple[int, ...]:
    if log is True:
        return tuple(range(features))
    if log is False or log is None:
        return ()
    return tuple(int(i) for i in log)


class OnlineFlow(_StreamCoordinates):
    """One flow trained online (see the module docstring); the ensemble of the bump hunt is
    :class:`OnlineFlowEnsemble`.

    Args:
        features: dimensions of the data (1 for the bump hunt).
        pad: Gaussian noise dimensions appended (seed: 3, to make 4).
        blocks, hidden: MADE transforms and their hidden width (seed: 5, 32).
        lr: Adam learning rate (seed: 1e-5).
        batch, iterations: mini-batch size and passes over each buffer (seed: 250, 100).
        swa_start: buffers before the weight average starts.
        log: log-transform the data: ``True`` (every column), ``False`` or the indices of
            the columns to transform (they must be positive).
        standardize: shift and scale each (transformed) column by the mean and standard
            deviation of the first buffer.
        bootstrap: Poisson(1) weight per point (the ensemble's bootstrap); ``False``: 1.
        seed: initialisation, noise padding and bootstrap weights.
    """

    def __init__(self, features: int = 1, pad: int = 3, blocks: int = 5, hidden: int = 32, lr: float = 1e-5,
                 batch: int = 250, iterations: int = 100, swa_start: int = 2, log: bool | tuple[int, ...] = True,
                 standardize: bool = False, bootstrap: bool = True, seed: int = 0):
        import zuko

        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.features, self.pad = features, pad
        self.log = _log_columns(log, features)
        self.standardize, self.bootstrap = standardize, bootstrap
        self.shift, self.scale = np.zeros(features), np.ones(features)
        self.flow = zuko.flows.MAF(features + pad, transforms=blocks, hidden_features=[hidden, hidden])
        self.opt = torch.optim.Adam(self.flow.parameters(), lr=lr)
        self.swa = AveragedModel(self.flow)
        self.batch, self.iterations, self.swa_start = batch, iterations, swa_start
        self.buffers = 0
        self.gen = torch.Generator().manual_seed(seed + 1)

    def _encode(self, x: np.ndarray) -> torch.Tensor:
        if self.standardize and self.buffers == 0 and len(x) > 1:  # the first buffer fixes the scales
            self.shift, self.scale = np.zeros(self.features), np.ones(self.features)
            y = self._forward(x)
            std = y.std(0)
            self.shift, self.scale = y.mean(0), np.where(std > 0, std, 1.0)
        x = self._forward(x)
        noise = self.rng.standard_normal((len(x), self.pad))
        return torch.as_tensor(np.concatenate([x, noise], 1), dtype=torch.float32)

    def train_buffer(self, x: np.ndarray) -> float:
        """Iterate over one buffer of the stream; returns the last weighted NLL."""
        y = self._encode(x)
        if self.bootstrap:  # online bootstrap
            w = torch.as_tensor(self.rng.poisson(1.0, len(y)), dtype=torch.float32)
        else:
            w = torch.ones(len(y))
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
        return float(loss.detach())

    def network(self):
        return self.swa.module if self.buffers > self.swa_start else self.flow

    @torch.no_grad()
    def sample(self, num: int, seed: int = 0, batch: int = 100_000) -> np.ndarray:
        """``num`` points of the data variable(s) (noise dimensions dropped): shape (num,) for
        one feature, else (num, features)."""
        torch.manual_seed(seed)
        flow = self.network()()
        y = np.concatenate([flow.sample((min(batch, num - lo),))[:, : self.features].double().numpy()
                            for lo in range(0, num, batch)] or [np.zeros((0, self.features))])
        x = self._inverse(y)
        return x[:, 0] if self.features == 1 else x


class OnlineFlowEnsemble(_StreamCoordinates):
    """The bump hunt's ensemble: ``members`` OnlineFlows with Poisson(1) bootstrap weights,
    trained together as one :class:`hepgen.models.blocks.ensemble.EnsembleMAF` (one batched
    step for all members instead of one step per flow: the seed's 20 flows x 2M steps
    become 2M steps). Each member has its own initialisation, noise padding, bootstrap
    weights and mini-batch order; SWA averages each member's weights (the average is
    elementwise). ``state_dict`` / ``load_state_dict`` hold everything a resumed run needs.

    Args: those of :class:`OnlineFlow` (``bootstrap`` always on), plus ``members``.
    """

    def __init__(self, members: int = 20, features: int = 1, pad: int = 3, blocks: int = 5, hidden: int = 32,
                 lr: float = 1e-5, batch: int = 250, iterations: int = 100, swa_start: int = 2,
                 log: bool | tuple[int, ...] = True, seed: int = 0):
        from hepgen.models.blocks.ensemble import EnsembleMAF
        from hepgen.training.optim import adam

        torch.manual_seed(seed)
        self.members, self.features, self.pad = members, features, pad
        self.log = _log_columns(log, features)
        self.shift, self.scale = np.zeros(features), np.ones(features)
        self.maf = EnsembleMAF(members, features + pad, blocks=blocks, hidden=hidden)
        self.opt = adam(self.maf.parameters(), lr)
        self.swa = AveragedModel(self.maf)
        self.batch, self.iterations, self.swa_start = batch, iterations, swa_start
        self.buffers = 0
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed + 1)

    def train_buffer(self, x: np.ndarray) -> float:
        """Iterate over one buffer of the stream; returns the members' mean weighted NLL of the last batch."""
        y = np.broadcast_to(self._forward(x), (self.members, len(x), self.features))
        noise = self.rng.standard_normal((self.members, len(x), self.pad))
        y = torch.as_tensor(np.concatenate([y, noise], -1), dtype=torch.float32)
        w = torch.as_tensor(self.rng.poisson(1.0, (self.members, len(x))), dtype=torch.float32)
        d = y.shape[-1]
        loss = torch.zeros(())
        for _ in range(self.iterations):
            perm = torch.rand(self.members, len(x), generator=self.gen).argsort(1)
            for lo in range(0, len(x), self.batch):
                idx = perm[:, lo:lo + self.batch]
                wi = w.gather(1, idx)
                nll = -(self.maf.log_prob(y.gather(1, idx[..., None].expand(-1, -1, d))) * wi).sum(1)
                loss = (nll / wi.sum(1).clamp(min=1.0)).sum()
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
        self.buffers += 1
        if self.buffers > self.swa_start:
            self.swa.update_parameters(self.maf)
        return float(loss.detach()) / self.members

    def network(self):
        return self.swa.module if self.buffers > self.swa_start else self.maf

    @torch.no_grad()
    def sample(self, num: int, seed: int = 0, batch: int = 100_000) -> list[np.ndarray]:
        """``num`` points of the data variable(s) from each member (noise dimensions dropped):
        a list of (num,) arrays for one feature, else of (num, features)."""
        g = torch.Generator().manual_seed(seed)
        net = self.network()
        parts = [net.sample(min(batch, num - lo), g)[..., : self.features].double().numpy()
                 for lo in range(0, num, batch)]
        y = np.concatenate(parts, 1) if parts else np.zeros((self.members, 0, self.features))
        out = [self._inverse(m) for m in y]
        return [m[:, 0] for m in out] if self.features == 1 else out

    def state_dict(self) -> dict:
        return {"maf": self.maf.state_dict(), "opt": self.opt.state_dict(), "swa": self.swa.state_dict(),
                "buffers": self.buffers, "rng": self.rng.bit_generator.state, "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.maf.load_state_dict(state["maf"])
        self.opt.load_state_dict(state["opt"])
        self.swa.load_state_dict(state["swa"])
        self.buffers = int(state["buffers"])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])


def train_online_ensemble(stream: np.ndarray, members: int = 20, buffer: int = 10_000, progress: bool = True,
                          seed: int = 0, checkpoint=None, **flow_kwargs) -> OnlineFlowEnsemble:
    """An :class:`OnlineFlowEnsemble` of ``members`` flows trained buffer by buffer on ``stream``.

    ``checkpoint``: a :class:`hepgen.training.resume.LoopCheckpoint`; the ensemble is saved
    between buffers every few minutes, and a killed run continues at the next buffer exactly.
    """
    from tqdm.auto import tqdm

    from hepgen.training.resume import LoopCheckpoint

    ens = OnlineFlowEnsemble(members=members, seed=seed, **flow_kwargs)
    ck = checkpoint or LoopCheckpoint(None)
    starts = list(range(0, len(stream), buffer))
    first = ck.restore(ensemble=ens)
    for k in tqdm(range(first, len(starts)), initial=first, total=len(starts), desc=f"OnlineFlow x {members}",
                  unit="buffer", disable=not progress):
        ck.before(k)
        ens.train_buffer(stream[starts[k]:starts[k] + buffer])
    ck.clear()
    return ens


def train_online(stream: np.ndarray, buffer: int = 10_000, progress: bool = True, seed: int = 0,
                 callback=None, **flow_kwargs) -> OnlineFlow:
    """One OnlineFlow (unit weights unless ``bootstrap=True`` is passed) trained buffer by
    buffer in a single pass over ``stream`` (N, features); ``callback(flow, loss)`` after
    each buffer."""
    from tqdm.auto import tqdm

    stream = np.asarray(stream)
    features = 1 if stream.ndim == 1 else stream.shape[1]
    flow_kwargs.setdefault("bootstrap", False)
    flow = OnlineFlow(features=features, seed=seed, **flow_kwargs)
    for lo in tqdm(range(0, len(stream), buffer), desc="OnlineFlow", unit="buffer", disable=not progress):
        loss = flow.train_buffer(stream[lo:lo + buffer])
        if callback is not None:
            callback(flow, loss)
    return flow
