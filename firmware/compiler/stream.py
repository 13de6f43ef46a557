"""Streamed programs: every tile's lane images in the external memory, copied in by ``LOAD``.

A program compiled for :func:`half_config` (half the ``nz`` and ``ptr``
memories) has tiles that each fit one half of the lane memories.
:func:`stream_program` places all their lane images once in the external
memory (tile after tile, region after region, each block lane-major as
``LOAD`` reads it; a block equal to one placed before is not placed again)
and groups consecutive tiles into *runs*: one
load–run–read round of the streamed program per run. A run's tiles read the
same X slices and their outputs fit the ``out`` memories side by side (tile
``k`` of a run writes from its own ``out`` offset, the bias words there too).
The microcode of a run is::

    LOAD the first tile's images into half 0
    SYNC
    for every tile k of the run:
        LOAD tile k + 1's images into half (k + 1) % 2     (double buffering)
        tile k's instructions, reading half k % 2
        SYNC
    HALT

so each tile's images stream in while the one before computes (the load rule
of :mod:`zeroskip.core.timing`). The lane memories keep their words from one
run to the next (the host writes no lane image of a streamed tile), so a
tile whose blocks a half holds already loads nothing and computes from that
half, and the last tile of a run loads the next run's first tile into the
other half while it computes (where that fits the instruction memory and,
in a run of one tile, overwrites no bias it reads); a run whose first tile
a half holds needs no ``LOAD`` and no ``SYNC`` before it.
:meth:`~zeroskip.firmware.program.Program.held_before` replays those loads
for the predictions. :func:`share_external_memory` places several streamed
programs (a network's layers) side by side in one image. A column tile that adds the partial sums of
the one before it (``accumulate``: a row block wider than ``x_depth``) reads
other X slices, so it starts a run of its own; the tile before it starts one
too, so that both keep their ``out`` words at offset 0. ``MOVE`` is refused. The
``REDUCE`` route words of split rows are encoded again for the whole row
memory (their lane field sits above ``row_addr_width``).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from zeroskip.core.errors import CompileError
from zeroskip.core.isa import LoadRegion, Opcode
from zeroskip.firmware.asm import (
    decode,
    encode_halt,
    encode_load,
    encode_reduce,
    encode_set_epi,
    encode_spmv,
    encode_sync,
)
from zeroskip.firmware.program import Tile

__all__ = ["half_config", "stream_program", "share_external_memory"]

#: Each region's images in a tile, in the order a tile's loads run.
_REGIONS = (("ptr", LoadRegion.PTR), ("nz", LoadRegion.NZ), ("meta", LoadRegion.META),
            ("bias", LoadRegion.BIAS))


def half_config(config):
    """The configuration a streamed program's tiles are compiled for: ``nz_depth``
    and ``row_depth`` halved (one half of each lane memory per tile).

    Raises
    ------
    CompileError
        Without an external memory, or when a half is below the smallest depth.
    """
    if not config.ext_words:
        raise CompileError("stream=True needs an external memory (ext_words > 0)")
    if config.nz_depth < 32 or config.row_depth < 8:
        raise CompileError(f"stream=True needs nz_depth >= 32 and row_depth >= 8 (two "
                           f"halves), not {config.nz_depth} and {config.row_depth}")
    return config.replace(nz_depth=config.nz_depth // 2, row_depth=config.row_depth // 2)


@dataclasses.dataclass
class _Placed:
    """One tile of the source program: its images' places in ``ext`` and its run."""
    tile: Tile
    blocks: dict            # region name -> (src, count)
    body: list              # (opcode, args) of its instructions before HALT
    out_words: int          # out (and bias) words it writes on a lane
    accumulates: bool       # it adds the partial sums of the tile before it
    feeds: bool = False     # the tile after it adds its partial sums


