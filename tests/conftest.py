import os
from pathlib import Path

import numpy as np
import pytest


def pytest_configure(config):
    """One torch thread per pytest-xdist worker: `make test` runs one worker per core, and
    two-thread workers on two cores would oversubscribe them. Subprocesses (CLI tests)
    inherit the same setting through OMP_NUM_THREADS."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)

FIXTURES = Path(__file__).parent / "fixtures" / "jetnet"


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def top_jets():
    """Two independent samples of Pythia top jets (150 particles), simulated once per session."""
    from hepgen.simulate.jets import generate_jets

    a = generate_jets("t", 600, 150, seed=21, workers=1, progress=False)
    b = generate_jets("t", 600, 150, seed=22, workers=1, progress=False)
    return a, b


@pytest.fixture(scope="session")
def jets_by_type():
    from hepgen.simulate.jets import generate_jets

    n = {"t": 1500, "w": 400, "z": 400, "g": 300, "q": 300}
    return {t: generate_jets(t, k, 30, seed=5, workers=1, progress=False) for t, k in n.items()}


def distorted(pf: np.ndarray, scale: float = 1.1) -> np.ndarray:
    """A 'generated' sample: real jets with ptrel and etarel scaled."""
    out = pf.copy()
    out[..., 2] *= scale
    out[..., 0] *= scale
    return out


def expect_one_error_line(capsys, argv, *fragments) -> str:
    """Run ``hepgen ARGV`` in this process and check the CLI's contract for a bad input: a
    non-zero exit and exactly one line on stderr, ``hepgen: error: ...``, holding every one of
    ``fragments``; returns that line."""
    from hepgen.cli.main import main

    capsys.readouterr()  # only what this call writes
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0, err
    assert len(err.splitlines()) == 1 and err.startswith("hepgen: error:"), err
    for frag in fragments:
        assert frag in err, err
    return err
