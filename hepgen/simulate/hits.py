"""Calorimeter hit clouds of jets: Pythia jets deposited on an ECAL-like eta-phi grid.

The reference of the hit-cloud diffusion model (seed 004 ch. 6, whose inputs are the
ECAL images of CMS end-to-end top jets: 125 x 125 cells of 0.025 x 0.025 around the jet
axis, the top 300 hits). CMS's simulation cannot run here, so the deposits come from a
documented stand-in on top of the project's Pythia 8 + FastJet jets
(:mod:`hepgen.simulate.jets`, 150 constituents per jet, MPI off):

1. every visible constituent deposits its energy E = pT cosh(eta) in the calorimeter
   (tracks, HCAL and the ECAL/HCAL split are not modelled: one calorimeter sees all);
2. lateral spread: a particle's energy is shared among the 3 x 3 cells around it by a
   Gaussian of width ``spread`` (0.6 cells, ~1 Moliere radius of the CMS ECAL, 0.0174 in
   eta-phi) integrated over each cell;
3. each cell's energy is smeared with a resolution sigma/E = a / sqrt(E) (+) c
   (a = 0.10 sqrt(GeV), c = 0.01; a sampling-calorimeter-like stochastic term) plus an
   electronic noise of ``noise`` GeV, and cells below ``threshold`` (0.1 GeV) are dropped;
4. the ``max_hits`` most energetic cells are kept as (eta_rel, phi_rel, E) at the cell
   centres, relative to the jet axis, sorted by energy.

Written by hand because no library deposits generator-level particles on a
calorimeter grid (Delphes would, but it is not installable here). Jets come in seeded
chunks from the jet producer; the deposit of chunk k uses the seed derived from
(seed, k), so a file is identical for any number of workers.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from hepgen.data.hits import HitSample
from hepgen.errors import OptionError
from hepgen.simulate.parallel import chunk_sizes, derive_seed

CELL = 0.025
GRID = 125
STOCHASTIC, CONSTANT = 0.10, 0.01


def deposit(particle_features: np.ndarray, jet_features: np.ndarray, rng: np.random.Generator, max_hits: int = 300,
            cell: float = CELL, grid: int = GRID, spread: float = 0.6, noise: float = 0.02,
            threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Hit clouds (B, max_hits, 3) and masks of jets in the JetNet layout (see the module docstring)."""
    pf = np.asarray(particle_features, np.float64)
    jf = np.asarray(jet_features, np.float64)
    b, p = pf.shape[:2]
    real = pf[..., 3] > 0.5
    eta = jf[:, 1:2] + pf[..., 0]
    energy = np.where(real, pf[..., 2] * jf[:, 0:1] * np.cosh(eta), 0.0)
    half = grid * cell / 2
    # position in cell units from the grid's lower edge; cell index and offset in the cell
    u = (pf[..., 0] + half) / cell
    v = (pf[..., 1] + half) / cell
    iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    du, dv = u - iu - 0.5, v - iv - 0.5
    edges = np.array([-1.5, -0.5, 0.5, 1.5])

    def shares(d):  # (B, P, 3): Gaussian mass in the cells at offsets -1, 0, 1
        c = ndtr((edges[None, None, :] - d[..., None]) / spread)
        s = np.diff(c, axis=-1)
        return s / s.sum(-1, keepdims=True)

    su, sv = shares(du), shares(dv)
    cells = np.zeros((b, grid * grid))
    jet = np.repeat(np.arange(b), p).reshape(b, p)
    for a in range(3):
        for c in range(3):
            cu, cv = iu + a - 1, iv + c - 1
            ok = real & (cu >= 0) & (cu < grid) & (cv >= 0) & (cv < grid)
            w = energy * su[..., a] * sv[..., c]
            np.add.at(cells, (jet[ok], cu[ok] * grid + cv[ok]), w[ok])
    hit = cells > 0
    e = cells[hit]
    sigma = np.sqrt(STOCHASTIC ** 2 * e + (CONSTANT * e) ** 2 + noise ** 2)
    cells[hit] = np.clip(e + sigma * rng.standard_normal(e.shape), 0.0, None)
    cells[cells < threshold] = 0.0
    order = np.argsort(-cells, axis=1, kind="stable")[:, :max_hits]
    top = np.take_along_axis(cells, order, axis=1)
    mask = top > 0
    centre = (np.arange(grid) + 0.5) * cell - half
    hits = np.stack([centre[order // grid], centre[order % grid], top], -1) * mask[..., None]
    return hits.astype(np.float32), mask


def generate_hits(jet_type: str, num_jets: int, seed: int = 0, max_hits: int = 300, workers: int | None = None,
                  scheduler: str | None = None, progress: bool = True) -> HitSample:
    """Hit clouds of ``num_jets`` Pythia jets of ``jet_type`` (see the module docstring)."""
    from hepgen.simulate.jets import CHUNK_JETS, generate_jets

    if max_hits <= 0:
        raise OptionError(f"--max-hits must be positive, got {max_hits}")
    jets = generate_jets(jet_type, num_jets, 150, seed=seed, workers=workers, scheduler=scheduler,
                         progress=progress)
    hits, masks, start = [], [], 0
    for k, size in enumerate(chunk_sizes(num_jets, CHUNK_JETS)):
        rng = np.random.default_rng(derive_seed(seed + 7919, k))
        h, m = deposit(jets.particle_features[start:start + size], jets.jet_features[start:start + size], rng,
                       max_hits)
        hits.append(h)
        masks.append(m)
        start += size
    attrs = {"jet_type": jet_type, "seed": seed, "generator": "pythia8+fastjet+hepgen-ecal", "cell": CELL,
             "grid": GRID, "max_hits": max_hits, "resolution": f"{STOCHASTIC}/sqrt(E) + {CONSTANT}"}
    return HitSample(np.concatenate(hits), np.concatenate(masks), attrs)
