"""``hepgen bench jets``: the thesis table for every model, against Pythia in the same run.

For each model (shipped name or run folder): sample ``num_jets`` jets (all threads) and
compute W1M, W1P, W1EFP, KPD, FPD against the test jets, count parameters, and time
``time_jets`` jets on **one thread** at the model's own batch size -- per core, like
Pythia + FastJet, which is timed on one core in the same run. Adds the truth-floor row
(training vs test jets) and each metric as a multiple of its floor. Flow-matching
models also get the few-step table (solver x steps -> metrics, NFE, time per jet on one
thread), bespoke students included where the model has them. Writes
``jets_bench.md`` and ``jets_bench.json``.

Every time is the minimum of ``repeats`` runs (Pythia and each model alike): on a shared
machine single runs of either varied by up to 1.7x within minutes (session 9), and the
minimum is the run least disturbed by other work.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch

from hepgen.data.jetnet import read_jets
from hepgen.errors import OptionError
from hepgen.evaluate.jets import TABLE_COLUMNS, format_row
from hepgen.metrics.efp import FPD_SET, EFPCalculator
from hepgen.metrics.jets import JetFeatures, jet_metrics
from hepgen.models.blocks.cfm import function_evaluations
from hepgen.models.registry import load_model


def time_pythia(jet_type: str, num_particles: int, num_jets: int, repeats: int = 1) -> float:
    """Microseconds per jet of the reference producer on one core (in-process, init included);
    the fastest of ``repeats`` runs."""
    from hepgen.simulate.jets import generate_jets

    best = float("inf")
    for r in range(repeats):
        start = time.perf_counter()
        generate_jets(jet_type, num_jets, num_particles, seed=777 + r, workers=1, progress=False)
        best = min(best, 1e6 * (time.perf_counter() - start) / num_jets)
    return best


#: issue targets: W1s within 3x the truth floor, FPD within 5x, KPD consistent with zero
FLOOR_FACTORS = {"w1m": 3.0, "w1p": 3.0, "w1efp": 3.0, "fpd": 5.0}


def at_floor(metrics: dict, floor: dict) -> bool:
    """Whether metrics meet the quality bounds relative to the truth floor."""
    ok = all(metrics[k]["value"] <= f * max(floor[k]["value"], floor[k]["error"]) for k, f in FLOOR_FACTORS.items())
    return ok and metrics["kpd"]["value"] <= 3 * max(metrics["kpd"]["error"], 1e-12)


def cheapest_at_floor(table: list[dict], floor: dict) -> dict | None:
    """The few-step entry with the fewest function evaluations that stays at the floor."""
    good = [r for r in table if at_floor(r["metrics"], floor)]
    return min(good, key=lambda r: (r["nfe"], r["us_per_jet"])) if good else None


def time_one_thread(surrogate, num: int, batch_size: int | None = None, repeats: int = 1, **kw) -> float:
    """Microseconds per jet of ``surrogate`` sampling ``num`` jets on one thread; the fastest
    of ``repeats`` runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        surrogate.sample(min(num, 256), seed=99, batch_size=batch_size, **kw)  # warm-up
        best = float("inf")
        for r in range(repeats):
            start = time.perf_counter()
            surrogate.sample(num, seed=98 - r, batch_size=batch_size, **kw)
            best = min(best, 1e6 * (time.perf_counter() - start) / num)
        return best
    finally:
        torch.set_num_threads(threads)


def floor_ratios(metrics: dict, floor: dict) -> dict[str, float]:
    """Each metric as a multiple of the truth floor (KPD: value over its error)."""
    out = {k: metrics[k]["value"] / max(floor[k]["value"], 1e-30) for k in ("w1m", "w1p", "w1efp", "fpd")}
    out["kpd_sigma"] = metrics["kpd"]["value"] / max(metrics["kpd"]["error"], 1e-30)
    return out


