"""Run independent simulation chunks in parallel with Dask, with a progress bar.

Reference producers split their work into chunks whose seeds depend only on the
user's seed and the chunk index (:func:`derive_seed`), so results are identical
whether the chunks run in this process, on local worker processes, or on a remote
Dask cluster. Scheduling is Dask's (``distributed``); nothing here is a home-made pool.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from hepgen.errors import OptionError

#: Pythia accepts seeds in [1, 900 000 000].
MAX_SEED = 900_000_000


def derive_seed(seed: int, index: int) -> int:
    """Seed of chunk ``index`` for a run with user seed ``seed`` (Pythia's valid range)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, index]).generate_state(1)[0]
    return int(state) % MAX_SEED + 1


def chunk_sizes(num: int, chunk: int) -> list[int]:
    """``num`` items split into tasks of ``chunk`` (the last one smaller)."""
    return [min(chunk, num - i) for i in range(0, num, chunk)]


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def run_chunks(
    func: Callable[..., Any],
    tasks: Sequence[tuple],
    *,
    weights: Sequence[int],
    workers: int | None = None,
    scheduler: str | None = None,
    desc: str = "",
    unit: str = "it",
    progress: bool = True,
    consume: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """Evaluate ``func(*task)`` for every task and return the results in task order.

    * ``scheduler``: address of a running Dask scheduler (``tcp://host:port``);
    * otherwise ``workers`` local processes (default: all cores) via a Dask
      ``LocalCluster`` (the standard library's process pool where Dask is not
      installed); one worker or one task runs in this process.

    ``weights[i]`` is what task ``i`` adds to the progress bar. In-process, ``func``
    also receives ``progress=callback`` for finer updates.

    With ``consume``, each result is handed to ``consume(i, result)`` in task order as
    soon as it and all earlier ones are done (results that finish early wait in a
    buffer), and not kept: the returned list holds ``None``. Producers of large outputs
    use it to stream chunks into a file.
    """
    if workers is not None and workers < 1:
        raise OptionError(f"--workers must be at least 1, got {workers}")
    total = int(sum(weights))
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True)
    try:
        if scheduler is None:
            workers = min(workers or default_workers(), len(tasks))
            if workers <= 1:
                results = []
                for i, task in enumerate(tasks):
                    result = func(*task, progress=bar.update)
                    if consume is not None:
                        consume(i, result)
                        result = None
                    results.append(result)
                return results
        try:
            import distributed  # noqa: F401
        except ImportError:
            if scheduler is not None:
                raise OptionError("--scheduler needs Dask's 'distributed' package, which is not installed") from None
            return _run_pool(func, tasks, weights, workers, bar, consume)
        return _run_dask(func, tasks, weights, workers, scheduler, bar, consume)
    finally:
        bar.close()


def _run_pool(func, tasks, weights, workers, bar, consume=None) -> list[Any]:
    """Local processes without Dask (an environment that lacks it, such as a bare GPU
    image): the standard library's process pool, results handed on in task order."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    collect = _InOrder(len(tasks), consume)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(func, *task): i for i, task in enumerate(tasks)}
        for fut in as_completed(futures):
            i = futures[fut]
            collect.add(i, fut.result())
            bar.update(weights[i])
    return collect.results


class _InOrder:
    """Results arriving in any order: kept by index, or handed to ``consume(i, result)`` in
    task order as soon as they and all earlier ones are there (early ones wait)."""

    def __init__(self, n: int, consume=None):
        self.results: list[Any] = [None] * n
        self.consume, self.waiting, self.next = consume, {}, 0

    def add(self, i: int, result) -> None:
        if self.consume is None:
            self.results[i] = result
            return
        self.waiting[i] = result
        while self.next in self.waiting:
            self.consume(self.next, self.waiting.pop(self.next))
            self.next += 1


def _run_dask(func, tasks, weights, workers, scheduler, bar, consume=None) -> list[Any]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: never collide with a running cluster
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise OptionError(f"--scheduler: cannot reach Dask scheduler at {scheduler}: {exc}") from None
    try:
        futures = [client.submit(func, *task, pure=False) for task in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        collect = _InOrder(len(tasks), consume)
        for fut in as_completed(futures):
            i = index[fut.key]
            collect.add(i, fut.result())
            bar.update(weights[i])
            fut.release()
        return collect.results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
