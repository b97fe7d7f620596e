"""Training of the normalised autoencoder (NAE) on jet images (seed 002 L1409-1462, App. B).

Two phases (L1417-1421):

1. **AE pre-training**: the autoencoder
   (:class:`~hepgen.models.assemblies.anomaly.NormalizedAutoencoder`, spherical latent
   space) minimises the MSE of the background images with Adam (lr 1e-3; Table 5.1:
   15k iterations of batch 2048, i.e. 300 epochs of 100k jets). The result is the
   **plain-AE baseline** (score ``ae``): its reconstruction error is the usual AE
   anomaly score, which tags complex top jets in QCD but fails the reverse (L1478-1480).
2. **NAE training** as an energy-based model, p(x) = exp(-E(x)) / Z with E the MSE
   (eq. 5.6). The gradient of the negative log likelihood is
   <grad E>_data - <grad E>_model (eq. 3.34), so each iteration minimises

       L = <E(x+)> - <E(x-)> + gamma <E(x+)^2> + l2 ||w||^2

   with x+ a batch of training images and x- negative samples of the model; gamma = 1
   (the average squared energy of the training batch against a diverging negative
   energy) and l2 = 1e-8 (the L2 norm of the weights), Appendix B. Adam, lr 1e-5,
   40k iterations of batch 128 (Table 5.1; "50 epochs").

**Negative samples by on-manifold initialisation (OMI, L1425-1431)**: a latent chain on
the unit sphere, Langevin on H(z) = E(f_D(z)) (eq. 5.7, 5.8; Table 5.1: lambda_z = 100,
sigma_z = 1e-2, 30 steps, Metropolis step; here see "Chain units"), started from the replay buffer (probability
0.95) or uniformly on the sphere; the final latent points go back into the buffer
(10000 states, Appendix B); the decoded points f_D(z) start a chain in image space
(eq. 3.35; Table 5.1: lambda_x = 50, sigma_x = 1e-4, 30 steps, Metropolis step and noise
annealing; here see "Chain units"; states clamped to [0, 1]); its end points are x-. The Langevin machinery is
:mod:`hepgen.models.blocks.langevin`. (Table 5.1 quotes T_x = 1e-7, T_z ~ 1e-6; its own
lambda and sigma give sigma^2 / (2 lambda) = 1e-10 and 5e-7.)

**Chain units (a departure from Table 5.1's numbers)**: both chains sample
exp(-E / (u T)) with u = ``nae.energy_unit``, by default the mean energy of the pre-trained
AE on the training images (:func:`energy_unit`, fixed for the whole phase); step sizes and
temperatures are in units of u. Table 5.1's absolute numbers assume the seed's energy
scale; on ours (E ~ 1e-6 for images that sum to 1) they made both chains idle, measured on
Pythia jets (8k tops, AE E_data = 4.1e-6): the latent drift lambda_z |grad H| was 1.7e-5
against a noise of 1.4e-2 and T_z = 5e-7 lay above the whole latent range of H (1e-10 to
1.8e-7), so 99.99 % of the proposals were accepted and the chain drew uniform points on the
sphere (H 3.67e-8 -> 3.52e-8 in 10 steps, 3.32e-8 in 300); the image chain at
T_x = 1e-10 left the negatives at the decoder's fixed points, E(x-) = 1.1e-8 ~ 0.003 E(x+),
where the loss has no gradient (a zero residual has none). The defaults (``NAE_THESIS``)
put the latent temperature at 4.5e-4 u (drift ~ noise, steps clipped to 0.1 rad) and the
image chain at 1.3e-3 u without Metropolis step or annealing, so its thermal excursion off
the manifold (~ pixels / 2 * T) gives E(x-) ~ u (measured 0.97 u) as the seed's loss
"close to zero" requires. ``energy_unit: 1.0`` with Table 5.1's numbers gives the old chains.

**Model selection by the energy difference (L1448)**: "the best model is chosen by taking
the iteration with the loss function closest to zero and with stable positive and
negative energies". Every ``checkpoint_every`` iterations the means of E(x+), E(x-) and
of E(x+) - E(x-) over the iterations since the last checkpoint are logged with a copy of
the weights. A checkpoint is *stable* when both mean energies are finite, positive and
changed by less than a factor ``stable_factor`` from the previous checkpoint; the
selected checkpoint is the stable one with the smallest |<E(x+) - E(x-)>|. Training
stops early at a **sampler collapse** (L1444-1448): the mean negative energy over a
checkpoint window above ``collapse_factor`` times the positive one, or not finite.

Defaults (:data:`NAE_THESIS`) are the seed's; ``hepgen/models/configs/nae-cpu.yaml``
holds the sizes that train here on one CPU thread in minutes (smaller batches, shorter
chains, fewer iterations).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from hepgen.config import merge_config, to_plain
from hepgen.data.atomic import atomic_folder
from hepgen.errors import InputFileError, InvalidDataError, OptionError
from hepgen.models.assemblies.anomaly import NormalizedAutoencoder
from hepgen.models.blocks.langevin import ChainSettings, ReplayBuffer, langevin
from hepgen.transforms.images import JetImage

NAE_THESIS: dict = {
    # seed 002 L1397-1399: 40 x 40 pixels of (0.029, 0.035), Gaussian filter sigma_G = 1
    "image": {"size": [40, 40], "pixel": [0.029, 0.035], "centre": True, "rotate": True, "flip": True,
              "power": 1.0, "sigma": 1.0},
    # L1439, Appendix B: 5 + 4 convolutions of 8 filters, PReLU, D_z = 3, spectral norm
    "network": {"latent_dim": 3, "channels": 8, "hidden": 32, "spectral_norm": True, "input_scale": None},
    # Table 5.1, L1439: Adam (defaults), lr 1e-3, 15k iterations of 2048
    "pretrain": {"lr": 1.0e-3, "iterations": 15000, "batch_size": 2048},
    # Table 5.1, Appendix B
    "nae": {"lr": 1.0e-5, "iterations": 40000, "batch_size": 128, "gamma": 1.0, "l2": 1.0e-8,
            "buffer_size": 10000, "replay_ratio": 0.95, "checkpoint_every": 500,
            "stable_factor": 2.0, "collapse_factor": 100.0,
            # the chains run on E / energy_unit: "data" = the mean energy of the pre-trained AE
            # on the training images (module docstring, "Chain units"); a number = that unit
            "energy_unit": "data",
            # latent: T = 0.03^2 / 2 = 4.5e-4 E_data, the drift (|grad H| ~ 0.04-0.6 per
            # radian) as large as the noise; clipped so one step moves at most 0.1 rad
            "latent_chain": {"steps": 30, "step_size": 1.0, "noise": 3.0e-2, "metropolis": True,
                             "anneal": False, "clip_grad": 0.1},
            # image space: T = 1.6e-3^2 / 2e-3 = 1.3e-3 E_data, so a chain's thermal excursion
            # off the decoder manifold (~ pixels / 2 * T) carries E(x-) ~ E_data (measured:
            # 0.97); 1e-3 E_data per unit gradient contracts the off-manifold residual by
            # ~30 % a step at E_data = 4e-6
            "data_chain": {"steps": 30, "step_size": 1.0e-3, "noise": 1.6e-3, "metropolis": False,
                           "anneal": False, "clip_grad": None}},
    # wall-clock caps of the two phases in minutes (None: none)
    "max_minutes": {"pretrain": None, "nae": None},
    "seed": 0,
}


def nae_config(override: dict | None = None) -> dict:
    """The thesis defaults merged with ``override`` (e.g. a ``--config`` YAML), checked."""
    cfg = merge_config(NAE_THESIS, override)
    unknown = set(cfg) - set(NAE_THESIS)
    if unknown:
        raise OptionError(f"--config: unknown NAE section(s) {', '.join(sorted(unknown))}; "
                          f"expected {', '.join(NAE_THESIS)}")
    for phase in ("pretrain", "nae"):
        for key in ("iterations", "batch_size"):
            if int(cfg[phase][key]) < 1 and not (phase == "nae" and key == "iterations" and int(cfg[phase][key]) == 0):
                raise OptionError(f"--config: {phase}.{key} must be positive, got {cfg[phase][key]}")
        if not float(cfg[phase]["lr"]) > 0:
            raise OptionError(f"--config: {phase}.lr must be positive, got {cfg[phase]['lr']}")
    if int(cfg["nae"]["checkpoint_every"]) < 1:
        raise OptionError(f"--config: nae.checkpoint_every must be positive, got {cfg['nae']['checkpoint_every']}")
    unit = cfg["nae"].get("energy_unit", "data")
    if not (unit == "data" or (isinstance(unit, (int, float)) and not isinstance(unit, bool) and unit > 0)):
        raise OptionError(f"--config: nae.energy_unit must be 'data' or a positive number, got {unit!r}")
    for name in ("latent_chain", "data_chain"):
        ch = cfg["nae"][name]
        if int(ch["steps"]) < 0 or float(ch["step_size"]) < 0 or float(ch["noise"]) < 0:
            raise OptionError(f"--config: nae.{name} needs steps, step_size, noise >= 0")
    return cfg


def jet_images(particle_features: np.ndarray, image: dict) -> np.ndarray:
    """(N, H, W) float32 jet images of ``particle_features`` with the ``image`` settings."""
    return JetImage(**image).transform(particle_features)


def read_images(paths: Sequence[str | Path], image: dict, max_jets: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The jet images of all jets in the JetNet files ``paths`` (concatenated), and their sources.

    Args:
        paths: JetNet-layout files (e.g. q and g jets for a QCD background).
        image: the :class:`~hepgen.transforms.images.JetImage` settings.
        max_jets: read at most this many jets of each file.
    """
    from hepgen.data.jetnet import read_jets

    out = []
    for p in paths:
        s = read_jets(p)
        pf = s.particle_features if max_jets is None else s.particle_features[:max_jets]
        out.append(jet_images(pf, image))
    return np.concatenate(out), [str(p) for p in paths]


