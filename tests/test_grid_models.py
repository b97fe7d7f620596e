"""Models on 3D grids (issue 13 part 1): gan-3d, wgan-3d, bib-ae with the Post Processor."""

import csv

import numpy as np
import pytest
import torch
import yaml

TINY = {"network": {"latent": 8, "channels": 8}, "training": {"batch_size": 16, "lr": 1e-3, "lr_gen": 1e-3}}
TINY_BIB = {"network": {"latent": 4, "noise": 4, "channels": 8, "pp_channels": 4},
            "training": {"batch_size": 16, "lr": 1e-3, "pp_epochs": 2, "pp_mse_epochs": 1}}


@pytest.fixture(scope="module")
def grid_files(tmp_path_factory):
    from hepgen.cli.main import main

    folder = tmp_path_factory.mktemp("grids")
    files = {}
    for geo in ("ild-photons", "ild-pions"):
        files[geo] = folder / f"{geo}.h5"
        assert main(["data", "calo", "--geometry", geo, "--num-showers", "64", "--seed", "4", "--out",
                     str(files[geo]), "--workers", "1", "--no-progress"]) == 0
    return files


def _losses(run, key):
    return [float(r[key]) for r in csv.DictReader(open(run / "logs" / "grid" / "metrics.csv")) if r.get(key)]


@pytest.mark.parametrize("model,geo,key", [("gan-3d", "ild-photons", "critic_loss"),
                                           ("wgan-3d", "ild-pions", "constrainer_loss"),
                                           ("bib-ae", "ild-photons", "difference_critic"),
                                           ("bib-ae", "ild-pions", "difference_critic")])
def test_grid_models_train_and_sample(model, geo, key, grid_files, tmp_path):
    from hepgen.cli.main import main
    from hepgen.data.calo import read_showers

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY_BIB if model == "bib-ae" else TINY))
    run = tmp_path / "run"
    assert main(["train", model, "--data", str(grid_files[geo]), "--config", str(cfg), "--max-epochs", "4",
                 "--out", str(run), "--no-progress"]) == 0
    losses = _losses(run, key)
    assert len(losses) >= 3 and np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    files = []
    for tag in ("a", "b"):
        files.append(tmp_path / f"{tag}.h5")
        assert main(["sample", str(run), "--num", "12", "--seed", "5", "--out", str(files[-1])]) == 0
    a, b = (read_showers(f) for f in files)
    np.testing.assert_array_equal(a.showers, b.showers)
    assert a.geometry.name == geo and (a.showers >= 0).all() and np.isfinite(a.showers).all()
    if model == "bib-ae":
        assert _losses(run, "pp_loss")  # the Post Processor trained after the BIB-AE's epochs
        latents = np.load(run / "latents.npy")
        assert latents.shape == (64, TINY_BIB["network"]["latent"] + 1)  # with the energy label
    if geo == "ild-pions" and model == "bib-ae":  # the ch. 7 refinements were on
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert saved["network"]["minibatch"] and saved["training"]["resetting_critic"]


def test_post_processor_starts_as_the_identity_and_the_sorted_mmd_sees_the_spectrum():
    from hepgen.models.assemblies.grids import PostProcessor, sorted_kernel_mmd

    x = torch.rand(3, 6, 5, 5) * (torch.rand(3, 6, 5, 5) < 0.3)
    pp = PostProcessor(8)
    torch.testing.assert_close(pp(x, torch.rand(3, 1)), x)
    torch.nn.init.constant_(pp.net[-1].bias, 0.3)  # a per-cell offset: hits move, empty cells stay empty
    out = pp(x, torch.rand(3, 1))
    assert (out[x == 0] == 0).all() and torch.allclose(out[x > 0], x[x > 0] + 0.3)
    real = torch.rand(8, 400) * 0.5
    assert sorted_kernel_mmd(real, real) == pytest.approx(0.0, abs=1e-6)
    assert sorted_kernel_mmd(real, real * 1.5) > sorted_kernel_mmd(real, real * 1.05) > 0
    # the seed's per-shower kernel on MeV (width 1 / sqrt(2 alpha) = 0.05 MeV): a MIP peak
    # (0.2 MeV) moved by 0.1 MeV is seen, one moved by 1 keV hardly
    mip = 0.2 + 0.01 * torch.randn(4, 400)
    assert sorted_kernel_mmd(mip, mip + 0.1, top=400) > 0.5
    assert sorted_kernel_mmd(mip, mip + 0.001, top=400) < 0.01


