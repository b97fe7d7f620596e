"""The shipped ddpm-hits/t (issue 13 part 2, item 5): samples without training, reproducibly,
in the ``hepgen data hits`` layout, with top-jet-like clouds."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from hepgen.cli.main import main

NAME = "ddpm-hits/t"
HEPGEN = str(Path(sys.executable).parent / "hepgen")


def test_shipped_ddpm_hits_samples_reproducibly_in_the_hit_layout(tmp_path, capsys):
    from hepgen.data.hits import read_hits
    from hepgen.shipped import card, shipped_models

    assert main(["models"]) == 0
    assert NAME in capsys.readouterr().out
    info = card(shipped_models()[NAME])
    assert info["evaluation"]["metrics"]["w1_total_energy"] > 0 and info["evaluation"]["truth_floor"]["emd"] > 0
    files = [tmp_path / "a.h5", tmp_path / "b.h5"]
    # a fresh process (as on a fresh clone: nothing imported beforehand) and this one
    r = subprocess.run([HEPGEN, "sample", NAME, "--num", "48", "--seed", "3",
                        "--out", str(files[0])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert main(["sample", NAME, "--num", "48", "--seed", "3", "--out", str(files[1])]) == 0
    assert files[0].read_bytes() == files[1].read_bytes()  # same seed, same file
    main(["sample", NAME, "--num", "48", "--seed", "4", "--out", str(tmp_path / "c.h5")])
    assert not np.array_equal(read_hits(files[0]).hits, read_hits(tmp_path / "c.h5").hits)
    with h5py.File(files[0], "r") as f:
        assert set(f) == {"hits", "mask"}
        assert f["hits"].dtype == np.float32 and f["hits"].shape == (48, 300, 3)
        assert f["mask"].dtype == bool and f["mask"].shape == (48, 300)
    clouds = read_hits(files[0])  # checks zero padding and finiteness
    mask, e = clouds.mask, clouds.hits[..., 2]
    # clouds come in the order drawn, not sorted by multiplicity (metrics pair the first N)
    assert np.any(np.diff(clouds.multiplicity) > 0) and np.any(np.diff(clouds.multiplicity) < 0)
    # the mask is a prefix (hits first, sorted by falling energy), real hits carry energy
    assert np.all(mask[:, 1:] <= mask[:, :-1]) and np.all(np.diff(e, axis=1) <= 0) and (e[mask] > 0).all()
    # physics: the reference top jets of `hepgen data hits` (seed 1/2, 1 TeV) have ~220 hits
    # and ~1.25 TeV of deposited energy per jet; a trained model lands near both, noise does not
    assert 150 < clouds.multiplicity.mean() < 290
    assert 900 < np.median(clouds.total_energy) < 1600
    # hits lie around the jet axis within the 125 x 125 grid of 0.025 (|eta|, |phi| < 1.6)
    assert np.abs(clouds.hits[..., :2][mask]).max() < 1.6
    assert np.median(np.abs(clouds.hits[..., :2][mask])) < 0.4


def test_shipped_ddpm_hits_draws_the_multiplicity_atom_at_the_cap():
    """15 % of the training clouds hold exactly 300 hits (jets cut at the 300 most energetic
    cells); the shipped sampler draws that atom with its frequency, not smeared below it."""
    from hepgen.models.assemblies.hits import HitSurrogate
    from hepgen.shipped import shipped_models

    kde = HitSurrogate.load(shipped_models()[NAME]).multiplicity
    n = kde.sample(20000, rng=11)
    assert kde.atom_at_max and abs(np.mean(n == 300) - 0.152) < 0.01
    assert abs(np.mean((n >= 250) & (n < 300)) - 0.175) < 0.015


def test_hits_bench_table_with_floor_and_producer_timing(tmp_path, capsys):
    """`hepgen bench hits` on a tiny reference: the shipped model's default and undistilled
    rows beside the truth floor, µs per cloud against the producer timed in the same run."""
    import json

    args = ["bench", "hits", "--num-jets", "30", "--num-pairs", "10", "--teacher-steps", "2", "--time-jets", "5",
            "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    res = json.loads((tmp_path / "out" / "hits_bench.json").read_text())
    assert [r["sampler"] for r in res["rows"]] == ["default: distilled 8", "ddim 2 (undistilled)"]
    assert res["producer_us_per_cloud"] > 0 and all(r["us_per_cloud"] > 0 for r in res["rows"])
    for r in res["rows"]:
        assert set(r["metrics"]) == {"w1_total_energy", "emd", "w1_multiplicity"}
    assert res["floor_metrics"]["w1_total_energy"]["value"] > 0
    md = (tmp_path / "out" / "hits_bench.md").read_text()
    assert "| truth floor |" in md and "× producer" in md
    assert main(args[:2] + ["--num-jets", "0"]) == 2
    assert "--num-jets must be positive" in capsys.readouterr().err