def _chains(cfg: dict) -> tuple[ChainSettings, ChainSettings]:
    lat = dict(cfg["nae"]["latent_chain"])
    dat = dict(cfg["nae"]["data_chain"])
    latent = ChainSettings(steps=int(lat["steps"]), step_size=float(lat["step_size"]), noise=float(lat["noise"]),
                           metropolis=bool(lat["metropolis"]), anneal=bool(lat["anneal"]),
                           clip_grad=lat.get("clip_grad"), spherical=True)
    data = ChainSettings(steps=int(dat["steps"]), step_size=float(dat["step_size"]), noise=float(dat["noise"]),
                         metropolis=bool(dat["metropolis"]), anneal=bool(dat["anneal"]),
                         clip_grad=dat.get("clip_grad"), bounds=(0.0, 1.0))
    return latent, data


class _Frozen:
    """Parameters without gradients and spectral norms computed once, for the Langevin chains."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def __enter__(self):
        from torch.nn.utils import parametrize

        self.was_training = self.model.training
        self.model.eval()
        self.flags = [p.requires_grad for p in self.model.parameters()]
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.cache = parametrize.cached()
        self.cache.__enter__()
        return self.model

    def __exit__(self, *exc):
        self.cache.__exit__(*exc)
        for p, f in zip(self.model.parameters(), self.flags):
            p.requires_grad_(f)
        self.model.train(self.was_training)
        return False


def energy_unit(model: NormalizedAutoencoder, images: torch.Tensor, cfg: dict, max_images: int = 2048) -> float:
    """The energy unit of the Langevin chains: ``nae.energy_unit`` when a number, else
    (``"data"``) the mean energy of ``model`` on the first ``max_images`` training images."""
    unit = cfg["nae"].get("energy_unit", "data")
    if unit != "data":
        return float(unit)
    with _Frozen(model), torch.no_grad():
        return float(model.energy(images[:max_images]).mean().clamp_min(1e-30))


def negative_samples(model: NormalizedAutoencoder, n: int, buffer: ReplayBuffer, latent: ChainSettings,
                     data: ChainSettings, generator: torch.Generator, unit: float = 1.0) -> tuple[torch.Tensor, dict]:
    """``n`` negative samples by on-manifold initialisation (module docstring); fills ``buffer``.

    Args:
        model: the autoencoder whose energy is sampled.
        n: samples.
        buffer: replay buffer of latent end points (drawn from, then pushed to).
        latent, data: the latent and the image-space chain.
        generator: the random numbers.
        unit: both chains sample exp(-E / (unit T)): they run on E / unit (:func:`energy_unit`).

    Returns:
        ``(x_neg, stats)``: images (n, H, W) and the chains' statistics (acceptances,
        latent energies at the start and end, ``e_x0`` the mean energy of the decoded
        starting images, ``move`` the mean relative L2 distance |x- - x0| / |x0| the
        image-space chain moved them).
    """

    def uniform(k: int) -> torch.Tensor:
        z = torch.randn(k, model.latent_dim, generator=generator)
        return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)

    with _Frozen(model):
        z0 = buffer.draw(n, uniform, generator)
        z, zs = langevin(lambda v: model.latent_energy(v) / unit, z0, latent, generator)
        buffer.push(z)
        x0 = model.decode(z).clamp(0.0, 1.0)
        x, xs = langevin(lambda v: model.energy(v) / unit, x0, data, generator)
    move = float(((x - x0).flatten(1).norm(dim=1) / x0.flatten(1).norm(dim=1).clamp_min(1e-12)).mean())
    return x, {"latent_acceptance": zs["acceptance"], "data_acceptance": xs["acceptance"],
               "latent_energy_start": zs["energy_start"] * unit, "latent_energy_end": zs["energy_end"] * unit,
               "e_x0": xs["energy_start"] * unit, "move": move}


@dataclass
class NAEResult:
    """What :func:`train_nae` returns.

    Args:
        ae: the pre-trained autoencoder (the plain-AE baseline).
        nae: the selected NAE (the pre-trained AE when the NAE phase ran no iteration).
        pretrain_log: rows (iteration, mse).
        nae_log: rows (iteration, loss, e_pos, e_neg, latent_acceptance, data_acceptance).
        checkpoints: per checkpoint: iteration, means of e_pos, e_neg and e_pos - e_neg, stable.
        selected: the selected checkpoint (None: the pre-trained AE).
        collapsed: the iteration at which a sampler collapse stopped training (None).
        seconds: seconds of (pretraining, NAE training).
        config: the config trained with.
    """

    ae: NormalizedAutoencoder
    nae: NormalizedAutoencoder
    pretrain_log: list = field(default_factory=list)
    nae_log: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    selected: dict | None = None
    collapsed: int | None = None
    seconds: tuple[float, float] = (0.0, 0.0)
    config: dict = field(default_factory=dict)


def pretrain(model: NormalizedAutoencoder, images: torch.Tensor, cfg: dict, generator: torch.Generator,
             progress: Callable[[str, int], None] | None = None) -> list:
    """AE pre-training on the MSE (phase 1); returns rows (iteration, batch mse).

    Args:
        model: the autoencoder (trained in place).
        images: training images (N, H, W).
        cfg: the full NAE config (``pretrain`` and ``max_minutes`` are read).
        generator: batch order.
        progress: called with ("pretrain", 1) per iteration.
    """
    p = cfg["pretrain"]
    opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]))
    batch = min(int(p["batch_size"]), len(images))
    limit = cfg["max_minutes"].get("pretrain")
    start = time.perf_counter()
    log, perm, pos = [], torch.randperm(len(images), generator=generator), 0
    model.train()
    for it in range(1, int(p["iterations"]) + 1):
        if pos + batch > len(images):
            perm, pos = torch.randperm(len(images), generator=generator), 0
        x = images[perm[pos:pos + batch]]
        pos += batch
        loss = model.energy(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        log.append((it, float(loss.detach())))
        if progress is not None:
            progress("pretrain", 1)
        if limit is not None and time.perf_counter() - start > 60 * float(limit):
            break
    return log


def _is_stable(prev: dict | None, cur: dict, factor: float) -> bool:
    ok = all(math.isfinite(cur[k]) and cur[k] > 0 for k in ("e_pos", "e_neg"))
    if not ok or prev is None:
        return ok
    return all(max(cur[k], prev[k]) / min(cur[k], prev[k]) < factor for k in ("e_pos", "e_neg")
               if prev[k] > 0)


def nae_loss(model: NormalizedAutoencoder, x_pos: torch.Tensor, x_neg: torch.Tensor, gamma: float = 1.0,
             l2: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The NAE objective of one batch (eq. 3.34 with the regularisers of Appendix B).

    L = <E(x+)> - <E(x-)> + gamma <E(x+)^2> + l2 ||w||^2; one forward pass of both batches.

    Args:
        model: the autoencoder (gradients flow into its weights only).
        x_pos: training images (B, H, W).
        x_neg: negative samples (B', H, W) (treated as constants).
        gamma: weight of the squared positive energy.
        l2: weight of the squared weights.

    Returns:
        ``(total, loss, e_pos, e_neg)``: the objective, <E(x+)> - <E(x-)>, and the energies.
    """
    e = model.energy(torch.cat([x_pos, x_neg.detach()]))
    e_pos, e_neg = e[:len(x_pos)], e[len(x_pos):]
    loss = e_pos.mean() - e_neg.mean()
    total = loss + gamma * e_pos.pow(2).mean() + l2 * model.weight_norm()
    return total, loss, e_pos, e_neg