def test_difference_critic_sees_reconstructions_that_deposit_too_much():
    """The BIB-AE's combined critic took log(1 + max(x - x', 0)) of the difference, so a
    decoder that put a few MeV in every cell (x - x' < 0 there) looked perfect to it: the
    shipped placeholder did exactly that (~250 GeV visible per shower). Both signs of the
    difference now reach the critic, and the fake pair carries the reconstruction x'."""
    from hepgen.models.assemblies.grids import GridCritic

    torch.manual_seed(0)
    critic = GridCritic((4, 5, 5), 8, difference=True)
    x = torch.rand(3, 4, 5, 5) * (torch.rand(3, 4, 5, 5) < 0.3)
    c = torch.rand(3, 1)
    perfect = critic(torch.stack([x, torch.zeros_like(x)], 1), c)
    over = critic(torch.stack([x, -torch.ones_like(x)], 1), c)  # x' = x + 1 MeV everywhere
    under = critic(torch.stack([x, torch.ones_like(x)], 1), c)
    assert (perfect - over).abs().min() > 1e-4 and (over - under).abs().min() > 1e-4
    recon = critic(torch.stack([x + 1, torch.zeros_like(x)], 1), c)  # the shower channel is seen too
    assert (perfect - recon).abs().min() > 1e-4


def test_bibae_defaults_follow_the_seeds_appendix():
    from hepgen.models.assemblies.grids import grid_config

    photons = grid_config("bib-ae", "ild-photons")["training"]
    assert (photons["lr"], photons["lr_latent_critic"], photons["lr_decay"], photons["critic_steps"]) == \
        (5e-4, 2e-3, 0.95, 5)
    assert (photons["latent_adv"], photons["kld"], photons["mmd"], photons["pp_mmd"]) == (100.0, 0.05, 100.0, 5.0)
    pions = grid_config("bib-ae", "ild-pions")["training"]
    assert (pions["lr"], pions["lr_decay"], pions["kld"], pions["mmd_alpha"], pions["mmd_alpha2"]) == \
        (5e-5, 0.97, 0.01, 40.0, 4.0)


def test_grid_generator_starts_alive_for_every_seed():
    """With torch's default bias of the last convolution (+-0.1, ten times the spread of its
    output at initialisation) the generator built under seed 0 had every cell below zero --
    dead behind the output ReLU, so the shipped wgan-3d only ever made empty showers -- and
    under seeds 1 and 2 every cell filled. Now about half the cells start above zero."""
    from hepgen.models.assemblies.grids import GridGenerator

    for seed in range(4):
        torch.manual_seed(seed)
        g = GridGenerator((30, 30, 30), latent=16, channels=8)
        z, c = torch.randn(8, 16), torch.full((8, 1), 0.5)
        with torch.no_grad():
            h = torch.nn.functional.leaky_relu(g.fc(torch.cat([z * c, c], 1)), 0.2)
            h = g.net(h.view(8, g.channels, *g.base))
        assert 0.2 < (h > 0).float().mean() < 0.8, seed


def test_grid_models_need_a_grid_geometry():
    from hepgen.errors import OptionError
    from hepgen.models.assemblies.grids import grid_config

    with pytest.raises(OptionError, match="grid geometry"):
        grid_config("wgan-3d", "ds2")
    assert grid_config("bib-ae", "ild-pions")["sampler"]["latent"] == "kde"


