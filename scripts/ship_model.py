"""Copy a trained run into hepgen/shipped/MODEL/DATASET so it samples without training.

    python scripts/ship_model.py RUN_DIR MODEL/DATASET [--sampler-method midpoint --sampler-steps 16]

Keeps only what sampling needs, refits the multiplicity KDE on the full (untruncated)
multiplicities of the training file, and writes card.yaml (how it was trained).
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import yaml

from hepgen.models.assemblies.calo import CALO_MODELS
from hepgen.models.assemblies.events import EVENT_MODELS
from hepgen.shipped import ROOT


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--sampler-method")
    ap.add_argument("--sampler-steps", type=int)
    ap.add_argument("--summary", default="")
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
    from hepgen.shipped.ship import ship_jet_run

    sampler = {"method": args.sampler_method, "steps": args.sampler_steps} if args.sampler_method else None
    ship_jet_run(args.run, dest, args.summary, sampler)
    print(f"shipped {args.run} as {args.name} in {dest}")


def ship_calo(args, cfg: dict, dest: Path) -> None:
    """Calorimeter runs: config, transform, weights stored as float16 (half the size; the
    networks load them back into float32), and the card."""
    import torch

    if args.sampler_method:
        cfg["sampler"] = {**cfg.get("sampler", {}), "method": args.sampler_method, "steps": args.sampler_steps}
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copy(args.run / "transform.json", dest / "transform.json")
    state = torch.load(args.run / "weights.pt", map_location="cpu", weights_only=True)

    def half(obj):
        if isinstance(obj, dict):
            return {k: half(v) for k, v in obj.items()}
        return obj.half() if torch.is_tensor(obj) and obj.is_floating_point() else obj

    torch.save(half(state), dest / "weights.pt")
    logs = sorted((args.run / "logs").glob("*/metrics.csv"))
    epochs = {}
    for log in logs:
        rows = [r for r in csv.DictReader(open(log)) if r.get("epoch")]
        epochs[log.parent.name] = max(int(r["epoch"]) for r in rows) + 1 if rows else 0
    card = {"summary": args.summary or f"{cfg['model']} on {cfg['geometry']}", "model": cfg["model"],
            "geometry": cfg["geometry"], "training_data": cfg.get("training_data"), "epochs_trained": epochs,
            "hardware": "2 CPU cores, one thread per run", "weights": "float16 on disk"}
    (dest / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    print(f"shipped {args.run} as {args.name} in {dest}")



def ship_events(args, cfg: dict, dest: Path) -> None:
    """Event runs: config, transform, count-vector tables and float32 weights (the flows are
    small; half precision would shift their log-densities), and the card."""
    if args.sampler_method:
        cfg["sampler"] = {**cfg.get("sampler", {}), "method": args.sampler_method, "steps": args.sampler_steps}
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for name in ("transform.json", "counts.json", "weights.pt"):
        shutil.copy(args.run / name, dest / name)
    epochs = {}
    for log in sorted((args.run / "logs").glob("*/metrics.csv")):
        rows = list(csv.DictReader(open(log)))
        epochs[log.parent.name] = max(int(r["epoch"]) for r in rows) + 1 if rows else 0
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
