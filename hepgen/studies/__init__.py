"""Runnable studies of the seeds' methods: each trains, evaluates and writes
``metrics.json`` and ``report.html`` into its output folder (``hepgen study NAME --out DIR``)."""