def test_pion_bibae_refinements():
    """Seed 001 ch. 7: minibatch features see the batch's composition, the resetting critic
    is re-initialised, the joint (latent, energy) KDE samples latents of the requested energy."""
    from hepgen.models.assemblies.grids import GridCritic, GridSurrogate, MinibatchFeatures, reset_parameters

    torch.manual_seed(0)
    mb = MinibatchFeatures(2)
    x = torch.rand(6, 2, 4, 5, 5)
    same = mb(x)
    x2 = x.clone()
    x2[1:] *= 3.0  # the rest of the batch changes, shower 0 does not
    assert not torch.allclose(mb(x2)[0], same[0])
    assert torch.allclose(mb(x[[0, 2, 1, 3, 4, 5]])[0], same[0], atol=1e-6)  # order inside the batch is irrelevant
    critic = GridCritic((4, 5, 5), 8, in_channels=2, minibatch=True)
    assert critic(x, torch.rand(6, 1)).shape == (6,)
    before = [p.detach().clone() for p in critic.parameters()]
    reset_parameters(critic)
    assert any(not torch.equal(a, b) for a, b in zip(before, critic.parameters()))
    # KDE in (latent, label): low-energy latents near -3, high-energy near +3
    c = np.linspace(0.1, 1.0, 400, dtype=np.float32)[:, None]
    lat = np.where(c < 0.5, -3.0, 3.0) + 0.01 * np.random.default_rng(0).standard_normal((400, 4))
    cfg = {"model": "bib-ae", "geometry": "ild-pions", "network": {"latent": 4}, "sampler": {"latent": "kde"}}
    surrogate = GridSurrogate.__new__(GridSurrogate)
    surrogate.cfg, surrogate.latents = cfg, np.concatenate([lat, c], 1).astype(np.float32)
    z = surrogate._latent(torch.tensor([[0.2]] * 50 + [[0.9]] * 50), torch.Generator().manual_seed(1))
    assert (z[:50] < -2).all() and (z[50:] > 2).all()


def test_grid_bench_reports_per_energy_observables_and_the_seeds_timings(grid_files, tmp_path):
    import json

    from hepgen.bench.calo import bench_calo
    from hepgen.cli.main import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY_BIB))
    run = tmp_path / "run"
    assert main(["train", "bib-ae", "--data", str(grid_files["ild-photons"]), "--config", str(cfg), "--max-epochs",
                 "1", "--out", str(run), "--no-progress"]) == 0
    floor = tmp_path / "floor.h5"
    assert main(["data", "calo", "--geometry", "ild-photons", "--num-showers", "64", "--seed", "9", "--out",
                 str(floor), "--workers", "1", "--no-progress"]) == 0
    res = bench_calo([str(run)], grid_files["ild-photons"], floor, tmp_path / "bench", tmp_path / "work",
                     classifier_epochs=1, classifier_runs=1, batches=(1, 100, 10_000), echo=lambda *a: None)
    row = res["models"][str(run)]
    # 10000 ILD grids at once need tens of GB (a bench run was killed there): grids are timed at 1000
    assert set(row["ms_per_shower"]) == {"1", "100", "1000"}
    assert "metrics_calochallenge" not in row and row["parameters"] > 0  # the challenge's recipe is not for grids
    assert "grid_e_vis_mu90_per_energy_max_dev" in row["metrics"]
    md = (tmp_path / "bench" / "calo_bench_ild-photons.md").read_text()
    assert "Grid observables" in md and "4082" in md  # seed 001 Table 6.1, Geant4 per shower
    at = row["metrics"]["grid_per_energy"]["response"]["mu90_max_dev_e_inc"]
    assert f"(at {at / 1e3:.0f} GeV)" in md  # the worst bin of each per-energy deviation is named
    assert json.loads((tmp_path / "bench" / "calo_bench_ild-photons.json").read_text())["floor"]
    # a shipped card takes its evaluation from this report: the model beside the floor of the same run
    from hepgen.errors import OptionError
    from hepgen.shipped.ship import grid_card_from_bench

    evaluation, bench = grid_card_from_bench(tmp_path / "bench" / "calo_bench_ild-photons.json", str(run))
    mu = evaluation["metrics"]["grid_e_vis_mu90_per_energy_max_dev"]
    assert mu["model"][0] == pytest.approx(row["metrics"]["grid_e_vis_mu90_per_energy_max_dev"]["value"], abs=1e-6)
    assert mu["truth_floor"][0] < mu["model"][0]  # a 1-epoch model against a second reference sample
    assert "(seed 9, " in evaluation["truth_floor"]  # the floor file's producer seed
    assert len(evaluation["response_per_energy"]["mu90_ratio"]) == len(evaluation["response_per_energy"]["e_inc_edges_gev"]) - 1
    assert bench["ms_per_shower_one_thread"]["100"] > 0 and bench["seed_001_cpu_ms_per_shower"]["BIB-AE"] == 418.04
    assert bench["speed_up_vs_seed_bib-ae_cpu_at_batch_100"] > 0
    with pytest.raises(OptionError, match="has no row 'nope'"):
        grid_card_from_bench(tmp_path / "bench" / "calo_bench_ild-photons.json", "nope")


