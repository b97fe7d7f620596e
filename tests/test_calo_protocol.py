"""``hepgen evaluate calo --protocol calochallenge`` and the streamed evaluation.

The challenge's recipe (its 2024-25 ``evaluate.py``) is recomputed here by hand where it
is simple enough to write independently: the 1 MeV voxel cut, the high-level vector, the
raw low-level inputs, the isotonic calibration, the E_tot/E_inc histograms per incident
energy with the challenge's bins. Streaming (chunked reads, classifier rows from scratch
files) must give the numbers of the in-memory evaluation exactly.
"""

import json

import h5py
import numpy as np
import pytest

from hepgen.cli.main import main
from hepgen.data.calo import ShowerSample, read_incident_energies, read_showers, write_showers
from hepgen.data.geometry import load_geometry
from hepgen.evaluate.calo import _file_chunks, _scan, evaluate_calo
from hepgen.metrics.calo import (
    ArrayRows,
    HighLevelFeatures,
    RowFileWriter,
    calochallenge_inputs,
    calochallenge_names,
    chunk_rows,
    classifier_auc,
    isotonic_calibration,
    per_energy_separations,
    roc_auc,
)
from hepgen.simulate.showers import generate_showers


@pytest.fixture(scope="module")
def ds1_files(tmp_path_factory):
    """Two small stand-in DS1-photon samples (discrete energies, as the real DS1)."""
    d = tmp_path_factory.mktemp("protocol")
    generate_showers("ds1-photons", 400, seed=1, workers=1, progress=False, out=d / "a.h5")
    generate_showers("ds1-photons", 400, seed=2, workers=1, progress=False, out=d / "b.h5")
    return d


# -- files ----------------------------------------------------------------------------------
def test_written_files_are_float64_and_read_back(ds1_files, tmp_path):
    with h5py.File(ds1_files / "a.h5") as f:  # `hepgen data calo` (the simulator's writer)
        assert f["showers"].dtype == np.float64 and f["incident_energies"].dtype == np.float64
        assert f["incident_energies"].shape == (400, 1)
    sample = read_showers(ds1_files / "a.h5")
    write_showers(sample, tmp_path / "64.h5")
    write_showers(sample, tmp_path / "32.h5", dtype=np.float32)
    with h5py.File(tmp_path / "64.h5") as f64, h5py.File(tmp_path / "32.h5") as f32:
        assert f64["showers"].dtype == np.float64 and f64["incident_energies"].dtype == np.float64
        assert f32["showers"].dtype == np.float32
        np.testing.assert_array_equal(f64["showers"][:], sample.showers.astype(np.float64))  # exact
    for name in ("64.h5", "32.h5"):
        back = read_showers(tmp_path / name)
        np.testing.assert_array_equal(back.showers, sample.showers)
        np.testing.assert_array_equal(back.incident_energies, sample.incident_energies)
    np.testing.assert_array_equal(read_incident_energies(tmp_path / "64.h5"), sample.incident_energies[:, 0])


