"""Event-level metrics for whole collision events (seed 003, chapter 6 and Table 7.20).

Everything here works on plain arrays or on :class:`hepgen.data.darkmachines.EventSample`
(objects ``(N, M, 4)`` = (E, pT, eta, phi), type codes with -1 padding). The thesis names
its metrics (Wasserstein distance, KL divergence, Jensen-Shannon distance, per particle
distribution, averaged with weights "according to the amount of particles in the
original dataset") but not its binning or scaling; the conventions below are this
module's, chosen so that the numbers sit on the scale of its Table 7.20.

Distributions
    One per object type and pT order, per type rather than per plotting group (the
    thesis groups j+b, leptons and photons only for its figures, while its Experiment I
    models -- the source of Table 7.20's best row -- are one per type): the leading,
    subleading, ... object of each type up to a maximum order K (default 4 for jets, 2 for
    b-jets, each lepton charge and photons, :data:`DEFAULT_MAX_ORDER`). The K-th
    distribution holds the K-th *and every softer* object of that type (``j_4+``), so
    that each real object is counted exactly once. Objects are ordered by pT here,
    whatever their order in the file. MET is one more distribution with the features
    (log10 MET, METphi), weighted by the number of events. Distributions with fewer than
    ``min_objects`` (10) real entries are skipped and listed. With ``max_order=1`` for every
    type the distributions are the inclusive ones of each type ("by type" averages).

Features
    The thesis' transformed space: log10 E, log10 pT, eta, phi (E, pT and MET floored at
    1e-3 of the file's unit before the log, so that a generated zero stays finite).

W1
    ``scipy.stats.wasserstein_distance`` of the two 1-D samples after min-max scaling by
    the *real* sample's range of that distribution and feature, so W1 is unit-free (MeV or
    GeV only shift log10 E) and about [0, 1] in scale.
KL
    D_KL(real || generated) = sum_i p_i ln(p_i / q_i) in nats of 50-bin histograms over the
    real sample's range (generated values outside it are clipped into the edge bins), with
    1e-6 added to every bin's probability (then divided by 1 + 50e-6) so that empty bins
    stay finite.
JS
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` of the same histograms (no
    epsilon): the Jensen-Shannon *distance*, in [0, 1].

Averages
    ``w1_avg``, ``kl_avg``, ``js_avg`` = sum_d n_d * mean_f m_{d,f} / sum_d n_d over the
    distributions d with n_d real objects (events for MET), m_{d,f} the metric of feature f.
    A distribution present in the real sample but empty in the generated one counts with
    the worst values: W1 = 1, JS = 1 and KL with q_i = 1e-6 in every bin (about 10).
    Finite samples alone give non-zero values, falling like 1/sqrt(N) for W1 and JS and
    like 1/N for KL: two independent samples of the toy tt̄-like events of the tests give
    (W1, KL, JS) = (0.009, 0.04, 0.10) at 3000 events each, (0.006, 0.03, 0.08) at 5000 and
    (0.003, 0.008, 0.04) at 20000.

Events
    Count vectors (n_j, n_b, n_e-, n_e+, n_m-, n_m+, n_g): the JS distance of the
    multiplicity histogram of each type (``count_js_<type>``) and of all objects
    (``multiplicity_js``), the JS distance of the joint distributions of whole count
    vectors (``count_vector_js``) and the fraction of generated events whose count
    vector never occurs in the real sample (``count_vector_unseen_fraction``). Totals per
    event as the thesis defines them (seed 003 ch. 7 footnote): total E = sum of the
    object energies + MET, total pT = scalar sum of the object pT; their W1 in the file's
    raw units (``w1_total_e``, ``w1_total_pt``) and KL/JS on log10 histograms as above.

Errors
    Bootstrap over events: ``bootstrap`` replicas (default 5) draw both samples' events
    with replacement and recompute every metric with the ranges, bin edges and weights of
    the full real sample; ``error`` is the standard deviation over the replicas, ``value``
    the metric of the full samples.

Also here: :func:`event_feature_matrix`, the fixed event vector of the real-vs-generated
classifier (:func:`hepgen.metrics.calo.classifier_auc` does the training), and
:func:`selection_function`, which finds the Dark Machines object and event selection
(seed 003 sec. 3.1) of the reference producer, the validity check of generated events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from hepgen.data.darkmachines import OBJECT_TYPES, EventSample
from hepgen.errors import InvalidDataError, OptionError

#: Feature names of the object distributions and of the MET distribution.
OBJECT_FEATURES = ("log10E", "log10pt", "eta", "phi")
MET_FEATURES = ("log10met", "phi")
#: Highest pT order kept separately per type; the last one holds that order and all softer objects.
DEFAULT_MAX_ORDER = {"j": 4, "b": 2, "e-": 2, "e+": 2, "m-": 2, "m+": 2, "g": 2}
BINS = 50
EPS = 1e-6
MIN_OBJECTS = 10
#: Floor (in the file's unit) of E, pT and MET before log10.
LOG_FLOOR = 1e-3
#: GeV in the file's unit (the Dark Machines files store MeV), for the selection cuts.
UNITS = {"MeV": 1000.0, "GeV": 1.0}
#: seed 003 Table 7.20: (W divergence, KL divergence, JS distance, events/s on an RTX 3060).
THESIS_TABLE_7_20 = {
    "Experiment I (MAF per type)": (0.00835558, 0.00268654, 0.06028002, 10.4),
    "Experiment II (first/next models)": (0.02181364, 0.00543950, 0.11161955, 7.2),
    "Experiment III (one RQS flow)": (0.10907629, 0.01388603, 0.25341768, 583.9),
}


# ---------------------------------------------------------------------------------------
# one feature, plain arrays
# ---------------------------------------------------------------------------------------
def _range(real: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(real)), float(np.max(real))
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def scaled_w1(real, gen, lo: float | None = None, hi: float | None = None) -> float:
    """W1 of two 1-D samples after mapping [lo, hi] (default: the real range) to [0, 1]."""
    real, gen = np.asarray(real, np.float64).ravel(), np.asarray(gen, np.float64).ravel()
    if lo is None or hi is None:
        lo, hi = _range(real)
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance((real - lo) / (hi - lo), (gen - lo) / (hi - lo)))


def histogram_edges(real, bins: int = BINS) -> np.ndarray:
    """``bins`` equal bins over the real sample's range."""
    return np.linspace(*_range(np.asarray(real, np.float64)), bins + 1)


