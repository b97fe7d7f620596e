"""The transform protocol: scikit-learn style, fitted on training data, saved with a run.

A transform has ``fit(x, mask=None)``, ``transform(x)``, ``inverse_transform(x)`` and
round-trips through ``to_dict()`` / :func:`from_dict` as plain JSON (no pickles in run
folders). ``mask`` marks the real entries (padded particles are ignored when fitting
and left untouched when transforming).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

_REGISTRY: dict[str, type["Transform"]] = {}


class Transform:
    """Base class; subclasses register themselves under ``name``."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def fit(self, x: np.ndarray, mask: np.ndarray | None = None) -> "Transform":
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_transform(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        return self.fit(x, mask).transform(x)

    def params(self) -> dict[str, Any]:
        """Constructor arguments and fitted state as JSON-able values."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


def _import_all() -> None:
    """Import every module of :mod:`hepgen.transforms`, so that each transform is registered
    (a run folder can be loaded in a fresh process before the module defining its transform
    was imported, e.g. ``hepgen sample ddpm-hits/t``)."""
    import importlib
    import pkgutil

    import hepgen.transforms as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def from_dict(state: dict[str, Any]) -> Transform:
    """Rebuild a transform saved by :meth:`Transform.to_dict`."""
    from hepgen.errors import InvalidDataError

    state = dict(state)
    name = state.pop("name", None)
    if name not in _REGISTRY:
        _import_all()
    if name not in _REGISTRY:
        raise InvalidDataError(f"unknown saved transform {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    cls = _REGISTRY[name]
    return cls.from_params(state) if hasattr(cls, "from_params") else cls(**state)


def load(path: str | Path) -> Transform:
    return from_dict(json.loads(Path(path).read_text()))


def masked_values(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(M, F) rows of ``x`` (..., F) where ``mask`` (...) is true (all rows without a mask)."""
    x = np.asarray(x)
    return x.reshape(-1, x.shape[-1]) if mask is None else x[np.asarray(mask, bool)]