# -- the high-level vector ------------------------------------------------------------------
def test_calochallenge_features_by_hand():
    geo = load_geometry("ds1-photons")
    t = geo.voxel_table()
    slices = list(geo.layer_slices.values())
    showers = np.zeros((2, geo.num_voxels))
    rng = np.random.default_rng(3)
    hit = {0: [1, 4], 1: [3, 37, 90, 150], 2: [0, 22, 180], 3: [2], 12: []}
    for layer, idx in hit.items():
        sl = geo.layer_slices[layer]
        showers[0, sl.start + np.array(idx, int)] = rng.uniform(1, 300, len(idx))
    showers[1, slices[1].start + 5] = 40.0  # a shower with one voxel
    e_inc = np.array([1024.0, 65536.0])
    h = HighLevelFeatures((e_inc, showers), geo)
    x = calochallenge_inputs(h)
    names = calochallenge_names(h)
    # 1 + 1 + 5 layers x (energy, sparsity, r centre, r width) + 2 angular layers x 4 = 30
    assert x.shape == (2, 30) and len(names) == 30 and len(set(names)) == 30
    col = dict(zip(names, x[0]))
    assert col["log_e_inc"] == pytest.approx(np.log10(1024.0))
    assert col["log_e_tot"] == pytest.approx(np.log10(showers[0].sum() + 1e-8))
    for layer_id, sl in geo.layer_slices.items():
        e = showers[0, sl]
        assert col[f"log_e_layer_{layer_id}"] == pytest.approx(np.log10(e.sum() + 1e-8))
        assert col[f"sparsity_{layer_id}"] == pytest.approx(np.mean(e == 0))
        for coord, name in (("r", "r"), ("x", "eta"), ("y", "phi")):
            if name != "r" and geo.layers[list(geo.layer_slices).index(layer_id)].n_alpha == 1:
                assert f"center_{name}_{layer_id}" not in col  # no eta/phi centres without angular bins
                continue
            if e.sum() == 0:
                assert col[f"center_{name}_{layer_id}"] == 0 and col[f"width_{name}_{layer_id}"] == 0
                continue
            c = t[coord][sl]
            mean = (e * c).sum() / e.sum()
            width = np.sqrt((e * (c - mean) ** 2).sum() / e.sum())
            assert col[f"center_{name}_{layer_id}"] == pytest.approx(mean / 100, rel=1e-9, abs=1e-12)
            # E[x^2] - E[x]^2 as the challenge: cancellation leaves ~1e-6 mm where the width is 0
            assert col[f"width_{name}_{layer_id}"] == pytest.approx(width / 100, rel=1e-6, abs=1e-7)
    single = dict(zip(names, x[1]))
    assert single["log_e_layer_0"] == pytest.approx(-8.0) and single["width_r_1"] == pytest.approx(0, abs=1e-7)
    assert single["center_r_1"] == pytest.approx(t["r"][slices[1].start + 5] / 100)
    # the other datasets: 2 + 4 L + 4 L_alpha columns
    for name, width in (("ds1-pions", 2 + 4 * 7 + 4 * 4), ("ds2", 2 + 8 * 45)):
        g = load_geometry(name)
        f = HighLevelFeatures((np.ones(1) * 1e3, np.ones((1, g.num_voxels))), g)
        assert calochallenge_inputs(f).shape == (1, width) == (1, len(calochallenge_names(f)))


def test_calochallenge_vector_in_the_official_column_order():
    """One DS1-photon shower with hand-placed voxels, checked column by column against the
    order of the challenge's prepare_high_data_for_classifier: log E_inc, log E_layer (L),
    eta centres, phi centres, eta widths, phi widths (L_alpha each), log E_tot, sparsity (L),
    r centres (L), r widths (L); lengths over 100 mm, empty layers -8 / 0."""
    geo = load_geometry("ds1-photons")
    shower = np.zeros((1, geo.num_voxels))
    # layer 0 (8 r bins, no angular bins; r edges 0, 5, 10, 30 mm): 10 MeV at r = 7.5, 30 MeV at r = 20
    shower[0, 1], shower[0, 2] = 10.0, 30.0
    # layer 1 (10 alpha x 16 r bins, r edges 0, 2, 4, 6): 20 MeV at r = 5 in the alpha bins centred on
    # +pi/2 (bin 7: x = 0, y = +5 mm) and -pi/2 (bin 2: x = 0, y = -5 mm)
    shower[0, 8 + 7 * 16 + 2], shower[0, 8 + 2 * 16 + 2] = 20.0, 20.0
    # layer 2 empty; layer 3 (5 r bins, edges 0, 50, 100): 50 MeV at r = 75; layer 12 empty
    shower[0, 358 + 1] = 50.0
    x = calochallenge_inputs(HighLevelFeatures((np.array([1000.0]), shower), geo))[0]
    w0 = np.sqrt((10 * 7.5**2 + 30 * 20.0**2) / 40 - ((10 * 7.5 + 30 * 20) / 40) ** 2)  # 5.4127 mm
    expected = np.concatenate([
        [3.0],                                                          # log10(E_inc / MeV)
        np.log10(np.array([40.0, 40.0, 0.0, 50.0, 0.0]) + 1e-8),       # log10(E_layer + 1e-8), layers 0 1 2 3 12
        [0.0, 0.0], [0.0, 0.0],                                         # eta, phi centres of layers 1, 2
        [0.0, 0.0], [0.05, 0.0],                                        # eta, phi widths of layers 1, 2
        [np.log10(130.0 + 1e-8)],                                       # log10(E_tot + 1e-8)
        [1 - 2 / 8, 1 - 2 / 160, 1.0, 1 - 1 / 5, 1.0],                  # sparsity
        [(10 * 7.5 + 30 * 20) / 40 / 100, 0.05, 0.0, 0.75, 0.0],        # r centres / 100 mm
        [w0 / 100, 0.0, 0.0, 0.0, 0.0],                                 # r widths / 100 mm
    ])
    assert x.shape == expected.shape == (30,)
    np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-6)  # widths of one spot: E[x^2] - E[x]^2 ~ 1e-7


