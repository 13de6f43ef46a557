"""The timing contract: cycle counts the ISA model predicts and the RTL meets.

Per lane, a row-mode or dense ``SPMV`` is a sequence of tokens: the bank of
each streamed entry, in stored order, and ``-1`` for a token that requests no
bank (an empty row, a BITMAP scan cycle); which tokens each format streams is
defined in :mod:`.formats` (:func:`~.formats.decode_lane`). :func:`schedule`
replays the gather network's round-robin bank arbitration cycle by cycle
(see ``docs/internals.md``, "Timing contract"). A column-mode (CSC) ``SPMV``
uses no gather; :func:`column_mode_cycles` gives its length.

A ``REDUCE`` streams, per lane, its routes in order through the scatter
network, a shared bus that takes one partial sum per cycle;
:func:`reduce_schedule` replays it with the same round-robin rule and a
single pointer, reset to 0 at ``CTRL.start`` and kept from one ``REDUCE`` to
the next; a lane whose partial sum is not taken stalls (one
``SCATTER_STALLS`` count). An instruction then costs

- ``SPMV``: :data:`SPMV_OVERHEAD` + the schedule length (row formats), or
  :data:`CSC_OVERHEAD` + :func:`column_mode_cycles` (column mode),
- ``REDUCE``: :data:`REDUCE_OVERHEAD` + the scatter schedule length, or
  :data:`REDUCE_EMPTY` when no lane has a route (:func:`reduce_cycles`),
- ``MOVE``: :data:`MOVE_OVERHEAD` + ``pes * count`` (:func:`move_cycles`: the
  X write path takes one word per cycle, into every copy of x at once),
- ``LOAD``: :data:`LOAD_OVERHEAD`, after waiting while the DMA engine holds
  :data:`LOAD_QUEUE` unfinished loads; the transfer itself runs in the
  background (:class:`LoadEngine`),
- ``SYNC`` and ``HALT``: :data:`INSN_OVERHEAD` after waiting until every
  load issued has finished (:meth:`LoadEngine.wait`),
- every other instruction: :data:`INSN_OVERHEAD`.

**The load rule** (the external memory; the RTL meets it on the Amaranth simulator). Time is
the run's cycle count: an instruction issued at ``t`` starts after the
``t`` cycles charged before it. The DMA engine transfers the loads one after
another in issue order; load ``k`` of ``count`` words per lane takes
:func:`load_cycles` (``ext_latency + ceil(pes * count * ext_rate_cycles /
ext_words_per_cycle)``, 0 for ``count = 0``: the port delivers
``ext_words_per_cycle`` words every ``ext_rate_cycles`` cycles) and finishes
at ``F[k]``. A ``LOAD`` issued at ``t``
first waits ``max(0, F[k - LOAD_QUEUE] - t)`` cycles (the engine holds
:data:`LOAD_QUEUE` loads), then costs :data:`LOAD_OVERHEAD`; its transfer
starts at ``max(t + wait + LOAD_OVERHEAD, F[k - 1])``. A ``LOAD`` of no words
costs :data:`LOAD_OVERHEAD` and is no load of the engine (it neither waits
nor takes a place in the queue). ``SYNC`` and ``HALT``
issued at ``t`` cost ``max(0, F[last] - t) + INSN_OVERHEAD``. So a load
issued before an ``SPMV`` is hidden up to that ``SPMV``'s cycles; only what is
left shows at the next ``SYNC``.

**The pass rule** (``products_per_lane`` ``k`` > 1, the ISA model only): a
lane decodes each stored entry once and applies it to ``k`` inputs, so a
batch of ``n`` inputs runs in :func:`passes` ``= ceil(n / k)`` passes, each
costing what one input costs with ``k = 1``. X and every lane's ``out`` and
``bias`` memories are ``k`` slots of equal depth
(:attr:`~zeroskip.core.config.AcceleratorConfig.x_slot_depth`,
:attr:`~zeroskip.core.config.AcceleratorConfig.row_slot_depth`), read in
parallel at one offset, so a pass is a run of up to ``k`` consecutive
instructions that read the same lane images (:func:`pass_key`: ``SPMV`` with
the same format, ``ptr_base``, ``nz_base`` and flags, or ``REDUCE`` with the
same routes) where member ``j`` addresses the first member's words ``j``
slots further on (:func:`joins_pass`): ``x_base`` and ``out_base`` of an
``SPMV``, ``src_base`` and ``dst_base`` of a ``REDUCE``. The first
instruction of a pass costs what it costs alone (its tokens, its routes;
the networks' pointers move once per pass); the others add no cycles and
no stalls. An instruction that does not join the open pass opens a new one.
A column-mode ``SPMV`` pass visits the columns where any of its inputs is
nonzero: its cycles are those of that union, charged as it grows. Every
product is still counted (``MACS``, ``SKIPPED``, ``PE_BUSY`` per input), so
a lane's busy count is at most ``k`` times the cycles. With ``k = 1`` every
instruction is a pass of its own and nothing changes.

``REDUCE`` changes no counter but ``CYCLES``, ``INSNS`` and
``SCATTER_STALLS``; ``MOVE``, ``LOAD`` and ``SYNC`` none but ``CYCLES`` and
``INSNS`` (and are never part of a pass). The constants are measured on the RTL (Amaranth
simulation of ``zeroskip.hdl.top``): a least-squares fit over random programs
on three configurations leaves no residual; the ``REDUCE`` constants from
random route lists on the top level (``tests/hdl/test_scatter.py``), the
``MOVE`` constant from random operands on the top level
(``tests/hdl/test_top_move.py``), the load rule's from ``LOAD``, ``SYNC`` and
``HALT`` runs with the simulated external memory on the top level
(``tests/hdl/test_top_ext.py``): a transfer's ``F`` is the cycle its last
word is written, its start the cycle its read request is taken.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["SPMV_OVERHEAD", "CSC_OVERHEAD", "CSC_ENTRY_DRAIN", "CSC_FINAL_PASS",
           "COLUMN_CREDITS", "REDUCE_OVERHEAD", "REDUCE_EMPTY", "MOVE_OVERHEAD", "INSN_OVERHEAD",
           "OVERRUN_OVERHEAD", "ScheduleResult", "schedule", "reduce_schedule", "reduce_cycles",
           "move_cycles", "LOAD_OVERHEAD", "LOAD_QUEUE", "load_cycles", "LoadEngine",
           "lane_tokens", "column_mode_cycles", "passes", "pass_key",
           "joins_pass"]

#: Cycles an ``SPMV`` costs beyond its schedule length (fetch, descriptor
#: reads, pipeline fill and drain).
SPMV_OVERHEAD = 21

#: Cycles a ``REDUCE`` costs beyond its scatter schedule length (fetch, route
#: list header, reads, route check, bus and read-modify-write pipeline).
REDUCE_OVERHEAD = 13

#: Cycles of a ``REDUCE`` in which no lane has a route (no pipeline to fill).
REDUCE_EMPTY = 9

#: Cycles a column-mode (CSC) ``SPMV`` costs beyond :func:`column_mode_cycles`.
CSC_OVERHEAD = 4

#: Column mode: cycles from the walk of a lane's last entry to the end of the
#: lane's work (the PE, then the accumulator's read, register, add and write).
CSC_ENTRY_DRAIN = 7

#: Column mode: cycles of the final pass beyond its ``n`` rows (the
#: accumulator's read, then the writeback's pipeline).
CSC_FINAL_PASS = 7

#: Columns a lane may hold before the nonzero detector waits for it (the
#: lanes' ``COLUMN_CREDITS``).
COLUMN_CREDITS = 16

#: Cycles a ``MOVE`` costs beyond its ``pes * count`` words (fetch, decode,
#: dispatch, the operand check, the lanes' read pipeline and the last write).
MOVE_OVERHEAD = 9

#: Cycles a ``LOAD`` keeps the sequencer (fetch, then decode with the operand
#: check and the push to the DMA engine's queue); its transfer runs in the
#: background.
LOAD_OVERHEAD = 2

#: Loads the DMA engine holds (the one transferring included); a ``LOAD`` issued
#: when it holds this many unfinished waits for the oldest.
LOAD_QUEUE = 4

#: Cycles of any instruction other than ``SPMV``, ``REDUCE`` and ``MOVE``
#: (``HALT`` included).
INSN_OVERHEAD = 2

#: Cycles of the fetch that finds the program counter past the instruction
#: memory (``PC_OVERRUN``); not part of the contract for correct programs.
OVERRUN_OVERHEAD = 1


def move_cycles(count, pes):
    """Cycles of a ``MOVE`` of ``count`` words per lane on ``pes`` lanes:
    :data:`MOVE_OVERHEAD` + ``pes * count``."""
    return MOVE_OVERHEAD + int(pes) * int(count)


def load_cycles(count, config):
    """Cycles of the transfer of a ``LOAD`` of ``count`` words per lane on the
    external memory of ``config``: ``ext_latency + ceil(pes * count *
    ext_rate_cycles / ext_words_per_cycle)``, or 0 for ``count = 0`` (no request)."""
    words = int(config.pes) * int(count)
    if not words:
        return 0
    return int(config.ext_latency) + \
        -(-words * int(config.ext_rate_cycles) // int(config.ext_words_per_cycle))


class LoadEngine:
    """The DMA engine's state during a run: the finish cycles of its loads (the
    load rule above). Times are cycles since ``CTRL.start``."""

    def __init__(self, config):
        self.config = config
        self.finish = []          # F[k] of every load issued, in order

    def issue(self, now, count):
        """A ``LOAD`` of ``count`` words per lane issued at cycle ``now``: the cycles
        it keeps the sequencer (its wait for a place in the queue, then
        :data:`LOAD_OVERHEAD`)."""
        if not load_cycles(count, self.config):
            return LOAD_OVERHEAD      # nothing to transfer: it neither waits nor queues
        wait = 0
        if len(self.finish) >= LOAD_QUEUE:
            wait = max(0, self.finish[-LOAD_QUEUE] - now)
        cost = wait + LOAD_OVERHEAD
        start = max([now + cost] + self.finish[-1:])
        self.finish.append(start + load_cycles(count, self.config))
        return cost

    def wait(self, now):
        """The cycles a ``SYNC`` or ``HALT`` issued at ``now`` waits before its own
        :data:`INSN_OVERHEAD`: until the last load issued has finished."""
        return max(0, self.finish[-1] - now) if self.finish else 0


def passes(inputs, products_per_lane):
    """Passes a batch of ``inputs`` inputs takes with ``products_per_lane`` products
    per lane per cycle: ``ceil(inputs / products_per_lane)`` (the pass rule)."""
    return -(-int(inputs) // int(products_per_lane))


def pass_key(opcode, args):
    """What the instructions of one pass share: ``None`` for an instruction that is
    never part of a pass (anything but ``SPMV`` and ``REDUCE``)."""
    name = getattr(opcode, "name", opcode)
    if name == "SPMV":
        return ("SPMV", args["fmt"], args["ptr_base"], args["nz_base"],
                bool(args["accumulate"]), bool(args["bias"]), bool(args["epilogue"]))
    if name == "REDUCE":
        return ("REDUCE", args["ptr_base"])
    return None


def joins_pass(opcode, first, args, member, config):
    """Whether an instruction with operands ``args`` is member ``member`` (from 1) of
    the pass that an instruction with operands ``first`` opened: the same
    :func:`pass_key`, ``member < products_per_lane``, and its X and ``out`` words
    ``member`` slots beyond the first's."""
    k = config.products_per_lane
    if not 0 < member < k or pass_key(opcode, args) != pass_key(opcode, first):
        return False
    x_step, row_step = member * config.x_slot_depth, member * config.row_slot_depth
    if getattr(opcode, "name", opcode) == "SPMV":
        return (args["x_base"] == first["x_base"] + x_step
                and args["out_base"] == first["out_base"] + row_step)
    return (args["src_base"] == first["src_base"] + row_step
            and args["dst_base"] == first["dst_base"] + row_step)


