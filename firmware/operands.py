"""The operands of the instructions that are not a format's: ``REDUCE``'s route
lists, ``MOVE``'s and ``LOAD``'s bounds, decoded and checked the way the
scatter network, the move engine and the DMA engine read them (the ISA model
and the program checker share them)."""

from __future__ import annotations

import dataclasses

import numpy as np

from zeroskip.core.isa import LOAD_REGIONS, LoadRegion, MemoryMap
from zeroskip.firmware.formats.base import DescriptorFault, read_words, word_at

__all__ = ["RouteList", "decode_routes", "check_move", "check_load"]


@dataclasses.dataclass
class RouteList:
    """One lane's ``REDUCE`` routes (see :mod:`.isa`).

    Attributes
    ----------
    source : int
        The lane's first source row ``s`` (relative to ``src_base``).
    lanes, rows : numpy.ndarray of int64
        Destination lane ``q`` and row ``r`` (relative to ``dst_base``) of
        each route, in route order.
    """

    source: int
    lanes: np.ndarray
    rows: np.ndarray


def decode_routes(ptrs, args, config):
    """Decode every lane's ``REDUCE`` route list the way the scatter network reads it.

    Parameters
    ----------
    ptrs : sequence of array of int
        Per lane, its row-pointer memory (or its image from address 0).
    args : dict
        The ``REDUCE``'s operands (``ptr_base``, ``src_base``, ``dst_base``).
    config : AcceleratorConfig

    Returns
    -------
    list of RouteList
        One per lane.

    Raises
    ------
    DescriptorFault
        When a route list, the source rows or a destination reach outside a
        memory or the lanes.
    """
    c = config
    ptr_base, src_base, dst_base = args["ptr_base"], args["src_base"], args["dst_base"]
    found = []
    for ptr in ptrs:
        count = word_at(ptr, ptr_base)
        source = word_at(ptr, ptr_base + 1)
        if ptr_base + 2 + count > c.row_depth or src_base + source + count > c.row_depth:
            raise DescriptorFault("route list")
        words = read_words(ptr, ptr_base + 2, count)
        rows = words & ((1 << c.row_addr_width) - 1)
        lanes = words >> c.row_addr_width
        if count and (int(lanes.max()) >= c.pes or dst_base + int(rows.max()) >= c.row_depth):
            raise DescriptorFault("route")
        found.append(RouteList(source, lanes, rows))
    return found


def check_move(args, config):
    """Check a ``MOVE``'s operands against the memories, as the move engine does.

    Raises
    ------
    DescriptorFault
        When ``src_base + count`` passes ``row_depth`` or ``dst_base + pes *
        count`` passes ``x_depth`` (found before anything is written).
    """
    count = args["count"]
    if args["src_base"] + count > config.row_depth:
        raise DescriptorFault("move source")
    if args["dst_base"] + config.pes * count > config.x_depth:
        raise DescriptorFault("move destination")


def check_load(args, config):
    """Check a ``LOAD``'s operands against the memories, as the DMA engine does.

    Raises
    ------
    DescriptorFault
        When ``dst_base + count`` passes the depth of its region or ``src + pes *
        count`` passes ``ext_words`` (found before anything is written).
    """
    count = args["count"]
    region = LOAD_REGIONS[LoadRegion(args["region"])]
    if args["dst_base"] + count > MemoryMap(config).depth(region):
        raise DescriptorFault("load destination")
    if args["src"] + config.pes * count > config.ext_words:
        raise DescriptorFault("load source")
