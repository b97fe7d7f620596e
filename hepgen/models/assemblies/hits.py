"""Hit-cloud diffusion (seed 004 ch. 6): ``ddpm-hits``, its network, config and sampling.

The network (seed 004 L690-937) embeds each hit (eta, phi, E) in 64 dimensions, mixes in
a DeepSets summary (the mean of the embedded hits) and a random-Fourier time embedding,
and applies 8 masked transformer blocks (:mod:`hepgen.models.blocks.transformer`); it
predicts v of a cosine-schedule DDPM with T = 512 (:mod:`hepgen.models.blocks.ddpm`).
Multiplicities come from a KDE of the training multiplicities, as for the jet models.

The seed's clouds all hold N = 300 hits; ours hold 1-300 (a mask), and a mean-pooled
DeepSets with softmax attention cannot count them: a cloud and the same cloud twice get
the same per-hit outputs. Yet the energy per hit falls with N (top-jet clouds: ~10 GeV
per hit at N < 150, ~4.7 at N = 300, while the summed energy is nearly flat), so a
network blind to N draws the same hit spectrum at every N and the total energy grows
like N (the shipped 4-epoch model: 682 vs 1165 GeV at N < 150, 1547 vs 1415 at 300).
``network.multiplicity`` (on for new runs) adds an embedding of N / 100 to the time
embedding; run folders without the key keep the blind network.

``network.energy`` (off by default; ``ddpm-hits-energy.yaml``) conditions the denoiser on
the cloud's total energy too, as CaloClouds does with the visible energy of a shower
(Buhmann et al., arXiv 2305.04847): the pair (N, E) is drawn first, N from the
multiplicity KDE and log E given N from binned PCHIP quantiles of the training clouds
(:class:`hepgen.models.conditions.BinnedQuantileSampler`, ``energy.yaml``), the network
sees log(E / 1 TeV) beside N, and with ``sampler.calibrate`` (on for these models) the
generated hit energies are scaled to sum to E. The seed's named limit, the missing
high-energy tail (the 4-epoch blind-to-E model: 99th percentile 2115 vs 2733 GeV), is
then the tail of the quantile sampler, which holds the training tail; the network decides
how E is shared among the hits and where they lie.
A :class:`HitSurrogate` is what a run folder holds and samples hit clouds in the
``hepgen data hits`` layout, hits sorted by energy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from hepgen.config import load_model_config, merge_config, save_model_config
from hepgen.data.hits import HitSample
from hepgen.device import default_device
from hepgen.errors import OptionError
from hepgen.models.blocks.ddpm import Diffusion
from hepgen.models.blocks.embeddings import FourierTimeEmbedding
from hepgen.models.blocks.transformer import TransformerBlock
from hepgen.models.conditions import BinnedQuantileSampler
from hepgen.models.multiplicity import MultiplicityKDE
from hepgen.transforms import load as load_transform

HIT_MODELS = ("ddpm-hits",)

#: seed 004: 64-dim embedding, 8 transformer blocks, T = 512, cosine s = 8e-3; Adam 1e-3
#: with cosine decay, batch 128, 200 epochs
THESIS = {
    "ddpm-hits": {
        "network": {"dim": 64, "hidden": 128, "heads": 4, "blocks": 8, "time_dim": 64, "multiplicity": True},
        "diffusion": {"steps": 512, "s": 8e-3, "max_beta": 0.999},
        "training": {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 128, "epochs": 200, "schedule": "cosine",
                     "warmup": 0.01, "ema_decay": 0.999},
        "sampler": {"method": "ddim", "steps": 64, "batch_size": 256},
    },
}


def hits_config(model: str, override: dict | None = None) -> dict:
    if model not in THESIS:
        raise OptionError(f"unknown hit model {model!r}; choose from {', '.join(HIT_MODELS)}")
    base = {"model": model, **THESIS[model]}
    unknown = set(override or {}) - set(base)
    if unknown:
        raise OptionError(f"--config: unknown section(s) {', '.join(sorted(unknown))}; allowed: {', '.join(base)}")
    return merge_config(base, override)


class HitDenoiser(nn.Module):
    """v-prediction network on hit clouds (see the module docstring): (t (B,), x_t, mask) -> v."""

    def __init__(self, dim: int = 64, hidden: int = 128, heads: int = 4, blocks: int = 8, time_dim: int = 64,
                 multiplicity: bool = False, energy: bool = False, **_):
        super().__init__()
        self.time = nn.Sequential(FourierTimeEmbedding(time_dim), nn.Linear(time_dim, dim), nn.SiLU(),
                                  nn.Linear(dim, dim))
        #: embedding of the number of hits N / 100 (see the module docstring), added to the time's
        self.count = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim)) if multiplicity else None
        #: embedding of the condition log(E / 1 TeV) of the total energy (``cond``), added likewise
        self.energy = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim)) if energy else None
        self.embed = nn.Sequential(nn.Linear(3, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.deepsets = nn.Sequential(nn.Linear(2 * dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, hidden, heads) for _ in range(blocks))
        self.out = nn.Linear(dim, 3)

    def forward(self, t, x, mask, cond=None):
        m = mask[..., None].to(x.dtype)
        temb = self.time(t)[:, None, :]
        if self.count is not None:
            temb = temb + self.count(m.sum(1) / 100.0)[:, None, :]
        if self.energy is not None:
            if cond is None:
                raise OptionError("this hit network is conditioned on the total energy: pass cond = log(E / 1 TeV)")
            temb = temb + self.energy(cond.reshape(-1, 1).to(x.dtype))[:, None, :]
        h = self.embed(x) * m
        pooled = h.sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
        h = (h + self.deepsets(torch.cat([h, pooled.expand_as(h)], -1)) + temb) * m
        for block in self.blocks:
            h = block(h + temb, mask)
        return self.out(h) * m


def energy_condition(total_energy) -> np.ndarray:
    """The network's condition for a cloud of total energy ``total_energy`` (GeV): log(E / 1 TeV)."""
    return np.log(np.maximum(np.asarray(total_energy, np.float64), 1e-3) / 1000.0).astype(np.float32)


