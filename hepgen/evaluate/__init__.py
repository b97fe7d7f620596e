"""Evaluations: compare generated with reference samples and write metrics, plots and a report."""
