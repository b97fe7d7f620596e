"""The ``hepgen`` command line."""
