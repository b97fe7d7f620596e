"""Event-level metrics and ``hepgen evaluate events`` on toy tt̄-like events."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, wasserstein_distance

from hepgen.cli.main import main
from hepgen.data.darkmachines import TYPE_CODE, EventSample, write_events
from hepgen.evaluate.events import evaluate_events
from hepgen.metrics.events import (
    event_distributions,
    event_feature_matrix,
    event_metrics,
    histogram_kl_js,
    kl_js_from_counts,
    scaled_w1,
    count_metrics,
)

N = 3000
FAST_CLASSIFIER = {"hidden": (128, 128, 128), "lr": 3e-4, "batch_size": 256}


def toy_events(n: int, seed: int, jet_scale: float = 1.0) -> EventSample:
    """tt̄-like toy events in MeV: 0-2 b-jets, about 3 jets, a lepton in 45% of the events,
    rare photons; pT = threshold x (1 + exponential), massive jets, MET log-normal. Light
    jets get their E and pT multiplied by ``jet_scale`` (a jet energy scale shift)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        objs, types = [], []
        spec = [("b", rng.choice(3, p=[0.2, 0.45, 0.35]), 20e3, 2.0), ("j", min(rng.poisson(3.0), 10), 20e3, 1.5)]
        if rng.random() < 0.45:
            spec.append((["e-", "e+", "m-", "m+"][rng.integers(4)], 1, 15e3, 2.0))
        spec.append(("g", rng.binomial(2, 0.05), 20e3, 1.0))
        for kind, k, ptmin, slope in spec:
            pt = np.sort(ptmin * (1 + rng.exponential(slope, k)))[::-1]
            eta = np.clip(rng.normal(0, 1.1, k), -2.3, 2.3)
            phi = rng.uniform(-np.pi, np.pi, k)
            mass = 0.12 * pt if kind in ("j", "b") else 0.0 * pt
            e = np.sqrt((pt * np.cosh(eta)) ** 2 + mass ** 2)
            if kind == "j":
                pt, e = pt * jet_scale, e * jet_scale
            objs += list(np.stack([e, pt, eta, phi], 1))
            types += [TYPE_CODE[kind]] * k
        rows.append((objs, types))
    m = max(len(t) for _, t in rows)
    objects = np.zeros((n, m, 4))
    codes = np.full((n, m), -1, np.int8)
    for i, (o, t) in enumerate(rows):
        if t:
            objects[i, :len(t)], codes[i, :len(t)] = o, t
    met = np.exp(rng.normal(np.log(40e3), 0.6, n))
    return EventSample(np.arange(n).astype(str), np.full(n, "ttbar"), np.ones(n), met,
                       rng.uniform(-np.pi, np.pi, n), objects, codes)


@pytest.fixture(scope="module")
def toys():
    return {"real": toy_events(N, 1), "same": toy_events(N, 2), "shifted": toy_events(N, 3, jet_scale=1.3)}


@pytest.fixture(scope="module")
def toy_files(toys, tmp_path_factory):
    d = tmp_path_factory.mktemp("events")
    return {k: write_events(v, d / f"{k}.txt") for k, v in toys.items()}


def test_w1_and_js_match_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 500), rng.normal(0.3, 1.2, 700)
    lo, hi = a.min(), a.max()
    assert scaled_w1(a, b) == pytest.approx(wasserstein_distance((a - lo) / (hi - lo), (b - lo) / (hi - lo)), rel=1e-12)
    assert scaled_w1(a, b) == pytest.approx(wasserstein_distance(a, b) / (hi - lo), rel=1e-9)
    edges = np.linspace(lo, hi, 51)
    kl, js = histogram_kl_js(a, b, edges)
    p = np.histogram(a, edges)[0]
    q = np.histogram(np.clip(b, lo, hi), edges)[0]
    assert js == pytest.approx(jensenshannon(p / p.sum(), q / q.sum(), base=2), rel=1e-9)
    pp, qq = p / p.sum() + 1e-6, q / q.sum() + 1e-6
    assert kl == pytest.approx(entropy(pp, qq), rel=1e-9) and kl > 0 and 0 < js < 1
    # identical -> 0, disjoint -> JS 1; an empty generated sample is the worst case
    assert kl_js_from_counts([1, 2, 3], [2, 4, 6]) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert kl_js_from_counts([1, 0], [0, 1])[1] == pytest.approx(1.0)
    assert kl_js_from_counts([1, 0], [0, 0])[1] == 1.0


