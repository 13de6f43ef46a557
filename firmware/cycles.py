"""Cycle accounting shared by the ISA model and the compiler.

The rules are the timing contract's (:mod:`zeroskip.timing`); this module
only remembers their answers. Replaying the gather arbitration of one
``SPMV`` costs time proportional to its schedule, and the same schedule is
asked for more than once: the compiler's cost model predicts every tile, and
the model (or :meth:`.program.Program.predicted_cycles`) replays the same
tokens from the same round-robin state when the program runs. Results are
kept by a digest of the tokens, the pointers and the bank count, for the
most recent :data:`CACHE_SIZE` schedules.
"""

from __future__ import annotations

import collections
import hashlib

import numpy as np

from zeroskip import timing

__all__ = ["gather_schedule", "CACHE_SIZE", "cache_info", "clear_cache"]

#: Schedules remembered (least recently used first out).
CACHE_SIZE = 4096

_cache = collections.OrderedDict()
_stats = {"hits": 0, "misses": 0}


def _key(lane_tokens, x_banks, rr):
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.asarray([x_banks, len(lane_tokens)], dtype=np.int64).tobytes())
    # No pointers means all 0 (the state at ``CTRL.start``).
    digest.update(np.asarray([0] * x_banks if rr is None else rr, dtype=np.int64).tobytes())
    for tokens in lane_tokens:
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        digest.update(np.int64(len(tokens)).tobytes())
        digest.update(tokens.tobytes())
    return digest.digest()


def gather_schedule(lane_tokens, x_banks, *, rr=None):
    """:func:`zeroskip.timing.schedule` (without a trace), remembered.

    The result is shared between callers: treat it as read-only.
    """
    key = _key(lane_tokens, x_banks, rr)
    result = _cache.get(key)
    if result is not None:
        _cache.move_to_end(key)
        _stats["hits"] += 1
        return result
    _stats["misses"] += 1
    result = timing.schedule(lane_tokens, x_banks, rr=rr)
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
