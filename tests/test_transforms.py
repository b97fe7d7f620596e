"""Preprocessing: exact round trips, masked fits, serialisation."""

import json

import numpy as np
import pytest
import torch

from hepgen.data.jetnet import read_jets
from hepgen.errors import InvalidDataError, OptionError
from hepgen.transforms import BoxCox, Chain, JetPreprocessor, StandardScaler, from_dict


@pytest.fixture(scope="module")
def jets(fixture_dir):
    return read_jets(fixture_dir / "t150.hdf5")


@pytest.mark.parametrize("kind", ["standard", "boxcox"])
def test_jet_preprocessor_round_trip_and_serialisation(jets, kind):
    pre = JetPreprocessor(kind).fit(jets.particle_features)
    scaled = pre.transform(jets.particle_features)
    m = jets.mask
    # fitted on real particles only: standardised there, padded slots stay zero
    np.testing.assert_allclose(scaled[m].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(scaled[m].std(0), 1, atol=1e-3)
    assert np.all(scaled[~m] == 0)
    back = pre.inverse_transform(scaled, m)
    np.testing.assert_allclose(back, jets.particle_features, rtol=1e-4, atol=1e-6)
    again = from_dict(json.loads(json.dumps(pre.to_dict())))
    np.testing.assert_array_equal(again.transform(jets.particle_features), scaled)


def test_boxcox_makes_ptrel_less_skewed(jets):
    from scipy.stats import skew

    pt = jets.particle_features[..., 2][jets.mask]
    bc = BoxCox([0]).fit(pt[:, None])
    assert abs(skew(bc.transform(pt[:, None])[:, 0])) < 0.2 * abs(skew(pt))


def test_flat_transform_marks_padding_by_ptrel(jets):
    """Padding is recovered as ptrel < 1e-4 (the thesis' rule): real particles below it are lost too."""
    pre = JetPreprocessor("boxcox").fit(jets.particle_features)
    back = pre.inverse_transform_all(pre.transform_all(jets.particle_features))
    kept = jets.mask & (jets.particle_features[..., 2] >= JetPreprocessor.PAD_THRESHOLD)
    assert kept.sum() > 0.95 * jets.mask.sum()
    np.testing.assert_array_equal(back[..., 3] > 0.5, kept)
    np.testing.assert_allclose(back[..., :3][kept], jets.particles[kept], rtol=1e-4, atol=1e-6)


def test_torch_inverse_matches_numpy(jets):
    pre = JetPreprocessor("boxcox").fit(jets.particle_features)
    x = pre.transform(jets.particle_features)[jets.mask].astype(np.float64)
    np.testing.assert_allclose(pre.scaler.inverse_torch(torch.as_tensor(x)).numpy(),
                               pre.scaler.inverse_transform(x), rtol=1e-10)


def test_bad_inputs():
    with pytest.raises(OptionError, match="unknown preprocessing"):
        JetPreprocessor("log")
    with pytest.raises(InvalidDataError, match="positive"):
        BoxCox([0]).fit(np.array([[1.0], [-1.0]]))
    with pytest.raises(InvalidDataError, match="empty"):
        StandardScaler().fit(np.zeros((0, 3)))
    assert isinstance(from_dict(Chain([StandardScaler().fit(np.ones((3, 2)))]).to_dict()), Chain)


def test_calo_energy_parametrisation_round_trips_exactly():
    from hepgen.simulate.showers import simulate_chunk
    from hepgen.transforms.base import from_dict
    from hepgen.transforms.calo import CaloShowerTransform, energies_to_u, layer_energies, u_to_energies

    e_inc, showers = simulate_chunk("ds2", 40, 3)
    t = CaloShowerTransform("ds2", threshold=0.0).fit(showers)
    u, x, c = t.transform(showers, e_inc)
    assert u.shape == (40, 45) and x.shape == (40, 6480) and c.shape == (40, 1)
    assert 0 <= u.min() and u[:, 1:].max() <= 1 and u[:, 0].max() < 1  # f = 2.85 keeps u_0 in [0, 1]
    assert 0 <= c.min() and c.max() <= 1
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-6)
    back, e_back = from_dict(t.to_dict()).inverse_transform(u, x, c)  # after a JSON round trip
    np.testing.assert_allclose(back, showers, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(e_back, e_inc, rtol=1e-12)
    layers = layer_energies(showers.astype(np.float64), t.geometry.layer_boundaries)
    np.testing.assert_allclose(u_to_energies(energies_to_u(layers, e_inc, 2.85), e_inc, 2.85), layers,
                               rtol=1e-12, atol=1e-9)
    # post-processing: each layer carries exactly the energy the u variables give it,
    # whatever the shape network outputs
    noisy, _ = t.inverse_transform(u, x + np.random.default_rng(0).normal(0, 0.3, x.shape), c)
    np.testing.assert_allclose(layer_energies(noisy, t.geometry.layer_boundaries), layers, rtol=1e-9, atol=1e-6)