def _tile_body(tile, name):
    """The tile's instructions before ``HALT``, and whether it adds the partial sums
    of the tile before it (an ``SPMV`` with ``accumulate`` that does not finish
    the sums of a ``REDUCE`` of its own tile)."""
    decoded = [decode(int(word)) for word in tile.code]
    reduces = any(opcode is Opcode.REDUCE for opcode, _ in decoded)
    body, accumulates = [], False
    for opcode, args in decoded:
        if opcode is Opcode.HALT:
            break
        if opcode is Opcode.SPMV and args["accumulate"] and not reduces:
            accumulates = True
        if opcode not in (Opcode.SPMV, Opcode.REDUCE, Opcode.SET_EPI, Opcode.NOP):
            raise CompileError(f"{name}: a streamed tile holds no "
                               f"{getattr(opcode, 'name', 'illegal instruction')}")
        body.append((opcode, args))
    return body, accumulates


def _out_words(tile, body):
    words = [int(tile.results()[:, 1].max()) + 1] if len(tile.readback) else [0]
    words += [len(b) for b in tile.bias or []]
    for opcode, args in body:
        if opcode is Opcode.SPMV:
            words.append(args["out_base"] + max(tile.lane_rows(), default=0))
    return max(words)


def _routes_for(images, body, half, config):
    """The ``ptr`` images with their ``REDUCE`` route words (:func:`~zeroskip.core.isa.route_word`,
    whose lane field sits above ``row_addr_width``) encoded for ``config`` instead of ``half``."""
    images = [np.asarray(image, dtype=np.int64).copy() for image in images]
    rows = (1 << half.row_addr_width) - 1
    for opcode, args in body:
        if opcode is not Opcode.REDUCE:
            continue
        base = args["ptr_base"]
        for image in images:
            if len(image) <= base:
                continue
            words = image[base + 2:base + 2 + int(image[base])]
            image[base + 2:base + 2 + len(words)] = \
                (words & rows) | (words >> half.row_addr_width) << config.row_addr_width
    return images


def _place(tiles, half, config, name):
    """Every tile's blocks in the external memory, and the memory's image. A block
    equal to one placed before (a matrix kernel's tile repeated for every column of
    the batch that X holds one at a time) is placed once and read from there."""
    placed, chunks, at, seen = [], [], 0, {}
    for tile in tiles:
        body, accumulates = _tile_body(tile, name)
        blocks = {}
        for region, _ in _REGIONS:
            images = getattr(tile, region)
            if region == "ptr":
                images = _routes_for(images, body, half, config)
            if images is None:
                continue
            count = max((len(image) for image in images), default=0)
            if not count:
                continue
            block = np.zeros((config.pes, count), dtype=np.uint32)
            for p, image in enumerate(images):
                block[p, :len(image)] = np.asarray(image, dtype=np.int64) & 0xFFFF_FFFF
            key = (region, count, block.tobytes())
            if key in seen:
                blocks[region] = seen[key]
                continue
            blocks[region] = seen[key] = (at, count)
            chunks.append(block.reshape(-1))
            at += block.size
        if accumulates and placed:
            placed[-1].feeds = True
        placed.append(_Placed(tile, blocks, body, _out_words(tile, body), accumulates))
    if at > config.ext_words:
        raise CompileError(f"{name}: the lane images of {len(tiles)} tiles need {at} words "
                           f"but ext_words is {config.ext_words}")
    ext = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint32)
    return placed, ext


class _Held:
    """What the lane memories hold from one tile of the streamed program to the next:
    per half and region the block last loaded there, per ``out`` offset the bias block."""

    def __init__(self):
        self.halves = {0: {}, 1: {}}
        self.bias = {}

    def half_of(self, entry):
        """A half that holds every block of ``entry`` but its bias, or ``None``."""
        for half, held in self.halves.items():
            if all(held.get(region) == block for region, block in entry.blocks.items()
                   if region != "bias"):
                return half
        return None

    def missing(self, entry, half, out_base):
        """The regions of ``entry`` that a load into ``half`` (bias at ``out_base``) must copy."""
        return [region for region in entry.blocks
                if (self.bias.get(out_base) if region == "bias"
                    else self.halves[half].get(region)) != entry.blocks[region]]


