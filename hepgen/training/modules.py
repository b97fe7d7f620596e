"""Lightning modules: the training logic, kept apart from the networks.

* :class:`GANModule` -- adversarial training with manual optimisation: critic step(s)
  with LSGAN or WGAN-GP (gradient penalty), generator step with mean-field matching,
  AdamW for both (beta1 = 0 as in the thesis), EMA of the generator weights.
* :class:`FlowMatchingModule` -- conditional flow matching (optionally OT-CFM) of a
  velocity network, AdamW, EMA of the weights.
* :class:`FlowNLLModule` -- maximum likelihood of the flattened-cloud flows, with the
  optional mass constraint of NF(cc).

``sampling_network()`` returns the network to sample with (the EMA copy when there is
one); both modules run unchanged on CPU, one GPU or several (DDP).
"""

from __future__ import annotations

import torch
from lightning import LightningModule
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from hepgen.errors import OptionError
from hepgen.models.blocks.cfm import FlowMatching
from hepgen.models.blocks.gan import GAN_LOSSES, gradient_penalty, mean_field_matching


def _ema(network: torch.nn.Module, decay: float | None):
    if not decay:
        return None
    return AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class GANModule(LightningModule):
    def __init__(
        self,
        generator: torch.nn.Module,
        critic: torch.nn.Module,
        loss: str = "lsgan",
        lr: float = 1e-4,
        lr_gen: float = 1e-4,
        betas=(0.0, 0.999),
        weight_decay: float = 0.01,
        critic_steps: int = 1,
        mean_field_weight: float = 1.0,
        gp_weight: float = 10.0,
        ema_decay: float | None = 0.999,
        **_,
    ):
        super().__init__()
        if loss not in GAN_LOSSES:
            raise OptionError(f"unknown GAN loss {loss!r}; choose from {', '.join(GAN_LOSSES)}")
        self.automatic_optimization = False
        self.generator, self.critic = generator, critic
        self.ema = _ema(generator, ema_decay)
        self.loss_name = loss
        self.critic_loss, self.generator_loss = GAN_LOSSES[loss]
        self.lr, self.lr_gen, self.betas, self.weight_decay = lr, lr_gen, tuple(betas), weight_decay
        self.critic_steps = max(1, int(critic_steps))
        self.mean_field_weight = mean_field_weight
        self.gp_weight = gp_weight

    def sampling_network(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.generator

    def configure_optimizers(self):
        opt_g = torch.optim.AdamW(self.generator.parameters(), lr=self.lr_gen, betas=self.betas,
                                  weight_decay=self.weight_decay)
        opt_c = torch.optim.AdamW(self.critic.parameters(), lr=self.lr, betas=self.betas,
                                  weight_decay=self.weight_decay)
        return opt_g, opt_c

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
            fake = self.generator(torch.randn_like(x) * m, mask)
            fake_score, fake_field = self.critic(fake, mask)
            loss_g = self.generator_loss(fake_score)
            if self.mean_field_weight:
                loss_g = loss_g + self.mean_field_weight * mean_field_matching(real_field.detach(), fake_field)
            opt_g.zero_grad()
            self.manual_backward(loss_g)
            opt_g.step()
            if self.ema is not None:
                self.ema.update_parameters(self.generator)
            self.log("generator_loss", loss_g, prog_bar=True, batch_size=len(x))
        return loss_c


class FlowMatchingModule(LightningModule):
    def __init__(
        self,
        velocity: torch.nn.Module,
        lr: float = 1e-4,
        betas=(0.9, 0.999),
        weight_decay: float = 0.01,
        ot: bool = False,
        ema_decay: float | None = 0.999,
        **_,
    ):
        super().__init__()
        self.velocity = velocity
        self.ema = _ema(velocity, ema_decay)
        self.fm = FlowMatching(ot=ot)
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay

    def sampling_network(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.velocity

    def configure_optimizers(self):
        return torch.optim.AdamW(self.velocity.parameters(), lr=self.lr, betas=self.betas,
                                 weight_decay=self.weight_decay)

    def training_step(self, batch, batch_idx):
        x, mask, *cond = batch  # an optional per-cloud condition (e.g. the shower energy)
        loss = self.fm.loss(self.velocity, x, mask, cond=cond[0] if cond else None)
        self.log("cfm_loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None:
            self.ema.update_parameters(self.velocity)


class NLLModule(LightningModule):
    """Maximum likelihood of a ``zuko`` flow on batches ``(y,)`` or ``(y, context)``; the
    logged loss is the NLL per dimension."""

    def __init__(self, flow: torch.nn.Module, lr: float = 1e-4, weight_decay: float = 0.0, **_):
        super().__init__()
        self.flow, self.lr, self.weight_decay = flow, lr, weight_decay

    def sampling_network(self) -> torch.nn.Module:
        return self.flow

    def configure_optimizers(self):
        return torch.optim.AdamW(self.flow.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def training_step(self, batch, batch_idx):
        y, *c = batch
        nll = -self.flow(c[0] if c else None).log_prob(y).mean() / y.shape[1]
        self.log("nll_per_dim", nll, prog_bar=True, batch_size=len(y))
        return nll


class FlowNLLModule(LightningModule):
    """NF / NF(c) / NF(cc): maximum likelihood on the flattened cloud (seed 000 sec. 5.4.1).

    Padded slots get Gaussian noise of variance 1e-8 so the flow can spread them; with
    ``mass_weight`` > 0 (NF(cc)) the flow is also sampled at the training masses and
    lambda_m |m_cond - m(x_gen)|^2 is added (eq. 5.10-5.11), which needs the inverse
    preprocessing in torch (``inverse_scaler``).
    """

    def __init__(self, flow: torch.nn.Module, lr: float = 1e-4, betas=(0.9, 0.999), weight_decay: float = 0.01,
                 mass_weight: float = 0.0, mass_mean: float = 0.0, mass_std: float = 1.0, inverse_scaler=None,
                 pad_std: float = 1e-4, **_):
        super().__init__()
        self.flow = flow
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.mass_weight, self.mass_mean, self.mass_std = mass_weight, mass_mean, mass_std
        self.inverse_scaler = inverse_scaler
        self.pad_std = pad_std
        if mass_weight and inverse_scaler is None:
            raise OptionError("the mass constraint needs the inverse preprocessing")

    def sampling_network(self) -> torch.nn.Module:
        return self.flow

    def configure_optimizers(self):
        return torch.optim.AdamW(self.flow.parameters(), lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)

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


def make_module(family: str, networks: dict, training: dict, **extra) -> LightningModule:
    if family == "gan":
        return GANModule(networks["generator"], networks["critic"], **training)
    if family == "cfm":
        return FlowMatchingModule(networks["velocity"], **training)
    if family == "nf":
        return FlowNLLModule(networks["flow"], **training, **extra)
    raise OptionError(f"unknown model family {family!r}")
