import numpy as np
import pytest

from zeroskip.core import timing
from zeroskip.core.timing import lane_tokens, schedule


def test_constants():
    assert timing.SPMV_OVERHEAD == 21
    assert timing.INSN_OVERHEAD == 2
    assert timing.REDUCE_OVERHEAD > 0


def test_two_lanes_one_bank():
    # cycle 1: rr=0 grants lane 0 (rr=1), lane 1 stalls
    # cycle 2: rr=1 grants lane 1 (rr=0), lane 0 stalls
    # cycle 3: rr=0 grants lane 0 (rr=1), lane 1 stalls
    # cycle 4: lane 1 alone
    result = schedule([[0, 0], [0, 0]], 1)
    assert result.cycles == 4
    assert result.stalls_per_lane == [1, 2]
    assert result.busy_per_lane == [2, 2]
    assert result.stalls == 3
    assert result.rr == [0]


def test_no_conflict():
    result = schedule([[0, 1], [1, 0]], 2)
    assert (result.cycles, result.stalls_per_lane) == (2, [0, 0])
    assert result.rr == [0, 1]  # bank 0 last granted lane 1, bank 1 lane 0


def test_three_lanes_round_robin():
    result = schedule([[0], [0], [0]], 4)
    assert result.cycles == 3
    assert result.stalls_per_lane == [0, 1, 2]
    assert result.rr == [0, 0, 0, 0]


def test_pointers_carry_over():
    result = schedule([[0], [0], [0]], 1, rr=[2])
    # lane 2 first (rr=2 -> 0), then lane 0 (-> 1), then lane 1 (-> 2)
    assert result.cycles == 3
    assert result.stalls_per_lane == [1, 2, 0]
    assert result.rr == [2]


def test_empty_tokens_take_a_cycle_without_a_bank():
    result = schedule([[-1, 0], [0]], 1)
    # cycle 1: lane 0 consumes its empty token, lane 1 is granted bank 0
    # cycle 2: lane 0 is granted bank 0
    assert (result.cycles, result.stalls_per_lane, result.busy_per_lane) == (2, [0, 0], [1, 1])
    assert schedule([[-1, -1, -1], []], 2).cycles == 3


def test_empty_schedule():
    assert schedule([[], []], 4).cycles == 0


def test_stall_keeps_order():
    # lane 1 loses bank 0 in cycle 1, so its bank-1 token waits too.
    result = schedule([[0, 0], [0, 1]], 2)
    # c1: grant 0 (rr0=1), lane 1 stalls; c2: lane0 b0 and lane1 b0: rr0=1 -> lane 1
    # (rr0=0), lane 0 stalls; c3: lane 0 b0, lane 1 b1 both granted.
    assert (result.cycles, result.stalls_per_lane) == (3, [1, 1])


def test_bad_tokens():
    with pytest.raises(ValueError, match="lane 1: token 4"):
        schedule([[0], [4]], 4)


def test_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(50):
        lanes = int(rng.integers(1, 6))
        banks = int(rng.choice([1, 2, 4]))
        toks = [rng.integers(-1, banks, int(rng.integers(0, 12))).tolist() for _ in range(lanes)]
        assert schedule(toks, banks) == _brute(toks, banks)


def _brute(toks, banks, trace=None):
    lanes = len(toks)
    pos = [0] * lanes
    rr = [0] * banks
    stalls, busy = [0] * lanes, [0] * lanes
    cycles = 0
    while any(pos[p] < len(toks[p]) for p in range(lanes)):
        cycles += 1
        want = {}
        for p in range(lanes):
            if pos[p] < len(toks[p]):
                if toks[p][pos[p]] < 0:
                    pos[p] += 1
                else:
                    want[p] = toks[p][pos[p]]
        for b in range(banks):
            asking = [p for p in want if want[p] == b]
            if not asking:
                continue
            order = [(rr[b] + k) % lanes for k in range(lanes)]
            winner = next(p for p in order if p in asking)
            rr[b] = (winner + 1) % lanes
            if trace is not None:
                trace.append((cycles, winner, pos[winner]))
            pos[winner] += 1
            busy[winner] += 1
            for p in asking:
                if p != winner:
                    stalls[p] += 1
    return timing.ScheduleResult(cycles, stalls, busy, rr)


