"""The field's standard metrics, on plain arrays (jetnet-style API)."""

from hepgen.metrics.efp import EFPCalculator, efps
from hepgen.metrics.jets import fpd, inverse_variance_mean, jet_metrics, kpd, relative_mass, w1efp, w1m, w1p

__all__ = [
    "EFPCalculator", "efps", "fpd", "inverse_variance_mean", "jet_metrics", "kpd", "relative_mass",
    "w1efp", "w1m", "w1p",
]
