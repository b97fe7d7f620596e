"""Training and scoring of AnomalyCLR (events) and DarkCLR (jets) (seed 002 sec. 5.3).

One run (``hepgen anomaly train anomaly-clr|dark-clr``) does three things on the background
sample, in this order:

1. the CLR encoder (:class:`~hepgen.models.assemblies.clr.CLREncoder`) trained
   contrastively: each mini-batch x, its physical augmentation x' and its anomaly
   augmentation x* (:mod:`hepgen.transforms.augment`) are encoded, and the loss of
   ``train.loss`` is minimised (``anomclr+``: eq. 5.10, the default; ``anomclr``: eq. 5.9;
   ``clr``: without anomaly pairs), DarkCLR adding ``train.norm_weight`` times the mean
   norm of the background representations (L1698-1700);
2. the score's autoencoder (:class:`~hepgen.models.assemblies.clr.RepresentationAE`,
   256-128-64-32-16, 5-dim bottleneck, MSE) on the representations z of the training
   events (L1681-1683);
3. the baseline: the same autoencoder on the raw preprocessed inputs (flattened), which
   every CLR variant must beat (Table 5.2's "AE-Raw").

Scores (higher = more anomalous): AnomalyCLR's ``score`` is the MSE of the AE on z, with
``ae_raw`` beside it; DarkCLR's ``score`` is s_CLR = ||z|| (eq. 5.11), with ``ae`` (the AE on
z; the seed uses an NAE there, Table 5.3) and ``ae_raw``.

Preprocessing (L1652-1653): events -- every MET and pT divided by the mean object pT of
the background training sample (no shift, keeping the zeros of padding), eta / 4,
phi / pi, plus a one-hot (MET, electron, muon, jet) of the slot: 7 features per object;
jets -- (ptrel, etarel, phirel) of the N_c hardest constituents as they are (the pT is
already relative to the jet's).

Defaults are the thesis' (Tables B.10, B.11; AE L1681-1683): :data:`THESIS`; the CPU
configs ``hepgen/models/configs/{anomaly-clr,dark-clr}-cpu.yaml`` shrink the network and
cap the wall-clock time for a laptop-size run.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hepgen.config import merge_config
from hepgen.data.atomic import atomic_folder
from hepgen.errors import InputFileError, InvalidDataError, OptionError
from hepgen.models.assemblies.clr import LOSSES, CLREncoder, RepresentationAE, contrastive_loss, norm_penalty
from hepgen.transforms import augment

_AE = {"hidden": [256, 128, 64, 32, 16], "bottleneck": 5, "lr": 1e-3, "epochs": 100, "batch_size": 4096,
       "standardise": True, "validation": 0.1, "max_minutes": None}

#: thesis settings by method (seed 002 Tables B.10, B.11; the AE of L1681-1683)
THESIS = {
    "anomaly-clr": {
        # Table B.10; its transformer-layer count did not survive in the seed's text: 4 as Table B.11
        "model": {"model_dim": 160, "ff_dim": 160, "output_dim": 160, "heads": 4, "layers": 4, "head_layers": 2,
                  "dropout": 0.1},
        "train": {"loss": "anomclr+", "tau": 1.0, "lr": 5e-5, "batch_size": 128, "epochs": 500, "norm_weight": 0.0,
                  "max_minutes": None, "seed": 0},
        "augment": {"smear_a": augment.SMEAR_A, "anomalies": list(augment.EVENT_ANOMALIES), "max_factor": 5.0},
        "ae": dict(_AE),
        "data": {},
    },
    "dark-clr": {
        # Table B.11. The weight of the norm regulariser is not given in the seed; at 1.0 (lr 1e-3,
        # the CPU config) ||z|| collapsed to zero within two epochs and the L+ term stopped learning
        "model": {"model_dim": 128, "ff_dim": 512, "output_dim": 512, "heads": 4, "layers": 4, "head_layers": 2,
                  "dropout": 0.1},
        "train": {"loss": "anomclr+", "tau": 1.0, "lr": 5e-5, "batch_size": 256, "epochs": 150, "norm_weight": 0.01,
                  "max_minutes": None, "seed": 0},
        "augment": {"p_drop": 0.5, "translate_width": 1.0},
        "ae": dict(_AE),
        "data": {"num_constituents": 50},
    },
}
METHODS = tuple(THESIS)


def clr_config(method: str, override: dict | None = None) -> dict:
    """The thesis settings of ``method`` merged with ``override`` (a ``--config`` YAML), checked."""
    if method not in THESIS:
        raise OptionError(f"unknown CLR method {method!r}; choose one of {', '.join(METHODS)}")
    cfg = merge_config(THESIS[method], override)
    unknown = set(cfg) - set(THESIS[method])
    if unknown:
        raise OptionError(f"--config: unknown {method} section(s) {', '.join(sorted(unknown))}; "
                          f"expected {', '.join(THESIS[method])}")
    for sec in ("model", "train", "augment", "ae", "data"):
        extra = set(cfg[sec]) - set(THESIS[method][sec])
        if extra:
            raise OptionError(f"--config: unknown key(s) {', '.join(sorted(extra))} in section {sec}")
    for sec, keys in (("model", ("model_dim", "ff_dim", "output_dim", "heads", "layers", "head_layers")),
                      ("train", ("batch_size", "epochs")), ("ae", ("epochs", "batch_size", "bottleneck"))):
        for k in keys:
            if int(cfg[sec][k]) < 1:
                raise OptionError(f"--config: {sec}.{k} must be positive, got {cfg[sec][k]}")
    if cfg["model"]["model_dim"] % cfg["model"]["heads"]:
        raise OptionError(f"--config: model.model_dim ({cfg['model']['model_dim']}) must be a multiple of "
                          f"model.heads ({cfg['model']['heads']})")
    if cfg["train"]["loss"] not in LOSSES:
        raise OptionError(f"--config: train.loss {cfg['train']['loss']!r}; choose one of {', '.join(LOSSES)}")
    for sec in ("train", "ae"):
        if not float(cfg[sec]["lr"]) > 0:
            raise OptionError(f"--config: {sec}.lr must be positive, got {cfg[sec]['lr']}")
    if method == "anomaly-clr":
        bad = [a for a in cfg["augment"]["anomalies"] if a not in augment.EVENT_ANOMALIES]
        if bad or not cfg["augment"]["anomalies"]:
            raise OptionError(f"--config: augment.anomalies {bad or '[]'}; choose from {', '.join(augment.EVENT_ANOMALIES)}")
    else:
        if not 0 < float(cfg["augment"]["p_drop"]) < 1:
            raise OptionError(f"--config: augment.p_drop must lie in (0, 1), got {cfg['augment']['p_drop']}")
    return cfg


# --- inputs ----------------------------------------------------------------------------------


def read_inputs(method: str, paths, max_events: int | None = None, num_constituents: int = 50) -> tuple[np.ndarray, list[str]]:
    """The raw arrays of ``method`` from the files ``paths`` (concatenated): events (N, 19, 3)
    of Dark Machines files for anomaly-clr, constituents (N, N_c, 3) of JetNet-layout files
    for dark-clr (:mod:`hepgen.transforms.augment`). ``max_events`` per file."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    arrays = []
    for p in paths:
        arrays.append(load_sample(method, p, num_constituents)[:max_events])
    x = np.concatenate(arrays)
    if not len(x):
        raise InvalidDataError(f"{', '.join(map(str, paths))}: no events")
    return x, [str(p) for p in paths]