def train_nae_phase(model: NormalizedAutoencoder, images: torch.Tensor, cfg: dict, generator: torch.Generator,
                    progress: Callable[[str, int], None] | None = None):
    """Phase 2: the NAE loss with OMI negative samples and energy-difference selection.

    Args:
        model: the pre-trained autoencoder (trained in place; the selected weights are returned).
        images: training images (N, H, W).
        cfg: the full NAE config (``nae`` and ``max_minutes`` are read).
        generator: batches, chains and buffer draws.
        progress: called with ("nae", 1) per iteration.

    Returns:
        ``(selected_state or None, log, checkpoints, selected, collapsed)``.
    """
    c = cfg["nae"]
    latent, data = _chains(cfg)
    buffer = ReplayBuffer(int(c["buffer_size"]), float(c["replay_ratio"]))
    opt = torch.optim.Adam(model.parameters(), lr=float(c["lr"]))
    batch = min(int(c["batch_size"]), len(images))
    gamma, l2 = float(c["gamma"]), float(c["l2"])
    every, limit = int(c["checkpoint_every"]), cfg["max_minutes"].get("nae")
    start = time.perf_counter()
    log, checkpoints, states = [], [], {}
    perm, pos = torch.randperm(len(images), generator=generator), 0
    window: list[tuple[float, float]] = []
    collapsed = None
    unit = energy_unit(model, images, cfg)
    for it in range(1, int(c["iterations"]) + 1):
        if pos + batch > len(images):
            perm, pos = torch.randperm(len(images), generator=generator), 0
        x_pos = images[perm[pos:pos + batch]]
        pos += batch
        x_neg, stats = negative_samples(model, batch, buffer, latent, data, generator, unit)
        model.train()
        total, loss, e_pos, e_neg = nae_loss(model, x_pos, x_neg, gamma, l2)
        opt.zero_grad()
        total.backward()
        opt.step()
        ep, en = float(e_pos.mean().detach()), float(e_neg.mean().detach())
        log.append((it, float(loss.detach()), ep, en, stats["latent_acceptance"], stats["data_acceptance"]))
        window.append((ep, en))
        if progress is not None:
            progress("nae", 1)
        out_of_time = limit is not None and time.perf_counter() - start > 60 * float(limit)
        last = it == int(c["iterations"]) or out_of_time
        if it % every == 0 or last:
            w = np.asarray(window)
            cur = {"iteration": it, "e_pos": float(w[:, 0].mean()), "e_neg": float(w[:, 1].mean()),
                   "loss": float((w[:, 0] - w[:, 1]).mean())}
            window = []
            if not (math.isfinite(cur["e_neg"]) and cur["e_neg"] <= float(c["collapse_factor"]) * max(cur["e_pos"], 1e-30)):
                cur["stable"] = False
                checkpoints.append(cur)
                collapsed = it
                break
            cur["stable"] = _is_stable(checkpoints[-1] if checkpoints else None, cur, float(c["stable_factor"]))
            checkpoints.append(cur)
            states[it] = copy.deepcopy(model.state_dict())
        if out_of_time:
            break
    stable = [ck for ck in checkpoints if ck["stable"] and ck["iteration"] in states]
    selected = min(stable, key=lambda ck: (abs(ck["loss"]), -ck["iteration"])) if stable else None
    state = states[selected["iteration"]] if selected else None
    if selected is not None:
        selected = {**selected, "energy_unit": unit}
    return state, log, checkpoints, selected, collapsed


