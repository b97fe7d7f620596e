"""The collision-event producer: Pythia 8 + FastJet + parametrised detector + Dark Machines selection."""

from __future__ import annotations

import numpy as np
import pytest

from hepgen.data.darkmachines import TYPE_CODE, EventSample, read_events, write_events
from hepgen.errors import OptionError
from hepgen.simulate import detector as det
from hepgen.simulate.events import generate_events, reconstruct, selection_mask, trigger_mask
from test_cli import run


@pytest.fixture(scope="module")
def ttbar_file(tmp_path_factory):
    """The command of the issue: 500 tt-bar events, seed 3 (one worker)."""
    path = tmp_path_factory.mktemp("events") / "e.txt"
    r = run("data", "events", "--process", "ttbar", "--num-events", "500", "--seed", "3", "--out", str(path),
            "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert f"wrote 500 ttbar events to {path}" in r.stdout and "events/s" in r.stdout
    return path


def test_cli_file_round_trips_and_passes_the_selection(ttbar_file, tmp_path):
    events = read_events(ttbar_file)
    assert len(events) == 500
    assert list(events.event_id[:3]) == ["1", "2", "3"] and len(set(events.event_id)) == 500
    assert set(events.process) == {"ttbar"}
    # every event carries the selected cross-section over the file's events: the weights sum to it
    assert len(set(events.weight)) == 1 and 100 < events.weight.sum() < 2000  # pb (LO ttbar ~ 500 pb)
    assert write_events(events, tmp_path / "again.txt").read_bytes() == ttbar_file.read_bytes()
    assert selection_mask(events).all()
    # MeV, as the real Dark Machines files: jets of tens to hundreds of GeV
    jets = events.objects[(events.types == TYPE_CODE["j"]) | (events.types == TYPE_CODE["b"])]
    assert jets[:, 1].min() > 20e3 and 40e3 < np.median(jets[:, 1]) < 150e3
    assert np.all(jets[:, 0] >= jets[:, 1]) and np.all(np.abs(jets[:, 2]) < 2.8)
    # line order: b-jets, jets, e-, e+, m-, m+, photons; each type by descending pT
    rank = np.array([1, 0, 2, 3, 4, 5, 6])
    for t, o in zip(events.types, events.objects):
        real = t >= 0
        key = rank[t[real]] * 1e9 - o[real, 1]
        assert np.all(np.diff(key) >= 0)


def test_same_seed_same_bytes_whatever_the_workers(ttbar_file, tmp_path):
    out = tmp_path / "b.txt"
    r = run("data", "events", "--process", "ttbar", "--num-events", "500", "--seed", "3", "--out", str(out),
            "--workers", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == ttbar_file.read_bytes()
    # a chunk depends on (seed, chunk index) only: 250 events are the first chunk
    first = generate_events("ttbar", 250, seed=3, workers=1, progress=False).sample
    write_events(first, tmp_path / "c.txt")
    lines = ttbar_file.read_text().splitlines(keepends=True)

    def unweighted(text_lines):  # the weight (field 3) is the whole file's cross-section per event
        return [(f[0], f[1], f[3]) for f in (line.split(";", 3) for line in text_lines)]

    assert unweighted((tmp_path / "c.txt").read_text().splitlines()) == unweighted(
        line.rstrip("\n") for line in lines[:250])
    other = generate_events("ttbar", 20, seed=4, workers=1, progress=False).sample
    assert not np.array_equal(other.met, first.met[:20])


def test_ttbar_physics(ttbar_file):
    events = read_events(ttbar_file)
    counts = events.count_vectors()
    njets = counts[:, TYPE_CODE["j"]] + counts[:, TYPE_CODE["b"]]
    assert njets.mean() >= 4
    assert np.mean(counts[:, TYPE_CODE["b"]] >= 1) > 0.7
    assert 1.0 < counts[:, TYPE_CODE["b"]].mean() < 1.6
    leptons = counts[:, [TYPE_CODE[t] for t in ("e-", "e+", "m-", "m+")]].sum(1)
    assert 0.2 < leptons.mean() < 0.6          # ~ 2 W x 22% (e, mu incl. tau) x acceptance
    multijet = generate_events("multijet", 120, seed=1, workers=1, progress=False)
    assert selection_mask(multijet.sample).all() and multijet.efficiency > 0.4
    assert events.met.mean() > 2 * multijet.sample.met.mean()
    assert 25e3 < events.met.mean() < 90e3


def test_resolutions_scale_as_set():
    rng = np.random.default_rng(0)
    card = det.ATLAS_LIKE
    for e in (25.0, 100.0, 1000.0):
        s = det.jet_resolution(np.full(200_000, e))
        resp = det.smear_factors(rng, s)
        expected = np.sqrt((1.5 / e) ** 2 + 1.0 / e + 0.05 ** 2)
        assert resp.mean() == pytest.approx(1.0, abs=0.003)
        assert resp.std() == pytest.approx(expected, rel=0.02)
    e = np.array([10.0, 100.0, 1e4])
    np.testing.assert_allclose(det.jet_resolution(e), np.sqrt((1.5 / e) ** 2 + 1.0 / e + 0.05 ** 2))
    assert det.jet_resolution(1e6) == pytest.approx(card.jet_constant, rel=0.01)
    assert det.em_resolution(100.0) == pytest.approx(np.hypot(0.01, 0.007))
    assert det.em_resolution(1e6) == pytest.approx(card.em_constant, rel=0.01)
    mu = det.muon_resolution(np.array([25.0, 100.0, 300.0]), np.zeros(3))
    assert 0.009 < mu[0] < mu[1] < mu[2] < 0.035
    assert det.muon_resolution(100.0, 2.0) > det.muon_resolution(100.0, 0.5)


def test_btag_and_identification_efficiencies():
    rng = np.random.default_rng(1)
    n = 200_000
    for flav, eff in ((det.BOTTOM, 0.70), (det.CHARM, 0.10), (det.LIGHT, 0.01)):
        rate = det.btag(rng, np.full(n, flav), np.zeros(n)).mean()
        assert rate == pytest.approx(eff, abs=4 * np.sqrt(eff * (1 - eff) / n))
    assert not det.btag(rng, np.full(1000, det.BOTTOM), np.full(1000, 2.6)).any()
    eff = det.identification_efficiency("e", np.array([50, 50, 50, 15, 5]), np.array([0.5, 2.0, 2.6, 0.5, 0.5]))
    np.testing.assert_allclose(eff, [0.95, 0.85, 0.0, 0.85, 0.0])
    assert det.identification_efficiency("mu", 50.0, 2.6) == pytest.approx(0.85)
    # a 100 GeV electron with 10 GeV of other particles within Delta R < 0.3 is not isolated
    iso = det.isolation_ratio([100.0, 100.0], [0.0, 0.0], [0.0, 1.0], [0, 2], np.array([100.0, 10.0, 100.0, 1.0]),
                              np.array([0.0, 0.2, 0.0, 0.5]), np.array([0.0, 0.0, 1.0, 1.0]))
    np.testing.assert_allclose(iso, [0.10, 0.0])


def test_reconstruct_toy_event_gives_objects_and_met():
    """An electron, a two-pion jet and a neutrino, with a perfect detector: exact objects and MET."""
    card = det.DetectorCard(jet_noise=0.0, jet_stochastic=0.0, jet_constant=0.0, em_stochastic=0.0,
                            em_constant=0.0, soft_stochastic=0.0, eff_e=(1.0, 1.0))
    final = [(11, 50.0, 0.0, 0.0, 50.0), (211, -40.0, 1.0, 0.0, 40.0125), (-211, -40.0, -1.0, 0.0, 40.0125),
             (12, 30.0, 0.0, 0.0, 30.0), (22, 0.2, 0.3, 0.1, 0.3742)]
    heavy = [(det.BOTTOM, -20.0, 0.0, 0.0)]
    ev = reconstruct([(final, heavy)], np.random.default_rng(0), card)
    assert ev.types[0, 0] in (TYPE_CODE["b"], TYPE_CODE["j"]) and list(ev.types[0, 1:]) == [TYPE_CODE["e-"]]
    assert ev.objects[0, 0, 1] == pytest.approx(80e3, rel=1e-5)
    assert ev.objects[0, 1, 1] == pytest.approx(50e3, rel=1e-5)
    # visible: e (+50) + jet (-80) + soft photon: MET points along +x with ~30 GeV
    assert ev.met[0] == pytest.approx(np.hypot(30.0 - 0.2, 0.3) * 1e3, rel=1e-4)
    assert abs(ev.met_phi[0]) < 0.02
    assert trigger_mask(ev)[0]


def test_selection_mask_cuts():
    def one(*objs):
        objects = np.array([o[1:] for o in objs], dtype=float).reshape(1, -1, 4)
        return EventSample(["1"], ["x"], [1.0], [1e4], [0.0], objects, [[TYPE_CODE[o[0]] for o in objs]])

    gev = 1e3
    assert selection_mask(one(("j", 100 * gev, 70 * gev, 0.5, 0.0)))
    assert not selection_mask(one(("j", 100 * gev, 55 * gev, 0.5, 0.0)))             # no trigger object
    assert not selection_mask(one(("j", 100 * gev, 70 * gev, 0.5, 0.0), ("j", 30 * gev, 15 * gev, 0.1, 0.0)))
    assert not selection_mask(one(("e-", 60 * gev, 30 * gev, 1.4, 0.0)))             # electron in the crack
    assert selection_mask(one(("e+", 60 * gev, 30 * gev, 1.2, 0.0)))
    assert not selection_mask(one(("g", 60 * gev, 30 * gev, 2.4, 0.0)))
    assert selection_mask(one(("m-", 60 * gev, 30 * gev, 2.6, 0.0)))
    assert selection_mask(one(("j", 100.0, 70.0, 0.5, 0.0)), unit="GeV")
    with pytest.raises(OptionError, match="unit must be one of"):
        selection_mask(one(("j", 1, 1, 0, 0)), unit="TeV")


def test_bad_options(tmp_path):
    out = tmp_path / "keep.txt"
    out.write_text("old content\n")
    r = run("data", "events", "--process", "tt", "--num-events", "5", "--seed", "1", "--out", str(out))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "--process" in r.stderr
    r = run("data", "events", "--process", "ttbar", "--num-events", "0", "--out", str(out))
    assert r.returncode == 2 and r.stderr.strip() == "hepgen: error: --num-events must be positive, got 0"
    assert out.read_text() == "old content\n"
    with pytest.raises(OptionError, match="unknown process 'zprime'"):
        generate_events("zprime", 10)