def test_post_processor_shower_terms_compare_each_shower_with_its_input():
    """The per-shower energy and hit-count terms of the Post Processor: zero for a perfect
    output, (log 1.3)^2 for every cell 30 % too high, and cells pushed over the half-MIP cut
    count as hits."""
    from hepgen.models.assemblies.grids import build_grid_networks, grid_config
    from hepgen.training.grids import BIBAEModule

    nets = build_grid_networks(grid_config("bib-ae", "ild-photons", TINY_BIB))
    module = BIBAEModule(nets, pp_energy=1.0, pp_hits=0.0, hit_cut=0.1)
    torch.manual_seed(0)
    x = (torch.rand(4, 6, 5, 5) * 200.0) * (torch.rand(4, 6, 5, 5) < 0.3)  # cells of 0-200 MeV
    assert module._shower_terms(x, x).item() == pytest.approx(0.0, abs=1e-9)
    assert module._shower_terms(1.3 * x, x).item() == pytest.approx(np.log(1.3) ** 2, rel=0.02)
    hits = BIBAEModule(nets, pp_energy=0.0, pp_hits=1.0, hit_cut=0.1)
    sub = torch.where(x > 0, x, torch.full_like(x, 0.05))  # every empty cell at a quarter MIP: no hits
    assert hits._shower_terms(sub, x).item() < 1e-3
    over = torch.where(x > 0, x, torch.full_like(x, 0.3))  # ... at 1.5 MIP: ~3x the hits
    assert hits._shower_terms(over, x).item() > 0.5
    grad_in = (0.09 * torch.ones(2, 6, 5, 5)).requires_grad_()
    hits._shower_terms(grad_in, x[:2]).backward()  # a cell just below the cut still learns
    assert grad_in.grad.abs().sum() > 0


def test_bibae_post_processor_trains_on_a_pretrained_bibae(grid_files, tmp_path):
    """``training.pretrained``: the encoder and decoder of a finished run are taken over and
    stay frozen; with ``epochs: 0`` only a new Post Processor trains. A folder that is not a
    BIB-AE run of the same geometry is refused in one line."""
    from hepgen.cli.main import main
    from hepgen.models.assemblies.grids import GridSurrogate

    first = tmp_path / "first"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY_BIB))
    assert main(["train", "bib-ae", "--data", str(grid_files["ild-photons"]), "--config", str(cfg), "--max-epochs",
                 "1", "--out", str(first), "--no-progress"]) == 0
    pp_cfg = {"network": TINY_BIB["network"],
              "training": {**TINY_BIB["training"], "epochs": 0, "pp_epochs": 2, "pretrained": str(first),
                           "pp_energy": 100.0, "pp_hits": 10.0, "pp_top": 400},
              "sampler": {"latent": "kde"}}
    cfg.write_text(yaml.safe_dump(pp_cfg))
    second = tmp_path / "second"
    assert main(["train", "bib-ae", "--data", str(grid_files["ild-photons"]), "--config", str(cfg),
                 "--out", str(second), "--no-progress"]) == 0
    a, b = GridSurrogate.load(first).network, GridSurrogate.load(second).network
    for name in ("encoder", "decoder"):
        for (key, p), q in zip(getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values()):
            torch.testing.assert_close(p, q, msg=key)
    assert not torch.equal(a.post.net[-1].weight, b.post.net[-1].weight)  # the new Post Processor trained
    assert _losses(second, "pp_loss") and not _losses(second, "difference_critic")
    np.testing.assert_array_equal(np.load(first / "latents.npy"), np.load(second / "latents.npy"))
    # KDE sampling: the Post Processor learned on decodes of latents as wide as the KDE's kernel
    saved = yaml.safe_load((second / "config.yaml").read_text())["training"]
    assert saved["pp_latent_noise"] == GridSurrogate.KDE_BANDWIDTH
    assert "pp_latent_noise" not in yaml.safe_load((first / "config.yaml").read_text())["training"]
    # a folder that is no BIB-AE run of this geometry
    for bad in (tmp_path / "missing", first):
        pp_cfg["training"]["pretrained"] = str(bad)
        cfg.write_text(yaml.safe_dump(pp_cfg))
        geo = "ild-pions" if bad == first else "ild-photons"
        code = main(["train", "bib-ae", "--data", str(grid_files[geo]), "--config", str(cfg), "--out",
                     str(tmp_path / f"bad-{geo}"), "--no-progress"])
        assert code != 0


