"""The GPU training script (issue 11 C) runs its whole path on CPU with a tiny budget."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import yaml

from hepgen.models.assemblies.jets import JetSurrogate

SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu_jets.py"


def test_gpu_script_trains_ships_and_benches_within_its_budget(fixture_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_jets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    data = fixture_dir / "t.hdf5"
    assert module.main(["--out", str(out), "--tiny", "--minutes", "0.15", "--train", str(data),
                        "--test", str(data)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"mdma-flow", "mdma-gan"}
    for model in ("mdma-flow", "mdma-gan"):
        card = yaml.safe_load((out / f"{model}-t30" / "card.yaml").read_text())
        assert card["epochs_trained"] >= 1 and card["selected_epoch"] is not None
        assert card["epochs_trained"] <= card["planned_epochs"]  # the schedule was sized to the budget
        assert JetSurrogate.load(out / f"{model}-t30").sample(32, seed=1).particle_features.shape == (32, 30, 4)
    bench = json.loads((out / "bench" / "jets_bench.json").read_text())
    assert {"truth floor", "pythia"} <= set(bench) and len(bench) == 4
    assert not (out / "work").exists()


def test_gpu_calo_script_makes_data_trains_and_ships(tmp_path):
    """Issue 12: the thesis-size calorimeter models are GPU work; the script's whole path
    (showers made on the device, calibrated schedule, shipping, a sampling check) runs on
    CPU with tiny networks."""
    from hepgen.models.assemblies.calo import CaloSurrogate

    spec = importlib.util.spec_from_file_location("gpu_calo", SCRIPT.parent / "gpu_calo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    assert module.main(["--out", str(out), "--tiny", "--minutes", "0.2", "--data", str(tmp_path / "data"),
                        "--models", "caloinn/ds1-photons", "calodream/ds2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"caloinn/ds1-photons", "calodream/ds2"}
    for name, voxels in (("caloinn-ds1-photons", 368), ("calodream-ds2", 6480)):
        card = yaml.safe_load((out / name / "card.yaml").read_text())
        assert min(card["epochs_trained"].values()) >= 1 and card["planned_epochs"] >= 1
        assert CaloSurrogate.load(out / name).sample(8, seed=1).showers.shape == (8, voxels)
    assert (tmp_path / "data" / "ds2_tiny.h5").exists() and not (out / "work").exists()


def test_budget_planning_and_log_shared_by_the_gpu_scripts(tmp_path, monkeypatch, capsys):
    """hepgen.training.budget: the epochs planned from one timed calibration epoch, the
    throw-away probe folder, and the log line format of both scripts."""
    from hepgen.training import budget

    clock = [100.0]
    monkeypatch.setattr(budget.time, "perf_counter", lambda: clock[0])
    seen = []

    def calibrate(probe):  # one "epoch" of 2 s that writes into its folder
        probe.mkdir()
        (probe / "x").write_text("1")
        seen.append(probe)
        clock[0] += 2.0

    lines = []
    out = tmp_path / "work" / "mdma-gan-run"
    out.parent.mkdir()
    assert budget.plan_epochs("mdma-gan", out, 100.0, calibrate, lines.append, overhead=1.1) == 44  # 98 / 2.2
    assert seen == [tmp_path / "work" / ".mdma-gan-run-probe"] and not seen[0].exists()
    assert lines == ["mdma-gan: 2.0 s per epoch (with start-up) -> 44 epochs planned"]
    assert budget.plan_epochs("m", out, 1.0, calibrate, lines.append, overhead=1.05) == 1  # at least one
    echo = budget.budget_echo(tmp_path / "log.txt", began=clock[0] - 3.4)
    echo("device: CPU")
    echo("done")
    assert capsys.readouterr().out == "[     3 s] device: CPU\n[     3 s] done\n"
    import gc

    del echo  # the log file is closed with the echo that holds it
    gc.collect()
    assert (tmp_path / "log.txt").read_text() == "[     3 s] device: CPU\n[     3 s] done\n"
    # the frame of a run: log and device at the start; work/ removed, summary.json written at the end
    run = tmp_path / "run"
    began, echo, device = budget.start_budget_run(run)
    (run / "work").mkdir()
    clock[0] += 61.0
    budget.finish_budget_run(run, {"device": device, "x": np.float32(0.5)}, began, echo)
    del echo
    gc.collect()
    assert json.loads((run / "summary.json").read_text()) == {"device": device, "x": 0.5, "seconds": 61.0}
    assert not (run / "work").exists()
    assert (run / "log.txt").read_text() == f"[     0 s] device: {device}\n[    61 s] done in 61 s\n"