# -- the cut and the raw inputs -------------------------------------------------------------
def test_cut_zeroes_voxels_below_1_mev_in_both_samples(ds1_files, tmp_path):
    sample = read_showers(ds1_files / "a.h5")
    geo = sample.geometry
    soft = sample.showers.copy()
    empty = soft == 0
    soft[empty] = np.random.default_rng(0).uniform(0.01, 0.99, int(empty.sum()))  # soft hits everywhere
    write_showers(ShowerSample(sample.incident_energies, soft, geo), tmp_path / "soft.h5")
    # what the challenge does: showers[showers < 1] = 0, then everything on the cut showers
    expected = np.where(sample.showers < 1.0, 0.0, sample.showers)
    step = chunk_rows(geo.num_voxels)
    specs = {"low": (False, 1.0, "float32")}
    for path in (ds1_files / "a.h5", tmp_path / "soft.h5"):
        scan = _scan(_file_chunks(path, "real", geo, 1.0, step), geo, specs, None, "real", 0.1)
        x = scan.rows["low"].array
        e_inc = sample.incident_energies[:, 0].astype(np.float64)
        np.testing.assert_allclose(x[:, 0], np.log10(e_inc), rtol=1e-6)  # log10(E_inc / MeV), not GeV
        np.testing.assert_allclose(x[:, 1:], (expected / e_inc[:, None]).astype(np.float32), rtol=1e-6)
        np.testing.assert_allclose(scan.features.e_tot, expected.astype(np.float64).sum(1), rtol=1e-9)
    # the protocol applies it by default to both files: the soft hits are invisible ...
    kw = dict(classifier_runs=0, plots=False, echo=lambda *a: None)
    cc = evaluate_calo(ds1_files / "a.h5", tmp_path / "soft.h5", tmp_path / "cc", protocol="calochallenge", **kw)
    m = cc.metrics
    assert m["info"]["cut_mev"] == 1.0 and m["info"]["protocol"] == "calochallenge"
    assert m["separation_power_max"]["value"] == 0.0 and m["per_energy_sep_max"]["value"] == 0.0
    same = evaluate_calo(ds1_files / "a.h5", ds1_files / "a.h5", tmp_path / "same", protocol="calochallenge",
                         **kw).metrics
    assert {k: v for k, v in m.items() if k not in ("info", "timing_s")} == \
        {k: v for k, v in same.items() if k not in ("info", "timing_s")}
    # ... while hepgen's protocol (no cut) sees them at once
    hg = evaluate_calo(ds1_files / "a.h5", tmp_path / "soft.h5", tmp_path / "hg", **kw).metrics
    assert hg["info"]["cut_mev"] == 0.0
    # (the version-2 stand-in has its own soft continuum below 1 MeV, so the added hits stand out
    # less in the voxel spectrum: 0.077, against 0.1+ on version 1)
    assert hg["sep_sparsity_1"]["value"] > 0.3 and hg["sep_voxel_energy"]["value"] > 0.05


# -- per-energy histograms ------------------------------------------------------------------
def _official_separation(a, b, bins):
    """The challenge's _separation_power on density histograms."""
    h1, _ = np.histogram(a, bins=bins, density=True)
    h2, _ = np.histogram(b, bins=bins, density=True)
    h1, h2 = h1 * np.diff(bins), h2 * np.diff(bins)
    return 0.5 * ((h1 - h2) ** 2 / (h1 + h2 + 1e-16)).sum()


