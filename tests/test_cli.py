"""The hepgen command as a user runs it: real runs on tiny files and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import expect_one_error_line
from hepgen.cli.main import main

HEPGEN = str(Path(sys.executable).parent / "hepgen")


def run(*args):
    return subprocess.run([HEPGEN, *args], capture_output=True, text=True)


def sample_twice(name, num, tmp_path, suffix=".h5"):
    """`hepgen sample NAME` with seed 1 in a fresh process (as on a fresh clone: nothing
    imported beforehand) and again in this one; both files must be equal byte for byte."""
    files = [tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"]
    r = run("sample", name, "--num", str(num), "--seed", "1", "--out", str(files[0]))
    assert r.returncode == 0, r.stderr
    assert main(["sample", name, "--num", str(num), "--seed", "1", "--out", str(files[1])]) == 0
    assert files[0].read_bytes() == files[1].read_bytes()
    return files


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("data", "evaluate", "bench"):
        assert cmd in r.stdout


def test_train_help_and_unknown_model_name_every_trainable_model():
    """Issue 15: every pillar's models, not only the jet models."""
    import re

    from hepgen.cli.models import trainable_models

    names = trainable_models()
    assert {"mdma-flow", "calodream", "caloinn-vae", "bib-ae", "ddpm-hits", "event-cflow"} <= set(names)
    helptext = re.sub(r"[\s│]+", " ", run("train", "--help").stdout)  # rich wraps the help in boxes
    r = run("train", "no-such-model", "--data", "x.h5", "--out", "y")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    for name in names:
        assert name in r.stderr, name
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", helptext), name


def test_data_jets_writes_reproducible_jetnet_file(tmp_path):
    args = ["data", "jets", "--jet-type", "t", "--num-particles", "30", "--num-jets", "120", "--seed", "11"]
    r1 = run(*args, "--out", str(tmp_path / "a.h5"), "--workers", "1")
    assert r1.returncode == 0, r1.stderr
    assert "wrote 120 t jets" in r1.stdout
    r2 = run(*args, "--out", str(tmp_path / "b.h5"), "--no-progress")
    assert r2.returncode == 0, r2.stderr
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["particle_features"].shape == (120, 30, 4)
        assert f["jet_features"].shape == (120, 4)
        assert f["particle_features"].dtype == np.float32


@pytest.fixture(scope="module")
def report(tmp_path_factory, fixture_dir):
    out = tmp_path_factory.mktemp("eval") / "report"
    r = run("evaluate", "jets", "--real", str(fixture_dir / "t150.hdf5"), "--gen", str(fixture_dir / "t150.hdf5"),
            "--truth-floor", str(fixture_dir / "t150.hdf5"), "--out", str(out), "--num-eval-samples", "2000")
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_evaluate_writes_metrics_report_and_plots(report):
    out, stdout = report
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("w1m", "w1p", "w1efp", "fpd", "kpd"):
        assert set(metrics[key]) == {"value", "error"}
        assert np.isfinite(metrics[key]["value"])
    assert all(set(v) == {"value", "error"} for v in metrics.values())
    html = (out / "report.html").read_text()
    for png in ("mass.png", "pt.png", "multiplicity.png", "etarel.png", "phirel.png", "ptrel.png", "efp_0.png"):
        assert (out / png).stat().st_size > 1000
        assert png in html
    assert "truth floor" in html and (out / "truth_floor.json").exists()
    assert "W1M ×10³" in stdout and "FPD ×10⁴" in stdout
    assert f"report: {out / 'report.html'}" in stdout


def test_identical_samples_give_near_zero_metrics(report):
    metrics = json.loads((report[0] / "metrics.json").read_text())
    assert metrics["fpd"]["value"] < 1e-3
    assert abs(metrics["kpd"]["value"]) < 3 * metrics["kpd"]["error"] + 1e-6


def _bad_file(path, pf=None, jf=None):
    with h5py.File(path, "w") as f:
        if pf is not None:
            f["particle_features"] = pf
        if jf is not None:
            f["jet_features"] = jf
    return str(path)


def test_the_one_error_line_check_fails_on_success_and_on_a_missing_fragment(capsys):
    with pytest.raises(AssertionError):
        expect_one_error_line(capsys, ["models"])  # exits 0
    line = expect_one_error_line(capsys, ["data", "jets", "--jet-type", "x", "--num-jets", "10", "--out", "x.h5"],
                                 "--jet-type")
    assert line.startswith("hepgen: error: ") and "'x' is not one of" in line
    with pytest.raises(AssertionError):
        expect_one_error_line(capsys, ["data", "jets", "--jet-type", "x", "--num-jets", "10", "--out", "x.h5"],
                              "no such text")


