"""Train the jet models at thesis size on a lent GPU within a fixed budget, ship and bench them.

    python scripts/gpu_jets.py --out $OUT [--minutes 9] [--train data/t30_train.h5 --test data/t30_test.h5]
    python scripts/gpu_jets.py --out /tmp/gpu --tiny        # the whole path on CPU in seconds (tests)

For each model (``mdma-flow`` at the thesis size of seed 000 Table 5.4/5.5, 4.9M
parameters, and ``mdma-gan``): one calibration epoch measures the epoch time on this
device, the warm-up + cosine schedule is then planned over the epochs that fit the
model's share of the budget, and the run trains with the combined-score selection
(:mod:`hepgen.training.selection`). The selected weights are shipped to
``OUT/MODEL-t30/`` (config, transforms, weights, card.yaml: ready to copy into
``hepgen/shipped/MODEL/t30``) and benched against the test jets with the truth floor
(``OUT/bench/jets_bench.md|json``). ``OUT/summary.json`` lists what was done and how long
each stage took.

On the device machine (no network, no Pythia): carry the training and test files (or
smaller ones, ``--train-jets``/``--test-jets`` cut them) and the wheels of the pure-Python
packages its image lacks (zuko, torchcfm, energyflow, mplhep, hist; see the device
tool's README), and run this script with the image's python3.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

TINY_NETWORKS = {
    "mdma-flow": dict(hidden=16, l_dim=8, heads=2, num_blocks=1, time_dim=4),
    "mdma-gan": dict(hidden=16, l_dim=8, heads=2, num_blocks=1, hidden_gen=16, l_dim_gen=8, heads_gen=2,
                     num_blocks_gen=1),
}
#: each model's share of the training time
SHARES = {"mdma-flow": 0.55, "mdma-gan": 0.45}
GPU_SAMPLER = {"mdma-flow": {"method": "midpoint", "steps": 16}, "mdma-gan": {}}


def cut(path: Path, num: int | None, dest: Path) -> Path:
    """The first ``num`` jets of ``path`` as a new file (the whole file when None)."""
    if not num:
        return path
    from hepgen.data.jetnet import JetSample, read_jets, write_jets

    s = read_jets(path)
    write_jets(JetSample(s.particle_features[:num], s.jet_features[:num], s.jet_type), dest)
    return dest


def train_within(model: str, data: Path, out: Path, seconds: float, tiny: bool, echo) -> Path:
    """Calibrate one epoch, then train ``model`` with the schedule planned over the epochs
    that fit in ``seconds`` (at least 1)."""
    from hepgen.training.budget import plan_epochs
    from hepgen.training.run import train_jet_model

    network = TINY_NETWORKS[model] if tiny else {}
    calibration = {"network": network, "training": {"select_every": 10**6}, "sampler": GPU_SAMPLER[model]}
    # selection costs about a tenth of an epoch each time; select ~10 times
    epochs = plan_epochs(model, out, seconds, lambda probe: train_jet_model(
        model, data, probe, max_epochs=1, progress=False, override=calibration), echo, overhead=1.1)
    training = {"schedule_epochs": epochs, "select_every": max(1, epochs // 10)}
    if tiny:
        training.update(select_jets=40, batch_size=20)
    return train_jet_model(model, data, out, max_epochs=epochs, max_time=seconds / 60, progress=False,
                           override={"network": network, "training": training, "sampler": GPU_SAMPLER[model]})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=9.0, help="whole budget: training, shipping and bench")
    ap.add_argument("--train", type=Path, default=Path("data/t30_train.h5"))
    ap.add_argument("--test", type=Path, default=Path("data/t30_test.h5"))
    ap.add_argument("--train-jets", type=int)
    ap.add_argument("--test-jets", type=int)
    ap.add_argument("--models", nargs="+", default=list(SHARES))
    ap.add_argument("--tiny", action="store_true", help="tiny networks and samples: the CPU test of this script")
    args = ap.parse_args(argv)

    from hepgen.bench.jets import run_jets_bench
    from hepgen.shipped.ship import ship_jet_run
    from hepgen.training.budget import finish_budget_run, start_budget_run

    began, echo, device = start_budget_run(args.out)
    for path in (args.train, args.test):
        if not path.exists():
            echo(f"missing {path}")
            return 2
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    train = cut(args.train, args.train_jets, work / "train.h5")
    test = cut(args.test, args.test_jets, work / "test.h5")
    bench_s = 30 if args.tiny else 90
    train_s = max(args.minutes * 60 - bench_s - (time.perf_counter() - began), 10)
    summary = {"device": device, "minutes": args.minutes, "models": {}}
    shipped = []
    for model in args.models:
        t0 = time.perf_counter()
        run = train_within(model, train, work / f"{model}-run", train_s * SHARES[model] / sum(
            SHARES[m] for m in args.models), args.tiny, echo)
        dest = ship_jet_run(run, args.out / f"{model}-t30", training_data=str(train), hardware=device,
                            summary=f"{model} (thesis size) trained on {device} by scripts/gpu_jets.py")
        shipped.append(dest)
        card = yaml.safe_load((dest / "card.yaml").read_text())
        summary["models"][model] = {"seconds": time.perf_counter() - t0, "card": card}
        echo(f"{model}: shipped to {dest} (epochs {card['epochs_trained']}, selected {card['selected_epoch']})")
    n = 200 if args.tiny else 50_000
    run_jets_bench([str(p) for p in shipped], test, train, args.out / "bench", num_jets=n,
                   batch_size=n if args.tiny else 4096, pythia_jets=20 if args.tiny else 200,
                   time_jets=50 if args.tiny else 2000, few_step=[("midpoint", 2), ("midpoint", 8)],
                   few_step_jets=n if args.tiny else 10_000, echo=echo)
    finish_budget_run(args.out, summary, began, echo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
