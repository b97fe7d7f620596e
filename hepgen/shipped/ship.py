"""Turn a trained run folder into a shipped model folder with its model card.

A shipped folder holds only what sampling needs (config.yaml, the fitted transforms,
weights.pt) and ``card.yaml``: what the model is, what it was trained on, for how long
(epochs, hours, hardware), which checkpoint was selected and how it scored. Used by
``scripts/ship_model.py`` (every model family, grid models included) and the GPU scripts ``scripts/gpu_jets.py`` and ``scripts/gpu_calo.py``.
Hit clouds (``ddpm-hits``): :func:`ship_hits_run` (float32 weights, the distilled student when present).
Grid models take their card's evaluation straight from a bench report (:func:`grid_card_from_bench`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from hepgen.errors import OptionError


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


#: incident energies (MeV) and showers per energy of the response recorded on a grid model's card
RESPONSE_ENERGIES, RESPONSE_SHOWERS, RESPONSE_SEED = (15_000.0, 95_000.0), 8, 1


def grid_response(surrogate) -> list[float]:
    """Median visible energy / incident energy of a grid model at :data:`RESPONSE_ENERGIES`
    (:data:`RESPONSE_SHOWERS` showers each, one batch, seed :data:`RESPONSE_SEED`, CPU)."""
    import numpy as np

    e = np.repeat(np.asarray(RESPONSE_ENERGIES), RESPONSE_SHOWERS)
    s = surrogate.sample(len(e), seed=RESPONSE_SEED, energies=e, batch_size=len(e), device="cpu")
    ratio = s.showers.astype(np.float64).sum(1) / e
    return [float(np.median(r)) for r in ratio.reshape(len(RESPONSE_ENERGIES), RESPONSE_SHOWERS)]


def reference_response(path, width: float = 5_000.0) -> list[float]:
    """The same median ratio of a reference file's showers within ``width`` MeV of each energy."""
    import numpy as np

    from hepgen.data.calo import read_showers

    sample = read_showers(path)
    e = sample.incident_energies[:, 0].astype(np.float64)
    ratio = sample.showers.astype(np.float64).sum(1) / e
    return [float(np.median(ratio[np.abs(e - x) < width])) for x in RESPONSE_ENERGIES]


def _write_card(dest: Path, card: dict, width: int = 80, **extras) -> None:
    """Write ``dest/card.yaml``: ``card`` plus every extra entry that is given (note,
    measured evaluation, bench), in that order after the card's own entries."""
    card.update({k: v for k, v in extras.items() if v})
    (dest / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False, width=width))


#: the grid metrics a card quotes from a bench (model beside the truth floor)
GRID_CARD_METRICS = ("auc_low", "auc_high", "fpd", "kpd", "grid_e_vis_mu90_per_energy_max_dev",
                     "grid_e_vis_sigma90_per_energy_max_dev", "grid_response_mu90_per_energy_max_dev",
                     "grid_response_sigma90_per_energy_max_dev", "grid_n_hits_mu90_per_energy_max_dev",
                     "grid_n_hits_sigma90_per_energy_max_dev", "sep_grid_hit_energy", "sep_grid_n_hits",
                     "sep_grid_e_vis", "sep_grid_cog_z", "sep_grid_longitudinal_profile", "sep_grid_radial_profile",
                     "grid_corr_max_abs_diff")


