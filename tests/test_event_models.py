"""Whole-event models: representations, count sampler use, training, sampling, validity."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from hepgen.data.darkmachines import read_events
from hepgen.models.assemblies.events import EVENT_MODELS, EventSurrogate, torch_token_layout
from hepgen.transforms.events import EventTokenTransform, EventVectorTransform, object_table, token_layout

FIXTURE = Path(__file__).parent / "fixtures" / "darkmachines" / "ttbar.txt"

TINY = {
    "event-cflow": {"network": {"num_blocks": 2, "hidden": 32, "l_dim": 16, "time_dim": 8},
                    "training": {"batch_size": 32, "lr": 1e-3}},
    "event-rqs": {"flow": {"hidden": 32, "transforms": 2, "bins": 4}, "training": {"batch_size": 64, "lr": 1e-3}},
    "event-maf-types": {"flow": {"transforms": 2, "hidden": 16}, "met_flow": {"transforms": 2, "hidden": 16},
                        "training": {"batch_size": 64, "lr": 3e-3}},
}
TINY["event-maf-next"] = {**TINY["event-maf-types"], "sampler": {"candidates": 20}}
LOSS = {"event-cflow": "cfm_loss", "event-rqs": "nll_per_dim", "event-maf-types": "nll_per_dim",
        "event-maf-next": "nll_per_dim"}


@pytest.fixture(scope="module")
def ttbar():
    return read_events(FIXTURE)


def test_token_representation_round_trips(ttbar):
    t = EventTokenTransform(max_objects=20).fit(ttbar)
    x, mask, counts, keep = t.encode(ttbar)
    assert keep.all() and x.dtype == np.float32
    assert np.abs(x[mask]).max() < 20
    back = t.decode(x, counts, ttbar.met_phi)
    o1, t1, _ = object_table(ttbar)
    o2, t2, _ = object_table(back)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_allclose(o2, o1, rtol=2e-5, atol=1e-3)
    np.testing.assert_allclose(back.met, ttbar.met, rtol=2e-5)
    np.testing.assert_array_equal(back.count_vectors(), ttbar.count_vectors())


def test_fixed_vector_round_trips_and_drops_overfull_events(ttbar):
    t = EventVectorTransform().fit(ttbar)
    v, keep = t.encode(ttbar)
    assert v.shape[1] == 66 and 0.2 < keep.mean() < 1.0  # ttbar often has more than 4 light jets
    back = t.decode(v)
    o1, t1, _ = object_table(ttbar[keep])
    o2, t2, _ = object_table(back)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_allclose(o2, o1, rtol=2e-5, atol=1e-3)


def test_token_layout_numpy_and_torch_agree():
    counts = np.array([[3, 1, 0, 1, 0, 0, 2], [0, 0, 0, 0, 1, 0, 0], [5, 2, 0, 0, 0, 0, 0]])
    types, ranks = token_layout(counts, 7)
    assert types[0].tolist() == [0, 0, 0, 1, 3, 6, 6] and ranks[0].tolist() == [0, 1, 2, 0, 0, 0, 1]
    assert types[1].tolist() == [4] + [-1] * 6
    tt, tr = torch_token_layout(torch.as_tensor(counts), 7)
    valid = types >= 0
    assert (tt[:, 1:].numpy()[valid] == types[valid]).all() and (tr[:, 1:].numpy()[valid] == ranks[valid]).all()
    assert (tt[:, 0] == 7).all()


def _train(model, tmp_path, epochs):
    from hepgen.training.events import train_event_model

    run = train_event_model(model, FIXTURE, tmp_path / model, max_epochs=epochs, progress=False,
                            override=TINY[model])
    losses = []
    for log in sorted((run / "logs").glob("*/metrics.csv")):
        losses.append([float(r[LOSS[model]]) for r in csv.DictReader(open(log)) if r.get(LOSS[model])])
    return run, losses


@pytest.mark.parametrize("model", EVENT_MODELS)
def test_every_event_model_trains_and_samples_valid_events(model, tmp_path):
    from hepgen.simulate.events import selection_mask

    # the per-type flows of the MAF models see few rows per epoch: more epochs to see them learn
    run, losses = _train(model, tmp_path, epochs=30 if "maf" in model else 12)
    for stage in losses:  # event-maf-types: one fit per object type and one for the MET
        assert len(stage) >= 4
        k = max(2, len(stage) // 4)
        assert np.mean(stage[-k:]) < np.mean(stage[:k]), stage
    surrogate = EventSurrogate.load(run)
    a = surrogate.sample(200, seed=4, progress=False)
    b = surrogate.sample(200, seed=4, progress=False)
    assert len(a) == 200 and selection_mask(a).all()
    np.testing.assert_array_equal(a.objects, b.objects)
    np.testing.assert_array_equal(a.met, b.met)
    assert 0.0 <= surrogate.rejected_fraction < 1.0
    # the count vectors come from the alias sampler: only vectors seen in training
    seen = {tuple(c) for c in read_events(FIXTURE).count_vectors()}
    drawn = {tuple(c) for c in surrogate.counts.values}
    assert drawn <= seen


def test_cflow_conserves_what_the_conditioning_promises(tmp_path):
    """Generated events carry exactly the objects their count vector asks for (before the
    selection may reject them) and physical four-vectors (E >= pT cosh eta)."""
    run, _ = _train("event-cflow", tmp_path, epochs=2)
    surrogate = EventSurrogate.load(run)
    rng = np.random.default_rng(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        batch = surrogate._sample_batch(300, rng, "midpoint", 4)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(batch.count_vectors(), surrogate.counts.sample(300, rng))
    e, pt, eta = batch.objects[..., 0], batch.objects[..., 1], batch.objects[..., 2]
    real = batch.types >= 0
    assert (e[real] >= pt[real] * np.cosh(eta[real]) * (1 - 1e-9)).all()
    assert (np.abs(batch.objects[..., 3][real]) <= np.pi).all()


def test_event_cli_train_sample_and_bad_input(tmp_path, capsys):
    from hepgen.cli.main import main

    out = tmp_path / "run"
    assert main(["train", "event-cflow", "--data", str(FIXTURE), "--max-epochs", "1", "--out", str(out)]) == 0
    assert main(["sample", str(out), "--num", "50", "--seed", "2", "--out", str(tmp_path / "g.txt")]) == 0
    assert len(read_events(tmp_path / "g.txt")) == 50
    capsys.readouterr()
    code = main(["sample", str(out), "--num", "50", "--solver", "leapfrog", "--out", str(tmp_path / "h.txt")])
    err = capsys.readouterr().err
    assert code == 2 and "leapfrog" in err and not (tmp_path / "h.txt").exists()
    code = main(["train", "event-rqs", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.txt" in err and len(err.strip().splitlines()) == 1


def test_bench_events_writes_the_table(tmp_path):
    """The Table 7.20 columns for a model, the truth floor and the producer's rate, as markdown + JSON."""
    import json

    from hepgen.cli.main import main

    run, _ = _train("event-maf-types", tmp_path, epochs=1)
    code = main(["bench", "events", "--model", str(run), "--num-events", "300", "--classifier-runs", "1",
                 "--classifier-epochs", "2", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "bench")])
    assert code == 0
    md = (tmp_path / "bench" / "events_bench.md").read_text()
    assert "truth floor" in md and str(run) in md and "thesis Exp. I" in md
    res = json.loads((tmp_path / "bench" / "events_bench.json").read_text())
    row = res["models"][str(run)]
    assert 0 <= row["metrics"]["js_avg"]["value"] <= 1 and row["events_per_s"] > 0
    assert res["producer_events_per_s"] > 0
    # the floor (same generator, same size) is closer than an untrained model
    assert res["floor"]["w1_avg"]["value"] < row["metrics"]["w1_avg"]["value"]


