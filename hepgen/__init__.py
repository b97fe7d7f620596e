"""hepgen: fast generative surrogates for particle-physics simulation.

Layout (each sub-package is one layer of the architecture):

=================  ===============================================================
``data``           file formats: JetNet jets, CaloChallenge showers, Dark Machines
``simulate``       reference producers (Pythia 8 + FastJet, ...) run in parallel
``transforms``     fitted, invertible, serialisable preprocessing
``models``         ``blocks`` (reusable layers) and ``assemblies`` (task models)
``training``       Lightning modules, data modules, callbacks
``metrics``        the field's standard metrics (W1M/W1P/W1EFP/FPD/KPD, ...)
``evaluate``       real-vs-generated comparisons that write metrics + plots
``report``         HEP-style plots and HTML reports
``bench``          benchmarks reported as ratios to a reference in the same run
``cli``            the ``hepgen`` command
=================  ===============================================================
"""

__version__ = "0.1.0"
