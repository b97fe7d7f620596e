"""Calorimeter models: CaloDREAM networks, bespoke solvers, CaloINN, run folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hepgen.models.assemblies.calo import CaloSurrogate, calo_config
from hepgen.models.blocks.bespoke import BespokeSolver, euler, train_bespoke
from hepgen.models.blocks.cfm import integrate

TINY = {
    "energy": {"dim": 16, "depth": 1, "heads": 2, "head_hidden": 32, "head_layers": 2},
    "shape": {"patch": [5, 4, 3], "dim": 32, "depth": 1, "heads": 2, "cond_dim": 32},
    "training": {"batch_size": 32, "lr": 3e-3},
    "sampler": {"steps": 4, "energy_steps": 4, "reference_steps": 10, "bespoke_pairs": 32, "bespoke_iterations": 10},
}


@pytest.fixture(scope="module")
def ds2_showers():
    from hepgen.simulate.showers import simulate_chunk

    return simulate_chunk("ds2", 64, 21)


def _prepared(showers, e_inc):
    from hepgen.transforms.calo import CaloShowerTransform

    t = CaloShowerTransform("ds2").fit(showers, e_inc)
    u, x, c = t.transform(showers, e_inc)
    f = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return f(t.u_to_latent(u)), f(x), f(c)


def _train(loss_fn, params, steps=40, lr=3e-3):
    torch.manual_seed(0)
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.mean(losses[:5]), np.mean(losses[-5:])


def test_calodream_networks_learn(ds2_showers):
    e_inc, showers = ds2_showers
    u, x, c = _prepared(showers, e_inc)
    torch.manual_seed(0)
    nets = CaloSurrogate.build(calo_config("calodream", "ds2", TINY))
    first, last = _train(lambda: nets["energy"].loss(u, c), nets["energy"].parameters())
    assert last < 0.8 * first

    def shape_loss():
        x0 = torch.randn_like(x)
        t = torch.rand(len(x))
        xt = (1 - t[:, None]) * x0 + t[:, None] * x
        return ((nets["shape"](t, xt, (c, u)) - (x - x0)) ** 2).mean()

    first, last = _train(shape_loss, nets["shape"].parameters())
    assert last < 0.9 * first


def test_energy_network_is_autoregressive():
    torch.manual_seed(0)
    net = CaloSurrogate.build(calo_config("calodream", "ds2", TINY))["energy"]
    u, c = torch.randn(3, 45), torch.rand(3, 1)
    h = net.context(u[:, :-1], c)
    u2 = u.clone()
    u2[:, 10] += 5.0  # changing u_10 may change contexts for u_11.. only
    h2 = net.context(u2[:, :-1], c)
    torch.testing.assert_close(h[:, :11], h2[:, :11])
    assert not torch.allclose(h[:, 11:], h2[:, 11:])


class _Field(nn.Module):
    """A small frozen nonlinear velocity field with a condition."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Linear(6 + 1 + 1, 64), nn.Tanh(), nn.Linear(64, 6))

    def forward(self, t, x, cond):
        return 2.0 * self.net(torch.cat([x, t[:, None], cond], 1)) + torch.sin(3 * t)[:, None] * x


def test_bespoke_solver_beats_euler_at_the_same_steps():
    field = _Field().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    x0, cond = torch.randn(320, 6, generator=g), torch.rand(320, 1, generator=g)

    def reference(x, c):
        mask = torch.ones(len(x), 1, dtype=torch.bool)
        return integrate(lambda t, y, m, k: field(t, y[:, 0], k)[:, None], x[:, None], mask, c,
                         method="midpoint", steps=100)[:, 0]

    target = reference(x0, cond)
    solver = train_bespoke(field, x0[:256], target[:256], cond[:256], steps=8, iterations=150, batch_size=128,
                           lr=1e-2, progress=False)
    with torch.no_grad():
        err_bespoke = ((solver(field, x0[256:], cond[256:]) - target[256:]) ** 2).mean().item()
        err_euler = ((euler(field, x0[256:], cond[256:], steps=8) - target[256:]) ** 2).mean().item()
        # an untrained bespoke solver is exactly Euler
        err_init = ((BespokeSolver(8)(field, x0[256:], cond[256:]) - target[256:]) ** 2).mean().item()
    assert err_init == pytest.approx(err_euler, rel=1e-4)
    assert err_bespoke < 0.5 * err_euler, (err_bespoke, err_euler)