def reference_files(models: list[str], test: Path | None, train: Path | None,
                    surrogates: dict | None = None) -> tuple[Path, Path]:
    """The test and training jets of the bench: given, or ``data/{type}{P}_test.h5`` and
    ``data/{type}{P}_train.h5`` for the jet type and particle count of the models (all must
    agree), so a 150-particle model is never scored against 30-particle jets. ``surrogates``:
    the models already loaded, by name."""
    if test is not None and train is not None:
        return Path(test), Path(train)
    loaded = surrogates or {}
    cfgs = [(loaded.get(name) or load_model(name)).cfg for name in models]
    kinds = {(cfg.get("jet_type") or "t", int(cfg["num_particles"])) for cfg in cfgs}
    if len(kinds) != 1:
        raise OptionError(f"--model: the models have different jet types / particle counts ({sorted(kinds)}); "
                          "bench them separately or give --test and --train")
    (jet_type, P), = kinds
    return (Path(test) if test is not None else Path(f"data/{jet_type}{P}_test.h5"),
            Path(train) if train is not None else Path(f"data/{jet_type}{P}_train.h5"))


def check_particles(name: str, surrogate, P: int, test: Path) -> None:
    """A model must generate as many particles per jet as the test jets have."""
    if surrogate.num_particles != P:
        raise OptionError(f"--test: {test} has {P} particles per jet, model {name} generates "
                          f"{surrogate.num_particles}; give test/training jets of {surrogate.num_particles} particles")


