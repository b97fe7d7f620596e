"""``hepgen bench ...``: speed measured as ratios against a reference in the same run."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Benchmarks (ratios against the reference measured in the same run).", no_args_is_help=True)


@app.command("metrics")
def metrics(
    num_jets: int = typer.Option(50_000, "--num-jets", help="Jets per sample (jetnet recommends 50000)."),
    particles: list[int] = typer.Option([30, 150], "--num-particles", help="Particle counts to benchmark."),
    data_dir: Path = typer.Option(Path("data/bench"), "--data-dir", help="Where the Pythia samples are cached."),
    out: Path = typer.Option(Path("bench-results"), "--out", help="Folder for metrics_bench.md/.json."),
    jetnet_jobs: int = typer.Option(None, "--jetnet-jobs", help="Processes for jetnet's EFPs [default: all cores]."),
) -> None:
    """Time hepgen's jet metrics against jetnet's on the same two samples."""
    from hepgen.bench.metrics import run_metrics_bench

    report = run_metrics_bench(num_jets, particles, data_dir, out, jetnet_jobs=jetnet_jobs, echo=typer.echo)
    typer.echo(report)
