"""CaloChallenge-style shower evaluation: metrics on hand-made showers and the CLI end to end."""

import json

import h5py
import numpy as np
import pytest

from hepgen.cli.main import main
from hepgen.data.calo import ShowerSample, write_showers
from hepgen.data.geometry import load_geometry
from hepgen.metrics import jets
from hepgen.metrics.calo import (
    HighLevelFeatures,
    classifier_auc,
    frechet_distance_psd,
    high_level_inputs,
    histogram_separation,
    low_level_inputs,
    physics_distances,
    roc_auc,
    separation_power,
    separation_powers,
)
from hepgen.metrics.grid import correlation_matrix, grid_observables, mu90_sigma90


def synthetic_showers(geometry, n, seed=0, depth=1.0, radius=1.0, scale=1.0, quantum=0.5, e_range=(1e3, 1e5)):
    """Plausible toy showers: gamma-shaped longitudinal profile whose peak moves with log E,
    exponential radial profile, voxel energies = quantum x Poisson, smeared by a gamma."""
    geo = load_geometry(geometry) if isinstance(geometry, str) else geometry
    rng = np.random.default_rng(seed)
    t = geo.voxel_table()
    num_layers = geo.num_layers
    e_inc = np.exp(rng.uniform(*np.log(e_range), size=n))
    e_dep = e_inc * rng.normal(0.8, 0.03, size=n).clip(0.5, 1.0)
    peak = 0.25 * num_layers * depth * (1 + 0.1 * np.log(e_inc / 1e3)) * rng.normal(1, 0.1, n).clip(0.5, 1.5)
    layer = np.arange(num_layers) + 0.5
    shape_a = 4.0
    f_l = layer[None] ** (shape_a - 1) * np.exp(-((shape_a - 1) / peak)[:, None] * layer[None])
    f_l /= f_l.sum(1, keepdims=True)
    s = 0.1 * float(t["r_high"].max()) * radius * rng.normal(1, 0.1, n).clip(0.5, 1.5)
    if geo.kind == "grid":
        area = np.full(geo.num_voxels, geo.cell_size**2)
    else:
        area = 0.5 * (t["r_high"] ** 2 - t["r_low"] ** 2) * (t["alpha_high"] - t["alpha_low"])
    density = np.exp(-t["r"][None] / s[:, None]) / (2 * np.pi * s[:, None] ** 2)
    mu = e_dep[:, None] * f_l[:, t["layer"]] * density * area[None]
    showers = rng.gamma(rng.poisson(mu / quantum), quantum) * scale
    return ShowerSample(e_inc.reshape(-1, 1), showers, geo)


@pytest.fixture(scope="module")
def ds1():
    geo = load_geometry("ds1-photons")
    return geo, synthetic_showers(geo, 800, seed=1), synthetic_showers(geo, 800, seed=2)


# -- separation power -------------------------------------------------------------------
def test_separation_power_identical_disjoint_and_known_value():
    assert separation_power([1, 2, 3, 0], [2, 4, 6, 0]) == 0.0  # same shape, other normalisation
    assert separation_power([5, 0, 0], [0, 3, 4]) == pytest.approx(1.0)
    # p = (1/2, 1/2), q = (1, 0): 1/2 [(1/2)^2 / (3/2) + (1/2)^2 / (1/2)] = 1/3
    assert separation_power([1, 1], [2, 0]) == pytest.approx(1 / 3)
    assert np.allclose(separation_power(np.array([[1, 1], [1, 0]]), np.array([[1, 1], [0, 1]])), [0, 1])
    x = np.random.default_rng(0).uniform(-2.5, 2.5, size=5000)
    edges = np.linspace(-3, 3, 31)
    same = histogram_separation(x, x, edges)
    assert same.value == 0.0 and same.error == pytest.approx(0.0, abs=0.01)
    apart = histogram_separation(x, x + 100, edges)  # all generated values in the overflow bin
    assert apart.value == pytest.approx(1.0)


