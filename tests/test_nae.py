"""Jet images and the normalised autoencoder (issue 14 item 4; seed 002 L1397, L1409-1462)."""

import json

import h5py
import numpy as np
import pytest

from conftest import expect_one_error_line
from hepgen.cli.main import main
from hepgen.data.jetnet import JetSample, write_jets
from hepgen.transforms.images import JetImage


def jet(rows):
    """One jet (1, P, 4) of (eta, phi, ptrel) rows, mask 1."""
    pf = np.array([[*r, 1.0] for r in rows], dtype=np.float32)[None]
    return pf


def test_image_pixels_without_alignment_exact():
    # pixel (0.029, 0.035), 40 x 40: col = floor(eta / 0.029 + 20), row = floor(phi / 0.035 + 20)
    pf = jet([(0.01, 0.02, 0.5), (-0.1, 0.3, 0.25), (0.2, -0.2, 0.15), (0.9, 0.0, 0.1)])  # the last is outside
    img = JetImage(centre=False, rotate=False, flip=False, sigma=0).transform(pf)[0]
    assert img.shape == (40, 40) and img.dtype == np.float32
    expected = np.zeros((40, 40))
    expected[20, 20] = 0.5  # floor(0.345 + 20), floor(0.571 + 20)
    expected[28, 16] = 0.25  # floor(-3.45 + 20) = 16, floor(8.57 + 20) = 28
    expected[14, 26] = 0.15  # floor(6.90 + 20) = 26, floor(-5.71 + 20) = 14
    np.testing.assert_allclose(img, expected, atol=1e-7)  # normalised by the total pT (1.0, out-of-frame included)


def test_image_centring_rotation_and_flips_on_a_hand_made_jet():
    # centroid (0.06, 0); the principal axis lies along eta, so the jet turns by 90 degrees
    # (eta, phi) -> (-phi, eta); then 0.6 of the pT lies at eta >= 0 -> mirrored in eta; the
    # lower half holds 0.6 already -> no mirror in phi.
    pf = jet([(0.3, 0.0, 0.4), (-0.3, 0.0, 0.2), (0.0, 0.05, 0.2), (0.0, -0.05, 0.2)])
    t = JetImage(size=(41, 41), sigma=0)  # odd size: the axis falls on a pixel centre
    eta, phi, pt = t.align(pf)
    np.testing.assert_allclose(eta[0], [0.0, 0.0, 0.05, -0.05], atol=1e-12)
    np.testing.assert_allclose(phi[0], [0.24, -0.36, -0.06, -0.06], atol=1e-12)
    img = t.transform(pf)[0]
    expected = np.zeros((41, 41))
    # col = floor(eta / 0.029 + 20.5), row = floor(phi / 0.035 + 20.5)
    expected[27, 20] = 0.4
    expected[10, 20] = 0.2
    expected[18, 22] = 0.2
    expected[18, 18] = 0.2
    np.testing.assert_allclose(img, expected, atol=1e-7)
    # the seed's 40 x 40 image with the Gaussian filter keeps the pT (away from the edges)
    # and puts the harder halves at the lower left
    full = JetImage().transform(pf)[0]
    assert full.sum() == pytest.approx(1.0, abs=1e-3)
    assert full[:20].sum() > full[20:].sum() and full[:, :21].sum() > full[:, 21:].sum()


def synthetic_jets(n, prongs, seed):
    """Toy jets: ``prongs`` clusters of 10 particles each at random positions, JetNet layout."""
    rng = np.random.default_rng(seed)
    pf = np.zeros((n, 10 * prongs, 4), np.float32)
    for i in range(n):
        centres = rng.normal(0, 0.2, (prongs, 2))
        share = rng.dirichlet(np.ones(prongs) * 3)
        parts = []
        for c, s in zip(centres, share):
            pt = s * rng.dirichlet(np.ones(10))
            parts.append(np.c_[c + rng.normal(0, 0.02, (10, 2)), pt])
        p = np.concatenate(parts)
        p = p[np.argsort(-p[:, 2])]
        pf[i, :, :3] = p
        pf[i, :, 3] = 1
    jf = np.c_[np.full(n, 600.0), np.zeros(n), np.full(n, 50.0), np.full(n, 10 * prongs)].astype(np.float32)
    return JetSample(pf, jf, jet_type="q")


TINY = {"pretrain": {"batch_size": 32, "iterations": 100, "lr": 3.0e-3},
        "nae": {"batch_size": 16, "iterations": 8, "lr": 1.0e-3, "checkpoint_every": 4, "buffer_size": 64,
                "latent_chain": {"steps": 3}, "data_chain": {"steps": 3}}}