def run_jets_bench(
    models: list[str],
    test: Path | None,
    train: Path | None,
    out: Path,
    num_jets: int = 50_000,
    batch_size: int | None = None,
    pythia_jets: int = 2000,
    few_step: list[tuple[str, int]] | None = None,
    few_step_jets: int = 10_000,
    time_jets: int = 2000,
    repeats: int = 3,
    echo=print,
) -> str:
    warnings.simplefilter("ignore", RuntimeWarning)
    surrogates = {name: load_model(name) for name in models}  # loaded once: files, checks, bench
    test, train = reference_files(models, test, train, surrogates)
    test_jets, train_jets = read_jets(test), read_jets(train)
    P = test_jets.num_particles
    if train_jets.num_particles != P:
        raise OptionError(f"--train: {train} has {train_jets.num_particles} particles per jet, --test {test} has {P}")
    for name, surrogate in surrogates.items():  # before the (slow) floor and Pythia timing
        check_particles(name, surrogate, P, test)
    calc = EFPCalculator(*FPD_SET)
    f_test = JetFeatures.from_particle_features(test_jets.particle_features[:num_jets], calc)
    results = {}

    echo("truth floor (train vs test) ...")
    f_train = JetFeatures.from_particle_features(train_jets.particle_features[:num_jets], calc)
    floor = jet_metrics(f_test, f_train)
    results["truth floor"] = {"metrics": floor}

    echo(f"Pythia + FastJet, {pythia_jets} {test_jets.jet_type or 't'} jets on one core ...")
    pythia_us = time_pythia(test_jets.jet_type or "t", P, pythia_jets, repeats)
    results["pythia"] = {"us_per_jet_one_core": pythia_us}
    ratio_cols = ("w1m", "w1p", "w1efp", "fpd")

    def write() -> str:
        """(Re)write the report with what is done so far, so an interrupted run keeps its rows."""
        done = [n for n in models if n in results]
        device = "GPU" if torch.cuda.is_available() else "CPU"
        md = [
            f"# Jet models vs Pythia: {num_jets} generated vs {min(num_jets, len(test_jets))} test jets, {P} particles",
            "",
            f"Metrics with jetnet's definitions and scales; the truth floor is training vs test jets. Speed "
            f"per core: each model samples {time_jets} jets on one {device} thread at its own batch size; "
            f"Pythia 8 + FastJet, timed in the same run on one core, takes {pythia_us:.0f} µs per jet "
            f"(each time the fastest of {repeats} runs).",
            "",
            "| model | " + " | ".join(label for _, label in TABLE_COLUMNS) +
            " | µs per jet (1 thread) | × faster than Pythia per core | parameters | sampler |",
            "|---" * (len(TABLE_COLUMNS) + 5) + "|",
        ]
        for name in done:
            e = results[name]
            e["at_floor"] = at_floor(e["metrics"], floor)
            sampler = e.get("sampler") or {}
            sampler_text = f"{sampler.get('method')} × {sampler.get('steps')}" if sampler.get("method") else "–"
            md.append(f"| {name} | " + " | ".join(format_row(e["metrics"])) +
                      f" | {e['us_per_jet']:.0f} | {e['speedup_vs_pythia']:.1f} | {e['parameters']:,} | {sampler_text} |")
        md.append("| truth floor | " + " | ".join(format_row(floor)) + " | – | – | – | – |")
        md.append(f"| Pythia + FastJet | – | – | – | – | – | {pythia_us:.0f} | 1 | – | – |")
        if done:
            md += ["", "## In units of the truth floor", "",
                   "| model | W1M | W1P | W1EFP | FPD | KPD / error |", "|---|---|---|---|---|---|"]
            for name in done:
                r = results[name]["floor_ratios"]
                md.append(f"| {name} | " + " | ".join(f"{r[k]:.1f}×" for k in ratio_cols) + f" | {r['kpd_sigma']:.1f} |")
        for name in done:
            if results[name].get("few_step"):
                md += ["", f"## {name}: quality against function evaluations ({few_step_jets} generated jets each)", "",
                       "| solver | steps | NFE | " + " | ".join(label for _, label in TABLE_COLUMNS) +
                       " | W1M / W1P / W1EFP / FPD in floor units | µs per jet (1 thread) |",
                       "|---" * (len(TABLE_COLUMNS) + 5) + "|"]
                for r in results[name]["few_step"]:
                    ratios = " / ".join(f"{r['floor_ratios'][k]:.1f}" for k in ratio_cols)
                    md.append(f"| {r['method']} | {r['steps']} | {r['nfe']} | " + " | ".join(format_row(r["metrics"])) +
                              f" | {ratios} | {r['us_per_jet']:.0f} |")
                best = cheapest_at_floor(results[name]["few_step"], floor)
                results[name]["cheapest_at_floor"] = best
                md.append("")
                md.append(
                    f"Cheapest solver within the floor bounds: {best['method']} x {best['steps']} ({best['nfe']} NFE)."
                    if best else "No solver setting meets the floor bounds (W1s <= 3x, FPD <= 5x floor, KPD ~ 0)."
                )
        text = "\n".join(md) + "\n"
        out.mkdir(parents=True, exist_ok=True)
        (out / "jets_bench.md").write_text(text)
        (out / "jets_bench.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
        return text

    write()
    for name in models:
        echo(f"{name}: sampling {num_jets} jets ...")
        surrogate = surrogates[name]
        jets = surrogate.sample(num_jets, seed=0, batch_size=batch_size)
        m = jet_metrics(f_test, JetFeatures.from_particle_features(jets.particle_features, calc))
        echo(f"{name}: timing {time_jets} jets on one thread ...")
        us = time_one_thread(surrogate, time_jets, batch_size, repeats)
        entry = {"metrics": m, "floor_ratios": floor_ratios(m, floor), "us_per_jet": us,
                 "parameters": surrogate.num_parameters(), "speedup_vs_pythia": pythia_us / us,
                 "sampler": surrogate.cfg.get("sampler")}
        results[name] = entry
        write()
        if surrogate.family == "cfm":
            table = []
            for method, steps in few_step or []:
                if method == "bespoke" and steps not in surrogate.solvers:
                    continue
                echo(f"{name}: {method} x {steps} steps ({few_step_jets} jets) ...")
                js = surrogate.sample(few_step_jets, seed=0, batch_size=batch_size, method=method, steps=steps)
                mk = jet_metrics(f_test, JetFeatures.from_particle_features(js.particle_features, calc))
                us_k = time_one_thread(surrogate, max(time_jets // 4, 100), batch_size, repeats, method=method,
                                       steps=steps)
                nfe = steps if method == "bespoke" else function_evaluations(method, steps)
                table.append({"method": method, "steps": steps, "nfe": nfe, "us_per_jet": us_k, "metrics": mk,
                              "floor_ratios": floor_ratios(mk, floor)})
                entry["few_step"] = table
                write()
    return write()