def train_nae(images: np.ndarray, cfg: dict | None = None, progress: Callable[[str, int], None] | None = None,
              pretrained: NormalizedAutoencoder | None = None) -> NAEResult:
    """Pre-train the AE, then train the NAE on background ``images`` (module docstring).

    Args:
        images: background jet images (N, H, W) in [0, 1].
        cfg: an NAE config (:func:`nae_config`; default the thesis').
        progress: called with (phase, 1) per iteration of each phase.
        pretrained: an already pre-trained AE (e.g. another run's ``ae.pt``): phase 1 is
            skipped and the NAE phase starts from a copy of it (its architecture wins over
            ``cfg["network"]``).
    """
    cfg = nae_config(cfg)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or len(images) < 2:
        raise InvalidDataError(f"NAE: need at least 2 images of shape (N, H, W), got {images.shape}")
    if tuple(images.shape[1:]) != tuple(cfg["image"]["size"]):
        raise InvalidDataError(f"NAE: images of {images.shape[1:]} but image.size {cfg['image']['size']}")
    if not np.isfinite(images).all():
        raise InvalidDataError("NAE: images contain NaN or inf")
    seed = int(cfg.get("seed", 0))
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(images)
    if pretrained is not None:
        if tuple(pretrained.image_size) != tuple(images.shape[1:]):
            raise InvalidDataError(f"NAE: the pre-trained AE reads {pretrained.image_size} images, got {images.shape[1:]}")
        model = copy.deepcopy(pretrained).train()
        cfg["network"] = {k: v for k, v in pretrained.config.items() if k != "image_size"}
    else:
        model = NormalizedAutoencoder(image_size=cfg["image"]["size"], **cfg["network"])
    t0 = time.perf_counter()
    pre_log = [] if pretrained is not None else pretrain(model, x, cfg, generator, progress)
    t1 = time.perf_counter()
    ae = copy.deepcopy(model).eval()
    state, log, checkpoints, selected, collapsed = (None, [], [], None, None)
    if int(cfg["nae"]["iterations"]) > 0:
        state, log, checkpoints, selected, collapsed = train_nae_phase(model, x, cfg, generator, progress)
    t2 = time.perf_counter()
    nae = copy.deepcopy(ae)
    nae.load_state_dict(state if state is not None else ae.state_dict())
    return NAEResult(ae, nae.eval(), pre_log, log, checkpoints, selected, collapsed, (t1 - t0, t2 - t1), cfg)