# -- high-level features ----------------------------------------------------------------
def test_centre_of_energy_of_single_voxel_shower_is_that_voxel():
    geo = load_geometry("ds1-photons")
    t = geo.voxel_table()
    layer_1 = geo.layer_slices[1]
    v = layer_1.start + 37
    showers = np.zeros((2, geo.num_voxels), np.float32)
    showers[0, v] = 500.0
    showers[1, v] = 0.5  # below the cut below
    h = HighLevelFeatures((np.array([1000.0, 1000.0]), showers), geo)
    j = list(geo.layer_slices).index(1)
    assert h.center_x[0, j] == pytest.approx(t["x"][v])
    assert h.center_y[0, j] == pytest.approx(t["y"][v])
    assert h.width_x[0, j] == pytest.approx(0.0, abs=1e-6) and h.width_y[0, j] == pytest.approx(0.0, abs=1e-6)
    assert h.center_r[0, j] == pytest.approx(t["r"][v])
    assert h.e_layer[0].tolist() == [0, 500, 0, 0, 0]
    assert h.e_ratio[0] == pytest.approx(0.5) and h.depth[0] == pytest.approx(j)
    assert (np.delete(h.center_x[0], j) == 0).all()  # empty layers: centre 0
    assert h.sparsity[0, j] == pytest.approx(1 - 1 / (layer_1.stop - layer_1.start))
    assert h.brightest[1][0, j] == pytest.approx(1.0) and h.brightest[2][0, j] == 0.0
    cut = HighLevelFeatures((np.array([1000.0, 1000.0]), showers), geo, cut=1.0)
    assert cut.e_tot.tolist() == [500.0, 0.0]
    # layers 0, 3 and 12 have one angular bin: no centre/width histograms there (as in the challenge)
    names = h.histogram_features()
    assert "center_x_1" in names and "center_x_0" not in names and "e_layer_12" in names


def test_features_match_a_direct_loop(ds1):
    geo, real, _ = ds1
    h = HighLevelFeatures(real, chunk_size=300)
    t = geo.voxel_table()
    for i in (0, 17, 555):
        for j, sl in enumerate(geo.layer_slices.values()):
            e = real.showers[i, sl].astype(np.float64)
            assert h.e_layer[i, j] == pytest.approx(e.sum())
            if e.sum() > 0 and h.alpha_layers[j]:
                mx = (e * t["x"][sl]).sum() / e.sum()
                assert h.center_x[i, j] == pytest.approx(mx)
                assert h.width_x[i, j] == pytest.approx(np.sqrt((e * (t["x"][sl] - mx) ** 2).sum() / e.sum()), rel=1e-5)
            assert h.sparsity[i, j] == pytest.approx(np.mean(e == 0))
            top = np.sort(e)[::-1]
            assert h.brightest[1][i, j] == pytest.approx(top[0] / e.sum() if e.sum() else 0.0)
    assert h.voxel_spectrum.total == int((real.showers > 0).sum())
    x = high_level_inputs(h)
    assert x.shape == (len(real), 1 + 5 + 4 * 2) and np.isfinite(x).all()
    low = low_level_inputs(real)
    assert low.shape == (len(real), 1 + geo.num_voxels)
    assert np.allclose(low[:, 1:] * real.incident_energies, real.showers, rtol=1e-5, atol=1e-5)


def test_separation_powers_see_a_scaled_sample(ds1):
    geo, real, gen = ds1
    same = separation_powers(HighLevelFeatures(real), HighLevelFeatures(gen))
    scaled = ShowerSample(gen.incident_energies, gen.showers * 1.3, geo)
    off = separation_powers(HighLevelFeatures(real), HighLevelFeatures(scaled))
    # same distribution: everything near the statistical floor
    assert all(s.value < s.floor + 0.04 for s in same.values())
    assert same["e_ratio"].value < 0.05 < 0.5 < off["e_ratio"].value
    assert off["voxel_energy"].value > same["voxel_energy"].value


# -- classifier -------------------------------------------------------------------------
def test_roc_auc():
    assert roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.3, 0.1]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5
    assert roc_auc([1, 1, 0, 0], [0.9, 0.3, 0.5, 0.1]) == 0.75


