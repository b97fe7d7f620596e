"""Data formats read and written by hepgen (JetNet jets; later showers and events)."""

from hepgen.data.jetnet import JetSample, load_jetnet, read_jets, write_jets

__all__ = ["JetSample", "load_jetnet", "read_jets", "write_jets"]
