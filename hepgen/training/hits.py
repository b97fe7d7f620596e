"""Training of the hit-cloud diffusion model (``hepgen train ddpm-hits``).

One Lightning fit (:func:`hepgen.training.fit.fit_stage`, stage ``ddpm``) of the
v-prediction loss with the shared warm EMA and schedule (:class:`DiffusionModule`);
batches of similar multiplicity, trimmed to their largest cloud. The run folder holds
config.yaml, transform.json, multiplicity.yaml, weights.pt (the EMA network),
checkpoints/ddpm.ckpt (exact ``--resume``) and the CSV logs. :func:`distill_hits_run`
(``hepgen student RUN``) adds the progressively distilled few-step sampler (student.pt).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import yaml
from lightning import seed_everything

from hepgen.config import merge_config, read_config, to_plain
from hepgen.data.hits import read_hits
from hepgen.errors import InputFileError, InvalidDataError
from hepgen.models.assemblies.hits import (HitDenoiser, HitSurrogate, energy_condition, fit_energy_sampler,
                                           hits_config)
from hepgen.models.blocks.ddpm import Diffusion
from hepgen.models.multiplicity import MultiplicityKDE
from hepgen.training.data import JetDataModule
from hepgen.training.ema import warm_ema
from hepgen.training.fit import fit_stage
from hepgen.training.modules import TrainingModule, schedule_options
from hepgen.training.run import check_run_options
from hepgen.transforms.hits import HitTransform


class DiffusionModule(TrainingModule):
    """DDPM v-prediction loss of a point-cloud network, AdamW, warm EMA, schedule."""

    def __init__(self, net, diffusion: Diffusion, lr: float = 1e-3, weight_decay: float = 0.0,
                 ema_decay: float | None = 0.999, **training):
        super().__init__(schedule_options(training))
        self.net, self.diffusion, self.lr, self.weight_decay = net, diffusion, lr, weight_decay
        self.ema = warm_ema(net, ema_decay)

    def sampled(self):
        return self.net

    def configure_optimizers(self):
        return self.with_schedule(torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay))

    def training_step(self, batch, batch_idx):
        x, mask, *cond = batch  # cond: the per-cloud condition of a conditioned network
        loss = self.diffusion.loss(self.net, x, mask, cond[0] if cond else None)
        self.log("ddpm_loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.update_ema()


def train_hits_model(model: str, data: str | os.PathLike, out: str | os.PathLike, config=None,
                     max_epochs: int | None = None, max_time: float | None = None, seed: int = 0,
                     resume: bool = False, progress: bool = True, override: dict | None = None,
                     devices="auto", num_nodes: int = 1, num_jets: int | None = None) -> Path:
    """Train ``ddpm-hits`` on the hit clouds in ``data``; returns the run folder."""
    out = check_run_options(out, resume, max_epochs, max_time)
    if resume and (out / "config.yaml").exists():
        cfg = yaml.safe_load((out / "config.yaml").read_text())
    else:
        cfg = hits_config(model, merge_config(read_config(config), override))
    sample = read_hits(data, num_jets)
    training = cfg["training"]
    epochs = int(max_epochs or training.get("epochs", 200))
    training.setdefault("schedule_epochs", epochs)
    cfg.update(training_data=str(data), max_hits=sample.max_hits)
    seed_everything(seed, workers=True, verbose=False)
    transform = HitTransform().fit(sample.hits, sample.mask)
    x = transform.transform(sample.hits, sample.mask).astype(np.float32)
    mult = MultiplicityKDE.fit(sample.multiplicity, sample.max_hits, atom_at_max=True)
    conditioned = bool(cfg["network"].get("energy"))
    extras = (energy_condition(sample.total_energy),) if conditioned else ()
    energy = fit_energy_sampler(sample) if conditioned else None
    net = HitDenoiser(**cfg["network"])
    module = DiffusionModule(net, Diffusion(**cfg["diffusion"]), **training)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_plain(cfg), sort_keys=False))
    dm = JetDataModule(x, sample.mask, *extras, batch_size=int(training.get("batch_size", 128)), seed=seed, trim=True)
    fit_stage(module, dm, out, "ddpm", epochs, max_time, resume, progress, devices, num_nodes)
    HitSurrogate(cfg, transform, mult, module.sampling_network().cpu().eval(), energy=energy).save(out)
    return out


def distill_hits_run(run: str | os.PathLike, final_steps: int = 8, start_steps: int = 64, iterations: int = 1000,
                     batch_size: int = 64, lr: float = 1e-4, data: str | os.PathLike | None = None,
                     num_jets: int | None = 20_000, set_default: bool = True, seed: int = 0,
                     progress: bool = True) -> list[dict]:
    """Progressively distil the DDIM sampler of the ``ddpm-hits`` run ``run`` from
    ``start_steps`` to ``final_steps`` (:mod:`hepgen.training.distill`) on its training
    clouds (or ``data``), write ``student.pt`` and, with ``set_default``, make
    ``distilled`` the run's sampler. Returns the rounds' losses."""
    from hepgen.training.distill import progressive_distillation

    run = Path(run)
    surrogate = HitSurrogate.load(run)
    source = data or surrogate.cfg.get("training_data")
    if not source or not Path(source).exists():
        raise InputFileError(f"{run}: training clouds {source!r} not found; pass --data")
    sample = read_hits(source, num_jets)
    if sample.max_hits > surrogate.max_hits:
        raise InvalidDataError(f"{source}: clouds of up to {sample.max_hits} hits, the model has {surrogate.max_hits}")
    x = torch.as_tensor(surrogate.transform.transform(sample.hits, sample.mask).astype(np.float32))
    mask = torch.as_tensor(sample.mask)
    cond = torch.as_tensor(energy_condition(sample.total_energy)) if surrogate.energy is not None else None
    torch.manual_seed(seed)
    student, report = progressive_distillation(surrogate.network, surrogate.diffusion, x, mask, start_steps,
                                               final_steps, iterations, batch_size, lr, seed, progress, cond=cond)
    surrogate.student = student
    surrogate.cfg["distilled_steps"] = int(final_steps)
    surrogate.cfg["distillation"] = {"start_steps": int(start_steps), "iterations": int(iterations), "rounds": report}
    if set_default:
        surrogate.cfg["sampler"] = {**surrogate.cfg.get("sampler", {}), "method": "distilled", "steps": int(final_steps)}
    surrogate.save(run)
    return report
