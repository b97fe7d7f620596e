"""Energy Flow Polynomials of JetNet-layout jets, vectorised over jets.

Values are those of ``energyflow.EFPSet(..., measure="hadr", beta=1, normed=None,
coords="ptyphim")`` as called by ``jetnet.utils.efps`` (z_i = ptrel_i, theta_ij =
sqrt(d_eta^2 + d_phi^2) with phi wrapped). The graphs, their einsum strings and the
products that make disconnected graphs all come from ``energyflow``; only the
evaluation is ours, because that is where the time goes: ``energyflow`` evaluates
every graph jet by jet in Python (one ``numpy.einsum`` per graph and jet, spread over
processes), which for 50k jets x 36 EFPs is millions of tiny calls. Here each graph
is one batched contraction over thousands of jets at once (``opt_einsum`` picks the
contraction order, ``torch`` runs it in float64 on CPU or GPU).

Why the speed-ups are exact: padded particles have ptrel = 0, so they add exactly zero
to every sum, just as they do in ``energyflow``; batches of jets with similar
multiplicity are therefore cut to their largest multiplicity before contracting.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from hepgen.device import default_device
from hepgen.errors import InvalidDataError

#: The EFPs of ``jetnet.evaluation.w1efp`` (n = 4 vertices, d = 4 edges, connected).
W1EFP_SET = (("n==", 4), ("d==", 4), ("p==", 1))
#: The 36 EFPs of ``jetnet.evaluation.get_fpd_kpd_jet_features`` (all with d <= 4).
FPD_SET = (("d<=", 4),)

_BATCH_LETTER = "Z"


@lru_cache(maxsize=None)
def efp_set(*efpset_args):
    """The ``energyflow.EFPSet`` with the measure jetnet uses."""
    from energyflow import EFPSet

    return EFPSet(*efpset_args, measure="hadr", beta=1, normed=None, coords="ptyphim")


def _batched_expr(efp) -> str:
    """'ab,ac,a,b,c' -> 'Zab,Zac,Za,Zb,Zc->Z' (explicit, with a batch index)."""
    inputs = efp.einstr.split("->")[0]
    return ",".join(_BATCH_LETTER + term for term in inputs.split(",")) + "->" + _BATCH_LETTER


def _thetas(eta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Pairwise angular distances with energyflow's phi wrapping, (B, P, P)."""
    deta = eta[:, :, None] - eta[:, None, :]
    dphi = phi[:, :, None] - phi[:, None, :]
    dphi = np.pi - torch.abs(torch.abs(dphi) - np.pi)
    return torch.sqrt(deta * deta + dphi * dphi)


class EFPCalculator:
    """Compute one ``energyflow`` EFP set on jets (N, P, >=3) = (etarel, phirel, ptrel, ...).

    >>> calc = EFPCalculator(*FPD_SET)
    >>> efps = calc(jets)            # (N, 36), equal to jetnet.utils.efps(jets, [("d<=", 4)])
    """

    def __init__(
        self,
        *efpset_args,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        progress: bool = False,
    ):
        import opt_einsum

        self.efpset = efp_set(*(tuple(a) for a in efpset_args))
        self.graphs = list(self.efpset.graphs())
        self._connected = list(self.efpset.efps)
        self._exprs = [_batched_expr(e) for e in self._connected]
        self._contract = opt_einsum.contract
        self.batch_size = batch_size
        self.progress = progress
        self.device = torch.device(device) if device is not None else default_device()

    def __len__(self) -> int:
        return len(self.graphs)

    def _auto_batch(self, num_particles: int) -> int:
        # keep each (B, P, P) float64 matrix near 64 MB
        return self.batch_size or max(64, int(8e6 // max(num_particles, 1) ** 2))

    def _connected_efps(self, jets: np.ndarray) -> np.ndarray:
        from tqdm.auto import tqdm

        # Jets are processed in order of multiplicity and each batch is cut to its
        # largest multiplicity: padded particles (z = 0) add exactly nothing, and the
        # cost of the cyclic graphs grows as P^3.
        pt = jets[:, :, 2]
        n = (pt != 0).sum(1)
        if np.any(pt[:, 1:] > pt[:, :-1]) and np.any(pt == 0):  # not sorted: move zeros to the end
            order_p = np.argsort(pt == 0, axis=1, kind="stable")
            jets = np.take_along_axis(jets, order_p[..., None], axis=1)
        order = np.argsort(n, kind="stable")
        batch = self._auto_batch(int(max(n.max(), 1)))
        out = np.empty((len(jets), len(self._connected)), dtype=np.float64)
        weights_needed = sorted({w for e in self._connected for w in e.weights})
        starts = range(0, len(jets), batch)
        for start in tqdm(starts, desc="EFPs", unit="batch", disable=not self.progress or len(starts) < 2, leave=False):
            idx = order[start : start + batch]
            width = max(int(n[idx].max()), 1)
            chunk = torch.as_tensor(jets[idx, :width, :3], dtype=torch.float64, device=self.device)
            eta, phi, z = chunk[..., 0], chunk[..., 1], chunk[..., 2]
            theta = _thetas(eta, phi)
            powers = {1: theta}
            for w in weights_needed:
                if w not in powers:
                    powers[w] = theta**w
            for k, (efp, expr) in enumerate(zip(self._connected, self._exprs)):
                operands = [powers[w] for w in efp.weights] + [z] * efp.n
                out[idx, k] = self._contract(expr, *operands, backend="torch").cpu().numpy()
        return out

    def __call__(self, jets: np.ndarray) -> np.ndarray:
        jets = np.asarray(jets)
        if jets.ndim != 3 or jets.shape[-1] < 3:
            raise InvalidDataError(f"EFPs need jets of shape (N, P, >=3), got {jets.shape}")
        connected = self._connected_efps(jets)
        return np.atleast_2d(self.efpset.calc_disc(connected))

    def columns_of(self, other: "EFPCalculator") -> list[int]:
        """Indices of ``other``'s EFPs among this set's columns (to compute once, use twice)."""
        keys = [_graph_key(g) for g in self.graphs]
        try:
            return [keys.index(_graph_key(g)) for g in other.graphs]
        except ValueError:
            raise ValueError("EFP set is not a subset of this one") from None


def _graph_key(graph) -> tuple:
    return tuple(sorted(tuple(sorted(edge)) for edge in graph))


def efps(jets: np.ndarray, efpset_args=W1EFP_SET) -> np.ndarray:
    """EFPs of ``jets`` for an ``energyflow`` set specification (jetnet's default: W1EFP)."""
    return EFPCalculator(*efpset_args)(jets)
