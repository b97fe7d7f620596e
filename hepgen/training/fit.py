"""One Lightning fit per training stage, shared by the calorimeter and event trainers."""

from __future__ import annotations

from pathlib import Path

from lightning import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from hepgen.training.resume import keep_logs, resume_callbacks


def fit_stage(module, data, out: Path, stage: str, max_epochs: int, max_time: float | None, resume: bool,
              progress: bool, devices, num_nodes) -> None:
    """One Lightning fit with the checkpoint ``checkpoints/{stage}.ckpt`` and CSV logs ``logs/{stage}``,
    resumable exactly (:mod:`hepgen.training.resume`); ``max_time`` in minutes, checked at epoch ends.

    ``data`` is a DataLoader or a LightningDataModule; a data module brings its own
    (DDP-aware bucket) batch sampler, so Lightning must not replace it."""
    from lightning import LightningDataModule

    from hepgen.device import keep_freed_memory

    keep_freed_memory()  # every step allocates the same tensors again
    is_module = isinstance(data, LightningDataModule)
    if hasattr(module, "set_steps_per_epoch"):
        module.set_steps_per_epoch(data)
    ckpt = out / "checkpoints" / f"{stage}.ckpt"
    trainer = Trainer(
        max_epochs=max_epochs,
        accelerator="auto", devices=devices, num_nodes=num_nodes,
        default_root_dir=out, logger=CSVLogger(out, name="logs", version=stage),
        callbacks=[*resume_callbacks(max_time), ModelCheckpoint(dirpath=out / "checkpoints", filename=stage, save_top_k=1, every_n_epochs=1,
                                   enable_version_counter=False)],
        enable_progress_bar=progress, enable_model_summary=False,
        log_every_n_steps=10 if is_module else max(1, min(10, len(data))), num_sanity_val_steps=0,
        use_distributed_sampler=not is_module,
    )
    if resume and ckpt.exists():
        keep_logs(out / "logs" / stage)
    trainer.fit(module, **({"datamodule": data} if is_module else {"train_dataloaders": data}),
                ckpt_path=str(ckpt) if resume and ckpt.exists() else None)
