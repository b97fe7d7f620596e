"""The training mechanisms every trainer shares: warm EMA, schedules, exact resume,
combined-score selection, and the GAN details of the jet trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning import Callback
from torch import nn

TINY_GAN = dict(hidden=16, l_dim=8, heads=2, num_blocks=1, hidden_gen=16, l_dim_gen=8, heads_gen=2, num_blocks_gen=2)
TINY_FLOW = dict(hidden=16, l_dim=8, heads=2, num_blocks=2, time_dim=4)


def _share_of_initial(ema, net, steps: int) -> float:
    """The first update sees the initial weights (0), the next ``steps - 1`` trained ones
    (1): the EMA's distance from 1 is the share the initial weights still hold."""
    with torch.no_grad():
        for k in range(steps):
            for p in net.parameters():
                p.fill_(0.0 if k == 0 else 1.0)
            ema.update_parameters(net)
        return float(max((1 - p).abs().max() for p in ema.module.parameters()))


def test_warm_ema_forgets_the_initial_weights_where_the_plain_one_does_not():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from hepgen.training.ema import warm_ema

    net = nn.Linear(3, 2)
    assert _share_of_initial(warm_ema(net, 0.999), net, 400) < 0.01
    plain = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)
    assert _share_of_initial(plain, net, 400) > 0.5  # 0.999^400 = 0.67: the bug this replaces


def test_every_trainer_module_has_the_warm_ema():
    from hepgen.models.assemblies.jet_networks import MDMACritic, MDMAGenerator, MDMAVelocity
    from hepgen.training.calo import ShapeModule
    from hepgen.training.modules import FlowMatchingModule, GANModule

    modules = [
        GANModule(MDMAGenerator(8, 16, 2, 1, 30), MDMACritic(8, 16, 2, 1, 30)),
        FlowMatchingModule(MDMAVelocity(8, 16, 2, 1, 4, 30)),
        ShapeModule(nn.Linear(3, 3)),
    ]
    for module in modules:
        net = module.sampled()
        assert _share_of_initial(module.ema, net, 400) < 0.01, type(module).__name__
        assert module.sampling_network() is module.ema.module


def test_ema_copies_integer_buffers():
    from hepgen.training.ema import warm_ema

    net = nn.Module()
    net.lin = nn.Linear(2, 2)
    net.register_buffer("mask", torch.zeros(3, dtype=torch.bool))
    ema = warm_ema(net, 0.99)
    net.mask.fill_(True)
    ema.update_parameters(net)
    ema.update_parameters(net)
    assert ema.module.mask.all()


def test_schedules_warm_up_decay_and_stay_at_the_end():
    from hepgen.errors import OptionError
    from hepgen.training.schedule import ScheduleFactor

    cos = ScheduleFactor("cosine", 1000, warmup=0.1, final_lr_fraction=0.01)
    assert cos(0) < 0.02 and cos(99) == pytest.approx(1.0, abs=0.011)
    assert cos(550) == pytest.approx(0.01 + 0.99 * 0.5, abs=1e-3)
    assert cos(1000) == pytest.approx(0.01) and cos(5000) == pytest.approx(0.01)
    assert all(cos(s) >= cos(s + 1) for s in range(100, 1000))
    one = ScheduleFactor("one-cycle", 1000)
    assert one(0) == pytest.approx(1 / 25) and one(300) == pytest.approx(1.0)
    assert one(1000) == pytest.approx(1 / 25 / 1e4, rel=1e-3)
    with pytest.raises(OptionError, match="unknown schedule"):
        ScheduleFactor("linear", 10)
    exp = ScheduleFactor("exponential", 1000, lr_decay=0.95, steps_per_epoch=100)
    assert [exp(s) for s in (0, 99, 100, 250)] == pytest.approx([1.0, 1.0, 0.95, 0.95 ** 2])
    with pytest.raises(OptionError, match="lr_decay"):
        ScheduleFactor("exponential", 10, lr_decay=1.5)


