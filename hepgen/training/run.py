"""``hepgen train``: fit preprocessing, train with Lightning, keep the best checkpoint.

A run folder holds everything ``hepgen sample RUN_DIR`` needs:

==================  ==========================================================
config.yaml         model, network, training and sampler settings
preprocessor.json   the fitted transform of the particle features
multiplicity.yaml   the multiplicity KDE (training multiplicities)
weights.pt          the selected (EMA) weights: lowest W1M of generated vs
                    training jets (seed 000 L2107-2115)
checkpoints/        Lightning's last.ckpt, to resume
logs/metrics.csv    losses and the selection metric per epoch
==================  ==========================================================
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from lightning import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from scipy.stats import wasserstein_distance

from hepgen.data.jetnet import read_jets
from hepgen.errors import InputFileError, OptionError
from hepgen.metrics.jets import relative_mass
from hepgen.models.assemblies.jets import MODELS, JetSurrogate, build_networks, merge_config, model_config, to_plain
from hepgen.models.conditions import PchipQuantileSampler
from hepgen.models.multiplicity import MultiplicityKDE
from hepgen.training.data import JetDataModule
from hepgen.training.modules import make_module
from hepgen.transforms import JetPreprocessor

RUN_FILES = ("config.yaml", "preprocessor.json", "multiplicity.yaml")


class W1MSelection(Callback):
    """Every ``every`` epochs: sample jets, W1M against training jets, keep the best weights."""

    def __init__(self, surrogate: JetSurrogate, reference_mass: np.ndarray, out: Path, every: int = 1,
                 num_jets: int = 10_000, sampler: dict | None = None):
        self.surrogate = surrogate
        self.reference_mass = reference_mass
        self.out = out
        self.every = max(1, every)
        self.num_jets = num_jets
        self.sampler = sampler or {}
        self.best = np.inf

    def _score(self, pl_module) -> float:
        self.surrogate.network = copy.deepcopy(pl_module.sampling_network()).eval()
        sample = self.surrogate.sample(self.num_jets, seed=1234, device=pl_module.device, **self.sampler)
        return float(wasserstein_distance(relative_mass(sample.particles), self.reference_mass))

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.every or not trainer.is_global_zero:
            return
        w1m = self._score(pl_module)
        pl_module.log("w1m", w1m, rank_zero_only=True)
        if w1m < self.best:
            self.best = w1m
            torch.save(self.surrogate.network.state_dict(), self.out / JetSurrogate.WEIGHTS)
            (self.out / "selection.yaml").write_text(
                yaml.safe_dump({"epoch": trainer.current_epoch, "w1m": w1m, "num_jets": self.num_jets})
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best", np.inf)


def full_multiplicity(sample) -> np.ndarray:
    """Particles per jet before truncation when the file records them, else after.

    The multiplicity KDE is fitted to these and clamped to P when sampling, as for
    JetNet30 in the thesis (seed 000 footnote at L2075): fitting the truncated counts,
    which pile up at P, would smear jets below P.
    """
    stored = sample.jet_features[:, 3]
    counted = sample.multiplicity
    return stored if np.all(stored >= counted) else counted


def _tnf_prior(cfg: dict, num_particles: int) -> JetSurrogate:
    """Load the NF run named by network.prior and record its network config."""
    path = cfg["network"].get("prior")
    if not path:
        raise OptionError("tnf needs a trained NF prior: set network.prior to an nf run folder in --config")
    prior = JetSurrogate.load(path)
    if prior.family != "nf" or prior.network.conditional:
        raise OptionError(f"network.prior: {path} is a {prior.cfg['model']} run; tnf needs an unconditioned nf")
    if prior.num_particles != num_particles:
        raise OptionError(f"network.prior: {path} has {prior.num_particles} particles, the data {num_particles}")
    cfg["network"]["prior_network"] = dict(prior.cfg["network"])
    return prior


def _read_config(path: str | os.PathLike | None) -> dict:
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"--config: {path}: no such file")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputFileError(f"--config: {path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(cfg, dict):
        raise InputFileError(f"--config: {path}: expected a mapping of sections")
    return cfg


def check_run_options(out, resume: bool, max_epochs: int | None, max_time: float | None) -> Path:
    """The checks every ``hepgen train`` makes before touching data: a new or resumable run
    folder and positive limits."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"--out: {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not resume:
        raise InputFileError(f"--out: {out} is not empty; choose a new folder or pass --resume")
    if max_epochs is not None and max_epochs <= 0:
        raise OptionError(f"--max-epochs must be positive, got {max_epochs}")
    if max_time is not None and max_time <= 0:
        raise OptionError(f"--max-time must be positive, got {max_time}")
    return out


def train_jet_model(
    model: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: str | os.PathLike | None = None,
    max_epochs: int | None = None,
    max_time: float | None = None,
    num_particles: int | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    override: dict | None = None,
    devices: str | int = "auto",
    num_nodes: int = 1,
) -> Path:
    """Train ``model`` on the jets in ``data``; returns the run folder."""
    if model not in MODELS:
        raise OptionError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    out = check_run_options(out, resume, max_epochs, max_time)
    if resume and not (out / "checkpoints" / "last.ckpt").exists():
        raise InputFileError(f"--resume: no checkpoint in {out / 'checkpoints'}")

    sample = read_jets(data, num_particles=num_particles)
    user_cfg = merge_config(_read_config(config), override)
    cfg = yaml.safe_load((out / "config.yaml").read_text()) if resume else model_config(model, sample.num_particles, user_cfg)
    cfg["jet_type"] = sample.jet_type
    cfg["training_data"] = str(data)
    training = dict(cfg["training"])
    if max_epochs is not None:
        training["max_epochs"] = max_epochs
    cfg["training"] = training
    seed_everything(seed, workers=True, verbose=False)

    pre = JetPreprocessor(cfg["preprocessing"]).fit(sample.particle_features)
    mult = MultiplicityKDE.fit(full_multiplicity(sample), sample.num_particles)
    family = MODELS[model].family
    prior = None
    if model == "tnf":
        prior = _tnf_prior(cfg, sample.num_particles)
        pre = prior.preprocessor  # the post-processor works in the prior's space
    networks = build_networks(cfg)
    if prior is not None:
        networks["generator"].prior.load_state_dict(prior.network.state_dict())
    extra, mass_sampler, extras = {}, None, ()
    if family == "nf":
        masses = relative_mass(sample.particles)
        cfg["mass_mean"], cfg["mass_std"] = float(masses.mean()), float(masses.std())
        mass_sampler = PchipQuantileSampler.fit(masses)
        extra = dict(mass_mean=cfg["mass_mean"], mass_std=cfg["mass_std"], inverse_scaler=pre.scaler.inverse_torch)
        extras = (masses,)
    module = make_module(family, networks, training, **extra)
    sampling_net = module.sampling_network()
    surrogate = JetSurrogate(cfg, copy.deepcopy(sampling_net), pre, mult, mass_sampler)
    out.mkdir(parents=True, exist_ok=True)
    surrogate.save(out)
    (out / JetSurrogate.WEIGHTS).unlink()  # written by the selection only

    scaled = pre.transform_all(sample.particle_features) if family == "nf" else pre.transform(sample.particle_features)
    datamodule = JetDataModule(scaled, sample.mask, *extras, batch_size=int(training.get("batch_size", 256)),
                               seed=seed, trim=family != "nf")
    rng = np.random.default_rng(seed)
    ref_idx = rng.choice(len(sample), size=min(len(sample), int(training.get("select_jets", 10_000))), replace=False)
    selection = W1MSelection(
        surrogate, relative_mass(sample.particles[ref_idx]), out,
        every=int(training.get("select_every", 1)), num_jets=len(ref_idx),
        sampler=training.get("select_sampler"),
    )
    trainer = Trainer(
        max_epochs=int(training.get("max_epochs", 1000)),
        max_time={"minutes": max_time} if max_time else None,
        accelerator="auto",
        devices=devices,
        num_nodes=num_nodes,
        default_root_dir=out,
        logger=CSVLogger(out, name="logs", version=""),
        # the newest state every epoch as checkpoints/last.ckpt (no monitor: top-1 = newest)
        callbacks=[selection, ModelCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1,
                                              every_n_epochs=1, enable_version_counter=False)],
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(10, len(datamodule.dataset) // datamodule.batch_size)),
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(out / "checkpoints" / "last.ckpt") if resume else None)
    if not (out / JetSurrogate.WEIGHTS).exists():  # stopped before the first selection
        torch.save(module.sampling_network().state_dict(), out / JetSurrogate.WEIGHTS)
    (out / "config.yaml").write_text(yaml.safe_dump(to_plain(cfg), sort_keys=False))
    return out

