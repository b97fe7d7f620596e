"""Evaluations: compare generated with reference samples and write metrics, plots and a report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Evaluation:
    """What an evaluation wrote: its metrics (``{key: {"value", "error"}}``) and report folder."""

    metrics: dict
    out_dir: Path

    @property
    def report(self) -> Path:
        return self.out_dir / "report.html"
