"""Copy a trained run into hepgen/shipped/MODEL/DATASET so it samples without training.

    python scripts/ship_model.py RUN_DIR MODEL/DATASET [--sampler-method midpoint --sampler-steps 16]
    python scripts/ship_model.py GRID_RUN bib-ae/ild-photons --minutes 20 [--bench calo_bench_ild-photons.json]

Keeps only what sampling needs, refits the multiplicity KDE on the full (untruncated)
multiplicities of the training file, and writes card.yaml (how it was trained).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

from hepgen.models.assemblies.calo import CALO_MODELS
from hepgen.models.assemblies.events import EVENT_MODELS
from hepgen.models.assemblies.hits import HIT_MODELS
from hepgen.models.assemblies.grids import GRID_MODELS
from hepgen.shipped import ROOT


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--sampler-method")
    ap.add_argument("--sampler-steps", type=int)
    ap.add_argument("--summary", default="")
    ap.add_argument("--minutes", type=float, help="grid and hit models: wall minutes of the training, for the card")
    ap.add_argument("--note", help="grid and hit models: a note for the card (what the model is and is not)")
    ap.add_argument("--num-showers", type=int, help="grid models: training showers, if the run used --num-showers")
    ap.add_argument("--card-extra", type=Path, help="grid and hit models: YAML with 'evaluation' (and for grids 'bench') for the card")
    ap.add_argument("--bench", type=Path, help="grid models: the calo_bench_GEOMETRY.json of `hepgen bench calo` with "
                    "a row for RUN: the card's evaluation and bench come from it")
    ap.add_argument("--reproduce", help="the commands that remake the run, for the card")
    args = ap.parse_args()

    dest = ROOT / args.name
    dest.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((args.run / "config.yaml").read_text())
    if cfg["model"] in CALO_MODELS:
        ship_calo(args, cfg, dest)
        return
    if cfg["model"] in EVENT_MODELS:
        ship_events(args, cfg, dest)
        return
    extra = yaml.safe_load(args.card_extra.read_text()) if args.card_extra else {}
    if cfg["model"] in HIT_MODELS:
        from hepgen.shipped.ship import ship_hits_run

        sampler = {"method": args.sampler_method, "steps": args.sampler_steps} if args.sampler_method else None
        ship_hits_run(args.run, dest, args.summary, sampler, minutes=args.minutes, note=args.note,
                      evaluation=extra.get("evaluation"))
        print(f"shipped {args.run} as {args.name} in {dest}")
        return
    if cfg["model"] in GRID_MODELS:
        from hepgen.shipped.ship import grid_card_from_bench, ship_grid_run

        if args.bench:  # the bench row of this run folder, under the name it was benched with
            extra["evaluation"], extra["bench"] = grid_card_from_bench(args.bench, str(args.run).rstrip("/"))
        ship_grid_run(args.run, dest, args.summary, minutes=args.minutes, note=args.note,
                      evaluation=extra.get("evaluation"), bench=extra.get("bench"),
                      num_showers=args.num_showers, reproduce=args.reproduce)
        print(f"shipped {args.run} as {args.name} in {dest}")
        return
    from hepgen.shipped.ship import ship_jet_run

    sampler = {"method": args.sampler_method, "steps": args.sampler_steps} if args.sampler_method else None
    ship_jet_run(args.run, dest, args.summary, sampler)
    print(f"shipped {args.run} as {args.name} in {dest}")


def ship_calo(args, cfg: dict, dest: Path) -> None:
    """Calorimeter runs: :func:`hepgen.shipped.ship.ship_calo_run`."""
    from hepgen.shipped.ship import ship_calo_run

    sampler = {"method": args.sampler_method, "steps": args.sampler_steps} if args.sampler_method else None
    ship_calo_run(args.run, dest, summary=args.summary, sampler=sampler)
    print(f"shipped {args.run} as {args.name} in {dest}")


def ship_events(args, cfg: dict, dest: Path) -> None:
    """Event runs: config, transform, count-vector tables and float32 weights (the flows are
    small; half precision would shift their log-densities), and the card."""
    if args.sampler_method:
        cfg["sampler"] = {**cfg.get("sampler", {}), "method": args.sampler_method, "steps": args.sampler_steps}
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for name in ("transform.json", "counts.json", "weights.pt", "solvers.pt"):
        if name == "solvers.pt" and not (args.run / name).exists():
            continue
        shutil.copy(args.run / name, dest / name)
    from hepgen.shipped.ship import stage_epochs

    epochs = stage_epochs(args.run)
    card = {
        "summary": args.summary or f"{cfg['model']} on {cfg.get('process')} events",
        "model": cfg["model"],
        "training_data": cfg.get("training_data"),
        "epochs_trained": epochs,
        "hardware": "2 CPU cores, one thread per run",
    }
    (dest / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    print(f"shipped {args.run} as {args.name} in {dest}")


if __name__ == "__main__":
    main()