def test_manual_optimisation_modules_step_their_schedules(tmp_path):
    """Lightning steps schedulers only under automatic optimisation: the grid GANs and the
    BIB-AE (manual optimisation) configured a schedule that never moved. The shared module
    now steps it once per batch: after 2 epochs of an exponential schedule x 0.5 per epoch
    every optimiser runs at a quarter of its rate."""
    import lightning

    from hepgen.models.assemblies.grids import build_grid_networks, grid_config
    from hepgen.training.grids import BIBAEModule

    cfg = grid_config("bib-ae", "ild-photons", {"network": {"latent": 2, "noise": 2, "channels": 4, "pp_channels": 2},
                                                "training": {"schedule": "exponential", "lr_decay": 0.5,
                                                             "critic_steps": 1, "epochs": 2, "pp_epochs": 0}})
    module = BIBAEModule(build_grid_networks(cfg), **cfg["training"])
    x = torch.rand(4, 30, 30, 30) * (torch.rand(4, 30, 30, 30) < 0.05)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.rand(4, 1)), batch_size=2)
    module.set_steps_per_epoch(loader)
    trainer = lightning.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False)
    trainer.fit(module, loader)
    rates = [o.param_groups[0]["lr"] for o in trainer.optimizers]
    assert rates == pytest.approx([5e-4 / 4, 5e-4 / 4, 2e-3 / 4, 5e-4 / 4])