def test_caloinn_learns(tmp_path):
    from hepgen.simulate.showers import simulate_chunk
    from hepgen.transforms.calo import CaloShowerTransform

    e_inc, showers = simulate_chunk("ds1-photons", 128, 4)
    t = CaloShowerTransform("ds1-photons", alpha=1e-8, threshold=2e-3, e_range=(256, 256 * 2 ** 14))
    noisy = showers + np.random.default_rng(0).uniform(0, 2e-3, showers.shape)
    t.fit(noisy, e_inc)
    u, x, c = t.transform(noisy, e_inc)
    y = torch.as_tensor(np.concatenate([t.u_to_latent(u), x], 1), dtype=torch.float32)
    c = torch.as_tensor(c, dtype=torch.float32)
    cfg = calo_config("caloinn", "ds1-photons", {"flow": {"transforms": 2, "bins": 4, "hidden": 32, "layers": 1}})
    torch.manual_seed(0)
    flow = CaloSurrogate.build(cfg)["flow"]
    first, last = _train(lambda: -flow(c).log_prob(y).mean() / y.shape[1], flow.parameters(), steps=30)
    assert last < first - 0.05


def test_calodream_cli_trains_samples_reproducibly(tmp_path, ds2_showers):
    import yaml

    from hepgen.cli.main import main
    from hepgen.data.calo import ShowerSample, read_showers, write_showers
    from hepgen.data.geometry import load_geometry

    e_inc, showers = ds2_showers
    data = write_showers(ShowerSample(e_inc, showers, load_geometry("ds2")), tmp_path / "d.h5")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    assert main(["train", "calodream", "--data", str(data), "--config", str(cfg), "--max-epochs", "1",
                 "--out", str(run)]) == 0
    files = []
    for tag in ("a", "b"):
        out = tmp_path / f"{tag}.h5"
        assert main(["sample", str(run), "--num", "20", "--seed", "3", "--out", str(out)]) == 0
        files.append(out)
    assert files[0].read_bytes() == files[1].read_bytes()
    gen = read_showers(files[0])
    assert gen.showers.shape == (20, 6480) and np.isfinite(gen.showers).all() and (gen.showers >= 0).all()
    # the layer energies come from the energy network, so the total is finite and positive
    assert (gen.showers.sum(1) > 0).mean() > 0.5
    assert main(["sample", str(run), "--num", "5", "--solver", "bespoke", "--steps", "7", "--out",
                 str(tmp_path / "x.h5")]) != 0


def test_point_cloud_representation_round_trips(ds2_showers):
    from hepgen.data.geometry import load_geometry
    from hepgen.transforms.base import from_dict
    from hepgen.transforms.calo_points import CaloPointTransform, hits_to_showers, showers_to_hits

    geo = load_geometry("ds2")
    e_inc, showers = ds2_showers
    energy, bins, mask = showers_to_hits(showers, geo)
    assert (mask.sum(1) == (showers > 0).sum(1)).all()
    np.testing.assert_array_equal(hits_to_showers(energy, bins, mask, geo), showers)
    t = CaloPointTransform("ds2").fit(energy, bins, mask)
    x = t.transform(energy, bins, mask)
    # standardised: means zero up to the dequantisation drawn afresh in fit and transform
    assert np.abs(x[mask].mean(0)).max() < 5 / np.sqrt(mask.sum()) and np.abs(x[~mask]).max() == 0
    e_back, b_back = from_dict(t.to_dict()).inverse_transform(x, mask)
    np.testing.assert_array_equal(b_back[mask], bins[mask])  # dequantisation stays inside the bin
    np.testing.assert_allclose(e_back[mask], energy[mask], rtol=1e-4)


