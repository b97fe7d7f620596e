"""Jet generative models: blocks behave, every model trains, one learns measurably, runs sample."""

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from hepgen.models.assemblies.jets import MODELS, JetSurrogate, build_networks, model_config
from hepgen.models.blocks.cfm import FlowMatching, integrate
from hepgen.models.blocks.mean_field import MeanFieldBlock
from hepgen.models.multiplicity import MultiplicityKDE

TINY = {
    "mdma-gan": dict(hidden_gen=16, hidden=16, heads_gen=4, heads=4, num_blocks_gen=2),
    "mdma-flow": dict(hidden=32, l_dim=16, heads=4, num_blocks=2),
    "epic-gan": dict(l_dim_gen=16, hidden_gen=16, num_blocks_gen=2, l_dim=16, hidden=16, num_blocks=2),
    "epic-fm": dict(l_dim=16, hidden=16, global_dim=4, num_blocks=2),
    "tgan": dict(hidden_gen=16, hidden=16, heads_gen=4, heads=4, num_blocks_gen=2, num_blocks=2),
    "tnf": dict(hidden_gen=16, hidden=16, heads_gen=4, heads=4, num_blocks_gen=2, num_blocks=2),
    "nf": dict(transforms=2, hidden=32, layers=1),
    "nf-c": dict(transforms=2, hidden=32, layers=1),
    "nf-cc": dict(transforms=2, hidden=32, layers=1),
    "ipf": dict(transforms=2, hidden=32, layers=1),
    "pf": dict(transforms=2, hidden=32, layers=1, hidden_shape=16, heads=4, num_blocks=1),
    "apf": dict(transforms=2, hidden=32, layers=1, hidden_shape=16, heads=4, num_blocks=1),
}


def test_mean_field_block_ignores_padding_and_is_permutation_equivariant():
    torch.manual_seed(0)
    block = MeanFieldBlock(l_dim=8, hidden=16, heads=4, max_particles=10)
    x = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    x = x * mask[..., None]
    mf = torch.randn(2, 16)
    n = mask.sum(1)
    out, field = block(x, mf, mask, n)
    assert torch.all(out[0, 4:] == 0)
    # changing padded entries changes nothing
    x2 = x.clone()
    x2[0, 4:] = 5.0
    out2, field2 = block(x2, mf, mask, n)
    torch.testing.assert_close(field2, field)
    torch.testing.assert_close(out2[0, :4], out[0, :4])
    # permuting the particles permutes the output and keeps the mean field
    perm = torch.tensor([3, 1, 0, 2, 4, 5])
    out3, field3 = block(x[:, perm], mf, mask[:, perm], n)
    torch.testing.assert_close(field3, field, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out3[0, :4], out[0, perm[:4]], atol=1e-5, rtol=1e-5)


def test_multiplicity_kde_follows_training_counts():
    rng = np.random.default_rng(0)
    counts = np.clip(rng.normal(20, 4, 5000).round(), 1, 30).astype(int)
    kde = MultiplicityKDE.fit(counts, 30)
    s = kde.sample(20000, rng=1)
    assert s.min() >= 1 and s.max() <= 30
    assert abs(s.mean() - counts.mean()) < 0.3
    assert wasserstein_distance(s, counts) < 0.5
    again = MultiplicityKDE.from_dict(kde.to_dict()).sample(100, rng=5)
    np.testing.assert_array_equal(again, kde.sample(100, rng=5))


