"""AnomalyCLR and DarkCLR (issue 14 item 5; seed 002 sec. 5.3, L1557-1812): augmentations,
losses, training, the score CLI and its errors."""

import json
import math

import h5py
import numpy as np
import pytest
import torch

from conftest import expect_one_error_line
from hepgen.cli.main import main
from hepgen.data.darkmachines import TYPE_CODE, EventSample, write_events
from hepgen.data.jetnet import JetSample, write_jets
from hepgen.models.assemblies.clr import anomclr_loss, anomclr_plus_loss, clr_loss, norm_penalty
from hepgen.transforms import augment as A

TINY = """\
model: {model_dim: 16, ff_dim: 32, output_dim: 16, heads: 2, layers: 1}
train: {lr: 3.0e-3, batch_size: 32, epochs: 3}
ae: {epochs: 3, batch_size: 32, hidden: [32, 16], bottleneck: 3}
data: {}
"""


def toy_events(n, seed, leptons=0):
    """Dark Machines-like toy events (MeV): 2-5 jets, ``leptons`` extra electrons and muons."""
    rng = np.random.default_rng(seed)
    rows, types = [], []
    for _ in range(n):
        objs, ts = [], []
        for pt in np.sort(rng.uniform(30, 200, rng.integers(2, 6)))[::-1]:
            objs.append(pt)
            ts.append(TYPE_CODE["j"])
        for k in range(leptons):
            objs.append(rng.uniform(20, 80))
            ts.append(TYPE_CODE["e-" if k % 2 else "m+"])
        rows.append(objs)
        types.append(ts)
    m = max(len(r) for r in rows)
    objects = np.zeros((n, m, 4))
    codes = np.full((n, m), -1, np.int8)
    for i, (r, t) in enumerate(zip(rows, types)):
        eta = rng.uniform(-2.5, 2.5, len(r))
        objects[i, :len(r)] = np.stack([np.array(r) * np.cosh(eta), r, eta, rng.uniform(-np.pi, np.pi, len(r))], 1) * [1e3, 1e3, 1, 1]
        codes[i, :len(r)] = t
    return EventSample(np.arange(1, n + 1), ["toy"] * n, np.ones(n), rng.uniform(5e3, 1e5, n),
                       rng.uniform(-np.pi, np.pi, n), objects, codes)


def toy_jets(n, seed, particles=20):
    rng = np.random.default_rng(seed)
    pf = np.zeros((n, particles, 4), np.float32)
    for i in range(n):
        k = rng.integers(5, particles + 1)
        pt = np.sort(rng.exponential(1.0, k))[::-1]
        pf[i, :k] = np.stack([rng.normal(0, 0.2, k), rng.normal(0, 0.2, k), pt / pt.sum(), np.ones(k)], 1)
    jf = np.stack([np.full(n, 200.0), np.zeros(n), np.full(n, 30.0), (pf[..., 3] > 0).sum(1)], 1).astype(np.float32)
    return JetSample(pf, jf)


@pytest.fixture(scope="module")
def events():
    return A.event_slots(toy_events(200, 1, leptons=1))


def vector_sum(x):
    """(N, 2) vector sum of every object and the MET: conserved when the MET is recomputed."""
    return np.stack([(x[..., 0] * np.cos(x[..., 2])).sum(1), (x[..., 0] * np.sin(x[..., 2])).sum(1)], 1)


def test_event_slots_layout(events):
    assert events.shape == (200, 19, 3)
    assert (events[:, 0, 0] > 0).all() and (events[:, 0, 1] == 0).all()             # the MET, GeV
    assert ((events[:, 1:5, 0] > 0).sum(1) == 0).all()                              # m+ only: no electron
    assert ((events[:, 5:9, 0] > 0).sum(1) == 1).all()                              # one muon
    jets = events[:, 9:, 0]
    assert ((jets > 0).sum(1) >= 2).all() and (np.diff(jets, axis=1) <= 0).all()    # pT-ordered
    assert jets.max() <= 200 and jets[jets > 0].min() >= 30


def test_rotation_keeps_pt_and_met_magnitude(events):
    rng = np.random.default_rng(0)
    y = A.rotate_event(events, rng)
    np.testing.assert_array_equal(y[..., 0], events[..., 0])                     # every pT and |MET|
    np.testing.assert_array_equal(y[..., 1], events[..., 1])
    present = events[..., 0] > 0
    dphi = (y[..., 2] - events[..., 2])[present]
    # one angle per event: the phi differences inside an event agree (mod 2 pi) ...
    d = (y[..., 2] - events[..., 2] - (y[:, :1, 2] - events[:, :1, 2]) + np.pi) % (2 * np.pi) - np.pi
    assert np.abs(d[present]).max() < 1e-9
    # ... and the events really turned
    assert np.abs(np.sin(dphi)).mean() > 0.3


