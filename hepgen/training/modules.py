"""Lightning modules: the training logic, kept apart from the networks.

* :class:`TrainingModule` -- what every hepgen module shares: the warm EMA of the
  network that samples (:mod:`hepgen.training.ema`), AdamW and the run's learning-rate
  schedule over its planned budget (:mod:`hepgen.training.schedule`).
* :class:`GANModule` -- adversarial training with manual optimisation: critic step(s)
  with LSGAN or WGAN-GP (gradient penalty), generator step with mean-field matching
  (switched off after ``mean_field_steps`` generator steps if set, as in the public MDMA code;
  the jet assembly keeps it on: see ``hepgen.models.assemblies.jets``),
  critic frozen during the generator step.
* :class:`FlowMatchingModule` -- conditional flow matching (optionally OT-CFM).
* :class:`NLLModule` / :class:`FlowNLLModule` -- maximum likelihood of ``zuko`` flows /
  of the flattened-cloud flows with the optional mass constraint of NF(cc);
  :class:`LatentNLLModule` -- the INN of the VAE+INN on draws from the encoder.
* :class:`PointFlowModule` -- IPF / PF / APF: maximum likelihood of every particle given
  its jet's shape latent, with the adversarial term on the shape network for the APF.
* :class:`VAEModule` -- the beta-VAE loss (:func:`hepgen.models.blocks.vae.beta_vae_loss`).

``sampling_network()`` returns the network to sample with (the EMA copy when there is
one); every module runs unchanged on CPU, one GPU or several (DDP).
"""

from __future__ import annotations

import warnings

import torch
from lightning import LightningModule

from hepgen.errors import OptionError
from hepgen.models.blocks.cfm import FlowMatching
from hepgen.models.blocks.gan import GAN_LOSSES, gradient_penalty, mean_field_matching
from hepgen.training.ema import warm_ema
from hepgen.training.schedule import make_scheduler, planned_steps

SCHEDULE_KEYS = ("schedule", "warmup", "final_lr_fraction", "schedule_epochs", "lr_decay")


