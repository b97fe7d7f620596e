"""``hepgen train``: fit preprocessing, train with Lightning, keep the best checkpoint.

A run folder holds everything ``hepgen sample RUN_DIR`` needs:

==================  ==========================================================
config.yaml         model, network, training and sampler settings
preprocessor.json   the fitted transform of the particle features
multiplicity.yaml   the multiplicity KDE (training multiplicities)
weights.pt          the selected (EMA) weights: lowest combined score of
                    generated vs training jets, each metric in units of its
                    truth floor (:mod:`hepgen.training.selection`)
selection.yaml      the selected epoch, its metrics and the floor
selection.csv       every selection: metrics, floor ratios, score, lr
learning_curve.png  the selection history as a plot
checkpoints/        Lightning's last.ckpt, to resume exactly (weights, EMA,
                    optimisers, schedule, RNG, selection history)
logs/metrics.csv    losses and the selection score per epoch
==================  ==========================================================
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
import yaml
from lightning import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from hepgen.data.jetnet import read_jets
from hepgen.errors import InputFileError, OptionError
from hepgen.metrics.jets import relative_mass
from hepgen.device import keep_freed_memory
from hepgen.config import merge_config, read_config, to_plain
from hepgen.models.assemblies.jets import MODELS, JetSurrogate, build_networks, model_config
from hepgen.models.conditions import PchipQuantileSampler
from hepgen.models.multiplicity import MultiplicityKDE
from hepgen.training.data import JetDataModule
from hepgen.training.modules import make_module
from hepgen.training.resume import keep_logs, resume_callbacks
from hepgen.training.selection import JetSelection
from hepgen.transforms import JetPreprocessor

RUN_FILES = ("config.yaml", "preprocessor.json", "multiplicity.yaml")


def selection_sets(particle_features: np.ndarray, num_jets: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random sets of training jets for the selection: the reference and the
    truth floor (``num_jets`` each, or half the data each when there are fewer)."""
    rng = np.random.default_rng(seed)
    k = min(num_jets, len(particle_features) // 2)
    idx = rng.permutation(len(particle_features))[: 2 * k]
    return particle_features[idx[:k]], particle_features[idx[k:]]


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
    callbacks: list | None = None,
) -> Path:
    """Train ``model`` on the jets in ``data``; returns the run folder. ``callbacks``
    are extra Lightning callbacks (e.g. a monitor)."""
    if model not in MODELS:
        raise OptionError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    out = check_run_options(out, resume, max_epochs, max_time)
    if resume and not (out / "checkpoints" / "last.ckpt").exists():
        raise InputFileError(f"--resume: no checkpoint in {out / 'checkpoints'}")

    sample = read_jets(data, num_particles=num_particles)
    user_cfg = merge_config(read_config(config), override)
    cfg = yaml.safe_load((out / "config.yaml").read_text()) if resume else model_config(model, sample.num_particles, user_cfg)
    cfg["jet_type"] = sample.jet_type
    cfg["training_data"] = str(data)
    training = dict(cfg["training"])
    if max_epochs is not None:
        training["max_epochs"] = max_epochs
    # the schedule's horizon is the budget planned when the run starts; a resumed run
    # with another --max-epochs continues the same curve
    training.setdefault("schedule_epochs", int(training.get("max_epochs", 1000)))
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
    scaled = pre.transform_all(sample.particle_features) if family == "nf" else pre.transform(sample.particle_features)
    if family == "gan":  # generator output is clamped to the scaled training range when sampling
        real = scaled[sample.mask]
        cfg["scaled_range"] = [real.min(0).tolist(), real.max(0).tolist()]
    module = make_module(family, networks, training, **extra)
    sampling_net = module.sampling_network()
    surrogate = JetSurrogate(cfg, copy.deepcopy(sampling_net), pre, mult, mass_sampler)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:  # a resumed run keeps the weights its selection chose so far
        surrogate.save(out)
        (out / JetSurrogate.WEIGHTS).unlink()  # written by the selection only

    datamodule = JetDataModule(scaled, sample.mask, *extras, batch_size=int(training.get("batch_size", 256)),
                               seed=seed, trim=family != "nf")
    selection = JetSelection(
        surrogate, *selection_sets(sample.particle_features, int(training.get("select_jets", 10_000)), seed), out,
        every=int(training.get("select_every", 1)), sampler=training.get("select_sampler") or cfg.get("sampler"),
        batch_size=int(training.get("select_batch", 512)),
    )
    module.set_steps_per_epoch(datamodule)
    keep_freed_memory()  # every step allocates the same tensors again
    trainer = Trainer(
        max_epochs=int(training.get("max_epochs", 1000)),
        accelerator="auto",
        devices=devices,
        num_nodes=num_nodes,
        default_root_dir=out,
        logger=CSVLogger(out, name="logs", version=""),
        # the newest state every epoch as checkpoints/last.ckpt (no monitor: top-1 = newest)
        callbacks=[selection, *resume_callbacks(max_time), *(callbacks or []), ModelCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1,
                                              every_n_epochs=1, enable_version_counter=False)],
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(10, len(datamodule.dataset) // datamodule.batch_size)),
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
    )
    if resume:
        keep_logs(out / "logs")
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(out / "checkpoints" / "last.ckpt") if resume else None)
    if not (out / JetSurrogate.WEIGHTS).exists():  # stopped before the first selection
        torch.save(module.sampling_network().state_dict(), out / JetSurrogate.WEIGHTS)
    (out / "config.yaml").write_text(yaml.safe_dump(to_plain(cfg), sort_keys=False))
    return out

