"""Physics sanity and reproducibility of the Pythia 8 + FastJet reference producer."""

import numpy as np
import pytest

from hepgen.errors import OptionError
from hepgen.simulate.jets import generate_jets


def _mode(values, lo, hi, width):
    counts, edges = np.histogram(values, bins=np.arange(lo, hi + width, width))
    return edges[np.argmax(counts)] + width / 2


def test_top_mass_peaks_at_top_with_w_shoulder(jets_by_type):
    m = jets_by_type["t"].jet_features[:, 2]
    assert 165 <= _mode(m, 40, 300, 10) <= 185
    # jets that lose the b: a W shoulder well separated from the top peak
    w_window = np.mean((m > 65) & (m < 100))
    assert w_window > 0.005
    assert np.mean((m > 150) & (m < 200)) > 0.5


def test_w_and_z_mass_peaks(jets_by_type):
    assert 76 <= _mode(jets_by_type["w"].jet_features[:, 2], 40, 200, 4) <= 86
    assert 87 <= _mode(jets_by_type["z"].jet_features[:, 2], 40, 200, 4) <= 96


def test_gluon_jets_have_more_constituents_than_quark_jets(jets_by_type):
    g = jets_by_type["g"].jet_features[:, 3].mean()
    q = jets_by_type["q"].jet_features[:, 3].mean()
    assert g > 1.3 * q


def test_jet_kinematics_and_features(jets_by_type):
    s = jets_by_type["t"]
    pt, eta = s.jet_features[:, 0], s.jet_features[:, 1]
    assert 850 < np.median(pt) < 1100
    assert np.all(np.abs(eta) < 2.5)
    # ptrel of all particles sums to ~1 for the full jet, less after truncation to 30
    total = s.particle_features[..., 2].sum(1)
    assert np.all(total < 1.05) and np.median(total) > 0.85
    assert np.all(np.abs(s.particle_features[..., 0]) < 1.0)


def test_same_seed_same_jets_whatever_the_workers():
    a = generate_jets("w", 250, 30, seed=9, workers=1, progress=False)
    b = generate_jets("w", 250, 30, seed=9, workers=2, progress=False)
    c = generate_jets("w", 250, 30, seed=10, workers=1, progress=False)
    np.testing.assert_array_equal(a.particle_features, b.particle_features)
    np.testing.assert_array_equal(a.jet_features, b.jet_features)
    assert not np.array_equal(a.jet_features, c.jet_features)


def test_runs_on_a_dask_cluster_on_loopback():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, processes=True
    ) as cluster:
        remote = generate_jets("z", 250, 30, seed=4, scheduler=cluster.scheduler_address, progress=False)
    local = generate_jets("z", 250, 30, seed=4, workers=1, progress=False)
    np.testing.assert_array_equal(remote.particle_features, local.particle_features)


@pytest.mark.parametrize("kwargs, message", [
    (dict(jet_type="x", num_jets=5), "unknown jet type 'x'"),
    (dict(jet_type="t", num_jets=0), "--num-jets must be positive"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(OptionError, match=message):
        generate_jets(**kwargs)


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(OptionError, match="cannot reach Dask scheduler"):
        generate_jets("t", 10, 30, scheduler="tcp://127.0.0.1:9", progress=False)


def test_matched_jet_loop_gives_up_after_max_events_naming_the_jets():
    """The loop shared by the jet and dark-jet producers stops after ``max_events`` tries."""
    from hepgen.simulate.jetmatching import delta_r, simulate_matched_jets

    class NoEvents:  # every event fails
        calls = 0

        def next(self):
            NoEvents.calls += 1
            return False

    with pytest.raises(RuntimeError) as info:
        simulate_matched_jets(NoEvents(), 3, 30, radius=0.8, targets=lambda e: [(0.0, 0.0)], visible=lambda p: True,
                              pt_min=100.0, accept=lambda j: True, max_events=7, what="t jets matched")
    assert str(info.value) == "only 0 of 3 t jets matched in 7 events" and NoEvents.calls == 7
    assert delta_r(0.0, 3.0, 0.0, -3.0) == pytest.approx(2 * np.pi - 6.0)  # phi wrapped
