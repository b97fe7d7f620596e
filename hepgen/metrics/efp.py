"""Energy Flow Polynomials of JetNet-layout jets, vectorised over jets.

Values are those of ``energyflow.EFPSet(..., measure="hadr", beta=1, normed=None,
coords="ptyphim")`` as called by ``jetnet.utils.efps`` (z_i = ptrel_i, theta_ij =
sqrt(d_eta^2 + d_phi^2) with phi wrapped). The graphs and the products that make
disconnected graphs come from ``energyflow``; only the evaluation is ours, because
that is where the time goes: ``energyflow`` evaluates every graph jet by jet in Python
(one ``numpy.einsum`` per graph and jet, spread over processes), which for 50k jets x
36 EFPs is millions of tiny calls, and every graph starts again from the particles.

Here a batch of jets of similar multiplicity is evaluated at once (float64; numpy on
the CPU, with torch for the broadcast steps where it is faster; torch alone on other
devices), and the graphs share their sub-contractions -- a generic einsum, which is
what a graph library offers, sees one graph at a time, and that is why this part is
hand-written:

* theta^2 and theta (its square root) once per batch, in reused buffers;
* trees are contracted leaf to root as matrix-vector products, and each message
  (theta^w applied to a vertex factor) is computed once for all graphs that contain
  that rooted sub-tree: the 17 trees with d <= 4 (the single vertex included) need 6
  messages, P^2 each (theta^3 z and theta^4 z as row sums of theta^2 times theta_ij z_j
  or theta^2_ij z_j, so theta^3 and theta^4 are never formed);
* every cyclic graph with d <= 4 (triangle, triangle with a double edge, triangle with
  a tail, square) reduces to G = theta diag(z) theta: one batched matrix product (P^3)
  shared by all four, then P^2 sums (a triangle i-j-k is sum_ij f_i f_j theta^w_ij
  G_ij, a square sum_ij f_i f_j G_ij^2).

Graphs outside these shapes (larger sets) fall back to one ``opt_einsum`` contraction
per graph.

Why the speed-ups are exact: padded particles have ptrel = 0, so they add exactly zero
to every sum, just as they do in ``energyflow``; batches of jets with similar
multiplicity are therefore cut to their largest multiplicity before contracting. The
contractions are the same sums in a different order (differences at the 1e-15 level).
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
#: Elements (jets x width^2) of one (B, P, P) matrix of a batch: ~1 MB keeps the few
#: live matrices of a batch in cache.
_BATCH_ELEMENTS = 1 << 17


@lru_cache(maxsize=None)
def efp_set(*efpset_args):
    """The ``energyflow.EFPSet`` with the measure jetnet uses."""
    from energyflow import EFPSet

    return EFPSet(*efpset_args, measure="hadr", beta=1, normed=None, coords="ptyphim")


def _batched_expr(efp) -> str:
    """'ab,ac,a,b,c' -> 'Zab,Zac,Za,Zb,Zc->Z' (explicit, with a batch index)."""
    inputs = efp.einstr.split("->")[0]
    return ",".join(_BATCH_LETTER + term for term in inputs.split(",")) + "->" + _BATCH_LETTER


def _thetas(eta, phi, out2=None, out=None, scratch=None):
    """(theta^2, theta), pairwise (B, P, P), with energyflow's phi wrapping.

    numpy or torch in, the same out; the arithmetic runs in torch (numpy arrays are
    shared, not copied), whose broadcast differences and square roots are ~2-4x faster
    on the CPU than numpy's. ``out2``, ``out`` and ``scratch`` are optional (B, P, P)
    buffers, reused between batches: fresh megabyte arrays cost more in page faults
    than the arithmetic."""
    as_numpy = not isinstance(eta, torch.Tensor)
    if as_numpy:
        eta, phi = torch.from_numpy(eta), torch.from_numpy(phi)
    shape = (*eta.shape, eta.shape[-1])
    if out2 is None:
        out2, out, scratch = (torch.empty(shape, dtype=eta.dtype, device=eta.device) for _ in range(3))
    elif as_numpy:
        out2, out, scratch = torch.from_numpy(out2), torch.from_numpy(out), torch.from_numpy(scratch)
    dphi = torch.sub(phi[:, :, None], phi[:, None, :], out=scratch)
    dphi.abs_()
    if float(phi.abs().max()) <= np.pi / 2:
        # then |dphi| <= pi, where pi - |(|dphi| - pi)| is computed exactly as pi - (pi - |dphi|)
        dphi.sub_(np.pi).neg_()
    else:
        dphi.sub_(np.pi).abs_()
    dphi.sub_(np.pi).neg_()  # pi - x (negation is exact: the same rounding)
    theta2 = torch.sub(eta[:, :, None], eta[:, None, :], out=out2)
    theta2.mul_(theta2).addcmul_(dphi, dphi)
    theta = torch.sqrt(theta2, out=out)
    return (theta2.numpy(), theta.numpy()) if as_numpy else (theta2, theta)


class _Workspace:
    """Named flat buffers, grown on demand and viewed as (B, P, P) for each batch."""

    def __init__(self, device: torch.device | None):
        self.device = device  # None: numpy
        self.flat: dict = {}

    def get(self, name: str, shape: tuple):
        size = int(np.prod(shape))
        buf = self.flat.get(name)
        if buf is None or buf.shape[0] < size:
            if self.device is None:
                buf = np.empty(size, np.float64)
            else:
                buf = torch.empty(size, dtype=torch.float64, device=self.device)
            self.flat[name] = buf
        return buf[:size].reshape(shape)


# --- planning: which shared pieces each connected graph needs -------------------------
#
# A vertex factor is a key: () is z itself; ((w, child), ...) is z times the messages
# theta^w @ factor(child) of the pruned sub-trees hanging from it (sorted, so equal
# sub-trees share one key). A plan is ("tree", factor of the root), ("triangle",
# f_i, f_j, w_ij) [the third vertex is plain z with weight-1 edges], ("square", f_a,
# f_c) [b and d plain z, all weights 1] or ("einsum", expr).


def _add_message(factor: tuple, w: int, child: tuple) -> tuple:
    return tuple(sorted(factor + ((w, child),)))


def _rooted(adj: dict, v: int, parent: int | None) -> tuple:
    return tuple(sorted((w, _rooted(adj, u, v)) for u, w in adj[v].items() if u != parent))


def _messages(key: tuple) -> set:
    out = set()
    for w, child in key:
        out.add((w, child))
        out |= _messages(child)
    return out


def _plan(efp, known: set) -> tuple:
    n = efp.n
    adj: dict[int, dict[int, int]] = {v: {} for v in range(n)}
    for a, b in efp.graph:
        adj[a][b] = adj[a].get(b, 0) + 1
        adj[b][a] = adj[b].get(a, 0) + 1
    if sum(len(nb) for nb in adj.values()) // 2 == n - 1:  # connected tree: pick the cheapest root
        roots = [_rooted(adj, r, None) for r in range(n)]
        best = min(roots, key=lambda k: (len(_messages(k) - known), len(_messages(k))))
        known |= _messages(best)
        return ("tree", best)
    # prune leaves into their neighbours until only the cycle core is left
    factor = {v: () for v in adj}
    while True:
        leaves = [v for v in adj if len(adj[v]) == 1]
        if not leaves:
            break
        v = leaves[0]
        ((u, w),) = adj[v].items()
        factor[u] = _add_message(factor[u], w, factor[v])
        del adj[u][v], adj[v], factor[v]
    plan: tuple = ("einsum", _batched_expr(efp))
    core = list(adj)
    edges = {(a, b): w for a in adj for b, w in adj[a].items() if a < b}
    if len(core) == 3 and len(edges) == 3:
        for k in core:
            i, j = (v for v in core if v != k)
            if factor[k] == () and adj[k][i] == 1 and adj[k][j] == 1:
                plan = ("triangle", factor[i], factor[j], adj[i][j])
                break
    elif len(core) == 4 and len(edges) == 4 and all(len(adj[v]) == 2 for v in core) and set(edges.values()) == {1}:
        a = core[0]
        c = next(v for v in core if v != a and v not in adj[a])
        b, d = adj[a]
        if factor[b] == () and factor[d] == ():
            plan = ("square", factor[a], factor[c])
        elif factor[a] == () and factor[c] == ():
            plan = ("square", factor[b], factor[d])
    if plan[0] != "einsum":
        for f in factor.values():
            known |= _messages(f)
    return plan


class _Batch:
    """The shared pieces of one batch of jets, computed on first use."""

    def __init__(self, eta, phi, z, workspace: _Workspace):
        self.xp = torch if isinstance(z, torch.Tensor) else np
        self.z = z
        self.ws = workspace
        self.shape = (*z.shape, z.shape[-1])
        get = workspace.get
        theta2, theta = _thetas(eta, phi, get("theta2", self.shape), get("theta", self.shape), get("dphi", self.shape))
        self.powers = {1: theta, 2: theta2}
        self.factors: dict = {(): z}
        self.msgs: dict = {}
        self._scaled: dict = {}
        self._g = None
        self._g_times: dict = {}
        self._rows: dict = {}

    def power(self, w: int):
        if w not in self.powers:
            p = self.powers
            p[w] = p[2] * p[w - 2] if w in (3, 4) else p[1] ** w
        return self.powers[w]

    def matvec(self, m, v):
        return self.xp.matmul(m, v[..., None])[..., 0]

    def rowdot(self, a, b):
        """sum_j a_ij b_ij: a product and a row sum in one pass, nothing written."""
        return self.xp.einsum("bij,bij->bi", a, b)

    def times_columns(self, m, v, name: str):
        """m_ij v_j into the buffer ``name`` (broadcasting through torch, also for numpy:
        numpy's broadcast loops are several times slower here)."""
        out = self.ws.get(name, self.shape)
        if self.xp is np:
            torch.mul(torch.from_numpy(m), torch.from_numpy(v)[:, None, :], out=torch.from_numpy(out))
            return out
        return torch.mul(m, v[:, None, :], out=out)

    def scaled(self, w: int):
        """theta^w_ij z_j (w = 1, 2)."""
        if w not in self._scaled:
            self._scaled[w] = self.times_columns(self.powers[w], self.z, f"theta{w}_z")
        return self._scaled[w]

    def message(self, w: int, child: tuple):
        if (w, child) not in self.msgs:
            if child == () and w in (3, 4):  # theta^w z = rows of theta^2 . (theta^(w-2)_ij z_j)
                msg = self.rowdot(self.powers[2], self.scaled(w - 2))
            else:
                msg = self.matvec(self.power(w), self.factor(child))
            self.msgs[(w, child)] = msg
        return self.msgs[(w, child)]

    def factor(self, key: tuple):
        if key not in self.factors:
            f = self.z
            for w, child in key:
                f = f * self.message(w, child)
            self.factors[key] = f
        return self.factors[key]

    def g(self):
        if self._g is None:  # G = theta diag(z) theta
            self._g = self.xp.matmul(self.scaled(1), self.powers[1], out=self.ws.get("g", self.shape))
        return self._g

    def bilinear(self, kind, fi: tuple, fj: tuple):
        """sum_ij f_i W_ij f_j for W = theta^kind * G (kind = 1, 2, ...) or G * G ('sq')."""
        if (kind, fj) not in self._rows:
            if fj not in self._g_times:  # G_ij f_j
                self._g_times[fj] = self.times_columns(self.g(), self.factor(fj), f"g_f{len(self._g_times)}")
            other = self.g() if kind == "sq" else self.power(kind)
            self._rows[(kind, fj)] = self.rowdot(other, self._g_times[fj])
        return (self.factor(fi) * self._rows[(kind, fj)]).sum(-1)

    def value(self, plan):
        kind = plan[0]
        if kind == "tree":
            return self.factor(plan[1]).sum(-1)
        if kind == "triangle":
            return self.bilinear(plan[3], plan[1], plan[2])
        if kind == "square":
            return self.bilinear("sq", plan[1], plan[2])
        raise AssertionError(kind)


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
        known: set = set()
        self._plans = [_plan(e, known) for e in self._connected]
        self._contract = opt_einsum.contract
        self.batch_size = batch_size
        self.progress = progress
        self.device = torch.device(device) if device is not None else default_device()
        #: numpy on the CPU (its small matrix-vector products are faster), torch elsewhere
        self._use_numpy = self.device.type == "cpu"

    def __len__(self) -> int:
        return len(self.graphs)

    def _auto_batch(self, num_particles: int) -> int:
        if self.batch_size:
            return self.batch_size
        if self._use_numpy:  # cache-sized batches
            return max(8, _BATCH_ELEMENTS // max(num_particles, 1) ** 2)
        return max(64, int(8e6 // max(num_particles, 1) ** 2))  # ~64 MB per matrix on a GPU

    def _evaluate(self, chunk, workspace: _Workspace) -> list:
        """Connected EFPs of one batch (B, P, 3) of float64 jets: a list of (B,) arrays."""
        z = chunk[..., 2].contiguous() if isinstance(chunk, torch.Tensor) else np.ascontiguousarray(chunk[..., 2])
        batch = _Batch(chunk[..., 0], chunk[..., 1], z, workspace)
        out = []
        for efp, plan in zip(self._connected, self._plans):
            if plan[0] == "einsum":
                operands = [batch.power(w) for w in efp.weights] + [batch.z] * efp.n
                out.append(self._contract(plan[1], *operands))
            else:
                out.append(batch.value(plan))
        return out

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
        out = np.empty((len(jets), len(self._connected)), dtype=np.float64)
        on_cpu = self._use_numpy
        workspace = _Workspace(None if on_cpu else self.device)
        bounds, start = [], 0
        while start < len(jets):  # size each batch for the multiplicity of its last (largest) jet
            stop = min(start + self._auto_batch(int(n[order[start]])), len(jets))
            stop = min(start + self._auto_batch(int(n[order[stop - 1]])), len(jets))
            bounds.append((start, stop))
            start = stop
        for start, stop in tqdm(bounds, desc="EFPs", unit="batch", disable=not self.progress or len(bounds) < 2,
                                leave=False):
            idx = order[start:stop]
            width = max(int(n[idx].max()), 1)
            chunk = np.ascontiguousarray(jets[idx, :width, :3], dtype=np.float64)
            if on_cpu:
                out[idx] = np.stack(self._evaluate(chunk, workspace), axis=1)
            else:
                values = self._evaluate(torch.as_tensor(chunk, device=self.device), workspace)
                out[idx] = torch.stack(values, dim=1).cpu().numpy()
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