def test_event_cflow_bespoke_student_lands_closer_than_euler_and_becomes_the_sampler(tmp_path):
    """Issue 16 item 2: a 2-step bespoke solver of the event CFM reproduces the 16-step
    midpoint solve better than 2 Euler steps, and sampling with it is reproducible."""
    from hepgen.cli.main import main
    from hepgen.training.student import fit_event_solvers

    run, _ = _train("event-cflow", tmp_path, epochs=2)
    report = fit_event_solvers(run, steps=(2,), pairs=256, reference={"method": "midpoint", "steps": 16},
                               iterations=150, batch_size=64, progress=False)
    surrogate = EventSurrogate.load(run)
    rng = np.random.default_rng(3)
    counts = surrogate.counts.sample(256, rng)
    total = counts.sum(1)
    width = int(total.max()) + 1
    mask = torch.zeros(256, width, dtype=torch.bool)
    mask[:, 0] = True
    mask[:, 1:] = torch.arange(width - 1)[None, :] < torch.as_tensor(total)[:, None]
    c = torch.as_tensor(counts, dtype=torch.float32)
    x0 = torch.randn(256, width, 4, generator=torch.Generator().manual_seed(9)) * mask[..., None]
    with torch.no_grad():
        ref = surrogate.solve(x0, mask, c, "midpoint", 16)
        errs = {m: float(((surrogate.solve(x0, mask, c, m, 2) - ref) ** 2).sum() / mask.sum())
                for m in ("euler", "bespoke")}
    assert errs["bespoke"] < 0.7 * errs["euler"], (errs, report)
    assert main(["student", str(run), "--steps", "2", "--pairs", "128", "--iterations", "20", "--default", "2"]) == 0
    outs = [tmp_path / f"{t}.txt" for t in "ab"]
    for out in outs:
        assert main(["sample", str(run), "--num", "50", "--seed", "4", "--out", str(out)]) == 0
    assert outs[0].read_text() == outs[1].read_text()
    assert main(["sample", str(run), "--num", "5", "--solver", "bespoke", "--steps", "3",
                 "--out", str(tmp_path / "c.txt")]) != 0