def test_classifier_auc_same_vs_different(ds1):
    geo, real, gen = ds1
    x_real, x_gen = low_level_inputs(real), low_level_inputs(gen)
    x_off = low_level_inputs(ShowerSample(gen.incident_energies, gen.showers * 1.3, geo))
    kw = dict(epochs=6, seed=3, device="cpu")
    same = classifier_auc(x_real, x_gen, runs=2, **kw)
    off = classifier_auc(x_real, x_off, runs=1, **kw)
    assert abs(same.value - 0.5) < 0.1, same.aucs
    assert off.value > 0.85, off.aucs
    assert len(same.aucs) == 2 and same.error >= 0
    assert len(same.outputs_gen[0]) == len(same.outputs_real[0]) == 160  # 20 % of 800
    # weights of a separable sample: generated showers mostly get w < 1 (C < 1/2), real ones w > 1
    assert np.median(off.weights("gen")) < 1 < np.median(off.weights("real"))
    again = classifier_auc(x_real, x_off, runs=1, **kw)
    assert again.aucs == off.aucs  # seeded and deterministic


def test_frechet_distance_matches_scipy_sqrtm_version():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 12)), rng.normal(size=(400, 12)) * 1.3 + 0.2
    args = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    assert frechet_distance_psd(*args) == pytest.approx(jets.frechet_distance(*args), rel=1e-8)
    d = physics_distances(a, b)
    assert d["fpd"]["value"] > 0.05 and set(d["kpd"]) == {"value", "error"}


# -- grid observables -------------------------------------------------------------------
def test_grid_observables_and_mu90():
    geo = load_geometry("ild-photons")
    showers = np.zeros((2, geo.num_voxels), np.float32)
    voxel = geo.voxel_index(np.array([4, 4, 10]), np.array([0.0, 10.0, 0.0]), np.array([1.0, 1.0, 1.0]))
    showers[0, voxel] = [1.0, 1.0, 0.05]  # the last is below the 0.1 MeV hit cut
    showers[1, voxel[0]] = 2.0
    obs = grid_observables((np.array([10.0, 10.0]), showers), geo)
    t = geo.voxel_table()
    assert obs.n_hits.tolist() == [2, 1] and obs.e_vis.tolist() == pytest.approx([2.0, 2.0])
    assert obs.cog_x[0] == pytest.approx(t["x"][voxel[:2]].mean()) and obs.cog_z.tolist() == [4, 4]
    assert obs.longitudinal[0, 4] == pytest.approx(2.0) and obs.hit_spectrum.total == 3
    assert obs.radial[1, 0] == pytest.approx(2.0)  # the single hit sits on its own centre
    mu, sigma = mu90_sigma90(np.r_[np.full(90, 5.0), np.full(10, 1000.0)])
    assert (mu, sigma) == (5.0, 0.0)
    x = np.arange(10.0)
    c = correlation_matrix({"a": x, "b": 2 * x + 1, "c": -x, "k": np.ones(10)})
    assert np.allclose(c[:3, :3], [[1, 1, -1], [1, 1, -1], [-1, -1, 1]]) and c[3, 3] == 1 and c[0, 3] == 0


# -- CLI --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shower_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("calo")
    geo = load_geometry("ds1-photons")
    write_showers(synthetic_showers(geo, 200, seed=4), d / "real.h5")
    write_showers(synthetic_showers(geo, 200, seed=5, scale=1.3), d / "gen.h5")
    return d


