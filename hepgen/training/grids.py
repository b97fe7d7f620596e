"""Training of the grid models (``hepgen train gan-3d|wgan-3d|bib-ae --data SHOWERS.h5``).

One Lightning fit (stage ``grid``, :func:`hepgen.training.fit.fit_stage`: exact
``--resume``, epoch-end ``--max-time``) with manual optimisation:

* :class:`GridGANModule` -- critic step(s) (BCE for ``gan-3d``; WGAN-GP for ``wgan-3d``,
  whose energy constrainer learns E from real showers in the same step), then the
  generator step (with kappa |c_pred - c| for ``wgan-3d``); warm EMA of the generator.
* :class:`BIBAEModule` -- ``epochs`` of BIB-AE training (difference critic, latent
  critic, latent MMD, KLD; for pions also the resetting critic, re-initialised at every
  epoch start), then ``pp_epochs`` of the Post Processor with the BIB-AE frozen: MSE for
  ``pp_mse_epochs``, then MSE + the sorted-kernel MMD (+ for pions a second, coarser MMD
  kernel, MSE + MAE of the sorted cell vectors and the batch-mean comparison).

The run folder holds config.yaml, weights.pt (generator / BIB-AE with Post Processor),
for the BIB-AE latents.npy (encoded training latents for KDE sampling), checkpoints and logs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from lightning import seed_everything
from torch.utils.data import DataLoader, TensorDataset

from hepgen.config import merge_config, read_config, to_plain
from hepgen.data.calo import read_showers
from hepgen.errors import OptionError
from hepgen.metrics.grid import HIT_CUTS
from hepgen.models.assemblies.grids import (GridSurrogate, build_grid_networks, gaussian_mmd, grid_config,
                                            reset_parameters, sorted_kernel_mmd)
from hepgen.models.blocks.gan import gradient_penalty
from hepgen.training.ema import warm_ema
from hepgen.training.fit import fit_stage
from hepgen.training.modules import TrainingModule, schedule_options
from hepgen.training.run import check_run_options


def _step(opt, loss, module):
    opt.zero_grad()
    module.manual_backward(loss)
    opt.step()


class GridGANModule(TrainingModule):
    def __init__(self, networks: dict, loss: str = "bce", lr: float = 1e-4, lr_gen: float = 1e-4, betas=(0.5, 0.999),
                 critic_steps: int = 1, gp_weight: float = 10.0, kappa: float = 0.0, ema_decay: float | None = 0.999,
                 **training):
        super().__init__(schedule_options(training))
        if loss not in ("bce", "wgan-gp"):
            raise OptionError(f"unknown grid GAN loss {loss!r}; choose bce or wgan-gp")
        self.automatic_optimization = False
        self.generator, self.critic = networks["generator"], networks["critic"]
        self.constrainer = networks.get("constrainer")
        self.loss_name, self.lr, self.lr_gen, self.betas = loss, lr, lr_gen, tuple(betas)
        self.critic_steps, self.gp_weight, self.kappa = max(1, int(critic_steps)), gp_weight, kappa
        self.latent = self.generator.fc.in_features - 1
        self.ema = warm_ema(self.generator, ema_decay)

    def sampled(self):
        return self.generator

    def configure_optimizers(self):
        opts = [torch.optim.Adam(self.generator.parameters(), lr=self.lr_gen, betas=self.betas),
                torch.optim.Adam(self.critic.parameters(), lr=self.lr, betas=self.betas)]
        if self.constrainer is not None:
            opts.append(torch.optim.Adam(self.constrainer.parameters(), lr=self.lr, betas=self.betas))
        return self.with_schedule(*opts)

    def training_step(self, batch, batch_idx):
        x, c = batch
        opts = self.optimizers()
        opt_g, opt_c = opts[0], opts[1]
        z = torch.randn(len(x), self.latent, device=x.device)
        with torch.no_grad():
            fake = self.generator(z, c)
        real_s, fake_s = self.critic(x, c), self.critic(fake, c)
        if self.loss_name == "wgan-gp":
            loss_c = fake_s.mean() - real_s.mean() + gradient_penalty(self.critic, x, fake, c, self.gp_weight)
        else:
            loss_c = F.softplus(-real_s).mean() + F.softplus(fake_s).mean()
        _step(opt_c, loss_c, self)
        self.log("critic_loss", loss_c, prog_bar=True, batch_size=len(x))
        if self.constrainer is not None:
            loss_e = F.mse_loss(self.constrainer(x), c[:, 0])
            _step(opts[2], loss_e, self)
            self.log("constrainer_loss", loss_e, batch_size=len(x))
        if batch_idx % self.critic_steps == 0:
            self.critic.requires_grad_(False)
            fake = self.generator(torch.randn(len(x), self.latent, device=x.device), c)
            score = self.critic(fake, c)
            loss_g = -score.mean() if self.loss_name == "wgan-gp" else F.softplus(-score).mean()
            if self.constrainer is not None and self.kappa:
                self.constrainer.requires_grad_(False)
                loss_g = loss_g + self.kappa * (self.constrainer(fake) - c[:, 0]).abs().mean()
                self.constrainer.requires_grad_(True)
            _step(opt_g, loss_g, self)
            self.critic.requires_grad_(True)
            self.update_ema()
            self.log("generator_loss", loss_g, prog_bar=True, batch_size=len(x))


class BIBAEModule(TrainingModule):
    """The BIB-AE's training (seed 001 L1795-1856, appendix A).

    Per batch a step of the combined difference critic -- "real" (x, 0) against "fake"
    (x', x - x'), WGAN-GP -- (and of the resetting critic for pions) and of the latent
    critic (N(0, 1) against q(z|x), at ``lr_latent_critic``); every ``critic_steps``-th
    batch a step of encoder + decoder on adv x (critic) + latent_adv x (latent critic) +
    kld x KLD + mmd x latent MMD. After ``epochs`` the BIB-AE is frozen and the Post
    Processor trains (:meth:`_post_loss`). The learning rates follow the run's schedule
    (the seed: x ``lr_decay`` after every epoch).

    The Post Processor learns on decodes of z = mu + sigma eps (the posterior), or, with
    ``pp_latent_noise`` (set to the KDE's bandwidth when the sampler draws latents from the
    KDE), of z = mu + pp_latent_noise eps: the inputs it will see when sampling. With a
    nearly collapsed latent the two differ: on the CPU photon run sigma was 0.9 against a
    spread of mu of 0.13, posterior decodes held 11 % more energy below 25 GeV than the
    sampler's, and a Post Processor calibrated on them left sampled showers 17 % short.
    """

    def __init__(self, networks: dict, epochs: int = 50, pp_epochs: int = 20, pp_mse_epochs: int = 5,
                 lr: float = 1e-4, lr_latent_critic: float | None = None, betas=(0.5, 0.9), kld: float = 0.05,
                 mmd: float = 100.0, latent_adv: float = 1.0, adv: float = 1.0, gp_weight: float = 10.0,
                 critic_steps: int = 1, mmd_windows=(100, 50), mmd_alpha: float = 200.0,
                 mmd_alpha2: float | None = None, pp_mmd: float = 1.0, pp_sorted: float = 0.0,
                 pp_batch_mean: float = 0.0, pp_top: int = 2000, pp_energy: float = 0.0, pp_hits: float = 0.0,
                 hit_cut: float = 0.0, pp_latent_noise: float | None = None, **training):
        super().__init__(schedule_options(training))
        self.automatic_optimization = False
        self.bibae, self.critic, self.latent_critic = networks["bibae"], networks["critic"], networks["latent_critic"]
        self.reset_critic = networks.get("reset_critic")
        self.pp = dict(mmd=float(pp_mmd), mmd_alpha2=mmd_alpha2, sorted=float(pp_sorted),
                       batch_mean=float(pp_batch_mean), top=int(pp_top), energy=float(pp_energy),
                       hits=float(pp_hits), cut=float(hit_cut), latent_noise=pp_latent_noise)
        self.epochs, self.pp_epochs, self.pp_mse_epochs = int(epochs), int(pp_epochs), int(pp_mse_epochs)
        self.lr, self.betas = lr, tuple(betas)
        self.lr_latent_critic = float(lr if lr_latent_critic is None else lr_latent_critic)
        self.critic_steps = max(1, int(critic_steps))
        self.w = dict(kld=kld, mmd=mmd, latent_adv=latent_adv, adv=adv)
        self.gp_weight, self.mmd_windows, self.mmd_alpha = gp_weight, tuple(mmd_windows), mmd_alpha

    def sampled(self):
        return self.bibae

    def configure_optimizers(self):
        ae = list(self.bibae.encoder.parameters()) + list(self.bibae.decoder.parameters())
        opts = [torch.optim.Adam(ae, lr=self.lr, betas=self.betas),
                torch.optim.Adam(self.critic.parameters(), lr=self.lr, betas=self.betas),
                torch.optim.Adam(self.latent_critic.parameters(), lr=self.lr_latent_critic, betas=self.betas),
                torch.optim.Adam(self.bibae.post.parameters(), lr=self.lr, betas=self.betas)]
        if self.reset_critic is not None:
            opts.append(torch.optim.Adam(self.reset_critic.parameters(), lr=self.lr, betas=self.betas))
        return self.with_schedule(*opts)

    def on_train_epoch_start(self):
        """The resetting critic (seed 001 L2054-2066) starts every BIB-AE epoch afresh:
        new weights and an empty optimiser state."""
        if self.reset_critic is not None and self.current_epoch < self.epochs:
            reset_parameters(self.reset_critic)
            self.optimizers()[4].optimizer.state.clear()

    def _critic_loss(self, critic, perfect, diff, c):
        return critic(diff, c).mean() - critic(perfect, c).mean() + gradient_penalty(critic, perfect, diff, c,
                                                                                     self.gp_weight)

    def _post_loss(self, out, x):
        """MSE, then (after ``pp_mse_epochs``) + pp_mmd x the sorted-kernel MMD(s) on the
        ``pp_top`` most energetic cells, the sorted-vector MSE + MAE and the batch-mean
        comparison (L2072-2082, appendix A), and the per-shower terms of :meth:`_shower_terms`."""
        loss = F.mse_loss(out, x)
        if self.current_epoch < self.epochs + self.pp_mse_epochs:
            return loss
        for alpha in (self.mmd_alpha, self.pp["mmd_alpha2"]):  # pions: a second, coarser kernel
            if alpha:
                loss = loss + self.pp["mmd"] * sorted_kernel_mmd(x, out, *self.mmd_windows, alpha=float(alpha),
                                                                 top=self.pp["top"])
        if self.pp["sorted"]:
            so, sx = out.flatten(1).sort(1).values, x.flatten(1).sort(1).values
            loss = loss + self.pp["sorted"] * (F.mse_loss(so, sx) + F.l1_loss(so, sx))
        if self.pp["batch_mean"]:
            loss = loss + self.pp["batch_mean"] * F.mse_loss(out.mean(0), x.mean(0))
        terms = self._shower_terms(out, x)
        self.log("pp_shower_terms", terms.detach(), batch_size=len(x))
        return loss + terms

    def _shower_terms(self, out, x):
        """pp_energy x (log E_vis' - log E_vis)^2 + pp_hits x (log n' - log n)^2 per shower,
        E_vis and n counted above ``hit_cut`` (the evaluation's half MIP) through a soft step
        of width cut / 10, so that cells crossing the cut carry a gradient.

        Not in the seed: its Post Processor sees the cell spectrum only (MSE and the sorted-
        kernel MMD). On the CPU photon run that left the response E_vis / E_inc too flat in
        E_inc (0.71 of the reference's at 10-19 GeV, 1.08 at 91-100 GeV): the MSE is dominated
        by the large high-energy showers, and the MMD saw every cell of a 15 GeV shower but
        only the top 2000 of a 95 GeV one. These terms compare each shower with its own input."""
        if not (self.pp["energy"] or self.pp["hits"]):
            return out.new_zeros(())
        cut = self.pp["cut"]

        def step(v):
            return torch.sigmoid((v - cut) / (0.1 * cut)) if cut > 0 else (v > 0).to(v.dtype)

        so, sx = step(out.flatten(1)), step(x.flatten(1))
        loss = out.new_zeros(())
        if self.pp["energy"]:
            e_out, e_x = (out.flatten(1) * so).sum(1), (x.flatten(1) * sx).sum(1)
            loss = loss + self.pp["energy"] * (torch.log1p(e_out) - torch.log1p(e_x)).pow(2).mean()
        if self.pp["hits"]:
            loss = loss + self.pp["hits"] * (torch.log1p(so.sum(1)) - torch.log1p(sx.sum(1))).pow(2).mean()
        return loss

    def training_step(self, batch, batch_idx):
        x, c = batch
        opt_ae, opt_c, opt_l, opt_pp, *opt_rc = self.optimizers()
        if self.current_epoch >= self.epochs:  # the Post Processor, BIB-AE frozen
            with torch.no_grad():
                mu, logvar = self.bibae.encoder(x, c)
                width = (0.5 * logvar).exp() if self.pp["latent_noise"] is None else self.pp["latent_noise"]
                recon = self.bibae.decode(mu + torch.randn_like(mu) * width, c, post=False)
            out = self.bibae.post(recon, c)
            loss = self._post_loss(out, x)
            _step(opt_pp, loss, self)
            self.log("pp_loss", loss, prog_bar=True, batch_size=len(x))
            return
        # critics: the difference critic tells (x, 0) from (x', x - x'); the latent critic N(0, 1) from q(z|x)
        with torch.no_grad():
            recon, mu, logvar, z = self.bibae(x, c)
        perfect = torch.stack([x, torch.zeros_like(x)], 1)
        diff = torch.stack([recon, x - recon], 1)
        loss_c = self._critic_loss(self.critic, perfect, diff, c)
        _step(opt_c, loss_c, self)
        if self.reset_critic is not None:
            _step(opt_rc[0], self._critic_loss(self.reset_critic, perfect, diff, c), self)
        prior = torch.randn_like(z)
        loss_l = F.softplus(-self.latent_critic(prior)).mean() + F.softplus(self.latent_critic(z)).mean()
        _step(opt_l, loss_l, self)
        self.log_dict({"difference_critic": loss_c, "latent_critic": loss_l}, prog_bar=True, batch_size=len(x))
        if batch_idx % self.critic_steps:
            return
        # encoder + decoder
        critics = [self.critic, self.latent_critic] + ([self.reset_critic] if self.reset_critic is not None else [])
        for net in critics:
            net.requires_grad_(False)
        recon, mu, logvar, z = self.bibae(x, c)
        pair = torch.stack([recon, x - recon], 1)
        adv = -self.critic(pair, c).mean()
        if self.reset_critic is not None:
            adv = adv - self.reset_critic(pair, c).mean()
        lat = F.softplus(-self.latent_critic(z)).mean()
        kld = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1).mean()
        mmd = gaussian_mmd(z, torch.randn_like(z))
        loss = self.w["adv"] * adv + self.w["latent_adv"] * lat + self.w["kld"] * kld + self.w["mmd"] * mmd
        _step(opt_ae, loss, self)
        for net in critics:
            net.requires_grad_(True)
        self.log_dict({"bibae_loss": loss, "kld": kld, "latent_mmd": mmd,
                       "energy_ratio": (recon.flatten(1).sum(1) / x.flatten(1).sum(1).clamp(min=1e-6)).mean()},
                      batch_size=len(x))


def load_pretrained_bibae(nets: dict, folder, cfg: dict) -> None:
    """Start from the encoder and decoder of a finished BIB-AE run (``training.pretrained``:
    its folder); the Post Processor starts afresh as the identity. With ``epochs: 0`` only a
    new Post Processor trains -- the seed's order (BIB-AE first, then its Post Processor)
    with the first stage taken from an earlier run."""
    if cfg["model"] != "bib-ae":
        raise OptionError(f"training.pretrained: only the bib-ae starts from a finished run, not {cfg['model']}")
    folder = Path(folder)
    if not (folder / GridSurrogate.WEIGHTS).exists() or not (folder / "config.yaml").exists():
        raise OptionError(f"training.pretrained: {folder} is not a finished BIB-AE run (no config.yaml + weights.pt)")
    old = yaml.safe_load((folder / "config.yaml").read_text())
    if old.get("model") != "bib-ae" or old.get("geometry") != cfg["geometry"]:
        raise OptionError(f"training.pretrained: {folder} holds {old.get('model')} on {old.get('geometry')}, "
                          f"not bib-ae on {cfg['geometry']}")
    state = torch.load(folder / GridSurrogate.WEIGHTS, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("post.")}
    try:
        missing, _ = nets["bibae"].load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes differ: another network section
        raise OptionError(f"training.pretrained: the network of {folder} differs from this config's") from err
    lacking = [k for k in missing if not k.startswith("post.")]
    if lacking:
        raise OptionError(f"training.pretrained: {folder} lacks {', '.join(lacking)}")


def train_grid_model(model: str, data: str | os.PathLike, out: str | os.PathLike, config=None,
                     max_epochs: int | None = None, max_time: float | None = None, seed: int = 0,
                     resume: bool = False, progress: bool = True, override: dict | None = None,
                     devices="auto", num_nodes: int = 1, num_showers: int | None = None) -> Path:
    """Train ``gan-3d``, ``wgan-3d`` or ``bib-ae`` on grid showers; returns the run folder.
    ``max_epochs`` replaces ``training.epochs`` (for the BIB-AE, the Post Processor's
    ``pp_epochs`` follow)."""
    out = check_run_options(out, resume, max_epochs, max_time)
    sample = read_showers(data, num_showers=num_showers)
    if resume and (out / "config.yaml").exists():
        cfg = yaml.safe_load((out / "config.yaml").read_text())
    else:
        cfg = grid_config(model, sample.geometry.name, merge_config(read_config(config), override))
    training = cfg["training"]
    if max_epochs is not None:
        training["epochs"] = int(max_epochs)
    epochs = int(training.get("epochs", 50))
    total = epochs + (int(training.get("pp_epochs", 0)) if model == "bib-ae" else 0)
    training.setdefault("schedule_epochs", total)
    e = sample.incident_energies[:, 0].astype(np.float64)
    cfg.update(training_data=str(data), training_showers=len(sample), e_range=[float(e.min()), float(e.max())])
    seed_everything(seed, workers=True, verbose=False)
    geo = sample.geometry
    showers = sample.showers
    cut = float(training.get("cell_cut", 0.0))
    if cut > 0:  # pions: cells below 0.1 MIP removed for the BIB-AE (seed 001 L2015)
        showers = np.where(showers < cut, 0.0, showers)
    x = torch.as_tensor(showers.reshape(len(sample), *geo.grid_shape), dtype=torch.float32)
    c = torch.as_tensor(e / cfg["e_range"][1], dtype=torch.float32)[:, None]
    if model == "bib-ae":
        training.setdefault("hit_cut", HIT_CUTS.get(geo.name, 0.0))
        if cfg.get("sampler", {}).get("latent") == "kde":  # the Post Processor learns on what it will see
            training.setdefault("pp_latent_noise", GridSurrogate.KDE_BANDWIDTH)
    nets = build_grid_networks(cfg)
    if training.get("pretrained"):
        load_pretrained_bibae(nets, training["pretrained"], cfg)
    module = BIBAEModule(nets, **training) if model == "bib-ae" else GridGANModule(nets, **training)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_plain(cfg), sort_keys=False))
    loader = DataLoader(TensorDataset(x, c), batch_size=min(int(training.get("batch_size", 64)), len(x)),
                        shuffle=True, drop_last=True)
    fit_stage(module, loader, out, "grid", total, max_time, resume, progress, devices, num_nodes)
    net = module.sampling_network().cpu().eval()
    latents = None
    if model == "bib-ae":
        with torch.no_grad():
            mu = torch.cat([net.encoder(x[i:i + 256], c[i:i + 256])[0] for i in range(0, len(x), 256)])
        latents = torch.cat([mu, c], 1).numpy()  # the energy label beside each latent: a joint KDE
    GridSurrogate(cfg, net, latents).save(out)
    return out


def calibrate_grid_run(run: str | os.PathLike, data: str | os.PathLike | None = None, num: int = 5000,
                       seed: int = 7, progress: bool = True) -> dict:
    """Fit the per-shower response calibration of a finished grid run
    (:class:`hepgen.models.calibration.ResponseCalibration`) and make it the run's default
    (``sampler.calibrate: response`` in its config.yaml): ``num`` showers generated at the
    incident energies of randomly chosen training showers against all training showers of
    ``data`` (default: the run's training file). Returns the largest per-bin deviation of
    mu90 / sigma90 of the response from the training showers' before and after (on the
    fitting sample itself; the bench measures it on fresh showers)."""
    from hepgen.errors import InputFileError
    from hepgen.metrics.grid import energy_bin_edges, per_energy_mu90_sigma90
    from hepgen.models.calibration import ResponseCalibration, visible_response

    run = Path(run)
    if not (run / "config.yaml").is_file() or not (run / GridSurrogate.WEIGHTS).is_file():
        raise InputFileError(f"{run}: not a finished grid run (no config.yaml + {GridSurrogate.WEIGHTS})")
    surrogate = GridSurrogate.load(run)
    data = data or surrogate.cfg.get("training_data")
    if not data or not Path(data).is_file():
        raise InputFileError(f"--data: training file {data} not found")
    ref = read_showers(data)
    if ref.geometry.name != surrogate.geometry.name:
        raise OptionError(f"--data: {data} holds {ref.geometry.name} showers, the run is on {surrogate.geometry.name}")
    if num < 20:
        raise OptionError(f"--num must be at least 20, got {num}")
    cut = HIT_CUTS.get(ref.geometry.name, 0.0)
    e_ref = ref.incident_energies[:, 0].astype(np.float64)
    pick = np.random.default_rng(seed).choice(len(e_ref), size=num, replace=num > len(e_ref))
    gen = surrogate.sample(num, seed=seed, energies=e_ref[pick], progress=progress, calibrate=False)
    e_gen = gen.incident_energies[:, 0].astype(np.float64)
    calibration = ResponseCalibration.fit(gen.showers, e_gen, ref.showers, e_ref, cut)
    r_ref = visible_response(ref.showers, e_ref, cut)
    edges = energy_bin_edges(e_ref)
    report = {}
    for tag, showers in (("before", gen.showers), ("after", calibration.apply(gen.showers, e_gen))):
        st = per_energy_mu90_sigma90(r_ref, e_ref, visible_response(showers, e_gen, cut), e_gen, edges)
        report[tag] = {stat: st.max_dev(stat)[0] for stat in ("mu90", "sigma90")}
    calibration.save(run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg.setdefault("sampler", {})["calibrate"] = "response"
    cfg["calibration"] = {"data": str(data), "generated": int(num), "reference": int(len(e_ref)), "seed": int(seed)}
    (run / "config.yaml").write_text(yaml.safe_dump(to_plain(cfg), sort_keys=False))
    return report