def grid_card_from_bench(bench_json: str | Path, model: str) -> tuple[dict, dict]:
    """The ``evaluation`` and ``bench`` entries of a grid model's card, from the
    ``calo_bench_GEOMETRY.json`` of ``hepgen bench calo`` (its row ``model``, as it was named
    there): each metric of :data:`GRID_CARD_METRICS` beside the truth floor of the same run,
    the per-energy response ratios, ms per shower against the stand-in timed in the same run,
    and seed 001's timings for context. A missing row is a clear error."""
    from hepgen.bench.calo import SEED_TIMES
    from hepgen.data.calo import shower_file_attrs

    res = json.loads(Path(bench_json).read_text())
    if model not in res.get("models", {}):
        raise OptionError(f"--bench: {bench_json} has no row {model!r} (rows: {', '.join(res.get('models', {}))})")
    row, floor = res["models"][model], res.get("floor", {})
    m = row["metrics"]
    seeds = {}
    for key in ("reference", "floor_file"):
        path = res.get(key)
        if path and Path(path).is_file():
            seeds[key] = shower_file_attrs(path).get("seed")
    pair = lambda d, k: [round(float(d[k]["value"]), 6), round(float(d[k]["error"]), 6)]  # noqa: E731
    metrics = {k: {"model": pair(m, k), **({"truth_floor": pair(floor, k)} if k in floor else {})}
               for k in GRID_CARD_METRICS if k in m}
    per_energy = m.get("grid_per_energy", {}).get("response")
    n = res["num_showers"]
    evaluation = {
        "against": f"{n} fresh reference showers (hepgen data calo --geometry {res['geometry']}, seed "
                   f"{seeds.get('reference', '?')}), generated at their incident energies (hepgen bench calo "
                   f"--geometry {res['geometry']} --classifier-runs {res['recipes']['hepgen']['runs']} --protocol hepgen)",
        "truth_floor": f"a second reference sample (seed {seeds.get('floor_file', '?')}, {n} showers) vs the same "
                       "reference, same evaluation code and settings",
        "classifiers": f"hepgen protocol: {res['recipes']['hepgen']['runs']} run(s) of "
                       f"{res['recipes']['hepgen']['epochs']} epochs, batch 200, lr 1e-3; low = voxels / E_inc, "
                       "high = high-level features; [value, error]",
        "metrics": metrics,
    }
    if per_energy:
        evaluation["response_per_energy"] = {
            "e_inc_edges_gev": [round(e / 1e3, 2) for e in per_energy["e_inc_edges"]],
            "mu90_ratio": per_energy["mu90_ratio"], "sigma90_ratio": per_energy["sigma90_ratio"]}
    times = {k: round(float(v), 2) for k, v in row["ms_per_shower"].items()}
    bench = {"ms_per_shower_one_thread": times,
             "stand_in_simulator_ms_per_shower": round(float(res["reference_ms_per_shower"]), 2),
             "seed_001_cpu_ms_per_shower": {who.split(" (")[0]: ms for who, ms in SEED_TIMES.get(res["geometry"], [])
                                            if who.endswith("(CPU)")}}
    kind = {"bib-ae": "BIB-AE", "wgan-3d": "WGAN", "gan-3d": "WGAN"}.get(
        yaml.safe_load((Path(model) / "config.yaml").read_text())["model"] if (Path(model) / "config.yaml").is_file()
        else model.split("/")[0])
    seed_ms = bench["seed_001_cpu_ms_per_shower"].get(kind)
    if seed_ms and times.get("100"):
        bench[f"speed_up_vs_seed_{kind.lower()}_cpu_at_batch_100"] = round(seed_ms / times["100"], 1)
    bench["note"] = ("seed 001 Tables 6.1 / 7.1: one core of a Xeon E5-2640 v4, thesis-size networks, Geant4 there; "
                     "this machine and the stand-in here")
    return evaluation, bench


def ship_grid_run(run: str | Path, dest: str | Path, summary: str = "",
                  hardware: str = "1 CPU thread of a loaded 2-core machine", minutes: float | None = None,
                  note: str | None = None, evaluation: dict | None = None, bench: dict | None = None,
                  num_showers: int | None = None, reproduce: str | None = None) -> Path:
    """Copy the grid run ``run`` (``gan-3d``, ``wgan-3d``, ``bib-ae``) to ``dest``: config,
    float32 weights (the sampling network: the EMA generator or the BIB-AE with its Post
    Processor), the BIB-AE's encoded training latents for KDE sampling, and the card
    (parameters, training data with its producer seed and size, optimisation steps per
    stage, wall minutes, ``note``, and measured ``evaluation`` / ``bench`` numbers).

    Args:
        run: a run folder of ``hepgen train gan-3d|wgan-3d|bib-ae``.
        dest: the shipped folder (e.g. ``hepgen/shipped/bib-ae/ild-photons``).
        minutes: wall minutes of the training, for the card.
        num_showers: training showers, where the run's config does not record them (runs
            before ``training_showers`` was written) and the run used ``--num-showers``.
        reproduce: the commands that remake the run (the card's ``reproduce``).
    """
    from hepgen.data.calo import shower_file_attrs
    from hepgen.models.assemblies.grids import GridSurrogate
    run, dest = Path(run), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for name in ("weights.pt", "latents.npy", "calibration.yaml"):
        if (run / name).exists():
            shutil.copy(run / name, dest / name)
        elif (dest / name).exists():
            (dest / name).unlink()
    surrogate = GridSurrogate.load(dest)
    data = cfg.get("training_data")
    attrs = shower_file_attrs(data) if data and Path(data).is_file() else {}
    if num_showers or cfg.get("training_showers"):
        attrs["num_showers"] = int(num_showers or cfg["training_showers"])
    elif surrogate.latents is not None:  # the BIB-AE keeps one encoded latent per training shower
        attrs["num_showers"] = len(surrogate.latents)
    elif data and Path(data).is_file():
        from hepgen.data.calo import shower_file_info

        attrs["num_showers"] = shower_file_info(data)[0]
    tr = cfg["training"]
    epochs = stage_epochs(run).get("grid", 0)
    card = {
        "summary": summary or f"{cfg['model']} on {cfg['geometry']}",
        **({"reproduce": reproduce} if reproduce else {}),
        "model": cfg["model"],
        "geometry": cfg["geometry"],
        "status": "preliminary CPU-budget model (not the thesis size, far from converged)",
        "parameters": surrogate.num_parameters(),
        "network": cfg["network"],
        "training_data": {"file": Path(data).name if data else None,
                          "showers": attrs.get("num_showers"),
                          "producer": "hepgen data calo (parametrised stand-in for Geant4)",
                          "producer_seed": attrs.get("seed"),
                          "stand_in_version": attrs.get("producer_version"),
                          "incident_energy_mev": cfg.get("e_range")},
        "epochs_trained": epochs,
        "planned_epochs": tr.get("schedule_epochs"),
        "batch_size": tr.get("batch_size"),
        "batches_per_epoch": int(attrs["num_showers"]) // int(tr.get("batch_size", 64)) if attrs.get("num_showers") else None,
        "minutes_trained": round(float(minutes), 1) if minutes is not None else None,
        "hardware": hardware,
        "weights": "float32",
    }
    card["response"] = {"e_inc_mev": list(RESPONSE_ENERGIES),
                        "median_e_vis_over_e_inc": [round(r, 6) for r in grid_response(surrogate)],
                        "training_data_median": ([round(r, 6) for r in reference_response(data)]
                                                 if data and Path(data).is_file() else None),
                        "note": f"{RESPONSE_SHOWERS} showers per energy, seed {RESPONSE_SEED}, one batch, CPU"}
    if cfg["model"] == "bib-ae":
        card["stages"] = {"bib-ae_epochs": tr.get("epochs"), "post_processor_mse_epochs": tr.get("pp_mse_epochs"),
                          "post_processor_mmd_epochs": int(tr.get("pp_epochs", 0)) - int(tr.get("pp_mse_epochs", 0))}
        first = Path(tr["pretrained"]) / "config.yaml" if tr.get("pretrained") else None
        if first is not None and first.exists():  # encoder and decoder from an earlier run (training.pretrained)
            card["stages"]["bib-ae_epochs"] = yaml.safe_load(first.read_text())["training"].get("epochs")
            card["stages"]["bib-ae_from"] = str(tr["pretrained"])
    card["sampler"] = cfg.get("sampler")
    if cfg.get("sampler", {}).get("calibrate") == "response":
        card["calibration"] = dict(cfg.get("calibration", {}), what=(
            "each shower scaled onto the training showers' E_vis / E_inc at the same quantile of its incident "
            "energy (hepgen calibrate; not in seed 001); sample(..., calibrate=False) gives the raw showers"))
    _write_card(dest, card, note=note, evaluation=evaluation, bench=bench)
    return dest


