"""Training of the calorimeter models with PyTorch Lightning.

``calodream`` trains in stages, each a Lightning fit with its own checkpoint
(``checkpoints/energy.ckpt``, ``checkpoints/shape.ckpt``): the energy network, then the
shape network (EMA of its weights for sampling), then the bespoke solvers against
reference solves of the frozen shape network. ``caloinn`` is one maximum-likelihood fit.
``caloinn-vae`` trains in two stages (seed 002 L972): the beta-VAE (``checkpoints/vae.ckpt``),
then the INN on its latent (``checkpoints/inn.ckpt``, config section ``inn_training``;
``training.vae_share`` of ``--max-time`` for the VAE).
``--max-time`` is shared between the stages (``training.energy_share`` for the energy
network). The run folder holds config.yaml, transform.json, weights.pt, checkpoints and
the Lightning CSV logs, and samples with ``hepgen sample RUN_DIR`` alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from lightning import seed_everything
from torch.utils.data import DataLoader, TensorDataset

from hepgen.data.calo import read_showers
from hepgen.errors import OptionError
from hepgen.models.assemblies.calo import CaloSurrogate, calo_config
from hepgen.models.blocks.bespoke import train_bespoke
from hepgen.training.fit import fit_stage
from hepgen.training.ema import warm_ema
from hepgen.training.modules import FlowMatchingModule, LatentNLLModule, NLLModule, TrainingModule, VAEModule
from hepgen.config import merge_config, read_config
from hepgen.training.run import check_run_options
from hepgen.transforms.calo import CaloShowerTransform


class EnergyModule(TrainingModule):
    def __init__(self, net, lr: float = 1e-3, **training):
        super().__init__(training)
        self.net, self.lr = net, lr

    def sampled(self):
        return self.net

    def configure_optimizers(self):
        return self.with_schedule(torch.optim.AdamW(self.net.parameters(), lr=self.lr))

    def training_step(self, batch, batch_idx):
        u, c = batch
        loss = self.net.loss(u, c)
        self.log("energy_cfm_loss", loss, prog_bar=True, batch_size=len(u))
        return loss


class ShapeModule(TrainingModule):
    """CFM on the normalised voxels, conditioned on (c, u)."""

    def __init__(self, net, lr: float = 1e-3, ema_decay: float | None = 0.999, **training):
        super().__init__(training)
        self.net, self.lr = net, lr
        self.ema = warm_ema(net, ema_decay)

    def sampled(self):
        return self.net

    def configure_optimizers(self):
        return self.with_schedule(torch.optim.AdamW(self.net.parameters(), lr=self.lr))

    def training_step(self, batch, batch_idx):
        x1, c, u = batch
        x0 = torch.randn_like(x1)
        t = torch.rand(len(x1), device=x1.device)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        loss = ((self.net(t, xt, (c, u)) - (x1 - x0)) ** 2).mean()
        self.log("shape_cfm_loss", loss, prog_bar=True, batch_size=len(x1))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.update_ema()


def dequantise(showers: np.ndarray, threshold: float, noise: float, seed: int) -> np.ndarray:
    """Showers with uniform noise U(0, noise x threshold) on every voxel (CaloINN's
    dequantisation, seed 002 Table B.1): the flow never sees exact zeros, and with
    ``noise`` < 1 all noise lies below the recorded minimum, so the sampler's threshold
    cut removes it. (Noise up to the threshold itself leaked: 7.7 % of generated DS1 hits
    sat just above the cut, where the reference has none.)"""
    if not 0 < noise < 1:
        raise OptionError(f"training.noise must lie in (0, 1) (a fraction of the threshold), got {noise}")
    rng = np.random.default_rng(seed)
    return showers + rng.uniform(0, noise * max(threshold, 1e-9), showers.shape)


def _run_config(model: str, geometry: str, out: Path, config, override, resume: bool) -> dict:
    """The run's config: the saved one when resuming, else thesis defaults + YAML + overrides."""
    if resume and (out / "config.yaml").exists():
        return yaml.safe_load((out / "config.yaml").read_text())
    return calo_config(model, geometry, merge_config(read_config(config), override))


