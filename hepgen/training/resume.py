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

Hand-written loops (the toy studies, whose single models can outlast a session) get the
same from :class:`LoopCheckpoint`: the state dicts of their networks, optimisers and
schedulers, the step reached and the generators of :class:`RNGState`, saved every few
minutes into one file.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

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


class LoopCheckpoint:
    """Exact resumption of a hand-written training loop::

        ck = LoopCheckpoint(path, key=budget)
        start = ck.restore(net=net, opt=opt, sched=sched)  # 0, or the step a killed run reached
        for step in range(start, steps):
            ck.before(step)          # saves, when due, the state after ``step`` steps
            ...                      # draws from the global generators, optimiser step
        ck.clear()                   # finished: the part of the result is written elsewhere

    The file holds the objects' state dicts, the step and :class:`RNGState`'s generators;
    it is written atomically (a kill while saving keeps the previous one). A file written
    for another ``key`` (another budget, seed or model) is ignored, so a run with a new
    budget starts afresh. ``path=None`` makes every method a no-op.

    Arguments:
        path: the checkpoint file (None: no checkpoints).
        key: what the run is (budget, seed, model); only a file with the same key resumes.
        every: seconds between saves (0: before every step; the tests).
    """

    def __init__(self, path: str | os.PathLike | None, key: str = "", every: float = 300.0):
        self.path = None if path is None else Path(path)
        self.key, self.every = str(key), float(every)
        self.objects: dict = {}
        self._last = self._started = time.monotonic()
        #: seconds of training before the restored state (earlier sessions)
        self.earlier_seconds = 0.0

    def restore(self, **objects) -> int:
        """Register the objects to save; load their state from the file if it is this run's.
        Returns the step to continue from."""
        self.objects = objects
        self._last = self._started = time.monotonic()
        self.earlier_seconds = 0.0
        if self.path is None or not self.path.exists():
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("key") != self.key or set(state["objects"]) != set(objects):
            return 0
        for name, obj in objects.items():
            obj.load_state_dict(state["objects"][name])
        RNGState().load_state_dict(state["rng"])
        self.earlier_seconds = float(state.get("seconds", 0.0))
        return int(state["step"])

    def before(self, step: int) -> None:
        """Called before ``step`` runs: save the state (``step`` steps done) when ``every`` has passed."""
        if self.path is not None and step > 0 and time.monotonic() - self._last >= self.every:
            self.save(step)

    def save(self, step: int) -> None:
        from hepgen.data.atomic import atomic_output

        seconds = self.earlier_seconds + time.monotonic() - self._started
        state = {"key": self.key, "step": int(step), "seconds": seconds, "rng": RNGState().state_dict(),
                 "objects": {name: obj.state_dict() for name, obj in self.objects.items()}}
        with atomic_output(self.path) as tmp:
            torch.save(state, tmp)
        self._last = time.monotonic()

    def clear(self) -> None:
        if self.path is not None and self.path.exists():
            self.path.unlink()


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