def _met_balanced_events(n: int, seed: int):
    """Events of one or two jets whose MET balances the leading jet's pT (within 5 %)."""
    from hepgen.data.darkmachines import EventSample

    rng = np.random.default_rng(seed)
    pt = 10 ** rng.uniform(4.7, 5.7, n)  # 50-500 GeV in MeV
    two = rng.random(n) < 0.5
    objects = np.zeros((n, 2, 4))
    types = np.full((n, 2), -1, dtype=np.int8)
    eta, phi = rng.uniform(-2, 2, (2, n))
    objects[:, 0] = np.stack([pt * np.cosh(eta), pt, eta, phi], 1)
    pt2 = pt * rng.uniform(0.2, 0.8, n)
    objects[two, 1] = np.stack([pt2 * np.cosh(eta), pt2, eta, -phi], 1)[two]
    types[:, 0] = 0
    types[two, 1] = 0
    met = pt * rng.uniform(0.95, 1.05, n)
    return EventSample(np.arange(n).astype(str), np.full(n, "toy", dtype=object), np.ones(n), met,
                       np.mod(phi + 2 * np.pi, 2 * np.pi) - np.pi, objects, types)


def test_experiment_two_ties_the_objects_to_the_met_where_experiment_one_cannot(tmp_path):
    """Seed 003 sec. 7.2: choosing each object among candidates by its distance to the
    event's MET (and cumulative pT) correlates them; Experiment I draws objects independently."""
    from hepgen.data.darkmachines import write_events
    from hepgen.training.events import train_event_model

    data = write_events(_met_balanced_events(800, seed=1), tmp_path / "toy.txt")
    corr = {}
    for model in ("event-maf-types", "event-maf-next"):
        cfg = {"flow": {"transforms": 2, "hidden": 32}, "met_flow": {"transforms": 2, "hidden": 32},
               "training": {"batch_size": 100, "lr": 3e-3}, "sampler": {"candidates": 200}}
        run = train_event_model(model, data, tmp_path / model, max_epochs=15, progress=False, override=cfg)
        torch.manual_seed(0)
        ev = EventSurrogate.load(run).sample(400, seed=2, valid_only=False, progress=False)
        lead = ev.objects[:, :, 1].max(1)
        corr[model] = np.corrcoef(np.log(ev.met), np.log(lead))[0, 1]
    assert corr["event-maf-next"] > 0.8, corr
    assert abs(corr["event-maf-types"]) < 0.3, corr