def load_sample(method: str, path, num_constituents: int = 50) -> np.ndarray:
    """One file as the raw array of ``method`` (errors name the file)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"--data: {path}: no such file")
    if method == "anomaly-clr":
        if path.suffix in (".h5", ".hdf5"):
            raise InputFileError(f"{path}: anomaly-clr reads events in the Dark Machines text format, not HDF5 "
                                 f"(hepgen data events); dark-clr reads jets")
        from hepgen.data.darkmachines import read_events

        return augment.event_slots(read_events(path))
    from hepgen.data.jetnet import read_jets

    return augment.jet_constituents(read_jets(path).particle_features, num_constituents)


@dataclass
class Preprocess:
    """Network inputs of raw arrays (module docstring). ``pt_scale``: the background's mean
    object pT [GeV] for events (1 for jets)."""

    method: str
    pt_scale: float = 1.0

    @classmethod
    def fit(cls, method: str, x: np.ndarray) -> "Preprocess":
        if method == "anomaly-clr":
            obj = x[:, 1:, 0]
            return cls(method, float(obj[obj > 0].mean()) if (obj > 0).any() else 1.0)
        return cls(method, 1.0)

    def kinematics(self, x: np.ndarray) -> np.ndarray:
        """(N, M, 3) scaled (pT, eta, phi)."""
        if self.method == "anomaly-clr":
            return np.stack([x[..., 0] / self.pt_scale, x[..., 1] / 4.0, x[..., 2] / np.pi], axis=-1)
        return np.asarray(x, dtype=np.float64)

    def tokens(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(objects (N, M, F) float32, mask (N, M) bool) for the encoder."""
        k = self.kinematics(x)
        mask = x[..., 0] > 0
        if self.method == "anomaly-clr":
            onehot = np.broadcast_to(np.eye(4)[augment.SLOT_TYPE], (*x.shape[:2], 4))
            k = np.concatenate([k, onehot * mask[..., None]], axis=-1)
        return torch.as_tensor(k, dtype=torch.float32), torch.as_tensor(mask)

    def flat(self, x: np.ndarray) -> torch.Tensor:
        """(N, 3M) flattened scaled kinematics: the raw-data AE's input."""
        return torch.as_tensor(self.kinematics(x).reshape(len(x), -1), dtype=torch.float32)