def test_per_energy_histograms_as_the_challenge(ds1_files):
    real, gen = read_showers(ds1_files / "a.h5"), read_showers(ds1_files / "b.h5")
    f_real = HighLevelFeatures((real.incident_energies, np.where(real.showers < 1, 0, real.showers)), real.geometry)
    f_gen = HighLevelFeatures((gen.incident_energies, np.where(gen.showers < 1, 0, gen.showers)), gen.geometry)
    cc = per_energy_separations(f_real, f_gen, protocol="calochallenge")
    assert sorted(cc) == [256.0 * 2**k for k in range(15)]
    for i, energy in enumerate(sorted(cc)):
        bins = np.linspace(0.9, 1.1, 21) if i > 3 else np.linspace(0.4, 1.4, 21)
        sel_r = (f_real.e_inc >= energy) & (f_real.e_inc < 2 * energy)
        sel_g = (f_gen.e_inc >= energy) & (f_gen.e_inc < 2 * energy)
        official = _official_separation(f_real.e_ratio[sel_r], f_gen.e_ratio[sel_g], bins)
        assert cc[energy].value == pytest.approx(official, abs=1e-12), energy
    own = per_energy_separations(f_real, f_gen)  # hepgen's: own binning, flow bins, same energies
    assert sorted(own) == sorted(cc) and all(s.floor > 0 for s in own.values())
    # continuous energies: none
    e = np.exp(np.random.default_rng(1).uniform(7, 13, len(real)))
    cont = HighLevelFeatures((e, real.showers), real.geometry)
    assert per_energy_separations(cont, cont) == {}


# -- classifier recipe ----------------------------------------------------------------------
def test_isotonic_calibration_as_scikit_learn():
    # pool adjacent violators by hand: (0, 1, 0, 1) -> (0, 1/2, 1/2, 1), clipped to [1e-6, 1 - 1e-6]
    cal = isotonic_calibration(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(cal([0.1, 0.2, 0.3, 0.4]), [1e-6, 0.5, 0.5, 1 - 1e-6])
    np.testing.assert_allclose(cal([0.0, 0.15, 0.35, 0.9]), [1e-6, (1e-6 + 0.5) / 2, (0.5 + 1 - 1e-6) / 2, 1 - 1e-6])
    # equal scores are one point with the mean label (scikit-learn merges ties before the fit)
    cal = isotonic_calibration(np.array([0.2, 0.2, 0.2, 0.5, 0.6]), np.array([1, 0, 0, 0, 1]))
    # merged: (0.2: 1/3, weight 3), (0.5: 0), (0.6: 1) -> pool (0.2, 0.5): (1 + 0) / 4 = 1/4
    np.testing.assert_allclose(cal([0.2, 0.5, 0.6]), [0.25, 0.25, 1 - 1e-6])


def test_calochallenge_classifier_recipe():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6))
    b = rng.normal(size=(300, 6)) + np.array([0.5, 0, 0, 0, 0, 0])
    res = classifier_auc(a, b, epochs=6, runs=2, seed=1, device="cpu", batch_size=50, lr=1e-3,
                         standardise=False, select="accuracy", calibrated_auc=True)
    for run in range(2):
        y = np.r_[np.ones(len(res.outputs_real[run])), np.zeros(len(res.outputs_gen[run]))]
        raw = np.r_[res.outputs_real[run], res.outputs_gen[run]]
        calibrated = np.r_[res.calibrated_real[run], res.calibrated_gen[run]]
        assert res.raw_aucs[run] == pytest.approx(roc_auc(y, raw))
        assert res.aucs[run] == pytest.approx(roc_auc(y, calibrated))  # the reported AUC: after calibration
        p = np.clip(calibrated, 1e-12, 1 - 1e-12)
        bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        assert res.jsds[run] == pytest.approx((np.log(2) - bce) / np.log(2))
        assert 1 <= res.best_epochs[run] <= 6
    assert 0.55 < res.value < 0.85
    hepgen = classifier_auc(a, b, epochs=6, runs=2, seed=1, device="cpu", batch_size=50, lr=1e-3)
    assert hepgen.aucs == hepgen.raw_aucs and hepgen.aucs != res.aucs


