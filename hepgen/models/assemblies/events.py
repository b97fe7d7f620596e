"""Whole-event models (seed 003): two thesis baselines and a conditional set model.

* ``event-maf-types`` (Experiment I): one MAF with MADE conditioners per object type on
  the single-object variables (log10 E, log10 pT, eta, phi), one for (log10 MET,
  METphi); the count vector of an event comes from the alias sampler
  (:class:`hepgen.models.alias.AliasSampler`) and the objects of an event are drawn
  independently, then pT-ordered. Thesis: 10 MAF layers, MADE 3x100 (objects) / 3x50
  (MET), Adam 1e-4.
* ``event-rqs`` (Experiment III): one autoregressive rational-quadratic-spline flow on
  the fixed 66-dim vector (:class:`hepgen.transforms.events.EventVectorTransform`).
  Thesis: 10 transforms, 3x512.
* ``event-cflow``: what the thesis names as the way forward. The count vector still
  comes from the alias sampler (exact on the training distribution); given it, all
  objects and the MET are generated *jointly* by conditional flow matching on the token
  set of :class:`hepgen.transforms.events.EventTokenTransform`. The velocity network is
  a stack of gated mean-field (MDMA) blocks (:mod:`hepgen.models.blocks.mean_field`): every
  token (features + one-hot type + one-hot rank inside its type) talks to one event-wide
  field conditioned on time and the count vector, so the momentum balance and the
  total energy of the event are learned, not left to chance.

Every sampler applies the validity check of the dataset (the Dark Machines object and
event selection, :func:`hepgen.simulate.events.selection_mask`) and redraws rejected
events; :attr:`EventSurrogate.rejected_fraction` reports how many were rejected.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from hepgen.data.darkmachines import OBJECT_TYPES, EventSample, concatenate
from hepgen.device import default_device
from hepgen.errors import InputFileError, InvalidDataError, OptionError
from hepgen.models.alias import AliasSampler
from hepgen.config import merge_config
from hepgen.models.blocks.cfm import SOLVERS, integrate
from hepgen.models.blocks.embeddings import CosineTimeEmbedding
from hepgen.transforms.events import (
    MET_TOKEN,
    NUM_TYPES,
    EventTokenTransform,
    EventVectorTransform,
    ObjectScaler,
    build_sample,
    from_thesis,
    wrap_phi,
)

EVENT_MODELS = ("event-maf-types", "event-rqs", "event-cflow")

#: defaults: the thesis values (seed 003 ch. 7, SPEC S5) where it gives them
THESIS: dict[str, dict[str, Any]] = {
    "event-maf-types": {
        "flow": {"transforms": 10, "hidden": 100, "layers": 3},
        "met_flow": {"transforms": 10, "hidden": 50, "layers": 3},
        "training": {"lr": 1e-4, "batch_size": 1024, "epochs": 100},
        "sampler": {},
    },
    "event-rqs": {
        "flow": {"transforms": 10, "hidden": 512, "layers": 3, "bins": 8},
        "training": {"lr": 1e-4, "batch_size": 512, "epochs": 100},
        "sampler": {},
    },
    "event-cflow": {
        "network": {"l_dim": 64, "hidden": 128, "heads": 4, "num_blocks": 6, "time_dim": 16, "max_rank": 8},
        "training": {"lr": 1e-3, "batch_size": 256, "epochs": 200, "ema_decay": 0.999, "max_objects": 20},
        "sampler": {"method": "midpoint", "steps": 8},
    },
}

#: how many times the sampler redraws rejected events before giving up
MAX_ROUNDS = 50
#: event-cflow solves the ODE for groups of this many events of similar size
GROUP_EVENTS = 1000


def event_config(model: str, override: dict | None = None) -> dict:
    if model not in EVENT_MODELS:
        raise OptionError(f"unknown event model {model!r}; choose from {', '.join(EVENT_MODELS)}")
    return merge_config({"model": model, **copy.deepcopy(THESIS[model])}, override)


def maf(features: int, transforms: int, hidden: int, layers: int) -> nn.Module:
    """MAF with MADE conditioners and reversing permutations (``zuko``)."""
    import zuko

    return zuko.flows.MAF(features, 0, transforms=transforms, hidden_features=[hidden] * layers)


def autoregressive_rqs(features: int, transforms: int, hidden: int, layers: int, bins: int) -> nn.Module:
    """A fully autoregressive RQS flow (``zuko`` NSF without coupling passes)."""
    import zuko

    return zuko.flows.NSF(features, 0, bins=bins, transforms=transforms, hidden_features=[hidden] * layers)


def torch_token_layout(counts: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of :func:`hepgen.transforms.events.token_layout` for the MET + objects tokens.

    Returns (B, 1 + length) token types (MET_TOKEN first) and ranks (0 for MET)."""
    counts = counts.long()
    ends = counts.cumsum(1)
    pos = torch.arange(length, device=counts.device)
    types = (pos[None, :, None] >= ends[:, None, :]).sum(-1).clamp(max=NUM_TYPES - 1)
    starts = ends - counts
    ranks = pos[None, :] - starts.gather(1, types)
    met = torch.full((len(counts), 1), MET_TOKEN, device=counts.device, dtype=types.dtype)
    return torch.cat([met, types], 1), torch.cat([torch.zeros_like(met), ranks.clamp(min=0)], 1)


