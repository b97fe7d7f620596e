"""Training of the whole-event models with PyTorch Lightning.

* ``event-maf-types``: one maximum-likelihood fit per object type and one for the MET
  (stages ``met``, ``j``, ``b``, ...; ``--max-time`` shared equally), objects of a type
  pooled over all events as in the thesis' per-particle files (seed 003 Table 7.1).
* ``event-rqs``: one maximum-likelihood fit on the fixed event vector.
* ``event-cflow``: one conditional-flow-matching fit on the token sets, batches bucketed
  by the number of objects (the jet data module), EMA weights for sampling.

The count-vector alias sampler is fitted on the events each model trains on. The run
folder holds config.yaml, transform.json, counts.json, weights.pt, checkpoints and the
Lightning CSV logs, and samples with ``hepgen sample RUN_DIR`` alone.
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

from hepgen.data.darkmachines import OBJECT_TYPES, read_events
from hepgen.errors import InvalidDataError
from hepgen.models.alias import AliasSampler
from hepgen.models.assemblies.events import EventSurrogate, event_config
from hepgen.training.fit import fit_stage
from hepgen.training.modules import FlowMatchingModule, NLLModule
from hepgen.config import merge_config, read_config
from hepgen.training.run import check_run_options

#: a type needs this many training objects to get its own flow in event-maf-types
MIN_OBJECTS = 50


def train_event_model(model: str, data: str | os.PathLike, out: str | os.PathLike, config=None,
                      max_epochs: int | None = None, max_time: float | None = None, seed: int = 0,
                      resume: bool = False, progress: bool = True, override: dict | None = None,
                      devices="auto", num_nodes: int = 1, num_events: int | None = None) -> Path:
    """Train ``event-maf-types``, ``event-rqs`` or ``event-cflow`` on a Dark Machines file; returns the run folder."""
    out = check_run_options(out, resume, max_epochs, max_time)
    if resume and (out / "config.yaml").exists():
        cfg = yaml.safe_load((out / "config.yaml").read_text())
    else:
        cfg = event_config(model, merge_config(read_config(config), override))
    sample = read_events(data)
    if num_events is not None:
        if num_events <= 0:
            raise InvalidDataError(f"--num-events must be positive, got {num_events}")
        sample = sample[:num_events]
    training = cfg["training"]
    cfg["training_data"] = str(data)
    cfg["process"] = Counter(sample.process.tolist()).most_common(1)[0][0]
    epochs = int(max_epochs or training.get("epochs", 100))
    bs = int(training.get("batch_size", 256))
    seed_everything(seed, workers=True, verbose=False)
    transform = EventSurrogate.make_transform(cfg).fit(sample)
    out.mkdir(parents=True, exist_ok=True)

    if model == "event-cflow":
        from hepgen.training.data import JetDataModule

        x, mask, counts, keep = transform.encode(sample)
        cfg["dropped_fraction"] = float(1 - keep.mean())
        alias = AliasSampler.fit(counts)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        nets = EventSurrogate.build(cfg)
        module = FlowMatchingModule(nets["velocity"], **training)
        dm = JetDataModule(x, mask, counts.astype(np.float32), batch_size=bs, seed=seed, trim=True)
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
    else:
        raw = transform.raw(sample)
        cfg["object_types"] = [k for k in OBJECT_TYPES if len(raw[k]) >= MIN_OBJECTS]
        counts = sample.count_vectors()
        rare = [k for i, k in enumerate(OBJECT_TYPES) if k not in cfg["object_types"] and counts[:, i].any()]
        if rare:  # too few objects to learn a flow: such count vectors are not drawn
            keep = ~counts[:, [OBJECT_TYPES.index(k) for k in rare]].any(1)
            counts = counts[keep]
            cfg["dropped_fraction"] = float(1 - keep.mean())
        alias = AliasSampler.fit(counts)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        nets = EventSurrogate.build(cfg)
        scaled = transform.transform(raw)
        stages = ["met", *cfg["object_types"]]
        started = time.perf_counter()
        for i, kind in enumerate(stages):
            y = torch.as_tensor(scaled[kind])
            loader = DataLoader(TensorDataset(y), batch_size=min(bs, len(y)), shuffle=True)
            module = NLLModule(nets[kind], **training)
            left = None
            if max_time:
                used = (time.perf_counter() - started) / 60
                left = max((max_time - used) / (len(stages) - i), 0.05)
            fit_stage(module, loader, out, f"maf-{kind}", epochs, left, resume, progress, devices, num_nodes)
            nets[kind] = module.flow.cpu().eval()
    surrogate = EventSurrogate(cfg, transform, alias, nets)
    surrogate.save(out)
    return out
