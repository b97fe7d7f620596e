"""The Pythia 8 set-up every producer shares (jets, events, dijets): 13 TeV pp, the seed,
quiet output and multi-parton interactions on or off, plus the process's own settings."""

from __future__ import annotations


def make_pythia(settings, seed: int, mpi: bool, what: str):
    """An initialised ``pythia8mc.Pythia`` with the common settings and ``settings``;
    a rejected setting or a failed initialisation raises naming ``what``."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    common = ("Beams:eCM = 13000", "Random:setSeed = on", f"Random:seed = {seed}", "Print:quiet = on",
              "Next:numberCount = 0", f"PartonLevel:MPI = {'on' if mpi else 'off'}")
    for line in (*common, *settings):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise for {what}")
    return pythia


__all__ = ["make_pythia"]
