"""The Dark Machines event format and the alias-method count sampler."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hepgen.data.darkmachines import OBJECT_TYPES, iter_events, read_events, write_events
from hepgen.errors import InputFileError, InvalidDataError
from hepgen.models.alias import AliasSampler

LINES = [
    "1;ttbar;1.0;45.2;0.31;b,210.5,150.1,0.9,1.2;j,120.0,100.5,-0.3,2.9;j,60.25,41.0,1.1,-2.0;e-,50.0,45.5,0.4,-0.1;",
    "2;ttbar;1.0;12.125;-2.5;j,300.0,250.0,0.2,0.5;m+,80.5,70.25,-1.0,1.5;g,30.0,29.0,0.1,-3.0;",
    "3;ttbar;1.0;99.0;1.0;",
]


def test_round_trip_is_exact(tmp_path):
    src = tmp_path / "e.txt"
    src.write_text("\n".join(LINES) + "\n")
    events = read_events(src)
    assert len(events) == 3
    np.testing.assert_array_equal(events.counts, [4, 3, 0])
    np.testing.assert_array_equal(events.count_vectors()[0], [2, 1, 1, 0, 0, 0, 0])
    assert events.objects[1, 1, 1] == 70.25 and OBJECT_TYPES[events.types[1, 1]] == "m+"
    out = write_events(events, tmp_path / "f.txt")
    back = read_events(out)
    for name in ("weight", "met", "met_phi", "objects", "types"):
        np.testing.assert_array_equal(getattr(back, name), getattr(events, name))
    assert list(back.event_id) == ["1", "2", "3"] and set(back.process) == {"ttbar"}
    # written again: identical text; chunked reading gives the same events
    assert write_events(back, tmp_path / "g.txt").read_text() == out.read_text()
    chunks = list(iter_events(out, chunk_size=2))
    assert [len(c) for c in chunks] == [2, 1]
    jets, mask = events.objects_of("j")
    np.testing.assert_array_equal(mask.sum(1), [2, 1, 0])
    assert jets[0, 0, 1] == 100.5 and jets[0, 1, 1] == 41.0


@pytest.mark.parametrize("line,fragment", [
    ("1;ttbar;1.0;45.2", "fields"),
    ("1;ttbar;1.0;x;0.3;", "numbers"),
    ("1;ttbar;1.0;45.2;0.3;q,1,2,3,4;", "unknown object type 'q'"),
    ("1;ttbar;1.0;45.2;0.3;j,1,2,3;", "must be 'type, E, pt, eta, phi'"),
    ("1;ttbar;1.0;45.2;0.3;j,1,2,3,nan;", "NaN"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, fragment):
    path = tmp_path / "bad.txt"
    path.write_text(LINES[0] + "\n" + line + "\n")
    with pytest.raises((InputFileError, InvalidDataError), match=fragment) as info:
        read_events(path)
    if isinstance(info.value, InputFileError):
        assert "bad.txt:2" in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_events(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(InvalidDataError, match="no events"):
        read_events(tmp_path / "empty.txt")


def test_alias_sampler_reproduces_a_distribution():
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.04, 0.01])
    sampler = AliasSampler(np.arange(6), p)
    np.testing.assert_allclose(sampler.probabilities(), p, rtol=1e-12, atol=1e-15)
    draws = sampler.sample(200_000, rng=1)[:, 0]
    observed = np.bincount(draws, minlength=6)
    assert stats.chisquare(observed, p * len(draws)).pvalue > 1e-3
    # a wrong distribution is rejected by the same test
    assert stats.chisquare(observed, np.roll(p, 1) * len(draws)).pvalue < 1e-6


def test_alias_sampler_is_exact_on_count_vectors():
    rng = np.random.default_rng(0)
    rows = np.stack([rng.poisson(4, 5000), rng.binomial(2, 0.6, 5000), rng.binomial(1, 0.1, 5000)], axis=1)
    sampler = AliasSampler.fit(rows)
    values, counts = np.unique(rows, axis=0, return_counts=True)
    np.testing.assert_array_equal(sampler.values, values)
    np.testing.assert_allclose(sampler.probabilities(), counts / counts.sum(), rtol=1e-10, atol=1e-15)
    again = AliasSampler.from_dict(sampler.to_dict())
    np.testing.assert_array_equal(again.sample(100, rng=3), sampler.sample(100, rng=3))
    assert set(map(tuple, sampler.sample(1000, rng=2))) <= set(map(tuple, values))
    with pytest.raises(InvalidDataError):
        AliasSampler.fit(np.zeros((0, 3)))
