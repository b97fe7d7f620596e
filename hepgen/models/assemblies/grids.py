"""Generative models of showers on regular 3D grids (seed 001 ch. 6-7): GAN, WGAN, BIB-AE.

Showers are (layers, x, y) grids of cell energies (MeV) conditioned on the incident
energy E (``c`` = E / E_max in (0, 1]).

* ``gan-3d`` / ``wgan-3d`` (L1751-1790): a generator of 3D transposed convolutions from
  noise x c, a 3D convolutional critic that also sees c. ``wgan-3d`` trains with WGAN-GP,
  5 critic steps per generator step and the **energy constrainer**: a regression network,
  trained on real showers, predicts c from a shower, and the generator pays
  kappa |c_pred(fake) - c|.
* ``bib-ae`` (L1795-1856): a convolutional encoder to a 24-dim latent (mu, log sigma), a
  decoder with the generator's architecture fed the latent padded with 488 noise
  dimensions, and the BIB-AE losses: a critic on (x, x - x') (the "difference
  discriminator", WGAN-GP), a latent critic against N(0, 1), the MMD of the latent to
  N(0, 1) and the KL divergence. The **Post Processor** -- 1x1x1 convolutions on
  (x', c), residual, its last layer zero so that it starts as the identity -- is switched
  on after the BIB-AE's own epochs, with the BIB-AE frozen: MSE to the input for
  ``pp_mse_epochs``, then MSE + the sorted-kernel MMD of the cell spectrum
  (:func:`sorted_kernel_mmd`). Sampling draws the latent from N(0, 1) or, for pions
  (ch. 7), from a KDE of the encoded training latents (bandwidth 0.1).

The pion BIB-AE of ch. 7 (L2011-2093; on by default for ``ild-pions``): cells below 0.1
MIP cut from the training showers; **minibatch discrimination** in the difference critic
(:class:`MinibatchFeatures`); an additional **resetting critic**, re-initialised at every
epoch so that it is not blind to the sparse outer cells; the Post Processor's extra
losses (a second, coarser MMD kernel, MSE + MAE of the sorted cell vectors, and the
**batch comparison**: MSE of the batch-mean showers); and the KDE in (latent, energy)
jointly, sampled for a requested energy by keeping draws whose energy label lies close
to it (the seed's rejection sampling).

Written by hand: no library provides these calorimeter GAN/BIB-AE architectures; the
layers are plain ``torch.nn``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hepgen.config import load_model_config, merge_config, save_model_config
from hepgen.data.calo import ShowerSample
from hepgen.data.geometry import load_geometry
from hepgen.device import default_device
from hepgen.errors import OptionError
from hepgen.models.calibration import ResponseCalibration

GRID_MODELS = ("gan-3d", "wgan-3d", "bib-ae")

_NET = {"latent": 100, "channels": 64}
THESIS = {
    "gan-3d": {"network": dict(_NET),
               "training": {"loss": "bce", "lr": 1e-4, "lr_gen": 1e-4, "betas": [0.5, 0.999], "critic_steps": 1,
                            "batch_size": 64, "epochs": 50, "schedule": "constant", "ema_decay": 0.999}},
    "wgan-3d": {"network": dict(_NET),
                "training": {"loss": "wgan-gp", "lr": 1e-4, "lr_gen": 1e-4, "betas": [0.5, 0.9], "critic_steps": 5,
                             "gp_weight": 10.0, "kappa": 0.01, "batch_size": 64, "epochs": 50,
                             "schedule": "constant", "ema_decay": 0.999}},
    # seed 001 appendix A (photon BIB-AE): Adam 5e-4 (latent critic 2e-3), x 0.95 after every
    # epoch, 5 critic steps per encoder-decoder step, 35 epochs, then the Post Processor
    # (here with the BIB-AE frozen, as for the pions: "more stable"); loss weights critic 1,
    # latent critic 100, KLD 0.05, latent MMD 100; Post Processor MSE 1 + sorted-kernel MMD 5
    "bib-ae": {"network": {"latent": 24, "noise": 488, "channels": 64, "pp_channels": 32},
               "training": {"lr": 5e-4, "lr_latent_critic": 2e-3, "betas": [0.5, 0.9], "batch_size": 64,
                            "epochs": 35, "pp_epochs": 4, "pp_mse_epochs": 1, "kld": 0.05, "mmd": 100.0,
                            "latent_adv": 100.0, "adv": 1.0, "gp_weight": 10.0, "critic_steps": 5,
                            "mmd_windows": [100, 50], "mmd_alpha": 200.0, "pp_mmd": 5.0,
                            "schedule": "exponential", "lr_decay": 0.95, "ema_decay": 0.0},
               "sampler": {"latent": "normal"}},
}

# seed 001 appendix A (pion BIB-AE): Adam 5e-5 (latent critic 2e-4), x 0.97 per epoch, KLD
# 0.01, 37 epochs then 105 of the Post Processor with the BIB-AE frozen: MSE 1, two sorted-
# kernel MMDs (alpha 40 and 4) x 5, sorted MSE + MAE x 10, batch comparison x 1e-4
PION_BIBAE = {"lr": 5e-5, "lr_latent_critic": 2e-4, "lr_decay": 0.97, "kld": 0.01, "epochs": 37, "pp_epochs": 105,
              "resetting_critic": True, "cell_cut": 0.05, "mmd_alpha": 40.0, "mmd_alpha2": 4.0, "pp_sorted": 10.0,
              "pp_batch_mean": 1e-4}


def grid_config(model: str, geometry: str, override: dict | None = None) -> dict:
    if model not in THESIS:
        raise OptionError(f"unknown grid model {model!r}; choose from {', '.join(GRID_MODELS)}")
    geo = load_geometry(geometry)
    if geo.kind != "grid":
        raise OptionError(f"{model} needs a grid geometry (ild-photons, ild-pions), not {geometry}")
    base = {"model": model, "geometry": geometry, "network": {}, "training": {}, "sampler": {}}
    base = merge_config(base, THESIS[model])
    if model == "bib-ae" and geo.particle == "pion":  # ch. 7, L2011-2093
        base["sampler"]["latent"] = "kde"
        base["network"]["minibatch"] = True
        base["training"].update(PION_BIBAE)
    unknown = set(override or {}) - set(base)
    if unknown:
        raise OptionError(f"--config: unknown section(s) {', '.join(sorted(unknown))}; allowed: {', '.join(base)}")
    return merge_config(base, override)


class _ReLUPassingGradient(torch.autograd.Function):
    """relu(h) forward; backward the gradient for h < 0 is kept with a slope of 0.01, so that an
    output cell pushed below zero can come back (with a plain ReLU a generator whose cells all
    went negative -- the sparse real showers invite it -- gets no gradient and stays empty)."""

    @staticmethod
    def forward(ctx, h):
        ctx.save_for_backward(h)
        return h.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        return torch.where(h > 0, grad, 0.01 * grad)


def output_relu(h: torch.Tensor) -> torch.Tensor:
    """Non-negative cell energies: relu(h); in training the gradient passes negative cells at
    slope 0.01 (:class:`_ReLUPassingGradient`)."""
    return _ReLUPassingGradient.apply(h) if torch.is_grad_enabled() and h.requires_grad else torch.relu(h)


def _up(cin, cout):
    return nn.Sequential(nn.ConvTranspose3d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2))


class GridGenerator(nn.Module):
    """(z (B, latent), c (B, 1)) -> showers (B, L, X, Y) >= 0: a dense layer to a grid of a
    quarter of the size, two transposed convolutions that double it, a final convolution,
    cropped to the geometry and passed through a ReLU (:func:`output_relu`: in training its
    gradient reaches cells below zero, so an all-empty generator can recover)."""

    def __init__(self, shape, latent: int = 100, channels: int = 64, condition_noise: bool = True, **_):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.base = tuple(math.ceil(s / 4) for s in self.shape)
        self.channels = channels
        self.condition_noise = condition_noise
        self.fc = nn.Linear(latent + 1, channels * int(np.prod(self.base)))
        self.net = nn.Sequential(_up(channels, channels // 2), _up(channels // 2, channels // 4),
                                 nn.Conv3d(channels // 4, 1, 3, padding=1))
        # the last convolution starts centred: zero bias, weights summing to zero per input
        # channel. With torch's defaults its output at initialisation was dominated by a common
        # offset (the bias, +-1/sqrt(fan_in), and the weights' sums times the channels' mean
        # activations), ten times its spread, so a generator started either with every cell
        # below zero -- dead behind the ReLU: the wgan-3d run with seed 0 -- or with every cell filled
        last = self.net[-1]
        with torch.no_grad():
            last.weight -= last.weight.mean(dim=(2, 3, 4), keepdim=True)  # zero sum per input channel
            last.bias.zero_()

    def forward(self, z, c):
        if self.condition_noise:  # the seed's "noise x E"
            z = z * c
        h = torch.nn.functional.leaky_relu(self.fc(torch.cat([z, c], 1)), 0.2)
        h = self.net(h.view(len(z), self.channels, *self.base))
        L, X, Y = self.shape
        return output_relu(h[:, 0, :L, :X, :Y])


class GridTrunk(nn.Module):
    """Strided 3D convolutions + the condition -> a feature vector."""

    def __init__(self, shape, in_channels: int = 1, channels: int = 64, out: int = 128):
        super().__init__()
        c = channels
        self.conv = nn.Sequential(
            nn.Conv3d(in_channels, c // 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv3d(c // 4, c // 2, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv3d(c // 2, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2))
        with torch.no_grad():
            n = self.conv(torch.zeros(1, in_channels, *shape)).numel()
        self.fc = nn.Sequential(nn.Linear(n + 1, out), nn.LeakyReLU(0.2))

    def forward(self, x, c):
        x = x if x.dim() == 5 else x[:, None]
        # log(1 + E): cell energies span five decades
        return self.fc(torch.cat([self.conv(torch.log1p(x.clamp(min=0))).flatten(1), c], 1))


class MinibatchFeatures(nn.Module):
    """Minibatch discrimination for a critic (seed 001 L2047-2052, after Salimans et al.,
    arXiv:1606.03498): per shower the sum and standard deviation of its cells, directly and
    of log(1 + |E|) (the cell energies span decades), for every input channel; the pairwise
    absolute differences of these within the batch are embedded by a small network and
    averaged over the partners, so each shower's features tell how it differs from the rest
    of its batch.

    Args:
        in_channels: channels of the critic's input.
        out: size of the returned feature per shower.
        hidden: width of the pair embedding.
    """

    def __init__(self, in_channels: int = 1, out: int = 16, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4 * in_channels, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, out),
                                 nn.LeakyReLU(0.2))
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2) if x.dim() == 5 else x.flatten(1)[:, None]
        logx = torch.sign(flat) * torch.log1p(flat.abs())
        f = torch.cat([flat.sum(-1), flat.std(-1), logx.sum(-1), logx.std(-1)], -1)
        f = torch.sign(f) * torch.log1p(f.abs())
        return self.net((f[:, None] - f[None]).abs()).mean(1)


class GridCritic(nn.Module):
    """score (B,) of showers given c.

    With ``difference`` (the BIB-AE's combined critic, seed 001 L1818-1824 and L1850) the
    input is a pair (B, 2, L, X, Y): a shower -- x for "real", the reconstruction x' for
    "fake" -- through the convolutional trunk, and the difference x - x' (0 for "real")
    fed directly to the dense section, after asinh so that both signs stay visible: a
    reconstruction that deposits too much (x - x' < 0) is as visible as one that misses
    energy. ``in_channels`` = 2 without ``difference`` convolves both channels;
    ``minibatch`` adds :class:`MinibatchFeatures` of the whole input to the head's input.
    """

    def __init__(self, shape, channels: int = 64, in_channels: int = 1, minibatch: bool = False,
                 difference: bool = False, difference_width: int = 64, **_):
        super().__init__()
        self.difference = bool(difference)
        self.trunk = GridTrunk(shape, 1 if self.difference else in_channels, channels)
        self.minibatch = MinibatchFeatures(2 if self.difference else in_channels) if minibatch else None
        width = 128 + (self.minibatch.out if minibatch else 0)
        if self.difference:
            self.diff = nn.Sequential(nn.Linear(int(np.prod(shape)), difference_width), nn.LeakyReLU(0.2))
            width += difference_width
            self.head = nn.Sequential(nn.Linear(width, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))
        else:
            self.head = nn.Linear(width, 1)

    def forward(self, x, c):
        if self.difference:
            h = torch.cat([self.trunk(x[:, 0], c), self.diff(torch.asinh(x[:, 1].flatten(1)))], 1)
        else:
            h = self.trunk(x, c)
        if self.minibatch is not None:
            h = torch.cat([h, self.minibatch(x)], 1)
        return self.head(h)[:, 0]


def reset_parameters(module: nn.Module) -> None:
    """Re-initialise every layer of ``module`` as at construction (the resetting critic)."""
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()


class EnergyConstrainer(nn.Module):
    """Predicts c = E / E_max from a shower (the WGAN's energy constrainer)."""

    def __init__(self, shape, channels: int = 32, **_):
        super().__init__()
        self.trunk = GridTrunk(shape, 1, channels)
        self.head = nn.Linear(128, 1)

    def forward(self, x):
        return self.head(self.trunk(x, torch.zeros(len(x), 1, device=x.device)))[:, 0]


class GridEncoder(nn.Module):
    def __init__(self, shape, latent: int = 24, channels: int = 64, **_):
        super().__init__()
        self.trunk = GridTrunk(shape, 1, channels)
        self.mu, self.logvar = nn.Linear(128, latent), nn.Linear(128, latent)

    def forward(self, x, c):
        h = self.trunk(x, c)
        return self.mu(h), self.logvar(h).clamp(-10, 10)


class PostProcessor(nn.Module):
    """1x1x1 convolutions on (x', c): x'' = relu(x' + f(x', c)) on the cells the decoder
    filled, f's last layer zero, so it starts as the identity (on x' >= 0).

    Empty cells stay empty: the seed's Post Processor "can adjust the values of pixels but
    ... the pixels cannot be moved around" (seed 001 L1846). A per-cell map cannot tell one
    empty cell from another, so f(0, c) > 0 would fill all 27 000 of them at once -- which
    the sorted-kernel MMD, blind below the top 2000 cells, rewarded in a first CPU run
    (every cell at 0.17 MeV, 3.4x the visible energy).

    ``form="gain"`` (not the seed's): x'' = x' exp(f(x', c)), a per-cell gain that depends on
    the cell's energy and on E_inc. It keeps empty cells empty by construction and learns an
    energy-dependent calibration directly: the additive map, trained with per-shower energy
    terms on the CPU photon run, still left the low-energy response 13 % short (0.0206 against
    0.0238 at E < 25 GeV) where a gain is a single smooth function of c."""

    FORMS = ("additive", "gain")

    def __init__(self, channels: int = 32, form: str = "additive", **_):
        super().__init__()
        if form not in self.FORMS:
            raise OptionError(f"network.pp_form: {form!r} is not one of {', '.join(self.FORMS)}")
        self.form = form
        self.net = nn.Sequential(nn.Conv3d(3, channels, 1), nn.LeakyReLU(0.2), nn.Conv3d(channels, channels, 1),
                                 nn.LeakyReLU(0.2), nn.Conv3d(channels, 1, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x, c):
        xc = x[:, None]
        inp = torch.cat([torch.log1p(xc), xc, c.view(-1, 1, 1, 1, 1).expand_as(xc)], 1)
        if self.form == "gain":
            return x * torch.exp(self.net(inp)[:, 0].clamp(-5.0, 5.0))
        return torch.relu(x + self.net(inp)[:, 0]) * (x > 0)


class BIBAE(nn.Module):
    """Encoder, decoder (latent + noise padding) and Post Processor of the BIB-AE."""

    def __init__(self, shape, latent: int = 24, noise: int = 488, channels: int = 64, pp_channels: int = 32,
                 pp_form: str = "additive", **_):
        super().__init__()
        self.latent, self.noise = latent, noise
        self.encoder = GridEncoder(shape, latent, channels)
        self.decoder = GridGenerator(shape, latent + noise, channels, condition_noise=False)
        self.post = PostProcessor(pp_channels, pp_form)

    def decode(self, z, c, post: bool = True, generator=None):
        pad = torch.randn(len(z), self.noise, generator=generator, device="cpu").to(z.device)
        x = self.decoder(torch.cat([z, pad], 1), c)
        return self.post(x, c) if post else x

    def forward(self, x, c, post: bool = False):
        mu, logvar = self.encoder(x, c)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z, c, post), mu, logvar, z


def gaussian_mmd(a: torch.Tensor, b: torch.Tensor, scales=(0.2, 0.5, 1.0, 2.0, 5.0)) -> torch.Tensor:
    """Biased MMD^2 of samples a, b (N, D) with a sum of Gaussian kernels."""
    x = torch.cat([a, b])
    d2 = torch.cdist(x, x) ** 2
    k = sum(torch.exp(-d2 / (2 * s * s)) for s in scales)
    n = len(a)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def sorted_kernel_mmd(real: torch.Tensor, fake: torch.Tensor, window: int = 100, stride: int = 50,
                      alpha: float = 200.0, top: int = 2000) -> torch.Tensor:
    """The Sorted-Kernel-MMD of seed 001 L1826-1840: each shower's cells sorted by energy,
    the ``top`` most energetic kept; in windows of ``window`` hits moved by ``stride``, the
    MMD (eq. 6.3.1) between the hit energies of a real shower and of its generated partner
    (the same row) with the kernel k(x, x') = exp(-alpha (x - x')^2) on cell energies in the
    file's unit (MeV: alpha = 200 resolves the 0.2 MeV MIP peak); summed over the windows,
    averaged over the batch."""
    top = min(int(top), real.flatten(1).shape[1])
    r = real.flatten(1).topk(top, 1).values
    f = fake.flatten(1).topk(top, 1).values
    def k(u, v):  # mean kernel between the hits of each shower's two windows
        return torch.exp(-alpha * (u[:, :, None] - v[:, None, :]) ** 2).mean((1, 2))

    out = r.new_zeros(())
    for lo in range(0, max(top - window, 0) + 1, stride):
        a, b = r[:, lo:lo + window], f[:, lo:lo + window]
        out = out + (k(a, a) + k(b, b) - 2 * k(a, b)).mean()
    return out


def build_grid_networks(cfg: dict) -> dict[str, nn.Module]:
    geo = load_geometry(cfg["geometry"])
    shape, net = geo.grid_shape, cfg["network"]
    if cfg["model"] == "bib-ae":
        critic = dict(channels=net.get("channels", 64), difference=True, minibatch=bool(net.get("minibatch", False)))
        nets = {"bibae": BIBAE(shape, **net), "critic": GridCritic(shape, **critic),
                "latent_critic": nn.Sequential(nn.Linear(net.get("latent", 24), 64), nn.LeakyReLU(0.2),
                                               nn.Linear(64, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))}
        if cfg.get("training", {}).get("resetting_critic"):
            nets["reset_critic"] = GridCritic(shape, **critic)
        return nets
    nets = {"generator": GridGenerator(shape, **net), "critic": GridCritic(shape, **net)}
    if cfg["model"] == "wgan-3d":
        nets["constrainer"] = EnergyConstrainer(shape)
    return nets


class GridSurrogate:
    """A trained grid model: config, the sampling network, (BIB-AE) the latent sampler."""

    WEIGHTS = "weights.pt"
    #: width of the Gaussian kernel of the latent KDE (seed 001 L2027-2040)
    KDE_BANDWIDTH = 0.1

    def __init__(self, cfg: dict, network: nn.Module, latents: np.ndarray | None = None,
                 calibration: ResponseCalibration | None = None):
        self.cfg, self.network = cfg, network.eval()
        self.latents = latents  # encoded training latents for KDE sampling (BIB-AE)
        self.calibration = calibration  # per-shower response map (sampler.calibrate: response)
        self.geometry = load_geometry(cfg["geometry"])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def save(self, folder) -> Path:
        folder = save_model_config(folder, self.cfg)
        torch.save(self.network.state_dict(), folder / self.WEIGHTS)
        if self.latents is not None:
            np.save(folder / "latents.npy", self.latents.astype(np.float32))
        if self.calibration is not None:
            self.calibration.save(folder)
        return folder

    @classmethod
    def load(cls, folder) -> "GridSurrogate":
        folder = Path(folder)
        cfg = load_model_config(folder, (cls.WEIGHTS,), "grid model")
        nets = build_grid_networks(cfg)
        net = nets["bibae"] if cfg["model"] == "bib-ae" else nets["generator"]
        net.load_state_dict(torch.load(folder / cls.WEIGHTS, map_location="cpu", weights_only=True))
        latents = np.load(folder / "latents.npy") if (folder / "latents.npy").exists() else None
        return cls(cfg, net, latents, ResponseCalibration.load(folder))

    def _latent(self, c: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Latents for the energy labels ``c`` (B, 1): N(0, 1), or the KDE of the encoded
        training latents (Gaussian kernel, bandwidth 0.1; seed 001 L2027-2040). Where the
        stored latents carry their energy label (last column) the KDE is joint in (latent,
        label) and a draw for label c keeps a training point whose label lies within 0.02
        of it (the seed's rejection sampling; the nearest 16 points where none does)."""
        dim = self.cfg["network"].get("latent", 24)
        n = len(c)
        if self.cfg.get("sampler", {}).get("latent") != "kde" or self.latents is None:
            return torch.randn(n, dim, generator=gen)
        lat = torch.as_tensor(self.latents, dtype=torch.float32)
        if lat.shape[1] == dim:  # latents without labels
            idx = torch.randint(len(lat), (n,), generator=gen)
        else:
            order = torch.argsort(lat[:, dim])
            lat, labels = lat[order], lat[order, dim].contiguous()
            target = c[:, 0].float()
            lo = torch.searchsorted(labels, target - 0.02)
            hi = torch.searchsorted(labels, target + 0.02)
            k = min(8, len(labels) // 2)
            near = torch.searchsorted(labels, target).clamp(k, len(labels) - k)
            narrow = (hi - lo) < 2 * k
            lo = torch.where(narrow, near - k, lo).clamp(min=0)
            hi = torch.where(narrow, near + k, hi).clamp(max=len(labels))
            idx = lo + (torch.rand(n, generator=gen) * (hi - lo)).long()
            idx = torch.minimum(idx, hi - 1)
        return lat[idx, :dim] + self.KDE_BANDWIDTH * torch.randn(n, dim, generator=gen)

    @torch.inference_mode()
    def sample(self, num: int, seed: int = 0, batch_size: int | None = None, energies=None, device=None,
               progress: bool = False, calibrate: bool | None = None, **_) -> ShowerSample:
        """``num`` showers, incident energies uniform in the training range unless given (MeV).
        With ``sampler.calibrate: response`` and a fitted calibration (``hepgen calibrate``)
        each shower's response is mapped onto the training showers'
        (:mod:`hepgen.models.calibration`); ``calibrate=False`` gives the raw showers."""
        from tqdm.auto import tqdm

        if num <= 0:
            raise OptionError(f"--num must be positive, got {num}")
        lo, hi = self.cfg["e_range"]
        rng = np.random.default_rng(seed)
        e = np.asarray(energies, np.float64) if energies is not None else rng.uniform(lo, hi, num)
        device = torch.device(device) if device else default_device()
        self.network.to(device)
        gen = torch.Generator().manual_seed(int(seed))
        batch_size = int(batch_size or 100)
        out = np.zeros((num, self.geometry.num_voxels), np.float32)
        starts = range(0, num, batch_size)
        for s in tqdm(starts, desc="sampling", unit="batch", disable=not progress or len(starts) < 2):
            c = torch.as_tensor(e[s:s + batch_size] / hi, dtype=torch.float32)[:, None]
            if self.cfg["model"] == "bib-ae":
                z = self._latent(c, gen)
                x = self.network.decode(z.to(device), c.to(device), post=True, generator=gen)
            else:
                z = torch.randn(len(c), self.cfg["network"].get("latent", 100), generator=gen)
                x = self.network(z.to(device), c.to(device))
            out[s:s + len(c)] = x.flatten(1).float().cpu().numpy()
        if calibrate is None:
            calibrate = self.cfg.get("sampler", {}).get("calibrate") == "response"
        if calibrate:
            if self.calibration is None:
                raise OptionError("this grid model has no response calibration (run `hepgen calibrate RUN --data FILE`)")
            out = self.calibration.apply(out, e)
        return ShowerSample(e.astype(np.float32)[:, None], out, self.geometry)