def physical(method: str, cfg: dict):
    a = cfg["augment"]
    if method == "anomaly-clr":
        return lambda x, rng: augment.physical_event(x, rng, a["smear_a"])
    return lambda x, rng: augment.translate_jet(augment.rotate_jet(x, rng), rng, a["translate_width"])


def anomalous(method: str, cfg: dict):
    a = cfg["augment"]
    if method == "anomaly-clr":
        which = tuple(a["anomalies"])

        def f(x, rng):
            out = np.array(x, copy=True)
            pick = rng.integers(0, len(which), len(x))
            for j, name in enumerate(which):
                sel = pick == j
                if sel.any():
                    fn = augment.EVENT_ANOMALIES[name]
                    out[sel] = (fn(x[sel], rng, a["max_factor"]) if name == "shift" else
                                fn(x[sel], rng, a["smear_a"]) if name == "split" else fn(x[sel], rng))
            return out
        return f
    return lambda x, rng: augment.drop_constituents(x, rng, a["p_drop"])


# --- training --------------------------------------------------------------------------------


@dataclass
class CLRResult:
    """A trained run: encoder, the AE on its representations, the AE on raw inputs, logs."""

    method: str
    config: dict
    prep: Preprocess
    encoder: CLREncoder
    ae: RepresentationAE
    ae_raw: RepresentationAE
    clr_log: list = field(default_factory=list)      # (epoch, mean loss, mean norm-penalty)
    ae_log: dict = field(default_factory=dict)       # name -> [(epoch, train mse, val mse)]
    seconds: dict = field(default_factory=dict)


def make_encoder(method: str, cfg: dict) -> CLREncoder:
    m = cfg["model"]
    return CLREncoder(7 if method == "anomaly-clr" else 3, m["model_dim"], m["ff_dim"], m["output_dim"], m["heads"],
                      m["layers"], m["head_layers"], m["dropout"])


def clr_step(encoder, prep: Preprocess, x: np.ndarray, rng, method: str, cfg: dict, pos=None, anom=None):
    """(loss, norm penalty) of one mini-batch ``x`` (raw arrays)."""
    pos = pos or physical(method, cfg)
    anom = anom or anomalous(method, cfg)
    xs = [x, pos(x, rng), anom(x, rng)]
    toks = [prep.tokens(v) for v in xs]
    zs = [encoder(t, m) for t, m in toks]
    t = cfg["train"]
    loss = contrastive_loss(t["loss"], zs[0], zs[1], zs[2], float(t["tau"]))
    pen = norm_penalty(zs[0], zs[1])
    return loss, pen