def test_linear_dequantisation_follows_the_neighbouring_yields():
    from hepgen.transforms.calo_points import LinearDequantiser

    deq = LinearDequantiser([1.0, 3.0, 3.0])  # rising from bin 0 to bin 1, flat after
    rng = np.random.default_rng(0)
    rising = deq.offsets(np.zeros(200_000, dtype=int), rng)
    flat = deq.offsets(np.ones(200_000, dtype=int), rng)
    # p(x) ~ 1 + 2x on [0, 1]: mean 7/12; flat: 1/2
    assert rising.mean() == pytest.approx(7 / 12, abs=3e-3)
    assert flat.mean() == pytest.approx(0.5, abs=3e-3)
    assert 0 <= rising.min() and rising.max() < 1


def test_collisions_move_to_free_neighbours_and_keep_energy():
    from hepgen.data.geometry import load_geometry
    from hepgen.transforms.calo_points import hits_to_showers, resolve_collisions, rotate_alpha

    geo = load_geometry("ds2")
    bins = np.array([[[5, 3, 2], [5, 3, 2], [5, 3, 2], [0, 0, 0]]])
    energy = np.array([[10.0, 5.0, 1.0, 0.0]])
    mask = np.array([[True, True, True, False]])
    moved = resolve_collisions(energy, bins, mask, geo.shape)
    np.testing.assert_array_equal(moved[0, 0], [5, 3, 2])  # the brightest hit keeps its cell
    cells = {tuple(b) for b in moved[0, :3]}
    assert len(cells) == 3 and all(abs(b[1] - 3) <= 1 and abs(b[2] - 2) <= 1 for b in moved[0, :3])
    showers = hits_to_showers(energy, moved, mask, geo)
    assert showers.sum() == pytest.approx(16.0) and (showers > 0).sum() == 3
    rotated = rotate_alpha(moved, 16, np.random.default_rng(1))
    assert len({tuple(b) for b in rotated[0, :3]}) == 3
    np.testing.assert_array_equal(rotated[0, :3, [0, 2]], moved[0, :3, [0, 2]])


def test_mdma_calo_learns(ds2_showers):
    from hepgen.data.geometry import load_geometry
    from hepgen.models.blocks.cfm import FlowMatching
    from hepgen.transforms.calo_points import CaloPointTransform, showers_to_hits

    e_inc, showers = ds2_showers
    energy, bins, mask = showers_to_hits(showers[:16], load_geometry("ds2"), max_hits=300)
    x = torch.as_tensor(CaloPointTransform("ds2").fit(energy, bins, mask).transform(energy, bins, mask))
    m = torch.as_tensor(mask)
    c = torch.as_tensor(np.log(e_inc[:16, None] / 1e3) / np.log(1e3), dtype=torch.float32)
    cfg = calo_config("mdma-calo", "ds2", {"network": {"l_dim": 16, "hidden": 32, "heads": 2, "num_blocks": 2}})
    torch.manual_seed(0)
    net = CaloSurrogate.build(cfg)["velocity"]
    fm = FlowMatching()
    first, last = _train(lambda: fm.loss(net, x, m, cond=c), net.parameters(), steps=40)
    assert last < 0.85 * first


