"""Training within a fixed wall-clock budget (the lent-GPU scripts ``scripts/gpu_jets.py`` and
``scripts/gpu_calo.py``).

* :func:`budget_echo` -- the scripts' log: each line prefixed with the seconds since the start,
  printed and appended to a log file;
* :func:`plan_epochs` -- one calibration epoch in a throw-away folder measures the epoch time
  on this device (start-up included); the run's schedule is then planned over the epochs that
  fit in what is left of the model's share of the budget.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable


def budget_echo(log: Path, began: float) -> Callable[[str], None]:
    """``echo(msg)``: prints ``[   SS s] msg`` (SS: seconds since ``began``, a
    ``time.perf_counter()`` reading) and appends the line to the file ``log``."""
    file = open(log, "a")

    def echo(msg: str) -> None:
        line = f"[{time.perf_counter() - began:6.0f} s] {msg}"
        print(line, flush=True)
        file.write(line + "\n")

    return echo


def plan_epochs(model: str, out: Path, seconds: float, calibrate: Callable[[Path], object], echo,
                overhead: float) -> int:
    """Epochs of ``model`` that fit in ``seconds`` (at least 1).

    ``calibrate(probe)`` trains one epoch into ``probe``, a hidden sibling of the run folder
    ``out`` (removed before and after); its time t (start-up included) plans
    ``(seconds - t) / (overhead * t)`` epochs, reported through ``echo``. ``overhead`` covers
    what an epoch of the real run costs beyond the calibration epoch (selection, checkpoints).
    """
    probe = out.parent / f".{out.name}-probe"
    shutil.rmtree(probe, ignore_errors=True)
    start = time.perf_counter()
    calibrate(probe)
    epoch_s = time.perf_counter() - start
    shutil.rmtree(probe, ignore_errors=True)
    epochs = max(1, int((seconds - epoch_s) / (epoch_s * overhead)))
    echo(f"{model}: {epoch_s:.1f} s per epoch (with start-up) -> {epochs} epochs planned")
    return epochs


__all__ = ["budget_echo", "plan_epochs"]
