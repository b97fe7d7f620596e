"""JetNet-layout files: our own and the published layout (fixture), round trips, selection."""

import h5py
import numpy as np
import pytest

from hepgen.data.jetnet import JetSample, load_jetnet, read_jets, write_jets
from hepgen.errors import InputFileError, InvalidDataError, OptionError


def test_real_layout_fixture_loads_and_truncates(fixture_dir):
    full = read_jets(fixture_dir / "t150.hdf5")
    assert full.particle_features.shape == (100, 150, 4)
    assert full.particle_features.dtype == np.float32
    t30 = read_jets(fixture_dir / "t150.hdf5", num_particles=30)
    assert t30.particle_features.shape == (100, 30, 4)
    np.testing.assert_array_equal(t30.particle_features, full.particle_features[:, :30])
    # num_particles capped at the truncation, as jetnet does
    assert t30.jet_features[:, 3].max() <= 30
    assert (full.jet_features[:, 3] > 30).any()
    # the 30-particle published file holds the same particles
    np.testing.assert_array_equal(read_jets(fixture_dir / "t.hdf5").particle_features, t30.particle_features)


def test_particles_sorted_and_masked(fixture_dir):
    s = read_jets(fixture_dir / "t150.hdf5")
    pt = s.particle_features[..., 2]
    assert np.all(np.diff(pt, axis=1) <= 0)
    assert np.array_equal(s.mask, pt > 0)
    assert np.all(np.abs(s.particle_features[..., 1]) <= np.pi)
    np.testing.assert_array_equal(s.multiplicity, np.minimum(s.jet_features[:, 3], 150))


def test_load_jetnet_matches_jetnets_getdata(fixture_dir, monkeypatch):
    """Same selection, ordering and split as jetnet.datasets.JetNet.getData on the same files."""
    jetnet = pytest.importorskip("jetnet")
    import jetnet.datasets.jetnet as jetnet_module

    # jetnet checks the file's md5 against Zenodo on every load; no network here
    monkeypatch.setattr(jetnet_module, "checkDownloadZenodoDataset",
                        lambda data_dir, dataset_name, record_id, key, download: str(fixture_dir / key))
    kw = dict(jet_type="t", num_particles=30, split="valid", split_fraction=[0.6, 0.2, 0.2], seed=3)
    ref_pf, ref_jf = jetnet.datasets.JetNet.getData(
        data_dir=str(fixture_dir), particle_features=["ptrel", "etarel"], jet_features=["type", "mass", "num_particles"],
        download=False, **kw)
    pf, jf = load_jetnet(fixture_dir, particle_features=["ptrel", "etarel"], jet_features=["type", "mass", "num_particles"], **kw)
    np.testing.assert_array_equal(pf, ref_pf)
    np.testing.assert_array_equal(jf, ref_jf)
    pf150, _ = load_jetnet(fixture_dir, jet_type="t", num_particles=150)
    assert pf150.shape == (100, 150, 4)


def test_load_jetnet_rejects_unknown_type(fixture_dir):
    with pytest.raises(OptionError, match="unknown jet type 'x'"):
        load_jetnet(fixture_dir, jet_type="x")


def test_write_read_round_trip(tmp_path, fixture_dir):
    s = read_jets(fixture_dir / "t150.hdf5", num_particles=30)
    s.jet_type = "t"
    path = write_jets(s, tmp_path / "x.h5")
    back = read_jets(path)
    np.testing.assert_array_equal(back.particle_features, s.particle_features)
    np.testing.assert_array_equal(back.jet_features, s.jet_features)
    assert back.jet_type == "t"
    # deterministic bytes
    write_jets(s, tmp_path / "y.h5")
    assert (tmp_path / "x.h5").read_bytes() == (tmp_path / "y.h5").read_bytes()


def _write(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return path


@pytest.mark.parametrize(
    "datasets, message",
    [
        ({"particle_features": np.zeros((5, 30, 4), np.float32)}, "missing dataset\\(s\\) jet_features"),
        ({"particle_features": np.zeros((5, 30, 3), np.float32), "jet_features": np.zeros((5, 4))}, r"shape \(N, P, 4\)"),
        ({"particle_features": np.zeros((5, 30, 4), np.float32), "jet_features": np.zeros((4, 4))}, "4 rows of jet_features but 5"),
        ({"particle_features": np.full((5, 30, 4), np.nan, np.float32), "jet_features": np.zeros((5, 4))}, "NaN or inf in 5 jets"),
        ({"particle_features": np.zeros((0, 30, 4), np.float32), "jet_features": np.zeros((0, 4))}, "empty sample"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, datasets, message):
    path = _write(tmp_path / "bad.h5", **datasets)
    with pytest.raises((InputFileError, InvalidDataError), match=message) as info:
        read_jets(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_jets(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputFileError, match="not a readable HDF5 file"):
        read_jets(tmp_path / "text.h5")


@pytest.mark.parametrize("reader", ["read_dijets", "read_hits"])
def test_dijet_and_hit_readers_name_missing_and_non_hdf5_files(tmp_path, reader):
    """Both readers open their file through hepgen.data.h5.open_h5: the same two messages."""
    import importlib

    read = getattr(importlib.import_module(f"hepgen.data.{reader.split('_')[1]}"), reader)
    with pytest.raises(InputFileError) as info:
        read(tmp_path / "nope.h5")
    assert str(info.value) == f"{tmp_path / 'nope.h5'}: no such file"
    with pytest.raises(InputFileError) as info:
        read(tmp_path)
    assert str(info.value) == f"{tmp_path}: no such file"
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputFileError) as info:
        read(tmp_path / "text.h5")
    assert str(info.value) == f"{tmp_path / 'text.h5'}: not an HDF5 file" and info.value.__cause__ is None


def test_failed_write_keeps_old_file(tmp_path, fixture_dir, monkeypatch):
    s = read_jets(fixture_dir / "t.hdf5")
    target = write_jets(s, tmp_path / "keep.h5")
    before = target.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5py.File, "create_dataset", boom)
    with pytest.raises(RuntimeError):
        write_jets(s, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.h5"]


def test_jetsample_validates_mask():
    pf = np.zeros((2, 3, 4), np.float32)
    pf[..., 3] = 0.5
    with pytest.raises(InvalidDataError, match="mask"):
        JetSample(pf, np.zeros((2, 4)))


@pytest.mark.parametrize("replace", [False, True])
def test_atomic_folder_keeps_the_old_folder_on_failure_and_swaps_on_success(tmp_path, replace):
    """Reports and anomaly runs are written through ``atomic_folder``: a failure half-way
    leaves the previous folder as it was and no temporary folder behind."""
    from hepgen.data.atomic import atomic_folder

    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "metrics.json").write_text("old")
    (out / "figures" / "a.png").write_text("old figure")
    (out / "keep.txt").write_text("unrelated")
    with pytest.raises(RuntimeError):
        with atomic_folder(out, replace=replace) as tmp:
            (tmp / "metrics.json").write_text("new")
            raise RuntimeError("plotting failed")
    assert (out / "metrics.json").read_text() == "old" and (out / "figures" / "a.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    with atomic_folder(out, replace=replace) as tmp:
        (tmp / "metrics.json").write_text("new")
        (tmp / "figures").mkdir()
        (tmp / "figures" / "b.png").write_text("new figure")
    assert (out / "metrics.json").read_text() == "new"
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["b.png"]
    assert (out / "keep.txt").exists() is (not replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    with pytest.raises(Exception, match="parent folder"):
        with atomic_folder(tmp_path / "missing" / "out"):
            pass