def test_collisions_are_all_resolved_vectorised_and_keep_energy():
    """Many hits piled into few cells (an untrained model's output): after resolution no
    cell holds two hits while the shower has free cells, the brightest hit of every cell
    stays, and the binned energy is unchanged."""
    from hepgen.data.geometry import load_geometry
    from hepgen.transforms.calo_points import hits_to_showers, resolve_collisions

    geo = load_geometry("ds2")
    rng = np.random.default_rng(3)
    n_showers, m = 6, 3000
    bins = np.stack([rng.integers(10, 14, (n_showers, m)), rng.integers(0, 3, (n_showers, m)),
                     rng.integers(0, 2, (n_showers, m))], -1)
    bins[0, :] = [44, 15, 8]  # every hit of one shower in the last cell of the grid
    energy = rng.exponential(1.0, (n_showers, m))
    mask = np.arange(m)[None, :] < np.array([[3000], [2000], [1], [500], [2999], [10]])
    moved = resolve_collisions(energy, bins, mask, geo.shape)
    for i in range(n_showers):
        cells = {tuple(b) for b in moved[i][mask[i]]}
        assert len(cells) == mask[i].sum()
        assert ((moved[i] >= 0) & (moved[i] < np.array(geo.shape))).all()
    np.testing.assert_array_equal(moved[~mask], bins[~mask])
    before = hits_to_showers(energy, bins, mask, geo)
    after = hits_to_showers(energy, moved, mask, geo)
    np.testing.assert_allclose(after.sum(1), before.sum(1))
    # the brightest hit of every originally occupied cell keeps it
    for i in range(n_showers):
        e, b = energy[i][mask[i]], bins[i][mask[i]]
        mv = moved[i][mask[i]]
        for cell in {tuple(x) for x in b}:
            here = np.nonzero((b == cell).all(1))[0]
            np.testing.assert_array_equal(mv[here[np.argmax(e[here])]], cell)
    # hits with a free direct neighbour go there (as in the first collision test)
    one = resolve_collisions(np.array([[2.0, 1.0]]), np.array([[[3, 7, 4], [3, 7, 4]]]), np.ones((1, 2), bool),
                             geo.shape)
    np.testing.assert_array_equal(one[0, 1], [3, 6, 4])


def test_mean_field_sampling_pass_matches_the_training_pass_at_calorimeter_sizes():
    """The velocity of the point-cloud MDMA (gated, normed, condition fed to alpha without a
    per-hit concatenation) gives the same field with and without autograd: the sampling pass
    folds the attention into per-cloud products and writes into reused workspace buffers."""
    from hepgen.models.assemblies.calo import MDMACaloVelocity

    torch.manual_seed(0)
    net = MDMACaloVelocity(16, 32, 4, 2, 8, 6480)
    B, N = 5, 70
    mask = torch.arange(N)[None] < torch.tensor([70, 3, 40, 1, 69])[:, None]
    x = torch.randn(B, N, 4) * mask[..., None]
    c = torch.cat([net.time(torch.rand(B)), torch.rand(B, 1)], -1)
    ref, field = net.body(torch.cat([x, c[:, None].expand(-1, N, -1)], -1), mask, c)  # autograd on
    with torch.no_grad():
        fast, fast_field = net.body(x, mask, c, cond_in_input=True)
        again, _ = net.body(x, mask, c, cond_in_input=True)  # the workspace is reused
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_field, field, atol=1e-5, rtol=1e-5)
    assert fast.data_ptr() != again.data_ptr() and torch.equal(fast, again)


def test_warm_ema_forgets_the_initial_weights():
    """With a plain EMA (decay 0.999) the sampling network of a run of ~1000 steps is still
    37% its random initialisation: the cause of mdma-calo showers with 1.5x the energy."""
    from hepgen.training.ema import warm_ema

    net = nn.Linear(3, 2)
    ema = warm_ema(net, 0.999)
    with torch.no_grad():
        for _ in range(300):
            net.weight.fill_(1.0)
            net.bias.fill_(-1.0)
            ema.update_parameters(net)
    assert torch.allclose(ema.module.weight, torch.ones(2, 3), atol=0.05)
    assert torch.allclose(ema.module.bias, -torch.ones(2), atol=0.05)