class EventVelocity(nn.Module):
    """v(t, tokens | count vector): gated mean-field blocks over the MET + object tokens."""

    def __init__(self, l_dim: int = 64, hidden: int = 128, heads: int = 4, num_blocks: int = 6, time_dim: int = 16,
                 max_rank: int = 8, max_tokens: int = 21):
        super().__init__()
        from hepgen.models.blocks.mean_field import MeanFieldBody

        self.max_rank = max_rank
        self.time = CosineTimeEmbedding(time_dim)
        cond_dim = time_dim + NUM_TYPES
        self.body = MeanFieldBody(4 + NUM_TYPES + 1 + max_rank + cond_dim, l_dim, hidden, heads, num_blocks,
                                  cond_dim=cond_dim, max_particles=max_tokens, norm=True, gated=True)
        self.beta = nn.Linear(l_dim, 4)

    def forward(self, t, x, mask, counts):
        B, T, _ = x.shape
        types, ranks = torch_token_layout(counts, T - 1)
        c = torch.cat([self.time(t), torch.log1p(counts.float())], -1)
        inp = torch.cat([x, nn.functional.one_hot(types, NUM_TYPES + 1).float(),
                         nn.functional.one_hot(ranks.clamp(max=self.max_rank - 1), self.max_rank).float(),
                         c[:, None].expand(B, T, -1)], -1)
        h, _ = self.body(inp, mask, c)
        return self.beta(h) * mask[..., None]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class EventSurrogate:
    """A trained event model: config + fitted transform + count sampler + networks."""

    def __init__(self, cfg: dict, transform, counts: AliasSampler, networks: dict[str, nn.Module],
                 solvers: dict | None = None):
        self.cfg, self.transform, self.counts, self.networks = cfg, transform, counts, networks
        #: bespoke few-step solvers of event-cflow by steps (``hepgen student RUN``)
        self.solvers = solvers or {}
        self.rejected_fraction = float("nan")

    @staticmethod
    def build(cfg: dict) -> dict[str, nn.Module]:
        model = cfg["model"]
        if model == "event-maf-types":
            nets = {"met": maf(2, **cfg["met_flow"])}
            for kind in cfg["object_types"]:
                nets[kind] = maf(4, **cfg["flow"])
            return nets
        if model == "event-rqs":
            return {"flow": autoregressive_rqs(cfg["dim"], **cfg["flow"])}
        if model == "event-cflow":
            return {"velocity": EventVelocity(**cfg["network"], max_tokens=cfg["training"]["max_objects"] + 1)}
        raise OptionError(f"unknown event model {model!r}; choose from {', '.join(EVENT_MODELS)}")

    @classmethod
    def make_transform(cls, cfg: dict):
        if cfg["model"] == "event-cflow":
            return EventTokenTransform(cfg["training"]["max_objects"])
        return EventVectorTransform() if cfg["model"] == "event-rqs" else ObjectScaler()

    @property
    def num_parameters(self) -> int:
        return sum(count_parameters(n) for n in self.networks.values())

    @property
    def process(self) -> str:
        return str(self.cfg.get("process", "generated"))

    # -- persistence -----------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        self.transform.save(folder / "transform.json")
        (folder / "counts.json").write_text(json.dumps(self.counts.to_dict()))
        torch.save({k: n.state_dict() for k, n in self.networks.items()}, folder / "weights.pt")
        if self.solvers:
            torch.save({k: s.state_dict() for k, s in self.solvers.items()}, folder / "solvers.pt")

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> "EventSurrogate":
        from hepgen.transforms.base import load as load_transform

        folder = Path(folder)
        for name in ("config.yaml", "transform.json", "counts.json", "weights.pt"):
            if not (folder / name).is_file():
                raise InputFileError(f"{folder}: not a trained event run (missing {name})")
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        nets = cls.build(cfg)
        state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        dev = torch.device(device or default_device())
        for k, n in nets.items():
            n.load_state_dict({p: v.float() for p, v in state[k].items()})
            n.to(dev).eval()
        counts = AliasSampler.from_dict(json.loads((folder / "counts.json").read_text()))
        solvers = {}
        if (folder / "solvers.pt").is_file():
            from hepgen.models.blocks.bespoke import BespokeSolver

            for k, st in torch.load(folder / "solvers.pt", map_location="cpu", weights_only=True).items():
                solvers[int(k)] = BespokeSolver(int(k))
                solvers[int(k)].load_state_dict(st)
                solvers[int(k)].to(dev).eval()
        return cls(cfg, load_transform(folder / "transform.json"), counts, nets, solvers)

    # -- sampling --------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(next(iter(self.networks.values())).parameters()).device

    @torch.no_grad()
    def sample(self, num: int, seed: int = 0, batch_size: int = 10_000, method: str | None = None,
               steps: int | None = None, valid_only: bool = True, progress: bool = True) -> EventSample:
        """``num`` events; with ``valid_only`` events failing the selection are redrawn."""
        from tqdm.auto import tqdm

        from hepgen.simulate.events import selection_mask

        if num <= 0:
            raise OptionError(f"number of events must be positive, got {num}")
        sampler = self.cfg.get("sampler", {})
        method = method or sampler.get("method", "midpoint")
        steps = int(steps or sampler.get("steps", 8))
        if self.cfg["model"] == "event-cflow" and method not in (*SOLVERS, "bespoke"):
            raise OptionError(f"unknown ODE solver {method!r}; choose from {', '.join((*SOLVERS, 'bespoke'))}")
        if method == "bespoke" and steps not in self.solvers:
            have = ", ".join(map(str, sorted(self.solvers))) or "none"
            raise OptionError(f"no bespoke solver with {steps} steps in this model (trained: {have})")
        rng = np.random.default_rng([int(seed), 11])
        kept: list[EventSample] = []
        have = drawn = rejected = 0
        bar = tqdm(total=num, desc=f"sampling {self.cfg['model']}", unit="event", disable=not progress)
        for round_ in range(MAX_ROUNDS):
            want = num - have
            if want <= 0:
                break
            acceptance = (drawn - rejected) / drawn if drawn else 1.0
            todo = int(min(max(want / max(acceptance, 0.05) * 1.05, want), 20 * num)) + 1
            for start in range(0, todo, batch_size):
                n = min(batch_size, todo - start)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(int(rng.integers(2**62)))
                    batch = self._sample_batch(n, rng, method, steps)
                ok = selection_mask(batch) if valid_only else np.ones(len(batch), bool)
                drawn += len(batch)
                rejected += int((~ok).sum())
                batch = batch[ok][: num - have]
                kept.append(batch)
                have += len(batch)
                bar.update(len(batch))
                if have >= num:
                    break
        bar.close()
        self.rejected_fraction = rejected / drawn if drawn else 0.0
        if have < num:
            raise InvalidDataError(f"only {have} of {num} sampled events passed the selection after {MAX_ROUNDS} "
                                   f"rounds (rejected fraction {self.rejected_fraction:.3f})")
        out = concatenate(kept)
        out.event_id = np.arange(num).astype(str).astype(object)
        return out

    def velocity(self, t, x, cond):
        """The CFM velocity as a bespoke solver calls it: cond = (mask, counts)."""
        mask, counts = cond
        return self.networks["velocity"](t, x, mask, counts) * mask[..., None]

    def solve(self, x0, mask, counts, method: str, steps: int):
        """Noise (B, T, 4) -> event tokens with a torchdiffeq solver or a bespoke one."""
        if method == "bespoke":
            return self.solvers[steps](self.velocity, x0, (mask, counts))
        return integrate(self.networks["velocity"], x0, mask, counts, method=method, steps=steps)

    @torch.no_grad()
    def _sample_batch(self, n: int, rng: np.random.Generator, method: str, steps: int) -> EventSample:
        counts = self.counts.sample(n, rng)
        model = self.cfg["model"]
        dev = self.device
        if model == "event-cflow":
            # events sorted by size and solved in groups trimmed to their own largest size,
            # so little compute goes to padding; noise is drawn in the original order
            total = counts.sum(1)
            x0_all = torch.randn(n, int(total.max()) + 1, 4)
            order = np.argsort(total, kind="stable")
            x = np.zeros(tuple(x0_all.shape), dtype=np.float32)
            for group in np.array_split(order, max(1, int(np.ceil(n / GROUP_EVENTS)))):
                if not len(group):
                    continue
                m = int(total[group].max())
                mask = torch.zeros(len(group), m + 1, dtype=torch.bool)
                mask[:, 0] = True
                mask[:, 1:] = torch.arange(m)[None, :] < torch.as_tensor(total[group])[:, None]
                c = torch.as_tensor(counts[group], dtype=torch.float32, device=dev)
                sol = self.solve(x0_all[group, : m + 1].to(dev), mask.to(dev), c, method, steps)
                x[group, : m + 1] = sol.cpu().numpy()
            met_phi = rng.uniform(-np.pi, np.pi, n)
            return self.transform.decode(x, counts, met_phi, self.process)
        if model == "event-rqs":
            v = self.networks["flow"]().sample((n,)).cpu().numpy()
            return self.transform.decode(v, self.process)
        # event-maf-types: objects of every type drawn independently, then pT-ordered
        m = int(counts.sum(1).max())
        objects = np.zeros((n, m, 4))
        types = np.full((n, m), -1, dtype=np.int8)
        start = np.zeros(n, dtype=np.int64)
        for code, kind in enumerate(OBJECT_TYPES):
            k = counts[:, code]
            total = int(k.sum())
            if total:
                if kind not in self.networks:
                    raise InvalidDataError(f"count vector asks for {kind!r} but the model has no flow for it")
                feats = from_thesis(self.transform.inverse(kind, self.networks[kind]().sample((total,)).cpu().numpy()))
                rows = np.repeat(np.arange(n), k)
                cols = start[rows] + (np.arange(total) - np.repeat(np.cumsum(k) - k, k))
                objects[rows, cols] = feats
                types[rows, cols] = code
            start += k
        met = self.transform.inverse("met", self.networks["met"]().sample((n,)).cpu().numpy())
        return build_sample(objects, types, 10.0 ** met[:, 0], wrap_phi(met[:, 1]), self.process)
