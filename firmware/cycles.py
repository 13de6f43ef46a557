"""Cycle accounting shared by the ISA model, the program's cycle prediction and
the compiler.

:class:`RunCycles` is the one place where an instruction's cycles, stalls and
busy cycles are counted from the rules of the timing contract
(:mod:`zeroskip.timing`) and where the networks' round-robin state carries
from one instruction to the next during a run. :class:`~.model.Machine`
feeds it what its decoders stream; :meth:`.program.Program.tile_cycles`
feeds it what a tile's images hold; both get the same numbers.

Replaying the gather arbitration of one
``SPMV`` costs time proportional to its schedule, and the same schedule is
asked for more than once: the compiler's cost model predicts every tile, and
the model (or :meth:`.program.Program.predicted_cycles`) replays the same
tokens from the same round-robin state when the program runs. Results are
kept by a digest of the tokens, the pointers and the bank count, for the
most recent :data:`CACHE_SIZE` schedules.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib

import numpy as np

from zeroskip import timing
from zeroskip.errors import InternalError

__all__ = ["RunCycles", "Cost", "gather_schedule", "CACHE_SIZE", "cache_info",
           "clear_cache", "dense_floor", "check_dense_cycles"]

#: Schedules remembered (least recently used first out).
CACHE_SIZE = 4096

_cache = collections.OrderedDict()
_stats = {"hits": 0, "misses": 0}


def _key(lane_tokens, x_banks, cluster_lanes, rr):
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.asarray([x_banks, cluster_lanes or 0, len(lane_tokens)],
                             dtype=np.int64).tobytes())
    # No pointers means all 0 (the state at ``CTRL.start``).
    digest.update(np.asarray([] if rr is None else rr, dtype=np.int64).tobytes())
    for tokens in lane_tokens:
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        digest.update(np.int64(len(tokens)).tobytes())
        digest.update(tokens.tobytes())
    return digest.digest()


def gather_schedule(lane_tokens, x_banks, *, cluster_lanes=None, rr=None):
    """:func:`zeroskip.timing.schedule` (without a trace), remembered.

    The result is shared between callers: treat it as read-only.
    """
    key = _key(lane_tokens, x_banks, cluster_lanes, rr)
    result = _cache.get(key)
    if result is not None:
        _cache.move_to_end(key)
        _stats["hits"] += 1
        return result
    _stats["misses"] += 1
    result = timing.schedule(lane_tokens, x_banks, cluster_lanes=cluster_lanes, rr=rr)
    _cache[key] = result
    if len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return result


def cache_info():
    """``{"hits", "misses", "size"}`` of the schedule memory."""
    return dict(_stats, size=len(_cache))


def clear_cache():
    """Forget every remembered schedule (benchmarks measure cold runs with it)."""
    _cache.clear()
    _stats.update(hits=0, misses=0)


@dataclasses.dataclass(frozen=True)
class Cost:
    """What one instruction adds to the counters.

    Attributes
    ----------
    cycles, gather_stalls, scatter_stalls : int
    busy : list of int or None
        Per lane, busy cycles (``None``: none).
    grants : numpy.ndarray or None
        ``REDUCE`` with ``trace``: the scatter bus's grants in order.
    """

    cycles: int
    gather_stalls: int = 0
    scatter_stalls: int = 0
    busy: list | None = None
    grants: np.ndarray | None = None


class RunCycles:
    """The cycles of one run, instruction by instruction (from ``CTRL.start``).

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        self.config = config
        self.gather_rr = None                   # the gather network's pointers (all 0)
        self.scatter_rr = [0]                   # the scatter network's (a bus)
        self.cycles = 0

    def _add(self, cost):
        self.cycles += cost.cycles
        return cost

    def spmv(self, lane_tokens):
        """A row- or dense-mode ``SPMV`` whose lanes stream ``lane_tokens`` (banks,
        ``-1`` for a token without a request)."""
        result = gather_schedule(lane_tokens, self.config.x_banks,
                                 cluster_lanes=self.config.cluster_lanes, rr=self.gather_rr)
        self.gather_rr = result.rr
        return self._add(Cost(timing.SPMV_OVERHEAD + result.cycles,
                              gather_stalls=result.stalls, busy=result.busy_per_lane))

    def column_mode(self, streams, args, x_buffer, busy=None):
        """A column-mode (CSC) ``SPMV`` (``x_buffer``: the X buffer, ``None`` visits
        every column; ``busy``: per lane, the products it took)."""
        return self._add(Cost(timing.CSC_OVERHEAD + timing.column_mode_cycles(
            streams, args, x_buffer, self.config), busy=busy))

    def reduce(self, destinations, *, trace=False):
        """A ``REDUCE`` whose lanes route to ``destinations`` (per lane, in order)."""
        result = timing.reduce_schedule(destinations, self.config.pes, rr=self.scatter_rr,
                                        trace=trace)
        self.scatter_rr = result.rr
        return self._add(Cost(timing.reduce_cycles(result.cycles),
                              scatter_stalls=result.stalls, grants=result.grants))

    def other(self):
        """Any other instruction (``HALT`` included), or one that stops with an error."""
        return self._add(Cost(timing.INSN_OVERHEAD))

    def overrun(self):
        """The fetch that finds the program counter past the instruction memory."""
        return self._add(Cost(timing.OVERRUN_OVERHEAD))


def dense_floor(rows, cols, inputs, config):
    """The fewest cycles dense mode can take for ``inputs`` inputs through a
    ``rows x cols`` matrix: it multiplies every entry for every input, at most
    ``config.macs_per_cycle`` products per cycle."""
    return -(-int(rows) * int(cols) * int(inputs) // config.macs_per_cycle)


def check_dense_cycles(cycles, rows, cols, inputs, config, *, what="dense mode"):
    """Return ``cycles`` (dense mode's, for ``inputs`` inputs through ``rows x cols``)
    after checking it against :func:`dense_floor`.

    Every dense-mode figure zeroskip reports passes through here.

    Raises
    ------
    InternalError
        When ``cycles`` is below the bound: the count is wrong.
    """
    floor = dense_floor(rows, cols, inputs, config)
    if int(cycles) < floor:
        raise InternalError(f"{what}: {int(cycles)} cycles for {inputs} input(s) through "
                            f"{rows} x {cols} is below the bound of {floor} "
                            f"({rows} x {cols} x {inputs} products at "
                            f"{config.macs_per_cycle} per cycle)")
    return int(cycles)
