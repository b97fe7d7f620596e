"""``hepgen bench events``: event models against fresh reference events (seed 003 Table 7.20).

For each model (shipped name or run folder): sample as many events as the reference
holds, with the validity check (rejected events are redrawn; the rejected fraction is
reported), time the sampling (events/s on this CPU at the stated batch and threads),
evaluate with :func:`hepgen.evaluate.events.evaluate_events` (count-weighted W1, KL, JS,
total-E/total-pT distances, classifier AUC). Adds the truth-floor row (a second
reference sample of the same size against the first: what the metrics read for a perfect
model at this sample size), the reference producer's own rate (Pythia 8 + FastJet +
detector + selection, one core) measured in the same run, and the thesis' rows for
context (its binning is unknown, so only the scale compares). Writes
``events_bench.md`` and ``events_bench.json`` after every row.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from hepgen.data.darkmachines import read_events, write_events
from hepgen.evaluate.events import evaluate_events
from hepgen.models.registry import load_model

#: seed 003 Table 7.20 (events/s on an RTX 3060)
THESIS_ROWS = [
    ("thesis Exp. I (MAF per type)", 0.00835558, 0.00268654, 0.06028002, 10.4),
    ("thesis Exp. II (first/next)", 0.02181364, 0.00543950, 0.11161955, 7.2),
    ("thesis Exp. III (A-RQS)", 0.10907629, 0.01388603, 0.25341768, 583.9),
]


def time_reference(process: str = "ttbar", num: int = 300) -> float:
    """Selected events per second of the reference producer in this process (one core)."""
    from hepgen.simulate.events import simulate_chunk

    simulate_chunk(process, 20, 1)
    start = time.perf_counter()
    simulate_chunk(process, num, 2)
    return num / (time.perf_counter() - start)


def _fmt(m: dict, key: str, digits: int = 4) -> str:
    if key not in m:
        return "–"
    return f"{m[key]['value']:.{digits}f} ± {m[key]['error']:.{digits}f}"


def bench_events(models: list[str], reference: Path, floor: Path | None, out: Path, work: Path,
                 batch_size: int = 10_000, classifier_runs: int = 2, classifier_epochs: int = 20,
                 solver: str | None = None, steps: int | None = None, echo=print) -> dict:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    real = read_events(reference)
    process = str(real.process[0])
    threads = torch.get_num_threads()
    results: dict = {"reference": str(reference), "num_events": len(real), "batch_size": batch_size,
                     "threads": threads, "models": {}}
    kw = dict(classifier_runs=classifier_runs, classifier_epochs=classifier_epochs, plots=False,
              echo=lambda *a: None, progress=False)
    cols = ("w1_avg", "kl_avg", "js_avg", "js_total_e", "js_total_pt", "auc")

    def write() -> list[str]:
        md = [f"# Event models on {process}: {len(real)} generated vs {len(real)} reference events", "",
              "Reference: Pythia 8 + FastJet + hepgen's parametrised detector (a stand-in for Delphes) with the "
              f"Dark Machines selection. Model rates on this CPU at batch {batch_size} with {threads} thread(s), "
              "including the redraws of events that fail the selection.", "",
              "| model | W1 avg | KL avg | JS avg | total-E JS | total-pT JS | AUC | events/s | ×producer | "
              "rejected | parameters |", "|---" * 11 + "|"]
        ref_rate = results.get("producer_events_per_s")
        if "floor" in results:
            m = results["floor"]
            md.append("| truth floor (reference vs reference) | " + " | ".join(_fmt(m, c) for c in cols)
                      + f" | {ref_rate:.1f} (producer, 1 core) | 1 | – | – |")
        for name, r in results["models"].items():
            m = r["metrics"]
            ratio = r["events_per_s"] / ref_rate if ref_rate else float("nan")
            md.append(f"| {name} ({r['sampler']}) | " + " | ".join(_fmt(m, c) for c in cols)
                      + f" | {r['events_per_s']:.0f} | {ratio:.2f} | {r['rejected_fraction']:.3f} | "
                      f"{r['parameters']:,} |")
        md += ["", "Thesis rows (Dark Machines ttbar, its own binning and scaling; events/s on an RTX 3060):", "",
               "| model | W1 avg | KL avg | JS avg | events/s |", "|---|---|---|---|---|"]
        md += [f"| {n} | {w:.5f} | {k:.5f} | {j:.4f} | {r} |" for n, w, k, j, r in THESIS_ROWS]
        (out / "events_bench.md").write_text("\n".join(md) + "\n")
        (out / "events_bench.json").write_text(json.dumps(results, indent=1, default=float))
        return md

    if floor is not None:
        echo(f"truth floor: {floor} vs {reference} ...")
        results["floor"] = evaluate_events(reference, floor, work / "floor", **kw).metrics
    echo(f"reference producer ({process}) on one core ...")
    results["producer_events_per_s"] = time_reference(process)
    write()
    for name in models:
        surrogate = load_model(name)
        echo(f"{name}: sampling {len(real)} events ...")
        start = time.perf_counter()
        gen = surrogate.sample(len(real), seed=1, batch_size=batch_size, method=solver, steps=steps, progress=False)
        rate = len(real) / (time.perf_counter() - start)
        path = work / f"{name.replace('/', '_')}.txt"
        write_events(gen, path)
        echo(f"{name}: evaluating ...")
        ev = evaluate_events(reference, path, work / name.replace("/", "_"), **kw)
        sampler = surrogate.cfg.get("sampler", {})
        results["models"][name] = {
            "metrics": ev.metrics, "events_per_s": rate, "rejected_fraction": surrogate.rejected_fraction,
            "parameters": surrogate.num_parameters,
            "sampler": (f"{solver or sampler.get('method')} {steps or sampler.get('steps')}"
                        if surrogate.cfg["model"] == "event-cflow" else "exact"),
        }
        write()
    return results