def test_require_positive_names_the_first_bad_option_skips_unset_and_refuses_nan():
    from hepgen.cli.options import require_positive
    from hepgen.errors import OptionError

    require_positive({"--num": 3, "--chunk": None, "--lr": 1e-5})  # all fine: no error
    with pytest.raises(OptionError, match=r"^--chunk must be positive, got 0$"):
        require_positive({"--num": 3, "--chunk": 0, "--lr": -1.0})
    with pytest.raises(OptionError, match=r"^--lr must be positive, got nan$"):
        require_positive({"--lr": float("nan")})


def test_bad_inputs_give_one_line_and_keep_existing_output(tmp_path, fixture_dir, capsys):
    real = str(fixture_dir / "t150.hdf5")
    out = tmp_path / "report"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    keep = tmp_path / "keep.h5"
    keep.write_bytes(b"old data")

    nan = np.zeros((4, 150, 4), np.float32)
    nan[1, 0, 0] = np.nan
    cases = [
        (["evaluate", "jets", "--real", str(tmp_path / "missing.h5"), "--gen", real, "--out", str(out)], "--real", "missing.h5", "no such file"),
        (["evaluate", "jets", "--real", real, "--gen", _bad_file(tmp_path / "k.h5", pf=np.zeros((4, 150, 4), np.float32)), "--out", str(out)], "--gen", "missing dataset"),
        (["evaluate", "jets", "--real", real, "--gen", _bad_file(tmp_path / "s.h5", np.zeros((4, 150, 3), np.float32), np.zeros((4, 4))), "--out", str(out)], "--gen", "(N, P, 4)"),
        (["evaluate", "jets", "--real", real, "--gen", _bad_file(tmp_path / "n.h5", nan, np.zeros((4, 4))), "--out", str(out)], "--gen", "NaN or inf"),
        (["evaluate", "jets", "--real", real, "--gen", str(fixture_dir / "t.hdf5"), "--out", str(out)], "--gen", "30 particles per jet but --real has 150"),
        (["data", "jets", "--jet-type", "x", "--num-jets", "10", "--out", str(keep)], "--jet-type"),
        (["data", "jets", "--jet-type", "t", "--num-jets", "0", "--out", str(keep)], "--num-jets must be positive"),
        (["data", "jets", "--jet-type", "t", "--num-jets", "10", "--out", str(tmp_path / "no" / "x.h5")], "--out", "does not exist"),
        (["evaluate", "jets", "--real", real, "--gen", real, "--out", str(out), "--bogus"], "--bogus"),
    ]
    for argv, *fragments in cases:
        expect_one_error_line(capsys, argv, *fragments)
    assert (out / "metrics.json").read_text() == "old"
    assert keep.read_bytes() == b"old data"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["report", "keep.h5", "k.h5", "s.h5", "n.h5"])


def test_train_sample_resume_and_models(tmp_path, fixture_dir, capsys):
    run_dir = tmp_path / "run"
    cfg = tmp_path / "small.yaml"
    cfg.write_text("network: {hidden_gen: 16, hidden: 16, heads_gen: 4, heads: 4, num_blocks_gen: 2}\n"
                   "training: {batch_size: 50}\n")
    r = run("train", "mdma-gan", "--data", str(fixture_dir / "t.hdf5"), "--config", str(cfg),
            "--max-epochs", "1", "--out", str(run_dir))
    assert r.returncode == 0, r.stderr
    for name in ("config.yaml", "preprocessor.json", "multiplicity.yaml", "weights.pt", "checkpoints/last.ckpt"):
        assert (run_dir / name).exists(), name
    # a second train into the same folder refuses instead of overwriting
    expect_one_error_line(capsys, ["train", "mdma-gan", "--data", str(fixture_dir / "t.hdf5"), "--out", str(run_dir)],
                  "not empty")
    assert main(["train", "mdma-gan", "--data", str(fixture_dir / "t.hdf5"), "--max-epochs", "2", "--resume",
                 "--out", str(run_dir)]) == 0
    import csv

    epochs = {row["epoch"] for row in csv.DictReader(open(run_dir / "logs" / "metrics.csv"))}
    assert "1" in epochs
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    r = run("sample", str(run_dir), "--num", "300", "--seed", "4", "--out", str(a))
    assert r.returncode == 0, r.stderr
    assert "%|" in r.stderr  # the progress bar
    # --no-progress (background runs with a log file): no bar, the same jets
    assert main(["sample", str(run_dir), "--num", "300", "--seed", "4", "--out", str(b), "--no-progress"]) == 0
    assert "%|" not in capsys.readouterr().err
    assert a.read_bytes() == b.read_bytes()
    with h5py.File(a) as f:
        assert f["particle_features"].shape == (300, 30, 4)
    expect_one_error_line(capsys, ["sample", str(tmp_path / "nothing"), "--num", "5", "--out", str(tmp_path / "x.h5")],
                  "neither a run folder nor a shipped model")
    expect_one_error_line(capsys, ["train", "no-such-model", "--data", str(fixture_dir / "t.hdf5"), "--out",
                           str(tmp_path / "r2")], "unknown model")
    assert main(["models"]) == 0


