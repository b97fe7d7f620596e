"""Training and scoring of anomaly detectors; CWoLa (seed 001 L2490-2510).

CWoLa on dijets (Metodiev, Nachman & Thaler, arXiv:1708.02949; the LHCO set-up of
seed 001 L2490-2506):

* a mixed sample - background with signal injected at a chosen S/B (:func:`inject_signal`)
  - is split by m_jj into the signal region SR = [lo, hi] (default 3.3-3.7 TeV, the
  W' peak) and sidebands SB of width ``sideband`` on each side (default 200 GeV); events
  outside both are not used;
* a classifier (:class:`~hepgen.models.assemblies.anomaly.CWoLaClassifier`, 3 x 64 ReLU)
  learns SR (label 1) vs SB (label 0) on the features other than m_jj (m_J1,
  m_J1 - m_J2, tau21 of both jets), with binary cross entropy, Adam (lr 1e-3) and class
  weights N / (2 N_SR), N / (2 N_SB) against the SR/SB imbalance (L2501);
* k-fold (default 5): the SR and SB events are dealt into k folds; for each fold a
  classifier is trained on the other k - 1 (of which ``val_fraction`` is held out for
  validation), and the ``ensemble`` epochs with the lowest validation loss (seed: 10,
  L2502) are kept; their mean probability scores the held-out fold. So every event is
  scored by classifiers that never saw it (the ``kfold`` scores), and new data are scored
  by the mean over all folds' members.
  ``folds = 1`` is the seed's own set-up (L2502): one classifier trained on the share
  ``1 - val_fraction`` of the SR and SB events and validated on the rest; only those
  validation events get ``kfold`` scores.

A run folder holds ``run.json`` (method, settings, counts), ``model.pt`` (the ensemble),
``losses.csv`` (train and validation loss per fold and epoch), ``kfold_scores.h5`` and,
when the injected sample has truth labels, ``kfold_metrics.json`` (AUC, SI, eps_B^-1 of
the k-fold scores of the SR events), and ``loss.png``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from hepgen.data.atomic import atomic_folder
from hepgen.data.dijets import DijetSample, concatenate
from hepgen.errors import InputFileError, InvalidDataError, OptionError
from hepgen.models.assemblies.anomaly import CWoLaEnsemble, CWoLaClassifier, likelihood_ratio

METHODS = ("nae", "anomaly-clr", "dark-clr", "cwola")


@dataclass
class CWoLaConfig:
    """Settings of a CWoLa training (defaults: the seed's, L2498-2502).

    Args:
        signal_region: (lo, hi) of the SR in m_jj [GeV].
        sideband: width of each sideband [GeV].
        features: the feature columns to classify on (default: all but m_jj).
        folds: k of the k-fold (1: a single classifier with a validation split).
        epochs: training epochs per fold.
        batch_size: mini-batch size.
        lr: Adam learning rate.
        hidden: hidden layer widths.
        ensemble: checkpoints of lowest validation loss kept per fold.
        val_fraction: share of the training folds used for validation.
        seed: fold assignment, validation split, initialisation and batches.
    """

    signal_region: tuple[float, float] = (3300.0, 3700.0)
    sideband: float = 200.0
    features: tuple[str, ...] | None = None
    folds: int = 5
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    hidden: tuple[int, ...] = (64, 64, 64)
    ensemble: int = 10
    val_fraction: float = 0.2
    seed: int = 0

    def check(self) -> None:
        lo, hi = self.signal_region
        if not 0 <= lo < hi:
            raise OptionError(f"--signal-region: need 0 <= LO < HI, got {lo} {hi}")
        if self.sideband <= 0:
            raise OptionError(f"--sidebands must be positive, got {self.sideband}")
        if self.folds < 1:
            raise OptionError(f"--folds must be at least 1, got {self.folds}")
        if self.epochs < 1:
            raise OptionError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise OptionError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.ensemble < 1:
            raise OptionError(f"--ensemble must be at least 1, got {self.ensemble}")
        if not 0 < self.val_fraction < 1:
            raise OptionError(f"--val-fraction must lie in (0, 1), got {self.val_fraction}")


def regions(mjj: np.ndarray, signal_region: tuple[float, float], sideband: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks (in SR, in SB) of events with dijet masses ``mjj``.

    Args:
        mjj: the dijet masses [GeV].
        signal_region: (lo, hi) of the SR, inclusive.
        sideband: width of each sideband; SB = [lo - w, lo) and (hi, hi + w].
    """
    lo, hi = signal_region
    sr = (mjj >= lo) & (mjj <= hi)
    sb = ((mjj >= lo - sideband) & (mjj < lo)) | ((mjj > hi) & (mjj <= hi + sideband))
    return sr, sb


def inject_signal(background: DijetSample, signal: DijetSample, s_over_b: float, seed: int = 0) -> DijetSample:
    """The background with round(s_over_b * N_background) signal events added, labelled.

    The signal events are a random subset (seeded) of ``signal``; the mixed sample is
    shuffled. S/B counts all events of both files (the R&D set's convention: "a signal
    rate of 1 %", L2474); the SR's own S/B is higher and recorded in the run.

    Args:
        background: the background sample (labels 0 unless it has its own).
        signal: the signal sample to draw from.
        s_over_b: injected signal events per background event (>= 0).
        seed: which signal events and the shuffling.
    """
    if not s_over_b >= 0:
        raise OptionError(f"--s-over-b must be >= 0, got {s_over_b}")
    n_sig = int(round(s_over_b * len(background)))
    if n_sig > len(signal):
        raise OptionError(f"--s-over-b {s_over_b}: needs {n_sig} signal events, {signal.source} has {len(signal)}")
    rng = np.random.default_rng(seed)
    bkg = background if background.label is not None else background.select(slice(None))
    if bkg.label is None:
        bkg.label = np.zeros(len(bkg), dtype=np.int8)
    sig = signal.select(np.sort(rng.choice(len(signal), n_sig, replace=False)))
    sig.label = np.ones(n_sig, dtype=np.int8)
    mixed = concatenate([bkg, sig])
    return mixed.select(rng.permutation(len(mixed)))


def classifier_inputs(sample: DijetSample, features: Sequence[str] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """The classifier's input matrix and its column names (default: all but m_jj)."""
    names = tuple(c for c in sample.columns if c != "mjj") if features is None else tuple(features)
    if not names:
        raise InvalidDataError(f"{sample.source}: no features besides mjj to classify on")
    if "mjj" in names:
        raise OptionError("--features: CWoLa must not classify on mjj (it defines the regions)")
    return np.stack([sample.column(n) for n in names], axis=1).astype(np.float32), names


def check_regions(sample: DijetSample, config: CWoLaConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (SR, SB) masks of ``sample``, or one clear error when either region is (nearly) empty.

    Args:
        sample: the dijet events.
        config: the regions and the number of folds.
    """
    in_sr, in_sb = regions(sample.mjj, config.signal_region, config.sideband)
    n_sr, n_sb = int(in_sr.sum()), int(in_sb.sum())
    if min(n_sr, n_sb) < config.folds:
        raise InvalidDataError(f"{sample.source}: {n_sr} events in the signal region and {n_sb} in the sidebands "
                               f"(SR {config.signal_region[0]:g}-{config.signal_region[1]:g} GeV, sidebands "
                               f"{config.sideband:g} GeV); CWoLa needs more")
    return in_sr, in_sb


@dataclass
class CWoLaResult:
    """What :func:`train_cwola` returns.

    Args:
        ensemble: the kept classifiers of every fold.
        kfold_probability: p(SR | x) of each SR/SB event from the classifiers that did not
            see it (NaN for events outside SR and SB).
        in_sr, in_sb: region masks of the events.
        losses: rows (fold, epoch, train_loss, val_loss).
        seconds: training time.
    """

    ensemble: CWoLaEnsemble
    kfold_probability: np.ndarray
    in_sr: np.ndarray
    in_sb: np.ndarray
    losses: list[tuple[int, int, float, float]] = field(default_factory=list)
    seconds: float = 0.0


def _weighted_bce(model, x, y, w) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(model(x), y, weight=w, reduction="sum") / w.sum()


def _train_fold(x_tr, y_tr, x_va, y_va, config: CWoLaConfig, seed: int, progress) -> tuple[list[dict], list]:
    """Train one classifier; return the ``ensemble`` lowest-validation-loss states and the losses."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n_sr, n_sb = float(y_tr.sum()), float(len(y_tr) - y_tr.sum())
    if n_sr == 0 or n_sb == 0:
        raise InvalidDataError("a CWoLa fold has no events in the signal region or none in the sidebands; "
                               "widen --signal-region/--sidebands or give more events")

    def weights(y):
        return torch.where(y > 0.5, len(y_tr) / (2 * n_sr), len(y_tr) / (2 * n_sb))

    mean, std = x_tr.mean(0), x_tr.std(0)
    std = np.where(std > 0, std, 1.0)
    model = CWoLaClassifier(x_tr.shape[1], config.hidden, mean, std)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    xt, yt = torch.as_tensor(x_tr), torch.as_tensor(y_tr, dtype=torch.float32)
    xv, yv = torch.as_tensor(x_va), torch.as_tensor(y_va, dtype=torch.float32)
    wt, wv = weights(yt), weights(yv)
    kept: list[tuple[float, int, dict]] = []
    history = []
    for epoch in range(config.epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total, norm = 0.0, 0.0
        for i in range(0, len(xt), config.batch_size):
            idx = perm[i:i + config.batch_size]
            loss = _weighted_bce(model, xt[idx], yt[idx], wt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * float(wt[idx].sum())
            norm += float(wt[idx].sum())
        model.eval()
        with torch.no_grad():
            val = float(_weighted_bce(model, xv, yv, wv))
        history.append((epoch + 1, total / norm, val))
        kept.append((val, epoch, copy.deepcopy(model.state_dict())))
        kept = sorted(kept, key=lambda t: (t[0], t[1]))[: config.ensemble]
        if progress is not None:
            progress(1)
    return [s for _, _, s in sorted(kept, key=lambda t: t[1])], history


def train_cwola(sample: DijetSample, config: CWoLaConfig | None = None,
                progress: Callable[[int], None] | None = None) -> CWoLaResult:
    """Train CWoLa k-fold on ``sample`` (see the module docstring).

    Args:
        sample: the (mixed) dijet events; ``mjj`` defines the regions.
        config: the settings (default :class:`CWoLaConfig`).
        progress: called with 1 per finished epoch (of any fold).
    """
    config = config or CWoLaConfig()
    config.check()
    start = time.perf_counter()
    x, names = classifier_inputs(sample, config.features)
    in_sr, in_sb = check_regions(sample, config)
    used = np.nonzero(in_sr | in_sb)[0]
    rng = np.random.default_rng(config.seed)
    fold_of = np.empty(len(used), dtype=np.int64)
    fold_of[rng.permutation(len(used))] = np.arange(len(used)) % config.folds
    y = in_sr[used].astype(np.float32)
    xu = x[used]
    members, losses = [], []
    kfold = np.full(len(sample), np.nan)
    for k in range(config.folds):
        train_idx = np.nonzero(fold_of != k)[0] if config.folds > 1 else np.arange(len(used))
        train_idx = train_idx[rng.permutation(len(train_idx))]
        n_val = max(1, int(round(config.val_fraction * len(train_idx))))
        va, tr = train_idx[:n_val], train_idx[n_val:]
        if config.folds == 1:
            fold_of[va] = -1  # the validation events are the held-out ones
        states, history = _train_fold(xu[tr], y[tr], xu[va], y[va], config, config.seed * 1000 + k, progress)
        members.append(states)
        losses += [(k, e, t, v) for e, t, v in history]
    ensemble = CWoLaEnsemble(members, x.shape[1], config.hidden, names, meta={"method": "cwola", **_plain(config)})
    for k in range(config.folds):
        held = used[fold_of == (-1 if config.folds == 1 else k)]
        kfold[held] = ensemble.probability(x[held], folds=[k])
    return CWoLaResult(ensemble, kfold, in_sr, in_sb, losses, time.perf_counter() - start)


def _plain(config: CWoLaConfig) -> dict:
    d = asdict(config)
    d["signal_region"] = list(config.signal_region)
    d["hidden"] = list(config.hidden)
    d["features"] = None if config.features is None else list(config.features)
    return d


def _finite(metrics: dict, num_background: int) -> dict:
    """JSON-safe metrics: an infinite eps_B^-1 (no background passes) becomes its lower bound N_B."""
    out = {}
    for k, v in metrics.items():
        val = v["value"]
        if isinstance(val, float) and math.isinf(val):
            val = float(num_background)
        elif isinstance(val, float) and math.isnan(val):
            val = None
        out[k] = {"value": val, "error": v["error"] if math.isfinite(v["error"]) else 0.0}
    return out


def write_cwola_run(result: CWoLaResult, sample: DijetSample, out: str | Path, info: dict | None = None) -> Path:
    """Write a CWoLa run folder (see the module docstring); files appear only when complete.

    Args:
        result: the trained ensemble and k-fold scores.
        sample: the events it was trained on (for labels and counts).
        out: the run folder (created; an existing one keeps files not written here).
        info: extra entries for ``run.json`` (e.g. the input files and S/B).
    """
    import csv

    import h5py

    from hepgen.metrics.anomaly import anomaly_metrics

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"--out: {out} exists and is not a folder")
    if not out.parent.exists():
        raise InputFileError(f"--out: parent folder {out.parent} does not exist")
    meta = result.ensemble.meta
    run = {"method": "cwola", "config": {k: v for k, v in meta.items() if k != "method"},
           "feature_columns": list(result.ensemble.feature_columns), "events": len(sample),
           "events_sr": int(result.in_sr.sum()), "events_sb": int(result.in_sb.sum()),
           "seconds": round(result.seconds, 2), **(info or {})}
    kfold_metrics = None
    if sample.label is not None:
        lab = sample.label.astype(bool)
        s_sr, b_sr = int((lab & result.in_sr).sum()), int((~lab & result.in_sr).sum())
        run.update(signal_events=int(lab.sum()), signal_sr=s_sr, background_sr=b_sr,
                   s_over_b_sr=s_sr / b_sr if b_sr else None, s_over_sqrt_b_sr=s_sr / math.sqrt(b_sr) if b_sr else None)
        scored = result.in_sr & np.isfinite(result.kfold_probability)  # all SR events unless folds = 1
        s_sc, b_sc = int((lab & scored).sum()), int((~lab & scored).sum())
        if s_sc > 0 and b_sc > 0:
            p = result.kfold_probability[scored]
            kfold_metrics = _finite(anomaly_metrics(lab[scored], p, bootstrap=20, seed=0), b_sc)
    with atomic_folder(out) as tmp:
        result.ensemble.save(tmp / "model.pt")
        with open(tmp / "losses.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["fold", "epoch", "train_loss", "val_loss"])
            w.writerows(result.losses)
        with h5py.File(tmp / "kfold_scores.h5", "w") as f:
            f.create_dataset("probability", data=result.kfold_probability)
            f.create_dataset("score", data=np.where(np.isnan(result.kfold_probability), np.nan,
                                                    likelihood_ratio(np.nan_to_num(result.kfold_probability))))
            f.create_dataset("in_sr", data=result.in_sr)
            f.create_dataset("in_sb", data=result.in_sb)
            f.create_dataset("mjj", data=sample.mjj)
            if sample.label is not None:
                f.create_dataset("label", data=sample.label)
        if kfold_metrics is not None:
            (tmp / "kfold_metrics.json").write_text(json.dumps(kfold_metrics, indent=2) + "\n")
        (tmp / "run.json").write_text(json.dumps(run, indent=2) + "\n")
        _loss_plot(result.losses, tmp / "loss.png")
    return out


def _loss_plot(losses, path: Path) -> None:
    from hepgen.report.plots import _setup

    _setup()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    rows = np.asarray(losses, dtype=np.float64)
    for k in np.unique(rows[:, 0]).astype(int):
        r = rows[rows[:, 0] == k]
        line, = ax.plot(r[:, 1], r[:, 2], label=f"fold {k} train")
        ax.plot(r[:, 1], r[:, 3], ls="--", color=line.get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted cross entropy (dashed: validation)")
    ax.legend(fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def resolve_run(run: str | Path) -> Path:
    """The run folder ``run``, or the shipped anomaly run of that name (e.g. ``nae/qcd``,
    ``hepgen/shipped/nae/qcd``) when no such folder exists."""
    from hepgen.shipped import ROOT

    path = Path(run)
    if not path.is_dir() and not path.is_absolute() and (ROOT / path / "run.json").is_file():
        return ROOT / path
    return path


def read_run(run_dir: str | Path) -> dict:
    """The ``run.json`` of an anomaly run folder, checked to name a known method."""
    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    if not run_dir.is_dir():
        raise InputFileError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise InputFileError(f"{run_dir}: not an anomaly run (no run.json)")
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputFileError(f"{path}: not valid JSON") from None
    if run.get("method") not in METHODS:
        raise InputFileError(f"{path}: unknown anomaly method {run.get('method')!r}")
    return run


@dataclass
class Scores:
    """Anomaly scores of a sample.

    Args:
        score: higher is more signal-like (CWoLa: p / (1 - p); NAE: the energy, i.e. the
            reconstruction MSE of the selected NAE).
        probability: CWoLa's p(SR | x) (None for other methods).
        in_region: the events the method is meant to be judged on (CWoLa: the SR; NAE: all).
        extra: further named scores of the same events, higher more signal-like (NAE:
            ``ae``, the reconstruction MSE of the pre-trained plain autoencoder).
    """

    score: np.ndarray
    probability: np.ndarray | None
    in_region: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def read_sample(run: dict, path: str | Path):
    """The events of ``path`` in the format the run's method reads (CWoLa: dijets; NAE: jets)."""
    if run["method"] == "nae":
        from hepgen.data.jetnet import read_jets

        return read_jets(path)
    if run["method"] in ("anomaly-clr", "dark-clr"):
        from hepgen.training.clr import read_clr_sample

        return read_clr_sample(run, path)
    from hepgen.data.dijets import read_dijets

    return read_dijets(path)


def score_run(run_dir: str | Path, sample) -> Scores:
    """Score ``sample`` with the run in ``run_dir``.

    Args:
        run_dir: a run folder of ``hepgen anomaly train``.
        sample: the events to score (with the features the run was trained on): a
            :class:`~hepgen.data.dijets.DijetSample` for CWoLa, a
            :class:`~hepgen.data.jetnet.JetSample` for the NAE (see :func:`read_sample`).
    """
    run = read_run(run_dir)
    if run["method"] == "nae":
        from hepgen.data.jetnet import JetSample
        from hepgen.training.nae import score_nae_run

        if not isinstance(sample, JetSample):
            raise InputFileError(f"{getattr(sample, 'source', 'data')}: an NAE run scores jets (JetNet layout)")
        s = score_nae_run(run_dir, run, sample.particle_features)
        return Scores(s.pop("score"), None, np.ones(len(sample), bool), s)
    if run["method"] in ("anomaly-clr", "dark-clr"):
        from hepgen.training.clr import CLRInputs, score_clr_run

        if not isinstance(sample, CLRInputs):
            raise InputFileError(f"{getattr(sample, 'source', 'data')}: a {run['method']} run scores the output of read_sample")
        s = score_clr_run(run_dir, run, sample.x)
        return Scores(s.pop("score"), None, np.ones(len(sample), bool), s)
    if run["method"] != "cwola":
        raise OptionError(f"{run_dir}: scoring {run['method']} runs is not implemented yet")
    ensemble = CWoLaEnsemble.load(Path(run_dir) / "model.pt")
    missing = [c for c in ensemble.feature_columns if c not in sample.columns]
    if missing:
        raise InputFileError(f"{sample.source}: lacks the feature(s) {', '.join(missing)} the run was trained on")
    x = np.stack([sample.column(c) for c in ensemble.feature_columns], axis=1)
    p = ensemble.probability(x)
    cfg = run["config"]
    in_sr, _ = regions(sample.mjj, tuple(cfg["signal_region"]), cfg["sideband"])
    return Scores(likelihood_ratio(p), p, in_sr)


def write_scores(scores: Scores, sample, path: str | Path, attrs: dict | None = None) -> Path:
    """Write ``score`` (and ``probability``, ``in_region``, ``mjj``, ``label``, and each extra
    score as ``score_NAME``, e.g. ``score_ae``) to an HDF5 file atomically."""
    import h5py

    from hepgen.data.atomic import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("score", data=scores.score)
            if scores.probability is not None:
                f.create_dataset("probability", data=scores.probability)
            f.create_dataset("in_region", data=scores.in_region)
            for name, values in scores.extra.items():
                f.create_dataset(f"score_{name}", data=values)
            if getattr(sample, "mjj", None) is not None:
                f.create_dataset("mjj", data=sample.mjj)
            if getattr(sample, "label", None) is not None:
                f.create_dataset("label", data=sample.label)
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
    return path
