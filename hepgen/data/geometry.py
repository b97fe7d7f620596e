"""Calorimeter geometries: the CaloChallenge ``binning_*.xml`` schema and regular grids.

CaloChallenge (Krause et al., arXiv:2410.21611): each layer of a cylinder around the
particle direction is cut into ``n_bin_alpha`` angular bins (edges evenly spaced over
(-pi, pi]) and the radial bins given by ``r_edges`` (mm). A layer with a single edge
("0") is not read out. The voxels of a shower are stored layer by layer; inside a
layer, the radial bins of the first angular bin come first (radius runs fastest):

    index = layer_offset + alpha_bin * n_r + r_bin

Voxel centres are the bin mid-points, ``x = r cos(alpha)``, ``y = r sin(alpha)`` (the
challenge's "eta" and "phi" directions), as in its ``XMLHandler``.

The ILD-like photon grid (Diefenbacher thesis, seed 001) is a regular 30 x 30 x 30 grid
of 5.08 mm Si cells behind W absorbers, voxels ordered (layer, x, y) with y fastest.

The official XML files ship with the package (``hepgen/data/geometries``); any other
file in the same schema loads with :func:`read_binning_xml`.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from hepgen.errors import InputFileError, OptionError

GEOMETRY_DIR = Path(__file__).with_name("geometries")
XML_FILES = {
    "ds1-photons": "binning_dataset_1_photons.xml",
    "ds1-pions": "binning_dataset_1_pions.xml",
    "ds2": "binning_dataset_2.xml",
    "ds3": "binning_dataset_3.xml",
}
GEOMETRIES = (*XML_FILES, "ild-photons", "ild-pions")


@dataclass(frozen=True)
class Layer:
    """One longitudinal layer: radial edges (mm) and the number of angular bins."""

    index: int
    r_edges: tuple[float, ...]
    n_alpha: int

    @property
    def n_r(self) -> int:
        return max(len(self.r_edges) - 1, 0)

    @property
    def num_voxels(self) -> int:
        return self.n_r * self.n_alpha if self.n_r else 0

    @property
    def alpha_edges(self) -> np.ndarray:
        return np.linspace(-np.pi, np.pi, self.n_alpha + 1)


@dataclass(frozen=True)
class CaloGeometry:
    """A voxelised calorimeter: the readout layers and the voxel order.

    Attributes
    ----------
    name: geometry name (``ds2``, ``ild-photons``, ...)
    particle: the particle of the dataset (``electron``, ``photon``, ``pion``)
    layers: every layer of the file, including the ones without readout
    kind: ``"polar"`` (CaloChallenge) or ``"grid"`` (regular x-y cells)
    cell_size: the x-y cell size in mm of a grid geometry
    """

    name: str
    particle: str
    layers: tuple[Layer, ...]
    kind: str = "polar"
    cell_size: float = 0.0
    grid_shape: tuple[int, int, int] | None = None
    source: str = field(default="", compare=False)

    # -- sizes -------------------------------------------------------------------------
    @property
    def num_voxels(self) -> int:
        if self.kind == "grid":
            return int(np.prod(self.grid_shape))
        return sum(layer.num_voxels for layer in self.layers)

    @property
    def relevant_layers(self) -> tuple[int, ...]:
        """Indices of the layers that are read out (the challenge's ``relevantlayers``)."""
        if self.kind == "grid":
            return tuple(range(self.grid_shape[0]))
        return tuple(layer.index for layer in self.layers if layer.num_voxels)

    @property
    def num_layers(self) -> int:
        """Number of read-out layers."""
        return len(self.relevant_layers)

    @property
    def layer_slices(self) -> dict[int, slice]:
        """Voxel range of each read-out layer, keyed by the layer index of the file."""
        out, start = {}, 0
        if self.kind == "grid":
            per = self.grid_shape[1] * self.grid_shape[2]
            return {i: slice(i * per, (i + 1) * per) for i in range(self.grid_shape[0])}
        for layer in self.layers:
            if layer.num_voxels:
                out[layer.index] = slice(start, start + layer.num_voxels)
                start += layer.num_voxels
        return out

    @property
    def layer_boundaries(self) -> np.ndarray:
        """Voxel offsets of the read-out layers, length ``num_layers + 1``."""
        slices = list(self.layer_slices.values())
        return np.array([s.start for s in slices] + [slices[-1].stop])

    @property
    def is_regular(self) -> bool:
        """True when every read-out layer has the same (alpha, r) binning (DS2, DS3, grids)."""
        if self.kind == "grid":
            return True
        shapes = {(layer.n_alpha, layer.r_edges) for layer in self.layers if layer.num_voxels}
        return len(shapes) == 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """(layers, alpha, r) of a regular polar geometry or (layers, x, y) of a grid."""
        if self.kind == "grid":
            return self.grid_shape
        if not self.is_regular:
            raise OptionError(f"geometry {self.name}: layers differ, no common (layer, alpha, r) shape")
        first = next(layer for layer in self.layers if layer.num_voxels)
        return (self.num_layers, first.n_alpha, first.n_r)

    # -- voxel coordinates -------------------------------------------------------------
    @lru_cache(maxsize=None)
    def voxel_table(self) -> dict[str, np.ndarray]:
        """Per-voxel arrays: ``layer`` (read-out layer number 0..L-1), ``layer_id`` (index
        in the file), ``alpha_bin``, ``r_bin``, centres ``r``, ``alpha``, ``x``, ``y`` (mm),
        and the bin edges ``r_low``, ``r_high``, ``alpha_low``, ``alpha_high``.

        For a grid, ``alpha_bin``/``r_bin`` hold the x/y cell numbers and r/alpha the
        polar coordinates of the cell centre.
        """
        cols: dict[str, list] = {k: [] for k in (
            "layer", "layer_id", "alpha_bin", "r_bin", "r", "alpha", "x", "y",
            "r_low", "r_high", "alpha_low", "alpha_high")}
        if self.kind == "grid":
            nl, nx, ny = self.grid_shape
            c = (np.arange(nx) - (nx - 1) / 2) * self.cell_size
            d = (np.arange(ny) - (ny - 1) / 2) * self.cell_size
            xx, yy = np.meshgrid(c, d, indexing="ij")
            ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
            for layer in range(nl):
                cols["layer"].append(np.full(nx * ny, layer))
                cols["layer_id"].append(np.full(nx * ny, layer))
                cols["alpha_bin"].append(ix.ravel())
                cols["r_bin"].append(iy.ravel())
                cols["x"].append(xx.ravel())
                cols["y"].append(yy.ravel())
            x = np.concatenate(cols["x"]).astype(float)
            y = np.concatenate(cols["y"]).astype(float)
            r, a = np.hypot(x, y), np.arctan2(y, x)
            half = self.cell_size / 2
            out = {k: np.concatenate(cols[k]) for k in ("layer", "layer_id", "alpha_bin", "r_bin")}
            out.update(x=x, y=y, r=r, alpha=a, r_low=r - half, r_high=r + half, alpha_low=a, alpha_high=a)
            return out
        readout = 0
        for layer in self.layers:
            if not layer.num_voxels:
                continue
            edges = np.asarray(layer.r_edges, dtype=float)
            a_edges = layer.alpha_edges
            a_bin, r_bin = np.meshgrid(np.arange(layer.n_alpha), np.arange(layer.n_r), indexing="ij")
            a_bin, r_bin = a_bin.ravel(), r_bin.ravel()
            r_mid = 0.5 * (edges[:-1] + edges[1:])[r_bin]
            a_mid = 0.5 * (a_edges[:-1] + a_edges[1:])[a_bin]
            n = layer.num_voxels
            cols["layer"].append(np.full(n, readout))
            cols["layer_id"].append(np.full(n, layer.index))
            cols["alpha_bin"].append(a_bin)
            cols["r_bin"].append(r_bin)
            cols["r"].append(r_mid)
            cols["alpha"].append(a_mid)
            cols["x"].append(r_mid * np.cos(a_mid))
            cols["y"].append(r_mid * np.sin(a_mid))
            cols["r_low"].append(edges[:-1][r_bin])
            cols["r_high"].append(edges[1:][r_bin])
            cols["alpha_low"].append(a_edges[:-1][a_bin])
            cols["alpha_high"].append(a_edges[1:][a_bin])
            readout += 1
        return {k: np.concatenate(v) for k, v in cols.items()}

    def voxel_index(self, layer: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Voxel index of points at read-out ``layer`` (0..L-1) and transverse (x, y) in mm;
        -1 where the point lies outside the readout (beyond the last radial edge or the grid).
        """
        layer = np.asarray(layer)
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        out = np.full(layer.shape, -1, dtype=np.int64)
        if self.kind == "grid":
            nl, nx, ny = self.grid_shape
            ix = np.floor(x / self.cell_size + nx / 2).astype(np.int64)
            iy = np.floor(y / self.cell_size + ny / 2).astype(np.int64)
            ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (layer >= 0) & (layer < nl)
            out[ok] = (layer[ok] * nx + ix[ok]) * ny + iy[ok]
            return out
        r = np.hypot(x, y)
        alpha = np.arctan2(y, x)
        offsets = self.layer_boundaries
        readout = [lay for lay in self.layers if lay.num_voxels]
        for k, lay in enumerate(readout):
            sel = layer == k
            if not sel.any():
                continue
            edges = np.asarray(lay.r_edges)
            rb = np.searchsorted(edges, r[sel], side="right") - 1
            ab = np.clip(np.floor((alpha[sel] + np.pi) / (2 * np.pi) * lay.n_alpha).astype(np.int64), 0, lay.n_alpha - 1)
            ok = (rb >= 0) & (rb < lay.n_r)
            idx = np.where(ok, offsets[k] + ab * lay.n_r + rb, -1)
            out[sel] = idx
        return out

    def describe(self) -> str:
        return (f"{self.name}: {self.particle}, {self.num_layers} read-out layers, "
                f"{self.num_voxels} voxels ({self.kind})")


def read_binning_xml(path: str | os.PathLike, name: str | None = None) -> CaloGeometry:
    """Read a CaloChallenge ``binning_*.xml`` file into a :class:`CaloGeometry`."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: geometry file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputFileError(f"{path}: not a binning XML file ({exc})") from None
    bins = root.findall("Bin")
    if len(bins) != 1:
        raise InputFileError(f"{path}: expected one <Bin> element, found {len(bins)}")
    layers = []
    for element in bins[0].findall("Layer"):
        try:
            edges = tuple(float(v) for v in element.attrib["r_edges"].split(","))
            layers.append(Layer(int(element.attrib["id"]), edges, int(element.attrib["n_bin_alpha"])))
        except (KeyError, ValueError) as exc:
            raise InputFileError(f"{path}: bad <Layer> element {element.attrib} ({exc})") from None
    if not layers:
        raise InputFileError(f"{path}: no <Layer> elements")
    return CaloGeometry(name=name or path.stem, particle=bins[0].attrib.get("name", "unknown"),
                        layers=tuple(layers), source=str(path))


def ild_grid(num_layers: int = 30, num_cells: int = 30, cell_size: float = 5.08, name: str = "ild-photons",
             particle: str = "photon") -> CaloGeometry:
    """A regular ILD-like grid: by default the photon grid of seed 001 ch. 6, 30 layers of
    30 x 30 Si cells (5.08 mm)."""
    layers = tuple(Layer(i, (0.0,), 1) for i in range(num_layers))
    return CaloGeometry(name=name, particle=particle, layers=layers, kind="grid",
                        cell_size=cell_size, grid_shape=(num_layers, num_cells, num_cells))


def ild_pion_grid() -> CaloGeometry:
    """The pion grid of seed 001 ch. 7 (L1989-1993): the ILD AHCAL's 48 layers projected on
    25 x 25 cells of its 3 x 3 cm scintillator tiles."""
    return ild_grid(48, 25, 30.0, name="ild-pions", particle="pion")


@lru_cache(maxsize=None)
def load_geometry(name: str) -> CaloGeometry:
    """A geometry by name (``ds1-photons``, ``ds1-pions``, ``ds2``, ``ds3``, ``ild-photons``, ``ild-pions``)
    or by the path of a binning XML file."""
    if name == "ild-photons":
        return ild_grid()
    if name == "ild-pions":
        return ild_pion_grid()
    if name in XML_FILES:
        return read_binning_xml(GEOMETRY_DIR / XML_FILES[name], name=name)
    if name.endswith(".xml"):
        return read_binning_xml(name)
    raise OptionError(f"unknown geometry '{name}'; choose one of {', '.join(GEOMETRIES)} or a binning XML file")


def geometry_for_voxels(num_voxels: int) -> CaloGeometry:
    """The shipped geometry with ``num_voxels`` voxels (unique for the five datasets)."""
    for name in GEOMETRIES:
        geo = load_geometry(name)
        if geo.num_voxels == num_voxels:
            return geo
    raise InputFileError(f"no known geometry has {num_voxels} voxels; pass --geometry")