def shower_transform(geometry: str, e_inc: np.ndarray, training: dict) -> CaloShowerTransform:
    """The (unfitted) shower parametrisation of a run: the dataset's energy range and
    recorded minimum, f and alpha from the training section."""
    from hepgen.simulate.showers import DETECTORS

    det = DETECTORS.get(geometry)
    lo, hi = det.energy_range if det else (float(e_inc.min()), float(e_inc.max()))
    return CaloShowerTransform(geometry, f=float(training.get("f", 2.85)), alpha=float(training.get("alpha", 1e-6)),
                               threshold=det.threshold if det else 0.0,
                               e_range=(min(lo, float(e_inc.min())), max(hi, float(e_inc.max()))))


def train_calo_model(model: str, data: str | os.PathLike, out: str | os.PathLike, config=None,
                     max_epochs: int | None = None, max_time: float | None = None, seed: int = 0,
                     resume: bool = False, progress: bool = True, override: dict | None = None,
                     devices="auto", num_nodes: int = 1, num_showers: int | None = None) -> Path:
    """Train ``calodream``, ``caloinn``, ``caloinn-vae`` or ``mdma-calo`` on the showers in ``data``; returns the run folder."""
    out = check_run_options(out, resume, max_epochs, max_time)
    if model == "mdma-calo":
        return _train_points(data, out, config, override, max_epochs, max_time, seed, resume, progress, devices,
                             num_nodes, num_showers)
    sample = read_showers(data, num_showers=num_showers)
    geo = sample.geometry
    cfg = _run_config(model, geo.name, out, config, override, resume)
    cfg["training_data"] = str(data)
    training = cfg["training"]
    epochs = int(max_epochs or training.get("epochs", 100))
    seed_everything(seed, workers=True, verbose=False)
    showers = sample.showers.astype(np.float64)
    e_inc = sample.incident_energies[:, 0].astype(np.float64)
    transform = shower_transform(geo.name, e_inc, training)
    if model == "caloinn":
        showers = dequantise(showers, transform.threshold, float(training.get("noise", 0.1)), seed)
    transform.fit(showers, e_inc)
    u, x, c = transform.transform(showers, e_inc)
    u_lat = transform.u_to_latent(u)
    latent = model == "calodream" and cfg.get("latent") is not None
    fractions = transform.fractions(showers) if model == "caloinn-vae" or latent else None
    del showers
    networks = CaloSurrogate.build(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    tensors = [torch.as_tensor(a, dtype=torch.float32) for a in (u_lat, x, c)]
    bs = int(training.get("batch_size", 64))
    started = time.perf_counter()
    if model == "caloinn":
        y = torch.cat([tensors[0], tensors[1]], 1)
        loader = DataLoader(TensorDataset(y, tensors[2]), batch_size=bs, shuffle=True)
        module = NLLModule(networks["flow"], **{"weight_decay": 0.01, **training})  # AdamW default, as trained
        fit_stage(module, loader, out, "inn", epochs, max_time, resume, progress, devices, num_nodes)
        networks = {"flow": module.flow.cpu().eval()}
        solvers = {}
    elif model == "caloinn-vae":
        networks = _fit_vae_inn(networks, tensors, torch.as_tensor(fractions, dtype=torch.float32), cfg, out,
                                max_epochs, max_time, resume, progress, devices, num_nodes)
        solvers = {}
    else:
        share = float(training.get("energy_share", 0.2))
        e_loader = DataLoader(TensorDataset(tensors[0], tensors[2]), batch_size=max(bs, 256), shuffle=True)
        e_mod = EnergyModule(networks["energy"], **training)
        fit_stage(e_mod, e_loader, out, "energy", epochs, max_time * share if max_time else None, resume, progress,
             devices, num_nodes)
        shape_data = tensors[1]
        if latent:  # laViT: the autoencoder first, then the CFM on its standardised latent
            networks["ae"], shape_data = _fit_latent_autoencoder(
                networks["ae"], tensors, torch.as_tensor(fractions, dtype=torch.float32), cfg["latent"], out,
                max_time * float(cfg["latent"]["training"].get("share", 0.3)) if max_time else None, seed, resume,
                progress, devices, num_nodes)
        s_loader = DataLoader(TensorDataset(shape_data, tensors[2], tensors[0]), batch_size=bs, shuffle=True)
        s_mod = ShapeModule(networks["shape"], **training)
        used = (time.perf_counter() - started) / 60
        fit_stage(s_mod, s_loader, out, "shape", epochs,
             max(max_time * 0.9 - used, 0.1) if max_time else None, resume, progress, devices, num_nodes)
        networks = {**networks, "energy": e_mod.net.cpu().eval(), "shape": s_mod.sampling_network().cpu().eval()}
        solvers = fit_bespoke_solvers(networks["shape"], tensors[2], tensors[0], cfg["sampler"], seed, progress)
    surrogate = CaloSurrogate(cfg, transform, networks, solvers)
    surrogate.save(out)
    return out


def _fit_latent_autoencoder(ae, tensors: list, fractions: torch.Tensor, latent: dict, out: Path, max_time, seed: int,
                            resume, progress, devices, num_nodes):
    """laViT's first stage (``checkpoints/ae.ckpt``): the convolutional beta-VAE reads the
    standardised logits x and is scored by its Bernoulli decoder on the layer fractions,
    conditioned on (c, u) (seed 002 L1124-1134, Table B.6). Then every training shower is
    encoded once, r = mu + sigma z with a fixed seed (the encoder distribution the CFM's
    boundary condition samples), standardised by the statistics of r (kept in the
    autoencoder's buffers). Returns the trained autoencoder and the standardised latents."""
    u_lat, x, c = tensors
    cond = torch.cat([c, u_lat], 1)
    training = dict(latent.get("training", {}))
    training.pop("share", None)
    loader = DataLoader(TensorDataset(x, fractions, cond), batch_size=int(training.pop("batch_size", 128)),
                        shuffle=True)
    module = VAEModule(ae, **training)
    fit_stage(module, loader, out, "ae", int(training.get("epochs", 200)), max_time, resume, progress, devices,
              num_nodes)
    ae = module.sampling_network().cpu().eval()
    gen = torch.Generator().manual_seed(seed + 11)
    with torch.no_grad():
        parts = []
        for lo in range(0, len(x), 1024):
            mu, logvar = ae.encode(x[lo:lo + 1024], cond[lo:lo + 1024])
            parts.append(mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen))
        r = torch.cat(parts)
        std = r.std(0)
        ae.latent_mean.copy_(r.mean(0))
        ae.latent_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        return ae, ae.standardise(r)