# -- streamed = in memory -------------------------------------------------------------------
def test_file_rows_read_what_was_written(tmp_path):
    x = np.random.default_rng(0).normal(size=(57, 9)).astype(np.float32)
    writer = RowFileWriter(tmp_path / "r.rows", 9)
    writer.write(x[:20])
    writer.write(x[20:])
    rows = writer.finish()
    for idx in ([3, 4, 5, 6], [56, 0, 12, 12, 13], np.random.default_rng(1).permutation(57), []):
        np.testing.assert_array_equal(rows.take(np.array(idx, int)), x[np.array(idx, int)])
    assert len(rows) == 57 and rows.width == 9
    with pytest.raises(IndexError):
        rows.take(np.array([57]))
    rows.close()
    # the classifier gives the same numbers from a file as from the array
    gen = (x + 0.3).astype(np.float32)
    w2 = RowFileWriter(tmp_path / "g.rows", 9)
    w2.write(gen)
    kw = dict(epochs=3, runs=2, seed=4, device="cpu", batch_size=8)
    from hepgen.metrics.calo import FileRows

    a = classifier_auc(x, gen, **kw)
    b = classifier_auc(FileRows(tmp_path / "r.rows", 9, np.float32, 57), w2.finish(), cache_bytes=0, **kw)
    assert a.aucs == b.aucs and a.best_epochs == b.best_epochs and a.jsds == b.jsds
    c = classifier_auc(ArrayRows(x), ArrayRows(gen), cache_bytes=0, **kw)
    assert c.aucs == a.aucs


@pytest.mark.parametrize("protocol", ["hepgen", "calochallenge"])
def test_streamed_evaluation_equals_the_in_memory_one(ds1_files, tmp_path, protocol):
    kw = dict(protocol=protocol, classifier_epochs=3, classifier_runs=2, classifiers=("low", "high", "low_normed"),
              plots=False, echo=lambda *a: None, progress=False,
              classifier_options={"batch_size": 100, "hidden": (64, 64)})  # narrow: the streaming is under test
    streamed = evaluate_calo(ds1_files / "a.h5", ds1_files / "b.h5", tmp_path / "s", stream=True, **kw).metrics
    memory = evaluate_calo(ds1_files / "a.h5", ds1_files / "b.h5", tmp_path / "m", stream=False, **kw).metrics
    assert streamed["info"]["stream"] and not memory["info"]["stream"]
    for m in (streamed, memory):
        m.pop("timing_s")
        m["info"].pop("stream")
    assert streamed == memory
    assert not [p for p in tmp_path.iterdir() if ".rows." in p.name]  # scratch files removed