def test_shower_size_model_reproduces_counts_and_response():
    from hepgen.transforms.calo_points import ShowerSizeModel

    rng = np.random.default_rng(0)
    e_inc = np.exp(rng.uniform(np.log(1e3), np.log(1e6), 20_000))
    x = np.log(e_inc)
    z = rng.standard_normal((2, len(x)))
    log_n = 2.0 + 0.5 * x + 0.03 * z[0]
    resp = 0.95 - 0.01 * (x - 7) - 0.03 * np.abs(z[1])  # skewed, falling with E_inc
    n = np.rint(np.exp(log_n)).astype(int)
    model = ShowerSizeModel.from_dict(ShowerSizeModel.fit(e_inc, n, resp * e_inc, 6480).to_dict())
    n_s, e_tot = model.sample(e_inc, np.random.default_rng(1))
    r_s = e_tot / e_inc
    for lo, hi in ((1e3, 1e4), (1e5, 1e6)):
        sel = (e_inc >= lo) & (e_inc < hi)
        assert np.median(r_s[sel]) == pytest.approx(np.median(resp[sel]), abs=3e-3)
        assert np.std(r_s[sel]) == pytest.approx(np.std(resp[sel]), rel=0.1)
        assert np.median(n_s[sel]) == pytest.approx(np.median(n[sel]), rel=0.01)
    assert r_s.max() <= resp.max() + 0.02  # quantile residuals: no Gaussian tail beyond the data


def test_calo_bench_extends_a_report_on_the_same_reference(tmp_path):
    import json

    from hepgen.bench.calo import _previous

    path = tmp_path / "calo_bench.json"
    recipes = {"hepgen": {"epochs": 10}, "calochallenge": {"epochs": 50, "hidden": [512, 512, 512]}}
    results = {"geometry": "ds2", "reference": "ref.h5", "num_showers": 10, "models": {}, "recipes": recipes}
    assert _previous(path, results) == {}
    path.write_text(json.dumps({**results, "models": {"a": 1}, "floor": {}}))
    assert _previous(path, results)["models"] == {"a": 1}
    assert _previous(path, {**results, "reference": "other.h5"}) == {}
    # rows measured with another classifier recipe (here the official width) are not mixed in
    other = {**recipes, "calochallenge": {"epochs": 50, "hidden": [2048, 2048, 2048]}}
    assert _previous(path, {**results, "recipes": other}) == {}


def test_caloinn_noise_stays_below_the_threshold_and_couplings_split_randomly():
    """Dequantisation noise up to the threshold leaked above the cut (7.7 % of generated
    DS1 hits); it is now a fraction of the threshold, read from the config, and every
    coupling of the INN splits the features by its own permutation (seed 002)."""
    from hepgen.errors import OptionError
    from hepgen.models.assemblies.calo import inn_flow
    from hepgen.training.calo import dequantise

    showers = np.zeros((50, 368))
    showers[:, ::7] = 5.0
    noisy = dequantise(showers, threshold=2e-3, noise=0.1, seed=0)
    added = noisy - showers
    assert added.min() > 0 and added.max() < 0.1 * 2e-3
    assert calo_config("caloinn", "ds1-photons")["training"]["noise"] == 0.1
    with pytest.raises(OptionError, match="noise"):
        dequantise(showers, 2e-3, 5.0, 0)
    orders = [t.order.tolist() for t in inn_flow(10, 4, 4, 8, 1, randperm=True).transform.transforms]
    assert len({tuple(o) for o in orders}) == 4  # each coupling splits differently
    halves = [t.order.tolist() for t in inn_flow(10, 4, 4, 8, 1).transform.transforms]
    assert len({tuple(o) for o in halves}) == 2  # the fixed split alternates two halves
    assert calo_config("caloinn", "ds1-photons")["training"]["schedule"] == "one-cycle"