def _fit_vae_inn(networks: dict, tensors: list, fractions: torch.Tensor, cfg: dict, out: Path, max_epochs,
                 max_time, resume, progress, devices, num_nodes) -> dict:
    """VAE+INN, two stages (seed 002 L972), each through :func:`fit_stage`:

    1. ``vae``: the beta-VAE reads the standardised logits x of the shower and is scored
       by its Bernoulli decoder on the layer fractions in [0, 1] (the normalised shower
       before the logit: the Bernoulli likelihood of eq. 4.8 needs targets in [0, 1], and
       fractions of the layer energy are that by construction; the logits are the
       preprocessed encoder input of Appendix B), conditioned on (c, u).
    2. ``inn``: the encoder means and standard deviations of every training shower,
       standardised by the statistics of the means (kept in the VAE's buffers, so the
       flow's splines on [-5, 5] see unit-scale inputs), are the INN's data: each step
       draws z ~ N(mu, sigma) and fits (u, z) given c.
    """
    u_lat, x, c = tensors
    training, inn_training = cfg["training"], cfg.get("inn_training", {})
    cond = torch.cat([c, u_lat], 1)
    started = time.perf_counter()
    vae_loader = DataLoader(TensorDataset(x, fractions, cond), batch_size=int(training.get("batch_size", 256)),
                            shuffle=True)
    vae_module = VAEModule(networks["vae"], **training)
    share = float(training.get("vae_share", 0.6))
    fit_stage(vae_module, vae_loader, out, "vae", int(max_epochs or training.get("epochs", 1000)),
              max_time * share if max_time else None, resume, progress, devices, num_nodes)
    vae = vae_module.sampling_network().cpu().eval()
    with torch.no_grad():
        stats = [vae.encode(x[lo:lo + 4096], cond[lo:lo + 4096]) for lo in range(0, len(x), 4096)]
        mu, logvar = torch.cat([s[0] for s in stats]), torch.cat([s[1] for s in stats])
        std = mu.std(0)
        vae.latent_mean.copy_(mu.mean(0))
        vae.latent_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
        mu_s, sigma_s = vae.standardise(mu), torch.exp(0.5 * logvar) / vae.latent_std
    inn_loader = DataLoader(TensorDataset(u_lat, mu_s, sigma_s, c), batch_size=int(inn_training.get("batch_size", 256)),
                            shuffle=True)
    inn_module = LatentNLLModule(networks["flow"], **inn_training)
    used = (time.perf_counter() - started) / 60
    fit_stage(inn_module, inn_loader, out, "inn", int(max_epochs or inn_training.get("epochs", 200)),
              max(max_time * 0.95 - used, 0.1) if max_time else None, resume, progress, devices, num_nodes)
    return {"vae": vae, "flow": inn_module.flow.cpu().eval()}