def test_physical_smearing(events):
    rng = np.random.default_rng(1)
    y = A.smear_eta_phi(events, rng)
    np.testing.assert_array_equal(y[..., 0], events[..., 0])
    np.testing.assert_array_equal(y[:, 0], events[:, 0])                          # MET untouched
    assert 0 < np.abs(y[:, 1:, 1] - events[:, 1:, 1]).max() < 0.5
    # Delphes jet resolution f(pT) = sqrt(0.052 pT^2 + 1.502 pT): f(100 GeV) = 25.888
    assert A.delphes_resolution(100.0) == pytest.approx(math.sqrt(520 + 150.2))
    one = np.zeros((20000, 19, 3))
    one[:, 0, 0], one[:, 9, 0] = 10.0, 100.0
    s = A.smear_pt(one, rng)
    assert s[:, 9, 0].mean() == pytest.approx(100.0, abs=0.6) and s[:, 9, 0].std() == pytest.approx(25.888, rel=0.03)
    np.testing.assert_array_equal(s[:, 0], one[:, 0])                              # leptons and MET kept
    phys = A.physical_event(events, rng)
    assert ((phys[..., 0] > 0) == (events[..., 0] > 0)).all()                     # no object lost or made


def test_split_keeps_total_pt_and_met(events):
    rng = np.random.default_rng(2)
    y = A.split_objects(events, rng)
    for start, size in A.EVENT_LAYOUT.values():                                   # per type: scalar pT sums
        np.testing.assert_allclose(y[:, start:start + size, 0].sum(1), events[:, start:start + size, 0].sum(1),
                                   rtol=1e-12)
    np.testing.assert_array_equal(y[:, 0], events[:, 0])                          # MET unchanged
    n_before, n_after = (events[:, 1:, 0] > 0).sum(1), (y[:, 1:, 0] > 0).sum(1)
    assert (n_after > n_before).all()                                             # every toy event has room


def test_add_objects_recomputes_met(events):
    rng = np.random.default_rng(3)
    y = A.add_objects(events, rng)
    n_before, n_after = (events[:, 1:, 0] > 0).sum(1), (y[:, 1:, 0] > 0).sum(1)
    assert (n_after > n_before).all()
    np.testing.assert_allclose(vector_sum(y), vector_sum(events), atol=1e-9)     # MET = -(sum of the objects) + const
    added_pt = y[:, 1:, 0].sum(1) - events[:, 1:, 0].sum(1)
    assert (added_pt > 0).all()
    assert (y[:, 1:, 0].max(1) <= events[:, 1:, 0].max(1) + 1e-9).all()           # a fraction of the largest pT


def test_shift_pt_scales_by_one_factor(events):
    rng = np.random.default_rng(4)
    y = A.shift_pt(events, rng)
    r_met = y[:, 0, 0] / events[:, 0, 0]
    obj = events[:, 1:, 0] > 0
    r_obj = np.where(obj, y[:, 1:, 0] / np.where(obj, events[:, 1:, 0], 1), np.nan)
    r_one = np.nanmax(r_obj, 1)
    np.testing.assert_allclose(np.nanmin(r_obj, 1), r_one)                         # one factor for all objects
    assert ((r_met >= 1) & (r_met <= 5) & (r_one >= 1) & (r_one <= 5)).all()
    scaled_met, scaled_obj = r_met > 1, r_one > 1
    assert (scaled_met | scaled_obj).all() and (scaled_met & ~scaled_obj).any() and (scaled_obj & ~scaled_met).any()
    both = scaled_met & scaled_obj
    np.testing.assert_allclose(r_met[both], r_one[both])