def test_lane_tokens():
    # rows: [cols 3, 5], empty, empty, [col 16]
    tokens = lane_tokens([2, 2, 2, 3], [3, 5, 16], x_base=1, x_banks=4)
    assert tokens.tolist() == [0, 2, -1, -1, 1]
    assert lane_tokens([], [], x_banks=4).tolist() == []


def test_long_streams_match_brute_force():
    # Long conflict-free stretches (dense-like streams) are replayed many cycles at a time.
    rng = np.random.default_rng(2)
    for trial in range(40):
        lanes, banks = int(rng.integers(2, 9)), int(rng.choice([2, 4, 8, 16]))
        toks = []
        for p in range(lanes):
            length = int(rng.integers(0, 700))
            if trial % 2:
                width = int(rng.integers(1, 64))
                t = [(p + j % width) % banks for j in range(length)]
            else:
                t = rng.integers(-1, banks, length).tolist()
            toks.append(t)
        assert schedule(toks, banks) == _brute(toks, banks)


def test_dense_stream_staggers_once():
    # Every lane streams the same columns: after a stagger of one cycle per lane the
    # lanes never meet again (x_banks >= lanes, rows a multiple of x_banks long).
    result = schedule([[j % 16 for j in range(64 * 16)] for _ in range(8)], 16)
    assert result.cycles == 64 * 16 + 7
    assert result.stalls == sum(range(8))


def test_trace_matches_brute_force():
    rng = np.random.default_rng(3)
    for trial in range(60):
        lanes, banks = int(rng.integers(1, 7)), int(rng.choice([1, 2, 4]))
        length = 600 if trial % 3 == 0 else 12   # long streams take the fast path
        toks = [rng.integers(-1, banks, int(rng.integers(0, length))).tolist()
                for _ in range(lanes)]
        trace = []
        expected = _brute(toks, banks, trace)
        result = schedule(toks, banks, trace=True)
        assert result == expected
        assert result.grants.tolist() == [[p, i] for _, p, i in sorted(trace)]
    assert schedule([[], []], 2, trace=True).grants.shape == (0, 2)
    assert schedule([[0]], 1).grants is None


def test_reduce_schedule_by_hand():
    # Destination lanes of the routes of 3 lanes; the bus takes one per cycle.
    # cycle 1: lanes 0, 1, 2 offer: rr=0 grants lane 0 (rr=1)
    # cycle 2: lanes 0, 1, 2 offer: lane 1 (rr=2)
    # cycle 3: lanes 0, 1, 2 offer: lane 2 (rr=0), which is done
    # cycle 4: lanes 0, 1 offer: lane 0 (rr=1), which is done
    # cycle 5: lane 1 (rr=2)
    result = timing.reduce_schedule([[1, 1], [1, 0], [0]], 3)
    assert (result.cycles, result.stalls_per_lane, result.rr) == (5, [2, 3, 2], [2])
    assert result.stalls == 7
    # the pointer carries over to the next REDUCE: lane 2 first, then lane 1
    again = timing.reduce_schedule([[], [1], [1]], 3, rr=result.rr)
    assert (again.cycles, again.stalls_per_lane, again.rr) == (2, [0, 1, 0], [2])
    assert timing.reduce_schedule([[], [], []], 3).cycles == 0
    assert timing.reduce_cycles(result.cycles) == timing.REDUCE_OVERHEAD + 5
    assert timing.reduce_cycles(0) == timing.REDUCE_EMPTY
    with pytest.raises(ValueError, match="destinations must hold 3 lanes, not 2"):
        timing.reduce_schedule([[0], [1]], 3)
    with pytest.raises(ValueError, match="lane 0: destination 3 is not a lane below 3"):
        timing.reduce_schedule([[3], [], []], 3)
