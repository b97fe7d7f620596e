"""Jet surrogates: which network each model name uses, its defaults, and sampling.

A :class:`JetSurrogate` is what a run folder (or a shipped model) holds: the config,
the fitted preprocessing, the multiplicity sampler and the generating network. It
samples mixed-size clouds in one batch: multiplicities first (KDE), then noise with
the matching mask, then the network; batches group similar multiplicities to trim
padding. Output is JetNet particle features, particles sorted by ptrel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from hepgen.config import load_model_config, merge_config, save_model_config
from hepgen.data.jetnet import JetSample
from hepgen.device import default_device
from hepgen.errors import InputFileError, OptionError
from hepgen.metrics.jets import relative_mass
from hepgen.models.assemblies import jet_networks as nets
from hepgen.models.blocks.cfm import integrate
from hepgen.models.conditions import PchipQuantileSampler
from hepgen.models.multiplicity import MultiplicityKDE
from hepgen.transforms import JetPreprocessor, load as load_transform


@dataclass(frozen=True)
class ModelSpec:
    """A model name: its family, preprocessing, networks and default hyperparameters."""

    family: str  # "gan", "cfm", "nf" or "pointflow"
    preprocessing: str
    generator: type | None = None
    critic: type | None = None
    velocity: type | None = None
    flow: type | None = None
    network: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)


# Every jet model: warm-up + cosine decay over the planned epochs (public MDMA code), warm
# EMA, selection on the combined floor-normalised score (hepgen.training.selection).
_SCHEDULE = dict(schedule="cosine", warmup=0.02, final_lr_fraction=0.01)
# The generator as in the public MDMA code: Adam without weight decay; the critic keeps
# AdamW. Mean-field matching stays on for the whole run (mean_field_steps=None), unlike the
# public code's switch-off after 50k generator steps: in the mdma-gan-t30 campaign the
# switch-off (epoch 128 of 150, lr 6e-6) doubled every selection metric within 10 epochs
# (score 14.3 -> 29.6: W1M 8.5 -> 16.2, W1P 3.3 -> 7.4, W1EFP 9.1 -> 17.4, FD 163 -> 371
# floor units) and it never recovered. Set mean_field_steps to switch it off.
_GAN_TRAINING = dict(loss="lsgan", lr=1e-4, lr_gen=1e-4, betas=(0.0, 0.999), weight_decay=0.01, weight_decay_gen=0.0,
                     batch_size=256, critic_steps=1, mean_field_weight=1.0, mean_field_steps=None, gp_weight=10.0,
                     ema_decay=0.999, select_every=1, select_jets=10_000, **_SCHEDULE)

# the learning rate is not in Table 5.1: 1e-4 as for the other models
_NF_NETWORK = dict(transforms=25, bins=6, hidden=128, layers=3, conditional=False)
_NF_TRAINING = dict(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01, batch_size=256, mass_weight=0.0,
                    select_every=1, select_jets=10_000, **_SCHEDULE)

_POINT_FLOW = dict(shape_dim=10, transforms=25, bins=6, hidden=128, layers=3, l_dim=16, hidden_shape=256, heads=16,
                   num_blocks=4, bank_size=10_000)
_POINT_FLOW_TRAINING = dict(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01, batch_size=256, ema_decay=0.999,
                            select_every=1, select_jets=10_000, **_SCHEDULE)

MODELS: dict[str, ModelSpec] = {
    # seed 000 Table 5.4
    "mdma-gan": ModelSpec(
        "gan", "standard", nets.MDMAGenerator, nets.MDMACritic,
        network=dict(heads_gen=16, heads=16, hidden_gen=48, hidden=64, l_dim_gen=16, l_dim=16,
                     num_blocks_gen=7, num_blocks=2),
        training=dict(_GAN_TRAINING),
    ),
    "mdma-flow": ModelSpec(
        "cfm", "standard", velocity=nets.MDMAVelocity,
        network=dict(heads=16, hidden=256, l_dim=128, num_blocks=8, time_dim=16),
        training=dict(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01, batch_size=256, ot=False, ema_decay=0.999,
                      select_every=1, select_jets=10_000, **_SCHEDULE),
        sampler=dict(method="midpoint", steps=200),
    ),
    # EPiC-FM (arXiv:2310.00049): EPiC layers as the CFM velocity field, the peer
    # flow-matching baseline; sizes of the EPiC-GAN generator with a 16-dim global vector
    "epic-fm": ModelSpec(
        "cfm", "standard", velocity=nets.EPiCVelocity,
        network=dict(l_dim=128, global_dim=16, hidden=128, num_blocks=6, time_dim=16),
        training=dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, batch_size=256, ot=False, ema_decay=0.999,
                      select_every=1, select_jets=10_000, **_SCHEDULE),
        sampler=dict(method="midpoint", steps=100),
    ),
    # EPiC-GAN (arXiv:2301.08128): 6 generator / 3 critic layers, global vector of 10
    "epic-gan": ModelSpec(
        "gan", "standard", nets.EPiCGenerator, nets.EPiCCritic,
        network=dict(l_dim_gen=128, hidden_gen=128, num_blocks_gen=6, l_dim=128, hidden=128, num_blocks=3,
                     global_dim=10),
        training=dict(_GAN_TRAINING, loss="lsgan", mean_field_weight=0.0, betas=(0.5, 0.999)),
    ),
    # seed 000 Table 5.1
    "nf": ModelSpec("nf", "boxcox", flow=nets.FlatFlow, network=dict(_NF_NETWORK), training=dict(_NF_TRAINING)),
    "nf-c": ModelSpec("nf", "boxcox", flow=nets.FlatFlow, network=dict(_NF_NETWORK, conditional=True),
                      training=dict(_NF_TRAINING)),
    "nf-cc": ModelSpec("nf", "boxcox", flow=nets.FlatFlow, network=dict(_NF_NETWORK, conditional=True),
                       training=dict(_NF_TRAINING, mass_weight=10.0)),
    # seed 000 sec. 5.4.2: per-particle flows, the VNF's flow (Table 5.1) on each particle;
    # PF / APF: the shape network is the TGAN critic's body with a 10-dim output
    "ipf": ModelSpec("pointflow", "standard", flow=nets.PointFlowNet, network=dict(_POINT_FLOW, shape_dim=0),
                     training=dict(_POINT_FLOW_TRAINING)),
    "pf": ModelSpec("pointflow", "standard", flow=nets.PointFlowNet, network=dict(_POINT_FLOW),
                    training=dict(_POINT_FLOW_TRAINING)),
    "apf": ModelSpec("pointflow", "standard", critic=nets.TransformerCritic, flow=nets.PointFlowNet,
                     network=dict(_POINT_FLOW), training=dict(_POINT_FLOW_TRAINING, adversarial_weight=1.0)),
    # seed 000 Table 5.2; the prior is a trained NF run given as network.prior
    "tnf": ModelSpec(
        "gan", "boxcox", nets.TNFGenerator, nets.TransformerCritic,
        network=dict(heads_gen=16, heads=16, hidden_gen=256, hidden=256, l_dim_gen=16, l_dim=16,
                     num_blocks_gen=4, num_blocks=4, prior=None),
        training=dict(_GAN_TRAINING, mean_field_weight=0.0),
    ),
    # seed 000 Table 5.2
    "tgan": ModelSpec(
        "gan", "standard", nets.TransformerGenerator, nets.TransformerCritic,
        network=dict(heads_gen=16, heads=16, hidden_gen=256, hidden=256, l_dim_gen=16, l_dim=16,
                     num_blocks_gen=4, num_blocks=4),
        training=dict(_GAN_TRAINING, mean_field_weight=0.0),
    ),
}




def model_config(name: str, num_particles: int, override: dict | None = None) -> dict[str, Any]:
    """The full config of model ``name``: thesis defaults merged with ``override``."""
    if name not in MODELS:
        raise OptionError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    spec = MODELS[name]
    base = {
        "model": name,
        "num_particles": num_particles,
        "preprocessing": spec.preprocessing,
        "network": dict(spec.network, max_particles=num_particles),
        "training": dict(spec.training),
        "sampler": dict(spec.sampler),
    }
    unknown = set(override or {}) - set(base)
    if unknown:
        raise OptionError(f"--config: unknown section(s) {', '.join(sorted(unknown))}; allowed: {', '.join(base)}")
    cfg = merge_config(base, override)
    if cfg["model"] != name:
        raise OptionError(f"--config is for model {cfg['model']!r}, not {name!r}")
    return cfg


def build_networks(cfg: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """The trainable networks of a config: {'generator', 'critic'} or {'velocity'}."""
    spec = MODELS[cfg["model"]]
    net_cfg = cfg["network"]
    if spec.family == "gan":
        return {"generator": spec.generator(**net_cfg), "critic": spec.critic(**net_cfg)}
    if spec.family == "nf":
        return {"flow": spec.flow(**net_cfg)}
    if spec.family == "pointflow":
        networks = {"flow": spec.flow(**net_cfg)}
        if spec.critic is not None:  # APF: a critic of the TGAN's size on whole clouds
            networks["critic"] = spec.critic(l_dim=net_cfg["l_dim"], hidden=net_cfg["hidden_shape"],
                                             heads=net_cfg["heads"], num_blocks=net_cfg["num_blocks"])
        return networks
    return {"velocity": spec.velocity(**net_cfg)}


def sampling_key(cfg) -> str:
    """Which of the trained networks samples: generator, velocity or flow."""
    return {"gan": "generator", "cfm": "velocity", "nf": "flow", "pointflow": "flow"}[MODELS[cfg["model"]].family]


class JetSurrogate:
    """A trained jet model ready to sample (see the module docstring)."""

    WEIGHTS = "weights.pt"

    def __init__(self, cfg, network: torch.nn.Module, preprocessor: JetPreprocessor, multiplicity: MultiplicityKDE,
                 mass: PchipQuantileSampler | None = None, solvers: dict | None = None):
        self.cfg = cfg
        self.network = network.eval()
        self.preprocessor = preprocessor
        self.multiplicity = multiplicity
        self.mass = mass  # condition sampler of the mass-conditioned flows
        self.solvers = solvers or {}  # bespoke few-step solvers {steps: BespokeSolver} (CFM models)

    @property
    def family(self) -> str:
        return MODELS[self.cfg["model"]].family

    @property
    def num_particles(self) -> int:
        return int(self.cfg["num_particles"])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    # -- persistence -------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = save_model_config(folder, self.cfg)
        self.preprocessor.save(folder / "preprocessor.json")
        (folder / "multiplicity.yaml").write_text(yaml.safe_dump(self.multiplicity.to_dict()))
        if self.mass is not None:
            (folder / "mass.yaml").write_text(yaml.safe_dump(self.mass.to_dict()))
        torch.save(self.network.state_dict(), folder / self.WEIGHTS)
        if self.solvers:
            torch.save({k: v.state_dict() for k, v in self.solvers.items()}, folder / "solvers.pt")
        return folder

    @classmethod
    def load(cls, folder: str | Path, weights: str | Path | None = None) -> "JetSurrogate":
        folder = Path(folder)
        cfg = load_model_config(folder, ("preprocessor.json", "multiplicity.yaml"), "model folder")
        if cfg.get("model") not in MODELS:
            raise InputFileError(f"{folder / 'config.yaml'}: unknown model {cfg.get('model')!r}")
        net = build_networks(cfg)[sampling_key(cfg)]
        weights = Path(weights) if weights else folder / cls.WEIGHTS
        if not weights.exists():
            raise InputFileError(f"{folder}: no trained weights ({weights.name}); train first or pass a checkpoint")
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        pre = load_transform(folder / "preprocessor.json")
        mult = MultiplicityKDE.from_dict(yaml.safe_load((folder / "multiplicity.yaml").read_text()))
        mass = None
        if (folder / "mass.yaml").exists():
            mass = PchipQuantileSampler.from_dict(yaml.safe_load((folder / "mass.yaml").read_text()))
        solvers = {}
        if (folder / "solvers.pt").exists():
            from hepgen.models.blocks.bespoke import BespokeSolver

            for k, state in torch.load(folder / "solvers.pt", map_location="cpu", weights_only=True).items():
                solvers[int(k)] = BespokeSolver(int(k))
                solvers[int(k)].load_state_dict(state)
                solvers[int(k)].eval()
        return cls(cfg, net, pre, mult, mass, solvers)

    # -- sampling ----------------------------------------------------------------
    @torch.inference_mode()
    def generate_scaled(self, mask: torch.Tensor, noise: torch.Tensor, method=None, steps=None) -> torch.Tensor:
        """Network output in the preprocessed space for noise (B, N, 3) and mask (B, N)."""
        if self.family in ("gan", "pointflow"):  # noise -> particles in one pass
            out = self.network(noise, mask)
            if "scaled_range" in self.cfg:  # the generator's output within the training range
                lo, hi = (torch.as_tensor(v, dtype=out.dtype, device=out.device) for v in self.cfg["scaled_range"])
                out = torch.maximum(torch.minimum(out, hi), lo) * mask[..., None]
            return out
        sampler = dict(self.cfg.get("sampler", {}))
        method = method or sampler.get("method", "midpoint")
        steps = steps or sampler.get("steps", 100)
        if method == "bespoke":
            if int(steps) not in self.solvers:
                have = ", ".join(map(str, sorted(self.solvers))) or "none"
                raise OptionError(f"no bespoke solver with {steps} steps in this model (trained: {have})")
            solver = self.solvers[int(steps)].to(noise.device)
            return solver(lambda t, x, m: self.network(t, x, m) * m[..., None], noise, mask) * mask[..., None]
        return integrate(self.network, noise, mask, method=method, steps=steps)

    #: jets per forward pass unless the config's sampler says otherwise: the activations of
    #: 256 jets stay in the CPU caches; larger batches are memory-bound (one thread, session
    #: 8: MDMA-GAN 143 us/jet at 256 against 204 at 2048, MDMA-Flow and EPiC-FM 9.0-9.6 ms
    #: against 12.3-13.0 at 1024)
    BATCH_SIZE = 256

    def sample(
        self,
        num: int,
        seed: int = 0,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        method: str | None = None,
        steps: int | None = None,
        progress: bool = False,
    ) -> JetSample:
        """``num`` jets; the same seed gives the same jets (on the same device)."""
        from tqdm.auto import tqdm

        if num <= 0:
            raise OptionError(f"--num must be positive, got {num}")
        batch_size = int(batch_size or self.cfg.get("sampler", {}).get("batch_size") or self.BATCH_SIZE)
        device = torch.device(device) if device else default_device()
        self.network.to(device)
        rng = np.random.default_rng(seed)
        if self.family == "nf":
            return self._sample_flat(num, seed, rng, batch_size, device)
        n = self.multiplicity.sample(num, rng)
        order = np.argsort(n, kind="stable")
        P = self.num_particles
        scaled = np.zeros((num, P, 3), np.float32)
        gen = torch.Generator().manual_seed(int(seed))
        starts = range(0, num, batch_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))  # networks that draw their own noise (TNF prior)
            for start in tqdm(starts, desc="sampling", unit="batch", disable=not progress or len(starts) < 2):
                idx = order[start : start + batch_size]
                nb = torch.as_tensor(n[idx])
                width = int(nb.max())
                mask = torch.arange(width)[None, :] < nb[:, None]
                noise = torch.randn(len(idx), width, 3, generator=gen) * mask[..., None]
                out = self.generate_scaled(mask.to(device), noise.to(device), method, steps)
                scaled[idx, :width] = out.float().cpu().numpy()
        mask = np.arange(P)[None, :] < n[:, None]
        pf = self.preprocessor.inverse_transform(scaled, mask)
        return JetSample(*finalise_particles(pf), jet_type=self.cfg.get("jet_type"), source=f"<{self.cfg['model']}>")


    @torch.no_grad()
    def _sample_flat(self, num, seed, rng, batch_size, device) -> JetSample:
        """NF family: whole padded clouds; padding recognised by ptrel < 1e-4."""
        context = None
        if self.network.conditional:
            m = self.mass.sample(num, rng)
            context = torch.as_tensor((m - self.cfg["mass_mean"]) / self.cfg["mass_std"], dtype=torch.float32)
        parts = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            for start in range(0, num, batch_size):
                k = min(batch_size, num - start)
                c = None if context is None else context[start : start + k].to(device)
                parts.append(self.network.rsample(k, c).float().cpu().numpy())
        pf = self.preprocessor.inverse_transform_all(np.concatenate(parts))
        return JetSample(*finalise_particles(pf), jet_type=self.cfg.get("jet_type"), source=f"<{self.cfg['model']}>")


def finalise_particles(pf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip negative ptrel, sort particles by ptrel, derive jet features.

    Generated jets are relative: ``jet_features`` = (pT_rel, 0, m_rel * pT_rel, n), i.e.
    pT and mass in units of the jet pT scale; eta is not modelled.
    """
    pf = pf.copy()
    mask = pf[..., 3] > 0.5
    pf[..., 2] = np.where(mask, np.clip(pf[..., 2], 0.0, None), 0.0)
    key = np.where(mask, pf[..., 2], -1.0)
    order = np.argsort(-key, axis=1, kind="stable")
    pf = np.take_along_axis(pf, order[..., None], axis=1)
    p = pf[..., :3].astype(np.float64)
    pt_rel = np.hypot((p[..., 2] * np.cos(p[..., 1])).sum(-1), (p[..., 2] * np.sin(p[..., 1])).sum(-1))
    jf = np.stack([pt_rel, np.zeros(len(pf)), relative_mass(p) * pt_rel, mask.sum(1)], -1).astype(np.float32)
    return pf.astype(np.float32), jf

