"""``hepgen study two-moons``: the generative-model playground of seed 000 ch. 4 and appendix A.

The data (seed 000 eq. 4.1, L1297-1301): theta ~ U[0, 2 pi], (x, y) = (cos theta, sin theta)
plus (1, -0.5) for theta > pi, plus Gaussian noise of sigma = 0.05 — two crescents that are
not connected (taken literally from the equation; sklearn's ``make_moons`` shifts by +0.5
and interlocks them). Training set: 100,000 points (Fig. 4.1).

Every model embeds the same backbone (:func:`hepgen.studies.toys.mlp`, 3 x 64 units; seed
L1311), only the output layer differs; the coupling flows get narrower networks per coupling
so that their total parameter count matches (footnote 3, L1313). Noise has the data's
dimension 2 everywhere (L1392). Models, by their names here and in ``metrics.json``:

* ``ae`` (eq. 4.2; sampled by decoding a Gaussian fitted to the codes), ``vae`` (sec. 4.2);
* ``gan`` (minimax), ``nsgan`` (non-saturating), ``lsgan``: Adam with standard momentum;
  ``wgan`` (weight clipping, RMSprop) and ``wgan-gp`` (gradient penalty, Adam with
  beta1 = 0): momentum-free, as sec. 4.3.3 (L1528) requires; the critics take 5 batches per
  generator step, so every model sees the same number of batches;
* ``nf-affine``, ``nf-rqs``: coupling flows of ``zuko`` (MAF / NSF with ``passes=2``), sec. 4.4;
* ``cnf``: a continuous NF trained by maximum likelihood (``zuko.flows.CNF``, exact trace),
  with a tenth of the iterations as in the seed (footnote 2, L1311: 100 per epoch);
* ``ddpm``: :class:`hepgen.models.blocks.ddpm.Diffusion` with 100 steps (L1920);
* ``cfm``, ``ot-cfm``: flow matching with the ``torchcfm`` paths, 100 midpoint steps (L1920).

Budget (L1311): 50 epochs x 1000 iterations at batch 256 (``--quick``: 3 x 500). Metrics per
model against fresh truth: ``w1`` — exact 2-D W1 (POT) on 3000 points of each, with the
truth-vs-truth floor ``w1_floor`` beside it; ``auc`` — the binary classifier test (sec. 4.8.2).
Then the multiclass "which model made this" test (L1955-1965): one classifier on equal
samples of every model, evaluated on truth; the model it assigns the highest mean
probability is deemed the best. Its blindness to mode collapse (L1965, appendix A L3173-3177)
is shown with a deliberately mode-collapsed sample ``collapsed`` — truth restricted to five
arcs per crescent (half of each) with noise 0.02 instead of 0.05, the GANs' failure of
Fig. 4.8: the binary AUC flags it, while the multiclass test (with all models, and with the
appendix's three classes AE, collapsed, RQS NF) need not rank it last.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hepgen.studies.toys import TimeMLP, adam, classifier_auc, mlp, parameters, sample_flow_matching, \
    train_flow_matching, wasserstein1
from hepgen.training.resume import LoopCheckpoint

MODELS = ("ae", "vae", "gan", "nsgan", "lsgan", "wgan", "wgan-gp", "nf-affine", "nf-rqs", "cnf", "ddpm", "cfm",
          "ot-cfm")
HIDDEN, LAYERS = 64, 3
FULL = dict(epochs=50, iterations=1000, batch=256, train_points=100_000, eval_points=20_000, w1_points=3000,
            classifier_iterations=3000, multiclass_points=20_000, multiclass_iterations=5000)
QUICK = dict(epochs=3, iterations=500, batch=256, train_points=20_000, eval_points=6000, w1_points=1500,
             classifier_iterations=800, multiclass_points=4000, multiclass_iterations=1000)


def make_moons(n: int, rng: np.random.Generator, sigma: float = 0.05) -> np.ndarray:
    """``n`` points of the seed's two moons (eq. 4.1) with noise ``sigma``."""
    theta = rng.uniform(0, 2 * np.pi, n)
    x = np.stack([np.cos(theta), np.sin(theta)], 1)
    x[theta > np.pi] += (1.0, -0.5)
    return (x + rng.normal(0, sigma, x.shape)).astype(np.float32)