class _Crash(Callback):
    """Stands in for a kill in the middle of epoch 2 (after epoch 1's checkpoint)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            raise RuntimeError("killed")


def _train(model, fixture_dir, out, network, callbacks=None, resume=False):
    from hepgen.training.run import train_jet_model

    return train_jet_model(model, fixture_dir / "t.hdf5", out, max_epochs=2, progress=False, resume=resume,
                           callbacks=callbacks, override={
                               "network": network, "sampler": {"method": "midpoint", "steps": 2},
                               "training": {"batch_size": 20, "select_every": 1, "select_jets": 40,
                                            "mean_field_steps": 3}})


@pytest.mark.parametrize("model,network", [("mdma-gan", TINY_GAN), ("mdma-flow", TINY_FLOW)])
def test_resume_after_a_kill_equals_the_uninterrupted_run(model, network, fixture_dir, tmp_path):
    """Weights, EMA, optimiser, schedule, RNG and selection history all continue: the
    resumed run ends bit for bit where the uninterrupted run of the same length ends."""
    whole = _train(model, fixture_dir, tmp_path / "whole", network)
    with pytest.raises(RuntimeError, match="killed"):
        _train(model, fixture_dir, tmp_path / "killed", network, callbacks=[_Crash()])
    resumed = _train(model, fixture_dir, tmp_path / "killed", network, resume=True)
    a = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 1 and a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for k, st in opt_a["state"].items():
            torch.testing.assert_close(opt_b["state"][k]["exp_avg_sq"], st["exp_avg_sq"], rtol=0, atol=0)
    assert [s["last_epoch"] for s in a["lr_schedulers"]] == [s["last_epoch"] for s in b["lr_schedulers"]]
    history = [r["score_ratio"] for r in a["callbacks"]["JetSelection"]["history"]]
    assert history == [r["score_ratio"] for r in b["callbacks"]["JetSelection"]["history"]]
    assert len(history) == 2
    import csv

    rows = [[{k: v for k, v in r.items() if k != "hours"} for r in csv.DictReader(open(run / "selection.csv"))]
            for run in (whole, resumed)]
    assert rows[0] == rows[1]
    from hepgen.training.resume import logged_rows

    # a resume that trains no further keeps the selected weights (it used to delete them
    # and save the last network instead)
    import os

    stamp = os.stat(resumed / "weights.pt").st_mtime_ns
    _train(model, fixture_dir, tmp_path / "killed", network, resume=True)
    assert os.stat(resumed / "weights.pt").st_mtime_ns == stamp
    # the losses of the killed session are kept beside the resumed one's
    assert (resumed / "logs" / "metrics.part-1.csv").exists()
    assert {r["epoch"] for r in logged_rows(resumed / "logs") if r.get("epoch")} >= {"0", "1"}
    assert (whole / "learning_curve.png").exists()


@pytest.mark.parametrize("cond_dim,gated,norm", [(0, False, False), (16, True, True)])
def test_fused_mean_field_block_equals_the_plain_one(cond_dim, gated, norm):
    from hepgen.models.blocks.mean_field import MeanFieldBlock

    torch.manual_seed(0)
    block = MeanFieldBlock(16, 48, 16, cond_dim=cond_dim, max_particles=30, norm=norm, gated=gated)
    mask = torch.arange(30)[None] < torch.tensor([30, 1, 17, 29])[:, None]
    x = torch.randn(4, 30, 16) * mask[..., None]
    field, n = torch.randn(4, 48), mask.sum(1)
    cond = torch.randn(4, cond_dim) if cond_dim else None
    x.requires_grad_(True)
    a, fa = block.forward_plain(x, field, mask, n, cond)
    b, fb = block.forward_fused(x, field, mask, n, cond)
    torch.testing.assert_close(b, a, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(fb, fa, atol=2e-6, rtol=1e-5)
    ga, = torch.autograd.grad(a.square().sum() + fa.sum(), x)
    gb, = torch.autograd.grad(b.square().sum() + fb.sum(), x)
    torch.testing.assert_close(gb, ga, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cond_dim,gated,norm,cond_in_input", [(0, False, False, False), (16, True, True, True),
                                                             (8, False, True, False)])
def test_mean_field_sampling_pass_equals_the_training_pass(cond_dim, gated, norm, cond_in_input):
    """Without autograd the body folds query, keys, values and omega into per-jet products
    and reuses workspace buffers: same output (padded particles zero) and mean field, and
    the folded weights follow a parameter update."""
    from hepgen.models.blocks.mean_field import MeanFieldBody

    torch.manual_seed(0)
    body = MeanFieldBody(3 + (cond_dim if cond_in_input else 0), 16, 48, 16, 3, cond_dim=cond_dim,
                         max_particles=30, norm=norm, gated=gated)
    mask = torch.arange(30)[None] < torch.tensor([30, 1, 17, 29])[:, None]
    x = torch.randn(4, 30, 3) * mask[..., None]
    cond = torch.randn(4, cond_dim) if cond_dim else None
    for _ in range(2):
        ref, field = body(x, mask, cond, cond_in_input)
        with torch.no_grad():
            fast, fast_field = body(x, mask, cond, cond_in_input)
        torch.testing.assert_close(fast, ref, atol=2e-6, rtol=1e-5)
        torch.testing.assert_close(fast_field, field, atol=2e-6, rtol=1e-5)
        assert not fast[~mask].any()
        with torch.no_grad():  # a training step changes the weights in place
            body.blocks[1].attn.in_proj_weight.mul_(1.5)
            body.blocks[2].psi[0].weight.add_(0.1)


def test_keep_freed_memory_stops_page_faults_of_repeated_tensors():
    """Sampling and training allocate the same megabyte tensors again and again; with glibc's
    defaults each comes fresh from the kernel and faults once per 4 kB page."""
    import resource

    from hepgen.device import keep_freed_memory

    if not keep_freed_memory():
        pytest.skip("not glibc")
    a = torch.randn(4096, 1024)

    def faults() -> int:
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            (a * 2.0).add_(1.0)  # a new 16 MB tensor each time
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

    faults()
    assert faults() < 100  # 20 fresh 16 MB tensors would be ~80 000 faults


def test_selection_score_is_one_at_the_floor_and_counts_every_metric(jets_by_type):
    """Real jets score ~1; a sample with a perfect mass but wrong particles is not picked
    over one that is slightly off everywhere (the W1M-only selection would pick it)."""
    from hepgen.training.selection import SelectionFeatures, combined_score, selection_metrics

    pf = jets_by_type["t"].particle_features
    ref, floor_set, real = pf[:500], pf[500:1000], pf[1000:1500]
    ref_f = SelectionFeatures(ref)
    floor = selection_metrics(ref_f, SelectionFeatures(floor_set))
    at_floor = combined_score(selection_metrics(ref_f, SelectionFeatures(real)), floor)
    # the W1s of another real sample sit at the floor; FD of 500 jets is too noisy to test
    assert all(0.3 < at_floor[m] < 3.0 for m in ("w1m", "w1p", "w1efp")), at_floor
    good_mass = real.copy()
    good_mass[..., 2] = np.where(good_mass[..., 3] > 0, good_mass[..., 2] ** 1.3, 0)  # softer particles
    slightly_off = real.copy()
    slightly_off[..., :3] *= 1.03
    a = combined_score(selection_metrics(ref_f, SelectionFeatures(good_mass)), floor)
    b = combined_score(selection_metrics(ref_f, SelectionFeatures(slightly_off)), floor)
    assert b["score"] < a["score"], (a, b)
    assert set(a) == {"w1m", "w1p", "w1efp", "fd", "score"}


def test_gan_generator_output_is_clamped_and_mean_field_matching_switches_off(fixture_dir, tmp_path):
    from hepgen.models.assemblies.jets import JetSurrogate
    from hepgen.training.modules import GANModule

    run = _train("mdma-gan", fixture_dir, tmp_path / "gan", TINY_GAN)
    s = JetSurrogate.load(run)
    lo, hi = (torch.tensor(v) for v in s.cfg["scaled_range"])
    mask = torch.ones(64, 30, dtype=torch.bool)
    with torch.no_grad():
        s.network.beta.bias.add_(100.0)  # push every output far out of range
    out = s.generate_scaled(mask, torch.randn(64, 30, 3))
    assert torch.all(out <= hi + 1e-6) and torch.all(out >= lo - 1e-6) and torch.allclose(out, hi.expand_as(out))
    module = GANModule(s.network, s.network, mean_field_steps=3)
    assert module.mean_field_active()
    module.generator_steps += 3
    assert not module.mean_field_active()
    from hepgen.models.assemblies.jets import model_config

    training = model_config("mdma-gan", 30)["training"]
    assert training["weight_decay_gen"] == 0.0 and training["mean_field_steps"] is None
    module = GANModule(s.network, s.network, **training)
    assert module.weight_decay_gen == 0.0
    # the default keeps mean-field matching on past the public code's 50k-step switch-off
    # (switching it off doubled every selection metric of the t30 campaign)
    module.generator_steps += 60_000
    assert module.mean_field_active()


def test_bespoke_student_beats_euler_at_the_same_evaluations_and_becomes_the_sampler(fixture_dir, tmp_path):
    from hepgen.cli.main import main
    from hepgen.models.assemblies.jets import JetSurrogate
    from hepgen.models.blocks.cfm import integrate
    from hepgen.training.student import _noise, fit_jet_solvers

    run = _train("mdma-flow", fixture_dir, tmp_path / "flow", TINY_FLOW)
    report = fit_jet_solvers(run, steps=(2,), pairs=128, iterations=80, batch_size=64, progress=False)
    s = JetSurrogate.load(run)
    x0, mask = _noise(s, 128, seed=5)  # noise the students were not fitted on
    with torch.no_grad():
        ref = integrate(s.network, x0, mask, method="midpoint", steps=32)
        euler = integrate(s.network, x0, mask, method="euler", steps=2)
        student = s.generate_scaled(mask, x0, method="bespoke", steps=2)
    assert ((student - ref) ** 2).mean() < 0.7 * ((euler - ref) ** 2).mean()
    assert report[2]["mse"] > 0
    assert main(["student", str(run), "--steps", "3", "--pairs", "64", "--iterations", "5", "--default", "3"]) == 0
    s = JetSurrogate.load(run)
    assert s.cfg["sampler"] == {"method": "bespoke", "steps": 3} and set(s.solvers) == {2, 3}
    a, b = (s.sample(50, seed=4).particle_features for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert main(["student", str(run), "--steps", "0"]) == 2


@pytest.mark.parametrize("model,stage", [("event-rqs", "rqs"), ("event-cflow", "cflow")])
def test_resume_is_exact_in_the_shared_fit_stage(model, stage, tmp_path, monkeypatch):
    """The event and calorimeter trainers fit through hepgen.training.fit.fit_stage: a
    plain shuffled DataLoader (event-rqs) and a bucketed data module (event-cflow) both
    continue exactly after a kill."""
    import hepgen.training.fit as fit
    from test_event_models import FIXTURE, TINY

    from hepgen.training.events import train_event_model

    def run(out, crash=False, resume=False):
        if crash:
            monkeypatch.setattr(fit, "resume_callbacks", lambda t: [*_resume(t), _Crash()])
        else:
            monkeypatch.setattr(fit, "resume_callbacks", _resume)
        return train_event_model(model, FIXTURE, out, max_epochs=2, progress=False, override=TINY[model],
                                 resume=resume)

    from hepgen.training.resume import resume_callbacks as _resume

    whole = run(tmp_path / "whole")
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "killed", crash=True)
    resumed = run(tmp_path / "killed", resume=True)
    a = torch.load(whole / "checkpoints" / f"{stage}.ckpt", weights_only=False)["state_dict"]
    b = torch.load(resumed / "checkpoints" / f"{stage}.ckpt", weights_only=False)["state_dict"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