def train_encoder(x: np.ndarray, method: str, cfg: dict, prep: Preprocess, progress: Callable | None = None,
                  log: list | None = None) -> CLREncoder:
    """Contrastive training of the encoder on raw arrays ``x`` (module docstring, step 1).

    Args:
        x: background events (N, 19, 3) or jets (N, N_c, 3).
        method: anomaly-clr or dark-clr.
        cfg: settings (:func:`clr_config`).
        prep: the preprocessing.
        progress: called with ("clr", 1) after each epoch.
        log: a list to which (epoch, mean loss, mean norm) is appended per epoch.
    """
    t = cfg["train"]
    torch.manual_seed(int(t["seed"]))
    rng = np.random.default_rng(int(t["seed"]))
    enc = make_encoder(method, cfg)
    opt = torch.optim.Adam(enc.parameters(), lr=float(t["lr"]), betas=(0.9, 0.999))
    pos, anom = physical(method, cfg), anomalous(method, cfg)
    bs = min(int(t["batch_size"]), len(x))
    if bs < 2:
        raise InvalidDataError(f"CLR training needs at least 2 events, got {len(x)}")
    w = float(t["norm_weight"])
    start = time.perf_counter()
    limit = None if t.get("max_minutes") in (None, 0) else 60 * float(t["max_minutes"])
    for epoch in range(1, int(t["epochs"]) + 1):
        enc.train()
        order = rng.permutation(len(x))
        losses, pens = [], []
        for b in range(0, len(x) - bs + 1, bs):
            loss, pen = clr_step(enc, prep, x[order[b:b + bs]], rng, method, cfg, pos, anom)
            total = loss + w * pen if w else loss
            if not torch.isfinite(total):
                raise InvalidDataError(f"CLR training diverged at epoch {epoch} (loss {total.item()})")
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            losses.append(loss.item())
            pens.append(pen.item())
        if log is not None:
            log.append((epoch, float(np.mean(losses)), float(np.mean(pens))))
        if progress:
            progress("clr", 1)
        if limit is not None and time.perf_counter() - start > limit:
            break
    enc.eval()
    return enc


@torch.no_grad()
def representations(encoder: CLREncoder, prep: Preprocess, x: np.ndarray, batch: int = 2048) -> torch.Tensor:
    """(N, output_dim) head outputs z of raw arrays ``x`` (eval mode)."""
    encoder.eval()
    out = []
    for b in range(0, len(x), batch):
        t, m = prep.tokens(x[b:b + batch])
        out.append(encoder(t, m))
    return torch.cat(out) if out else torch.zeros(0, encoder.head[-1].out_features)