def test_jet_augmentations():
    rng = np.random.default_rng(5)
    x = A.jet_constituents(toy_jets(300, 2).particle_features)
    present = x[..., 0] > 0
    r = A.rotate_jet(x, rng)
    np.testing.assert_allclose(np.hypot(r[..., 1], r[..., 2]), np.hypot(x[..., 1], x[..., 2]), atol=1e-12)
    np.testing.assert_array_equal(r[..., 0], x[..., 0])
    t = A.translate_jet(x, rng)
    shift = np.where(present, t[..., 1] - x[..., 1], np.nan)
    np.testing.assert_allclose(np.nanmax(shift, 1), np.nanmin(shift, 1), atol=1e-12)   # one shift per jet
    ext = np.where(present, x[..., 1], -9).max(1) - np.where(present, x[..., 1], 9).min(1)
    assert (np.abs(np.nanmax(shift, 1)) <= ext / 2 + 1e-12).all()
    d = A.drop_constituents(x, rng, p_drop=0.5)
    np.testing.assert_allclose(d[..., 0].sum(1), x[..., 0].sum(1), rtol=1e-10)       # pT rescaled to the jet's
    kept = (d[..., 0] > 0).sum() / present.sum()
    assert 0.45 < kept < 0.57 and ((d[..., 0] > 0).sum(1) >= 1).all()
    assert (np.diff(d[..., 0], axis=1) <= 0).all()


