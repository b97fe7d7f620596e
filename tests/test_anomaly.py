"""LHCO-like dijets, CWoLa, the ROC metrics and the anomaly CLI (issue 14 items 2, 3, 6)."""

import json
import math

import h5py
import numpy as np
import pytest

from conftest import expect_one_error_line
from hepgen.cli.main import main
from hepgen.data.dijets import COLUMNS, DijetSample, read_dijets, write_dijets


@pytest.fixture(scope="module")
def wprime_one_worker():
    from hepgen.simulate.dijets import generate_dijets

    return generate_dijets("wprime", 200, seed=3, workers=1, progress=False)


def test_dijet_producer_same_file_for_1_and_2_workers_and_signal_peaks(tmp_path, wprime_one_worker, capsys):
    out = tmp_path / "wp.h5"
    assert main(["data", "dijets", "--process", "wprime", "--num-events", "200", "--seed", "3", "--workers", "2",
                 "--no-progress", "--out", str(out)]) == 0
    two = read_dijets(out)
    np.testing.assert_array_equal(two.features, wprime_one_worker.features)
    np.testing.assert_array_equal(two.jets, wprime_one_worker.jets)
    with h5py.File(out) as f:
        assert list(f["features"].attrs["columns"]) == list(COLUMNS)
        assert f["features"].dtype == np.float32
        np.testing.assert_array_equal(f["mjj"][:], two.mjj)
    s = wprime_one_worker
    assert 3000 < np.median(s.mjj) < 3700  # W' of 3.5 TeV (jets lose some to FSR outside R = 1)
    assert abs(np.median(s.column("mj1")) - 500) < 80  # X
    assert abs(np.median(s.column("mj1") - s.column("delta_mj")) - 100) < 40  # Y
    assert np.all(s.column("delta_mj") >= 0)  # ordered by mass
    t21 = s.features[:, 3:]
    assert np.all((t21 >= 0) & (t21 <= 1.5))
    assert np.median(t21[:, 0]) < 0.45  # two-prong X jets


def test_qcd_dijets_pass_the_trigger_and_differ_from_signal():
    from hepgen.simulate.dijets import generate_dijets

    q = generate_dijets("qcd", 60, seed=1, workers=1, progress=False)
    assert np.all(q.jets[:, :, 0].max(1) > 1200)
    assert np.median(q.mjj) > 2400
    assert np.median(q.column("tau21_j1")) > 0.4  # one-prong QCD jets
    assert q.attrs["process"] == "qcd" and q.attrs["generated"] >= 60


def test_nsubjettiness_hand_computed():
    from hepgen.simulate.dijets import nsubjettiness

    pt, rap, phi = [1.0, 1.0, 2.0], [0.3, -0.3, 0.0], [0.0, 0.0, 0.5]
    # one axis at the origin: dR = 0.3, 0.3, 0.5 -> (0.3 + 0.3 + 2 * 0.5) / (4 * R0)
    assert nsubjettiness(pt, rap, phi, [0.0], [0.0]) == pytest.approx(0.4)
    # axes at the origin and on the third particle: only the first two contribute
    assert nsubjettiness(pt, rap, phi, [0.0, 0.0], [0.0, 0.5]) == pytest.approx(0.15)
    # azimuth wraps around: particles at phi = +-(pi - 0.1) lie 0.1 from an axis at pi
    assert nsubjettiness([1, 1], [0, 0], [math.pi - 0.1, -math.pi + 0.1], [0.0], [math.pi]) == pytest.approx(0.1)


