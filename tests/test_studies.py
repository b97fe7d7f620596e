"""The toy method studies (issue 15 items 1-2): two moons and GAN amplification, through the CLI."""

import json

import numpy as np
import pytest


def test_quantile_mse_of_true_samples_matches_its_expectation():
    from hepgen.studies.amplification import equivalent_points, quantile_mse, sample_truth, uniform_coordinates

    rng = np.random.default_rng(0)
    for toy, q, dims in (("camel", 20, 1), ("ring", 5, 2), ("sphere", 3, 5)):
        u = uniform_coordinates(toy, sample_truth(toy, 400_000, rng))
        assert u.shape[1] == dims and (u >= 0).all() and (u <= 1).all()
        assert np.allclose(u.mean(0), 0.5, atol=0.01)  # every coordinate uniform under the truth
        mses = [quantile_mse(uniform_coordinates(toy, sample_truth(toy, 200, rng)), q) for _ in range(200)]
        assert equivalent_points(np.mean(mses), q ** dims) == pytest.approx(200, rel=0.2)


def test_two_moons_study_cfm_beats_the_weight_clipped_gan(tmp_path):
    """At the quick budget CFM is closer to the truth than the WGAN with weight clipping
    (the seed's weakest GAN); the vanilla GAN is still ahead of CFM this early (measured on
    one thread, 1500 batches: gan w1 0.119 / auc 0.748, cfm 0.170 / 0.792), so the seed's
    ranking of those two is checked only by the full run."""
    from hepgen.cli.main import main

    out = tmp_path / "tm"
    assert main(["study", "two-moons", "--quick", "--models", "gan,wgan,cfm", "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for name in ("gan", "wgan", "cfm"):
        assert {"auc", "w1"} <= set(m[name]) and 0.5 <= m[name]["auc"] <= 1.0 and m[name]["w1"] > 0
    demo = m["mode_collapse_demo"]
    assert demo["collapsed"]["auc"] > 0.6  # the binary test sees the collapse
    assert m["multiclass"]["classes"] == ["gan", "wgan", "cfm", "collapsed"]
    assert (out / "report.html").exists() and (out / "two_moons_hist2d.png").exists()
    assert m["cfm"]["w1"] < m["wgan"]["w1"] and m["cfm"]["auc"] < m["wgan"]["auc"], (m["cfm"], m["wgan"])


def test_amplification_study_writes_the_interface_keys(tmp_path, monkeypatch):
    import hepgen.studies.amplification as am
    from hepgen.cli.main import main

    monkeypatch.setattr(am, "QUICK", dict(runs=2, epochs=4, batch=10, lr=5e-4, cfm_lr=2e-3, gen_sizes=(100, 2000)))
    out = tmp_path / "amp"
    assert main(["study", "amplification", "--quick", "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for toy, keys in (("camel", {"10", "20", "50"}), ("ring", {"9", "25", "100"}), ("sphere", {"243", "1024", "3125", "7776"})):
        for model in ("gan", "cfm"):
            assert set(m[toy][model]["amplification"]) == keys
            assert all(np.isfinite(v["value"]) and v["value"] >= 0 for v in m[toy][model]["amplification"].values())
    # the training samples are worth themselves (factor ~ 1) and the true-shape fit more
    assert 0.3 < m["camel"]["train"]["amplification"]["20"]["value"] < 3
    assert m["camel"]["fit"]["amplification"]["20"]["value"] > 1
    assert (out / "report.html").exists() and (out / "amplification_sphere.png").exists()


def test_camel_amplification_above_one_at_20_quantiles(tmp_path):
    """The CFM model amplifies the 100 camel points at 20 quantiles in the quick budget (the seed's
    GAN needs far more than the quick budget's 3000 batches)."""
    from hepgen.cli.main import main

    out = tmp_path / "camel"
    assert main(["study", "amplification", "--quick", "--toys", "camel", "--models", "cfm", "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["camel"]["cfm"]["amplification"]["20"]["value"] > 1


@pytest.mark.parametrize("study", ["two-moons", "amplification"])
def test_a_bad_out_is_one_line_and_a_nonzero_exit(tmp_path, capsys, study):
    from hepgen.cli.main import main

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["study", study, "--quick", "--out", str(blocker)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err
    assert main(["study", study, "--quick", "--out", str(tmp_path / "missing" / "deeper")]) != 0
    assert blocker.read_text() == "x"