def test_losses_on_a_hand_made_case():
    z, zp, za = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[-1.0, 0.0]])
    # eq. 5.10: s(z, z*) - s(z, z') = -1 - 1/sqrt(2)
    assert anomclr_plus_loss(z, zp, za).item() == pytest.approx(-1 - 2 ** -0.5, abs=1e-6)
    assert anomclr_plus_loss(z, zp, za, tau=0.5).item() == pytest.approx(2 * (-1 - 2 ** -0.5), abs=1e-6)
    # eq. 5.9 on a batch of two orthogonal events whose anomaly partners swap them:
    # numerator exponent s(z_i, z'_i) - s(z_i, z*_i) = 1 - 0; denominator e^0 + e^0 -> loss = log 2 - 1
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert anomclr_loss(z2, z2, z2.flip(0), tau=1.0).item() == pytest.approx(math.log(2) - 1, abs=1e-6)
    assert clr_loss(z2, z2, tau=1.0).item() == pytest.approx(math.log(2) - 1, abs=1e-6)   # no anomaly term: same here
    assert norm_penalty(torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(3.0)


def test_training_steps_decrease_the_loss():
    from hepgen.training.clr import Preprocess, clr_config, train_encoder

    torch.set_num_threads(1)
    x = A.event_slots(toy_events(64, 6, leptons=1))
    cfg = clr_config("anomaly-clr", {"model": {"model_dim": 16, "ff_dim": 32, "output_dim": 16, "heads": 2,
                                               "layers": 1}, "train": {"lr": 3e-3, "batch_size": 32, "epochs": 12}})
    log = []
    train_encoder(x, "anomaly-clr", cfg, Preprocess.fit("anomaly-clr", x), log=log)
    losses = [l for _, l, _ in log]
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.2, losses
    cfg = clr_config("dark-clr", {"model": {"model_dim": 16, "ff_dim": 32, "output_dim": 16, "heads": 2, "layers": 1},
                                  "train": {"lr": 3e-3, "batch_size": 32, "epochs": 8}, "data": {"num_constituents": 20}})
    j = A.jet_constituents(toy_jets(64, 7).particle_features)
    log = []
    train_encoder(j, "dark-clr", cfg, Preprocess.fit("dark-clr", j), log=log)
    total = [l + p for _, l, p in log]                                            # L+ plus the norm term
    assert np.mean(total[-2:]) < np.mean(total[:2]), total


def test_anomaly_clr_cli_train_score_evaluate(tmp_path, capsys):
    write_events(toy_events(120, 8, leptons=0), tmp_path / "bkg.txt")
    write_events(toy_events(60, 9, leptons=3), tmp_path / "sig.txt")
    (tmp_path / "tiny.yaml").write_text(TINY)
    run = tmp_path / "run"
    assert main(["anomaly", "train", "anomaly-clr", "--data", str(tmp_path / "bkg.txt"), "--out", str(run),
                 "--config", str(tmp_path / "tiny.yaml"), "--no-progress"]) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["method"] == "anomaly-clr" and meta["epochs_trained"] == 3 and meta["events"] == 120
    assert main(["anomaly", "score", str(run), "--data", str(tmp_path / "sig.txt"), "--out", str(tmp_path / "s.h5")]) == 0
    with h5py.File(tmp_path / "s.h5") as f:
        s, raw = f["score"][:], f["score_ae_raw"][:]
        assert f.attrs["method"] == "anomaly-clr"
    assert s.shape == raw.shape == (60,) and np.isfinite(s).all() and (s >= 0).all()
    assert main(["evaluate", "anomaly", "--run", str(run), "--background", str(tmp_path / "bkg.txt"),
                 "--signal", str(tmp_path / "sig.txt"), "--out", str(tmp_path / "rep")]) == 0
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    base = json.loads((tmp_path / "rep" / "baseline_metrics.json").read_text())
    assert {"auc", "sic_max", "inv_eps_b_at_0.2", "inv_eps_b_at_0.3"} <= set(m) and "ae_raw" in base
    # three extra leptons per event: the raw-input AE tells them apart even after 3 epochs
    assert base["ae_raw"]["auc"]["value"] > 0.8


def test_dark_clr_cli_scores_the_norm(tmp_path):
    write_jets(toy_jets(100, 10), tmp_path / "qcd.h5")
    (tmp_path / "tiny.yaml").write_text(TINY.replace("data: {}", "data: {num_constituents: 20}"))
    run = tmp_path / "run"
    assert main(["anomaly", "train", "dark-clr", "--data", str(tmp_path / "qcd.h5"), "--out", str(run),
                 "--config", str(tmp_path / "tiny.yaml"), "--no-progress"]) == 0
    assert main(["anomaly", "score", str(run), "--data", str(tmp_path / "qcd.h5"), "--out", str(tmp_path / "s.h5")]) == 0
    from hepgen.training.clr import Preprocess, load_clr_run, representations

    enc, _, _, prep, cfg = load_clr_run(run, json.loads((run / "run.json").read_text()))
    z = representations(enc, prep, A.jet_constituents(toy_jets(100, 10).particle_features, 20))
    with h5py.File(tmp_path / "s.h5") as f:
        np.testing.assert_allclose(f["score"][:], z.norm(dim=-1).numpy(), rtol=1e-5)   # s_CLR = ||z||, eq. 5.11
        assert set(f) >= {"score_ae", "score_ae_raw"}


def test_train_help_names_every_method(capsys):
    assert main(["anomaly", "train", "--help"]) == 0
    out = capsys.readouterr().out
    for name in ("nae", "anomaly-clr", "dark-clr", "cwola"):
        assert name in out


@pytest.mark.parametrize("argv, fragment", [
    (["anomaly", "train", "anomaly-clr", "--data", "{tmp}/jets.h5", "--out", "{tmp}/r"], "Dark Machines text format"),
    (["anomaly", "train", "dark-clr", "--data", "{tmp}/bkg.txt", "--out", "{tmp}/r"], "bkg.txt"),
    (["anomaly", "train", "anomaly-clr", "--data", "{tmp}/missing.txt", "--out", "{tmp}/r"], "no such file"),
    (["anomaly", "train", "anomaly-clr", "--data", "{tmp}/bkg.txt", "--out", "{tmp}/r", "--config", "{tmp}/bad.yaml"],
     "train.loss"),
    (["anomaly", "train", "dark-clr", "--data", "{tmp}/jets.h5", "--out", "{tmp}/r", "--max-time", "-1"], "--max-time"),
    (["anomaly", "score", "{tmp}/fake", "--data", "{tmp}/jets.h5", "--out", "{tmp}/r"], "Dark Machines text format"),
    (["anomaly", "score", "{tmp}/fake", "--data", "{tmp}/bkg.txt", "--out", "{tmp}/r"], "no model.pt"),
])
def test_bad_input_gives_one_error_line(tmp_path, capsys, argv, fragment):
    write_events(toy_events(10, 11), tmp_path / "bkg.txt")
    write_jets(toy_jets(10, 12), tmp_path / "jets.h5")
    (tmp_path / "bad.yaml").write_text("train: {loss: simclr}\n")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "run.json").write_text('{"method": "anomaly-clr", "config": {}}')
    expect_one_error_line(capsys, [a.format(tmp=tmp_path) for a in argv], fragment)
    assert not (tmp_path / "r").exists()


def test_dark_jet_and_signal_producers():
    from hepgen.simulate.darkjets import simulate_chunk
    from hepgen.simulate.events import PROCESSES, simulate_chunk as simulate_events

    pf, jf = simulate_chunk("aachen", 4, 50, seed=3)
    assert pf.shape == (4, 50, 4) and jf.shape == (4, 4)
    assert ((jf[:, 0] >= 150) & (jf[:, 0] <= 300) & (np.abs(jf[:, 1]) < 2)).all()     # eq. 5.3
    full = pf[..., 2].sum(1)[jf[:, 3] <= 50]        # scalar pT sum of all constituents over the jet pT: >= 1
    assert ((full >= 1 - 1e-5) & (full < 1.2)).all(), full
    events, generated, passed, sigma = simulate_events("leptoquark", 5, seed=4)
    assert len(events) == 5 and set(events.process) == {PROCESSES["leptoquark"].process_id} and sigma > 0
