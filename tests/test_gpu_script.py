"""The GPU training script (issue 11 C) runs its whole path on CPU with a tiny budget."""

import importlib.util
import json
from pathlib import Path

import yaml

from hepgen.models.assemblies.jets import JetSurrogate

SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu_jets.py"


def test_gpu_script_trains_ships_and_benches_within_its_budget(fixture_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_jets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    data = fixture_dir / "t.hdf5"
    assert module.main(["--out", str(out), "--tiny", "--minutes", "0.3", "--train", str(data),
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
