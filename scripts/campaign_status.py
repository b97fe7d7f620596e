"""Where every run of the training campaign stands, as a Markdown table.

    .venv/bin/python scripts/campaign_status.py [campaign]

One row per run folder under ``campaign/``: finished (a ``done`` file) or not, epochs (or
study steps) done against the plan of ``campaign/run.sh``, optimiser steps, the hours the
run's own records give (jet selection history, study checkpoints), and for jet runs the
best combined score of the selection history with its epoch and the four floor ratios.
The state tables of ``campaign/README.md`` and the closing notes are written from it.
Reads checkpoints only; starts nothing.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path


def planned_epochs(campaign: Path) -> dict[str, int]:
    """The ``EPOCHS`` table of ``campaign/run.sh`` ({run: planned epochs})."""
    text = (campaign / "run.sh").read_text()
    block = re.search(r"declare -A EPOCHS=\((.*?)\)\n", text, re.S)
    return {k: int(v) for k, v in re.findall(r"\[([\w-]+)\]=(\d+)", block.group(1))} if block else {}


def lightning_state(folder: Path) -> tuple[int, int] | None:
    """(epochs completed, optimiser steps) of the newest Lightning checkpoint in ``folder/checkpoints``."""
    import torch

    ckpts = sorted((folder / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        return None
    state = torch.load(ckpts[-1], map_location="cpu", weights_only=False)
    # epochs whose batches all ran (a checkpoint written at an epoch's end counts that epoch)
    return int(state["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"]), int(state["global_step"])


def selection(folder: Path) -> dict | None:
    """Last hours and the best-score row of a jet run's ``selection.csv``."""
    path = folder / "selection.csv"
    if not path.exists():
        return None
    rows = list(csv.DictReader(path.open()))
    if not rows:
        return None
    best = min(rows, key=lambda r: float(r["score_ratio"]))
    hours = [float(r["hours"]) for r in rows if r.get("hours")]
    # the csv counts epochs from 0: the row of epoch e is the selection after e + 1 epochs
    return {"best": best, "hours": max(hours) if hours else None, "last_epoch": int(rows[-1]["epoch"]) + 1}


def study_state(folder: Path) -> str:
    """Progress of a method study run: finished model parts and the open checkpoint's step/time."""
    import torch

    parts = sorted(p.stem for p in (folder / "parts").glob("*.npz")) if (folder / "parts").exists() else []
    open_ckpts = sorted(folder.glob("*.ckpt")) + sorted((folder / "parts").glob("*.ckpt") if parts else [])
    text = f"{len(parts)} models finished" if parts else ""
    for ckpt in open_ckpts:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        text += (", " if text else "") + (f"{ckpt.name}: step {state.get('step')}, "
                                          f"{float(state.get('seconds', 0)) / 3600:.2f} h")
    return text or "not started"


def rows(campaign: Path) -> list[list[str]]:
    plan = planned_epochs(campaign)
    out = []
    for folder in sorted(p for p in campaign.iterdir() if p.is_dir() and p.name != "logs"):
        done = (folder / "done").exists()
        state, sel = lightning_state(folder), selection(folder)
        if state is None and sel is None:  # a study, or a finished run whose checkpoint was dropped
            planned = plan.get(folder.name)
            progress = f"{planned} / {planned}" if done and planned else study_state(folder)
            out.append([folder.name, "finished" if done else "open", progress, "–", "–", "–"])
            continue
        epochs = state[0] if state else (sel["last_epoch"] if sel else "?")
        steps = str(state[1]) if state else "–"
        hours = f"{sel['hours']:.1f}" if sel and sel["hours"] else "–"
        best = "–"
        if sel:
            b = sel["best"]
            best = (f"{float(b['score_ratio']):.1f} after {int(b['epoch']) + 1} (W1M {float(b['w1m_ratio']):.1f}, "
                    f"W1P {float(b['w1p_ratio']):.1f}, W1EFP {float(b['w1efp_ratio']):.1f}, "
                    f"FD {float(b['fd_ratio']):.0f})")
        out.append([folder.name, "finished" if done else "open", f"{epochs} / {plan.get(folder.name, '?')}",
                    steps, hours, best])
    return out


def main(argv: list[str]) -> int:
    campaign = Path(argv[0]) if argv else Path("campaign")
    if not (campaign / "run.sh").exists():
        print(f"{campaign}: not a campaign folder (no run.sh)", file=sys.stderr)
        return 2
    print("| run | state | epochs done / planned | steps | hours (selection history) | best score (floor units) |")
    print("|---|---|---|---|---|---|")
    for row in rows(campaign):
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