def _loads(entry, half, out_base, config, held=None):
    """The ``LOAD`` of one tile's images into ``half`` (bias at ``out_base``): of the
    blocks ``held`` (a :class:`_Held`, updated) does not say are there already."""
    code = []
    missing = list(entry.blocks) if held is None else held.missing(entry, half, out_base)
    for region, member in _REGIONS:
        if region not in missing:
            continue
        src, count = entry.blocks[region]
        if region == "bias":
            dst = out_base
            if held is not None:
                held.bias[out_base] = (src, count)
        else:
            depth = config.nz_depth if region in ("nz", "meta") else config.row_depth
            dst = half * depth // 2
            if held is not None:
                held.halves[half][region] = (src, count)
        code.append(encode_load(region=member, dst_base=dst, count=count, src=src))
    return code


def _rebased(entry, half, out_base, config):
    """The tile's instructions reading ``half`` and writing ``out`` from ``out_base``."""
    ptr, nz = half * config.row_depth // 2, half * config.nz_depth // 2
    code = []
    for opcode, args in entry.body:
        if opcode is Opcode.SPMV:
            code.append(encode_spmv(**dict(args, ptr_base=args["ptr_base"] + ptr,
                                           nz_base=args["nz_base"] + nz,
                                           out_base=args["out_base"] + out_base)))
        elif opcode is Opcode.REDUCE:
            code.append(encode_reduce(ptr_base=args["ptr_base"] + ptr,
                                      src_base=args["src_base"] + out_base,
                                      dst_base=args["dst_base"] + out_base))
        elif opcode is Opcode.SET_EPI:
            code.append(encode_set_epi(**args))
    return code


def _runs(placed, config):
    """Consecutive tiles grouped into runs: same X slices, outputs side by side in
    ``out`` and the microcode in the instruction memory; a tile that adds the
    partial sums of another, and that other, first in a run (at ``out`` offset 0)."""
    runs, current, words, length = [], [], 0, 0
    for entry in placed:
        size = len(_loads(entry, 0, 0, config)) + len(entry.body) + 1
        fits = (current and not entry.accumulates and not entry.feeds
                and entry.tile.loads() == current[0].tile.loads()
                and words + entry.out_words <= config.row_depth
                and length + size + 2 <= config.imem_depth)
        if current and not fits:
            runs.append(current)
            current, words, length = [], 0, 0
        current.append(entry)
        words += entry.out_words
        length += size
    if current:
        runs.append(current)
    return runs


def _run_tile(run, following, held, config, name):
    """One load–run–read round of the streamed program: ``run``'s tiles, each one's
    images loaded unless ``held`` (a :class:`_Held`) says a half holds them, the next's
    loaded into the other half while it computes; then ``following`` (the next run's
    first tile, or ``None``) likewise while the last computes, where that fits the
    instruction memory and overwrites no bias the last one reads."""
    offsets = np.cumsum([0] + [entry.out_words for entry in run]).tolist()
    half = held.half_of(run[0])
    half = 0 if half is None else half
    code = _loads(run[0], half, offsets[0], config, held)
    if code:
        code.append(encode_sync())
    for k, entry in enumerate(run):
        body = _rebased(entry, half, offsets[k], config) + [encode_sync()]
        upcoming = run[k + 1] if k + 1 < len(run) else following
        at = offsets[k + 1] if k + 1 < len(run) else 0
        following_half = half
        if upcoming is not None:
            target = held.half_of(upcoming)
            target = 1 - half if target is None else target
            # The next run's bias goes to offset 0, which a run of one tile reads.
            unsafe = upcoming is following and len(run) == 1 and \
                "bias" in held.missing(upcoming, target, at)
            saved = copy.deepcopy(held)
            loads = _loads(upcoming, target, at, config, held)
            room = config.imem_depth - len(code) - len(body) - 1 - \
                sum(len(e.body) + len(_REGIONS) + 1 for e in run[k + 1:])
            if upcoming is following and (unsafe or len(loads) > room):
                held.halves, held.bias = saved.halves, saved.bias
                loads = []
            code += loads
            following_half = target
        code += body
        half = following_half
    code.append(encode_halt())
    if len(code) > config.imem_depth:
        raise CompileError(f"{name}: a streamed tile needs {len(code)} instructions but "
                           f"imem_depth is {config.imem_depth}")
    readback = []
    for entry, offset in zip(run, offsets[:-1], strict=True):
        table = entry.tile.results().copy()
        table[:, 1] += offset
        readback.append(table)
    empty = [np.zeros(0, dtype=np.uint32) for _ in range(config.pes)]
    tile = run[0].tile
    return Tile(code=np.array(code, dtype=np.uint64), ptr=list(empty), nz=list(empty),
                bias=None, x_cols=tile.x_cols, readback=np.concatenate(readback),
                meta=None, x_loads=tile.x_loads)