@dataclasses.dataclass(frozen=True)
class ScheduleResult:
    """Outcome of :func:`schedule`.

    Attributes
    ----------
    cycles : int
        Schedule length: cycles until every lane has consumed its tokens.
    stalls_per_lane : list of int
        Cycles in which lane ``p`` offered a bank request that was not granted.
    busy_per_lane : list of int
        Nonzero (non-empty) tokens consumed by lane ``p``.
    rr : list of int
        The banks' round-robin pointers afterwards.
    grants : numpy.ndarray of int64, shape (k, 2), or None
        With ``trace=True``: ``(lane, token index)`` of every granted token in
        the order of the grants (cycle by cycle; within a cycle, by lane).
    """

    cycles: int
    stalls_per_lane: list
    busy_per_lane: list
    rr: list
    grants: np.ndarray | None = dataclasses.field(default=None, compare=False)

    @property
    def stalls(self):
        """Total gather stall cycles (the ``GATHER_STALLS`` increment)."""
        return sum(self.stalls_per_lane)


def schedule(lane_tokens, x_banks, *, cluster_lanes=None, rr=None, trace=False):
    """Replay the round-robin bank arbitration of one ``SPMV``.

    The lanes form clusters of ``cluster_lanes`` consecutive lanes; each
    cluster has its own ``x_banks`` banks (its copy of ``x``), which only its
    own lanes request. Every cycle, each lane with tokens left offers its
    head token. An empty token (``-1``) is consumed at once. A nonzero token
    requests its bank; a bank grants, among the lanes requesting it, the
    first lane at or after its pointer (wrapping within the cluster) and
    moves the pointer past that lane. Ungranted lanes stall and offer the
    same token again.

    When no two lanes share a bank (``cluster_lanes`` is 1) there is no
    conflict and the result is closed-form: every lane takes one token per
    cycle. Otherwise, stretches in which no two lanes request the same bank
    in the same cycle are replayed many cycles at a time (with NumPy); the
    result is the same as the cycle-by-cycle rule's.

    Parameters
    ----------
    lane_tokens : sequence of sequences of int
        Per lane, the bank of each token in stored order, ``-1`` for an
        empty row.
    x_banks : int
        Number of input-vector banks of each cluster.
    cluster_lanes : int, optional
        Lanes per cluster (``AcceleratorConfig.cluster_lanes``), a divisor of
        the number of lanes; all lanes in one cluster by default.
    rr : list of int, optional
        Round-robin pointers at the start (all 0 at ``CTRL.start``), one per
        bank of each cluster, cluster after cluster. Pass the ``rr`` of the
        previous result to continue a run. A pointer holds the lane after the
        last grant, numbered across all lanes modulo their number; within a
        cluster this grants exactly like the hardware's cluster-local pointer.
    trace : bool
        Record the order of the grants (:attr:`ScheduleResult.grants`).

    Returns
    -------
    ScheduleResult
    """
    tokens, group, pointers = _schedule_inputs(lane_tokens, x_banks, cluster_lanes, rr)
    if group == 1:
        return _private_schedule(tokens, x_banks, pointers, trace)
    clusters = max(len(tokens) // group, 1)
    if clusters > 1:
        # Cluster k's bank b is bank k * x_banks + b of one replay: lanes of
        # different clusters never meet at a bank.
        tokens = [np.where(t >= 0, t + (p // group) * x_banks, -1)
                  for p, t in enumerate(tokens)]
    return _shared_schedule(tokens, pointers, trace)


def _schedule_inputs(lane_tokens, x_banks, cluster_lanes, rr):
    """:func:`schedule`'s arguments checked: ``(tokens, lanes per cluster, pointers)``,
    the tokens as int64 arrays and the pointers a fresh list."""
    if not isinstance(x_banks, int) or x_banks < 1:
        raise ValueError(f"x_banks must be a positive integer, not {x_banks!r}")
    lanes = len(lane_tokens)
    group = (lanes or 1) if cluster_lanes is None else cluster_lanes
    if not isinstance(group, int) or group < 1 or (lanes and lanes % group):
        raise ValueError(f"cluster_lanes must be a positive divisor of {lanes}, "
                         f"not {cluster_lanes!r}")
    tokens = [np.asarray(t, dtype=np.int64).reshape(-1) for t in lane_tokens]
    for lane, toks in enumerate(tokens):
        if len(toks) and (toks.min() < -1 or toks.max() >= x_banks):
            bad = next(int(b) for b in toks if not -1 <= b < x_banks)
            raise ValueError(f"lane {lane}: token {bad} is neither -1 nor a bank below {x_banks}")
    clusters = max(lanes // group, 1)
    pointers = [0] * (clusters * x_banks) if rr is None else [int(v) for v in rr]
    if len(pointers) != clusters * x_banks:
        raise ValueError(f"rr must hold {clusters * x_banks} pointers, not {len(pointers)}")
    return tokens, group, pointers


def _shared_schedule(tokens, pointers, trace):
    """:func:`schedule` of lanes that share banks (``tokens`` numbered across the
    clusters' banks, ``pointers`` one per such bank, updated in place): fast-forward
    stretches without conflicts, replay the others cycle by cycle."""
    lanes = len(tokens)
    lengths = [len(t) for t in tokens]
    pos = [0] * lanes
    stalls = [0] * lanes
    busy = [0] * lanes
    active = [p for p in range(lanes) if lengths[p]]
    lists = [None] * lanes     # Python lists, made on the first slow cycle of a lane
    grants = [] if trace else None   # arrays of (lane, token index), in grant order
    cycles = 0
    backoff = 0                # slow cycles to run before the next fast attempt
    failures = 0
    while active:
        if len(active) == 1:
            cycles += _drain_lone_lane(tokens, active[0], pos, busy, pointers, grants)
            break
        if backoff == 0:
            advanced = _fast_forward(tokens, active, pos, lengths, busy, pointers, lanes,
                                     grants)
            if advanced:
                cycles += advanced
                active = [p for p in active if pos[p] < lengths[p]]
            if advanced >= _WINDOW // 4:
                failures = 0
            else:
                failures = min(failures + 1, 6)
                backoff = 1 << failures
            continue
        backoff -= 1
        cycles += 1
        claims = {}
        for p in active:
            toks = lists[p]
            if toks is None:
                toks = lists[p] = tokens[p].tolist()
            bank = toks[pos[p]]
            if bank < 0:
                pos[p] += 1
            else:
                claim = claims.get(bank)
                if claim is None:
                    claims[bank] = [p]
                else:
                    claim.append(p)
        winners = []
        for bank, claimants in claims.items():
            if len(claimants) == 1:
                winner = claimants[0]
            else:
                start = pointers[bank]
                winner = claimants[0]
                for p in claimants:
                    if p >= start:
                        winner = p
                        break
                for p in claimants:
                    if p != winner:
                        stalls[p] += 1
            if trace:
                winners.append((winner, pos[winner]))
            pos[winner] += 1
            busy[winner] += 1
            pointers[bank] = (winner + 1) % lanes
        if winners:
            grants.append(np.array(sorted(winners), dtype=np.int64))
        active = [p for p in active if pos[p] < lengths[p]]
    if trace:
        grants = (np.concatenate(grants).astype(np.int64) if grants
                  else np.zeros((0, 2), dtype=np.int64))
    return ScheduleResult(cycles=cycles, stalls_per_lane=stalls, busy_per_lane=busy,
                          rr=pointers, grants=grants)


def _drain_lone_lane(tokens, p, pos, busy, pointers, grants):
    """The cycles of lane ``p`` when it alone has tokens left: a lone lane never
    conflicts, it drains one token per cycle (``busy``, ``pointers`` and ``grants``
    updated in place)."""
    lanes = len(tokens)
    rest = tokens[p][pos[p]:]
    if grants is not None:
        index = pos[p] + np.flatnonzero(rest >= 0)
        grants.append(np.stack([np.full(len(index), p), index], axis=1))
    granted = rest[rest >= 0]
    busy[p] += len(granted)
    if len(granted):
        for bank in np.unique(granted).tolist():
            pointers[bank] = (p + 1) % lanes
    return len(rest)


def _private_schedule(tokens, x_banks, pointers, trace):
    """:func:`schedule` when every lane has banks of its own: one token per
    cycle and lane, no stall (the closed form of the cycle-by-cycle rule)."""
    lanes = len(tokens)
    busy, grants = [], []
    for p, toks in enumerate(tokens):
        granted = toks >= 0
        busy.append(int(np.count_nonzero(granted)))
        for bank in np.unique(toks[granted]).tolist():
            pointers[p * x_banks + bank] = (p + 1) % lanes
        if trace:
            index = np.flatnonzero(granted)
            grants.append(np.stack([np.full(len(index), p), index], axis=1))
    if trace:
        grants = np.concatenate(grants) if grants else np.zeros((0, 2), dtype=np.int64)
        grants = grants[np.lexsort((grants[:, 0], grants[:, 1]))].astype(np.int64)
    return ScheduleResult(cycles=max((len(t) for t in tokens), default=0),
                          stalls_per_lane=[0] * lanes, busy_per_lane=busy, rr=pointers,
                          grants=grants if trace else None)


def reduce_schedule(destinations, pes, *, rr=None, trace=False):
    """Replay the scatter network of one ``REDUCE``.

    Lane ``p`` offers its routes in order. The network is a shared bus: it
    takes one partial sum per cycle, from the lanes offering one, by the
    round-robin rule of :func:`schedule` with a single pointer (one "bank"
    that every route requests). The instruction costs :func:`reduce_cycles`
    of the schedule length; the stalls are the ``SCATTER_STALLS`` increment.

    Parameters
    ----------
    destinations : sequence of sequences of int
        Per lane, the destination lane of each route, in route order.
    pes : int
        Number of lanes.
    rr : list of int, optional
        The bus's round-robin pointer at the start (``[0]`` at
        ``CTRL.start``); pass the ``rr`` of the previous ``REDUCE``'s result
        to continue a run.
    trace : bool
        Record the order in which the bus takes the partial sums.

    Returns
    -------
    ScheduleResult
    """
    if len(destinations) != pes:
        raise ValueError(f"destinations must hold {pes} lanes, not {len(destinations)}")
    for lane, targets in enumerate(destinations):
        bad = [int(q) for q in targets if not 0 <= q < pes]
        if bad:
            raise ValueError(f"lane {lane}: destination {bad[0]} is not a lane below {pes}")
    tokens = [np.zeros(len(lane), dtype=np.int64) for lane in destinations]
    return schedule(tokens, 1, rr=rr, trace=trace)


def reduce_cycles(length):
    """Cycles of a ``REDUCE`` whose scatter schedule (:func:`reduce_schedule`) is
    ``length`` cycles long: :data:`REDUCE_OVERHEAD` + ``length``, or
    :data:`REDUCE_EMPTY` for a schedule of no cycles (no routes)."""
    return REDUCE_OVERHEAD + int(length) if length else REDUCE_EMPTY


#: Cycles :func:`_fast_forward` looks ahead at most.
_WINDOW = 512


def _fast_forward(tokens, active, pos, lengths, busy, pointers, lanes, grants):
    """Advance every active lane through the cycles before the first conflict.

    As long as no two lanes request one bank in the same cycle, every lane
    consumes one token per cycle; the first cycle with a conflict (or the end
    of the window) stops the stretch. Updates ``pos``, ``busy`` and
    ``pointers`` in place, appends the grants to ``grants`` unless it is
    ``None`` and returns the number of cycles advanced.
    """
    remaining = max(lengths[p] - pos[p] for p in active)
    k = min(remaining, _WINDOW)
    window = np.full((len(active), k), -2, dtype=np.int64)
    for row, p in enumerate(active):
        part = tokens[p][pos[p]:pos[p] + k]
        window[row, :len(part)] = part
    ordered = np.sort(window, axis=0)
    clash = ((ordered[1:] == ordered[:-1]) & (ordered[1:] >= 0)).any(axis=0)
    hits = np.flatnonzero(clash)
    c = int(hits[0]) if len(hits) else k
    if c == 0:
        return 0
    head = window[:, :c]
    requests = head >= 0
    if grants is not None:
        cycle, row = np.nonzero(requests.T)
        first = np.asarray([pos[p] for p in active], dtype=np.int64)
        grants.append(np.stack([np.asarray(active, dtype=np.int64)[row], first[row] + cycle],
                               axis=1))
    counts = requests.sum(axis=1).tolist()
    for row, p in enumerate(active):
        pos[p] = min(pos[p] + c, lengths[p])
        busy[p] += counts[row]
    # The last grant of each bank sets its pointer: scan cycle-major, keep the last.
    banks = head.T.reshape(-1)
    owners = np.tile(np.asarray(active, dtype=np.int64), c)
    keep = banks >= 0
    banks, owners = banks[keep], owners[keep]
    if len(banks):
        last = np.full(len(pointers), -1, dtype=np.int64)
        np.maximum.at(last, banks, np.arange(len(banks)))
        for bank in np.flatnonzero(last >= 0).tolist():
            pointers[bank] = (int(owners[last[bank]]) + 1) % lanes
    return c


def lane_tokens(ends, cols, *, x_base=0, x_banks):
    """Tokens of one lane's tile: banks of its nonzeros, ``-1`` per empty row.

    Parameters
    ----------
    ends : numpy.ndarray
        Row ends (exclusive) into ``cols``, one per local row.
    cols : numpy.ndarray
        Column of each stored nonzero, in stored order.
    x_base : int
        The instruction's ``x_base``.
    x_banks : int
        Number of input-vector banks.

    Returns
    -------
    numpy.ndarray of int64
    """
    ends = np.asarray(ends, dtype=np.int64)
    banks = (np.asarray(cols, dtype=np.int64) + x_base) % x_banks
    starts = np.concatenate(([0], ends[:-1])) if len(ends) else ends
    empty = starts[ends == starts]
    if len(empty):
        banks = np.insert(banks, empty, -1)
    return banks


def _detector_plan(visited, x_base, count, x_banks):
    """The nonzero detector's steps: per bank row of ``x[x_base:x_base + count]``
    its visited columns (relative to ``x_base``), or ``-1`` for a row without."""
    if not count:
        return []
    rows = (x_base + np.arange(count)) // x_banks
    hits = np.flatnonzero(visited[:count])
    empty = np.setdiff1d(np.arange(rows[0], rows[-1] + 1), rows[hits])
    keys = np.concatenate([rows[hits], empty])
    steps = np.concatenate([hits, np.full(len(empty), -1)])
    return steps[np.argsort(keys, kind="stable")].tolist()


def column_mode_cycles(streams, args, x_buffer, config, *, credits=COLUMN_CREDITS):
    """Cycles of a column-mode (CSC) ``SPMV`` after :data:`CSC_OVERHEAD`: the
    exact rule of ``docs/internals.md`` ("Column mode").

    The nonzero detector steps through the bank rows of ``x``; column entry
    ``t`` moves to every lane once every lane has finished column ``t -
    COLUMN_CREDITS``; a lane walks each visited column in ``max(entries, 1)``
    cycles after zeroing its rows, and runs a final pass of ``n +
    CSC_FINAL_PASS`` cycles (1 when ``n = 0``) when ``accumulate``, ``bias`` or ``epilogue`` is set.

    Parameters
    ----------
    streams : sequence of LaneStream
        The lanes' decoded CSC tiles (``n`` and ``col_ends``).
    args : dict
        The instruction's operands.
    x_buffer : numpy.ndarray or None
        The X buffer; ``None`` visits every column.
    config : AcceleratorConfig
    credits : int
        The lanes' column credits (the hardware's is :data:`COLUMN_CREDITS`;
        other values show what the coupling costs).

    Returns
    -------
    int
        ``max`` over lanes of ``D[p]``.
    """
    x_base = args["x_base"]
    lanes = [(int(stream.n), np.diff(np.asarray(stream.col_ends, dtype=np.int64), prepend=0))
             for stream in streams]
    count = max((len(counts) for _, counts in lanes), default=0)
    if x_buffer is None:
        visited = np.ones(count, dtype=bool)
    else:
        visited = np.asarray(x_buffer[x_base:x_base + count]) != 0
    plan = _detector_plan(visited, x_base, count, config.x_banks)
    cycle = 5 if plan else 3
    entries = [counts.tolist() + [0] * (count - len(counts)) for _, counts in lanes]
    moved = []                                  # d[t]
    latest = []                                 # max over lanes of F[p][t]
    ready = [3 + n for n, _ in lanes]           # first cycle a lane may start a column
    last_entry = [None] * len(lanes)            # E[p]
    for step in plan:
        if step < 0:
            cycle += 1
            continue
        t = len(moved)
        when = cycle + 1 if t < credits else max(cycle + 1, latest[t - credits] + 1)
        moved.append(when)
        start, slowest = when + 3, 0
        for p, counts in enumerate(entries):
            taken = counts[step]
            end = (ready[p] if ready[p] > start else start) + (taken if taken > 1 else 1) - 1
            ready[p] = end + 1
            if taken:
                last_entry[p] = end
            slowest = end if end > slowest else slowest
        latest.append(slowest)
        cycle = when
    t = len(moved)
    moved.append(cycle + 1 if t < credits else max(cycle + 1, latest[t - credits] + 1))
    final = args["accumulate"] or args["bias"] or args["epilogue"]
    worst = 0
    for p, (n, _) in enumerate(lanes):
        done = max(3 + n, ready[p], moved[-1] + 2)
        if last_entry[p] is not None:
            done = max(done, last_entry[p] + CSC_ENTRY_DRAIN)
        if final:
            done += n + CSC_FINAL_PASS if n else 1
        worst = max(worst, done)
    return worst