def test_jet_taus_with_exclusive_kt_axes_against_hand_computation():
    import fastjet

    from hepgen.simulate.dijets import jet_taus

    # two close particles (one subjet) and a harder one 0.6 away, massless
    parts = [(1.0, 0.05, 0.0), (1.0, -0.05, 0.0), (2.0, 0.0, 0.6)]
    p4 = np.array([[pt * math.cos(ph), pt * math.sin(ph), pt * math.sinh(y), pt * math.cosh(y)] for pt, y, ph in parts])
    pjs = [fastjet.PseudoJet(*map(float, p)) for p in p4]
    seq = fastjet.ClusterSequence(pjs, fastjet.JetDefinition(fastjet.antikt_algorithm, 1.0))
    (jet,) = seq.inclusive_jets(0.0)
    tau1, tau2, tau3 = jet_taus(jet)
    # tau1: the axis is the summed four-momentum (E scheme)
    px, py, pz, e = p4.sum(0)
    ay, aphi = 0.5 * math.log((e + pz) / (e - pz)), math.atan2(py, px)
    d = [math.hypot(y - ay, ph - aphi) for _, y, ph in parts]
    assert tau1 == pytest.approx(sum(pt * di for (pt, _, _), di in zip(parts, d)) / 4.0, rel=1e-6)
    # tau2: kT merges the close pair (axis at y = 0, phi = 0 by symmetry), the hard one is its own axis
    assert tau2 == pytest.approx((0.05 + 0.05) / 4.0, rel=1e-6)
    assert tau3 == 0.0  # three particles, three axes


