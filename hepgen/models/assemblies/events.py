"""Whole-event models (seed 003): the three thesis designs and a conditional set model.

* ``event-maf-types`` (Experiment I): one MAF with MADE conditioners per object type on
  the single-object variables (log10 E, log10 pT, eta, phi), one for (log10 MET,
  METphi); the count vector of an event comes from the alias sampler
  (:class:`hepgen.models.alias.AliasSampler`) and the objects of an event are drawn
  independently, then pT-ordered. Thesis: 10 MAF layers, MADE 3x100 (objects) / 3x50
  (MET), Adam 1e-4.
* ``event-maf-next`` (Experiment II): two MAFs per type, for the first and the next
  objects, on joint vectors with the MET (and the cumulative E, pT of the type) in front;
  objects chosen among candidates by their distance to the event's values
  (:mod:`hepgen.models.assemblies.event_sequential`).
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

  Trained on files of several processes (``hepgen train event-cflow --data ttbar.txt
  --data wjets.txt ...``; the process ID field of each event says which), one network
  serves them all (:class:`ProcessConditions`): the condition is the count vector, a
  one-hot of the process and, when a stop sample is among them, the stop and neutralino
  masses as continuous inputs (0 for the SM processes), so a stop mass scan is a
  condition, not a retraining. Each process -- each stop mass point -- keeps its own alias
  sampler (:class:`ProcessCounts`), exact on its training counts; an untrained stop mass
  point borrows the count vectors of the nearest trained one. A model trained on one
  process stays the single-process model it always was.

Sampled events carry the event weight of :mod:`hepgen.simulate.events` (the selected
cross-section in pb over the number of events in the file), with the cross-section each
process had in its training files (the sum of their weights; an untrained stop mass point
interpolates log sigma linearly in the stop mass), so sampled files of several processes
concatenate into a cocktail as the producer's do; a model whose training files carried no
cross-section (weight 1.0 everywhere, written before that convention) writes 1.0.

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
    SequentialObjectScaler,
    ObjectScaler,
    build_sample,
    from_thesis,
    wrap_phi,
)

EVENT_MODELS = ("event-maf-types", "event-maf-next", "event-rqs", "event-cflow")

#: defaults: the thesis values (seed 003 ch. 7, SPEC S5) where it gives them
THESIS: dict[str, dict[str, Any]] = {
    "event-maf-types": {
        "flow": {"transforms": 10, "hidden": 100, "layers": 3},
        "met_flow": {"transforms": 10, "hidden": 50, "layers": 3},
        "training": {"lr": 1e-4, "batch_size": 1024, "epochs": 100},
        "sampler": {},
    },
    # Experiment II (sec. 7.2, Tables 7.9-7.14): the flows of Experiment I, two per type,
    # objects chosen among 1000 candidates (hepgen.models.assemblies.event_sequential)
    "event-maf-next": {
        "flow": {"transforms": 10, "hidden": 100, "layers": 3},
        "met_flow": {"transforms": 10, "hidden": 50, "layers": 3},
        "training": {"lr": 1e-4, "batch_size": 1024, "epochs": 100},
        "sampler": {"candidates": 1000},
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
    """v(t, tokens | condition): gated mean-field blocks over the MET + object tokens.

    The condition is (B, 7 + num_conditions): the count vector, then (multi-process
    models) the process one-hot and the masses of :meth:`ProcessConditions.vector`; it
    enters the event-wide field with the time embedding (counts as log1p)."""

    def __init__(self, l_dim: int = 64, hidden: int = 128, heads: int = 4, num_blocks: int = 6, time_dim: int = 16,
                 max_rank: int = 8, max_tokens: int = 21, num_conditions: int = 0):
        super().__init__()
        from hepgen.models.blocks.mean_field import MeanFieldBody

        self.max_rank = max_rank
        self.time = CosineTimeEmbedding(time_dim)
        cond_dim = time_dim + NUM_TYPES + int(num_conditions)
        self.body = MeanFieldBody(4 + NUM_TYPES + 1 + max_rank + cond_dim, l_dim, hidden, heads, num_blocks,
                                  cond_dim=cond_dim, max_particles=max_tokens, norm=True, gated=True)
        self.beta = nn.Linear(l_dim, 4)

    def forward(self, t, x, mask, cond):
        B, T, _ = x.shape
        counts = cond[:, :NUM_TYPES]
        types, ranks = torch_token_layout(counts, T - 1)
        c = torch.cat([self.time(t), torch.log1p(counts.float()), cond[:, NUM_TYPES:].float()], -1)
        inp = torch.cat([x, nn.functional.one_hot(types, NUM_TYPES + 1).float(),
                         nn.functional.one_hot(ranks.clamp(max=self.max_rank - 1), self.max_rank).float(),
                         c[:, None].expand(B, T, -1)], -1)
        h, _ = self.body(inp, mask, c)
        return self.beta(h) * mask[..., None]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


#: the masses enter the condition in TeV
MASS_SCALE = 1000.0


class ProcessConditions:
    """The process part of a multi-process event-cflow's condition.

    ``points``: by process ID (one per process; one per stop mass point), a dict with
    ``process`` (the producer's name: ttbar, wjets, ..., stop), ``masses`` ([stop, LSP]
    GeV or None), ``sigma_pb`` (the selected cross-section of its training files, or None)
    and ``events`` (training events). The condition vector of an event is the one-hot of
    its process name over :attr:`names` followed, when any point has masses, by the two
    masses in TeV (zeros for the SM processes)."""

    def __init__(self, points: dict[str, dict]):
        self.points = {str(k): dict(v) for k, v in points.items()}
        self.names = sorted({p["process"] for p in self.points.values()})
        self.with_masses = any(p.get("masses") is not None for p in self.points.values())

    @property
    def dim(self) -> int:
        return len(self.names) + 2 * self.with_masses

    def vector(self, names, masses) -> np.ndarray:
        """(N, dim) float32 conditions of events with process ``names`` (N,) and ``masses``
        (N, 2) GeV (NaN or anything for processes without masses)."""
        names = np.asarray(names, dtype=object)
        out = np.zeros((len(names), self.dim), np.float32)
        for i, name in enumerate(self.names):
            out[names == name, i] = 1.0
        if self.with_masses:
            m = np.nan_to_num(np.asarray(masses, np.float64).reshape(len(names), 2) / MASS_SCALE)
            out[:, len(self.names):] = m * (names == "stop")[:, None]
        return out

    def point_vector(self, pid: str, masses=None, num: int = 1) -> np.ndarray:
        """(num, dim) condition of the process ID ``pid`` (a trained point or a new stop mass point)."""
        from hepgen.simulate.events import parse_process_id

        name, parsed = parse_process_id(pid)
        m = masses if masses is not None else (parsed if parsed is not None else (np.nan, np.nan))
        return self.vector(np.full(num, name, dtype=object), np.tile(np.asarray(m, np.float64), (num, 1)))

    def nearest(self, masses) -> str:
        """The trained stop point nearest to ``masses`` (GeV) in the (stop, LSP) plane."""
        stops = {k: p for k, p in self.points.items() if p["process"] == "stop" and p.get("masses") is not None}
        return min(stops, key=lambda k: float(np.hypot(*(np.asarray(stops[k]["masses"]) - np.asarray(masses)))))

    def sigma_pb(self, pid: str, masses=None) -> float | None:
        """The selected cross-section of a point; for an untrained stop mass point log sigma
        linear in the stop mass through the trained points (the nearest one's with only one
        trained stop mass)."""
        if pid in self.points:
            return self.points[pid].get("sigma_pb")
        stops = [p for p in self.points.values() if p["process"] == "stop" and p.get("sigma_pb")]
        ms = np.array([p["masses"][0] for p in stops], np.float64)
        if len(set(ms.tolist())) < 2:
            return self.points[self.nearest(masses)].get("sigma_pb")
        slope, icpt = np.polyfit(ms, np.log([p["sigma_pb"] for p in stops]), 1)
        return float(np.exp(icpt + slope * float(masses[0])))

    def to_dict(self) -> dict:
        return {"points": self.points}


class ProcessCounts:
    """One alias sampler of the count vector per process ID (exact on each one's training counts)."""

    def __init__(self, samplers: dict[str, AliasSampler]):
        self.samplers = dict(samplers)

    @property
    def values(self) -> np.ndarray:
        """Every count vector any process can draw."""
        return np.unique(np.concatenate([s.values for s in self.samplers.values()]), axis=0)

    def sample(self, num: int, rng: np.random.Generator, pid: str) -> np.ndarray:
        return self.samplers[pid].sample(num, rng)

    def to_dict(self) -> dict:
        return {"per_process": {k: s.to_dict() for k, s in self.samplers.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "ProcessCounts":
        return cls({k: AliasSampler.from_dict(v) for k, v in d["per_process"].items()})


class EventSurrogate:
    """A trained event model: config + fitted transform + count sampler + networks."""

    def __init__(self, cfg: dict, transform, counts: AliasSampler | ProcessCounts, networks: dict[str, nn.Module],
                 solvers: dict | None = None):
        self.cfg, self.transform, self.counts, self.networks = cfg, transform, counts, networks
        #: bespoke few-step solvers of event-cflow by steps (``hepgen student RUN``)
        self.solvers = solvers or {}
        self.rejected_fraction = float("nan")
        #: multi-process event-cflow: the process part of the condition (None: one process)
        self.conditions = ProcessConditions(cfg["conditions"]["points"]) if cfg.get("conditions") else None

    @staticmethod
    def build(cfg: dict) -> dict[str, nn.Module]:
        model = cfg["model"]
        if model == "event-maf-types":
            nets = {"met": maf(2, **cfg["met_flow"])}
            for kind in cfg["object_types"]:
                nets[kind] = maf(4, **cfg["flow"])
            return nets
        if model == "event-maf-next":
            nets = {"met": maf(2, **cfg["met_flow"])}
            for key in cfg["flows"]:  # first:T on 6, next:T on 8 variables
                nets[key] = maf(6 if key.startswith("first:") else 8, **cfg["flow"])
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
        if cfg["model"] == "event-maf-next":
            return SequentialObjectScaler()
        return EventVectorTransform() if cfg["model"] == "event-rqs" else ObjectScaler()

    @property
    def num_parameters(self) -> int:
        return sum(count_parameters(n) for n in self.networks.values())

    @property
    def process(self) -> str:
        return str(self.cfg.get("process", "generated"))

    @property
    def processes(self) -> list[str]:
        """The producer names of the processes this model generates (ttbar, wjets, ..., stop)."""
        from hepgen.simulate.events import parse_process_id

        if self.conditions is not None:
            return list(self.conditions.names)
        return [parse_process_id(self.process)[0]]

    def resolve(self, process: str | None = None, stop_mass: float | None = None,
                lsp_mass: float | None = None) -> tuple[str, tuple[float, float] | None]:
        """(process ID, stop/LSP masses or None) to sample for ``--process`` and the masses.

        Raises an :class:`OptionError` naming the option for an unknown process, a process the
        model was not trained on, masses for a process without them, or no ``--process`` for
        a multi-process model."""
        from hepgen.simulate.events import PROCESSES, STOP_MASSES, parse_process_id, process_id, stop_slha

        trained = self.processes
        if process is None:
            if self.conditions is not None:
                raise OptionError(f"--process: this model generates several processes; choose one of "
                                  f"{', '.join(trained)}")
            process = trained[0]
        if process not in trained:
            if process not in PROCESSES:
                raise OptionError(f"--process: unknown process {process!r}; this model generates {', '.join(trained)}")
            raise OptionError(f"--process {process}: this model was not trained on {process} "
                              f"(trained: {', '.join(trained)})")
        if process != "stop":
            if stop_mass is not None or lsp_mass is not None:
                raise OptionError(f"--stop-mass/--lsp-mass: only the stop process has masses, not {process!r}")
            if self.conditions is None:
                return self.process, None
            return next(k for k, p in self.conditions.points.items() if p["process"] == process), None
        if self.conditions is None:  # a single-process stop model: only its own mass point
            own = parse_process_id(self.process)[1] or STOP_MASSES
            asked = (float(own[0] if stop_mass is None else stop_mass), float(own[1] if lsp_mass is None else lsp_mass))
            if asked != tuple(own):
                raise OptionError(f"--stop-mass/--lsp-mass: this model learnt one mass point, {own[0]:g}/{own[1]:g} "
                                  f"GeV; a mass scan needs a model trained on several processes or mass points")
            return self.process, tuple(own)
        points = {k: tuple(p["masses"]) for k, p in self.conditions.points.items() if p["process"] == "stop"}
        if stop_mass is None and lsp_mass is None and len(points) == 1:
            return next(iter(points.items()))
        default = STOP_MASSES if STOP_MASSES in points.values() else None
        if (stop_mass is None or lsp_mass is None) and default is None:
            raise OptionError("--stop-mass/--lsp-mass: give both masses (trained points: "
                              + ", ".join(f"{a:g}/{b:g}" for a, b in points.values()) + " GeV)")
        masses = (float(default[0] if stop_mass is None else stop_mass),
                  float(default[1] if lsp_mass is None else lsp_mass))
        stop_slha(*masses)  # checks the mass point
        return process_id("stop", masses), masses

    def point_note(self, process: str | None = None, stop_mass: float | None = None,
                   lsp_mass: float | None = None) -> str | None:
        """A line telling which stop mass point :meth:`resolve` picks when the user did not
        give it (the default) or when it was not trained (interpolated inside the trained scan,
        extrapolated outside it); None otherwise (and for single-process models)."""
        pid, masses = self.resolve(process, stop_mass, lsp_mass)
        if self.conditions is None or masses is None:
            return None
        point = f"stop {masses[0]:g}/{masses[1]:g} GeV"
        if pid not in self.conditions.points:
            near = self.conditions.points[self.conditions.nearest(masses)]["masses"]
            scan = np.array([p["masses"] for p in self.conditions.points.values() if p.get("masses") is not None])
            inside = bool(np.all((scan.min(0) <= np.asarray(masses)) & (np.asarray(masses) <= scan.max(0))))
            how = "interpolated" if inside else "extrapolated, outside the trained scan"
            return (f"note: {point} is not a trained mass point: {how} (masses as a continuous condition, "
                    f"count vectors of the nearest trained point {near[0]:g}/{near[1]:g} GeV)")
        if stop_mass is None and lsp_mass is None:
            return f"note: --process stop without --stop-mass/--lsp-mass: the default trained point, {point}"
        return None

    def draw_conditions(self, num: int, rng: np.random.Generator, pid: str | None = None,
                        masses=None) -> tuple[np.ndarray, torch.Tensor]:
        """Count vectors (num, 7) and the network's condition (num, 7 + extra) float32.

        ``pid``: the process ID of a multi-process model (see :meth:`resolve`); an untrained
        stop mass point draws the count vectors of the nearest trained point. With
        ``pid=None`` a multi-process model draws each event's process uniformly from the
        trained points (as a few-step student needs them); a single-process model ignores it."""
        if self.conditions is None:
            counts = self.counts.sample(num, rng)
            return counts, torch.as_tensor(counts, dtype=torch.float32)
        if pid is None:
            keys = list(self.conditions.points)
            which = rng.integers(0, len(keys), num)
            counts = np.zeros((num, NUM_TYPES), np.int64)
            extra = np.zeros((num, self.conditions.dim), np.float32)
            for i, key in enumerate(keys):
                sel = which == i
                counts[sel] = self.counts.sample(int(sel.sum()), rng, key)
                extra[sel] = self.conditions.point_vector(key, num=int(sel.sum()))
        else:
            source = pid if pid in self.counts.samplers else self.conditions.nearest(masses)
            counts = self.counts.sample(num, rng, source)
            extra = self.conditions.point_vector(pid, masses, num)
        return counts, torch.as_tensor(np.concatenate([counts, extra], 1), dtype=torch.float32)

    def event_weight(self, pid: str, num: int, masses=None) -> float:
        """The weight of each of ``num`` sampled events of ``pid``: the training cross-section
        over ``num`` (convention of :mod:`hepgen.simulate.events`), 1.0 when unknown."""
        from hepgen.simulate.events import cross_section_weight

        sigma = self.conditions.sigma_pb(pid, masses) if self.conditions is not None else self.cfg.get("sigma_pb")
        return 1.0 if sigma is None else cross_section_weight(sigma, num)

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
        counts = json.loads((folder / "counts.json").read_text())
        counts = ProcessCounts.from_dict(counts) if "per_process" in counts else AliasSampler.from_dict(counts)
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
               steps: int | None = None, valid_only: bool = True, progress: bool = True,
               process: str | None = None, stop_mass: float | None = None,
               lsp_mass: float | None = None) -> EventSample:
        """``num`` events; with ``valid_only`` events failing the selection are redrawn.

        Args:
            num, seed: how many events, and the seed that makes them reproducible.
            batch_size: events per network pass; method, steps: the ODE solver (default: the
                model's sampler).
            process: the producer name of the process (ttbar, wjets, ..., stop); needed for a
                multi-process model, optional (its own) for a single-process one.
            stop_mass, lsp_mass: the stop mass point in GeV (multi-process models with stop).

        The events carry the process ID of the process and the cross-section weight of
        :meth:`event_weight`."""
        from tqdm.auto import tqdm

        from hepgen.simulate.events import selection_mask

        if num <= 0:
            raise OptionError(f"number of events must be positive, got {num}")
        pid, masses = self.resolve(process, stop_mass, lsp_mass)
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
                    batch = self._sample_batch(n, rng, method, steps, pid, masses)
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
        out.weight[:] = self.event_weight(pid, num, masses)
        return out

    def velocity(self, t, x, cond):
        """The CFM velocity as a bespoke solver calls it: cond = (mask, condition of
        :meth:`draw_conditions`; for a single-process model the count vectors)."""
        mask, counts = cond
        return self.networks["velocity"](t, x, mask, counts) * mask[..., None]

    def solve(self, x0, mask, counts, method: str, steps: int):
        """Noise (B, T, 4) -> event tokens with a torchdiffeq solver or a bespoke one."""
        if method == "bespoke":
            return self.solvers[steps](self.velocity, x0, (mask, counts))
        return integrate(self.networks["velocity"], x0, mask, counts, method=method, steps=steps)

    @torch.no_grad()
    def _sample_batch(self, n: int, rng: np.random.Generator, method: str, steps: int, pid: str | None = None,
                      masses=None) -> EventSample:
        counts, cond = self.draw_conditions(n, rng, pid, masses)
        pid = pid or self.process
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
                c = cond[torch.as_tensor(group)].to(dev)
                sol = self.solve(x0_all[group, : m + 1].to(dev), mask.to(dev), c, method, steps)
                x[group, : m + 1] = sol.cpu().numpy()
            met_phi = rng.uniform(-np.pi, np.pi, n)
            return self.transform.decode(x, counts, met_phi, pid)
        if model == "event-rqs":
            v = self.networks["flow"]().sample((n,)).cpu().numpy()
            return self.transform.decode(v, pid)
        if model == "event-maf-next":
            from hepgen.models.assemblies.event_sequential import sample_sequential

            candidates = int(self.cfg.get("sampler", {}).get("candidates", 1000))
            return sample_sequential(self.networks, self.transform, counts, candidates, pid)
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
        return build_sample(objects, types, 10.0 ** met[:, 0], wrap_phi(met[:, 1]), pid)