# --------------------------------------------------------------------------------------
# Run folders and scoring.
# --------------------------------------------------------------------------------------

def save_model(model: NormalizedAutoencoder, path: Path) -> None:
    """The weights (spectral norms folded in are not needed: parametrisations are saved) and the architecture."""
    torch.save({"config": model.config, "state": model.state_dict()}, path)


def load_model(path: str | Path) -> NormalizedAutoencoder:
    """An autoencoder written by :func:`save_model`, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file (not an NAE run?)")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        cfg = d["config"]
        model = NormalizedAutoencoder(image_size=cfg["image_size"], latent_dim=cfg["latent_dim"],
                                      channels=cfg["channels"], hidden=cfg["hidden"], spectral_norm=cfg["spectral_norm"],
                                      input_scale=cfg.get("input_scale", 1.0))  # files before input_scale: 1
        model.load_state_dict(d["state"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise InputFileError(f"{path}: not an NAE model file ({type(exc).__name__})") from None
    return model.eval()


@torch.no_grad()
def energies(model: NormalizedAutoencoder, images: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Per-image energies (MSE) of ``images`` (N, H, W) as float64."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    out = [model.energy(x[i:i + batch]).double() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy() if out else np.zeros(0)


def write_nae_run(result: NAEResult, out: str | Path, info: dict | None = None) -> Path:
    """Write an NAE run folder; files appear only when complete.

    Contents: ``run.json`` (method ``nae``, config, selection, times, inputs), ``nae.pt``
    (the selected NAE), ``ae.pt`` (the pre-trained AE, the plain-AE baseline),
    ``pretrain_losses.csv``, ``nae_losses.csv``, ``checkpoints.csv``, ``loss.png``.

    Args:
        result: what :func:`train_nae` returned.
        out: the run folder.
        info: extra entries for ``run.json`` (inputs, counts).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"--out: {out} exists and is not a folder")
    if not out.parent.exists():
        raise InputFileError(f"--out: parent folder {out.parent} does not exist")
    run = {"method": "nae", "config": to_plain(result.config), "scores": {"score": "nae", "ae": "pre-trained AE"},
           "parameters": result.nae.num_parameters(),
           "pretrain_iterations": len(result.pretrain_log), "nae_iterations": len(result.nae_log),
           "pretrain_seconds": round(result.seconds[0], 1), "nae_seconds": round(result.seconds[1], 1),
           "selected": result.selected, "collapsed_at": result.collapsed, **(info or {})}
    with atomic_folder(out) as tmp:
        save_model(result.nae, tmp / "nae.pt")
        save_model(result.ae, tmp / "ae.pt")
        with open(tmp / "pretrain_losses.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["iteration", "mse"])
            w.writerows(result.pretrain_log)
        with open(tmp / "nae_losses.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["iteration", "loss", "e_pos", "e_neg", "latent_acceptance", "data_acceptance"])
            w.writerows(result.nae_log)
        with open(tmp / "checkpoints.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["iteration", "e_pos", "e_neg", "loss", "stable"])
            w.writeheader()
            w.writerows(result.checkpoints)
        (tmp / "run.json").write_text(json.dumps(run, indent=2) + "\n")
        _loss_plot(result, tmp / "loss.png")
    return out


def _loss_plot(result: NAEResult, path: Path) -> None:
    from hepgen.report.plots import _setup

    _setup()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    if result.pretrain_log:
        r = np.asarray(result.pretrain_log)
        axes[0].plot(r[:, 0], r[:, 1])
        axes[0].set_yscale("log")
    axes[0].set_xlabel("pre-training iteration")
    axes[0].set_ylabel("MSE")
    if result.nae_log:
        r = np.asarray(result.nae_log)
        axes[1].plot(r[:, 0], r[:, 2], label=r"$E(x^+)$")
        axes[1].plot(r[:, 0], r[:, 3], label=r"$E(x^-)$")
        axes[1].set_yscale("log")
        if result.selected:
            axes[1].axvline(result.selected["iteration"], ls=":", color="gray", label="selected")
        axes[1].legend(fontsize=12)
    axes[1].set_xlabel("NAE iteration")
    axes[1].set_ylabel("energy")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def score_nae_run(run_dir: str | Path, run: dict, particle_features: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of jets with an NAE run: ``{"score": NAE energy, "ae": pre-trained AE energy}``.

    Args:
        run_dir: the run folder.
        run: its ``run.json``.
        particle_features: (N, P, 4) JetNet particle features.
    """
    images = jet_images(particle_features, run["config"]["image"])
    run_dir = Path(run_dir)
    return {"score": energies(load_model(run_dir / "nae.pt"), images),
            "ae": energies(load_model(run_dir / "ae.pt"), images)}
