"""Training within a fixed wall-clock budget (the lent-GPU scripts ``scripts/gpu_jets.py`` and
``scripts/gpu_calo.py``).

* :func:`start_budget_run` / :func:`finish_budget_run` -- the frame of a budgeted run into a
  folder OUT: the log (OUT/log.txt, opened by :func:`budget_echo`: each line prefixed with the
  seconds since the start, printed and appended) and the device it runs on; at the end the
  scratch folder OUT/work removed and OUT/summary.json written with the total time;
* :func:`plan_epochs` -- one calibration epoch in a throw-away folder measures the epoch time
  on this device (start-up included); the run's schedule is then planned over the epochs that
  fit in what is left of the model's share of the budget.
"""

from __future__ import annotations

import json
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


def start_budget_run(out: Path) -> tuple[float, Callable[[str], None], str]:
    """Make the output folder ``out`` and start its log; returns (the start, a
    ``time.perf_counter()`` reading; ``echo``; the device's name, ``CPU`` without CUDA), the
    device logged first."""
    import torch

    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    echo = budget_echo(out / "log.txt", began)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    echo(f"device: {device}")
    return began, echo, device


def finish_budget_run(out: Path, summary: dict, began: float, echo: Callable[[str], None]) -> None:
    """Remove the scratch folder ``out/work``, add the seconds since ``began`` to ``summary``,
    write it to ``out/summary.json`` and log the total."""
    shutil.rmtree(out / "work", ignore_errors=True)
    summary["seconds"] = time.perf_counter() - began
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    echo(f"done in {summary['seconds']:.0f} s")


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


__all__ = ["budget_echo", "finish_budget_run", "plan_epochs", "start_budget_run"]