# -- both protocols end to end --------------------------------------------------------------
def test_both_protocols_on_a_small_file(ds1_files, capsys):
    for protocol in ("hepgen", "calochallenge"):
        out = ds1_files / f"report_{protocol}"
        code = main(["evaluate", "calo", "--real", str(ds1_files / "a.h5"), "--gen", str(ds1_files / "b.h5"),
                     "--out", str(out), "--protocol", protocol, "--classifier-epochs", "3",
                     "--classifier-runs", "1", "--no-progress"]
                    + (["--classifier-hidden", "64,32", "--classifier-dtype", "float32"]
                       if protocol == "calochallenge" else []))
        stdout = capsys.readouterr().out
        assert code == 0
        m = json.loads((out / "metrics.json").read_text())
        assert m["info"]["protocol"] == protocol and f"protocol {protocol}" in stdout
        for key in ("auc_low", "auc_high", "fpd", "kpd", "per_energy_sep_256MeV", "per_energy_sep_4194304MeV",
                    "per_energy_sep_max", "separation_power_max"):
            assert np.isfinite(m[key]["value"]), (protocol, key)
        assert all(set(v) == {"value", "error"} for k, v in m.items() if k not in {"flagged", "info", "timing_s"})
        assert not any(k.startswith("sep_per") or k.startswith("per_energy") for k in m["flagged"])
        html = (out / "report.html").read_text()
        assert f"protocol {protocol}" in html and "e_ratio_per_energy.png" in html
        assert (out / "e_ratio_per_energy.png").stat().st_size > 1000
        if protocol == "calochallenge":
            assert m["info"]["cut_mev"] == 1.0 and len(m["info"]["high_level_features"]) == 30
            assert m["info"]["classifier"]["select"] == "accuracy" and m["info"]["classifier"]["calibrated_auc"]
            assert "auc_low_uncalibrated" in m
            # the CLI's narrower network on a CPU is recorded beside the rest of the recipe
            assert list(m["info"]["classifier"]["hidden"]) == [64, 32]
            assert m["info"]["classifier"]["dtype"] == "float32"
        else:
            assert m["info"]["cut_mev"] == 0.0 and len(m["info"]["high_level_features"]) == 14
            assert "auc_low_uncalibrated" not in m
    code = main(["evaluate", "calo", "--real", str(ds1_files / "a.h5"), "--gen", str(ds1_files / "b.h5"),
                 "--out", str(ds1_files / "x"), "--protocol", "bogus"])
    assert code != 0 and "bogus" in capsys.readouterr().err
    for option, value in (("--classifier-hidden", "64,x"), ("--classifier-hidden", "0"), ("--classifier-dtype", "half")):
        code = main(["evaluate", "calo", "--real", str(ds1_files / "a.h5"), "--gen", str(ds1_files / "b.h5"),
                     "--out", str(ds1_files / "y"), option, value])
        err = capsys.readouterr().err
        assert code != 0 and option in err and len(err.strip().splitlines()) == 1
        assert not (ds1_files / "y").exists()


def test_fpd_of_long_feature_vectors_in_bounded_chunks(monkeypatch):
    """DS2/DS3's 362 features: the bootstrap moments are summed over smaller row chunks
    (2 GB per temporary otherwise); the same draws give the same FPD up to rounding."""
    from hepgen.metrics import calo

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(1200, 30)), rng.normal(size=(1200, 30)) * 1.1
    whole = calo.fpd(a, b, 600, 1200)
    monkeypatch.setattr(calo, "MOMENT_VALUES", 465 * 100)  # 30 features: 465 pairs -> chunks of 100 rows
    chunked = calo.fpd(a, b, 600, 1200)
    assert chunked[0] == pytest.approx(whole[0], rel=1e-6) and chunked[1] == pytest.approx(whole[1], rel=1e-4)


def test_calochallenge_classifier_network_and_split_sizes():
    """The 2024-25 evaluate.py: DNN(num_layer=2, num_hidden=2048) is 3 hidden layers of 2048,
    float64, and ttv_split(..., dataset=...) keeps 80,000 / 20,000 showers per sample for
    training / epoch selection (60,000 / 20,000 for DS2, DS3) and reports on the rest."""
    from hepgen.evaluate.calo import protocol_classifier

    photons, ds2 = load_geometry("ds1-photons"), load_geometry("ds2")
    r = protocol_classifier("calochallenge", photons, 121_000)
    assert r["hidden"] == (2048, 2048, 2048) and r["dropout"] == 0.0 and r["dtype"] == "float64"
    assert (r["lr"], r["batch_size"], r["select"], r["standardise"]) == (2e-4, 1000, "accuracy", False)
    assert r["split_counts"] == (80_000, 20_000)
    assert protocol_classifier("calochallenge", load_geometry("ds1-pions"), 120_800)["split_counts"] == (80_000, 20_000)
    assert protocol_classifier("calochallenge", ds2, 100_000)["split_counts"] == (60_000, 20_000)
    # too small for the fixed sizes (the official script cannot run there): 60/20/20 fractions
    assert "split_counts" not in protocol_classifier("calochallenge", photons, 100_001)
    assert "split_counts" not in protocol_classifier("calochallenge", ds2, 400)
    assert "split_counts" not in protocol_classifier("calochallenge", photons, 121_000, {"split": (0.5, 0.25, 0.25)})
    assert protocol_classifier("hepgen", photons, 121_000) == {}
    # the sizes reach the classifier: 121 showers per sample with counts (80, 20) -> 80 / 20 / 21
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(121, 3)), rng.normal(size=(130, 3)) + 0.5
    kw = dict(epochs=1, runs=1, hidden=(4,), batch_size=50, device="cpu", seed=0)
    res = classifier_auc(a, b, split_counts=(80, 20), **kw)
    assert res.split_sizes == (80, 20, 21)
    assert len(res.outputs_real[0]) == len(res.outputs_gen[0]) == 21
    assert classifier_auc(a, b, **kw).split_sizes == (72, 24, 25)  # int(0.6 n), int(0.2 n), rest
    with pytest.raises(Exception, match="split_counts"):
        classifier_auc(a, b, split_counts=(100, 20), **kw)


