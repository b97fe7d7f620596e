"""Calorimeter shower models: CaloDREAM and CaloINN (seed 002 ch. 4, appendix B).

* ``calodream`` = p(u | E_inc) x p(x | u, E_inc): an *energy network* (autoregressive
  transformer over the layer-energy variables u with a small CFM head evaluated per
  layer, "Transfusion") and a *shape network* (3D patch ViT with adaLN conditioning on
  time, E_inc and u, trained by conditional flow matching on the layer-normalised
  voxels). Sampled in sequence; the shape ODE runs with a fixed solver (Euler, midpoint,
  RK4 at chosen steps) or a learned bespoke solver (:mod:`hepgen.models.blocks.bespoke`).
* ``caloinn`` = one conditional rational-quadratic-spline coupling flow (``zuko``) on
  (u, x) given E_inc, with uniform noise on the voxels and the alpha-logit (Table B.1).

Both use :class:`hepgen.transforms.calo.CaloShowerTransform` for the parametrisation.
The thesis hyperparameters are the defaults (``THESIS``); the CPU sizes that can train
here are ``configs/calodream-cpu.yaml`` / ``caloinn-cpu.yaml``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from hepgen.data.calo import ShowerSample
from hepgen.data.geometry import load_geometry
from hepgen.device import default_device
from hepgen.errors import InputFileError, OptionError
from hepgen.models.blocks.bespoke import BespokeSolver
from hepgen.models.blocks.cfm import SOLVERS, integrate
from hepgen.models.blocks.embeddings import CosineTimeEmbedding
from hepgen.transforms.calo import CaloShowerTransform

CALO_MODELS = ("calodream", "caloinn")

#: defaults: the thesis values (seed 002 Tables B.1, B.3, B.4, B.7) where they exist
THESIS: dict[str, dict[str, Any]] = {
    "calodream": {
        "energy": {"dim": 64, "depth": 4, "heads": 4, "head_hidden": 64, "head_layers": 3},
        "shape": {"patch": [3, 16, 1], "dim": 480, "depth": 6, "heads": 6, "cond_dim": 128, "mlp_ratio": 4.0},
        "training": {"lr": 1e-3, "batch_size": 64, "energy_share": 0.2, "ema_decay": 0.999, "epochs": 400},
        "sampler": {"method": "bespoke", "steps": 8, "energy_method": "rk4", "energy_steps": 50,
                    "reference_method": "midpoint", "reference_steps": 100,
                    "bespoke_pairs": 256, "bespoke_iterations": 300},
    },
    "caloinn": {
        "flow": {"transforms": 12, "bins": 10, "hidden": 256, "layers": 4},
        "training": {"lr": 1e-4, "batch_size": 512, "noise": 5e-6, "alpha": 1e-8, "epochs": 200},
        "sampler": {},
    },
}


def merge(base: dict, override: dict | None) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def mlp(sizes: list[int], act=nn.SiLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- networks
class EnergyNet(nn.Module):
    """p(u | E_inc): causal transformer over the L energy variables + per-layer CFM head.

    Token 0 carries the condition, token i (i >= 1) the value of u_{i-1}; the output at
    position i conditions the velocity of u_i, so u_i depends on E_inc and u_{<i} only.
    """

    def __init__(self, num_layers: int, dim: int = 64, depth: int = 4, heads: int = 4, head_hidden: int = 64,
                 head_layers: int = 3):
        super().__init__()
        self.num_layers = num_layers
        self.cond_in = nn.Linear(1, dim)
        self.value_in = nn.Linear(1, dim)
        self.pos = nn.Parameter(torch.randn(1, num_layers, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.time = CosineTimeEmbedding(16)
        self.head = mlp([dim + 16 + 1] + [head_hidden] * head_layers + [1])

    def context(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """(B, k) known u values -> (B, k + 1, dim) contexts for u_0 .. u_k."""
        tokens = torch.cat([self.cond_in(c)[:, None], self.value_in(u[..., None])], 1)
        n = tokens.shape[1]
        tokens = tokens + self.pos[:, :n]
        mask = torch.triu(torch.full((n, n), float("-inf"), device=u.device), 1)
        return self.encoder(tokens, mask=mask, is_causal=True)

    def velocity(self, t: torch.Tensor, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([h, self.time(t.reshape(-1)).reshape(*x.shape, -1), x[..., None]], -1))[..., 0]

    def loss(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.context(u[:, :-1], c)
        x0 = torch.randn_like(u)
        t = torch.rand_like(u)
        xt = (1 - t) * x0 + t * u
        return ((self.velocity(t, xt, h) - (u - x0)) ** 2).mean()

    @torch.no_grad()
    def sample(self, c: torch.Tensor, method: str = "rk4", steps: int = 50, generator=None) -> torch.Tensor:
        b = len(c)
        u = torch.zeros(b, 0, device=c.device)
        for i in range(self.num_layers):
            h = self.context(u, c)[:, i]
            x0 = torch.randn(b, 1, 1, device=c.device, generator=generator)
            f = lambda t, x, mask, cond: self.velocity(t[:, None], x[..., 0], h[:, None])[..., None]  # noqa: E731
            xi = integrate(f, x0, torch.ones(b, 1, dtype=torch.bool, device=c.device), method=method, steps=steps)
            u = torch.cat([u, xi[..., 0]], 1)
        return u


class ShapeNet(nn.Module):
    """v(t, x | E_inc, u): the 3D ViT velocity of the layer-normalised voxels."""

    def __init__(self, shape: tuple[int, int, int], num_layers: int, patch=(3, 16, 1), dim: int = 480, depth: int = 6,
                 heads: int = 6, cond_dim: int = 128, mlp_ratio: float = 4.0):
        super().__init__()
        from hepgen.models.blocks.vit import PatchViT3D

        self.shape = tuple(shape)
        self.time = CosineTimeEmbedding(32)
        self.cond = mlp([32 + 1 + num_layers, cond_dim, cond_dim])
        self.vit = PatchViT3D(self.shape, tuple(patch), dim, depth, heads, cond_dim, mlp_ratio)

    def forward(self, t: torch.Tensor, x: torch.Tensor, cond) -> torch.Tensor:
        c, u = cond
        emb = self.cond(torch.cat([self.time(t.reshape(-1)), c, u], -1))
        return self.vit(x.reshape(-1, *self.shape), emb).reshape(x.shape)


def inn_flow(features: int, transforms: int = 12, bins: int = 10, hidden: int = 256, layers: int = 4):
    """CaloINN: a conditional RQS coupling flow p(u, x | E_inc) (zuko NSF, coupling passes)."""
    import zuko

    return zuko.flows.NSF(features, 1, bins=bins, transforms=transforms, passes=2, hidden_features=[hidden] * layers)


# ----------------------------------------------------------------------------- surrogate
class CaloSurrogate:
    """A trained shower model: config + fitted transform + networks; samples showers."""

    def __init__(self, cfg: dict, transform: CaloShowerTransform, networks: dict[str, nn.Module],
                 solvers: dict[int, BespokeSolver] | None = None):
        self.cfg, self.transform, self.networks = cfg, transform, networks
        self.solvers = solvers or {}
        self.geometry = load_geometry(cfg["geometry"])

    @staticmethod
    def build(cfg: dict) -> dict[str, nn.Module]:
        geo = load_geometry(cfg["geometry"])
        if cfg["model"] == "calodream":
            return {"energy": EnergyNet(geo.num_layers, **cfg["energy"]),
                    "shape": ShapeNet(geo.shape, geo.num_layers, **cfg["shape"])}
        if cfg["model"] == "caloinn":
            return {"flow": inn_flow(geo.num_layers + geo.num_voxels, **cfg["flow"])}
        raise OptionError(f"unknown calorimeter model {cfg['model']!r}; choose from {', '.join(CALO_MODELS)}")

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for net in self.networks.values() for p in net.parameters())

    # -- persistence -----------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        (folder / "config.yaml").write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        self.transform.save(folder / "transform.json")
        state = {name: net.state_dict() for name, net in self.networks.items()}
        state["solvers"] = {k: s.state_dict() for k, s in self.solvers.items()}
        torch.save(state, folder / "weights.pt")

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> "CaloSurrogate":
        from hepgen.transforms.base import load as load_transform

        folder = Path(folder)
        for name in ("config.yaml", "transform.json", "weights.pt"):
            if not (folder / name).is_file():
                raise InputFileError(f"{folder}: not a trained calorimeter run (missing {name})")
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        networks = cls.build(cfg)
        state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        for name, net in networks.items():
            net.load_state_dict(state[name])
        solvers = {}
        for k, s in state.get("solvers", {}).items():
            solver = BespokeSolver(int(k))
            solver.load_state_dict(s)
            solvers[int(k)] = solver.eval()
        dev = torch.device(device or default_device())
        for net in [*networks.values(), *solvers.values()]:
            net.to(dev).eval()
        return cls(cfg, load_transform(folder / "transform.json"), networks, solvers)

    # -- sampling --------------------------------------------------------------------
    def incident_energies(self, num: int, seed: int) -> np.ndarray:
        from hepgen.simulate.showers import DETECTORS, incident_energies

        return incident_energies(DETECTORS[self.cfg["geometry"]], num, np.random.default_rng([seed, 7]))

    @torch.no_grad()
    def sample(self, num: int, seed: int = 0, batch_size: int = 1000, energies: np.ndarray | None = None,
               method: str | None = None, steps: int | None = None, progress: bool = True) -> ShowerSample:
        """``num`` showers; incident energies drawn as in the dataset unless given (MeV)."""
        from tqdm.auto import tqdm

        if num <= 0:
            raise OptionError(f"--num must be positive, got {num}")
        sampler = self.cfg.get("sampler", {})
        method = method or sampler.get("method", "midpoint")
        steps = steps or sampler.get("steps", 20)
        if method not in (*SOLVERS, "bespoke"):
            raise OptionError(f"unknown solver {method!r}; choose from {', '.join((*SOLVERS, 'bespoke'))}")
        if method == "bespoke" and steps not in self.solvers:
            have = ", ".join(map(str, sorted(self.solvers))) or "none"
            raise OptionError(f"no bespoke solver with {steps} steps in this model (trained: {have})")
        e_inc = self.incident_energies(num, seed) if energies is None else np.asarray(energies, float).reshape(-1)
        if len(e_inc) != num:
            raise OptionError(f"{len(e_inc)} incident energies for {num} showers")
        dev = next(self.networks[next(iter(self.networks))].parameters()).device
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        out = []
        order = np.arange(num)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for lo in tqdm(range(0, num, batch_size), desc="sampling showers", disable=not progress):
                idx = order[lo:lo + batch_size]
                c = torch.as_tensor(self.transform.condition(e_inc[idx]), dtype=torch.float32, device=dev)
                u_lat, x = self._sample_batch(c, method, steps, gen, dev)
                u = self.transform.u_from_latent(u_lat.cpu().double().numpy())
                showers, _ = self.transform.inverse_transform(u, x.cpu().double().numpy(), c.cpu().double().numpy())
                out.append(showers.astype(np.float32))
        return ShowerSample(e_inc.astype(np.float32), np.concatenate(out), self.geometry)

    def _sample_batch(self, c, method, steps, gen, dev):
        b = len(c)
        if self.cfg["model"] == "caloinn":
            z = torch.randn(b, self.geometry.num_layers + self.geometry.num_voxels, generator=gen).to(dev)
            flow = self.networks["flow"](c)
            y = flow.transform.inv(z)
            return y[:, :self.geometry.num_layers], y[:, self.geometry.num_layers:]
        sampler = self.cfg.get("sampler", {})
        u_lat = self.networks["energy"].sample(c, sampler.get("energy_method", "rk4"),
                                               sampler.get("energy_steps", 50), generator=None)
        x0 = torch.randn(b, self.geometry.num_voxels, generator=gen).to(dev)
        x = self.solve_shape(x0, (c, u_lat), method, steps)
        return u_lat, x

    def solve_shape(self, x0, cond, method, steps):
        shape = self.networks["shape"]
        if method == "bespoke":
            return self.solvers[steps](shape, x0, cond)
        mask = torch.ones(len(x0), 1, dtype=torch.bool, device=x0.device)  # one "particle" per shower
        x = integrate(lambda t, x, m, cc: shape(t, x[:, 0], cc)[:, None], x0[:, None], mask, cond,
                      method=method, steps=steps)
        return x[:, 0]


def calo_config(model: str, geometry: str, override: dict | None = None) -> dict:
    if model not in CALO_MODELS:
        raise OptionError(f"unknown calorimeter model {model!r}; choose from {', '.join(CALO_MODELS)}")
    geo = load_geometry(geometry)
    if model == "calodream" and not geo.is_regular:
        raise OptionError(f"calodream needs a regular (layer, alpha, r) geometry such as ds2 or ds3, not {geometry}")
    cfg = merge(THESIS[model], override)
    if model == "calodream":
        shape, patch = geo.shape, cfg["shape"]["patch"]
        if any(s % p for s, p in zip(shape, patch)):
            raise OptionError(f"patch {patch} does not divide the {geometry} grid {shape}")
    cfg.update(model=model, geometry=geometry)
    return cfg


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["CALO_MODELS", "THESIS", "CaloSurrogate", "EnergyNet", "ShapeNet", "inn_flow", "calo_config",
           "count_parameters"]