def make_collapsed(n: int, rng: np.random.Generator, arcs: int = 5, cover: float = 0.5,
                   sigma: float = 0.02) -> np.ndarray:
    """A deliberately mode-collapsed 'model': the moons on ``arcs`` arcs per crescent covering a
    fraction ``cover`` of each, with narrower noise ``sigma`` (all points on the crescents, part
    of the support missing: the GANs of seed 000 Fig. 4.8)."""
    width = np.pi / arcs
    k = rng.integers(0, 2 * arcs, n)
    theta = k * width + rng.uniform(0, cover * width, n) + 0.5 * (1 - cover) * width
    x = np.stack([np.cos(theta), np.sin(theta)], 1)
    x[theta > np.pi] += (1.0, -0.5)
    return (x + rng.normal(0, sigma, x.shape)).astype(np.float32)


class _Scaler:
    def __init__(self, x: np.ndarray):
        self.mean, self.std = x.mean(0), x.std(0)

    def fwd(self, x):
        return ((x - self.mean) / self.std).astype(np.float32)

    def inv(self, z):
        return (np.asarray(z) * self.std + self.mean).astype(np.float32)


def _coupling_hidden(kind: str, target: int, transforms: int = 4) -> int:
    """Width per coupling network such that the whole flow has about ``target`` parameters."""
    import zuko

    best, best_gap = 8, math.inf
    for h in range(4, 129, 2):
        f = (zuko.flows.MAF(2, transforms=transforms, passes=2, hidden_features=[h] * LAYERS) if kind == "affine"
             else zuko.flows.NSF(2, transforms=transforms, passes=2, bins=8, hidden_features=[h] * LAYERS))
        gap = abs(parameters(f) - target)
        if gap < best_gap:
            best, best_gap = h, gap
    return best


