"""Run configurations: one mechanism for every trainer (jets, calorimeter, events).

A run's config is a mapping of sections (``network``, ``training``, ``sampler``, ...):
the model's thesis defaults, merged with the user's ``--config`` YAML, merged with
programmatic overrides. :func:`merge_config` merges nested mappings key by key;
:func:`read_config` reads a ``--config`` file with one clear error for each bad input.

A trained model's folder keeps its config as ``config.yaml``: :func:`save_model_config`
writes it (making the folder), :func:`load_model_config` reads it back once the folder
holds every file the model needs.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from hepgen.errors import InputFileError


def merge_config(base: dict, override: dict | None) -> dict:
    """A deep copy of ``base`` with ``override`` merged in: nested mappings key by key,
    any other value replaced."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config(path: str | os.PathLike | None) -> dict:
    """The mapping in the YAML file ``path`` (``{}`` for None); errors name the file."""
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"--config: {path}: no such file")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputFileError(f"--config: {path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(cfg, dict):
        raise InputFileError(f"--config: {path}: expected a mapping of sections")
    return cfg


def to_plain(obj):
    """Tuples -> lists, recursively, so a config dumps as plain YAML."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def save_model_config(folder: str | os.PathLike, cfg: dict) -> Path:
    """Make the model folder ``folder`` (with its parents) and write ``cfg`` into its
    ``config.yaml`` (plain YAML, keys in the config's order); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(to_plain(cfg), sort_keys=False))
    return folder


def load_model_config(folder: str | os.PathLike, needed: tuple[str, ...], what: str) -> dict:
    """The ``config.yaml`` of the model folder ``folder``, once it and every file in ``needed``
    exist there; otherwise ``InputFileError("FOLDER: not a trained WHAT (missing NAME)")``
    for the first one missing (``config.yaml`` first)."""
    folder = Path(folder)
    for name in ("config.yaml", *needed):
        if not (folder / name).exists():
            raise InputFileError(f"{folder}: not a trained {what} (missing {name})")
    return yaml.safe_load((folder / "config.yaml").read_text())