def test_gain_post_processor_is_an_identity_start_that_scales_hits_only():
    from hepgen.errors import OptionError
    from hepgen.models.assemblies.grids import PostProcessor

    x = torch.rand(3, 6, 5, 5) * (torch.rand(3, 6, 5, 5) < 0.3)
    pp = PostProcessor(8, form="gain")
    torch.testing.assert_close(pp(x, torch.rand(3, 1)), x)
    torch.nn.init.constant_(pp.net[-1].bias, np.log(1.25))  # a gain of 1.25 on every hit
    out = pp(x, torch.rand(3, 1))
    assert (out[x == 0] == 0).all() and torch.allclose(out[x > 0], 1.25 * x[x > 0])
    with pytest.raises(OptionError, match="pp_form"):
        PostProcessor(8, form="multiply")


def test_calibrate_cli_gives_a_grid_run_the_training_response_and_refuses_bad_input(grid_files, tmp_path, capsys):
    """``hepgen calibrate RUN``: calibration.yaml and ``sampler.calibrate: response`` in the run;
    the run's samples then carry the training showers' E_vis / E_inc, reproducibly; the raw
    showers stay available; another geometry and a model without visible energy are refused."""
    from conftest import expect_one_error_line
    from hepgen.cli.main import main
    from hepgen.data.calo import read_showers
    from hepgen.models.assemblies.grids import GridSurrogate
    from hepgen.models.calibration import visible_response

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    train = grid_files["ild-photons"]
    assert main(["train", "wgan-3d", "--data", str(train), "--config", str(cfg), "--max-epochs", "1",
                 "--out", str(run), "--no-progress"]) == 0
    # a 1-epoch WGAN leaves every cell below the half-MIP cut: nothing to calibrate
    expect_one_error_line(capsys, ["calibrate", str(run), "--num", "64", "--no-progress"],
                          "0 showers with visible energy")
    expect_one_error_line(capsys, ["calibrate", str(run), "--data", str(grid_files["ild-pions"]), "--num", "64",
                                   "--no-progress"], "ild-pions", "ild-photons")
    assert not (run / "calibration.yaml").exists()
    model = GridSurrogate.load(run)  # sharpen its output layer: sparse hits of ~0.35 MeV, E_vis / E_inc
    last = [m for m in model.network.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))][-1]
    with torch.no_grad():  # 40 % low and spread 0.003-0.035 (the reference: 0.023, a few % wide)
        last.weight *= 100
        last.bias.fill_(-0.5)
    model.save(run)
    assert main(["calibrate", str(run), "--num", "200", "--no-progress"]) == 0
    assert "largest deviation after" in capsys.readouterr().out
    assert yaml.safe_load((run / "config.yaml").read_text())["sampler"]["calibrate"] == "response"
    ref = read_showers(train)
    e = ref.incident_energies[:, 0]
    r_ref = np.median(visible_response(ref.showers, e, 0.1))
    model = GridSurrogate.load(run)
    r_raw = np.median(visible_response(model.sample(64, seed=3, energies=e, calibrate=False).showers, e, 0.1))
    r_fixed = np.median(visible_response(model.sample(64, seed=3, energies=e).showers, e, 0.1))
    assert abs(r_fixed / r_ref - 1) < 0.05 < 0.3 < abs(r_raw / r_ref - 1), (r_raw, r_fixed, r_ref)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    for f in (a, b):
        assert main(["sample", str(run), "--num", "12", "--seed", "5", "--out", str(f)]) == 0
    np.testing.assert_array_equal(read_showers(a).showers, read_showers(b).showers)
