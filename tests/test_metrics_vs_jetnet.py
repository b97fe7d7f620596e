"""Our jet metrics against the reference implementation, jetnet.evaluation.gen_metrics."""

import numpy as np
import pytest

from conftest import distorted
from hepgen.metrics import jets as M
from hepgen.metrics.efp import FPD_SET, W1EFP_SET, EFPCalculator

jetnet_utils = pytest.importorskip("jetnet.utils")
from jetnet.evaluation import gen_metrics as G  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def samples(top_jets):
    a, b = top_jets
    real = a.truncate(30).particle_features
    gen = distorted(b.truncate(30).particle_features)
    return real, gen


@pytest.mark.parametrize("num_particles", [30, 150])
def test_efps_equal_energyflow(top_jets, num_particles):
    x = top_jets[0].truncate(num_particles).particles[:80]
    ref = jetnet_utils.efps(x, efpset_args=[("d<=", 4)], efp_jobs=1)
    ours = EFPCalculator(*FPD_SET)(x)
    assert ours.shape == ref.shape == (80, 36)
    np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=1e-12)


def test_efps_wrap_phi_across_pi():
    # two particles straddling phi = +-pi are close, not 2 pi apart
    jets = np.zeros((1, 3, 3), np.float32)
    jets[0, 0] = (0.0, np.pi - 0.05, 0.6)
    jets[0, 1] = (0.1, -np.pi + 0.05, 0.4)
    ref = jetnet_utils.efps(jets, efpset_args=[("d<=", 4)], efp_jobs=1)
    np.testing.assert_allclose(EFPCalculator(*FPD_SET)(jets), np.atleast_2d(ref), rtol=1e-5)


def test_w1efp_columns_are_the_jetnet_default_set(top_jets):
    x = top_jets[0].truncate(30).particles[:50]
    full = EFPCalculator(*FPD_SET)
    cols = full.columns_of(EFPCalculator(*W1EFP_SET))
    np.testing.assert_allclose(full(x)[:, cols], jetnet_utils.efps(x, efp_jobs=1), rtol=2e-5)


def test_relative_mass_matches_jetnet(samples):
    real, _ = samples
    ref = jetnet_utils.jet_features(real[..., :3])["mass"]
    np.testing.assert_allclose(M.relative_mass(real[..., :3]), ref, rtol=1e-4, atol=1e-6)


def test_same_draws_give_jetnets_numbers(samples):
    real, gen = samples
    x, y, mx, my = real[..., :3], gen[..., :3], real[..., 3], gen[..., 3]
    n = 2000
    G.rng = np.random.default_rng(3)
    ref_m = G.w1m(x, y, num_eval_samples=n)
    ref_p = G.w1p(x, y, mx, my, num_eval_samples=n)
    ref_e = G.w1efp(x, y, num_eval_samples=n, efp_jobs=1)
    rng = np.random.default_rng(3)
    ours_m = M.w1m(x, y, n, rng=rng)
    ours_p = M.w1p(x, y, mx > 0, my > 0, num_eval_samples=n, rng=rng)
    calc = EFPCalculator(*FPD_SET)
    ex, ey = calc(x), calc(y)
    cols = calc.columns_of(EFPCalculator(*W1EFP_SET))
    ours_e = M.w1efp(ex[:, cols], ey[:, cols], n, rng=rng)
    np.testing.assert_allclose(ours_m, ref_m, rtol=1e-4)
    np.testing.assert_allclose(ours_p, ref_p, rtol=1e-5)
    np.testing.assert_allclose(ours_e, ref_e, rtol=1e-4)

    fx, fy = G.get_fpd_kpd_jet_features(x, efp_jobs=1), G.get_fpd_kpd_jet_features(y, efp_jobs=1)
    kw = dict(min_samples=500, max_samples=1200)
    np.testing.assert_allclose(M.fpd(ex, ey, **kw), G.fpd(fx, fy, **kw), rtol=1e-4)
    np.testing.assert_allclose(M.kpd(ex, ey, batch_size=500), G.kpd(fx, fy, batch_size=500), rtol=1e-4, atol=1e-9)


def test_agrees_with_jetnet_within_errors_on_independent_draws(samples):
    """With independent bootstrap draws (jetnet's own unseeded rng) values agree within errors."""
    real, gen = samples
    x, y = real[..., :3], gen[..., :3]
    G.rng = np.random.default_rng()
    ref_v, ref_e = G.w1m(x, y, num_eval_samples=3000)
    ours = M.jet_metrics(real, gen, seed=11, num_eval_samples=3000,
                         fpd_kwargs=dict(min_samples=500, max_samples=1200), kpd_kwargs=dict(batch_size=500))
    v, e = ours["w1m"]["value"], ours["w1m"]["error"]
    assert abs(v - ref_v) < 3 * np.hypot(e, ref_e) + 1e-12
    ref_p, ref_pe = M.inverse_variance_mean(*G.w1p(x, y, real[..., 3], gen[..., 3], num_eval_samples=3000))
    assert abs(ours["w1p"]["value"] - ref_p) < 3 * np.hypot(ours["w1p"]["error"], ref_pe)


def test_metrics_see_a_distortion(samples, top_jets):
    """The 10 % distortion stands far above the real-vs-real floor in every metric."""
    real, gen = samples
    floor_sample = top_jets[1].truncate(30).particle_features
    kw = dict(num_eval_samples=2000, fpd_kwargs=dict(min_samples=400, max_samples=600),
              kpd_kwargs=dict(batch_size=500))
    bad = M.jet_metrics(real, gen, **kw)
    floor = M.jet_metrics(real, floor_sample, **kw)
    for key in ("w1m", "w1p", "w1efp", "fpd"):
        assert bad[key]["value"] > 3 * floor[key]["value"], key
    assert bad["kpd"]["value"] > floor["kpd"]["value"] + 3 * bad["kpd"]["error"]


def test_inverse_variance_mean():
    v, e = M.inverse_variance_mean([1.0, 3.0], [1.0, 1.0])
    assert v == pytest.approx(2.0) and e == pytest.approx(np.sqrt(0.5))
    v, _ = M.inverse_variance_mean([1.0, 3.0], [1.0, 0.5])
    assert v == pytest.approx((1 + 3 * 4) / 5)