def _hist(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in the bins of ``edges``, values outside clipped into the edge bins."""
    i = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(i, minlength=len(edges) - 1).astype(np.float64)


def kl_js_from_counts(c_real, c_gen, eps: float = EPS) -> tuple[float, float]:
    """(KL(real || gen) in nats with ``eps`` added to every probability, JS distance base 2);
    an empty generated histogram gives JS 1 and q = eps in every bin."""
    from scipy.spatial.distance import jensenshannon

    c_real, c_gen = np.asarray(c_real, np.float64), np.asarray(c_gen, np.float64)
    if c_real.sum() <= 0:
        raise InvalidDataError("KL/JS need a non-empty real histogram")
    p = c_real / c_real.sum()
    if c_gen.sum() <= 0:
        q = np.zeros_like(p)
        js = 1.0
    else:
        q = c_gen / c_gen.sum()
        js = float(np.clip(jensenshannon(p, q, base=2), 0.0, 1.0))
    p_, q_ = (p + eps) / (1 + eps * len(p)), (q + eps) / (1 + eps * len(q))  # q_ = eps/(1 + ...) if empty
    return float(np.sum(p_ * np.log(p_ / q_))), js


def histogram_kl_js(real, gen, edges=None, bins: int = BINS, eps: float = EPS) -> tuple[float, float]:
    """KL and JS distance of two 1-D samples histogrammed in ``edges`` (default: ``bins``
    bins over the real range; generated values outside go into the edge bins)."""
    real, gen = np.asarray(real, np.float64).ravel(), np.asarray(gen, np.float64).ravel()
    edges = histogram_edges(real, bins) if edges is None else np.asarray(edges, np.float64)
    return kl_js_from_counts(_hist(real, edges), _hist(gen, edges), eps)


@dataclass
class FeatureReference:
    """Range and bin edges of one feature, fixed from the full real sample."""

    lo: float
    hi: float
    edges: np.ndarray

    @classmethod
    def of(cls, real: np.ndarray, bins: int = BINS) -> "FeatureReference":
        lo, hi = _range(real)
        return cls(lo, hi, np.linspace(lo, hi, bins + 1))


def feature_distances(real, gen, refs: list[FeatureReference] | None = None, bins: int = BINS,
                      eps: float = EPS) -> np.ndarray:
    """(F, 3) array of (W1, KL, JS) per column of two (n, F) samples.

    An empty generated sample gives the worst values: W1 = 1, JS = 1, KL against the
    epsilon floor."""
    real = np.asarray(real, np.float64)
    if len(real) == 0:
        raise InvalidDataError("feature distances need real entries")
    real = real.reshape(len(real), -1)
    gen = np.asarray(gen, np.float64).reshape(-1, real.shape[1])
    refs = refs or [FeatureReference.of(real[:, f], bins) for f in range(real.shape[1])]
    out = np.empty((real.shape[1], 3))
    for f, ref in enumerate(refs):
        w1 = scaled_w1(real[:, f], gen[:, f], ref.lo, ref.hi) if len(gen) else 1.0
        kl, js = kl_js_from_counts(_hist(real[:, f], ref.edges), _hist(gen[:, f], ref.edges), eps)
        out[f] = w1, kl, js
    return out


# ---------------------------------------------------------------------------------------
# event arrays
# ---------------------------------------------------------------------------------------
def _log(x: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(x, LOG_FLOOR))


def pt_ordered(sample: EventSample, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 4) objects of one type sorted by decreasing pT, and their mask."""
    objs, mask = sample.objects_of(kind)
    if objs.shape[1] > 1:
        order = np.argsort(np.where(mask, -objs[..., 1], np.inf), axis=1, kind="stable")
        objs = np.take_along_axis(objs, order[..., None], axis=1)
        mask = np.take_along_axis(mask, order, axis=1)
    return objs, mask


def object_features(objs: np.ndarray) -> np.ndarray:
    """(..., 4) (E, pT, eta, phi) -> (log10 E, log10 pT, eta, phi)."""
    return np.stack([_log(objs[..., 0]), _log(objs[..., 1]), objs[..., 2], objs[..., 3]], axis=-1)


def totals(sample: EventSample) -> tuple[np.ndarray, np.ndarray]:
    """Per-event total E (object energies + MET) and total pT (scalar sum of object pT)."""
    present = sample.types >= 0
    e = np.where(present, sample.objects[..., 0], 0.0).sum(1) + sample.met
    pt = np.where(present, sample.objects[..., 1], 0.0).sum(1)
    return e, pt


def resolve_max_order(max_order: Mapping[str, int] | int | None) -> dict[str, int]:
    if max_order is None:
        return dict(DEFAULT_MAX_ORDER)
    if isinstance(max_order, int):
        orders = {t: max_order for t in OBJECT_TYPES}
    else:
        unknown = set(max_order) - set(OBJECT_TYPES)
        if unknown:
            raise OptionError(f"max order: unknown object types {sorted(unknown)} (known: {' '.join(OBJECT_TYPES)})")
        orders = {**DEFAULT_MAX_ORDER, **max_order}
    bad = {t: k for t, k in orders.items() if int(k) < 1}
    if bad:
        raise OptionError(f"max order must be >= 1 per type, got {bad}")
    return {t: int(k) for t, k in orders.items()}


def distribution_name(kind: str, order: int, max_order: int) -> str:
    """``j_1``, ``j_2``, ..., ``j_4+``; ``j_all`` when every object of the type is one distribution."""
    if max_order == 1:
        return f"{kind}_all"
    return f"{kind}_{order}{'+' if order == max_order else ''}"


@dataclass
class EventDistributions:
    """Per distribution: values ``(N, L, F)`` and mask ``(N, L)`` per event (L slots per event:
    1 for a single order, more for the open last order) so that a bootstrap over events
    is an index into the first axis."""

    values: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    features: dict[str, tuple[str, ...]]
    kinds: dict[str, str]
    count_vectors: np.ndarray
    total_e: np.ndarray
    total_pt: np.ndarray

    def entries(self, name: str, index: np.ndarray | None = None) -> np.ndarray:
        v, m = self.values[name], self.masks[name]
        if index is not None:
            v, m = v[index], m[index]
        return v[m]

    def count(self, name: str) -> int:
        return int(self.masks[name].sum())


def event_distributions(sample: EventSample, max_order: Mapping[str, int] | int | None = None) -> EventDistributions:
    """Split a sample into the per-(type, order) distributions and MET (see the module doc)."""
    orders = resolve_max_order(max_order)
    values, masks, feats, kinds = {}, {}, {}, {}
    n = len(sample)
    for kind in OBJECT_TYPES:
        objs, mask = pt_ordered(sample, kind)
        f = object_features(objs)
        k = orders[kind]
        for order in range(1, k + 1):
            name = distribution_name(kind, order, k)
            sl = slice(order - 1, order) if order < k else slice(order - 1, None)
            v, m = f[:, sl], mask[:, sl]
            if v.shape[1] == 0:
                v, m = np.zeros((n, 1, 4)), np.zeros((n, 1), bool)
            values[name], masks[name], feats[name], kinds[name] = v, m, OBJECT_FEATURES, kind
    values["met"] = np.stack([_log(sample.met), sample.met_phi], axis=-1)[:, None, :]
    masks["met"] = np.ones((n, 1), bool)
    feats["met"], kinds["met"] = MET_FEATURES, "met"
    e, pt = totals(sample)
    return EventDistributions(values, masks, feats, kinds, sample.count_vectors(), e, pt)


# ---------------------------------------------------------------------------------------
# all event metrics
# ---------------------------------------------------------------------------------------
def _count_hist_js(c_real: np.ndarray, c_gen: np.ndarray) -> float:
    top = int(max(c_real.max(initial=0), c_gen.max(initial=0))) + 1
    return kl_js_from_counts(np.bincount(c_real, minlength=top), np.bincount(c_gen, minlength=top))[1]


def count_metrics(cv_real: np.ndarray, cv_gen: np.ndarray) -> dict[str, float]:
    """Agreement of the (N, 7) count vectors (see the module doc)."""
    cv_real, cv_gen = np.asarray(cv_real, np.int64), np.asarray(cv_gen, np.int64)
    out = {f"count_js_{t}": _count_hist_js(cv_real[:, i], cv_gen[:, i]) for i, t in enumerate(OBJECT_TYPES)}
    out["multiplicity_js"] = _count_hist_js(cv_real.sum(1), cv_gen.sum(1))
    both = np.concatenate([cv_real, cv_gen])
    uniq, inv = np.unique(both, axis=0, return_inverse=True)
    inv = inv.ravel()
    c_r = np.bincount(inv[:len(cv_real)], minlength=len(uniq))
    c_g = np.bincount(inv[len(cv_real):], minlength=len(uniq))
    out["count_vector_js"] = kl_js_from_counts(c_r, c_g)[1]
    out["count_vector_unseen_fraction"] = float((c_r[inv[len(cv_real):]] == 0).mean()) if len(cv_gen) else 0.0
    return out


@dataclass
class EventMetrics:
    """Result of :func:`event_metrics`."""

    metrics: dict[str, dict[str, float]]
    #: name -> number of real entries (the weights), for the distributions used
    weights: dict[str, int]
    #: name -> (F, 3) (W1, KL, JS) of the full samples
    per_feature: dict[str, np.ndarray]
    features: dict[str, tuple[str, ...]]
    skipped: dict[str, int] = field(default_factory=dict)
    references: dict[str, list[FeatureReference]] = field(default_factory=dict, repr=False)


def _one_pass(real: EventDistributions, gen: EventDistributions, names, refs, totals_refs, weights,
              idx_real=None, idx_gen=None):
    """Every metric for one pair of (possibly bootstrapped) samples -> flat dict of floats."""
    out: dict[str, float] = {}
    per_feature = {}
    for name in names:
        d = feature_distances(real.entries(name, idx_real), gen.entries(name, idx_gen), refs[name])
        per_feature[name] = d
        for f, feat in enumerate(real.features[name]):
            for j, metric in enumerate(("w1", "kl", "js")):
                out[f"{metric}_{name}_{feat}"] = float(d[f, j])
    out.update(weighted_averages(per_feature, weights))

    from scipy.stats import wasserstein_distance

    def pick(a, idx):
        return a if idx is None else a[idx]

    for label, ref in totals_refs.items():
        r, g = pick(getattr(real, label), idx_real), pick(getattr(gen, label), idx_gen)
        out[f"w1_{label}"] = float(wasserstein_distance(r, g))
        kl, js = kl_js_from_counts(_hist(_log(r), ref.edges), _hist(_log(g), ref.edges))
        out[f"kl_{label}"], out[f"js_{label}"] = kl, js
    out.update(count_metrics(pick(real.count_vectors, idx_real), pick(gen.count_vectors, idx_gen)))
    return out, per_feature


def event_metrics(
    real: EventSample | EventDistributions,
    gen: EventSample | EventDistributions,
    *,
    max_order: Mapping[str, int] | int | None = None,
    bins: int = BINS,
    bootstrap: int = 5,
    min_objects: int = MIN_OBJECTS,
    seed: int = 0,
    progress: bool = False,
) -> EventMetrics:
    """Per-distribution W1/KL/JS, their count-weighted averages, count-vector agreement and
    total-E/pT distances of two event samples, each ``{"value", "error"}`` (module doc).

    Pass :class:`EventDistributions` built with the same ``max_order`` to reuse them."""
    if bins < 2:
        raise OptionError(f"bins must be >= 2, got {bins}")
    if bootstrap < 0:
        raise OptionError(f"bootstrap must be >= 0, got {bootstrap}")
    if isinstance(real, EventSample):
        real = event_distributions(real, max_order)
    if isinstance(gen, EventSample):
        gen = event_distributions(gen, max_order)
    n_real, n_gen = len(real.total_e), len(gen.total_e)
    if n_real == 0 or n_gen == 0:
        raise InvalidDataError(f"event metrics need events in both samples, got {n_real} and {n_gen}")
    if set(real.values) != set(gen.values):
        raise InvalidDataError("real and generated distributions were built with different max orders")
    names, skipped = [], {}
    for name in real.values:
        k = real.count(name)
        if k >= min_objects:
            names.append(name)
        else:
            skipped[name] = k
    weights = {n: real.count(n) for n in names}
    refs = {n: [FeatureReference.of(col, bins) for col in real.entries(n).T] for n in names}
    totals_refs = {label: FeatureReference.of(_log(getattr(real, label)), bins) for label in ("total_e", "total_pt")}
    values, per_feature = _one_pass(real, gen, names, refs, totals_refs, weights)

    from tqdm.auto import tqdm

    rng = np.random.default_rng([seed, 6])
    reps = []
    for _ in tqdm(range(bootstrap), desc="event metrics bootstrap", disable=not progress, leave=False):
        rep, _ = _one_pass(real, gen, names, refs, totals_refs, weights,
                           rng.integers(0, n_real, n_real), rng.integers(0, n_gen, n_gen))
        reps.append(rep)
    metrics = {k: {"value": v, "error": float(np.std([r[k] for r in reps])) if reps else 0.0}
               for k, v in values.items()}
    return EventMetrics(metrics, weights, per_feature, {n: real.features[n] for n in names}, skipped, refs)


def weighted_averages(per_feature: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> dict[str, float]:
    """Count-weighted (W1, KL, JS) averages of per-distribution (F, 3) arrays."""
    names = list(per_feature)
    w = np.array([weights[n] for n in names], np.float64)
    return {m: float(np.dot(w, [per_feature[n][:, j].mean() for n in names]) / w.sum())
            for j, m in enumerate(("w1_avg", "kl_avg", "js_avg"))}


# ---------------------------------------------------------------------------------------
# classifier inputs
# ---------------------------------------------------------------------------------------
def event_feature_matrix(sample: EventSample, max_order: Mapping[str, int] | int | None = None) -> np.ndarray:
    """Fixed (N, F) event vector of the real-vs-generated classifier: log10 MET, METphi, the
    first K objects of every type (log10 E, log10 pT, eta, phi; zeros where absent), the
    count vector and log10 of total E and total pT. K per type = ``max_order``."""
    orders = resolve_max_order(max_order)
    cols = [_log(sample.met)[:, None], sample.met_phi[:, None]]
    for kind in OBJECT_TYPES:
        objs, mask = pt_ordered(sample, kind)
        k = orders[kind]
        f = np.zeros((len(sample), k, 4))
        m = min(k, objs.shape[1])
        f[:, :m] = np.where(mask[:, :m, None], object_features(objs[:, :m]), 0.0)
        cols.append(f.reshape(len(sample), -1))
    e, pt = totals(sample)
    cols += [sample.count_vectors().astype(np.float64), _log(e)[:, None], _log(pt)[:, None]]
    return np.concatenate(cols, axis=1)


# ---------------------------------------------------------------------------------------
# validity check
# ---------------------------------------------------------------------------------------
def selection_function():
    """``(selection_mask, name)`` of the Dark Machines object and event selection provided by
    the reference producer (:func:`hepgen.simulate.events.selection_mask`, called as
    ``selection_mask(sample, unit=...)``), or ``(None, None)`` where that module is absent."""
    try:
        from hepgen.simulate.events import selection_mask
    except ImportError:
        return None, None
    return selection_mask, "hepgen.simulate.events.selection_mask"
