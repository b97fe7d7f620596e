"""The per-shower response calibration of grid models (hepgen.models.calibration) and the
conditional quantile functions it is built on."""

import numpy as np
import pytest


def test_binned_quantiles_cdf_inverts_the_quantile_function():
    """cdf(at(u)) = u and at(cdf(x)) = x inside the fitted range, also between bin centres,
    and the levels are those of the training distribution (uniform for fresh draws)."""
    from hepgen.models.conditions import BinnedQuantileSampler

    rng = np.random.default_rng(1)
    e = rng.uniform(10, 100, 40000)
    x = rng.normal(0.02 * e, 0.1 + 0.01 * e)
    s = BinnedQuantileSampler.fit(x, e, bins=10)
    given = rng.uniform(15, 95, 5000)
    u = rng.uniform(0.02, 0.98, 5000)
    np.testing.assert_allclose(s.cdf(s.at(given, u), given), u, atol=1e-6)
    fresh = rng.normal(0.02 * given, 0.1 + 0.01 * given)
    levels = s.cdf(fresh, given)
    assert abs(levels.mean() - 0.5) < 0.02 and abs(levels.std() - np.sqrt(1 / 12)) < 0.02
    assert s.cdf([-1e9, 1e9], [50, 50]).tolist() == [pytest.approx(0.0, abs=1e-8), pytest.approx(1.0, abs=1e-8)]


def test_response_calibration_maps_a_wrong_spread_onto_the_reference_and_keeps_ranks():
    """Generated 'showers' = reference ones with a 10 % low response and a 3x wider
    shower-to-shower spread: after the map, mu90 and sigma90 of E_vis / E_inc per energy bin
    are the reference's, the order of the showers' responses is kept, shapes are untouched,
    and the map survives a save / load."""
    from hepgen.metrics.grid import energy_bin_edges, per_energy_mu90_sigma90
    from hepgen.models.calibration import ResponseCalibration, visible_response

    rng = np.random.default_rng(2)

    def showers(n, spread, scale):
        e = rng.uniform(1e4, 1e5, n)
        shape = rng.dirichlet(np.ones(50), n)  # the fraction of E_vis in each of 50 cells
        r = 0.024 * scale * np.exp(rng.normal(0, spread, n))
        return e, (shape * (r * e)[:, None]).astype(np.float32)

    e_ref, ref = showers(20000, 0.05, 1.0)
    e_gen, gen = showers(20000, 0.15, 0.9)
    cal = ResponseCalibration.fit(gen, e_gen, ref, e_ref, hit_cut=0.1)
    e_new, new = showers(6000, 0.15, 0.9)  # fresh generated showers
    fixed = cal.apply(new, e_new)
    r_ref, r_new, r_fixed = (visible_response(s, e, 0.1) for s, e in ((ref, e_ref), (new, e_new), (fixed, e_new)))
    edges = energy_bin_edges(e_ref)
    before = per_energy_mu90_sigma90(r_ref, e_ref, r_new, e_new, edges)
    after = per_energy_mu90_sigma90(r_ref, e_ref, r_fixed, e_new, edges)
    assert before.max_dev("mu90")[0] > 0.08 and before.max_dev("sigma90")[0] > 1.5
    assert after.max_dev("mu90")[0] < 0.01 and after.max_dev("sigma90")[0] < 0.12
    e_50 = np.full(len(new), 5e4)  # at one energy the map is monotone: the order of the responses is kept
    at_50 = new * (5e4 / e_new)[:, None].astype(np.float32)
    order = np.argsort(visible_response(at_50, e_50, 0.1))
    assert np.all(np.diff(visible_response(cal.apply(at_50, e_50), e_50, 0.1)[order]) >= -1e-7)
    np.testing.assert_allclose(fixed / fixed.sum(1, keepdims=True), new / new.sum(1, keepdims=True), rtol=1e-4)
    again = ResponseCalibration.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.apply(new[:100], e_new[:100]), fixed[:100])


def test_response_calibration_needs_showers_with_visible_energy():
    from hepgen.errors import InvalidDataError
    from hepgen.models.calibration import ResponseCalibration

    empty = np.zeros((100, 10), np.float32)
    with pytest.raises(InvalidDataError, match="0 showers with visible energy"):
        ResponseCalibration.fit(empty, np.full(100, 1e4), empty + 1, np.full(100, 1e4), hit_cut=0.1)