def fit_energy_sampler(sample: HitSample) -> BinnedQuantileSampler:
    """log E given N of the training clouds (the cap N = H a bin of its own)."""
    return BinnedQuantileSampler.fit(np.log(np.maximum(sample.total_energy, 1e-3)), sample.multiplicity,
                                     bins=12, atoms=(sample.max_hits,))


class HitSurrogate:
    """A trained hit-cloud model: config, transform, multiplicity KDE, network (and, for
    an energy-conditioned network, the sampler of the total energy given N)."""

    WEIGHTS = "weights.pt"
    STUDENT = "student.pt"

    def __init__(self, cfg: dict, transform, multiplicity: MultiplicityKDE, network: nn.Module,
                 student: nn.Module | None = None, energy: BinnedQuantileSampler | None = None):
        if cfg["network"].get("energy") and energy is None:
            raise OptionError("an energy-conditioned hit model needs its total-energy sampler (energy.yaml)")
        self.cfg, self.transform, self.multiplicity, self.energy = cfg, transform, multiplicity, energy
        self.network = network.eval()
        #: the progressively distilled few-step network (``sampler.method: distilled``)
        self.student = student.eval() if student is not None else None
        self.diffusion = Diffusion(**cfg["diffusion"])

    @property
    def max_hits(self) -> int:
        return int(self.cfg["max_hits"])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def save(self, folder) -> Path:
        folder = save_model_config(folder, self.cfg)
        self.transform.save(folder / "transform.json")
        (folder / "multiplicity.yaml").write_text(yaml.safe_dump(self.multiplicity.to_dict()))
        if self.energy is not None:
            (folder / "energy.yaml").write_text(yaml.safe_dump(self.energy.to_dict()))
        torch.save(self.network.state_dict(), folder / self.WEIGHTS)
        if self.student is not None:
            torch.save(self.student.state_dict(), folder / self.STUDENT)
        return folder

    @classmethod
    def load(cls, folder) -> "HitSurrogate":
        folder = Path(folder)
        cfg = load_model_config(folder, ("transform.json", "multiplicity.yaml", cls.WEIGHTS), "hit-cloud model")
        net = HitDenoiser(**cfg["network"])
        net.load_state_dict(torch.load(folder / cls.WEIGHTS, map_location="cpu", weights_only=True))
        mult = MultiplicityKDE.from_dict(yaml.safe_load((folder / "multiplicity.yaml").read_text()))
        student = None
        if (folder / cls.STUDENT).exists():
            student = HitDenoiser(**cfg["network"])
            student.load_state_dict(torch.load(folder / cls.STUDENT, map_location="cpu", weights_only=True))
        energy = None
        if (folder / "energy.yaml").exists():
            energy = BinnedQuantileSampler.from_dict(yaml.safe_load((folder / "energy.yaml").read_text()))
        return cls(cfg, load_transform(folder / "transform.json"), mult, net, student, energy)

    @torch.inference_mode()
    def sample(self, num: int, seed: int = 0, batch_size: int | None = None, method: str | None = None,
               steps: int | None = None, device=None, progress: bool = False) -> HitSample:
        """``num`` hit clouds; the same seed gives the same clouds (on the same device).

        ``method``: ``ancestral`` (T steps), ``ddim`` (``steps`` steps) or ``distilled``
        (the distilled student's DDIM with the steps it was distilled to)."""
        from tqdm.auto import tqdm

        if num <= 0:
            raise OptionError(f"--num must be positive, got {num}")
        sampler = self.cfg.get("sampler", {})
        method = method or sampler.get("method", "ddim")
        steps = steps or sampler.get("steps")
        if method not in ("ancestral", "ddim", "distilled"):
            raise OptionError(f"--solver: unknown ddpm-hits sampler {method!r}; choose ancestral, ddim or distilled")
        network = self.network
        if method == "distilled":
            if self.student is None:
                raise OptionError("this hit model has no distilled sampler (run `hepgen student RUN`)")
            network, method, steps = self.student, "ddim", int(self.cfg["distilled_steps"])
        batch_size = int(batch_size or sampler.get("batch_size", 256))
        device = torch.device(device) if device else default_device()
        network.to(device)
        rng = np.random.default_rng(seed)
        drawn = self.multiplicity.sample(num, rng)
        energy = np.exp(self.energy.sample(drawn, rng)) if self.energy is not None else None
        # batches of similar multiplicity (trimmed to their largest cloud), written back in the
        # order drawn: a file's clouds are an unordered sample (metrics on its first N clouds)
        by_size = np.argsort(-drawn, kind="stable")
        n = drawn[by_size]
        H = self.max_hits
        scaled = np.zeros((num, H, 3), np.float32)
        gen = torch.Generator().manual_seed(int(seed))
        starts = range(0, num, batch_size)
        for start in tqdm(starts, desc="sampling", unit="batch", disable=not progress or len(starts) < 2):
            nb = torch.as_tensor(n[start:start + batch_size].copy())
            width = int(nb.max())
            mask = torch.arange(width)[None, :] < nb[:, None]
            noise = torch.randn(len(nb), width, 3, generator=gen) * mask[..., None]
            cond = None
            if energy is not None:
                cond = torch.as_tensor(energy_condition(energy[by_size[start:start + len(nb)]])).to(device)
            out = self.diffusion.sample(network, noise.to(device), mask.to(device), cond=cond, method=method,
                                        steps=steps, generator=gen)
            scaled[start:start + len(nb), :width] = out.float().cpu().numpy()
        unsorted = np.empty_like(scaled)
        unsorted[by_size] = scaled
        n = drawn
        scaled = unsorted
        mask = np.arange(H)[None, :] < n[:, None]
        hits = self.transform.inverse_transform(scaled, mask).astype(np.float32)
        order = np.argsort(-np.where(mask, hits[..., 2], -np.inf), axis=1, kind="stable")
        hits = np.take_along_axis(hits, order[..., None], axis=1)
        if energy is not None and sampler.get("calibrate", True):
            made = (hits[..., 2] * mask).sum(1, dtype=np.float64)
            hits[..., 2] *= (energy / np.maximum(made, 1e-9)).astype(np.float32)[:, None]
        return HitSample(hits * mask[..., None], mask, {"model": self.cfg["model"], "seed": seed})
