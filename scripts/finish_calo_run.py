"""Turn the Lightning checkpoints of an interrupted calodream run into a run folder.

    python scripts/finish_calo_run.py RUN_DIR [--bespoke-steps 8] [--iterations 100] [--pairs 128]

Refits the (deterministic) shower transform on the run's training data, loads the energy
network and the EMA shape network from ``checkpoints/{energy,shape}.ckpt``, fits the
bespoke solvers against midpoint-100 reference solves, and writes config.yaml,
transform.json and weights.pt, so ``hepgen sample RUN_DIR`` works.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from hepgen.data.calo import read_showers
from hepgen.models.assemblies.calo import CaloSurrogate
from hepgen.training.calo import fit_bespoke_solvers, shower_transform


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--bespoke-steps", type=int, nargs="+", default=[8])
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cfg = yaml.safe_load((args.run / "config.yaml").read_text())
    sample = read_showers(cfg["training_data"])
    e_inc = sample.incident_energies[:, 0].astype(np.float64)
    transform = shower_transform(sample.geometry.name, e_inc, cfg["training"])
    showers = sample.showers.astype(np.float64)
    transform.fit(showers, e_inc)
    u, _, c = transform.transform(showers[:4096], e_inc[:4096])
    del showers
    networks = CaloSurrogate.build(cfg)
    energy = torch.load(args.run / "checkpoints" / "energy.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    networks["energy"].load_state_dict({k[4:]: v for k, v in energy.items() if k.startswith("net.")})
    shape = torch.load(args.run / "checkpoints" / "shape.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    networks["shape"].load_state_dict({k[len("ema.module."):]: v for k, v in shape.items()
                                       if k.startswith("ema.module.")})
    for net in networks.values():
        net.eval()
    sampler = dict(cfg["sampler"], bespoke_steps=args.bespoke_steps, bespoke_iterations=args.iterations,
                   bespoke_pairs=args.pairs)
    cfg["sampler"] = dict(cfg["sampler"], bespoke_steps=args.bespoke_steps, bespoke_iterations=args.iterations,
                          bespoke_pairs=args.pairs, steps=args.bespoke_steps[0])
    solvers = fit_bespoke_solvers(networks["shape"], torch.as_tensor(c, dtype=torch.float32),
                                  torch.as_tensor(transform.u_to_latent(u), dtype=torch.float32), sampler, args.seed)
    CaloSurrogate(cfg, transform, networks, solvers).save(args.run)
    print(f"wrote {args.run}")


if __name__ == "__main__":
    main()