def test_cli_writes_metrics_and_report(shower_files, capsys):
    out = shower_files / "report"
    code = main(["evaluate", "calo", "--real", str(shower_files / "real.h5"), "--gen", str(shower_files / "gen.h5"),
                 "--out", str(out), "--classifier-epochs", "3", "--classifier-runs", "1", "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("auc_low", "auc_high", "fpd", "kpd", "sep_e_ratio", "sep_e_layer_12", "sep_center_x_1",
                "sep_width_y_2", "sep_sparsity_0", "sep_voxel_energy", "sep_brightest1_1", "separation_power_max",
                "w_frac_lt_0.1_low", "w_frac_gt_10_high"):
        assert set(m[key]) == {"value", "error"} and np.isfinite(m[key]["value"]), key
    special = {"flagged", "info", "timing_s"}
    assert all(set(v) == {"value", "error"} for k, v in m.items() if k not in special)
    assert "sep_e_ratio" in m["flagged"] and m["flagged"][0] == "sep_e_ratio"  # x1.3 energies: the worst one
    assert m["sep_e_ratio"]["value"] > 0.5 and m["separation_power_max"]["value"] == m["sep_e_ratio"]["value"]
    assert {"features", "classifier_low", "classifier_high", "plots", "total"} <= set(m["timing_s"])
    html = (out / "report.html").read_text()
    for png in ("e_ratio.png", "e_layer_layers.png", "center_x_layers.png", "sparsity_layers.png",
                "voxel_energy.png", "brightest1_layers.png", "weights_low.png", "average_shower.png"):
        assert (out / png).stat().st_size > 1000, png
        assert png in html
    assert "AUC low-level" in stdout and f"report: {out / 'report.html'}" in stdout


def _file(path, energies, showers):
    with h5py.File(path, "w") as f:
        f["incident_energies"] = energies
        f["showers"] = showers
    return str(path)


def test_cli_rejects_bad_input_and_keeps_existing_output(shower_files, tmp_path, capsys):
    real = str(shower_files / "real.h5")
    out = tmp_path / "report"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    e = np.full((10, 1), 1000.0, np.float32)
    good = np.ones((10, 368), np.float32)
    nan, neg = good.copy(), good.copy()
    nan[3, 5] = np.nan
    neg[2, 1] = -1
    pions = load_geometry("ds1-pions")
    cases = [
        ([str(tmp_path / "missing.h5"), real], "--real", "file not found"),
        ([real, _file(tmp_path / "v.h5", e, np.ones((10, 100), np.float32))], "--gen", "100 voxels"),
        ([real, _file(tmp_path / "n.h5", e, nan)], "--gen", "NaN or inf"),
        ([real, _file(tmp_path / "g.h5", e, neg)], "--gen", "negative voxel energies"),
        ([real, _file(tmp_path / "l.h5", e[:7], good)], "--gen", "7 incident energies but 10 showers"),
        ([real, _file(tmp_path / "p.h5", e, np.ones((10, pions.num_voxels), np.float32))], "--gen",
         "geometry ds1-pions", "differs from --real's ds1-photons"),
    ]
    for (r, g), *fragments in cases:
        code = main(["evaluate", "calo", "--real", r, "--gen", g, "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code != 0 and err.count("\n") == 0 and err.startswith("hepgen: error:"), err
        for frag in fragments:
            assert frag in err, err
    for extra, frag in ((["--cut", "-1"], "--cut"), (["--classifier-epochs", "0"], "--classifier-epochs"),
                        (["--geometry", "ds2"], "6480"), (["--classifiers", "low,bogus"], "bogus")):
        code = main(["evaluate", "calo", "--real", real, "--gen", real, "--out", str(out), *extra])
        err = capsys.readouterr().err.strip()
        assert code != 0 and err.count("\n") == 0 and frag in err, err
    assert (out / "metrics.json").read_text() == "old" and sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]  # no temporary folder left


def test_grid_geometry_evaluation_without_plots(tmp_path):
    from hepgen.evaluate.calo import evaluate_calo

    geo = load_geometry("ild-photons")
    write_showers(synthetic_showers(geo, 60, seed=6, quantum=0.2), tmp_path / "a.h5")
    write_showers(synthetic_showers(geo, 60, seed=7, quantum=0.2, radius=1.5), tmp_path / "b.h5")
    res = evaluate_calo(tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "out", classifier_runs=0, plots=False,
                        echo=lambda *_: None)
    m = res.metrics
    for key in ("sep_grid_hit_energy", "sep_grid_n_hits", "sep_grid_e_vis", "sep_grid_cog_z",
                "sep_grid_radial_profile", "grid_e_vis_mu90_real", "grid_n_hits_sigma90_gen", "grid_corr_max_abs_diff"):
        assert set(m[key]) == {"value", "error"}, key
    assert "auc_low" not in m and m["sep_grid_radial_profile"]["value"] > 0.01
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["info"]["geometry"] == "ild-photons"


def test_grid_mu90_sigma90_per_incident_energy_bin(tmp_path):
    """Issue 13's target is per E_inc bin: a 3 % scale of every cell moves mu90 of the
    visible energy by 3 % in every bin and leaves sigma90 / mu90 alone."""
    from hepgen.data.calo import ShowerSample
    from hepgen.evaluate.calo import evaluate_calo
    from hepgen.simulate.showers import simulate_chunk

    e, showers = simulate_chunk("ild-photons", 400, 5)
    geo = load_geometry("ild-photons")
    write_showers(ShowerSample(e[:, None], showers, geo), tmp_path / "a.h5")
    write_showers(ShowerSample(e[:, None], showers * 1.03, geo), tmp_path / "b.h5")
    m = evaluate_calo(tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "out", classifier_runs=0, plots=False,
                      echo=lambda *_: None).metrics
    assert m["grid_e_vis_mu90_per_energy_max_dev"]["value"] == pytest.approx(0.03, abs=5e-3)  # + cells crossing the hit cut
    assert m["grid_e_vis_sigma90_per_energy_max_dev"]["value"] == pytest.approx(0.03, abs=1e-2)
    same = evaluate_calo(tmp_path / "a.h5", tmp_path / "a.h5", tmp_path / "same", classifier_runs=0, plots=False,
                         echo=lambda *_: None).metrics
    assert same["grid_e_vis_mu90_per_energy_max_dev"]["value"] < 1e-9
    # the response E_vis / E_inc moves like E_vis under a scale, but a second sample at other
    # energies differs from the first by its bins' energy mix in E_vis, far less in the response
    assert m["grid_response_mu90_per_energy_max_dev"]["value"] == pytest.approx(0.03, abs=5e-3)
    e2, showers2 = simulate_chunk("ild-photons", 400, 6)
    write_showers(ShowerSample(e2[:, None], showers2, geo), tmp_path / "c.h5")
    other = evaluate_calo(tmp_path / "a.h5", tmp_path / "c.h5", tmp_path / "other", classifier_runs=0, plots=False,
                          echo=lambda *_: None).metrics
    assert other["grid_response_mu90_per_energy_max_dev"]["value"] < 0.5 * other["grid_e_vis_mu90_per_energy_max_dev"]["value"]


def test_grid_per_energy_bins_name_the_worst_bin_and_are_plotted(tmp_path):
    """A model wrong in one energy range only: the per-bin table says which bin, the
    others stay at ratio 1, and the report has the response-per-energy figure."""
    from hepgen.data.calo import ShowerSample
    from hepgen.evaluate.calo import evaluate_calo
    from hepgen.metrics.grid import energy_bin_edges, per_energy_mu90_sigma90
    from hepgen.simulate.showers import simulate_chunk

    e, showers = simulate_chunk("ild-photons", 600, 5)
    geo = load_geometry("ild-photons")
    edges = energy_bin_edges(e)
    assert len(edges) == 11  # 600 showers: 10 bins
    top = e >= edges[-2]  # the highest-energy bin only: every cell x 1.2
    bad = showers * np.where(top, 1.2, 1.0)[:, None]
    write_showers(ShowerSample(e[:, None], showers, geo), tmp_path / "a.h5")
    write_showers(ShowerSample(e[:, None], bad, geo), tmp_path / "b.h5")
    result = evaluate_calo(tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "out", classifier_runs=0,
                           echo=lambda *_: None)
    m = result.metrics
    table = m["grid_per_energy"]["response"]
    ratio = np.array(table["mu90_ratio"], dtype=float)
    assert ratio[-1] == pytest.approx(1.2, abs=0.01) and np.allclose(ratio[:-1], 1.0)
    assert table["mu90_max_dev_e_inc"] == pytest.approx(0.5 * (edges[-2] + edges[-1]))
    assert m["grid_response_mu90_per_energy_max_dev"]["value"] == pytest.approx(0.2, abs=0.01)
    assert sum(table["n_real"]) == 600
    assert (tmp_path / "out" / "grid_per_energy.png").stat().st_size > 10_000
    assert "grid_per_energy.png" in (tmp_path / "out" / "report.html").read_text()
    # the function alone, on arrays: a bin with too few showers is NaN, not a ratio
    v = np.random.default_rng(0).uniform(1, 2, 30)
    where = np.r_[np.zeros(25), np.ones(5)]
    st = per_energy_mu90_sigma90(v, where, 1.1 * v, where, [0.0, 0.5, 1.5])
    assert st.ratio("mu90")[0] == pytest.approx(1.1) and np.isnan(st.ratio("mu90")[1])
    assert st.max_dev("mu90") == (pytest.approx(0.1), 0.25)