def stream_program(program, config):
    """``program`` (compiled for :func:`half_config` of ``config``) streamed from the
    external memory of ``config`` (see the module documentation).

    Raises
    ------
    CompileError
        When the images do not fit the external memory or a run does not fit
        the instruction memory.
    """
    half = half_config(config)
    if program.config != half:
        raise CompileError(f"{program.name}: a streamed program is compiled for "
                           f"{half.fingerprint}, not {program.config.fingerprint}")
    placed, ext = _place(program.tiles, half, config, program.name)
    runs, held = _runs(placed, config), _Held()
    tiles = [_run_tile(run, runs[r + 1][0] if r + 1 < len(runs) else None, held, config,
                       program.name) for r, run in enumerate(runs)]
    report = dict(program.report, stream={"tiles": len(program.tiles), "runs": len(tiles),
                                          "ext_words": int(len(ext))})
    return dataclasses.replace(program, config=config, tiles=tiles, report=report, ext=ext)


def _relocated(program, base, ext):
    """``program`` with every ``LOAD`` reading ``base`` words further on and ``ext`` as its
    external-memory image."""
    tiles = []
    for tile in program.tiles:
        code = []
        for word in tile.code.tolist():
            opcode, args = decode(int(word))
            code.append(encode_load(**dict(args, src=args["src"] + base))
                        if opcode is Opcode.LOAD else int(word))
        tiles.append(dataclasses.replace(tile, code=np.array(code, dtype=np.uint64)))
    report = dict(program.report, stream=dict(program.report.get("stream", {}), ext_base=base))
    return dataclasses.replace(program, tiles=tiles, report=report, ext=ext)


def share_external_memory(programs, config, *, name="the programs"):
    """Streamed ``programs`` (of :func:`stream_program`) placed side by side in one
    external memory: ``(programs, ext)``, every program's ``LOAD`` reading its own
    images at its place and its :attr:`~zeroskip.firmware.program.Program.ext` the
    one image ``ext`` of them all, so that the host writes it once for every
    program (a streamed network's layers).

    Raises
    ------
    CompileError
        When the images do not fit the external memory of ``config``.
    """
    sizes = [0 if program.ext is None else len(program.ext) for program in programs]
    if sum(sizes) > config.ext_words:
        raise CompileError(f"{name}: the lane images of {len(programs)} streamed programs "
                           f"need {sum(sizes)} words but ext_words is {config.ext_words}")
    ext = np.concatenate([np.zeros(0, dtype=np.uint32)] + [
        np.asarray(p.ext, dtype=np.uint32) for p in programs if p.ext is not None])
    bases = np.cumsum([0] + sizes[:-1]).tolist()
    return [_relocated(program, base, ext) for program, base in zip(programs, bases,
                                                                  strict=True)], ext