def test_models_flags_shower_models_of_an_older_stand_in(capsys):
    """A shipped shower model whose card records an older stand-in version than the producer
    makes now is flagged in the listing; the jet models are not."""

    from hepgen.shipped import card, shipped_models
    from hepgen.simulate.showers import PRODUCER_VERSION

    assert main(["models"]) == 0
    listing = capsys.readouterr().out.splitlines()
    # one line per shipped model, its NAME first
    assert sorted(line.split()[0] for line in listing) == sorted(shipped_models())
    for name, folder in shipped_models().items():
        line = next(line for line in listing if line.split()[0] == name)
        flagged = "[older stand-in: trained on version" in line
        version = card(folder).get("stand_in_version")
        assert flagged == (version is not None and version < PRODUCER_VERSION), name
        if name.startswith(("mdma-gan", "mdma-flow")):
            assert not flagged


@pytest.mark.parametrize("name", ["mdma-gan/t30", "mdma-flow/t30", "epic-fm/t30"])
def test_shipped_models_sample_reproducibly_without_training(name, tmp_path, capsys):
    assert main(["models"]) == 0
    assert name in capsys.readouterr().out
    files = sample_twice(name, 400, tmp_path)
    from hepgen.data.jetnet import read_jets
    from hepgen.metrics.jets import relative_mass

    jets = read_jets(files[0])
    assert jets.particle_features.shape == (400, 30, 4)
    assert np.mean(jets.multiplicity == 30) > 0.95  # top jets nearly always fill 30 slots
    # a trained top-jet model: relative masses around the top peak (m/pT ~ 0.15), not noise
    assert 0.08 < np.median(relative_mass(jets.particles)) < 0.25


def test_data_calo_cli(tmp_path, capsys):
    out = tmp_path / "a.h5"
    for target in (out, tmp_path / "b.h5"):
        r = run("data", "calo", "--geometry", "ds1-photons", "--num-showers", "50", "--seed", "5", "--out", str(target),
                "--no-progress")
        assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (tmp_path / "b.h5").read_bytes()
    before = out.read_bytes()
    expect_one_error_line(capsys, ["data", "calo", "--geometry", "ds2", "--num-showers", "0", "--out", str(out)], "--num-showers")
    expect_one_error_line(capsys, ["data", "calo", "--geometry", "ds9", "--num-showers", "5", "--out", str(out)], "ds9")
    expect_one_error_line(capsys, ["data", "calo", "--geometry", "ds2", "--num-showers", "5", "--out",
                           str(tmp_path / "no" / "x.h5")], "does not exist")
    assert out.read_bytes() == before


@pytest.mark.parametrize("name,voxels", [("calodream/ds2", 6480), ("caloinn/ds1-photons", 368), ("mdma-calo/ds2", 6480)])
def test_shipped_calo_models_sample_reproducibly(name, voxels, tmp_path):
    from hepgen.shipped import shipped_models

    if name not in shipped_models():
        pytest.skip(f"{name} is not shipped in this checkout")
    files = sample_twice(name, 30, tmp_path)
    from hepgen.data.calo import read_showers

    showers = read_showers(files[0])
    assert showers.showers.shape == (30, voxels)
    response = showers.showers.sum(1) / showers.incident_energies[:, 0]
    assert 0.5 < np.median(response) < 1.3  # a trained model deposits about the incident energy


@pytest.mark.parametrize("name", ["event-cflow/ttbar", "event-maf-types/ttbar"])
def test_shipped_event_models_sample_reproducibly(name, tmp_path):
    """The shipped event models sample without training, reproducibly, and every event passes the selection."""
    from hepgen.data.darkmachines import read_events
    from hepgen.simulate.events import selection_mask

    files = sample_twice(name, 300, tmp_path, suffix=".txt")
    events = read_events(files[0])
    assert len(events) == 300 and selection_mask(events).all()
    counts = events.count_vectors()
    assert 3.5 < counts[:, :2].sum(1).mean() < 7  # ttbar: about five jets + b-jets per event
