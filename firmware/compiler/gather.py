"""Bank-aware ordering of the lanes' nonzeros for the gather (the ``x`` supply)."""

from __future__ import annotations

import numpy as np


def _order_lanes(lane_rows, x_banks, lanes, *, reorder_rows=False, window=16):
    """Order each lane's nonzeros so concurrent lane heads hit different banks.

    Replays the round-robin arbitration of :func:`.timing.schedule` while
    choosing every lane's next head: among the banks its current row still
    needs, a bank no other lane claims this cycle (the one with the most
    entries left), else the most needed one. With ``reorder_rows`` a lane
    that starts a row also picks which row: the first of its next ``window``
    rows that offers a free bank, else an empty row (which needs no bank).

    Parameters
    ----------
    lane_rows : list of list of list of (bank, entry)
        Per lane, per row, its nonzeros.

    Returns
    -------
    (list of list of int, list of list of int, int)
        Per lane, the entries in stored order; per lane, the row indices in
        stored order; and the schedule length.
    """
    pools, empties = _row_pools(lane_rows, reorder_rows)
    buckets = [None] * lanes
    heads = [None] * lanes
    order = [[] for _ in range(lanes)]
    row_order = [[] for _ in range(lanes)]
    rr = [0] * x_banks

    def pick(p, claims):
        heads[p] = head = _pick_head(buckets[p], claims)
        claim = claims.get(head[0])
        if claim is None:
            claims[head[0]] = [p]
        else:
            claim.append(p)

    def start_row(p, claims):
        """Take the lane's next row; False if it is empty (consumed at once)."""
        pool = pools[p]
        choice = None
        if reorder_rows:
            for k in range(len(pool) - 1, max(-1, len(pool) - 1 - window), -1):
                if any(bank not in claims for bank, _ in lane_rows[p][pool[k]]):
                    choice = pool.pop(k)
                    break
            if choice is None and empties[p]:
                row_order[p].append(empties[p].pop())
                return False
        if choice is None:
            choice = pool.pop()
        row_order[p].append(choice)
        row = lane_rows[p][choice]
        if not row:
            return False
        bucket = {}
        for bank, entry in row:
            bucket.setdefault(bank, []).append(entry)
        buckets[p] = bucket
        return True

    active = [p for p in range(lanes) if pools[p] or empties[p]]
    cycles = 0
    while active:
        cycles += 1
        claims = {}
        choosing, starting = [], []
        for p in active:
            if heads[p] is not None:
                claims.setdefault(heads[p][0], []).append(p)
            elif buckets[p]:
                choosing.append(p)
            else:
                starting.append(p)
        # Lanes inside a row have the fewest choices: the most constrained pick first.
        if len(choosing) > 1:
            choosing.sort(key=lambda q: len(buckets[q]))
        for p in choosing:
            pick(p, claims)
        for p in starting:
            if start_row(p, claims):
                pick(p, claims)
        _grant(claims, rr, heads, order, lanes)
        active = [p for p in active
                  if heads[p] is not None or buckets[p] or pools[p] or empties[p]]
    return order, row_order, cycles


def _row_pools(lane_rows, reorder_rows):
    """Per lane, the rows still to start and the empty rows held back as stall
    fillers (reordering only; else every row is in the pool), each reversed so
    ``pop()`` takes the next."""
    pools, empties = [], []
    for rows in lane_rows:
        if reorder_rows:
            pools.append([i for i, row in enumerate(rows) if row])
            empties.append([i for i, row in enumerate(rows) if not row])
        else:
            pools.append(list(range(len(rows))))
            empties.append([])
        pools[-1].reverse()
        empties[-1].reverse()
    return pools, empties


def _pick_head(bucket, claims):
    """Take a lane's next head ``(bank, entry)`` from ``bucket`` (its row's entries
    by bank): the unclaimed bank with the most entries left, else the most needed
    claimed one."""
    best, best_count, fallback, fallback_count = -1, -1, -1, -1
    for bank, entries in bucket.items():
        n = len(entries)
        if bank in claims:
            if n > fallback_count:
                fallback, fallback_count = bank, n
        elif n > best_count:
            best, best_count = bank, n
    bank = best if best >= 0 else fallback
    entries = bucket[bank]
    entry = entries.pop()
    if not entries:
        del bucket[bank]
    return bank, entry


def _grant(claims, rr, heads, order, lanes):
    """One cycle's round-robin grants: each claimed bank grants one claimant, whose
    head joins its stored ``order``; ``rr``, ``heads`` and ``order`` in place."""
    for bank, claimants in claims.items():
        if len(claimants) == 1:
            winner = claimants[0]
        else:
            claimants.sort()
            first = rr[bank]
            winner = next((q for q in claimants if q >= first), claimants[0])
        order[winner].append(heads[winner][1])
        heads[winner] = None
        rr[bank] = (winner + 1) % lanes



def _bank_order(parts, a, x_start, config, *, reorder_rows):
    """Order the lanes' entries (and rows) with :func:`_order_lanes`.

    ``parts`` holds per lane its local rows as ``(lengths, entries)``: the
    entries of each row (indices into ``a``), row after row. Returns per lane
    the row permutation (stored order) and the rows' ``(lengths, entries)``
    in stored order. Lanes of different gather clusters read different
    copies of x: cluster ``k``'s bank ``b`` is bank ``k * x_banks + b`` of
    the replay. With one lane per cluster nothing conflicts and the stored
    order stays.
    """
    if config.cluster_lanes == 1:
        return [np.arange(len(lengths)) for lengths, _ in parts], list(parts)
    nested = []
    for p, (lengths, entries) in enumerate(parts):
        offset = p // config.cluster_lanes * config.x_banks
        banks = (offset + (a.indices[entries] - x_start) % config.x_banks).tolist()
        entry_list = entries.tolist()
        rows, position = [], 0
        for n in lengths.tolist():
            rows.append(list(zip(banks[position:position + n],
                                 entry_list[position:position + n], strict=True)))
            position += n
        nested.append(rows)
    order, row_order, _ = _order_lanes(nested, config.x_banks * config.clusters, config.pes,
                                       reorder_rows=reorder_rows)
    perms, ordered = [], []
    for (lengths, _), entries, perm in zip(parts, order, row_order, strict=True):
        perm = np.array(perm, dtype=np.int64)
        perms.append(perm)
        ordered.append((lengths[perm], np.array(entries, dtype=np.int64)))
    return perms, ordered
