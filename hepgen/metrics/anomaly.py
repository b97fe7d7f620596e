"""ROC metrics of anomaly detection (seed 001 L2500-2510, Fig. 9.8; seed 002 Tables 5.2-5.4).

A score ranks events from most background-like to most signal-like. Cutting on it keeps a
fraction eps_s of the signal and eps_B of the background (the true and false positive
rates). The figures of merit:

* the ROC curve (eps_B against eps_s) and its area, the AUC;
* the background rejection eps_B^-1 at a fixed signal efficiency (0.2 and 0.3);
* the significance improvement SI(eps_s) = eps_s / sqrt(eps_B): by how much a cut on the
  score multiplies the significance S / sqrt(B) of a counting experiment, and its maximum
  ``sic_max``. SI blows up as eps_B -> 0 on a finite test set, so the maximum is taken
  only over cuts that keep at least ``min_background`` background events (25: a relative
  statistical error of eps_B below 20 %).

:func:`roc_curve` and :func:`roc_auc` give the same numbers as scikit-learn's
``roc_curve(drop_intermediate=False)`` and ``roc_auc_score`` (tied scores form one step,
the AUC is the trapezoidal area), with optional event weights. :func:`anomaly_metrics`
adds bootstrap errors and returns ``{"value", "error"}`` objects.
"""

from __future__ import annotations

import numpy as np

from hepgen.errors import InvalidDataError

EPS_S_POINTS = (0.2, 0.3)
MIN_BACKGROUND = 25


def _check(labels, scores, weights=None):
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise InvalidDataError(f"labels ({labels.shape}) and scores ({scores.shape}) differ in length")
    if not np.isfinite(scores).all():
        raise InvalidDataError("scores contain NaN or inf")
    if labels.all() or not labels.any():
        raise InvalidDataError("ROC metrics need both signal (label 1) and background (label 0) events")
    weights = np.ones_like(scores) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if weights.shape != scores.shape:
        raise InvalidDataError(f"weights ({weights.shape}) and scores ({scores.shape}) differ in length")
    return labels, scores, weights


def _counts(labels, scores, weights):
    """Cumulative (background, signal) weights passing each distinct threshold, highest first."""
    order = np.argsort(-scores, kind="mergesort")
    s, y, w = scores[order], labels[order], weights[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each run of tied scores
    tp = np.cumsum(w * y)[last]
    fp = np.cumsum(w * ~y)[last]
    return fp, tp, s[last]


def roc_curve(labels, scores, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve: (eps_B, eps_s, thresholds) for cuts ``score >= threshold``.

    Thresholds are the distinct scores in decreasing order with ``inf`` (nothing kept)
    first, as scikit-learn's ``roc_curve(..., drop_intermediate=False)``.

    Args:
        labels: 1 for signal, 0 for background.
        scores: higher means more signal-like.
        weights: optional per-event weights.
    """
    labels, scores, weights = _check(labels, scores, weights)
    fp, tp, thr = _counts(labels, scores, weights)
    fpr = np.r_[0.0, fp / fp[-1]]
    tpr = np.r_[0.0, tp / tp[-1]]
    return fpr, tpr, np.r_[np.inf, thr]


def roc_auc(labels, scores, weights=None) -> float:
    """Area under the ROC curve (trapezoidal, ties as one step; = ``roc_auc_score``).

    Args:
        labels: 1 for signal, 0 for background.
        scores: higher means more signal-like.
        weights: optional per-event weights.
    """
    fpr, tpr, _ = roc_curve(labels, scores, weights)
    return float(np.trapezoid(tpr, fpr))


def inverse_background_efficiency(fpr: np.ndarray, tpr: np.ndarray, eps_s: float) -> float:
    """eps_B^-1 at signal efficiency ``eps_s``, eps_B linearly interpolated along the ROC.

    Args:
        fpr, tpr: a ROC curve from :func:`roc_curve`.
        eps_s: the signal efficiency in (0, 1].
    """
    # the curve is non-decreasing in both; take the lowest eps_B that reaches eps_s
    eps_b = float(np.interp(eps_s, tpr, fpr, left=0.0, right=1.0))
    i = np.searchsorted(tpr, eps_s, side="left")
    if i < len(tpr) and tpr[i] == eps_s:
        eps_b = float(fpr[i])
    return float(1.0 / eps_b) if eps_b > 0 else float("inf")


def significance_improvement(fpr: np.ndarray, tpr: np.ndarray, num_background: float | None = None,
                             min_background: float = MIN_BACKGROUND) -> tuple[np.ndarray, np.ndarray]:
    """The SI curve: (eps_s, eps_s / sqrt(eps_B)) over the ROC points with eps_B > 0 that keep
    at least ``min_background`` background events.

    Args:
        fpr, tpr: a ROC curve from :func:`roc_curve`.
        num_background: the (weighted) number of background events behind ``fpr``; without
            it only eps_B > 0 is required.
        min_background: the fewest background events a cut may keep.
    """
    keep = fpr > 0
    if num_background is not None:
        keep &= fpr * num_background >= min_background - 1e-9
    return tpr[keep], tpr[keep] / np.sqrt(fpr[keep])


def point_metrics(labels, scores, weights=None, min_background: float = MIN_BACKGROUND) -> dict[str, float]:
    """``auc``, ``sic_max`` and ``inv_eps_b_at_<eps_s>`` of one sample (plain numbers).

    Args:
        labels: 1 for signal, 0 for background.
        scores: higher means more signal-like.
        weights: optional per-event weights.
        min_background: see :func:`significance_improvement`.
    """
    labels, scores, weights = _check(labels, scores, weights)
    fpr, tpr, _ = roc_curve(labels, scores, weights)
    _, si = significance_improvement(fpr, tpr, float(weights[~labels].sum()), min_background)
    out = {"auc": float(np.trapezoid(tpr, fpr)), "sic_max": float(si.max()) if len(si) else float("nan")}
    for e in EPS_S_POINTS:
        out[f"inv_eps_b_at_{e}"] = inverse_background_efficiency(fpr, tpr, e)
    return out


def anomaly_metrics(labels, scores, weights=None, bootstrap: int = 20, seed: int = 0,
                    min_background: float = MIN_BACKGROUND) -> dict[str, dict[str, float]]:
    """:func:`point_metrics` as ``{"value", "error"}`` objects; the error is the standard
    deviation over ``bootstrap`` resamples of the events (0 without bootstrap).

    Args:
        labels: 1 for signal, 0 for background.
        scores: higher means more signal-like.
        weights: optional per-event weights.
        bootstrap: number of bootstrap replicas (Poisson(1) weights per event).
        seed: seed of the replicas.
        min_background: see :func:`significance_improvement`.
    """
    labels, scores, weights = _check(labels, scores, weights)
    central = point_metrics(labels, scores, weights, min_background)
    reps = {k: [] for k in central}
    rng = np.random.default_rng(seed)
    for _ in range(bootstrap):
        w = weights * rng.poisson(1.0, size=len(weights))
        if w[labels].sum() <= 0 or w[~labels].sum() <= 0:
            continue
        m = point_metrics(labels, scores, w, min_background)
        for k, v in m.items():
            reps[k].append(v)
    out = {}
    for k, v in central.items():
        r = np.asarray(reps[k], dtype=np.float64)
        r = r[np.isfinite(r)]
        out[k] = {"value": float(v), "error": float(r.std(ddof=1)) if len(r) > 1 else 0.0}
    return out
