"""Reports: HEP-style plots with ratio panels and an HTML page per evaluation."""

from hepgen.report.html import render_report
from hepgen.report.plots import auto_edges, comparison_plot

__all__ = ["auto_edges", "comparison_plot", "render_report"]