def test_coupling_inn_is_invertible_with_random_splits_and_zukos_spline():
    """New CaloINN runs use true RQS couplings (half the work of a masked NSF block); the
    bin softmax is computed on a transposed view, which must not change the spline."""
    import torch
    from zuko.transforms import MonotonicRQSTransform

    from hepgen.models.assemblies.calo import inn_flow
    from hepgen.models.blocks.coupling import FastRQSTransform

    torch.manual_seed(0)
    w, h, d = torch.randn(4, 30, 8), torch.randn(4, 30, 8), torch.randn(4, 30, 7)
    x = 4 * torch.randn(4, 30)
    (ya, la), (yb, lb) = MonotonicRQSTransform(w, h, d).call_and_ladj(x), FastRQSTransform(w, h, d).call_and_ladj(x)
    torch.testing.assert_close(yb, ya, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lb, la, atol=1e-4, rtol=1e-4)
    assert calo_config("caloinn", "ds1-photons")["flow"]["coupling"] is True
    flow = inn_flow(12, 4, 6, 16, 1, coupling=True)
    masks = [tuple(t.mask.tolist()) for t in flow.transform.transforms]
    assert len(set(masks)) == 4 and all(sum(m) == 6 for m in masks)
    # every feature is transformed by some block, and the flow inverts exactly
    assert not np.any(np.all(np.array(masks), axis=0))
    c, x = torch.randn(64, 1), torch.randn(64, 12)
    with torch.no_grad():
        z = flow(c).transform(x)
        torch.testing.assert_close(flow(c).transform.inv(z), x, atol=1e-4, rtol=1e-4)
        assert torch.isfinite(flow(c).log_prob(x)).all()


# ----------------------------------------------------------------------------- VAE+INN
TINY_VAE = {"vae": {"latent": 8, "hidden": [64, 32]}, "flow": {"transforms": 2, "bins": 4, "hidden": 16, "layers": 1},
            "training": {"batch_size": 64, "lr": 1e-3}, "inn_training": {"batch_size": 64, "lr": 1e-3}}


@pytest.fixture(scope="module")
def ds1_photon_file(tmp_path_factory):
    from hepgen.data.calo import ShowerSample, write_showers
    from hepgen.data.geometry import load_geometry
    from hepgen.simulate.showers import simulate_chunk

    e_inc, showers = simulate_chunk("ds1-photons", 200, 8)
    return write_showers(ShowerSample(e_inc, showers, load_geometry("ds1-photons")),
                         tmp_path_factory.mktemp("vae") / "photons.h5")


def test_vae_loss_is_the_bernoulli_likelihood_and_the_vae_learns_to_reconstruct():
    """Eq. 4.8 of seed 002 term by term, then: a few steps on 64 DS1-photon showers
    reconstruct the layer fractions measurably better than the initial network."""
    from hepgen.models.blocks.vae import ConditionalVAE, beta_vae_loss
    from hepgen.simulate.showers import simulate_chunk
    from hepgen.transforms.calo import CaloShowerTransform

    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(4, 6, generator=g), torch.rand(4, 6, generator=g)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    lam = torch.sigmoid(logits)
    loss, recon, kl = beta_vae_loss(logits, target, mu, logvar, beta=0.5)
    expected = -(target * lam.log() + (1 - target) * (1 - lam).log()).sum(1).mean()
    torch.testing.assert_close(recon, expected)
    torch.testing.assert_close(kl, (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).sum(1).mean())
    torch.testing.assert_close(loss, recon + 0.5 * kl)

    e_inc, showers = simulate_chunk("ds1-photons", 64, 2)
    t = CaloShowerTransform("ds1-photons", alpha=1e-6, threshold=2e-3, e_range=(256, 256 * 2 ** 14)).fit(showers, e_inc)
    u, x, c = t.transform(showers, e_inc)
    y = t.fractions(showers)
    assert y.min() >= 0 and y.max() <= 1  # the Bernoulli target
    np.testing.assert_allclose(t.x_from_fractions(y), x, atol=1e-6)  # the sampler's way back
    f = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    x, y, cond = f(x), f(y), torch.cat([f(c), f(t.u_to_latent(u))], 1)
    torch.manual_seed(0)
    vae = ConditionalVAE(368, cond.shape[1], latent=16, hidden=[128, 64])

    def reconstruction():
        with torch.no_grad():
            mu, _ = vae.encode(x, cond)
            return beta_vae_loss(vae.decode_logits(mu, cond), y, mu, torch.zeros_like(mu), 0.0)[1].item()

    before = reconstruction()
    def loss():
        logits, mu, logvar = vae(x, cond)
        return beta_vae_loss(logits, y, mu, logvar, beta=1e-9)[0]

    _train(loss, vae.parameters(), steps=60)
    assert reconstruction() < 0.8 * before


