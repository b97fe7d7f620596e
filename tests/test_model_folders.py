"""Trained-model folders of the jet, grid and hit-cloud surrogates: ``save`` writes config.yaml
(through :func:`hepgen.config.save_model_config`) and ``load`` refuses a folder that lacks a file it
needs, naming the first one missing (:func:`hepgen.config.load_model_config`)."""

from __future__ import annotations

import numpy as np
import pytest

from hepgen.errors import InputFileError
from hepgen.models.registry import load_model

CASES = [  # shipped model, what a folder without its files is called, files load needs in order
    ("mdma-gan/t30", "model folder", ["config.yaml", "preprocessor.json", "multiplicity.yaml"]),
    ("wgan-3d/ild-photons", "grid model", ["config.yaml", "weights.pt"]),
    ("ddpm-hits/t", "hit-cloud model", ["config.yaml", "transform.json", "multiplicity.yaml", "weights.pt"]),
]


def _draw(surrogate):
    s = surrogate.sample(3, seed=5, batch_size=3, device="cpu")
    return next(getattr(s, k) for k in ("particle_features", "showers", "hits") if hasattr(s, k))


@pytest.mark.parametrize("name, what, needed", CASES, ids=[c[0] for c in CASES])
def test_save_load_round_trip_and_missing_files(name, what, needed, tmp_path):
    surrogate = load_model(name)
    cls = type(surrogate)
    first = surrogate.save(tmp_path / "a" / "b")  # parents made
    again = cls.load(first)
    again.save(tmp_path / "c")
    assert (tmp_path / "c" / "config.yaml").read_bytes() == (first / "config.yaml").read_bytes()
    assert again.cfg == surrogate.cfg
    np.testing.assert_array_equal(_draw(again), _draw(surrogate))
    for k, missing in enumerate(needed):  # remove the needed files one by one, in order
        with pytest.raises(InputFileError) as info:
            cls.load(tmp_path / f"part{k}")
        assert str(info.value) == f"{tmp_path / f'part{k}'}: not a trained {what} (missing {missing})"
        (tmp_path / f"part{k + 1}").mkdir()
        for have in needed[:k + 1]:
            (tmp_path / f"part{k + 1}" / have).write_bytes((first / have).read_bytes())
