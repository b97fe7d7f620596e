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

:func:`bench_event_processes` runs that per process (issue 16: a multi-process
``event-cflow`` is benched on every process it generates, each against its own reference,
floor and producer rate): one folder and table per process, and a combined
``events_bench.md`` / ``events_bench.json`` with the per-process tables.
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

    simulate_chunk(process, min(20, num), 1)
    start = time.perf_counter()
    simulate_chunk(process, num, 2)
    return num / (time.perf_counter() - start)


def _fmt(m: dict, key: str, digits: int = 4) -> str:
    if key not in m:
        return "–"
    return f"{m[key]['value']:.{digits}f} ± {m[key]['error']:.{digits}f}"


def bench_events(models: list[str], reference: Path, floor: Path | None, out: Path, work: Path,
                 batch_size: int = 10_000, classifier_runs: int = 2, classifier_epochs: int = 20,
                 solver: str | None = None, steps: int | None = None, echo=print, process: str | None = None,
                 time_events: int = 300, masses: tuple[float, float] | None = None) -> dict:
    """One table: every model against the events of ``reference`` (see the module docstring).

    Args:
        models: shipped names or run folders.
        reference, floor: two producer files of the same process and size (``floor``: the
            truth-floor row, or None).
        out, work: the folder of the table and a scratch folder for the samples.
        batch_size, solver, steps: the sampling; classifier_runs, classifier_epochs: the AUC.
        process: the producer name of the reference's process: multi-process models sample
            it, models that do not generate it are skipped (None: every model its own).
        time_events: events of the producer's timing run.
        masses: (stop, LSP) GeV of a stop reference: multi-process models sample that mass
            point (trained or not: the interpolation check).
    """
    import torch

    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    real = read_events(reference)
    process_id = str(real.process[0])
    threads = torch.get_num_threads()
    results: dict = {"reference": str(reference), "process_id": process_id, "num_events": len(real),
                     "batch_size": batch_size,
                     "threads": threads, "models": {}}
    kw = dict(classifier_runs=classifier_runs, classifier_epochs=classifier_epochs, plots=False,
              echo=lambda *a: None, progress=False)
    cols = ("w1_avg", "kl_avg", "js_avg", "js_total_e", "js_total_pt", "auc")

    def write() -> list[str]:
        md = [f"# Event models on {process_id}: {len(real)} generated vs {len(real)} reference events", "",
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
    from hepgen.simulate.events import parse_process_id

    name_of_process = process or parse_process_id(process_id)[0]
    echo(f"reference producer ({name_of_process}) on one core ...")
    results["producer_events_per_s"] = time_reference(name_of_process, time_events)
    write()
    for name in models:
        surrogate = load_model(name)
        if process is not None and process not in surrogate.processes:
            echo(f"{name}: does not generate {process}, skipped")
            continue
        echo(f"{name}: sampling {len(real)} {name_of_process} events ...")
        start = time.perf_counter()
        conditional = surrogate.conditions is not None
        stop = conditional and masses is not None and process == "stop"
        gen = surrogate.sample(len(real), seed=1, batch_size=batch_size, method=solver, steps=steps, progress=False,
                               process=process if conditional else None, stop_mass=masses[0] if stop else None,
                               lsp_mass=masses[1] if stop else None)
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


def bench_event_processes(models: list[str], processes: list[str], data: Path, num_events: int, out: Path,
                          batch_size: int = 10_000, classifier_runs: int = 2, classifier_epochs: int = 20,
                          solver: str | None = None, steps: int | None = None, time_events: int = 300,
                          echo=print, masses: tuple[float, float] | None = None) -> dict:
    """:func:`bench_events` for each of ``processes`` (producer names), in ``out/<process>/``.

    The reference and floor samples of each process (``num_events`` each, seeds 9001 and
    9002; ``stop`` at the mass point ``masses`` when given) are made in ``data`` when missing
    and reused after. Writes ``out/events_bench.md``
    (the per-process tables one after another) and ``out/events_bench.json``
    ({process: the results of :func:`bench_events`}); returns the latter.
    """
    from hepgen.simulate.events import generate_events

    data.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for process in processes:
        point = masses if process == "stop" else None
        reference, floor = reference_files(data, process, num_events, point, echo)
        results[process] = bench_events(models, reference, floor, out / process, out / process / "events_work",
                                        batch_size=batch_size, classifier_runs=classifier_runs,
                                        classifier_epochs=classifier_epochs, solver=solver, steps=steps, echo=echo,
                                        process=process, time_events=time_events, masses=point)
        md = [f"# Event models per process ({num_events} generated vs {num_events} reference events each)", ""]
        for done in results:
            md += [f"## {done} (process ID {results[done]['process_id']})", "",
                   *(out / done / "events_bench.md").read_text().splitlines()[2:], ""]
        (out / "events_bench.md").write_text("\n".join(md) + "\n")
        (out / "events_bench.json").write_text(json.dumps(results, indent=1, default=float))
    return results


def reference_files(data: Path, process: str, num_events: int, masses: tuple[float, float] | None = None,
                    echo=print) -> tuple[Path, Path]:
    """The reference (seed 9001) and floor (seed 9002) producer files of a bench in ``data``,
    made when missing: ``PROCESS_bench_{reference,floor}_N.txt`` (``stopM_m_...`` at a stop
    mass point other than the default)."""
    from hepgen.simulate.events import STOP_MASSES, generate_events

    data.mkdir(parents=True, exist_ok=True)
    tag = process
    if masses is not None and tuple(map(float, masses)) != STOP_MASSES:
        tag = f"stop{float(masses[0]):g}_{float(masses[1]):g}"
    paths = (data / f"{tag}_bench_reference_{num_events}.txt", data / f"{tag}_bench_floor_{num_events}.txt")
    for path, seed in zip(paths, (9001, 9002)):
        if not path.exists():
            echo(f"making {path} ...")
            generate_events(process, num_events, seed=seed, out=path, progress=False,
                            stop_mass=None if masses is None else masses[0],
                            lsp_mass=None if masses is None else masses[1])
    return paths