def fit_bespoke_solvers(shape_net, c: torch.Tensor, u_lat: torch.Tensor, sampler: dict, seed: int = 0,
                        progress: bool = True) -> dict:
    """Bespoke solvers (``sampler.bespoke_steps``, default [sampler.steps]) for a frozen shape network."""
    from hepgen.models.blocks.cfm import integrate

    steps_list = sampler.get("bespoke_steps") or [int(sampler.get("steps", 8))]
    n = min(int(sampler.get("bespoke_pairs", 256)), len(c))
    for p in shape_net.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed + 1)
    idx = torch.randperm(len(c), generator=g)[:n]
    cond = (c[idx], u_lat[idx])
    x0 = torch.randn(n, shape_net.vit.patch_size * int(np.prod(shape_net.vit.grid)), generator=g)
    ref = []
    with torch.no_grad():
        for lo in range(0, n, 64):
            cc = (cond[0][lo:lo + 64], cond[1][lo:lo + 64])
            mask = torch.ones(len(cc[0]), 1, dtype=torch.bool)
            ref.append(integrate(lambda t, x, m, k: shape_net(t, x[:, 0], k)[:, None], x0[lo:lo + 64, None], mask, cc,
                                 method=sampler.get("reference_method", "midpoint"),
                                 steps=int(sampler.get("reference_steps", 100)))[:, 0])
    target = torch.cat(ref)
    return {int(s): train_bespoke(shape_net, x0, target, cond, steps=int(s),
                                  iterations=int(sampler.get("bespoke_iterations", 300)),
                                  batch_size=min(64, n), seed=seed, progress=progress) for s in steps_list}


def _train_points(data, out: Path, config, override, max_epochs, max_time, seed, resume, progress, devices,
                  num_nodes, num_showers) -> Path:
    """mdma-calo: hits of each shower as a point cloud, CFM with mean-field blocks."""
    from hepgen.simulate.showers import DETECTORS
    from hepgen.training.data import JetDataModule
    from hepgen.transforms.calo_points import CaloPointTransform, HitCountModel, ShowerSizeModel, showers_to_hits

    cfg = _run_config("mdma-calo", read_showers(data, num_showers=1).geometry.name, out, config, override, resume)
    training = cfg["training"]
    limit = num_showers or int(training.get("max_showers", 20_000))
    sample = read_showers(data, num_showers=limit)
    geo = sample.geometry
    seed_everything(seed, workers=True, verbose=False)
    det = DETECTORS.get(geo.name)
    e_inc = sample.incident_energies[:, 0].astype(np.float64)
    e_range = det.energy_range if det else (float(e_inc.min()), float(e_inc.max()))
    e_tot = sample.showers.sum(1, dtype=np.float64)
    energy, bins, mask = showers_to_hits(sample.showers, geo)
    transform = CaloPointTransform(geo.name, threshold=det.threshold if det else 0.0).fit(energy, bins, mask, seed)
    x = transform.transform(energy, bins, mask, seed)
    del energy, bins, sample
    cfg.update(training_data=str(data), e_range=[float(e_range[0]), float(e_range[1])],
               hit_count=HitCountModel.fit(e_inc, mask.sum(1), geo.num_voxels).to_dict(),
               shower_size=ShowerSizeModel.fit(e_inc, mask.sum(1), e_tot, geo.num_voxels).to_dict())
    c = ((np.log(e_inc) - np.log(e_range[0])) / (np.log(e_range[1]) - np.log(e_range[0])))[:, None]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    transform.save(out / "transform.json")  # with a checkpoint, enough to sample while training runs
    networks = CaloSurrogate.build(cfg)
    module = FlowMatchingModule(networks["velocity"], **training)
    dm = JetDataModule(x, mask, c, batch_size=int(training.get("batch_size", 16)), seed=seed, trim=True)
    fit_stage(module, dm, out, "points", int(max_epochs or training.get("epochs", 100)), max_time, resume, progress,
         devices, num_nodes)
    surrogate = CaloSurrogate(cfg, transform, {"velocity": module.sampling_network().cpu().eval()})
    surrogate.save(out)
    return out
