"""``hepgen anomaly ...``: train anomaly detectors and score samples with them (issue 14)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional, Tuple

import typer

from hepgen.cli.options import check_output_file, check_output_folder, require_positive

app = typer.Typer(help="Anomaly detection: train a detector, score a sample.", no_args_is_help=True)


class Method(str, Enum):
    nae = "nae"
    anomaly_clr = "anomaly-clr"
    dark_clr = "dark-clr"
    cwola = "cwola"


@app.command("train")
def train(
    method: Method = typer.Argument(..., help="nae (normalised autoencoder), anomaly-clr, dark-clr or cwola "
                                    "(classification without labels on LHCO-like dijets)."),
    data: List[Path] = typer.Option(..., "--data", help="Training data (cwola: one dijet file of hepgen data dijets; "
                                    "nae: background jets in the JetNet layout, --data repeated to mix files, e.g. q and g jets)."),
    out: Path = typer.Option(..., "--out", help="Run folder to write."),
    signal: Path = typer.Option(None, "--signal", help="cwola: a signal dijet file to inject into --data at --s-over-b."),
    s_over_b: float = typer.Option(None, "--s-over-b", help="cwola: injected signal events per background event of --data (e.g. 0.01)."),
    signal_region: Tuple[float, float] = typer.Option((3300.0, 3700.0), "--signal-region", help="cwola: LO HI of the signal region in m_jj [GeV]."),
    sidebands: float = typer.Option(200.0, "--sidebands", help="cwola: width of each sideband in m_jj [GeV]."),
    folds: int = typer.Option(5, "--folds", help="cwola: k of the k-fold (1: one classifier with a validation split, the seed's set-up)."),
    epochs: int = typer.Option(50, "--epochs", help="Training epochs (cwola: per fold)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Mini-batch size."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    ensemble: int = typer.Option(10, "--ensemble", help="cwola: lowest-validation-loss checkpoints kept per fold."),
    max_events: int = typer.Option(None, "--max-events", help="Read at most this many events of --data."),
    seed: int = typer.Option(0, "--seed", help="Seed of the injection, folds, initialisation and batches."),
    config: Optional[Path] = typer.Option(None, "--config", help="nae: YAML merged into the thesis settings "
                                          "(e.g. hepgen/models/configs/nae-cpu.yaml, sized for a CPU)."),
    max_time: Optional[float] = typer.Option(None, "--max-time", help="nae: wall-clock limit of the NAE phase in minutes "
                                             "(pre-training keeps its config's own limit)."),
    pretrained: Optional[Path] = typer.Option(None, "--pretrained", help="nae: start the NAE phase from the pre-trained "
                                              "AE of this NAE run folder (skips pre-training; that run's ae.pt becomes "
                                              "this run's)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train an anomaly detector (METHOD: nae, anomaly-clr, dark-clr or cwola) on --data and write a run folder.

    nae: the normalised autoencoder on 40 x 40 jet images (seed 002 L1409-1462): AE
    pre-training, then energy-based training with Langevin negative samples; the run also
    keeps the pre-trained AE as the plain-AE baseline (score ``ae``). Options for nae:
    --data (repeatable), --out, --config, --max-time, --max-events (per file), --seed,
    --progress; the others are cwola's.
    """
    from hepgen.errors import OptionError

    require_positive({"--max-events": max_events})
    if method is Method.nae:
        _train_nae(data, out, config, max_time, max_events, seed, progress, pretrained)
        return
    if method in (Method.anomaly_clr, Method.dark_clr):  # hepgen.training.clr (seed 002 sec. 5.3)
        from hepgen.training.clr import train_command

        check_output_folder(out)
        train_command(method.value, data, out, config, max_time, max_events, seed, progress, echo=typer.echo)
        return
    if method is not Method.cwola:
        raise OptionError(f"anomaly train {method.value}: not implemented yet (cwola and nae are)")
    if len(data) != 1:
        raise OptionError(f"anomaly train cwola: one --data file, got {len(data)}")
    data = data[0]
    from tqdm.auto import tqdm

    from hepgen.data.dijets import read_dijets
    from hepgen.training.anomaly import CWoLaConfig, check_regions, inject_signal, train_cwola, write_cwola_run

    if (signal is None) != (s_over_b is None):
        raise OptionError("--signal and --s-over-b go together")
    check_output_folder(out)
    config = CWoLaConfig(signal_region=tuple(signal_region), sideband=sidebands,
                         folds=folds, epochs=epochs, batch_size=batch_size, lr=lr, ensemble=ensemble, seed=seed)
    config.check()
    sample = read_dijets(data, max_events)
    info = {"data": str(data)}
    if signal is not None:
        sample = inject_signal(sample, read_dijets(signal), s_over_b, seed=seed)
        info.update(signal=str(signal), s_over_b=s_over_b)
    check_regions(sample, config)
    bar = tqdm(total=config.folds * config.epochs, desc="CWoLa", unit="epoch", disable=not progress, dynamic_ncols=True)
    try:
        result = train_cwola(sample, config, progress=bar.update)
    finally:
        bar.close()
    write_cwola_run(result, sample, out, info)
    first = [r[2] for r in result.losses if r[1] == 1]
    last = [r[2] for r in result.losses if r[1] == config.epochs]
    typer.echo(f"trained CWoLa ({config.folds} folds x {config.epochs} epochs, {len(sample)} events, "
               f"{int(result.in_sr.sum())} in the SR, {int(result.in_sb.sum())} in the sidebands) in "
               f"{result.seconds:.0f} s; train loss {sum(first) / len(first):.4f} -> {sum(last) / len(last):.4f}; run: {out}")
    kfold = out / "kfold_metrics.json"
    if kfold.is_file():
        import json

        m = json.loads(kfold.read_text())
        typer.echo("k-fold scores in the SR: " + ", ".join(
            f"{k} {v['value']:.3g}" for k, v in m.items() if v["value"] is not None))