def train_model(name: str, data: np.ndarray, steps: int, batch: int, seed: int = 0, progress=None,
                checkpoint: LoopCheckpoint | None = None):
    """Train model ``name`` for ``steps`` batches of ``data`` (standardised, (N, 2)).

    Returns ``(sample, n_parameters)`` with ``sample(n, seed)`` giving standardised points.

    Args:
        name: one of :data:`MODELS`; data: the training points; steps, batch: batches and their
            size; seed: torch seed; progress: called with the step number;
        checkpoint: saves the training state every few minutes and continues a killed
            training of the same model and budget exactly (the seed's budget of one model,
            e.g. ``cnf``, can outlast a session); cleared once the model is trained.
    """
    torch.manual_seed(seed)
    x = torch.as_tensor(data)
    tick = progress or (lambda s: None)
    ck = checkpoint or LoopCheckpoint(None)

    def batches(n_steps, indexed=False, **objects):
        """The training batches from the checkpoint's step on (``indexed``: with the step);
        ``objects``: the state the checkpoint keeps."""
        for s in range(ck.restore(**objects), n_steps):
            ck.before(s)
            tick(s)
            xb = x[torch.randint(0, len(x), (batch,))]
            yield (s, xb) if indexed else xb
        ck.clear()

    if name in ("cfm", "ot-cfm"):
        net = train_flow_matching(data, steps, batch, ot=name == "ot-cfm", hidden=HIDDEN, layers=LAYERS,
                                  seed=seed, callback=tick, checkpoint=ck)
        return (lambda n, s=0: sample_flow_matching(net, n, 2, steps=100, seed=s)), parameters(net)
    if name == "ddpm":
        from hepgen.models.blocks.ddpm import Diffusion

        diff, net = Diffusion(steps=100), TimeMLP(2, HIDDEN, LAYERS)
        opt = adam(net.parameters(), 1e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        ones = torch.ones(batch, 1)
        for xb in batches(steps, net=net, opt=opt, sched=sched):
            loss = diff.loss(net, xb[:, None], ones)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()

        def sample(n, s=0):
            g = torch.Generator().manual_seed(s)
            noise = torch.randn(n, 1, 2, generator=g)
            return diff.sample(net, noise, torch.ones(n, 1), generator=g)[:, 0].numpy()

        return sample, parameters(net)
    if name in ("nf-affine", "nf-rqs", "cnf"):
        import zuko

        target = parameters(mlp(2, 2, HIDDEN, LAYERS))
        if name == "cnf":
            flow = zuko.flows.CNF(2, hidden_features=[HIDDEN] * LAYERS, atol=1e-4, rtol=1e-4)
            steps = max(steps // 10, 1)  # seed 000 footnote 2: 100 of the 1000 iterations per epoch
        elif name == "nf-affine":
            flow = zuko.flows.MAF(2, transforms=4, passes=2, hidden_features=[_coupling_hidden("affine", target)] * LAYERS)
        else:
            flow = zuko.flows.NSF(2, transforms=4, passes=2, bins=8,
                                  hidden_features=[_coupling_hidden("rqs", target)] * LAYERS)
        opt = adam(flow.parameters(), 1e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for xb in batches(steps, flow=flow, opt=opt, sched=sched):
            loss = -flow().log_prob(xb).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
            opt.step()
            sched.step()

        def sample(n, s=0):
            torch.manual_seed(s)
            with torch.no_grad():
                return flow().sample((n,)).numpy()

        return sample, parameters(flow)
    if name in ("ae", "vae"):
        enc = mlp(2, 4 if name == "vae" else 2, HIDDEN, LAYERS)
        dec = mlp(2, 2, HIDDEN, LAYERS)
        opt = adam([*enc.parameters(), *dec.parameters()], 1e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        beta = 0.01  # the KL weight; 2 sigma^2 of a Gaussian decoder with sigma ~ 0.07
        for xb in batches(steps, enc=enc, dec=dec, opt=opt, sched=sched):
            h = enc(xb)
            if name == "vae":
                mu, logvar = h[:, :2], h[:, 2:].clamp(-10, 10)
                z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
                kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1).mean()
                loss = ((dec(z) - xb) ** 2).sum(1).mean() + beta * kl
            else:
                loss = ((dec(h) - xb) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            codes = enc(x[:20_000])[:, :2].numpy().astype(np.float64)
        mean, cov = codes.mean(0), np.cov(codes.T)

        def sample(n, s=0):
            rng = np.random.default_rng(s)
            z = rng.standard_normal((n, 2)) if name == "vae" else rng.multivariate_normal(mean, cov, n)
            with torch.no_grad():
                return dec(torch.as_tensor(z, dtype=torch.float32)).numpy()

        return sample, parameters(enc) + parameters(dec)
    if name in ("gan", "nsgan", "lsgan", "wgan", "wgan-gp"):
        return _train_gan(name, lambda **objects: batches(steps, **objects), batch)
    raise ValueError(f"unknown two-moons model {name!r}")


def _train_gan(name: str, batches, batch: int):
    """``batches(indexed=True, **objects)``: (step, batch) pairs from where the checkpoint of
    ``objects`` left off (:func:`train_model`)."""
    from hepgen.models.blocks.gan import gradient_penalty, lsgan_critic_loss, lsgan_generator_loss

    gen, disc = mlp(2, 2, HIDDEN, LAYERS), mlp(2, 1, HIDDEN, LAYERS)
    wasserstein = name in ("wgan", "wgan-gp")
    if name == "wgan":
        opt_g = torch.optim.RMSprop(gen.parameters(), 5e-5, foreach=True)
        opt_d = torch.optim.RMSprop(disc.parameters(), 5e-5, foreach=True)
    elif name == "wgan-gp":
        opt_g = adam(gen.parameters(), 1e-4, betas=(0.0, 0.9))
        opt_d = adam(disc.parameters(), 1e-4, betas=(0.0, 0.9))
    else:
        opt_g = adam(gen.parameters(), 2e-4, betas=(0.5, 0.999))
        opt_d = adam(disc.parameters(), 2e-4, betas=(0.5, 0.999))
    n_critic = 5 if wasserstein else 1
    sp = nn.functional.softplus
    for step, real in batches(indexed=True, gen=gen, disc=disc, opt_g=opt_g, opt_d=opt_d):
        fake = gen(torch.randn(batch, 2)).detach()
        r, f = disc(real), disc(fake)
        if name == "lsgan":
            loss_d = lsgan_critic_loss(r, f)
        elif wasserstein:
            loss_d = f.mean() - r.mean()
            if name == "wgan-gp":
                loss_d = loss_d + gradient_penalty(lambda z, m: (disc(z),), real, fake, None)
        else:  # BCE on logits: -log D(real) - log(1 - D(fake))
            loss_d = sp(-r).mean() + sp(f).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        if name == "wgan":
            for p in disc.parameters():
                p.data.clamp_(-0.01, 0.01)
        if (step + 1) % n_critic:
            continue
        f = disc(gen(torch.randn(batch, 2)))
        if name == "gan":  # minimax: minimise log(1 - D(G(z)))
            loss_g = -sp(f).mean()
        elif name == "nsgan":  # non-saturating: minimise -log D(G(z))
            loss_g = sp(-f).mean()
        elif name == "lsgan":
            loss_g = lsgan_generator_loss(f)
        else:
            loss_g = -f.mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    def sample(n, s=0):
        g = torch.Generator().manual_seed(s)
        with torch.no_grad():
            return gen(torch.randn(n, 2, generator=g)).numpy()

    return sample, parameters(gen) + parameters(disc)


def multiclass_test(samples: dict[str, np.ndarray], truth: np.ndarray, iterations: int, seed: int = 0) -> dict:
    """The multiclass classifier test (seed 000 L1955-1965): an MLP learns which of the samples
    a point came from; ``score`` is its mean softmax output per class on ``truth`` (the highest
    names the best model), ``confusion`` the row-normalised confusion matrix on held-out points.

    Args:
        samples: {name: points (N, 2)}, the classes (equal sizes); truth: the evaluation points;
        iterations: Adam steps at batch 1024; seed: split and network seed.
    """
    names = list(samples)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    x = np.concatenate([samples[k] for k in names]).astype(np.float32)
    y = np.concatenate([np.full(len(samples[k]), i) for i, k in enumerate(names)])
    ok = np.isfinite(x).all(1)
    x, y = x[ok], y[ok]
    mean, std = truth.mean(0), truth.std(0)
    x = (x - mean) / std
    perm = rng.permutation(len(x))
    n_test = len(x) // 5
    te, tr = perm[:n_test], perm[n_test:]
    xt, yt = torch.as_tensor(x[tr]), torch.as_tensor(y[tr])
    net = mlp(2, len(names), HIDDEN, LAYERS)
    opt = adam(net.parameters(), 2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    for _ in range(iterations):
        idx = torch.randint(0, len(xt), (1024,))
        loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        pred = net(torch.as_tensor(x[te])).argmax(1).numpy()
        p_truth = net(torch.as_tensor(((truth - mean) / std).astype(np.float32))).softmax(1).numpy()
    conf = np.zeros((len(names), len(names)))
    np.add.at(conf, (y[te], pred), 1)
    conf /= np.maximum(conf.sum(1, keepdims=True), 1)
    score = dict(zip(names, p_truth.mean(0).tolist()))
    return {"classes": names, "score": score, "best": max(score, key=score.get),
            "rank_of": {k: sorted(score, key=score.get, reverse=True).index(k) + 1 for k in names},
            "confusion": conf.tolist(), "accuracy": float((pred == y[te]).mean())}


def run(out: str | Path, quick: bool = False, seed: int = 0, models=None, progress: bool = True, echo=print,
        resume: bool = False, **overrides) -> dict:
    """Train every model, evaluate it, run the multiclass tests, write metrics.json and report.html.

    Each finished model leaves ``out/parts/NAME.npz`` (its generated points, metrics and the
    budget it was trained with), so the seed's budget (hours on one core) can be spread over
    several sessions: with ``resume`` a model whose part exists for the same budget and seed
    is not trained again, and a model whose training was killed continues from
    ``out/parts/NAME.ckpt`` (saved every 5 minutes) exactly where it was.

    Args:
        out: output folder; quick: the reduced budget :data:`QUICK` instead of the seed's
            :data:`FULL`; seed: data, training and evaluation seed; models: names to run (default
            all of :data:`MODELS`); progress: a bar per model; echo: where to print;
        resume: reuse the finished models' parts of an earlier run into ``out``;
        overrides: budget entries replacing those of the configuration (e.g. ``epochs=10``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**(QUICK if quick else FULL), **{k: v for k, v in overrides.items() if v is not None}}
    models = list(models or MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        from hepgen.errors import OptionError

        raise OptionError(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    rng = np.random.default_rng(seed)
    train = make_moons(cfg["train_points"], rng)
    scaler = _Scaler(train)
    truth_eval = make_moons(cfg["eval_points"], np.random.default_rng(seed + 1000))
    truth_other = make_moons(cfg["eval_points"], np.random.default_rng(seed + 2000))
    steps = cfg["epochs"] * cfg["iterations"]
    t0 = time.perf_counter()
    metrics: dict = {}
    samples: dict[str, np.ndarray] = {}
    parts = out / "parts"
    parts.mkdir(exist_ok=True)
    budget = json.dumps({**cfg, "seed": seed}, sort_keys=True)
    for i, name in enumerate(models):
        part = parts / f"{name}.npz"
        if resume and part.exists():
            with np.load(part) as z:
                if str(z["budget"]) == budget:
                    samples[name], metrics[name] = z["gen"], json.loads(str(z["metrics"]))
                    echo(f"{name:10s} w1 {metrics[name]['w1']:.4f}  auc {metrics[name]['auc']:.3f}  (from {part})")
                    continue
        t1 = time.perf_counter()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=name, leave=False, mininterval=2.0)
        # an unfinished training of this model and budget continues with --resume
        ck = LoopCheckpoint(parts / f"{name}.ckpt", key=f"{budget} {name} {seed + i}")
        if not resume:
            ck.clear()
        sample, n_par = train_model(name, scaler.fwd(train), steps, cfg["batch"], seed=seed + i,
                                    progress=(lambda s: bar.update(1)) if bar else None, checkpoint=ck)
        if bar:
            bar.close()
        t_train = time.perf_counter() - t1 + ck.earlier_seconds  # with the sessions before a resume
        n_gen = max(cfg["eval_points"], cfg["multiclass_points"])
        gen = scaler.inv(sample(n_gen, seed + 10_000 + i))
        gen = np.where(np.isfinite(gen), gen, 1e3).astype(np.float32)  # a diverged model stays visible
        samples[name] = gen
        metrics[name] = _evaluate(gen[:cfg["eval_points"]], truth_eval, cfg, seed)
        metrics[name].update(parameters=n_par, train_seconds=round(t_train, 1), steps=steps // (10 if name == "cnf" else 1))
        from hepgen.data.atomic import atomic_output

        with atomic_output(part) as tmp, open(tmp, "wb") as f:
            np.savez(f, gen=gen, metrics=json.dumps(metrics[name]), budget=budget)
        echo(f"{name:10s} w1 {metrics[name]['w1']:.4f}  auc {metrics[name]['auc']:.3f}  "
             f"({n_par} parameters, {t_train:.0f} s)")
    floor = wasserstein1(truth_eval, truth_other, cfg["w1_points"], seed)
    for name in models:
        metrics[name]["w1_floor"] = floor
    collapsed = make_collapsed(max(cfg["eval_points"], cfg["multiclass_points"]), np.random.default_rng(seed + 3000))
    demo = {"collapsed": _evaluate(collapsed[:cfg["eval_points"]], truth_eval, cfg, seed)}
    m = cfg["multiclass_points"]
    classes = {k: v[:m] for k, v in samples.items()} | {"collapsed": collapsed[:m]}
    truth_mc = make_moons(cfg["eval_points"], np.random.default_rng(seed + 4000))
    multi = multiclass_test(classes, truth_mc, cfg["multiclass_iterations"], seed) if len(classes) > 1 else None
    three = None
    if {"ae", "nf-rqs"} <= set(samples):
        three = multiclass_test({k: classes[k] for k in ("ae", "collapsed", "nf-rqs")}, truth_mc,
                                cfg["multiclass_iterations"], seed)
    honest = [k for k in models if metrics[k]["auc"] < demo["collapsed"]["auc"]]
    demo.update(
        binary_flags_it=bool(demo["collapsed"]["auc"] > 0.6),
        models_with_lower_auc=honest,
        multiclass_score=multi["score"]["collapsed"] if multi else None,
        multiclass_rank=multi["rank_of"]["collapsed"] if multi else None,
        multiclass_classes=len(classes),
        multiclass_flags_it=bool(multi and multi["rank_of"]["collapsed"] == len(classes)),
        models_ranked_below_by_multiclass=[k for k in models if multi and multi["score"][k] < multi["score"]["collapsed"]],
        three_class=three,
        three_class_flags_it=bool(three and three["rank_of"]["collapsed"] == 3),
    )
    for name in models:
        if multi:
            metrics[name]["multiclass_score"] = multi["score"][name]
    metrics["multiclass"] = multi
    metrics["mode_collapse_demo"] = demo
    metrics["config"] = {**cfg, "quick": quick, "seed": seed, "models": models, "hidden": HIDDEN, "layers": LAYERS}
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    metrics["seed_result"] = ("seed 000 ch. 4: RQS NF, DDPM and the CNFs (CFM, OT-CFM) nearly indistinguishable from "
                              "truth; NSGAN, LSGAN and WGAN(-GP) mode-collapsed (Fig. 4.8); affine NF worse than RQS; "
                              "the multiclass test identifies the worse models but not the GANs' mode collapse "
                              "(Fig. 4.21, A.1)")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _plots(out, truth_eval, samples, collapsed, multi, three)
    _report(out, metrics, models)
    echo(f"collapsed sample: binary auc {demo['collapsed']['auc']:.3f} (flags it: {demo['binary_flags_it']}); "
         f"multiclass rank {demo['multiclass_rank']} of {len(classes)} (flags it: {demo['multiclass_flags_it']})")
    return metrics


def _evaluate(gen: np.ndarray, truth: np.ndarray, cfg: dict, seed: int) -> dict:
    ok = np.isfinite(gen).all(1)
    return {"w1": wasserstein1(gen[ok], truth, cfg["w1_points"], seed),
            "auc": classifier_auc(gen[ok], truth, iterations=cfg["classifier_iterations"], seed=seed)}


def _plots(out: Path, truth, samples, collapsed, multi, three) -> None:
    from hepgen.report.plots import _setup, panel_grid

    _setup()
    import matplotlib.pyplot as plt

    panels = {"truth": truth, **samples, "collapsed (demo)": collapsed}
    edges = (np.linspace(-1.4, 2.4, 77), np.linspace(-1.9, 1.3, 65))
    h_truth = np.histogram2d(truth[:, 0], truth[:, 1], edges)[0]
    cols = 5
    for kind in ("hist2d", "diff2d"):
        rows = math.ceil(len(panels) / cols)
        fig, axes = panel_grid(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
        for ax, (name, pts) in zip(axes.flat, panels.items()):
            h = np.histogram2d(pts[:, 0], pts[:, 1], edges)[0] * (len(truth) / max(len(pts), 1))
            if kind == "hist2d":
                ax.imshow(h.T, origin="lower", extent=(*edges[0][[0, -1]], *edges[1][[0, -1]]), cmap="viridis",
                          aspect="auto")
            else:
                v = max(h_truth.max() * 0.5, 1)
                ax.imshow((h - h_truth).T, origin="lower", extent=(*edges[0][[0, -1]], *edges[1][[0, -1]]),
                          cmap="RdBu_r", vmin=-v, vmax=v, aspect="auto")
            ax.set_title(name, fontsize="small")
            ax.tick_params(labelsize="x-small")
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(out / f"two_moons_{kind}.png", dpi=60)
        plt.close(fig)
    for tag, res in (("multiclass", multi), ("multiclass_3", three)):
        if not res:
            continue
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(16, 6.5))
        n = len(res["classes"])
        a1.imshow(np.array(res["confusion"]), cmap="Blues", vmin=0, vmax=1)
        a1.set_xticks(range(n), res["classes"], rotation=90, fontsize="x-small")
        a1.set_yticks(range(n), res["classes"], fontsize="x-small")
        a1.set_xlabel("predicted")
        a1.set_ylabel("true class")
        a2.bar(range(n), [res["score"][k] for k in res["classes"]],
               color=["C3" if k == "collapsed" else "C0" for k in res["classes"]])
        a2.axhline(1 / n, color="grey", ls="--")
        a2.set_xticks(range(n), res["classes"], rotation=90, fontsize="x-small")
        a2.set_ylabel("mean probability on truth")
        fig.tight_layout()
        fig.savefig(out / f"two_moons_{tag}.png", dpi=60)
        plt.close(fig)


def _report(out: Path, metrics: dict, models: list[str]) -> None:
    from hepgen.report.html import render_report

    mc = metrics["multiclass"]
    demo = metrics["mode_collapse_demo"]
    rows = [{"name": k, "cells": [f"{metrics[k]['w1']:.4f}", f"{metrics[k]['auc']:.3f}",
                                  f"{mc['score'][k]:.3f}" if mc else "-", str(metrics[k]["parameters"]),
                                  f"{metrics[k]['train_seconds']:.0f}"]} for k in models]
    rows.append({"name": "collapsed (demo)", "cells": [f"{demo['collapsed']['w1']:.4f}", f"{demo['collapsed']['auc']:.3f}",
                                                       f"{demo['multiclass_score']:.3f}" if mc else "-", "-", "-"]})
    three = demo["three_class"]
    note = (f"W1 floor (truth vs truth) {metrics[models[0]]['w1_floor']:.4f}. Multiclass test: best model "
            f"{mc['best'] if mc else '-'}; the collapsed sample ranks {demo['multiclass_rank']} of "
            f"{demo['multiclass_classes']} (flagged: {demo['multiclass_flags_it']}) while its binary AUC is "
            f"{demo['collapsed']['auc']:.3f} (flagged: {demo['binary_flags_it']}).")
    if three:
        note += (" Three classes (appendix A): scores " + ", ".join(f"{k} {v:.3f}" for k, v in three["score"].items())
                 + f" (collapsed flagged: {demo['three_class_flags_it']}).")
    note += f" Seed: {metrics['seed_result']}."
    figures = [{"file": "two_moons_hist2d.png", "caption": "2-D histograms: truth, every model, the collapsed sample"},
               {"file": "two_moons_diff2d.png", "caption": "model minus truth per bin"}]
    figures += [{"file": f"two_moons_{t}.png", "caption": c} for t, c in
                (("multiclass", "multiclass test: confusion matrix, mean probability on truth"),
                 ("multiclass_3", "appendix A: AE, collapsed, RQS NF")) if (out / f"two_moons_{t}.png").exists()]
    cfg = metrics["config"]
    render_report(out / "report.html", title="Two moons: the generative models of seed 000 ch. 4",
                  real="two moons (seed 000 eq. 4.1)", gen=", ".join(models), n_real=cfg["eval_points"],
                  n_gen=cfg["eval_points"], floor_file=None, n_floor=0,
                  columns=[{"label": "W1"}, {"label": "binary AUC"}, {"label": "multiclass score"},
                           {"label": "parameters"}, {"label": "train s"}], rows=rows, metric_note=note, details=[],
                  figures=figures)
