"""Cycle accounting shared by the ISA model, the program's cycle prediction and
the compiler.

:class:`RunCycles` is the one place where an instruction's cycles, stalls and
busy cycles are counted from the rules of the timing contract
(:mod:`zeroskip.core.timing`) and where the networks' round-robin state carries
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

from zeroskip.core import timing
from zeroskip.core.errors import InternalError

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
    """:func:`zeroskip.core.timing.schedule` (without a trace), remembered.

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


@dataclasses.dataclass
class _Pass:
    """The open pass of a run (see the pass rule of :mod:`zeroskip.core.timing`)."""
    args: dict                       # the first instruction's operands
    members: int = 1                 # instructions in the pass so far
    charged: int = 0                 # cycles charged for the pass so far
    visited: np.ndarray | None = None   # column mode: the union of the inputs' nonzeros
    scatter_rr: list | None = None   # REDUCE: the bus pointer before the pass


class RunCycles:
    """The cycles of one run, instruction by instruction (from ``CTRL.start``).

    With ``config.products_per_lane`` above 1, consecutive instructions form
    passes by the pass rule of :mod:`zeroskip.core.timing`; give every ``SPMV``
    and ``REDUCE`` its operands (``args``) for that. An instruction without
    ``args`` is a pass of its own.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        self.config = config
        self.gather_rr = None                   # the gather network's pointers (all 0)
        self.scatter_rr = [0]                   # the scatter network's (a bus)
        self.cycles = 0
        self._pass = None
        self.loads = timing.LoadEngine(config)

    def _add(self, cost):
        self.cycles += cost.cycles
        return cost

    def _member(self, opcode, args):
        """The open pass if this instruction joins it; else ``None``, after opening a
        new pass for it (when ``products_per_lane`` > 1 and it can be part of one)."""
        k = self.config.products_per_lane
        if args is None or k == 1 or timing.pass_key(opcode, args) is None:
            self._pass = None
            return None
        open_ = self._pass
        if open_ is not None and timing.joins_pass(opcode, open_.args, args, open_.members,
                                                   self.config):
            open_.members += 1
            return open_
        self._pass = _Pass(args=args)
        return None

    def spmv(self, lane_tokens, *, args=None):
        """A row- or dense-mode ``SPMV`` whose lanes stream ``lane_tokens`` (banks,
        ``-1`` for a token without a request); ``args``: its operands."""
        if self._member("SPMV", args) is not None:
            busy = [int(np.count_nonzero(np.asarray(t) >= 0)) for t in lane_tokens]
            return self._add(Cost(0, busy=busy))
        result = gather_schedule(lane_tokens, self.config.x_banks,
                                 cluster_lanes=self.config.cluster_lanes, rr=self.gather_rr)
        self.gather_rr = result.rr
        return self._add(Cost(timing.SPMV_OVERHEAD + result.cycles,
                              gather_stalls=result.stalls, busy=result.busy_per_lane))

    def column_mode(self, streams, args, x_buffer, busy=None):
        """A column-mode (CSC) ``SPMV`` (``x_buffer``: the X buffer, ``None`` visits
        every column; ``busy``: per lane, the products it took).

        In a pass, the cycles are those of the union of its inputs' nonzero
        columns, the growth charged to each instruction."""
        open_ = self._member("SPMV", args)
        if open_ is None:
            cycles = timing.CSC_OVERHEAD + timing.column_mode_cycles(streams, args, x_buffer,
                                                                     self.config)
            if self._pass is not None:
                self._pass.charged = cycles
                self._pass.visited = None if x_buffer is None else \
                    (np.asarray(x_buffer) != 0).astype(np.int64)
            return self._add(Cost(cycles, busy=busy))
        if open_.visited is None or x_buffer is None:
            open_.visited = None                # every column visited already
            return self._add(Cost(0, busy=busy))
        count = max((len(stream.col_ends) for stream in streams), default=0)
        base, first = args["x_base"], open_.args["x_base"]
        mine = np.asarray(x_buffer)[base:base + count] != 0
        span = min(len(mine), len(open_.visited) - first)
        open_.visited[first:first + span] |= mine[:span]
        cycles = timing.CSC_OVERHEAD + timing.column_mode_cycles(streams, open_.args,
                                                                 open_.visited, self.config)
        grown, open_.charged = cycles - open_.charged, cycles
        return self._add(Cost(grown, busy=busy))

    def reduce(self, destinations, *, trace=False, args=None):
        """A ``REDUCE`` whose lanes route to ``destinations`` (per lane, in order);
        ``args``: its operands. In a pass, later instructions take the partial sums
        in the order of the first and add no cycles."""
        before = list(self.scatter_rr)
        open_ = self._member("REDUCE", args)
        if open_ is not None:
            result = timing.reduce_schedule(destinations, self.config.pes,
                                            rr=list(open_.scatter_rr), trace=trace)
            return self._add(Cost(0, grants=result.grants))
        result = timing.reduce_schedule(destinations, self.config.pes, rr=self.scatter_rr,
                                        trace=trace)
        self.scatter_rr = result.rr
        if self._pass is not None:
            self._pass.scatter_rr = before
        return self._add(Cost(timing.reduce_cycles(result.cycles),
                              scatter_stalls=result.stalls, grants=result.grants))

    def move(self, count):
        """A ``MOVE`` of ``count`` words per lane (never part of a pass)."""
        self._pass = None
        return self._add(Cost(timing.move_cycles(count, self.config.pes)))

    def load(self, count):
        """A ``LOAD`` of ``count`` words per lane (never part of a pass): what it keeps
        the sequencer; its transfer runs on (the load rule of :mod:`zeroskip.core.timing`)."""
        self._pass = None
        return self._add(Cost(self.loads.issue(self.cycles, count)))

    def sync(self):
        """``SYNC`` or ``HALT``: the wait for the loads issued, then
        :data:`~zeroskip.core.timing.INSN_OVERHEAD`."""
        self._pass = None
        return self._add(Cost(self.loads.wait(self.cycles) + timing.INSN_OVERHEAD))

    def other(self):
        """Any other instruction, or one that stops with an error."""
        self._pass = None
        return self._add(Cost(timing.INSN_OVERHEAD))

    def overrun(self):
        """The fetch that finds the program counter past the instruction memory."""
        self._pass = None
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