def test_caloinn_vae_trains_saves_loads_and_samples_reproducibly(tmp_path, ds1_photon_file):
    import yaml

    from hepgen.cli.main import main
    from hepgen.data.calo import read_showers
    from hepgen.models.registry import load_model

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY_VAE))
    run = tmp_path / "run"
    assert main(["train", "caloinn-vae", "--data", str(ds1_photon_file), "--config", str(cfg), "--max-epochs", "2",
                 "--out", str(run), "--no-progress"]) == 0
    assert (run / "checkpoints" / "vae.ckpt").exists() and (run / "checkpoints" / "inn.ckpt").exists()
    model = load_model(run)
    assert model.networks["vae"].latent_std.ne(1).any()  # the latent statistics were saved
    files = []
    for tag in ("a", "b"):
        out = tmp_path / f"{tag}.h5"
        assert main(["sample", str(run), "--num", "30", "--seed", "3", "--out", str(out)]) == 0
        files.append(out)
    assert files[0].read_bytes() == files[1].read_bytes()
    gen = read_showers(files[0]).showers
    threshold = model.transform.threshold
    assert gen.shape == (30, 368) and np.isfinite(gen).all() and (gen >= 0).all()
    assert threshold > 0 and ((gen == 0) | (gen >= threshold)).all()  # nothing below the recorded minimum
    assert (gen.sum(1) > 0).mean() > 0.5
    other = model.sample(30, seed=4, progress=False).showers
    assert not np.array_equal(other, gen)
    # bad input: one clear line, non-zero exit
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"vae": {"latent": 0}}))
    assert main(["train", "caloinn-vae", "--data", str(ds1_photon_file), "--config", str(bad), "--max-epochs", "1",
                 "--out", str(tmp_path / "bad_run"), "--no-progress"]) == 2
    assert main(["train", "caloinn-vae", "--data", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "r2")]) == 2


def test_caloinn_vae_resumes_exactly_after_a_kill(tmp_path, ds1_photon_file, monkeypatch):
    """Killed in the second epoch of the VAE stage, the resumed run continues the VAE
    exactly and then trains the same INN as the uninterrupted run."""
    from lightning import Callback

    import hepgen.training.fit as fit
    from hepgen.models.registry import load_model
    from hepgen.training.calo import train_calo_model
    from hepgen.training.resume import resume_callbacks

    class Crash(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 1:
                raise RuntimeError("killed")

    def run(out, crash=False, resume=False):
        monkeypatch.setattr(fit, "resume_callbacks",
                            (lambda t: [*resume_callbacks(t), Crash()]) if crash else resume_callbacks)
        return train_calo_model("caloinn-vae", ds1_photon_file, out, max_epochs=2, progress=False, override=TINY_VAE,
                                resume=resume)

    whole = run(tmp_path / "whole")
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "killed", crash=True)
    assert not (tmp_path / "killed" / "checkpoints" / "inn.ckpt").exists()
    resumed = run(tmp_path / "killed", resume=True)
    for stage in ("vae", "inn"):
        a = torch.load(whole / "checkpoints" / f"{stage}.ckpt", weights_only=False)["state_dict"]
        b = torch.load(resumed / "checkpoints" / f"{stage}.ckpt", weights_only=False)["state_dict"]
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=f"{stage}: {key}")
    np.testing.assert_array_equal(load_model(whole).sample(20, seed=1, progress=False).showers,
                                  load_model(resumed).sample(20, seed=1, progress=False).showers)


