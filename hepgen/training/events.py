"""Training of the whole-event models with PyTorch Lightning.

* ``event-maf-types``: one maximum-likelihood fit per object type and one for the MET
  (stages ``met``, ``j``, ``b``, ...; ``--max-time`` shared equally), objects of a type
  pooled over all events as in the thesis' per-particle files (seed 003 Table 7.1).
* ``event-maf-next``: the same with the stages ``met``, ``first:T`` and ``next:T`` of
  Experiment II (:class:`hepgen.transforms.events.SequentialObjectScaler`).
* ``event-rqs``: one maximum-likelihood fit on the fixed event vector.
* ``event-cflow``: one conditional-flow-matching fit on the token sets, batches bucketed
  by the number of objects (the jet data module), EMA weights for sampling.

The count-vector alias sampler is fitted on the events each model trains on. The run
folder holds config.yaml, transform.json, counts.json, weights.pt, checkpoints and the
Lightning CSV logs, and samples with ``hepgen sample RUN_DIR`` alone.

``event-cflow`` on several processes: ``--data`` repeated (one producer file per process,
or any files whose events carry several process IDs; ``training.conditional: true`` asks
for the conditional model even with one). The process ID field of every event says its
process (and, for ``stop<M>_neutralino<m>``, its mass point, :func:`hepgen.simulate.events.parse_process_id`);
one transform is fitted on all events, one alias sampler per process ID, and the network is
conditioned on the process (:class:`hepgen.models.assemblies.events.ProcessConditions`).
Each process's selected cross-section is read from the weights of its files (their sum, the
producer's convention; averaged over the files of one process by their events) and saved
for the sampler's weights.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import yaml
from lightning import seed_everything
from torch.utils.data import DataLoader, TensorDataset

from hepgen.data.darkmachines import OBJECT_TYPES, EventSample, concatenate, read_events
from hepgen.errors import InvalidDataError, OptionError
from hepgen.models.alias import AliasSampler
from hepgen.models.assemblies.events import EventSurrogate, ProcessConditions, ProcessCounts, event_config
from hepgen.training.fit import fit_stage
from hepgen.training.modules import FlowMatchingModule, NLLModule
from hepgen.config import merge_config, read_config
from hepgen.training.run import check_run_options

#: a type needs this many training objects to get its own flow in event-maf-types
MIN_OBJECTS = 50


def process_cross_sections(samples: list[EventSample]) -> dict[str, float | None]:
    """By process ID: the selected cross-section [pb] of the files (``samples``, one per
    file), the sum of each file's weights of that process averaged over the files by their
    events; None when a file carries no cross-section (every weight exactly 1.0)."""
    sums: dict[str, list] = {}
    for s in samples:
        for pid in dict.fromkeys(s.process.tolist()):
            w = s.weight[s.process == pid]
            sums.setdefault(pid, []).append((None if np.all(w == 1.0) else float(w.sum()), len(w)))
    out: dict[str, float | None] = {}
    for pid, rows in sums.items():
        known = [(sig, n) for sig, n in rows if sig is not None]
        out[pid] = float(np.average([k for k, _ in known], weights=[n for _, n in known])) if known else None
    return out


def process_conditions(sample: EventSample, sigma: dict[str, float | None]) -> ProcessConditions:
    """The :class:`ProcessConditions` of the process IDs in ``sample`` (names, masses, cross-sections, counts)."""
    from hepgen.simulate.events import parse_process_id

    points = {}
    for pid, n in sorted(Counter(sample.process.tolist()).items()):
        name, masses = parse_process_id(pid)
        points[pid] = {"process": name, "masses": None if masses is None else [float(m) for m in masses],
                       "sigma_pb": sigma.get(pid), "events": int(n)}
    return ProcessConditions(points)


def train_event_model(model: str, data, out: str | os.PathLike, config=None,
                      max_epochs: int | None = None, max_time: float | None = None, seed: int = 0,
                      resume: bool = False, progress: bool = True, override: dict | None = None,
                      devices="auto", num_nodes: int = 1, num_events: int | None = None) -> Path:
    """Train ``event-maf-types``, ``event-maf-next``, ``event-rqs`` or ``event-cflow``; returns the run folder.

    Args:
        model: the model name.
        data: a Dark Machines file, or (``event-cflow``) a list of them, e.g. one per process:
            events of several process IDs give the process-conditioned model.
        out: the run folder; config: a YAML overriding network/training/sampler;
            override: the same as a dict (tests).
        max_epochs, max_time: stop after so many epochs / minutes; resume: continue ``out``.
        seed: random seed; devices, num_nodes: Lightning's.
        num_events: use only the first N events of each file.
    """
    out = check_run_options(out, resume, max_epochs, max_time)
    if resume and (out / "config.yaml").exists():
        cfg = yaml.safe_load((out / "config.yaml").read_text())
    else:
        cfg = event_config(model, merge_config(read_config(config), override))
    files = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not files:
        raise InvalidDataError("--data: no training file given")
    if len(files) > 1 and model != "event-cflow":
        raise OptionError(f"--data: {model} learns one process from one file; only event-cflow takes several "
                          f"--data files (got {len(files)})")
    if num_events is not None and num_events <= 0:
        raise InvalidDataError(f"--num-events must be positive, got {num_events}")
    samples = [read_events(f)[:num_events] if num_events is not None else read_events(f) for f in files]
    sample = concatenate(samples) if len(samples) > 1 else samples[0]
    training = cfg["training"]
    cfg["training_data"] = str(files[0]) if len(files) == 1 else [str(f) for f in files]
    cfg["process"] = Counter(sample.process.tolist()).most_common(1)[0][0]
    sigma = process_cross_sections(samples)
    conditional = model == "event-cflow" and (len(sigma) > 1 or bool(training.get("conditional", False)))
    if conditional:
        conditions = process_conditions(sample, sigma)
        cfg["process"] = "multi"
        cfg["conditions"] = conditions.to_dict()
        cfg["network"]["num_conditions"] = conditions.dim
    elif sigma.get(cfg["process"]) is not None:
        cfg["sigma_pb"] = sigma[cfg["process"]]
    epochs = int(max_epochs or training.get("epochs", 100))
    bs = int(training.get("batch_size", 256))
    seed_everything(seed, workers=True, verbose=False)
    transform = EventSurrogate.make_transform(cfg).fit(sample)
    out.mkdir(parents=True, exist_ok=True)

    if model == "event-cflow":
        from hepgen.training.data import JetDataModule

        x, mask, counts, keep = transform.encode(sample)
        cfg["dropped_fraction"] = float(1 - keep.mean())
        cond = counts.astype(np.float32)
        if conditional:
            from hepgen.simulate.events import parse_process_id

            pids = sample.process[keep]
            alias = ProcessCounts({pid: AliasSampler.fit(counts[pids == pid]) for pid in conditions.points})
            parsed = [parse_process_id(pid) for pid in pids]
            masses = np.array([m if m is not None else (np.nan, np.nan) for _, m in parsed], np.float64)
            extra = conditions.vector(np.array([n for n, _ in parsed], dtype=object), masses)
            cond = np.concatenate([cond, extra], 1)
        else:
            alias = AliasSampler.fit(counts)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        nets = EventSurrogate.build(cfg)
        module = FlowMatchingModule(nets["velocity"], **training)
        dm = JetDataModule(x, mask, cond, batch_size=bs, seed=seed, trim=True)
        fit_stage(module, dm, out, "cflow", epochs, max_time, resume, progress, devices, num_nodes)
        nets = {"velocity": module.sampling_network().cpu().eval()}
    elif model == "event-rqs":
        v, keep = transform.encode(sample)
        cfg["dim"] = int(v.shape[1])
        cfg["dropped_fraction"] = float(1 - keep.mean())
        alias = AliasSampler.fit(sample[keep].count_vectors())
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        nets = EventSurrogate.build(cfg)
        loader = DataLoader(TensorDataset(torch.as_tensor(v)), batch_size=min(bs, len(v)), shuffle=True)
        module = NLLModule(nets["flow"], **training)
        fit_stage(module, loader, out, "rqs", epochs, max_time, resume, progress, devices, num_nodes)
        nets = {"flow": module.flow.cpu().eval()}
    else:  # event-maf-types / event-maf-next: one flow per stage, fitted one after the other
        raw = transform.raw(sample)
        counts = sample.count_vectors()
        if model == "event-maf-next":
            from hepgen.models.assemblies.event_sequential import flow_keys, trainable_events

            cfg["flows"] = flow_keys(raw, MIN_OBJECTS)
            keep = trainable_events(counts, cfg["flows"])
            stages = ["met", *cfg["flows"]]
        else:
            cfg["object_types"] = [k for k in OBJECT_TYPES if len(raw[k]) >= MIN_OBJECTS]
            rare = [OBJECT_TYPES.index(k) for k in OBJECT_TYPES if k not in cfg["object_types"]]
            keep = ~counts[:, rare].any(1)
            stages = ["met", *cfg["object_types"]]
        if not keep.all():  # too few objects to learn a flow: such count vectors are not drawn
            counts = counts[keep]
            cfg["dropped_fraction"] = float(1 - keep.mean())
        alias = AliasSampler.fit(counts)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        nets = EventSurrogate.build(cfg)
        scaled = transform.transform(raw)
        started = time.perf_counter()
        for i, kind in enumerate(stages):
            y = torch.as_tensor(scaled[kind])
            loader = DataLoader(TensorDataset(y), batch_size=min(bs, len(y)), shuffle=True)
            module = NLLModule(nets[kind], **training)
            left = None
            if max_time:
                used = (time.perf_counter() - started) / 60
                left = max((max_time - used) / (len(stages) - i), 0.05)
            fit_stage(module, loader, out, f"maf-{kind.replace(':', '-')}", epochs, left, resume, progress, devices,
                      num_nodes)
            nets[kind] = module.flow.cpu().eval()
    surrogate = EventSurrogate(cfg, transform, alias, nets)
    surrogate.save(out)
    return out
