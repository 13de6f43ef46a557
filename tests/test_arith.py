"""The one epilogue and the one sign extension against plain big-integer statements."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroskip.core.arith import epilogue, sign_extend, value_range

FAST = settings(max_examples=300, deadline=None)

ACC = st.integers(-(1 << 31), (1 << 31) - 1)
CLAMP = st.integers(-(1 << 15), (1 << 15) - 1)   # EpiArgs.clamp_lo / clamp_hi
SHIFT = st.integers(0, 31)                        # EpiArgs.shift


def epilogue_rule(s, shift, relu, lo, hi, width):
    """Step 4 of SPMV in Python integers: floor division is the arithmetic shift."""
    if shift:
        s = (s + 2 ** (shift - 1)) // 2 ** shift
    if relu:
        s = max(s, 0)
    s = min(max(s, lo), hi)
    return min(max(s, -2 ** (width - 1)), 2 ** (width - 1) - 1)


@FAST
@given(sums=st.lists(ACC, max_size=20), shift=SHIFT, relu=st.booleans(), lo=CLAMP, hi=CLAMP,
       width=st.sampled_from([8, 16]))
def test_epilogue_matches_the_big_integer_rule(sums, shift, relu, lo, hi, width):
    got = epilogue(np.array(sums, dtype=np.int64), shift=shift, relu=relu, clamp_lo=lo,
                   clamp_hi=hi, value_width=width)
    assert got.dtype == np.int64
    assert got.tolist() == [epilogue_rule(s, shift, relu, lo, hi, width) for s in sums]


@FAST
@given(rows=st.lists(st.tuples(ACC, SHIFT), min_size=1, max_size=12), batch=st.integers(1, 3),
       relu=st.booleans(), width=st.sampled_from([8, 16]))
def test_epilogue_takes_one_shift_per_row(rows, batch, relu, width):
    # A network layer: (batch, outputs) sums, one shift per output; no clamp.
    sums = np.array([[s + b for s, _ in rows] for b in range(batch)], dtype=np.int64)
    shifts = np.array([shift for _, shift in rows], dtype=np.int64)
    low, high = value_range(width)
    got = epilogue(sums, shift=shifts, relu=relu, clamp_lo=low, clamp_hi=high,
                   value_width=width)
    expect = [[epilogue_rule(int(sums[b, o]), int(shifts[o]), relu, low, high, width)
               for o in range(len(rows))] for b in range(batch)]
    assert got.tolist() == expect


def test_epilogue_edges():
    # Ties round up (towards +infinity), the most negative sum shifts arithmetically.
    sums = np.array([-3, -2, -1, 1, 2, 3, -(1 << 31), (1 << 31) - 1])
    got = epilogue(sums, shift=1, relu=False, clamp_lo=-(1 << 15), clamp_hi=(1 << 15) - 1,
                   value_width=16)
    assert got.tolist() == [-1, -1, 0, 1, 1, 2, -32768, 32767]
    got = epilogue(sums, shift=0, relu=True, clamp_lo=-5, clamp_hi=2, value_width=8)
    assert got.tolist() == [0, 0, 0, 1, 2, 2, 0, 2]
    # Ties at a larger shift: +4/8 and -12/8 round up.
    assert epilogue([4, -4, 12, -12, 11], shift=3, relu=False, clamp_lo=-128, clamp_hi=127,
                    value_width=8).tolist() == [1, 0, 2, -1, 1]
    # A clamp with lo > hi gives hi (min after max), as the hardware does.
    assert epilogue([50], shift=0, relu=False, clamp_lo=10, clamp_hi=5,
                    value_width=8).tolist() == [5]


@FAST
@given(values=st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=20),
       width=st.integers(1, 63))
def test_sign_extend_matches_the_big_integer_rule(values, width):
    half = 2 ** (width - 1)
    got = sign_extend(np.array(values, dtype=np.int64), width)
    assert got.tolist() == [(v + half) % 2 ** width - half for v in values]


def test_sign_extend_scalars_and_words():
    assert sign_extend(0xFFFF_FFFF, 32) == -1
    assert sign_extend(0x8000_0000, 32) == -(1 << 31)
    assert sign_extend([0x7F, 0x80, 0x1FF], 8).tolist() == [127, -128, -1]