def test_nae_trains_with_decreasing_losses():
    import torch

    from hepgen.models.blocks.langevin import ReplayBuffer
    from hepgen.training.nae import _chains, energies, jet_images, nae_config, nae_loss, negative_samples, train_nae

    cfg = nae_config(TINY)
    images = jet_images(synthetic_jets(128, 1, 0).particle_features, cfg["image"])
    res = train_nae(images, cfg)
    # phase 1: the reconstruction MSE falls
    mse = np.array([r[1] for r in res.pretrain_log])
    assert len(mse) == 100 and mse[-5:].mean() < 0.3 * mse[:5].mean()
    # phase 2 ran with finite, positive energies, logged two checkpoints and selected a stable one
    assert len(res.nae_log) == 8 and [c["iteration"] for c in res.checkpoints] == [4, 8]
    assert all(r[2] > 0 and r[3] > 0 and np.isfinite(r[1]) for r in res.nae_log)
    assert res.selected is not None and res.selected["stable"]
    assert min(abs(c["loss"]) for c in res.checkpoints) == abs(res.selected["loss"])
    e_ae, e_nae = energies(res.ae, images[:50]), energies(res.nae, images[:50])
    assert np.isfinite(e_nae).all() and not np.allclose(e_ae, e_nae)
    # NAE steps on the pre-trained AE with fixed OMI negative samples (decoded latent chains,
    # refined in image space) lower the objective: E(x-) rises, and faster than E(x+)
    model = res.ae.train()
    gen = torch.Generator().manual_seed(1)
    x_pos = torch.as_tensor(images[:32])
    x_neg, stats = negative_samples(model, 32, ReplayBuffer(64), *_chains(cfg), gen)
    assert x_neg.shape == x_pos.shape and float(x_neg.min()) >= 0 and float(x_neg.max()) <= 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)  # the thesis' NAE learning rate
    history = []
    for _ in range(10):
        total, loss, e_pos, e_neg = nae_loss(model, x_pos, x_neg)
        history.append((total.item(), e_pos.mean().item(), e_neg.mean().item()))
        opt.zero_grad()
        total.backward()
        opt.step()
    first, last = history[0], history[-1]
    assert last[0] < first[0] and last[2] > first[2] and last[2] - last[1] > first[2] - first[1]