def ship_hits_run(run: str | Path, dest: str | Path, summary: str = "", sampler: dict | None = None,
                  hardware: str = "1 CPU thread of a loaded 2-core machine", minutes: float | None = None,
                  evaluation: dict | None = None, note: str | None = None) -> Path:
    """Copy the ``ddpm-hits`` run ``run`` to ``dest``: config (``sampler`` overrides its
    default sampler), transform, multiplicity KDE, float32 weights (and the distilled
    student when the run has one) and the card.

    Args:
        run: a run folder of ``hepgen train ddpm-hits``.
        dest: the shipped folder (e.g. ``hepgen/shipped/ddpm-hits/t``).
        summary: one line for the card and ``hepgen models``.
        sampler: e.g. ``{"method": "ddim", "steps": 8}``.
        hardware: where it trained.
        minutes: wall minutes of the training.
        evaluation: measured numbers for the card (metrics beside the truth floor).
        note: free text for the card (what it is not).
    """
    import h5py

    from hepgen.models.assemblies.hits import HitSurrogate

    run, dest = Path(run), Path(dest)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    if cfg.get("model") != "ddpm-hits":
        raise ValueError(f"{run}: not a ddpm-hits run")
    dest.mkdir(parents=True, exist_ok=True)
    if sampler:
        cfg["sampler"] = {**cfg.get("sampler", {}), **sampler}
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for name in ("transform.json", "multiplicity.yaml", "energy.yaml", "weights.pt", "student.pt"):
        if (run / name).exists():
            shutil.copy(run / name, dest / name)
    data = cfg.get("training_data")
    attrs = {}
    if data and Path(data).is_file():
        with h5py.File(data, "r") as f:
            attrs = {**{k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()},
                     "num_jets": int(f["hits"].shape[0])}
    training = cfg.get("training", {})
    card = {
        "summary": summary or f"ddpm-hits on {attrs.get('jet_type', '?')}-jet hit clouds",
        "model": "ddpm-hits",
        "parameters": HitSurrogate.load(dest).num_parameters(),
        "network": cfg.get("network"),
        "diffusion": cfg.get("diffusion"),
        "training_data": (f"{attrs['num_jets']} {attrs.get('jet_type')}-jet hit clouds of up to {cfg.get('max_hits')} "
                          f"hits, hepgen data hits ({attrs.get('generator')}), seed {attrs.get('seed')} ({Path(data).name})"
                          if "num_jets" in attrs else data),
        "epochs_trained": stage_epochs(run).get("ddpm"),
        "planned_epochs": training.get("schedule_epochs", training.get("epochs")),
        "batch_size": training.get("batch_size"),
        "minutes_trained": None if minutes is None else round(float(minutes), 1),
        "hardware": hardware,
        "sampler": cfg.get("sampler"),
        "weights": "float32, the EMA network",
    }
    _write_card(dest, card, width=100, note=note, evaluation=evaluation)
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