def test_calochallenge_fpd_kpd_are_jetnets_default_calls(ds1_files, tmp_path):
    """The challenge calls jetnet.evaluation.fpd(reference, generated) and kpd(...) with their
    defaults on the high-level vector of the cut showers: batches of 20k-50k (FPD) and 5000
    (KPD) showers drawn with replacement, seed 42, even from 400 showers."""
    import warnings

    from jetnet.evaluation import fpd as jetnet_fpd, kpd as jetnet_kpd

    m = evaluate_calo(ds1_files / "a.h5", ds1_files / "b.h5", tmp_path / "cc", protocol="calochallenge",
                      classifier_runs=0, plots=False, echo=lambda *a: None).metrics
    vectors = []
    for name in ("a.h5", "b.h5"):
        s = read_showers(ds1_files / name)
        cut = np.where(s.showers < 1.0, 0.0, s.showers)
        vectors.append(calochallenge_inputs(HighLevelFeatures((s.incident_energies, cut), s.geometry)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f_val, f_err = jetnet_fpd(*vectors)
        k_val, k_err = jetnet_kpd(*vectors)
    assert m["fpd"]["value"] == pytest.approx(f_val, rel=1e-6) and m["fpd"]["error"] == pytest.approx(f_err, rel=1e-4)
    assert m["kpd"]["value"] == pytest.approx(k_val, rel=1e-6, abs=1e-12)
    assert m["kpd"]["error"] == pytest.approx(k_err, rel=1e-6, abs=1e-12)


def test_calochallenge_cut_at_the_threshold():
    """evaluate.py: showers = np.where(showers < min_energy, 0, showers) on both samples before
    every metric, min_energy 1 MeV for DS1, 0.5 keV / 0.033 for DS2 and DS3: a voxel exactly
    at the threshold stays, one just below goes."""
    from hepgen.evaluate.calo import protocol_cut
    from hepgen.metrics.calo import apply_cut

    assert protocol_cut("calochallenge", load_geometry("ds1-photons")) == 1.0
    assert protocol_cut("calochallenge", load_geometry("ds1-pions")) == 1.0
    assert protocol_cut("calochallenge", load_geometry("ds2")) == 0.5e-3 / 0.033
    assert protocol_cut("hepgen", load_geometry("ds1-photons")) == 0.0
    geo = load_geometry("ds1-photons")
    shower = np.zeros((1, geo.num_voxels))
    shower[0, :4] = [np.nextafter(1.0, 0.0), 1.0, np.nextafter(1.0, 2.0), 5.0]  # layer 0: below, at, above
    np.testing.assert_array_equal(apply_cut(shower, 1.0)[0, :4], [0.0, 1.0, np.nextafter(1.0, 2.0), 5.0])
    h = HighLevelFeatures((np.array([1e3]), shower), geo, cut=1.0)
    assert h.e_layer[0, 0] == 1.0 + np.nextafter(1.0, 2.0) + 5.0 and h.sparsity[0, 0] == 1 - 3 / 8
    t = 0.5e-3 / 0.033
    g2 = load_geometry("ds2")
    s2 = np.zeros((1, g2.num_voxels))
    s2[0, :3] = [np.nextafter(t, 0.0), t, 0.02]
    np.testing.assert_array_equal(apply_cut(s2, t)[0, :3], [0.0, t, 0.02])