def test_langevin_metropolis_samples_a_gaussian_and_the_buffer_replays():
    import torch

    from hepgen.models.blocks.langevin import ChainSettings, ReplayBuffer, langevin

    # E(x) = |x|^2 / 2 at T = sigma^2 / (2 lambda) = 0.5: exact samples have variance T
    chain = ChainSettings(steps=200, step_size=0.1, noise=0.1 ** 0.5, metropolis=True)
    gen = torch.Generator().manual_seed(0)
    x, stats = langevin(lambda v: 0.5 * v.pow(2).sum(1), torch.full((4000, 2), 3.0), chain, gen)
    assert chain.temperature == pytest.approx(0.5)
    assert float(x.var(0).mean()) == pytest.approx(0.5, rel=0.1) and abs(float(x.mean())) < 0.05
    assert 0.5 < stats["acceptance"] < 1.0 and stats["energy_end"] < stats["energy_start"]
    buf = ReplayBuffer(size=5, replay_ratio=1.0)
    buf.push(torch.arange(8.0).view(4, 2))
    buf.push(torch.full((3, 2), -1.0))  # fills the fifth slot, then overwrites the two oldest
    assert len(buf) == 5 and (buf.states[:2] == -1).all() and (buf.states[4] == -1).all()
    draws = buf.draw(50, lambda k: torch.full((k, 2), 99.0), gen)
    assert not (draws == 99).any()  # replay ratio 1: all from the buffer


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import yaml

    d = tmp_path_factory.mktemp("nae")
    write_jets(synthetic_jets(200, 1, 1), d / "bkg.h5")
    write_jets(synthetic_jets(100, 1, 2), d / "test_bkg.h5")
    write_jets(synthetic_jets(100, 3, 3), d / "test_sig.h5")
    (d / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    assert main(["anomaly", "train", "nae", "--data", str(d / "bkg.h5"), "--data", str(d / "test_bkg.h5"),
                 "--config", str(d / "tiny.yaml"), "--no-progress", "--out", str(d / "run")]) == 0
    return d


def test_nae_cli_train_score_evaluate(tiny_run, capsys):
    d = tiny_run
    meta = json.loads((d / "run" / "run.json").read_text())
    assert meta["method"] == "nae" and meta["jets"] == 300 and meta["nae_iterations"] == 8
    assert {"nae.pt", "ae.pt", "pretrain_losses.csv", "nae_losses.csv", "checkpoints.csv", "loss.png"} <= {
        p.name for p in (d / "run").iterdir()}
    scores = d / "scores.h5"
    assert main(["anomaly", "score", str(d / "run"), "--data", str(d / "test_sig.h5"), "--out", str(scores)]) == 0
    with h5py.File(scores) as f:
        s, ae = f["score"][:], f["score_ae"][:]
        assert s.shape == ae.shape == (100,) and np.all(s > 0) and np.all(ae > 0) and f.attrs["method"] == "nae"
        assert f["in_region"][:].all()
    from hepgen.data.jetnet import read_jets
    from hepgen.training.nae import energies, jet_images, load_model

    images = jet_images(read_jets(d / "test_sig.h5").particle_features, meta["config"]["image"])
    np.testing.assert_allclose(s, energies(load_model(d / "run" / "nae.pt"), images), rtol=1e-6)
    rep = d / "report"
    assert main(["evaluate", "anomaly", "--run", str(d / "run"), "--background", str(d / "test_bkg.h5"),
                 "--signal", str(d / "test_sig.h5"), "--bootstrap", "3", "--out", str(rep)]) == 0
    m = json.loads((rep / "metrics.json").read_text())
    base = json.loads((rep / "baseline_metrics.json").read_text())
    assert set(m) == {"auc", "sic_max", "inv_eps_b_at_0.2", "inv_eps_b_at_0.3"} and set(base) == {"ae"}
    assert 0 <= m["auc"]["value"] <= 1 and 0 <= base["ae"]["auc"]["value"] <= 1
    assert "pre-trained" not in capsys.readouterr().err
    rep2 = d / "report_ae"
    assert main(["evaluate", "anomaly", "--run", str(d / "run"), "--background", str(d / "test_bkg.h5"),
                 "--signal", str(d / "test_sig.h5"), "--bootstrap", "0", "--score", "ae", "--out", str(rep2)]) == 0
    m2 = json.loads((rep2 / "metrics.json").read_text())
    assert m2["auc"]["value"] == pytest.approx(base["ae"]["auc"]["value"])
    # --pretrained: the NAE phase starts from that run's AE, which the new run keeps as its baseline
    assert main(["anomaly", "train", "nae", "--data", str(d / "bkg.h5"), "--config", str(d / "tiny.yaml"),
                 "--pretrained", str(d / "run"), "--no-progress", "--out", str(d / "run2")]) == 0
    meta2 = json.loads((d / "run2" / "run.json").read_text())
    assert meta2["pretrain_iterations"] == 0 and meta2["nae_iterations"] == 8
    np.testing.assert_allclose(energies(load_model(d / "run2" / "ae.pt"), images),
                               energies(load_model(d / "run" / "ae.pt"), images))


@pytest.mark.parametrize("argv, fragment", [
    (["anomaly", "train", "nae", "--data", "{tmp}/dijet.h5", "--out", "{tmp}/r"], "missing dataset(s)"),
    (["anomaly", "train", "nae", "--data", "{tmp}/missing.h5", "--out", "{tmp}/r"], "missing.h5: no such file"),
    (["anomaly", "train", "nae", "--data", "{tmp}/bkg.h5", "--config", "{tmp}/bad.yaml", "--out", "{tmp}/r"],
     "unknown NAE section"),
    (["anomaly", "train", "nae", "--data", "{tmp}/bkg.h5", "--max-time", "-1", "--out", "{tmp}/r"], "--max-time"),
    (["anomaly", "score", "{run}", "--data", "{tmp}/dijet.h5", "--out", "{tmp}/s.h5"], "missing dataset(s)"),
    (["evaluate", "anomaly", "--run", "{run}", "--background", "{tmp}/bkg.h5", "--signal", "{tmp}/bkg.h5",
      "--score", "clr", "--out", "{tmp}/rep"], "--score clr"),
    (["anomaly", "train", "nae", "--data", "{tmp}/bkg.h5", "--pretrained", "{tmp}", "--out", "{tmp}/r"],
     "not an anomaly run"),
])
def test_nae_bad_input_gives_one_error_line(tiny_run, tmp_path, capsys, argv, fragment):
    write_jets(synthetic_jets(20, 1, 4), tmp_path / "bkg.h5")
    with h5py.File(tmp_path / "dijet.h5", "w") as f:
        f["features"] = np.zeros((3, 5), np.float32)
    (tmp_path / "bad.yaml").write_text("optimiser: {lr: 1}\n")
    expect_one_error_line(capsys, [a.format(tmp=tmp_path, run=tiny_run / "run") for a in argv], fragment)
    assert not (tmp_path / "r").exists() and not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("input_scale, learns", [(None, True), (1.0, False)])
def test_pretrained_ae_reconstructs_each_jet_not_the_mean_image(input_scale, learns):
    # Images sum to 1 (pixels ~ 1/1600): read unscaled, the encoder's output is its biases,
    # every jet gets the same latent point and the "AE" is the mean image (measured on 8k
    # Pythia QCD jets: latent std 3e-4, the same MSE as the mean-image template). With the
    # input scaled to a mean pixel of 1 the AE beats the mean image and its reconstructions
    # follow the jets.
    import torch

    from hepgen.models.assemblies.anomaly import NormalizedAutoencoder
    from hepgen.training.nae import jet_images, nae_config, pretrain

    cfg = nae_config({"pretrain": {"batch_size": 32, "iterations": 150, "lr": 3.0e-3}})
    images = torch.as_tensor(jet_images(synthetic_jets(128, 2, 0).particle_features, cfg["image"]))
    torch.manual_seed(0)
    model = NormalizedAutoencoder(input_scale=input_scale)
    pretrain(model, images, cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        e_ae = float(model.energy(images).mean())
        e_mean_image = float((images - images.mean(0)).pow(2).flatten(1).mean(1).mean())
        spread = float(model(images).std(0).mean() / images.std(0).mean())
    if learns:
        assert e_ae < 0.6 * e_mean_image and spread > 0.3
    else:
        assert e_ae > 0.9 * e_mean_image and spread < 0.05


@pytest.fixture(scope="module")
def toy_ae():
    """An AE pre-trained on 128 two-prong toy jets (the thesis network, ~20 s), and the images."""
    import torch

    from hepgen.models.assemblies.anomaly import NormalizedAutoencoder
    from hepgen.training.nae import jet_images, nae_config, pretrain

    cfg = nae_config({"pretrain": {"batch_size": 32, "iterations": 150, "lr": 3.0e-3}})
    images = torch.as_tensor(jet_images(synthetic_jets(128, 2, 0).particle_features, cfg["image"]))
    torch.manual_seed(0)
    model = NormalizedAutoencoder()
    pretrain(model, images, cfg, torch.Generator().manual_seed(0))
    return model.eval(), images


def _thesis_table_chains(energy_unit):
    """Table 5.1's chains as absolute numbers (the settings before the chains ran on E / E_data)."""
    return {"nae": {"energy_unit": energy_unit,
                    "latent_chain": {"step_size": 100.0, "noise": 1.0e-2, "clip_grad": None},
                    "data_chain": {"step_size": 50.0, "noise": 1.0e-4, "metropolis": True, "anneal": True}}}


def test_latent_chain_moves_to_low_energy_and_negatives_carry_the_data_energy(toy_ae):
    # Jet-image energies are ~1e-6 (pixels ~1/1600). With Table 5.1's absolute lambda_z = 100,
    # sigma_z = 1e-2 the latent drift |lambda grad H| was ~1e-3 of the noise and T_z = 5e-7
    # above the whole H range: the chain accepted 99.99 % and its end points were uniform on
    # the sphere (Pythia top AE: H 3.67e-8 -> 3.52e-8 in 10 steps). The image chain at
    # T_x = 1e-10 left the negatives at the decoder's fixed points, E(x-) ~ 0.003 E(x+),
    # where the NAE loss has no gradient (zero residual). The chains now run on E / E_data.
    import torch

    from hepgen.models.blocks.langevin import ReplayBuffer
    from hepgen.training.nae import _chains, energy_unit, nae_config, negative_samples

    model, images = toy_ae
    results = {}
    for name, cfg in (("data unit", nae_config()), ("absolute table", nae_config(_thesis_table_chains(1.0)))):
        unit = energy_unit(model, images, cfg)
        x, stats = negative_samples(model, 64, ReplayBuffer(128), *_chains(cfg), torch.Generator().manual_seed(1), unit)
        with torch.no_grad():
            e_neg = float(model.energy(x).mean())
        results[name] = (stats, e_neg)
    e_data = energy_unit(model, images, nae_config())
    stats, e_neg = results["data unit"]
    # the latent chain follows the energy down (toy: H falls ~60x) and rejects some uphill moves
    assert stats["latent_energy_end"] < 0.2 * stats["latent_energy_start"] and stats["latent_acceptance"] < 0.98
    # the negatives lie near the low-energy decoder images, with an energy like the data's
    assert 0.3 * e_data < e_neg < 3 * e_data
    stats, e_neg = results["absolute table"]
    assert stats["latent_energy_end"] > 0.8 * stats["latent_energy_start"] and stats["latent_acceptance"] > 0.99
    assert e_neg < 0.3 * e_data


def test_energy_unit_from_data_or_number(toy_ae):
    import torch

    from hepgen.errors import OptionError
    from hepgen.training.nae import energy_unit, nae_config

    model, images = toy_ae
    with torch.no_grad():
        mean = float(model.energy(images).mean())
    assert energy_unit(model, images, nae_config()) == pytest.approx(mean, rel=1e-5)
    assert energy_unit(model, images, nae_config({"nae": {"energy_unit": 2.5e-6}})) == 2.5e-6
    for bad in ("median", 0, -1.0, True):
        with pytest.raises(OptionError, match="energy_unit"):
            nae_config({"nae": {"energy_unit": bad}})