class TrainingModule(LightningModule):
    """Base of the hepgen modules: warm EMA, optimisers with the run's schedule.

    Args:
        training: the run's ``training`` section; ``schedule``, ``warmup``,
            ``final_lr_fraction`` and ``schedule_epochs`` are read here.
    """

    def __init__(self, training: dict | None = None):
        super().__init__()
        training = training or {}
        self.schedule_cfg = {k: training[k] for k in SCHEDULE_KEYS if k in training}
        self.ema = None
        self.steps_per_epoch = None  # batches per epoch, set by the trainer before fit

    def set_steps_per_epoch(self, data) -> None:
        """Record the batches per epoch of ``data`` (a DataLoader or a data module)."""
        loader = data.train_dataloader() if hasattr(data, "train_dataloader") else data
        self.steps_per_epoch = len(loader)

    def sampled(self) -> torch.nn.Module:  # the network the EMA follows
        raise NotImplementedError

    def sampling_network(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.sampled()

    def with_schedule(self, *optimizers):
        """Lightning's return value of ``configure_optimizers`` for ``optimizers``, each
        with a per-step scheduler unless the schedule is constant."""
        steps = planned_steps(self.trainer, self.schedule_cfg, self.steps_per_epoch)
        schedulers = [make_scheduler(o, self.schedule_cfg, steps, self.steps_per_epoch) for o in optimizers]
        if all(s is None for s in schedulers):
            return optimizers[0] if len(optimizers) == 1 else optimizers
        return list(optimizers), [{"scheduler": s, "interval": "step"} for s in schedulers]

    def update_ema(self):
        if self.ema is not None:
            self.ema.update_parameters(self.sampled())

    def step_schedulers(self):
        """One step of every learning-rate scheduler. The schedules count batches, so an
        optimiser that has not stepped yet (a generator between critic steps, a stage that
        starts later) is still on the common clock: torch's warning about it is silenced."""
        schedulers = self.lr_schedulers()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
                scheduler.step()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        """Modules with manual optimisation step their schedulers here, once per batch
        (Lightning steps them only under automatic optimisation): every such module gets
        its schedule without having to remember the call."""
        if not self.automatic_optimization:
            self.step_schedulers()


def schedule_options(kwargs: dict) -> dict:
    """The schedule keys of a training section (what :class:`TrainingModule` reads)."""
    return {k: kwargs[k] for k in SCHEDULE_KEYS if k in kwargs}


class GANModule(TrainingModule):
    def __init__(
        self,
        generator: torch.nn.Module,
        critic: torch.nn.Module,
        loss: str = "lsgan",
        lr: float = 1e-4,
        lr_gen: float = 1e-4,
        betas=(0.0, 0.999),
        weight_decay: float = 0.01,
        weight_decay_gen: float | None = None,
        critic_steps: int = 1,
        mean_field_weight: float = 1.0,
        mean_field_steps: int | None = None,
        gp_weight: float = 10.0,
        ema_decay: float | None = 0.999,
        **training,
    ):
        super().__init__(schedule_options(training))
        if loss not in GAN_LOSSES:
            raise OptionError(f"unknown GAN loss {loss!r}; choose from {', '.join(GAN_LOSSES)}")
        self.automatic_optimization = False
        self.generator, self.critic = generator, critic
        self.ema = warm_ema(generator, ema_decay)
        self.loss_name = loss
        self.critic_loss, self.generator_loss = GAN_LOSSES[loss]
        self.lr, self.lr_gen, self.betas, self.weight_decay = lr, lr_gen, tuple(betas), weight_decay
        self.weight_decay_gen = weight_decay if weight_decay_gen is None else weight_decay_gen
        self.critic_steps = max(1, int(critic_steps))
        self.mean_field_weight = mean_field_weight
        self.mean_field_steps = None if mean_field_steps is None else int(mean_field_steps)
        self.gp_weight = gp_weight
        # generator steps taken, in the checkpoint (the mean-field switch-off resumes exactly)
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))

    def sampled(self):
        return self.generator

    def configure_optimizers(self):
        opt_g = torch.optim.AdamW(self.generator.parameters(), lr=self.lr_gen, betas=self.betas,
                                  weight_decay=self.weight_decay_gen)
        opt_c = torch.optim.AdamW(self.critic.parameters(), lr=self.lr, betas=self.betas,
                                  weight_decay=self.weight_decay)
        return self.with_schedule(opt_g, opt_c)

    def mean_field_active(self) -> bool:
        if not self.mean_field_weight:
            return False
        return self.mean_field_steps is None or int(self.generator_steps) < self.mean_field_steps

    def training_step(self, batch, batch_idx):
        x, mask = batch
        opt_g, opt_c = self.optimizers()
        m = mask[..., None].to(x.dtype)

        with torch.no_grad():
            fake = self.generator(torch.randn_like(x) * m, mask)
        real_score, real_field = self.critic(x, mask)
        fake_score, _ = self.critic(fake, mask)
        loss_c = self.critic_loss(real_score, fake_score)
        if self.loss_name == "wgan-gp":
            loss_c = loss_c + gradient_penalty(self.critic, x, fake, mask, self.gp_weight)
        opt_c.zero_grad()
        self.manual_backward(loss_c)
        opt_c.step()
        self.log("critic_loss", loss_c, prog_bar=True, batch_size=len(x))

        if batch_idx % self.critic_steps == 0:
            self.critic.requires_grad_(False)  # no critic gradients during the generator step
            fake = self.generator(torch.randn_like(x) * m, mask)
            fake_score, fake_field = self.critic(fake, mask)
            loss_g = self.generator_loss(fake_score)
            if self.mean_field_active():
                loss_g = loss_g + self.mean_field_weight * mean_field_matching(real_field.detach(), fake_field)
            opt_g.zero_grad()
            self.manual_backward(loss_g)
            opt_g.step()
            self.critic.requires_grad_(True)
            self.generator_steps += 1
            self.update_ema()
            self.log("generator_loss", loss_g, prog_bar=True, batch_size=len(x))
        return loss_c