def train_ae(inputs: torch.Tensor, ae_cfg: dict, seed: int = 0, progress: Callable | None = None,
             name: str = "ae", log: list | None = None) -> RepresentationAE:
    """The score's autoencoder on ``inputs`` (N, D): Adam, MSE, the epoch of the lowest
    validation MSE (a ``validation`` fraction held out) kept.

    Args:
        inputs: representations or flattened raw inputs of the background.
        ae_cfg: the ``ae`` section (hidden, bottleneck, lr, epochs, batch_size, standardise,
            validation, max_minutes).
        seed: seed of the split, initialisation and batches.
        progress: called with (name, 1) after each epoch.
        name: the phase name for ``progress``.
        log: a list to which (epoch, train MSE, validation MSE) is appended.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    n = len(inputs)
    perm = torch.randperm(n, generator=g)
    nval = int(round(float(ae_cfg["validation"]) * n)) if n >= 10 else 0
    val, tr = inputs[perm[:nval]], inputs[perm[nval:]]
    ae = RepresentationAE(inputs.shape[1], tuple(ae_cfg["hidden"]), int(ae_cfg["bottleneck"]))
    ae.fit_scaling(tr, bool(ae_cfg["standardise"]))
    opt = torch.optim.Adam(ae.parameters(), lr=float(ae_cfg["lr"]))
    bs = min(int(ae_cfg["batch_size"]), len(tr))
    best, best_state = float("inf"), copy.deepcopy(ae.state_dict())
    start = time.perf_counter()
    limit = None if ae_cfg.get("max_minutes") in (None, 0) else 60 * float(ae_cfg["max_minutes"])
    for epoch in range(1, int(ae_cfg["epochs"]) + 1):
        ae.train()
        order = torch.randperm(len(tr), generator=g)
        tot = []
        for b in range(0, len(tr), bs):
            loss = ae.error(tr[order[b:b + bs]]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot.append(loss.item())
        ae.eval()
        with torch.no_grad():
            v = ae.error(val).mean().item() if nval else float(np.mean(tot))
        if log is not None:
            log.append((epoch, float(np.mean(tot)), v))
        if v < best:
            best, best_state = v, copy.deepcopy(ae.state_dict())
        if progress:
            progress(name, 1)
        if limit is not None and time.perf_counter() - start > limit:
            break
    ae.load_state_dict(best_state)
    ae.eval()
    return ae


def train_clr(x: np.ndarray, method: str, cfg: dict, progress: Callable | None = None) -> CLRResult:
    """A whole run on background raw arrays ``x``: encoder, AE on z, AE on raw inputs."""
    prep = Preprocess.fit(method, x)
    log: list = []
    t0 = time.perf_counter()
    enc = train_encoder(x, method, cfg, prep, progress, log)
    t1 = time.perf_counter()
    seed = int(cfg["train"]["seed"])
    ae_log = {"ae": [], "ae_raw": []}
    ae = train_ae(representations(enc, prep, x), cfg["ae"], seed, progress, "ae", ae_log["ae"])
    t2 = time.perf_counter()
    ae_raw = train_ae(prep.flat(x), cfg["ae"], seed, progress, "ae_raw", ae_log["ae_raw"])
    t3 = time.perf_counter()
    return CLRResult(method, cfg, prep, enc, ae, ae_raw, log, ae_log,
                     {"clr": t1 - t0, "ae": t2 - t1, "ae_raw": t3 - t2})


# --- run folder ------------------------------------------------------------------------------


def write_clr_run(result: CLRResult, out, info: dict) -> Path:
    """Write ``run.json``, ``model.pt``, ``loss.csv`` and ``loss.png`` into the run folder
    ``out`` (written in a temporary folder, moved into place when complete)."""

    out = Path(out)
    with atomic_folder(out, replace=True) as tmp:
        torch.save({"encoder": result.encoder.state_dict(), "ae": result.ae.state_dict(),
                    "ae_raw": result.ae_raw.state_dict(), "config": result.config,
                    "pt_scale": result.prep.pt_scale,
                    "ae_dims": {"ae": result.ae.mean.shape[0], "ae_raw": result.ae_raw.mean.shape[0]}},
                   tmp / "model.pt")
        run = {"method": result.method, "config": result.config, "pt_scale": result.prep.pt_scale,
               "seconds": result.seconds, "epochs_trained": len(result.clr_log),
               "final_loss": result.clr_log[-1][1] if result.clr_log else None, **info}
        (tmp / "run.json").write_text(json.dumps(run, indent=2) + "\n")
        lines = ["phase,epoch,loss,extra"]
        lines += [f"clr,{e},{l:.6g},{p:.6g}" for e, l, p in result.clr_log]
        for name, rows in result.ae_log.items():
            lines += [f"{name},{e},{l:.6g},{v:.6g}" for e, l, v in rows]
        (tmp / "loss.csv").write_text("\n".join(lines) + "\n")
        _loss_plot(result, tmp / "loss.png")
    return out


def _loss_plot(result: CLRResult, path: Path) -> None:
    from hepgen.report.plots import _setup

    _setup()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    if result.clr_log:
        e, l, p = zip(*result.clr_log)
        axes[0].plot(e, l, label=f"CLR loss ({result.config['train']['loss']})")
        if result.config["train"]["norm_weight"]:
            axes[0].plot(e, p, label="mean ||z||", ls="--")
    axes[0].set_xlabel("epoch")
    axes[0].legend(fontsize=12)
    for name, rows in result.ae_log.items():
        if rows:
            e, l, v = zip(*rows)
            axes[1].plot(e, v, label=f"{name} (validation MSE)")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("epoch")
    axes[1].legend(fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def load_clr_run(run_dir, run: dict):
    """(encoder, ae, ae_raw, Preprocess, config) of a run folder."""
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        raise InputFileError(f"{run_dir}: no model.pt")
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = state["config"]
    method = run["method"]
    enc = make_encoder(method, cfg)
    enc.load_state_dict(state["encoder"])
    enc.eval()
    aes = {}
    for name in ("ae", "ae_raw"):
        ae = RepresentationAE(int(state["ae_dims"][name]), tuple(cfg["ae"]["hidden"]), int(cfg["ae"]["bottleneck"]))
        ae.load_state_dict(state[name])
        ae.eval()
        aes[name] = ae
    return enc, aes["ae"], aes["ae_raw"], Preprocess(method, float(state["pt_scale"])), cfg


@torch.no_grad()
def score_clr_run(run_dir, run: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of raw arrays ``x`` (events or constituents, as the run's method reads):
    {"score", and the extras}: anomaly-clr: score = AE MSE on z, ``ae_raw``; dark-clr:
    score = ||z|| (eq. 5.11), ``ae`` (AE MSE on z), ``ae_raw``."""
    enc, ae, ae_raw, prep, cfg = load_clr_run(run_dir, run)
    expect = (augment.NUM_SLOTS, 3) if run["method"] == "anomaly-clr" else (None, 3)
    if x.ndim != 3 or x.shape[2] != 3 or (expect[0] and x.shape[1] != expect[0]):
        raise InvalidDataError(f"inputs of shape {x.shape} do not fit a {run['method']} run")
    if run["method"] == "dark-clr":
        nc = int(cfg["data"]["num_constituents"])
        x = x[:, :nc]
        if x.shape[1] < nc:
            x = np.pad(x, [(0, 0), (0, nc - x.shape[1]), (0, 0)])
    z = representations(enc, prep, x)
    out = {}
    mse = lambda model, inp: torch.cat([model.error(inp[b:b + 4096]) for b in range(0, len(inp), 4096)]).numpy()
    rep_mse = mse(ae, z).astype(np.float64)
    raw_mse = mse(ae_raw, prep.flat(x)).astype(np.float64)
    if run["method"] == "anomaly-clr":
        out["score"] = rep_mse
    else:
        out["score"] = z.norm(dim=-1).numpy().astype(np.float64)
        out["ae"] = rep_mse
    out["ae_raw"] = raw_mse
    return out