def test_event_w1_is_scipy_on_the_same_arrays(toys):
    real, gen = toys["real"], toys["shifted"]
    res = event_metrics(real, gen, bootstrap=0)
    # leading-jet log10 pT by hand: pt-ordered jets of the file, first one per event
    def lead_logpt(s):
        jets, mask = s.objects_of("j")
        return np.log10(jets[mask[:, 0], 0, 1])
    r, g = lead_logpt(real), lead_logpt(gen)
    lo, hi = r.min(), r.max()
    expect = wasserstein_distance((r - lo) / (hi - lo), (g - lo) / (hi - lo))
    assert res.metrics["w1_j_1_log10pt"]["value"] == pytest.approx(expect, rel=1e-9)
    assert res.weights["j_1"] == len(r) and res.weights["met"] == len(real)
    # averages are the count-weighted means of the per-distribution feature means
    w = np.array([res.weights[n] for n in res.per_feature])
    js = np.array([res.per_feature[n][:, 2].mean() for n in res.per_feature])
    assert res.metrics["js_avg"]["value"] == pytest.approx(np.dot(w, js) / w.sum())
    assert all(0 <= v["value"] <= 1 for k, v in res.metrics.items() if k.startswith("js_"))
    # the last order holds all softer objects: every real jet is counted once
    assert sum(res.weights[f"j_{o}"] for o in ("1", "2", "3", "4+")) == int((real.types == TYPE_CODE["j"]).sum())


def test_same_toy_is_close_and_shifted_jets_are_not(toys):
    same = event_metrics(toys["real"], toys["same"], bootstrap=3, seed=1).metrics
    shifted = event_metrics(toys["real"], toys["shifted"], bootstrap=3, seed=1).metrics
    # measured for 3000 vs 3000 toy events (4 seeds): W1 0.008-0.009, KL 0.041-0.046, JS 0.101-0.103
    assert same["w1_avg"]["value"] < 0.015 and same["kl_avg"]["value"] < 0.08 and same["js_avg"]["value"] < 0.13
    # ... and with jets x1.3: W1 0.035-0.037, KL 0.35-0.36, JS 0.160-0.162
    assert shifted["w1_avg"]["value"] > 2.5 * same["w1_avg"]["value"]
    assert shifted["kl_avg"]["value"] > 4 * same["kl_avg"]["value"]
    assert shifted["js_avg"]["value"] > 1.3 * same["js_avg"]["value"]
    assert shifted["w1_total_pt"]["value"] > 5 * same["w1_total_pt"]["value"]
    assert shifted["js_total_pt"]["value"] > 2 * same["js_total_pt"]["value"]
    for m in (same, shifted):
        assert all(v["error"] >= 0 for v in m.values())
        assert 0 < m["w1_avg"]["error"] < m["w1_avg"]["value"]


def test_objects_are_pt_ordered_whatever_the_file_order(toys):
    real = toys["real"][:300]
    order = np.argsort(np.random.default_rng(0).random(real.types.shape), axis=1)
    shuffled = EventSample(real.event_id, real.process, real.weight, real.met, real.met_phi,
                           np.take_along_axis(real.objects, order[..., None], 1),
                           np.take_along_axis(real.types, order, 1))
    a, b = event_distributions(real), event_distributions(shuffled)
    for name in a.values:
        np.testing.assert_array_equal(a.entries(name), b.entries(name))
    np.testing.assert_allclose(event_feature_matrix(real), event_feature_matrix(shuffled), rtol=1e-12)


def test_missing_object_type_counts_as_worst(toys):
    real = toys["real"][:1000]
    types = real.types.copy()
    types[types == TYPE_CODE["g"]] = -1  # a model that never makes photons
    gen = EventSample(real.event_id, real.process, real.weight, real.met, real.met_phi, real.objects, types)
    res = event_metrics(real, gen, bootstrap=0, min_objects=5)
    m = res.metrics
    assert "g_1" in res.weights and res.weights["g_1"] > 5
    for feat in ("log10E", "log10pt", "eta", "phi"):
        assert m[f"js_g_1_{feat}"]["value"] == 1.0 and m[f"w1_g_1_{feat}"]["value"] == 1.0
        assert m[f"kl_g_1_{feat}"]["value"] > 5
    assert m["w1_j_1_log10pt"]["value"] == 0.0 and m["count_js_j"]["value"] == 0.0 and m["count_js_g"]["value"] > 0.1
    assert 0 < m["js_avg"]["value"] < 1


