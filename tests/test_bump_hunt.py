"""The OnlineFlow bump hunt (issue 14 item 1): fit, BumpHunter window, significances, flows."""

import json

import numpy as np
import pytest


def test_bumphunter_finds_the_injected_bump_and_prescales_cost_sqrt_f():
    from hepgen.studies.bump_hunt import EDGES, data_significance, fit_background, make_stream

    x, signal = make_stream(400_000, np.random.default_rng(1))
    assert signal.mean() == pytest.approx(0.005, abs=5e-4)
    full = data_significance(x)
    lo, hi = full["window"]
    assert lo <= 1.0 <= hi and hi - lo <= 0.6
    assert full["significance"] > 5
    quarter = data_significance(x[np.random.default_rng(2).random(len(x)) < 0.25])
    assert quarter["significance"] == pytest.approx(full["significance"] / 2, rel=0.35)
    # the background model describes a pure exponential: chi2 / dof ~ 1
    bkg_only = np.random.default_rng(3).exponential(1.0, 400_000)
    counts = np.histogram(bkg_only, EDGES)[0].astype(float)
    fit = fit_background(counts)
    ok = counts > 0
    chi2 = (((counts - fit) ** 2)[ok] / fit[ok]).sum() / (ok.sum() - 6)
    assert 0.4 < chi2 < 2.0


def test_online_flow_learns_from_a_stream_with_swa_and_bootstrap_weights():
    import torch

    from hepgen.training.online import OnlineFlowEnsemble, train_online_ensemble

    rng = np.random.default_rng(0)
    stream = rng.exponential(1.0, 6000)
    ens = train_online_ensemble(stream, members=2, buffer=2000, batch=250, iterations=3, lr=3e-3, progress=False,
                                blocks=2, hidden=16)
    assert ens.buffers == 3 and ens.network() is ens.swa.module  # averaged after the first swa_start buffers
    y = torch.as_tensor(np.concatenate([np.log(rng.exponential(1.0, (2000, 1))), rng.standard_normal((2000, 3))], 1),
                        dtype=torch.float32).expand(2, -1, -1)
    fresh = OnlineFlowEnsemble(members=2, blocks=2, hidden=16, seed=5)
    with torch.no_grad():
        nll_trained = -ens.network().log_prob(y).mean(1)
        nll_fresh = -fresh.network().log_prob(y).mean(1)
    assert (nll_trained < nll_fresh - 0.5).all(), (nll_trained, nll_fresh)
    a, b = ens.sample(5000, seed=1)
    for x in (a, b):  # Exp(1): median 0.69; untrained: 1.0
        assert x.shape == (5000,) and (x > 0).all() and 0.45 < np.median(x) < 0.9
    assert not np.allclose(a[:100], b[:100])  # different initialisations and bootstraps


def test_a_killed_online_ensemble_continues_at_the_next_buffer_exactly(tmp_path):
    """The seed's budget (5M points, 100 passes per buffer) is hours on a CPU core: a killed
    training continues from its checkpoint to the ensemble an uninterrupted run makes."""
    import torch

    import hepgen.training.online as online
    from hepgen.training.resume import LoopCheckpoint

    stream = np.random.default_rng(1).exponential(1.0, 5000)
    kw = dict(members=3, buffer=1000, batch=250, iterations=2, lr=3e-3, progress=False, blocks=2, hidden=8, seed=4)
    whole = online.train_online_ensemble(stream, **kw).sample(300, seed=2)
    calls = []
    real = online.OnlineFlowEnsemble.train_buffer

    def dies_at_the_fourth_buffer(self, x):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, x)

    path = tmp_path / "online.ckpt"
    online.OnlineFlowEnsemble.train_buffer = dies_at_the_fourth_buffer
    try:
        with pytest.raises(KeyboardInterrupt):
            online.train_online_ensemble(stream, checkpoint=LoopCheckpoint(path, "k", every=0), **kw)
    finally:
        online.OnlineFlowEnsemble.train_buffer = real
    assert path.exists()
    torch.manual_seed(123)
    resumed = online.train_online_ensemble(stream, checkpoint=LoopCheckpoint(path, "k"), **kw).sample(300, seed=2)
    assert not path.exists()
    for u, v in zip(whole, resumed):
        np.testing.assert_array_equal(u, v)


def test_bump_hunt_study_writes_its_metrics(tmp_path, monkeypatch):
    import hepgen.studies.bump_hunt as bh
    from hepgen.cli.main import main

    monkeypatch.setattr(bh, "QUICK", dict(points=60_000, buffer=10_000, batch=500, iterations=1, members=2, lr=3e-3,
                                          samples=60_000, prescales=[1, 2, 4]))
    assert main(["study", "bump-hunt", "--quick", "--out", str(tmp_path / "bh"), "--no-progress"]) == 0
    m = json.loads((tmp_path / "bh" / "metrics.json").read_text())
    assert {"significance_full", "significance_online", "significance_prescaled"} <= set(m)
    assert set(m["significance_prescaled"]) == {"1", "2", "4"}
    assert m["significance_prescaled"]["1"] == m["significance_full"]
    assert (tmp_path / "bh" / "report.html").exists() and (tmp_path / "bh" / "significance_vs_prescale.png").exists()


def test_online_flow_learns_the_dijet_features():
    """The single, unit-weight OnlineFlow of the dijet study (standardised by its first buffer,
    log of m_jj and m_J1) learns the m_jj spectrum and the m_J1 / m_J1 - m_J2 correlation
    (m_J2 >= 0.2 m_J1 in the toy); a fresh flow with the same preprocessing does not."""
    import torch

    from hepgen.studies.online_cwola import toy_dijets
    from hepgen.training.online import OnlineFlow, train_online

    torch.manual_seed(0)
    bkg, _ = toy_dijets(6000, 0, np.random.default_rng(3))
    x = bkg.features.astype(np.float64)
    kw = dict(pad=5, blocks=2, hidden=32, lr=3e-3, batch=500, log=(0, 1), standardize=True)
    flow = train_online(x, buffer=2000, iterations=20, progress=False, seed=1, **kw)
    assert flow.buffers == 3 and not flow.bootstrap and flow.network() is flow.swa.module
    assert flow.shift.shape == (5,) and flow.shift[0] == pytest.approx(np.log(x[:2000, 0]).mean())  # first buffer
    gen = flow.sample(8000, seed=2)
    assert gen.shape == (8000, 5) and np.isfinite(gen).all() and (gen[:, [0, 1]] > 0).all()
    assert gen[:, 0].mean() == pytest.approx(x[:, 0].mean(), rel=0.05)
    assert gen[:, 0].std() == pytest.approx(x[:, 0].std(), rel=0.2)
    fresh = OnlineFlow(features=5, seed=9, **kw)
    fresh._encode(x[:2000])  # the same standardisation, no training
    g0 = fresh.sample(8000, seed=2)
    corr = lambda g: np.corrcoef(g[:, 1], g[:, 2])[0, 1]  # noqa: E731
    assert corr(gen) == pytest.approx(corr(x), abs=0.15) and abs(corr(g0)) < 0.2
    assert (gen[:, 2] > gen[:, 1]).mean() < 0.05 < 0.1 < (g0[:, 2] > g0[:, 1]).mean()  # data: never
