"""The toy method studies (issue 15 items 1-3): two moons, GAN amplification, interpolation, through the CLI."""

import json

import numpy as np
import torch
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
    # --resume keeps the finished models (the full budget spans sessions); a new budget retrains
    stamp = (out / "parts" / "cfm.npz").stat().st_mtime_ns
    assert main(["study", "two-moons", "--quick", "--models", "gan,cfm", "--out", str(out), "--no-progress",
                 "--resume"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert (out / "parts" / "cfm.npz").stat().st_mtime_ns == stamp
    assert {k: again["cfm"][k] for k in ("w1", "auc", "train_seconds")} == {k: m["cfm"][k] for k in ("w1", "auc", "train_seconds")}
    assert main(["study", "two-moons", "--quick", "--models", "cfm", "--iterations", "100", "--out", str(out),
                 "--no-progress", "--resume"]) == 0
    assert (out / "parts" / "cfm.npz").stat().st_mtime_ns != stamp


@pytest.mark.parametrize("name", ["nf-affine", "wgan", "ddpm", "cfm", "vae"])
def test_a_killed_study_model_continues_exactly_from_its_checkpoint(name, tmp_path):
    """One model of the seed's budget can outlast a session (cnf: > 65 min here): killed
    mid-training, it continues from its checkpoint in a fresh state to the network an
    uninterrupted run makes (wgan: the critic-step count is carried over, 17 is no multiple
    of its 5 critic steps)."""
    from hepgen.studies.two_moons import make_moons, train_model
    from hepgen.training.resume import LoopCheckpoint

    data = make_moons(2000, np.random.default_rng(0))
    data = (data - data.mean(0)) / data.std(0)
    whole, _ = train_model(name, data, 30, 64, seed=3)

    class Killed(Exception):
        pass

    def kill(step):
        if step == 17:
            raise Killed

    path = tmp_path / f"{name}.ckpt"
    with pytest.raises(Killed):
        train_model(name, data, 30, 64, seed=3, progress=kill, checkpoint=LoopCheckpoint(path, "budget", every=0))
    assert path.exists()
    torch.manual_seed(99)  # another process: other generator states
    resumed, _ = train_model(name, data, 30, 64, seed=3, checkpoint=LoopCheckpoint(path, "budget"))
    assert not path.exists()  # cleared once trained
    np.testing.assert_array_equal(whole(500, 1), resumed(500, 1))
    # the checkpoint of another budget is not continued: a 20-step run beside it is a fresh one
    with pytest.raises(Killed):
        train_model(name, data, 30, 64, seed=3, progress=kill, checkpoint=LoopCheckpoint(path, "budget", every=0))
    short, _ = train_model(name, data, 20, 64, seed=3)
    beside, _ = train_model(name, data, 20, 64, seed=3, checkpoint=LoopCheckpoint(path, "20 steps"))
    np.testing.assert_array_equal(short(500, 1), beside(500, 1))


def test_ensemble_members_are_independent_networks():
    """An ensemble member computes what an nn.Linear MLP with its weights computes, and the
    summed loss gives each member the gradient of its own loss only."""
    from hepgen.models.blocks.ensemble import ensemble_gradient_penalty, ensemble_mlp

    torch.manual_seed(0)
    ens = ensemble_mlp(3, 4, 2, hidden=8, layers=2, act=torch.nn.ELU)
    x = torch.randn(3, 5, 4)
    for r in range(3):
        plain = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ELU(), torch.nn.Linear(8, 8), torch.nn.ELU(),
                                    torch.nn.Linear(8, 2))
        with torch.no_grad():
            for lin, el in zip(plain[::2], ens[::2]):
                lin.weight.copy_(el.weight[r].T)
                lin.bias.copy_(el.bias[r, 0])
        torch.testing.assert_close(ens(x)[r], plain(x[r]))
    loss = ens(x)[1].square().sum() + ensemble_gradient_penalty(lambda z: ens(z)[..., :1], x, x + 1, weight=0.0)
    loss.backward()
    first = ens[0].weight.grad
    assert first[1].abs().sum() > 0 and first[0].abs().sum() == 0 and first[2].abs().sum() == 0


def test_ensemble_gan_learns_each_members_own_training_set():
    """Two members trained together on sets centred at -3 and +3: each generator ends near its
    own set (a shared or mixed-up training would put both at the same place)."""
    from hepgen.studies.amplification import train_gan

    rng = np.random.default_rng(0)
    sets = np.stack([rng.normal(-3, 0.5, (40, 1)), rng.normal(3, 0.5, (40, 1))])
    sample = train_gan(sets, epochs=60, batch=10, lr=1e-3, seed=0, noise=16)
    out = sample(2000, 1)
    assert out.shape == (2, 2000, 1)
    assert out[0].mean() < -1.5 and out[1].mean() > 1.5, out.mean((1, 2))


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


@pytest.mark.parametrize("study", ["two-moons", "amplification", "interpolation"])
def test_a_bad_out_is_one_line_and_a_nonzero_exit(tmp_path, capsys, study):
    from hepgen.cli.main import main

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["study", study, "--quick", "--out", str(blocker)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err
    assert main(["study", study, "--quick", "--out", str(tmp_path / "missing" / "deeper")]) != 0
    assert blocker.read_text() == "x"


def test_asimov_significance_follows_the_seeds_likelihood():
    """With no background uncertainty the profiled Z (seed eq. 7.19-7.20) is Cowan's
    sqrt(2((s+b) ln(1+s/b) - s)); a free background scale removes the one-bin sensitivity;
    the luminosity scale found for Z = 3 gives Z = 3."""
    import math

    from hepgen.studies.interpolation import asimov_z, required_lumi_scale

    s, b = 5.0, 10.0
    assert asimov_z([s], [b], 1e-12) == pytest.approx(math.sqrt(2 * ((s + b) * math.log(1 + s / b) - s)), rel=1e-4)
    assert asimov_z([s], [b], 1e6) < 0.05
    assert asimov_z([1.0, 4.0], [10.0, 2.0], 1.0) > asimov_z([5.0], [12.0], 1.0)  # the shape helps
    alpha = required_lumi_scale(np.array([1.0, 4.0]), np.array([10.0, 2.0]), 1.0)
    assert asimov_z([alpha, 4 * alpha], [10 * alpha, 2 * alpha], alpha) == pytest.approx(3.0, rel=1e-3)


def test_interpolation_study_quick(tmp_path, monkeypatch):
    """A reduced --quick run of both parts (issue 15 item 3). Part A: OT-CFM trained with the
    midpoint is at the unseen pi/8 and 3 pi/8 closer to the truth than a model that ignores the
    condition (the even mixture of the two end points) and than OT-CFM without the midpoint at
    pi/4. Part B on a tiny Pythia sample (100 signal events per mass mixing, 3 background events:
    the classifiers and the Asimov luminosities only run through): the eps = 0.25 and 0.75
    gluino signals carried to t = 1/2 are closer to the real, unseen eps = 0.5 than they were
    (measured: ecdf distance 0.042 vs 0.058 from 0.25, 0.040 vs 0.078 from 0.75)."""
    import hepgen.studies.interpolation as ip
    from hepgen.cli.main import main

    monkeypatch.setattr(ip, "QUICK", {**ip.QUICK, "a_train": 3000, "a_steps": 300, "a_batch": 128, "a_eval": 1000,
                                      "a_w1_points": 500, "a_classifier_iterations": 120, "a_ode_steps": 30,
                                      "a_nf_transforms": 2, "signal_events": 100,
                                      "background_events": {"ttbar": 2, "wjets": 1},
                                      "cnf_steps": 300, "cnf_hidden": 64, "clf_epochs": 20, "clf_eval_every": 10,
                                      "repeats": 1, "transport_classifier_iterations": 100})
    out = tmp_path / "interp"
    assert main(["study", "interpolation", "--quick", "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    rg = m["rotating_gaussian"]
    for variant in ("endpoints", "midpoint"):
        for model in ("nf", "cfm", "ot-cfm"):
            for angle in ("0", "0.125", "0.25", "0.375", "0.5"):
                v = rg[variant][model][angle]
                assert v["w1"] > 0 and 0.5 <= v["auc"] <= 1 and np.isfinite(v["cov"])
    ot = rg["midpoint"]["ot-cfm"]
    for angle in ("0.125", "0.375"):
        assert ot[angle]["w1"] < 0.6 * rg["mixture"][angle]["w1"], (angle, ot[angle], rg["mixture"][angle])
    assert ot["0.25"]["w1"] < rg["endpoints"]["ot-cfm"]["0.25"]["w1"]
    susy = m["susy"]
    tr = susy["transport"]
    for start in ("0.25", "0.75"):  # each direction: the same events closer to eps = 0.5 after the transport
        assert tr[f"from_{start}_at_t0.5_vs_real_0.5"]["ecdf"] < tr[f"input_{start}_vs_real_0.5"]["ecdf"], tr
    both = tr["both_at_t0.5_vs_real_0.5"]
    for d in ("ecdf", "s2"):
        assert both[d] < min(tr["input_0.25_vs_real_0.5"][d], tr["input_0.75_vs_real_0.5"][d]), (d, tr)
    assert set(susy["classifier"]) == {"baseline", "interpolation", "sanity"}
    assert susy["samples"]["signal_0.5"]["events"] == 100 and susy["samples"]["signal_0.5"]["sigma_fb"] > 0
    assert susy["chargino_masses"] == {"0.25": 625.0, "0.5": 1150.0, "0.75": 1675.0}
    for name in ("report.html", "rotating_gaussian.png", "susy_transport_midpoint.png", "susy_classifier.png"):
        assert (out / name).exists()


@pytest.mark.parametrize("study, module, argv, expected", [
    ("interpolation", "interpolation", ["--parts", " B, a,"], dict(parts=["b", "a"], seed=0)),
    ("bump-hunt", "bump_hunt", ["--resume"], dict(resume=True, seed=0)),
    ("online-cwola", "online_cwola", ["--prescales", "2,5", "--lr", "0.5"], dict(prescales=[2, 5], lr=0.5)),
    ("two-moons", "two_moons", ["--models", "cfm, gan,,", "--seed", "3"], dict(models=["cfm", "gan"], seed=3)),
    ("amplification", "amplification", ["--toys", "ring", "--models", "cfm"],
     dict(toys=["ring"], models=["cfm"], runs=None)),
])
def test_study_commands_hand_their_options_to_the_study_and_name_the_report(tmp_path, capsys, monkeypatch, study,
                                                                           module, argv, expected):
    """What every ``hepgen study`` command does around its study (hepgen.cli.study._run_study):
    the parsed options and ``echo`` reach the study's ``run``, then the report's path is printed."""
    import importlib

    import typer

    from hepgen.cli.main import main

    calls = []
    monkeypatch.setattr(importlib.import_module(f"hepgen.studies.{module}"), "run",
                        lambda out, **kw: calls.append((out, kw)) or kw["echo"]("study ran"))
    out = tmp_path / "s"
    assert main(["study", study, "--quick", "--out", str(out), "--no-progress", *argv]) == 0
    [(got_out, kw)] = calls
    assert got_out == out and kw["echo"] is typer.echo and kw["quick"] is True and kw["progress"] is False
    assert {k: kw[k] for k in expected} == expected
    assert capsys.readouterr().out == f"study ran\nreport: {out / 'report.html'}\n"
