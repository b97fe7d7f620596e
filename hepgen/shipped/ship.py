"""Turn a trained run folder into a shipped model folder with its model card.

A shipped folder holds only what sampling needs (config.yaml, the fitted transforms,
weights.pt) and ``card.yaml``: what the model is, what it was trained on, for how long
(epochs, hours, hardware), which checkpoint was selected and how it scored. Used by
``scripts/ship_model.py`` and the GPU scripts ``scripts/gpu_jets.py`` and ``scripts/gpu_calo.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml


def _epochs(run: Path) -> int:
    from hepgen.training.resume import logged_rows

    rows = [r for r in logged_rows(run / "logs") if r.get("epoch")]
    return max(int(r["epoch"]) for r in rows) + 1 if rows else 0


def ship_jet_run(run: str | Path, dest: str | Path, summary: str = "", sampler: dict | None = None,
                 hardware: str = "2 CPU cores, one thread per run", training_data: str | None = None,
                 bench: dict | None = None) -> Path:
    """Copy the jet run ``run`` to ``dest`` with a model card; ``sampler`` overrides the
    run's default sampler, ``bench`` adds measured numbers to the card."""
    from hepgen.data.jetnet import read_jets
    from hepgen.models.assemblies.jets import JetSurrogate
    from hepgen.models.multiplicity import MultiplicityKDE
    from hepgen.training.run import full_multiplicity

    run, dest = Path(run), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    if sampler:
        cfg["sampler"] = dict(sampler)
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for name in ("preprocessor.json", "weights.pt", "mass.yaml", "solvers.pt"):
        if (run / name).exists():
            shutil.copy(run / name, dest / name)
    data = training_data or cfg["training_data"]
    sample = read_jets(data)
    # the KDE on the full (untruncated) multiplicities of the training file
    mult = MultiplicityKDE.fit(full_multiplicity(sample), sample.num_particles)
    (dest / "multiplicity.yaml").write_text(yaml.safe_dump(mult.to_dict()))
    selection = yaml.safe_load((run / "selection.yaml").read_text()) if (run / "selection.yaml").exists() else {}
    card = {
        "summary": summary or f"{cfg['model']} on {sample.num_particles}-particle {cfg.get('jet_type')} jets",
        "model": cfg["model"],
        "parameters": JetSurrogate.load(dest).num_parameters(),
        "training_data": f"{len(sample)} Pythia 8 + FastJet {cfg.get('jet_type')} jets (hepgen data jets)",
        "epochs_trained": _epochs(run),
        "planned_epochs": cfg["training"].get("schedule_epochs"),
        "hours_trained": round(float(selection.get("hours", 0.0)), 2) if selection else None,
        "hardware": hardware,
        "sampler": cfg.get("sampler"),
        "selected_epoch": selection.get("epoch"),
        "selection": {k: selection[k] for k in ("w1m_ratio", "w1p_ratio", "w1efp_ratio", "fd_ratio", "score_ratio")
                      if k in selection},
        "selection_note": "metrics of 10k generated vs 10k training jets in units of the truth floor "
                          "(hepgen.training.selection)",
    }
    if bench:
        card["bench"] = bench
    (dest / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return dest


def stage_epochs(run: Path) -> dict[str, int]:
    """Epochs trained per stage of a calorimeter or event run (its ``logs/STAGE`` folders)."""
    from hepgen.training.resume import logged_rows

    epochs = {}
    for folder in sorted(p for p in (Path(run) / "logs").glob("*") if p.is_dir()):
        rows = [r for r in logged_rows(folder) if r.get("epoch")]
        epochs[folder.name] = max(int(r["epoch"]) for r in rows) + 1 if rows else 0
    return epochs


def training_stand_in_version(path) -> int | None:
    """The shower stand-in version (``producer_version``) of a training file, when it is at hand."""
    from hepgen.data.calo import shower_file_attrs

    if not path or not Path(path).is_file():
        return None
    version = shower_file_attrs(path).get("producer_version", 1)
    return int(version)


def ship_calo_run(run: str | Path, dest: str | Path, summary: str = "", sampler: dict | None = None,
                  hardware: str = "2 CPU cores, one thread per run", hours: float | None = None,
                  bench: dict | None = None) -> Path:
    """Copy the calorimeter run ``run`` to ``dest``: config, transform, weights stored as
    float16 (half the size; the networks load them back into float32) and the card."""
    import torch

    run, dest = Path(run), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    if sampler:
        cfg["sampler"] = {**cfg.get("sampler", {}), **sampler}
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copy(run / "transform.json", dest / "transform.json")
    state = torch.load(run / "weights.pt", map_location="cpu", weights_only=True)

    def half(obj):
        if isinstance(obj, dict):
            return {k: half(v) for k, v in obj.items()}
        return obj.half() if torch.is_tensor(obj) and obj.is_floating_point() else obj

    torch.save(half(state), dest / "weights.pt")
    card = {"summary": summary or f"{cfg['model']} on {cfg['geometry']}", "model": cfg["model"],
            "geometry": cfg["geometry"], "training_data": cfg.get("training_data"),
            "stand_in_version": training_stand_in_version(cfg.get("training_data")),
            "epochs_trained": stage_epochs(run), "hours_trained": hours, "hardware": hardware,
            "weights": "float16 on disk"}
    if bench:
        card["bench"] = bench
    (dest / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return dest


def ship_anomaly_run(run: str | Path, dest: str | Path, summary: str, evaluation: dict | None = None,
                     hardware: str = "2 CPU cores shared with other jobs, one thread") -> Path:
    """Copy the NAE run ``run`` to ``dest`` (run.json, nae.pt, ae.pt) with a model card.

    A shipped anomaly run has no ``weights.pt``, so ``hepgen models`` / ``hepgen sample``
    (generative models) do not list it; ``hepgen anomaly score nae/qcd`` and ``hepgen
    evaluate anomaly --run nae/qcd`` find it by name.

    Args:
        run: an NAE run folder of ``hepgen anomaly train nae``.
        dest: the shipped folder (e.g. ``hepgen/shipped/nae/qcd``).
        summary: one line for the card.
        evaluation: measured numbers for the card (e.g. the metrics of a test evaluation).
        hardware: where it trained.
    """
    import json

    run, dest = Path(run), Path(dest)
    meta = json.loads((run / "run.json").read_text())
    if meta.get("method") != "nae":
        raise ValueError(f"{run}: not an NAE run")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "nae.pt", "ae.pt"):
        shutil.copy(run / name, dest / name)
    card = {
        "summary": summary,
        "model": "nae",
        "parameters": meta.get("parameters"),
        "training_data": f"{meta.get('jets')} jet images of {', '.join(Path(d).name for d in meta.get('data', []))} "
                         "(hepgen data jets)",
        "pretrain_iterations": meta.get("pretrain_iterations"),
        "nae_iterations": meta.get("nae_iterations"),
        "hours_trained": round((meta.get("pretrain_seconds", 0) + meta.get("nae_seconds", 0)) / 3600, 2),
        "hardware": hardware,
        "selected": meta.get("selected"),
        "scores": {"score": "NAE energy (reconstruction MSE of the selected NAE)",
                   "score_ae": "the pre-trained plain autoencoder's MSE (baseline)"},
    }
    if evaluation:
        card["evaluation"] = evaluation
    (dest / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return dest