class FlowMatchingModule(TrainingModule):
    def __init__(
        self,
        velocity: torch.nn.Module,
        lr: float = 1e-4,
        betas=(0.9, 0.999),
        weight_decay: float = 0.01,
        ot: bool = False,
        ema_decay: float | None = 0.999,
        **training,
    ):
        super().__init__(schedule_options(training))
        self.velocity = velocity
        self.ema = warm_ema(velocity, ema_decay)
        self.fm = FlowMatching(ot=ot)
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay

    def sampled(self):
        return self.velocity

    def configure_optimizers(self):
        return self.with_schedule(torch.optim.AdamW(self.velocity.parameters(), lr=self.lr, betas=self.betas,
                                                    weight_decay=self.weight_decay))

    def training_step(self, batch, batch_idx):
        x, mask, *cond = batch  # an optional per-cloud condition (e.g. the shower energy)
        loss = self.fm.loss(self.velocity, x, mask, cond=cond[0] if cond else None)
        self.log("cfm_loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.update_ema()


class NLLModule(TrainingModule):
    """Maximum likelihood of a ``zuko`` flow on batches ``(y,)`` or ``(y, context)``; the
    logged loss is the NLL per dimension."""

    def __init__(self, flow: torch.nn.Module, lr: float = 1e-4, weight_decay: float = 0.0, **training):
        super().__init__(schedule_options(training))
        self.flow, self.lr, self.weight_decay = flow, lr, weight_decay

    def sampled(self):
        return self.flow

    def configure_optimizers(self):
        return self.with_schedule(torch.optim.AdamW(self.flow.parameters(), lr=self.lr, weight_decay=self.weight_decay))

    def training_step(self, batch, batch_idx):
        y, *c = batch
        nll = -self.flow(c[0] if c else None).log_prob(y).mean() / y.shape[1]
        self.log("nll_per_dim", nll, prog_bar=True, batch_size=len(y))
        return nll


class LatentNLLModule(NLLModule):
    """The INN step of the VAE+INN (seed 002 L972: "we pass the encoder means and the
    standard deviations, as well as the energy variables to the INN"): on batches
    ``(u, mu, sigma, context)`` each step draws z ~ N(mu, sigma) afresh and maximises the
    likelihood of (u, z) given the context, as :class:`NLLModule` does."""

    def training_step(self, batch, batch_idx):
        u, mu, sigma, c = batch
        return super().training_step((torch.cat([u, mu + sigma * torch.randn_like(mu)], 1), c), batch_idx)


class VAEModule(TrainingModule):
    """A conditional beta-VAE (:class:`hepgen.models.blocks.vae.ConditionalVAE`) on
    batches ``(x, target, cond)``: the encoder reads x, the Bernoulli decoder is scored
    on target in [0, 1] (seed 002 eq. 4.8).

    Args:
        vae: the network.
        lr: learning rate (Table B.2: 1e-4, constant).
        beta: weight of the KL term (Table B.2: 1e-9).
        weight_decay: AdamW weight decay (0: Adam, as in the thesis).
        ema_decay: warm EMA of the weights for sampling (None: none, as in the thesis).
        training: the rest of the training section (the schedule keys are read).
    """

    def __init__(self, vae: torch.nn.Module, lr: float = 1e-4, beta: float = 1e-9, weight_decay: float = 0.0,
                 ema_decay: float | None = None, **training):
        super().__init__(schedule_options(training))
        if beta < 0:
            raise OptionError(f"training.beta must be non-negative, got {beta}")
        self.vae, self.lr, self.beta, self.weight_decay = vae, lr, float(beta), weight_decay
        self.ema = warm_ema(vae, ema_decay)

    def sampled(self):
        return self.vae

    def configure_optimizers(self):
        return self.with_schedule(torch.optim.AdamW(self.vae.parameters(), lr=self.lr, weight_decay=self.weight_decay))

    def training_step(self, batch, batch_idx):
        from hepgen.models.blocks.vae import beta_vae_loss

        x, target, cond = batch
        logits, mu, logvar = self.vae(x, cond)
        loss, recon, kl = beta_vae_loss(logits, target, mu, logvar, self.beta)
        self.log("vae_loss", loss, prog_bar=True, batch_size=len(x))
        self.log("reconstruction", recon, batch_size=len(x))
        self.log("kl", kl, batch_size=len(x))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.update_ema()


class FlowNLLModule(TrainingModule):
    """NF / NF(c) / NF(cc): maximum likelihood on the flattened cloud (seed 000 sec. 5.4.1).

    Padded slots get Gaussian noise of variance 1e-8 so the flow can spread them; with
    ``mass_weight`` > 0 (NF(cc)) the flow is also sampled at the training masses and
    lambda_m |m_cond - m(x_gen)|^2 is added (eq. 5.10-5.11), which needs the inverse
    preprocessing in torch (``inverse_scaler``).
    """

    def __init__(self, flow: torch.nn.Module, lr: float = 1e-4, betas=(0.9, 0.999), weight_decay: float = 0.01,
                 mass_weight: float = 0.0, mass_mean: float = 0.0, mass_std: float = 1.0, inverse_scaler=None,
                 pad_std: float = 1e-4, **training):
        super().__init__(schedule_options(training))
        self.flow = flow
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.mass_weight, self.mass_mean, self.mass_std = mass_weight, mass_mean, mass_std
        self.inverse_scaler = inverse_scaler
        self.pad_std = pad_std
        if mass_weight and inverse_scaler is None:
            raise OptionError("the mass constraint needs the inverse preprocessing")

    def sampled(self):
        return self.flow

    def configure_optimizers(self):
        return self.with_schedule(torch.optim.AdamW(self.flow.parameters(), lr=self.lr, betas=self.betas,
                                                    weight_decay=self.weight_decay))

    def training_step(self, batch, batch_idx):
        x, mask, mass = batch
        x = x + self.pad_std * torch.randn_like(x) * (~mask)[..., None]
        context = (mass - self.mass_mean) / self.mass_std if self.flow.conditional else None
        nll = -self.flow.log_prob(x, context).mean() / x[0].numel()
        loss = nll
        self.log("nll", nll, prog_bar=True, batch_size=len(x))
        if self.mass_weight:
            from hepgen.models.blocks.physics import relative_mass

            gen = self.inverse_scaler(self.flow.rsample(len(x), context))
            m_gen = relative_mass(gen * (gen[..., 2:3] >= 1e-4))
            mse = ((m_gen - mass) ** 2).mean()
            loss = loss + self.mass_weight * mse
            self.log("mass_mse", mse, batch_size=len(x))
        self.log("loss", loss, batch_size=len(x))
        return loss


class PointFlowModule(TrainingModule):
    """IPF / PF / APF (seed 000 sec. 5.4.2) on batches ``(x, mask)`` of clouds.

    The loss is the NLL per particle feature of :class:`~hepgen.models.assemblies.
    jet_networks.PointFlowNet`, every particle given z = Omega(X) of its own jet. With a
    ``critic`` (the APF) a discriminator on whole clouds (the TGAN critic) tells training
    jets from clouds sampled with the same z; the shape network alone gets the adversarial
    gradient (its objective is to make the critic fail, which it can only do by finding a z
    under which the particles are independent), with weight ``adversarial_weight``.
    After every step the latents of the batch go into the sampling bank of the network and
    of its EMA copy (each encoded by its own encoder).

    Args:
        flow: the :class:`PointFlowNet`.
        critic: the APF's cloud critic, or None (IPF, PF).
        lr, betas, weight_decay: AdamW of flow and encoder.
        lr_critic, betas_critic: Adam of the critic.
        adversarial_weight: weight of the LSGAN term on the shape network.
        ema_decay: warm EMA of the flow (None: none).
    """

    def __init__(self, flow: torch.nn.Module, critic: torch.nn.Module | None = None, lr: float = 1e-4,
                 betas=(0.9, 0.999), weight_decay: float = 0.01, lr_critic: float = 1e-4, betas_critic=(0.0, 0.999),
                 adversarial_weight: float = 1.0, ema_decay: float | None = 0.999, **training):
        super().__init__(schedule_options(training))
        if critic is not None and flow.encoder is None:
            raise OptionError("the adversarial point flow needs a shape network (network.shape_dim > 0)")
        self.flow, self.critic = flow, critic
        self.automatic_optimization = critic is None
        self.ema = warm_ema(flow, ema_decay)
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.lr_critic, self.betas_critic, self.adversarial_weight = lr_critic, tuple(betas_critic), adversarial_weight

    def sampled(self):
        return self.flow

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.flow.parameters(), lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        if self.critic is None:
            return self.with_schedule(opt)
        return self.with_schedule(opt, torch.optim.Adam(self.critic.parameters(), lr=self.lr_critic,
                                                        betas=self.betas_critic))

    def nll(self, x, mask):
        """NLL per particle feature and the batch's latents."""
        z = self.flow.encode(x, mask)
        return -self.flow.log_prob(x, mask, z).sum() / (mask.sum() * x.shape[-1]).clamp(min=1), z

    def remember(self, x, mask, z):
        self.flow.remember(z)
        if self.ema is not None and self.flow.encoder is not None:
            with torch.no_grad():
                self.ema.module.remember(self.ema.module.encode(x, mask))

    def training_step(self, batch, batch_idx):
        x, mask = batch
        if self.critic is None:
            nll, z = self.nll(x, mask)
            self.remember(x, mask, z)
            self.log("nll", nll, prog_bar=True, batch_size=len(x))
            return nll
        from hepgen.models.blocks.gan import lsgan_critic_loss, lsgan_generator_loss

        opt, opt_c = self.optimizers()
        m = mask[..., None].to(x.dtype)
        nll, z = self.nll(x, mask)
        gen = self.flow._flow(z, x.shape[:2]).transform.inv(torch.randn_like(x)) * m
        real_score, _ = self.critic(x, mask)
        fake_score, _ = self.critic(gen.detach(), mask)
        loss_c = lsgan_critic_loss(real_score, fake_score)
        opt_c.zero_grad()
        self.manual_backward(loss_c)
        opt_c.step()
        self.critic.requires_grad_(False)
        adv = lsgan_generator_loss(self.critic(gen, mask)[0])
        encoder = list(self.flow.encoder.parameters())
        adv_grads = torch.autograd.grad(adv, encoder, retain_graph=True, allow_unused=True)
        opt.zero_grad()
        self.manual_backward(nll)
        for p, g in zip(encoder, adv_grads):
            if g is not None:
                p.grad = g * self.adversarial_weight if p.grad is None else p.grad + self.adversarial_weight * g
        opt.step()
        self.critic.requires_grad_(True)
        self.remember(x, mask, z)
        self.update_ema()
        self.log("nll", nll, prog_bar=True, batch_size=len(x))
        self.log("critic_loss", loss_c, batch_size=len(x))
        self.log("adversarial_loss", adv, batch_size=len(x))
        return nll

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.critic is None:
            self.update_ema()


def make_module(family: str, networks: dict, training: dict, **extra) -> LightningModule:
    if family == "pointflow":
        return PointFlowModule(networks["flow"], networks.get("critic"), **training)
    if family == "gan":
        return GANModule(networks["generator"], networks["critic"], **training)
    if family == "cfm":
        return FlowMatchingModule(networks["velocity"], **training)
    if family == "nf":
        return FlowNLLModule(networks["flow"], **training, **extra)
    raise OptionError(f"unknown model family {family!r}")