def test_roc_metrics_agree_with_scikit_learn():
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc

    from hepgen.metrics.anomaly import inverse_background_efficiency, point_metrics, roc_auc, roc_curve

    rng = np.random.default_rng(0)
    y = rng.random(3000) < 0.3
    s = np.round(rng.normal(size=3000) + 0.8 * y, 1)  # many ties
    w = rng.uniform(0.5, 2.0, 3000)
    for weights in (None, w):
        fpr, tpr, thr = roc_curve(y, s, weights)
        f2, t2, th2 = sk_roc(y, s, sample_weight=weights, drop_intermediate=False)
        np.testing.assert_allclose(fpr, f2)
        np.testing.assert_allclose(tpr, t2)
        np.testing.assert_allclose(thr[1:], th2[1:])
        assert roc_auc(y, s, weights) == pytest.approx(roc_auc_score(y, s, sample_weight=weights), rel=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    assert inverse_background_efficiency(fpr, tpr, 0.3) == pytest.approx(1 / np.interp(0.3, tpr, fpr))
    # perfectly separated: AUC 1, no background at eps_s = 0.2
    m = point_metrics(np.r_[np.zeros(100), np.ones(100)], np.r_[np.zeros(100), np.ones(100)])
    assert m["auc"] == 1.0 and math.isinf(m["inv_eps_b_at_0.2"])


def toy(n_bkg, n_sig, seed):
    """Gaussian toy: background features N(0, 1) and m_jj uniform in 3-4 TeV; signal shifted
    features and m_jj around 3.5 TeV (inside the SR 3.3-3.7 TeV)."""
    rng = np.random.default_rng(seed)
    b = np.c_[rng.uniform(3000, 4000, n_bkg), rng.normal(size=(n_bkg, 4))]
    sig = np.c_[np.clip(rng.normal(3500, 60, n_sig), 3310, 3690), rng.normal([1.5, 1.5, -1.5, -1.5], 0.5, (n_sig, 4))]
    return (DijetSample(b, COLUMNS, label=np.zeros(n_bkg)), DijetSample(sig, COLUMNS, label=np.ones(n_sig)))


def test_cwola_finds_the_injected_signal_on_a_toy():
    from hepgen.metrics.anomaly import roc_auc
    from hepgen.training.anomaly import CWoLaConfig, inject_signal, regions, score_run, train_cwola

    bkg, sig = toy(12000, 2000, 0)
    mixed = inject_signal(bkg, sig, 0.05, seed=1)  # 600 signal events, S/B ~ 12 % in the SR
    assert (mixed.label == 1).sum() == 600 and len(mixed) == 12600
    cfg = CWoLaConfig(folds=3, epochs=8, ensemble=3, seed=0)
    res = train_cwola(mixed, cfg)
    for k in range(3):
        tr = [r[2] for r in res.losses if r[0] == k]
        assert tr[-1] < tr[0]
    assert len(res.ensemble.members) == 3 and all(len(m) == 3 for m in res.ensemble.members)
    used = res.in_sr | res.in_sb
    assert np.isfinite(res.kfold_probability[used]).all() and np.isnan(res.kfold_probability[~used]).all()
    # k-fold scores of the SR events find the signal
    sr = res.in_sr
    assert roc_auc(mixed.label[sr], res.kfold_probability[sr]) > 0.7
    # and so do the ensemble's scores of an independent test set
    tb, ts = toy(4000, 400, 7)
    x = lambda s: np.stack([s.column(c) for c in res.ensemble.feature_columns], 1)  # noqa: E731
    sr_b, _ = regions(tb.mjj, cfg.signal_region, cfg.sideband)
    p = np.r_[res.ensemble.probability(x(tb))[sr_b], res.ensemble.probability(x(ts))]
    y = np.r_[np.zeros(sr_b.sum()), np.ones(len(ts))]
    assert roc_auc(y, p) > 0.7


def test_anomaly_cli_end_to_end(tmp_path, capsys):
    bkg, sig = toy(6000, 1000, 2)
    tb, ts = toy(3000, 300, 3)
    paths = {}
    for name, s in {"bkg": bkg, "sig": sig, "test_bkg": tb, "test_sig": ts}.items():
        paths[name] = write_dijets(s, tmp_path / f"{name}.h5")
    run = tmp_path / "run"
    assert main(["anomaly", "train", "cwola", "--data", str(paths["bkg"]), "--signal", str(paths["sig"]),
                 "--s-over-b", "0.08", "--signal-region", "3300", "3700", "--sidebands", "200", "--folds", "2",
                 "--epochs", "6", "--ensemble", "2", "--no-progress", "--out", str(run)]) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["method"] == "cwola" and meta["signal_events"] == 480 and meta["s_over_b"] == 0.08
    assert {"model.pt", "losses.csv", "kfold_scores.h5", "kfold_metrics.json", "loss.png"} <= {p.name for p in run.iterdir()}
    scores = tmp_path / "scores.h5"
    assert main(["anomaly", "score", str(run), "--data", str(paths["test_bkg"]), "--out", str(scores)]) == 0
    with h5py.File(scores) as f:
        assert f["score"].shape == (3000,) and np.all(f["score"][:] > 0)
        assert f["in_region"][:].sum() == ((tb.mjj >= 3300) & (tb.mjj <= 3700)).sum()
    rep = tmp_path / "report"
    assert main(["evaluate", "anomaly", "--run", str(run), "--background", str(paths["test_bkg"]),
                 "--signal", str(paths["test_sig"]), "--bootstrap", "5", "--out", str(rep)]) == 0
    m = json.loads((rep / "metrics.json").read_text())
    assert set(m) == {"auc", "sic_max", "inv_eps_b_at_0.2", "inv_eps_b_at_0.3"}
    assert all(set(v) == {"value", "error"} for v in m.values())
    assert m["auc"]["value"] > 0.7 and m["sic_max"]["value"] > 1
    assert m["inv_eps_b_at_0.2"]["value"] >= m["inv_eps_b_at_0.3"]["value"] > 1
    for f in ("report.html", "roc.png", "sic.png"):
        assert (rep / f).is_file()


@pytest.mark.parametrize("argv, fragment", [
    (["anomaly", "train", "cwola", "--data", "{tmp}/missing.h5", "--out", "{tmp}/r"], "missing.h5: no such file"),
    (["anomaly", "train", "nae", "--data", "{tmp}/bkg.h5", "--out", "{tmp}/r"], "missing dataset(s)"),  # not jets
    (["anomaly", "train", "cwola", "--data", "{tmp}/bkg.h5", "--signal", "{tmp}/bkg.h5", "--s-over-b", "5",
      "--out", "{tmp}/r"], "--s-over-b 5"),
    (["anomaly", "train", "cwola", "--data", "{tmp}/bkg.h5", "--signal-region", "3700", "3300", "--out", "{tmp}/r"],
     "--signal-region"),
    (["anomaly", "train", "cwola", "--data", "{tmp}/bkg.h5", "--signal-region", "9000", "9100", "--out", "{tmp}/r"],
     "in the sidebands"),
    (["anomaly", "train", "cwola", "--data", "{tmp}/notdijet.h5", "--out", "{tmp}/r"], "not a dijet file"),
    (["anomaly", "score", "{tmp}", "--data", "{tmp}/bkg.h5", "--out", "{tmp}/s.h5"], "not an anomaly run"),
    (["evaluate", "anomaly", "--run", "{tmp}/nope", "--background", "{tmp}/bkg.h5", "--signal", "{tmp}/bkg.h5",
      "--out", "{tmp}/rep"], "no such run folder"),
    (["data", "dijets", "--process", "qcd", "--num-events", "0", "--out", "{tmp}/q.h5"], "--num-events"),
    (["data", "dijets", "--process", "zprime", "--num-events", "5", "--out", "{tmp}/q.h5"], "zprime"),
])
def test_bad_input_gives_one_error_line(tmp_path, capsys, argv, fragment):
    write_dijets(toy(200, 10, 0)[0], tmp_path / "bkg.h5")
    with h5py.File(tmp_path / "notdijet.h5", "w") as f:
        f["x"] = np.zeros(3)
    expect_one_error_line(capsys, [a.format(tmp=tmp_path) for a in argv], fragment)


def test_cwola_single_classifier_with_validation_split():
    """folds = 1 (the seed's set-up): one classifier, only the validation events scored."""
    from hepgen.metrics.anomaly import roc_auc
    from hepgen.training.anomaly import CWoLaConfig, inject_signal, regions, train_cwola

    bkg, sig = toy(12000, 2000, 0)
    mixed = inject_signal(bkg, sig, 0.05, seed=1)
    cfg = CWoLaConfig(folds=1, val_fraction=1 / 9, epochs=8, ensemble=3, seed=0)
    res = train_cwola(mixed, cfg)
    assert len(res.ensemble.members) == 1 and len(res.ensemble.members[0]) == 3
    used = res.in_sr | res.in_sb
    scored = np.isfinite(res.kfold_probability)
    assert not scored[~used].any() and scored.sum() == round(used.sum() / 9)
    tb, ts = toy(4000, 400, 7)
    x = lambda s: np.stack([s.column(c) for c in res.ensemble.feature_columns], 1)  # noqa: E731
    sr_b, _ = regions(tb.mjj, cfg.signal_region, cfg.sideband)
    p = np.r_[res.ensemble.probability(x(tb))[sr_b], res.ensemble.probability(x(ts))]
    assert roc_auc(np.r_[np.zeros(sr_b.sum()), np.ones(len(ts))], p) > 0.7
    with pytest.raises(Exception, match="--folds must be at least 1"):
        train_cwola(mixed, CWoLaConfig(folds=0))


def test_online_cwola_quick_study_writes_its_metrics(tmp_path, monkeypatch, capsys):
    import hepgen.studies.online_cwola as oc

    monkeypatch.setattr(oc, "QUICK", dict(oc.QUICK, toy_background=5000, buffer=2000, iterations=1, blocks=2,
                                          hidden=16, epochs=2, ensemble=1, prescales=[2, 5]))
    assert main(["study", "online-cwola", "--quick", "--out", str(tmp_path / "oc"), "--no-progress"]) == 0
    m = json.loads((tmp_path / "oc" / "metrics.json").read_text())
    assert m["training_samples"] == ["data", "prescale_2", "prescale_5", "online_flow"]
    n = m["stream"]["events"]
    assert n == 4000 + round(0.03 * 4000) and m["stream"]["signal"] == 120
    assert m["data"]["events"] == n and m["prescale_2"]["events"] == (n + 1) // 2
    assert m["prescale_5"]["events"] == (n + 4) // 5
    assert m["online_flow"]["events"] <= round(oc.QUICK["flow_ratio"] * n) and m["flow"]["buffers"] == 3
    for name in m["training_samples"]:
        r = m[name]
        assert {"auc", "sic_max", "inv_eps_b_at_0.2", "inv_eps_b_at_0.3"} <= set(r)
        assert 0 <= r["auc"] <= 1 and r["inv_eps_b_at_0.2"] >= 1 and r["sic_max"] > 0
    later = [f for f in (2, 5) if all(m[f"prescale_{g}"]["sic_max"] < m["online_flow"]["sic_max"] for g in (2, 5) if g >= f)]
    assert m["flow_beats_prescales_from"] == (later[0] if later else None)
    assert (tmp_path / "oc" / "report.html").is_file() and (tmp_path / "oc" / "roc_sic.png").is_file()
    # files must come in pairs: one clear error line
    capsys.readouterr()
    assert main(["study", "online-cwola", "--quick", "--out", str(tmp_path / "o2"), "--data", str(tmp_path / "x.h5")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--signal" in err[0]