def _train(model, fixture_dir, tmp_path, steps=30):
    from hepgen.training.run import train_jet_model

    network = dict(TINY[model])
    if model == "tnf":  # its prior: a trained NF run
        network["prior"] = str(_train("nf", fixture_dir, tmp_path, steps=2)[0])
    run = train_jet_model(model, fixture_dir / "t.hdf5", tmp_path / model, max_epochs=steps, progress=False,
                          override={"network": network, "training": {"batch_size": 50, "select_every": 1000,
                                                                     "lr": 1e-3, "lr_gen": 1e-4}})
    import csv

    rows = list(csv.DictReader(open(run / "logs" / "metrics.csv")))
    key = {"cfm": "cfm_loss", "gan": "critic_loss", "nf": "loss", "pointflow": "nll"}[MODELS[model].family]
    losses = [float(r[key]) for r in rows if r.get(key)]
    return run, losses


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_trains_and_its_loss_decreases(model, fixture_dir, tmp_path):
    run, losses = _train(model, fixture_dir, tmp_path)
    assert len(losses) >= 4
    k = max(2, len(losses) // 4)
    assert np.mean(losses[-k:]) < np.mean(losses[:k]), losses
    s = JetSurrogate.load(run).sample(64, seed=3)
    assert s.particle_features.shape == (64, 30, 4)
    np.testing.assert_array_equal(s.mask.sum(1), s.jet_features[:, 3])
    assert np.all(np.diff(s.particle_features[..., 2], axis=1) <= 0)


def test_flow_matching_learns_a_point_cloud_distribution():
    """A small MDMA velocity field learns Gaussian particles: W1 of the marginals drops."""
    from hepgen.models.assemblies.jet_networks import MDMAVelocity

    torch.manual_seed(0)
    mean, std = torch.tensor([1.0, -1.0, 0.5]), torch.tensor([0.3, 0.2, 0.1])
    net = MDMAVelocity(l_dim=16, hidden=32, heads=4, num_blocks=2, max_particles=8)
    fm = FlowMatching()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    mask = torch.ones(128, 8, dtype=torch.bool)

    def w1():
        with torch.no_grad():
            x = integrate(net, torch.randn(2000, 8, 3), torch.ones(2000, 8, dtype=torch.bool), method="midpoint", steps=8)
        target = mean + std * torch.randn(2000 * 8, 3)
        return sum(wasserstein_distance(x.reshape(-1, 3)[:, i], target[:, i]) for i in range(3))

    before = w1()
    for _ in range(300):
        x1 = mean + std * torch.randn(128, 8, 3)
        loss = fm.loss(net, x1, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = w1()
    assert after < 0.25 * before, (before, after)


def test_config_override_and_unknown_section():
    from hepgen.errors import OptionError

    cfg = model_config("mdma-gan", 30, {"network": {"hidden": 32}})
    assert cfg["network"]["hidden"] == 32 and cfg["network"]["hidden_gen"] == 48
    with pytest.raises(OptionError, match="unknown section"):
        model_config("mdma-gan", 30, {"netwrk": {}})
    nets = build_networks(cfg)
    assert set(nets) == {"generator", "critic"}


def _within_jet_correlation(x: torch.Tensor) -> float:
    """Pearson correlation of feature 0 between particles 0 and 1 of the same cloud."""
    return float(np.corrcoef(x[:, 0, 0].numpy(), x[:, 1, 0].numpy())[0, 1])


def test_point_flow_learns_what_the_independent_point_flow_cannot():
    """Clouds whose particles share a random offset: the PF's shape latent carries the
    offset, so its particles come out correlated as in the data; the IPF draws particles
    independently (seed 000 Fig. 5.7) and its correlation stays ~0. The latent bank
    travels with the state dict."""
    from hepgen.models.assemblies.jet_networks import PointFlowNet
    from hepgen.training.modules import PointFlowModule

    def clouds(n):
        return torch.randn(n, 1, 1) + 0.1 * torch.randn(n, 8, 3)

    mask = torch.ones(128, 8, dtype=torch.bool)
    corr = {}
    for shape_dim in (0, 2):
        torch.manual_seed(0)
        net = PointFlowNet(shape_dim, transforms=2, hidden=32, layers=2, hidden_shape=32, heads=2, num_blocks=1,
                           l_dim=8, bank_size=1024)
        module = PointFlowModule(net, ema_decay=None)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(120):
            x = clouds(128)
            loss, z = module.nll(x, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            net.remember(z)
        with torch.no_grad():
            torch.manual_seed(1)
            gen = net(torch.randn(2000, 8, 3), torch.ones(2000, 8, dtype=torch.bool))
        corr[shape_dim] = _within_jet_correlation(gen)
        if shape_dim:
            again = PointFlowNet(shape_dim, transforms=2, hidden=32, layers=2, hidden_shape=32, heads=2, num_blocks=1,
                                 l_dim=8, bank_size=1024)
            again.load_state_dict(net.state_dict())
            torch.manual_seed(1)
            with torch.no_grad():
                np.testing.assert_allclose(again(torch.randn(50, 8, 3), torch.ones(50, 8, dtype=torch.bool)),
                                           (torch.manual_seed(1), net(torch.randn(50, 8, 3),
                                                                      torch.ones(50, 8, dtype=torch.bool)))[1])
    assert _within_jet_correlation(clouds(2000)) > 0.95
    assert abs(corr[0]) < 0.1, corr
    assert corr[2] > 0.6, corr


@pytest.mark.parametrize("name", ["mdma-gan/t150", "mdma-flow/t150"])
def test_shipped_150_particle_models_sample_reproducibly_with_valid_masks(name):
    from hepgen.metrics.jets import relative_mass
    from hepgen.models.registry import load_model

    torch.set_num_threads(1)
    model = load_model(name)
    assert model.num_particles == 150
    a, b = model.sample(24, seed=3), model.sample(24, seed=3)
    assert np.array_equal(a.particle_features, b.particle_features)
    assert not np.array_equal(a.particle_features[:4], model.sample(4, seed=4).particle_features)
    pf = a.particle_features
    assert pf.shape == (24, 150, 4) and pf.dtype == np.float32
    mask = pf[..., 3]
    assert set(np.unique(mask)) <= {0.0, 1.0}
    n = mask.sum(1)
    assert np.array_equal(a.jet_features[:, 3], n)
    # real particles first (sorted by ptrel), padding all zero
    assert np.all(np.diff(mask, axis=1) <= 0)
    assert np.all(pf[mask == 0] == 0)
    assert np.all(np.diff(np.where(mask == 1, pf[..., 2], -1.0), axis=1) <= 1e-7)
    # top jets at 150 slots: more than 30 constituents, far fewer than 150 (training data ~40-100)
    assert 30 < np.median(n) < 120
    assert np.all(pf[..., 2][mask == 1] >= 0)
    # relative masses of a top-jet model stay physical (0 < m/pT < 0.5)
    m = relative_mass(a.particles)
    assert np.all((m > 0) & (m < 0.5))


def test_bench_jets_takes_the_models_particle_count_and_refuses_a_mismatch(tmp_path):
    from pathlib import Path

    from hepgen.bench.jets import check_particles, reference_files
    from hepgen.errors import OptionError
    from hepgen.models.registry import load_model

    assert reference_files(["mdma-flow/t150", "mdma-gan/t150"], None, None) == (
        Path("data/t150_test.h5"), Path("data/t150_train.h5"))
    assert reference_files(["mdma-gan/t30"], None, None) == (Path("data/t30_test.h5"), Path("data/t30_train.h5"))
    with pytest.raises(OptionError, match="particle counts"):
        reference_files(["mdma-gan/t30", "mdma-flow/t150"], None, None)
    with pytest.raises(OptionError, match="--test.*30 particles.*generates 150"):
        check_particles("mdma-flow/t150", load_model("mdma-flow/t150"), 30, Path("data/t30_test.h5"))
    check_particles("mdma-gan/t30", load_model("mdma-gan/t30"), 30, Path("data/t30_test.h5"))


def test_multiplicity_kde_keeps_the_atom_at_the_cap():
    """Hit clouds cut at 300 hits: 15 % sit exactly at the cap. A plain KDE smears that
    atom (about half of it lands just below); ``atom_at_max`` draws it with its frequency."""
    rng = np.random.default_rng(0)
    counts = np.where(rng.random(20000) < 0.15, 300, np.clip(rng.normal(205, 45, 20000).round(), 1, 299)).astype(int)
    plain = MultiplicityKDE.fit(counts, 300).sample(40000, rng=1)
    assert np.mean(plain == 300) < 0.12  # the defect the option fixes
    kde = MultiplicityKDE.fit(counts, 300, atom_at_max=True)
    s = kde.sample(40000, rng=1)
    assert s.min() >= 1 and s.max() <= 300
    assert abs(np.mean(s == 300) - np.mean(counts == 300)) < 0.01
    assert abs(np.mean((s >= 250) & (s < 300)) - np.mean((counts >= 250) & (counts < 300))) < 0.01
    assert wasserstein_distance(s, counts) < 0.6 < wasserstein_distance(plain, counts)
    again = MultiplicityKDE.from_dict(kde.to_dict())
    assert again.atom_at_max
    np.testing.assert_array_equal(again.sample(100, rng=5), kde.sample(100, rng=5))
