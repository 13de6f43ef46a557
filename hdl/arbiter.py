"""Arbitration helpers shared by the gather and scatter networks."""

from amaranth.hdl import Cat, Const

__all__ = ["or_tree", "round_robin", "next_mask"]


def or_tree(values):
    """OR of ``values`` as a balanced tree (a flat chain is slow to simulate)."""
    values = list(values)
    if not values:
        return Const(0)
    while len(values) > 1:
        pairs = [values[i] | values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            pairs.append(values[-1])
        values = pairs
    return values[0]


def round_robin(requests, mask):
    """Grant of a round-robin arbiter, one-hot.

    ``mask`` has the bits of the lanes at or after the pointer set (all clear
    and all set both mean pointer 0). The first request at or after the
    pointer wins; if there is none, the first request overall wins. Both
    searches are one carry chain over the doubled request vector.
    """
    width = len(requests)
    doubled = Cat(requests & mask, requests)
    first = (doubled & (~doubled + 1))[:2 * width]
    return first[:width] | first[width:]


def next_mask(grant, width):
    """The round-robin ``mask`` after ``grant`` (one-hot): the lanes after it."""
    return ~((grant << 1) - 1)[:width]