def test_count_metrics():
    real = np.array([[2, 1, 0, 0, 0, 0, 0]] * 8 + [[3, 2, 1, 0, 0, 0, 0]] * 2)
    gen = np.array([[2, 1, 0, 0, 0, 0, 0]] * 6 + [[5, 0, 0, 0, 0, 0, 1]] * 4)
    m = count_metrics(real, gen)
    assert m["count_vector_unseen_fraction"] == pytest.approx(0.4)
    assert m["count_js_m-"] == 0.0 and m["count_js_g"] > 0.4
    assert count_metrics(real, real)["count_vector_js"] == pytest.approx(0.0, abs=1e-12)


def test_classifier_and_report(toy_files, tmp_path):
    # measured: same toy (3000 vs 3000, 2 runs x 10 epochs of 3 x 128) AUC 0.51-0.52; jets x1.3 through the
    # CLI defaults (2 x 256, lr 3e-4), 2500 events, 1 run x 20 epochs: 0.64
    same = evaluate_events(toy_files["real"], toy_files["same"], tmp_path / "same", plots=False, classifier_runs=2,
                           classifier_epochs=10, classifier_options=FAST_CLASSIFIER, bootstrap=2, progress=False,
                           device="cpu", echo=lambda *a: None).metrics
    assert abs(same["auc"]["value"] - 0.5) < 0.06
    out = tmp_path / "shifted"
    code = main(["evaluate", "events", "--real", str(toy_files["real"]), "--gen", str(toy_files["shifted"]),
                 "--out", str(out), "--classifier-runs", "1", "--classifier-epochs", "20", "--bootstrap", "2",
                 "--max-events", "2500", "--no-progress"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("w1_avg", "kl_avg", "js_avg", "auc", "w1_avg_by_type", "w1_total_e", "js_total_pt",
                "count_vector_js", "count_vector_unseen_fraction", "count_js_j", "w1_j_1_log10pt", "js_met_phi",
                "kl_b_2+_eta"):
        assert set(m[key]) == {"value", "error"} and np.isfinite(m[key]["value"]), key
    assert all(set(v) == {"value", "error"} for k, v in m.items() if k not in ("info", "timing_s"))
    assert m["auc"]["value"] > 0.6 and m["info"]["n_real"] == 2500 and m["info"]["n_gen"] == 2500
    assert m["w1_avg"]["value"] > 2 * same["w1_avg"]["value"]
    if importlib.util.find_spec("hepgen.simulate.events"):
        assert 0 < m["valid_fraction"]["value"] <= 1 and "valid_fraction" in same
    html = (out / "report.html").read_text()
    assert "0.00836" in html and "Experiment III" in html
    for png in ("objects_j.png", "objects_b.png", "met.png", "totals.png", "counts.png", "classifier_weights.png"):
        assert (out / png).stat().st_size > 1000 and png in html, png


def test_cli_bad_input_keeps_existing_output(toy_files, tmp_path, capsys):
    real = str(toy_files["real"])
    out = tmp_path / "report"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("1;ttbar;1.0;45.2;0.3;j,1,2,3,4;\n2;ttbar;1.0;45.2;0.3;q,1,2,3,4;\n")
    cases = [
        ([str(tmp_path / "missing.txt"), real], ["--real", "file not found"]),
        ([real, str(empty)], ["--gen", "no events"]),
        ([real, str(bad)], ["--gen", "bad.txt:2", "unknown object type"]),
    ]
    for (r, g), fragments in cases:
        code = main(["evaluate", "events", "--real", r, "--gen", g, "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and err.startswith("hepgen: error:"), err
        for frag in fragments:
            assert frag in err, err
    for extra, frag in ((["--classifier-epochs", "0"], "--classifier-epochs"), (["--max-events", "0"], "--max-events"),
                        (["--unit", "keV"], "--unit")):
        code = main(["evaluate", "events", "--real", real, "--gen", real, "--out", str(out), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and frag in err, err
    assert (out / "metrics.json").read_text() == "old" and sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]
