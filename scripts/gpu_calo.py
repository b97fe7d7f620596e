"""Train the calorimeter models at thesis size on a lent GPU within a fixed budget and ship them.

    python scripts/gpu_calo.py --out $OUT [--minutes 9] [--models caloinn/ds1-photons calodream/ds2]
    python scripts/gpu_calo.py --out /tmp/gpu --tiny        # the whole path on CPU in seconds (tests)

The CPU campaign cannot reach the thesis sizes of seed 002 (CaloINN: 12 RQS couplings of
4 x 256, 18.8M parameters, 200 epochs; CaloDREAM on DS2: a 6-block ViT of width 480 trained
for 400 epochs), so a lent GPU trains them, in this order of need: ``caloinn/ds1-photons``,
``caloinn/ds1-pions``, ``calodream/ds2``.

1. The training showers are made on the device with the stand-in (``hepgen data calo``'s
   producer: numpy, scipy and h5py only; all cores through the standard library's process
   pool where Dask is missing), 100k per geometry at seed 1 (for DS1 the same files the
   CPU campaign trains on), so nothing large has to travel.
2. For each model one calibration epoch measures the epoch time on this device; the
   schedule (one-cycle for CaloINN, warm-up + cosine for CaloDREAM) is then planned over the
   epochs that fit the model's share of the budget.
3. The trained run is shipped to ``OUT/MODEL-GEOMETRY/`` (config, transform, float16 weights,
   card.yaml with epochs, minutes and device: ready to copy into ``hepgen/shipped/MODEL/GEOMETRY``);
   a sampling check times 2000 showers at batch 1000 on the device.

``OUT/summary.json`` lists what was done and how long each stage took; the full bench
(``hepgen bench calo``) runs afterwards on the CPU machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

TINY = {
    "caloinn": {"flow": {"transforms": 2, "bins": 4, "hidden": 16, "layers": 1}, "training": {"batch_size": 64}},
    "calodream": {"energy": {"dim": 16, "depth": 1, "heads": 2, "head_hidden": 16, "head_layers": 1},
                  "shape": {"dim": 24, "depth": 1, "heads": 2, "cond_dim": 16},
                  "training": {"batch_size": 32},
                  "sampler": {"steps": 2, "energy_steps": 4, "reference_steps": 4, "bespoke_pairs": 16,
                              "bespoke_iterations": 2}},
}
#: each model's share of the training time
SHARES = {"caloinn/ds1-photons": 0.3, "caloinn/ds1-pions": 0.3, "calodream/ds2": 0.4}


def make_showers(geometry: str, num: int, path: Path, echo) -> Path:
    """The campaign's training file of ``geometry`` (seed 1), made on all cores unless present."""
    from hepgen.simulate.showers import generate_showers

    if not path.exists():
        start = time.perf_counter()
        generate_showers(geometry, num, seed=1, out=path, workers=os.cpu_count(), progress=False,
                         attrs={"seed": 1})
        echo(f"{geometry}: {num} training showers made in {time.perf_counter() - start:.0f} s")
    return path


def train_within(model: str, data: Path, out: Path, seconds: float, tiny: bool, echo) -> tuple[Path, int]:
    """Calibrate one epoch, then train ``model`` with the schedule planned over the epochs
    that fit in ``seconds`` (at least 1); returns the run folder and the planned epochs."""
    from hepgen.training.budget import plan_epochs
    from hepgen.training.calo import train_calo_model

    override = TINY[model] if tiny else {}
    epochs = plan_epochs(model, out, seconds, lambda probe: train_calo_model(
        model, data, probe, max_epochs=1, progress=False, override=override), echo, overhead=1.05)
    training = {**override.get("training", {}), "schedule_epochs": epochs}
    run = train_calo_model(model, data, out, max_epochs=epochs, max_time=seconds / 60, progress=False,
                           override={**override, "training": training})
    return run, epochs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=9.0, help="whole budget: data, training, shipping, checks")
    ap.add_argument("--models", nargs="+", default=list(SHARES), choices=list(SHARES))
    ap.add_argument("--data", type=Path, default=Path("data/calo"), help="folder of the training files (made if missing)")
    ap.add_argument("--num-showers", type=int, default=100_000)
    ap.add_argument("--tiny", action="store_true", help="tiny networks and samples: the CPU test of this script")
    args = ap.parse_args(argv)

    from hepgen.models.assemblies.calo import CaloSurrogate
    from hepgen.shipped.ship import ship_calo_run
    from hepgen.training.budget import finish_budget_run, start_budget_run

    began, echo, device = start_budget_run(args.out)
    args.data.mkdir(parents=True, exist_ok=True)
    num = 300 if args.tiny else args.num_showers
    suffix = "_tiny" if args.tiny else "_train"
    files = {name: make_showers(name.split("/")[1], num, args.data / f"{name.split('/')[1]}{suffix}.h5", echo)
             for name in args.models}
    check_s = 10 if args.tiny else 40
    train_s = max(args.minutes * 60 - check_s * len(args.models) - (time.perf_counter() - began), 10)
    summary = {"device": device, "minutes": args.minutes, "models": {}}
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    for name in args.models:
        model, geometry = name.split("/")
        t0 = time.perf_counter()
        share = train_s * SHARES[name] / sum(SHARES[m] for m in args.models)
        run, planned = train_within(model, files[name], work / f"{model}-{geometry}", share, args.tiny, echo)
        minutes = (time.perf_counter() - t0) / 60
        dest = ship_calo_run(run, args.out / f"{model}-{geometry}", hardware=device, hours=round(minutes / 60, 3),
                             summary=f"{model} (thesis size) on {geometry}, trained on {device} by scripts/gpu_calo.py")
        surrogate = CaloSurrogate.load(dest)
        n = 64 if args.tiny else 2000
        start = time.perf_counter()
        sample = surrogate.sample(n, seed=1, batch_size=min(n, 1000))
        ms = 1e3 * (time.perf_counter() - start) / n
        card = yaml.safe_load((dest / "card.yaml").read_text())
        card.update(planned_epochs=planned, device_ms_per_shower_batch_1000=round(ms, 3))
        (dest / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
        summary["models"][name] = {"seconds": time.perf_counter() - t0, "card": card,
                                   "sampled": list(sample.showers.shape)}
        echo(f"{name}: shipped to {dest} (epochs {card['epochs_trained']}, {ms:.2f} ms per shower)")
    finish_budget_run(args.out, summary, began, echo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
