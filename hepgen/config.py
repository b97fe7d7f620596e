"""Run configurations: one mechanism for every trainer (jets, calorimeter, events).

A run's config is a mapping of sections (``network``, ``training``, ``sampler``, ...):
the model's thesis defaults, merged with the user's ``--config`` YAML, merged with
programmatic overrides. :func:`merge_config` merges nested mappings key by key;
:func:`read_config` reads a ``--config`` file with one clear error for each bad input.
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