def test_latent_calodream_trains_through_its_autoencoder_and_samples(tmp_path, ds2_showers):
    """laViT (issue 12 item 3): the conv VAE's latent of DS2 is 2 x 15 x 9 x 9 (Table B.6),
    its reconstruction loss falls, the shape CFM works on the latent and sampling decodes
    to reproducible showers of the full grid."""
    import csv

    import yaml

    from hepgen.cli.main import main
    from hepgen.data.calo import ShowerSample, read_showers, write_showers
    from hepgen.data.geometry import load_geometry
    from hepgen.errors import OptionError
    from hepgen.models.assemblies.calo import CaloSurrogate

    full = calo_config("calodream", "ds2", {"latent": {}, "shape": {"patch": [6, 1, 1]}})
    assert CaloSurrogate.build(full)["ae"].latent_shape == (2, 15, 9, 9)
    with pytest.raises(OptionError, match="latent grid"):
        calo_config("calodream", "ds2", {"latent": {}, "shape": {"patch": [3, 16, 1]}})
    e_inc, showers = ds2_showers
    data = write_showers(ShowerSample(e_inc, showers, load_geometry("ds2")), tmp_path / "d.h5")
    tiny = {**TINY, "shape": {"patch": [6, 3, 3], "dim": 32, "depth": 1, "heads": 2, "cond_dim": 32},
            "latent": {"channels": [8, 8, 2], "training": {"batch_size": 16, "epochs": 6, "lr": 3e-3}}}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny))
    run = tmp_path / "run"
    assert main(["train", "calodream", "--data", str(data), "--config", str(cfg), "--max-epochs", "1",
                 "--out", str(run)]) == 0
    recon = [float(r["reconstruction"]) for r in csv.DictReader(open(run / "logs" / "ae" / "metrics.csv"))
             if r.get("reconstruction")]
    assert len(recon) >= 4 and np.mean(recon[-2:]) < np.mean(recon[:2]), recon
    files = []
    for tag in ("a", "b"):
        files.append(tmp_path / f"{tag}.h5")
        assert main(["sample", str(run), "--num", "12", "--seed", "3", "--out", str(files[-1])]) == 0
    assert files[0].read_bytes() == files[1].read_bytes()
    gen = read_showers(files[0])
    assert gen.showers.shape == (12, 6480) and np.isfinite(gen.showers).all() and (gen.showers >= 0).all()
    assert set(CaloSurrogate.load(run).networks) == {"energy", "ae", "shape"}


def test_shipped_caloinn_ds1_pions_samples_reproducibly(tmp_path):
    """The shipped CaloINN on DS1 pions samples without training: same seed, same bytes;
    (N, 533) non-negative voxels; a deposited energy of about the incident energy (the
    stand-in's pion response is 0.7-1.0 in the median per energy), and another seed differs."""
    from hepgen.cli.main import main
    from hepgen.data.calo import read_showers
    from hepgen.shipped import shipped_models

    assert "caloinn/ds1-pions" in shipped_models()
    files = []
    for tag, seed in (("a", "4"), ("b", "4"), ("c", "5")):
        files.append(tmp_path / f"{tag}.h5")
        assert main(["sample", "caloinn/ds1-pions", "--num", "40", "--seed", seed, "--out", str(files[-1])]) == 0
    assert files[0].read_bytes() == files[1].read_bytes()
    a, c = read_showers(files[0]), read_showers(files[2])
    assert not np.array_equal(a.showers, c.showers)
    assert a.showers.shape == (40, 533) and np.isfinite(a.showers).all() and (a.showers >= 0).all()
    e_inc = a.incident_energies[:, 0]
    assert 256.0 * 0.99 <= e_inc.min() and e_inc.max() <= 4.2e6 * 1.01
    response = a.showers.sum(1) / e_inc
    assert 0.5 < np.median(response) < 1.3
    assert np.mean((response > 0.2) & (response < 3.0)) >= 0.9