__all__ = ["THESIS", "METHODS", "clr_config", "read_inputs", "load_sample", "Preprocess", "train_encoder",
           "representations", "train_ae", "train_clr", "make_encoder", "physical", "anomalous", "CLRResult", "write_clr_run", "load_clr_run",
           "score_clr_run", "clr_step"]


# --- command-line glue -------------------------------------------------------------------------


@dataclass
class CLRInputs:
    """A file's raw arrays for scoring (what :func:`hepgen.training.anomaly.read_sample` returns
    for CLR runs): ``x`` (N, M, 3) and the file name."""

    x: np.ndarray
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.x)


def read_clr_sample(run: dict, path) -> CLRInputs:
    """The events (anomaly-clr) or jets (dark-clr) of ``path`` as the run reads them."""
    nc = int(run.get("config", {}).get("data", {}).get("num_constituents", 50))
    return CLRInputs(load_sample(run["method"], path, nc), str(path))


def train_command(method: str, data, out, config_path=None, max_time: float | None = None,
                  max_events: int | None = None, seed: int = 0, progress: bool = True, echo=print) -> CLRResult:
    """``hepgen anomaly train anomaly-clr|dark-clr``: read --data, train (encoder, AE on z, AE
    on raw inputs), write the run folder ``out``, print a summary line.

    Args:
        method: anomaly-clr or dark-clr.
        data: background file(s) (Dark Machines text for anomaly-clr, JetNet-layout HDF5 for
            dark-clr); several are concatenated (e.g. a cocktail of SM processes).
        out: the run folder.
        config_path: YAML merged into the thesis settings (e.g. the CPU config).
        max_time: wall-clock limit of the contrastive phase in minutes.
        max_events: at most this many events per file.
        seed: seed of the initialisation, batches and augmentations.
        progress: show progress bars.
        echo: where the summary goes.
    """
    from tqdm.auto import tqdm

    from hepgen.config import read_config

    override = read_config(config_path)
    if max_time is not None:
        if not max_time > 0:
            raise OptionError(f"--max-time must be positive, got {max_time}")
        override = merge_config(override, {"train": {"max_minutes": max_time}})
    cfg = clr_config(method, merge_config(override, {"train": {"seed": seed}}))
    x, sources = read_inputs(method, data, max_events, int(cfg["data"].get("num_constituents", 50)))
    bars: dict = {}
    totals = {"clr": int(cfg["train"]["epochs"]), "ae": int(cfg["ae"]["epochs"]), "ae_raw": int(cfg["ae"]["epochs"])}
    labels = {"clr": f"{method} contrastive", "ae": "AE on z", "ae_raw": "AE on raw inputs"}

    def step(phase: str, n: int) -> None:
        if phase not in bars:
            for b in bars.values():
                b.close()
            bars[phase] = tqdm(total=totals[phase], desc=labels[phase], unit="epoch", disable=not progress,
                               dynamic_ncols=True)
        bars[phase].update(n)

    try:
        result = train_clr(x, method, cfg, step)
    finally:
        for b in bars.values():
            b.close()
    write_clr_run(result, out, {"data": sources, "events": int(len(x)),
                                "config_file": str(config_path) if config_path else None})
    log = result.clr_log
    echo(f"trained {method} on {len(x)} {'events' if method == 'anomaly-clr' else 'jets'}: {len(log)} epochs "
         f"(loss {log[0][1]:.4f} -> {log[-1][1]:.4f}, {result.seconds['clr']:.0f} s), AE on z "
         f"({result.seconds['ae']:.0f} s) and on raw inputs ({result.seconds['ae_raw']:.0f} s); run: {out}")
    return result


__all__ += ["CLRInputs", "read_clr_sample", "train_command"]
