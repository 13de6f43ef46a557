"""The timing contract: cycle counts the ISA model predicts and the RTL meets.

Per lane, an ``SPMV`` is a sequence of tokens: the bank of each stored
nonzero, in stored order, and ``-1`` for each empty row. :func:`schedule`
replays the gather network's round-robin bank arbitration cycle by cycle
(see ``docs/internals.md``, "Timing contract"); an instruction then costs

- ``SPMV``: :data:`SPMV_OVERHEAD` + the schedule length,
- every other instruction: :data:`INSN_OVERHEAD`.

The constants are measured on the RTL (Amaranth simulation of
``zeroskip.hdl.top``): a least-squares fit over random programs on three
configurations leaves no residual.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["SPMV_OVERHEAD", "INSN_OVERHEAD", "OVERRUN_OVERHEAD", "ScheduleResult", "schedule",
           "lane_tokens"]

#: Cycles an ``SPMV`` costs beyond its schedule length (fetch, descriptor
#: reads, pipeline fill and drain).
SPMV_OVERHEAD = 18

#: Cycles of any instruction other than ``SPMV`` (``HALT`` included).
INSN_OVERHEAD = 2

#: Cycles of the fetch that finds the program counter past the instruction
#: memory (``PC_OVERRUN``); not part of the contract for correct programs.
OVERRUN_OVERHEAD = 1


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
    """

    cycles: int
    stalls_per_lane: list
    busy_per_lane: list
    rr: list

    @property
    def stalls(self):
        """Total gather stall cycles (the ``GATHER_STALLS`` increment)."""
        return sum(self.stalls_per_lane)


def schedule(lane_tokens, x_banks, *, rr=None):
    """Replay the round-robin bank arbitration of one ``SPMV``.

    Every cycle, each lane with tokens left offers its head token. An empty
    token (``-1``) is consumed at once. A nonzero token requests its bank;
    bank ``b`` grants, among the lanes requesting it, the first lane at or
    after ``rr[b]`` (wrapping) and sets ``rr[b]`` to that lane + 1 (mod the
    number of lanes). Ungranted lanes stall and offer the same token again.

    Parameters
    ----------
    lane_tokens : sequence of sequences of int
        Per lane, the bank of each token in stored order, ``-1`` for an
        empty row.
    x_banks : int
        Number of input-vector banks.
    rr : list of int, optional
        Round-robin pointers at the start (all 0 at ``CTRL.start``). Pass the
        ``rr`` of the previous result to continue a run.

    Returns
    -------
    ScheduleResult
    """
    if not isinstance(x_banks, int) or x_banks < 1:
        raise ValueError(f"x_banks must be a positive integer, not {x_banks!r}")
    lanes = len(lane_tokens)
    tokens = [t.tolist() if hasattr(t, "tolist") else list(t) for t in lane_tokens]
    for lane, toks in enumerate(tokens):
        if toks and (min(toks) < -1 or max(toks) >= x_banks):
            bad = next(b for b in toks if not -1 <= b < x_banks)
            raise ValueError(f"lane {lane}: token {bad} is neither -1 nor a bank below {x_banks}")
    pointers = [0] * x_banks if rr is None else list(rr)
    if len(pointers) != x_banks:
        raise ValueError(f"rr must hold {x_banks} pointers, not {len(pointers)}")
    lengths = [len(t) for t in tokens]
    pos = [0] * lanes
    stalls = [0] * lanes
    busy = [0] * lanes
    active = [p for p in range(lanes) if lengths[p]]
    cycles = 0
    while active:
        if len(active) == 1:
            # A lone lane never conflicts: it drains one token per cycle.
            p = active[0]
            rest = tokens[p][pos[p]:]
            cycles += len(rest)
            granted = [b for b in rest if b >= 0]
            busy[p] += len(granted)
            for bank in granted:
                pointers[bank] = (p + 1) % lanes
            break
        cycles += 1
        claims = {}
        for p in active:
            bank = tokens[p][pos[p]]
            if bank < 0:
                pos[p] += 1
            else:
                claim = claims.get(bank)
                if claim is None:
                    claims[bank] = [p]
                else:
                    claim.append(p)
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
            pos[winner] += 1
            busy[winner] += 1
            pointers[bank] = (winner + 1) % lanes
        active = [p for p in active if pos[p] < lengths[p]]
    return ScheduleResult(cycles=cycles, stalls_per_lane=stalls, busy_per_lane=busy,
                          rr=pointers)


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
