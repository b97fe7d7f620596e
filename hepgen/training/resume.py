"""What makes ``--resume`` continue exactly, for every trainer.

Lightning's checkpoint holds the weights, the EMA copy, the optimisers, the schedulers,
the loop counters and each callback's ``state_dict``. Two things it does not hold are
added here:

* :class:`RNGState` -- the global torch / numpy / python generator states at the
  checkpoint, restored before training goes on, so the noise, time and shuffling draws
  after a resume are those the uninterrupted run would have made;
* :class:`EpochTimeLimit` -- ``--max-time`` that stops only at the end of an epoch.
  Lightning's own limit stops after any batch, leaving a checkpoint in the middle of an
  epoch from which no data loader can continue exactly; it also counts the time of
  earlier sessions, while here ``--max-time`` is this session's budget.

Data order comes from samplers that take ``set_epoch`` (Lightning calls it each epoch)
or from the global torch generator, so both follow from the restored counters.
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
from lightning import Callback


class RNGState(Callback):
    """Save and restore the global random generators with the checkpoint."""

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class EpochTimeLimit(Callback):
    """Stop at the first epoch end after ``minutes`` of this fit (None: no limit)."""

    def __init__(self, minutes: float | None):
        self.seconds = None if minutes is None else float(minutes) * 60
        self.started = None

    def on_train_start(self, trainer, pl_module):
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module):
        if self.seconds is not None and time.monotonic() - self.started >= self.seconds:
            trainer.should_stop = True


def keep_logs(folder) -> None:
    """Before a resumed fit: move ``folder/metrics.csv`` to ``metrics.part-K.csv`` (K = 1, 2,
    ...), since Lightning's CSV logger starts that file afresh and would drop the losses of
    earlier sessions. Readers of the learning curve read the parts in order."""
    from pathlib import Path

    folder = Path(folder)
    current = folder / "metrics.csv"
    if current.exists():
        k = 1 + len(list(folder.glob("metrics.part-*.csv")))
        current.rename(folder / f"metrics.part-{k}.csv")


def logged_rows(folder) -> list[dict]:
    """All rows of the CSV logs in ``folder``: the parts of earlier sessions, then the current file."""
    import csv
    from pathlib import Path

    folder = Path(folder)
    parts = sorted(folder.glob("metrics.part-*.csv"), key=lambda p: int(p.stem.split("-")[-1]))
    rows = []
    for path in [*parts, folder / "metrics.csv"]:
        if path.exists():
            rows += list(csv.DictReader(open(path)))
    return rows


def resume_callbacks(max_time: float | None) -> list[Callback]:
    """The callbacks every hepgen trainer adds for exact resumption and ``--max-time``."""
    return [RNGState(), EpochTimeLimit(max_time)]