def _train_nae(data: List[Path], out: Path, config: Optional[Path], max_time: Optional[float],
               max_events: Optional[int], seed: int, progress: bool, pretrained: Optional[Path] = None) -> None:
    """``hepgen anomaly train nae``: images of the --data jets, pre-training, NAE training, run folder."""
    from tqdm.auto import tqdm

    from hepgen.config import merge_config, read_config
    from hepgen.errors import OptionError
    from hepgen.training.nae import load_model, nae_config, read_images, train_nae, write_nae_run

    check_output_folder(out)
    init = None
    if pretrained is not None:
        from hepgen.training.anomaly import read_run

        if read_run(pretrained)["method"] != "nae":
            raise OptionError(f"--pretrained: {pretrained} is not an NAE run")
        init = load_model(pretrained / "ae.pt")
    override = read_config(config)
    if max_time is not None:
        require_positive({"--max-time": max_time})
        override = merge_config(override, {"max_minutes": {"nae": max_time}})
    cfg = nae_config(merge_config(override, {"seed": seed}))
    images, sources = read_images(data, cfg["image"], max_events)
    bars = {}

    def step(phase: str, n: int) -> None:
        if phase not in bars:
            for b in bars.values():
                b.close()
            total = cfg["pretrain" if phase == "pretrain" else "nae"]["iterations"]
            bars[phase] = tqdm(total=total, desc="AE pre-training" if phase == "pretrain" else "NAE",
                               unit="it", disable=not progress, dynamic_ncols=True)
        bars[phase].update(n)

    try:
        result = train_nae(images, cfg, progress=step, pretrained=init)
    finally:
        for b in bars.values():
            b.close()
    write_nae_run(result, out, {"data": sources, "jets": len(images), "config_file": str(config) if config else None,
                                "pretrained_from": str(pretrained) if pretrained else None})
    sel = result.selected
    pre = result.pretrain_log
    typer.echo(f"trained the NAE on {len(images)} jet images: "
               + (f"AE pre-training {len(pre)} iterations (MSE {pre[0][1]:.3g} -> {pre[-1][1]:.3g}, "
                  f"{result.seconds[0]:.0f} s)" if pre else f"pre-trained AE of {pretrained}")
               + f", NAE {len(result.nae_log)} "
               f"iterations ({result.seconds[1]:.0f} s)"
               + (f", collapse at {result.collapsed}" if result.collapsed else "")
               + (f"; selected iteration {sel['iteration']} (E+ {sel['e_pos']:.3g}, E- {sel['e_neg']:.3g})"
                  if sel else "; no stable NAE checkpoint, the NAE is the pre-trained AE")
               + f"; run: {out}")


@app.command("score")
def score(
    run: Path = typer.Argument(..., help="Run folder of hepgen anomaly train, or a shipped run (nae/qcd)."),
    data: Path = typer.Option(..., "--data", help="Events to score (the format the run was trained on: "
                              "cwola dijets, nae jets in the JetNet layout)."),
    out: Path = typer.Option(..., "--out", help="Output HDF5 file (score, in_region; cwola: probability, mjj, "
                             "label; nae: score_ae, the plain AE's)."),
) -> None:
    """Anomaly scores of --data (higher: more signal-like; nae: the energy = reconstruction MSE)."""
    from hepgen.training.anomaly import read_run, read_sample, resolve_run, score_run, write_scores

    check_output_file(out)
    run = resolve_run(run)
    meta = read_run(run)
    sample = read_sample(meta, data)
    scores = score_run(run, sample)
    write_scores(scores, sample, out, attrs={"run": str(run), "method": meta["method"], "data": str(data)})
    extra = "".join(f", score_{k}" for k in scores.extra)
    typer.echo(f"wrote {len(sample)} scores{extra} ({int(scores.in_region.sum())} in the run's region) to {out}")
