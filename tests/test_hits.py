"""Calorimeter hit clouds of jets (issue 13 part 2): producer, format, metrics, CLI."""

import json

import numpy as np
import pytest

from hepgen.data.hits import HitSample, read_hits, write_hits
from hepgen.metrics.hits import emd, emd_pairs, w1_total_energy
from hepgen.simulate.hits import CELL, deposit


def test_deposit_conserves_energy_spreads_over_neighbours_and_cuts():
    pf = np.zeros((2, 3, 4))
    pf[0, 0] = [0.0, 0.0, 0.5, 1]  # at the centre of a cell (centres at multiples of 0.025)
    pf[0, 1] = [0.3, -0.2, 0.0001, 1]  # 0.1 GeV: below the cut after smearing in most cells
    pf[1, 0] = [-0.4, 0.4, 0.2, 1]
    jf = np.array([[1000.0, 0.0, 0, 2], [500.0, 0.0, 0, 1]])
    rng = np.random.default_rng(0)
    hits, mask = deposit(pf, jf, rng, max_hits=20, noise=0.0, threshold=0.0)
    total = (hits[..., 2] * mask).sum(1)
    # E = pT cosh(eta); smearing moves the totals by a few per cent
    np.testing.assert_allclose(total, [500.0 + 0.1 * np.cosh(0.3), 100 * np.cosh(0.4)], rtol=0.05)
    centre = hits[0][mask[0]]
    main = (np.abs(centre[:, 0]) <= 1.01 * CELL) & (np.abs(centre[:, 1]) <= 1.01 * CELL)
    assert main.sum() == 9  # the 3 x 3 cells around the particle
    assert centre[np.argmax(centre[:, 2]), :2] == pytest.approx([0.0, 0.0], abs=1e-6)
    hits, mask = deposit(pf, jf, np.random.default_rng(0), max_hits=20, noise=0.0, threshold=1.0)
    assert (hits[..., 2][mask] >= 1.0).all() and np.all(np.diff(hits[..., 2], axis=1) <= 0)


def test_emd_of_hand_made_clouds():
    a = np.array([[0.0, 0.0, 10.0]])
    assert emd(a, np.array([[0.3, 0.4, 10.0]])) == pytest.approx(5.0)  # 10 GeV moved by Delta R = 0.5
    assert emd(a, np.array([[0.0, 0.0, 4.0]])) == pytest.approx(6.0)  # 6 GeV that cannot be moved
    assert emd(a, np.array([[0.3, 0.4, 4.0]])) == pytest.approx(4 * 0.5 + 6.0)
    two = np.array([[0.0, 0.0, 5.0], [1.0, 0.0, 5.0]])
    assert emd(two, two[::-1]) == pytest.approx(0.0, abs=1e-9)
    h = np.zeros((2, 2, 3))
    h[:, 0] = a[0]
    m = np.array([[True, False], [True, False]])
    assert emd_pairs(h, m, h, m).tolist() == [0.0, 0.0]
    assert w1_total_energy(h, m, h * np.array([1, 1, 2]), m) == pytest.approx(10.0)


def test_hit_file_checks_and_round_trip(tmp_path):
    hits = np.zeros((3, 4, 3), np.float32)
    hits[:, :2] = 1.0
    mask = np.zeros((3, 4), bool)
    mask[:, :2] = True
    path = write_hits(HitSample(hits, mask, {"seed": 1}), tmp_path / "h.h5")
    back = read_hits(path)
    np.testing.assert_array_equal(back.hits, hits) and np.testing.assert_array_equal(back.mask, mask)
    assert back.attrs["seed"] == 1
    from hepgen.errors import InvalidDataError

    bad = hits.copy()
    bad[0, 3] = 1.0
    with pytest.raises(InvalidDataError, match="padded hits"):
        HitSample(bad, mask)


def test_hits_cli_is_reproducible_and_evaluates(tmp_path, fixture_dir, capsys):
    from hepgen.cli.main import main

    files = []
    for name, seed, workers in (("a", 1, "1"), ("b", 1, "2"), ("c", 2, "1")):
        out = tmp_path / f"{name}.h5"
        assert main(["data", "hits", "--jet-type", "t", "--num-jets", "250", "--seed", str(seed), "--out", str(out),
                     "--workers", workers, "--no-progress"]) == 0
        files.append(out)
    a, b, c = (read_hits(f) for f in files)
    np.testing.assert_array_equal(a.hits, b.hits)  # same seed, any number of workers
    assert not np.array_equal(a.hits, c.hits)
    assert a.hits.shape == (250, 300, 3) and 100 < a.multiplicity.mean() < 300
    report = tmp_path / "report"
    assert main(["evaluate", "hits", "--real", str(files[0]), "--gen", str(files[2]), "--truth-floor", str(files[1]),
                 "--out", str(report), "--num-pairs", "50"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert {"w1_total_energy", "emd", "w1_multiplicity"} <= set(metrics)
    floor = json.loads((report / "truth_floor.json").read_text())
    assert floor["emd"]["value"] == pytest.approx(0.0, abs=1e-9) and metrics["emd"]["value"] > 1  # a file vs itself
    assert (report / "report.html").exists() and (report / "total_energy.png").exists()
    capsys.readouterr()
    assert main(["evaluate", "hits", "--real", str(fixture_dir / "t.hdf5"), "--gen", str(files[0]),
                 "--out", str(tmp_path / "r2")]) == 2
    assert "not a hit-cloud file" in capsys.readouterr().err
