"""The CPU peers' clock: timing on one core of this machine, in the same run.

Every CPU figure zeroskip prints next to the accelerator's comes from
:func:`best_seconds`: wall-clock time (``time.perf_counter``, the operating
system's monotonic high-resolution clock) of a call repeated until both
``repeats`` runs and ``min_seconds`` have passed, the best (minimum) run
kept, the median beside it. :func:`one_core` makes a "one core" figure one
core: the calling thread is pinned to a single CPU (``os.sched_setaffinity``)
and numpy's BLAS/OpenMP pools are limited to one thread (``threadpoolctl``,
where installed; scipy.sparse's own kernels are single-threaded either way).
When RAPL is readable the package energy counters are read around the timed
loop (see :mod:`zeroskip.app.cpu_energy`).

:func:`scipy_spmv` is the SpMV peer of ``zeroskip run`` and ``bench/spmv.py``:
``A @ x`` with ``A`` a float64 CSR matrix, on one core.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time

import numpy as np
import scipy.sparse

from zeroskip.app import cpu_energy

__all__ = ["CLOCK", "one_core", "best_seconds", "scipy_spmv"]

#: What the CPU times are measured with.
CLOCK = "wall clock (time.perf_counter), best of repeated runs on this machine"


@contextlib.contextmanager
def one_core():
    """Run the body on one core; yields one line saying how that was ensured."""
    notes = []
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            notes.append("threadpoolctl not installed, numpy's BLAS pool not limited "
                         "(scipy.sparse's kernels are single-threaded)")
        else:
            stack.enter_context(threadpool_limits(limits=1))
            notes.append("BLAS/OpenMP pools limited to 1 thread (threadpoolctl)")
        if hasattr(os, "sched_setaffinity"):
            previous = os.sched_getaffinity(0)
            cpu = min(previous)
            os.sched_setaffinity(0, {cpu})
            stack.callback(os.sched_setaffinity, 0, previous)
            notes.insert(0, f"thread pinned to CPU {cpu} (sched_setaffinity)")
        else:
            notes.insert(0, "no CPU affinity on this OS")
        yield "; ".join(notes)


def best_seconds(function, *, repeats=5, min_seconds=0.2, max_runs=200, energy=True):
    """Time ``function()``: best and median of at least ``repeats`` runs and ``min_seconds``.

    One untimed warm-up call comes first. Returns ``{"best", "median", "runs",
    "rapl"}``; ``rapl`` is the package energy measured around the timed loop
    (:func:`zeroskip.app.cpu_energy.measure`), or None where it cannot be read.
    """
    function()
    times = []
    with cpu_energy.measure(enabled=energy) as rapl:
        start = time.perf_counter()
        while len(times) < repeats or time.perf_counter() - start < min_seconds:
            t0 = time.perf_counter()
            function()
            times.append(time.perf_counter() - t0)
            if len(times) >= max_runs:
                break
    return {"best": min(times), "median": statistics.median(times), "runs": len(times),
            "rapl": rapl.result}


def scipy_spmv(matrix, x, *, repeats=20, min_seconds=0.05):
    """scipy.sparse's ``A @ x`` (float64 CSR) on one core.

    ``x`` is a vector or a matrix of right-hand columns. Returns ``{"seconds"
    (best), "median_s", "runs", "y", "one_core", "rapl"}``.
    """
    a = scipy.sparse.csr_matrix(matrix, dtype=np.float64)
    x = x.toarray() if scipy.sparse.issparse(x) else np.asarray(x)
    x = np.ascontiguousarray(x, dtype=np.float64)
    with one_core() as how:
        timed = best_seconds(lambda: a @ x, repeats=repeats, min_seconds=min_seconds)
    return {"seconds": timed["best"], "median_s": timed["median"], "runs": timed["runs"],
            "y": a @ x, "one_core": how, "rapl": timed["rapl"]}
