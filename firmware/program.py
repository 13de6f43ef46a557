"""Compiled programs: microcode and memory images for one configuration.

A :class:`Program` is one matrix compiled for one
:class:`~zeroskip.core.config.AcceleratorConfig`: a list of :class:`Tile`, each one
load–run–read round on the accelerator (see ``docs/internals.md``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from zeroskip.core.arith import sign_extend
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import ConfigError, InputError, ProgramMismatchError
from zeroskip.core.isa import LOAD_REGIONS, Format, LoadRegion, Opcode, Region
from zeroskip.firmware.asm import decode, disassemble
from zeroskip.firmware.cycles import RunCycles
from zeroskip.firmware.formats import (
    DescriptorFault,
    decode_lane,
    format_name,
    pack_entries,
    unpack_entries,
)
from zeroskip.firmware.operands import check_load, check_move, decode_routes

__all__ = ["Epilogue", "Tile", "Program", "pack_nz", "unpack_nz", "config_summary",
           "lane_balance", "KERNELS"]

FORMAT = "zeroskip-program"
VERSION = 2
#: Versions :meth:`Program.load` reads (version 1 programs have no meta images).
READABLE_VERSIONS = (1, 2)

#: The kernels a program computes: ``spmv`` and ``spmspv`` take a vector,
#: ``spmm`` and ``spmspm`` a matrix of right-hand columns.
KERNELS = ("spmv", "spmspv", "spmm", "spmspm")


def pack_nz(cols, values, config):
    """Pack columns and values into nonzero-memory words (``nz_entry_layout``).

    Returns
    -------
    numpy.ndarray of uint32
    """
    return pack_entries(cols, values, config)


def unpack_nz(words, config):
    """Split nonzero-memory words into ``(cols, values)`` (both ``int64``)."""
    return unpack_entries(words, config)


def lane_balance(work):
    """The busiest lane's work over the mean lane work: 1.0 when the lanes share it
    evenly (and when there is none), ``pes`` when one lane does it all."""
    work = np.asarray(work, dtype=np.int64)
    mean = work.mean() if len(work) else 0.0
    return float(work.max() / mean) if mean else 1.0


def _cv(work):
    """Coefficient of variation of the lane works (0 is perfect balance)."""
    work = np.asarray(work, dtype=np.float64)
    mean = work.mean()
    return float(work.std() / mean) if mean else 0.0


def _balance_entry(work):
    """``{"lane_work": [...], "balance": ...}`` of one list of lane works."""
    work = np.asarray(work, dtype=np.int64)
    return {"lane_work": [int(v) for v in work], "balance": lane_balance(work)}


def config_summary(config):
    """One line naming every parameter of ``config``."""
    parts = []
    for key, value in config.to_dict().items():
        parts.append(f"{key}={','.join(value) if isinstance(value, list) else value}")
    return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class Epilogue:
    """Epilogue settings of a program (see ``SET_EPI`` in :mod:`.isa`).

    Attributes
    ----------
    applied : bool
        Whether the last column tile applies the epilogue; without it the
        raw accumulator (``y = A @ x`` at accumulator width) is read back.
    shift, relu, clamp_lo, clamp_hi
        The ``SET_EPI`` operands.
    has_bias : bool
        Whether a bias (at accumulator scale) is added.
    """

    applied: bool = False
    shift: int = 0
    relu: bool = False
    clamp_lo: int = -(1 << 15)
    clamp_hi: int = (1 << 15) - 1
    has_bias: bool = False


@dataclasses.dataclass(eq=False)
class Tile:
    """One load–run–read round.

    Attributes
    ----------
    code : numpy.ndarray of uint64
        Microcode, loaded at instruction 0, ending in ``HALT``.
    ptr, nz : list of numpy.ndarray of uint32
        Per lane, the row-pointer and nonzero memory images (from address 0).
    bias : list of numpy.ndarray of int64, or None
        Per lane, the bias words (indexed like ``out``).
    x_cols : (int, int)
        The slice ``x[start:stop]`` to load at X address 0 (vector programs),
        or the span of columns the tile reads (see ``x_loads``).
    readback : numpy.ndarray of int64, shape (k, 3) or (k, 4)
        ``(lane, out address, row[, result column])`` of the results final
        after this tile (result column 0 when left out).
    meta : list of numpy.ndarray of uint32, or None
        Per lane, the meta memory image (COO and CSC rows, BITMAP chunks).
    x_loads : numpy.ndarray of int64, shape (k, 4), or None
        ``(X address, right-hand column, start, stop)``: load
        ``x[start:stop, column]`` at the X address. ``None``: load ``x_cols``
        of the vector at address 0.
    """

    code: np.ndarray
    ptr: list
    nz: list
    bias: list | None
    x_cols: tuple
    readback: np.ndarray
    meta: list | None = None
    x_loads: np.ndarray | None = None

    def loads(self):
        """``(X address, right-hand column, start, stop)`` of every slice to load."""
        if self.x_loads is not None:
            return [tuple(int(v) for v in row) for row in np.asarray(self.x_loads).reshape(-1, 4)]
        start, stop = self.x_cols
        return [(0, 0, int(start), int(stop))] if stop > start else []

    def results(self):
        """The readback table with its result column: ``(k, 4)`` int64."""
        table = np.asarray(self.readback, dtype=np.int64)
        if table.ndim != 2 or table.shape[1] == 3:
            table = table.reshape(-1, 3)
            table = np.concatenate([table, np.zeros((len(table), 1), dtype=np.int64)], axis=1)
        return table

    def spmvs(self):
        """The operands of every ``SPMV`` before the first ``HALT``."""
        found = []
        for word in self.code:
            opcode, args = decode(int(word))
            if opcode is Opcode.SPMV:
                found.append(args)
            elif opcode in (Opcode.HALT, None):
                break
        return found

    def formats(self):
        """Names of the formats the tile's ``SPMV`` read, in order of first use."""
        names = []
        for args in self.spmvs():
            name = format_name(args["fmt"])
            if name not in names:
                names.append(name)
        return names

    def stream(self, lane, args, config):
        """What ``lane``'s decoder streams for the ``SPMV`` with ``args``."""
        meta = self.meta[lane] if self.meta is not None else np.zeros(0, dtype=np.uint32)
        return decode_lane(Format(args["fmt"]), self.ptr[lane], self.nz[lane], meta,
                           ptr_base=args["ptr_base"], nz_base=args["nz_base"],
                           x_base=args["x_base"], out_base=args["out_base"], config=config)

    def lane_rows(self):
        """Rows each lane holds (the ``ptr[0]`` headers)."""
        return [int(p[0]) if len(p) else 0 for p in self.ptr]

    def lane_tokens(self, config=None, *, args=None):
        """Cycles of work each lane streams in one ``SPMV``.

        Row formats: tokens (one per stored entry, one per empty row, BITMAP
        scan cycles); CSC: the column-mode cycles with every column visited.
        ``args`` are the ``SPMV``'s operands (by default the tile's first
        ``SPMV``'s). Without ``config`` the ptr images are read as CSR.
        """
        spmvs = self.spmvs() if args is None else [args]
        if config is None or not spmvs:
            tokens = []
            for ptr in self.ptr:
                n = int(ptr[0]) if len(ptr) else 0
                ends = ptr[1:n + 1].astype(np.int64)
                lengths = np.diff(ends, prepend=0)
                tokens.append(int(np.maximum(lengths, 1).sum()))
            return tokens
        args = spmvs[0]
        tokens = []
        for p in range(config.pes):
            try:
                stream = self.stream(p, args, config)
            except DescriptorFault:
                tokens.append(0)
                continue
            if stream.tokens is not None:
                tokens.append(len(stream.tokens))
            else:
                counts = np.diff(stream.col_ends, prepend=0)
                tail = stream.n if args["bias"] or args["epilogue"] else 0
                tokens.append(stream.n + int(np.maximum(counts, 1).sum()) + tail)
        return tokens

    def lane_entries(self, config=None):
        """Stored entries (padding and zeros of dense formats included) per lane."""
        spmvs = self.spmvs()
        if config is None or not spmvs:
            return [len(nz) for nz in self.nz]
        entries = []
        for p in range(config.pes):
            try:
                entries.append(len(self.stream(p, spmvs[0], config).values))
            except DescriptorFault:
                entries.append(0)
        return entries


@dataclasses.dataclass(eq=False)
class Program:
    """A matrix compiled for one accelerator configuration.

    Attributes
    ----------
    config : AcceleratorConfig
    shape : (int, int)
        Rows and columns of the matrix.
    nnz : int
        Stored nonzeros.
    tiles : list of Tile
    a_frac_bits, x_frac_bits : int
        Fixed-point scaling of the matrix and of the input vector.
    row_exp : numpy.ndarray of int64, optional
        The power-of-two exponent of each row of the matrix
        (``A_q[i] = round(A[i] * 2 ** row_exp[i])``, see
        :mod:`zeroskip.firmware.quant`); ``None`` means ``a_frac_bits`` for
        every row. The host dequantizes ``y[i] = y_raw[i] * 2 ** -(row_exp[i]
        + x_exp)`` with the operand's exponent ``x_exp`` chosen per run.
    quant : dict
        How the matrix was quantized (JSON-compatible): ``nnz_input``,
        ``dropped``, ``saturated``, ``worst_case_x``, ``exact``.
    source : scipy.sparse.csr_matrix of float64, optional
        The matrix as given, so a saved program can report its error
        against the float64 product.
    ext : numpy.ndarray of uint32, optional
        The external-memory image the host writes from word 0 before the first
        tile (the lane images its ``LOAD`` instructions copy); ``None``: none.
    epilogue : Epilogue
    lane_nnz : numpy.ndarray of int64
        Entries each lane streams over the whole program (every column
        visited): one per stored nonzero in CSR, padding and zeros included in
        the dense formats; summed over every ``SPMV`` that reads them.
    name : str
    kernel : str
        One of :data:`KERNELS`.
    rhs_columns : int
        ``0`` when the right-hand operand is a vector (``x`` 1-D, ``y``
        1-D); else the columns of the right-hand matrix (``x`` of shape
        ``(columns of A, rhs_columns)``, ``y`` of shape ``(rows,
        rhs_columns)``).
    report : dict
        What the compiler decided and why (JSON-compatible): per row band the
        options with their predicted cycles and the winner, the predicted
        cycles of dense mode (``dense_cycles``) and the work balance
        (``balance``: ``split``, whether long rows are split across lanes;
        ``long_rows`` and ``pieces``; ``cv_whole_rows`` and ``cv_split_rows``,
        the spread of the work over the lanes without and with splitting;
        ``cycles_whole_rows`` and ``cycles_split_rows``, the predicted cycles
        of CSR both ways in the bands where both were built, else ``None``;
        and a ``note`` saying why).
    """

    config: AcceleratorConfig
    shape: tuple
    nnz: int
    tiles: list
    a_frac_bits: int = 0
    x_frac_bits: int = 0
    epilogue: Epilogue = dataclasses.field(default_factory=Epilogue)
    lane_nnz: np.ndarray = None
    name: str = "matrix"
    kernel: str = "spmv"
    rhs_columns: int = 0
    report: dict = dataclasses.field(default_factory=dict)
    row_exp: np.ndarray = None
    quant: dict = dataclasses.field(default_factory=dict)
    source: object = None
    ext: np.ndarray = None

    def __post_init__(self):
        self.shape = tuple(int(v) for v in self.shape)
        if self.lane_nnz is None:
            self.lane_nnz = np.array([sum(len(t.nz[p]) for t in self.tiles)
                                      for p in range(self.config.pes)], dtype=np.int64)
        self.lane_nnz = np.asarray(self.lane_nnz, dtype=np.int64)

    @property
    def row_frac_bits(self):
        """The exponent of each row (``row_exp``, or ``a_frac_bits`` everywhere)."""
        if self.row_exp is not None:
            return np.asarray(self.row_exp, dtype=np.int64)
        return np.full(self.shape[0], int(self.a_frac_bits), dtype=np.int64)

    @property
    def y_frac_bits(self):
        """Fractional bits of the results read back."""
        shift = self.epilogue.shift if self.epilogue.applied else 0
        return self.a_frac_bits + self.x_frac_bits - shift

    @property
    def is_matrix(self):
        """Whether the right-hand operand (and the result) is a matrix."""
        return self.rhs_columns > 0

    @property
    def formats(self):
        """Names of the formats the program's tiles use, in order of first use."""
        names = []
        for tile in self.tiles:
            for name in tile.formats():
                if name not in names:
                    names.append(name)
        return names

    @property
    def format_label(self):
        """The formats used, joined with ``+`` (``"csr"``, ``"csr+csc"``)."""
        return "+".join(self.formats) or "none"

    @property
    def dataflow_label(self):
        """The dataflows used (``row``, ``column``, ``dense``), joined with ``+``."""
        from zeroskip.firmware.formats import dataflow_of, format_by_name
        flows = []
        for name in self.formats:
            flow = dataflow_of(format_by_name(name))
            if flow not in flows:
                flows.append(flow)
        return "+".join(flows) or "none"

    @property
    def dense_cycles(self):
        """Predicted cycles of the same work in dense mode on the same array, if known."""
        value = self.report.get("dense_cycles")
        return None if value is None else int(value)

    @property
    def lane_work(self):
        """Cycles of work per lane over all tiles (every column visited)."""
        return np.array(self.lane_balance()["lane_work"], dtype=np.int64)

    def lane_balance(self):
        """The lanes' work, tile by tile and ``SPMV`` by ``SPMV``, and its balance.

        A lane's work in one ``SPMV`` is what :meth:`Tile.lane_tokens` counts
        (the tokens it streams; column mode: its cycles with every column
        visited; in a streamed tile, of the images its ``LOAD`` copied in);
        the ``SPMV`` takes as long as its busiest lane. The balance of a list
        of lane works is :func:`lane_balance` of it: the busiest lane's work
        over the mean (1.0 is perfect).

        Returns
        -------
        dict
            ``lane_work`` (per lane, over all tiles) and ``balance``; ``tiles``:
            per tile its ``lane_work`` and ``balance``, and ``spmvs``: per
            distinct ``SPMV`` operand set (the ``SPMV`` of a batch read one
            descriptor with other x and output bases, so they count once with
            ``count``), its ``format``, ``count``, ``lane_work`` and ``balance``.
        """
        total = np.zeros(self.config.pes, dtype=np.int64)
        tiles = []
        for index, tile in enumerate(self.tiles):
            spmvs = {}
            for args, images, loads in self._spmv_images(tile) or [(None, tile, 0)]:
                key = None if args is None else (loads, args["fmt"], args["ptr_base"],
                                                 args["nz_base"],
                                                 args["bias"] or args["epilogue"])
                if key in spmvs:
                    spmvs[key]["count"] += 1
                    continue
                work = np.asarray(images.lane_tokens(self.config, args=args), dtype=np.int64)
                spmvs[key] = {"format": None if args is None else format_name(args["fmt"]),
                              "count": 1, "lane_work": work}
            work = sum(entry["count"] * entry["lane_work"] for entry in spmvs.values())
            total += work
            tiles.append({"tile": index, **_balance_entry(work),
                          "spmvs": [{**entry, **_balance_entry(entry["lane_work"])}
                                    for entry in spmvs.values()]})
        return {**_balance_entry(total), "tiles": tiles}

    def _spmv_images(self, tile):
        """``(operands, images, loads)`` of every ``SPMV`` before the first ``HALT``:
        the tile as its lane images are then (the ``LOAD`` before it applied from
        :attr:`ext`) and how many ``LOAD`` came before it."""
        found, current, loads = [], self.held_before(tile), 0
        for word in tile.code:
            opcode, args = decode(int(word))
            if opcode is Opcode.LOAD and self.config.ext_words:
                try:
                    check_load(args, self.config)
                except DescriptorFault:
                    break
                current, loads = self._after_load(current, args), loads + 1
            elif opcode is Opcode.SPMV:
                found.append((args, current, loads))
            elif opcode in (Opcode.HALT, None):
                break
        return found

    @property
    def work_cv(self):
        """Coefficient of variation of :attr:`lane_work` (0 is perfect balance)."""
        return _cv(self.lane_work)

    def check_config(self, config):
        """Refuse hardware other than the one this program was built for.

        Raises
        ------
        ProgramMismatchError
            Naming both configurations and their fingerprints.
        """
        if config.fingerprint != self.config.fingerprint:
            raise ProgramMismatchError(
                f"program was built for {config_summary(self.config)} "
                f"(fingerprint {self.config.fingerprint}) but the hardware is "
                f"{config_summary(config)} (fingerprint {config.fingerprint})")

    def operand(self, x_int):
        """Check the integer right-hand operand and return it as int64.

        A vector program takes a 1-D array of one value per matrix column; a
        matrix program a 2-D array (dense or scipy.sparse) of shape
        ``(columns, rhs_columns)`` (a 1-D array when ``rhs_columns`` is 1).

        Raises
        ------
        InputError
            On the wrong shape, values that are not integers or do not fit.
        """
        import scipy.sparse
        cols = self.shape[1]
        x = x_int.toarray() if scipy.sparse.issparse(x_int) else np.asarray(x_int)
        if self.is_matrix:
            if x.ndim == 1 and self.rhs_columns == 1:
                x = x[:, None]
            if x.ndim != 2 or x.shape != (cols, self.rhs_columns):
                raise InputError(f"right-hand matrix has shape {x.shape} but the program "
                                 f"needs ({cols}, {self.rhs_columns})")
            what = "right-hand matrix value"
        else:
            if x.ndim != 1 or len(x) != cols:
                raise InputError(f"vector has shape {x.shape} but the matrix has {cols} "
                                 f"columns")
            what = "vector value"
        if x.dtype == bool or not (np.issubdtype(x.dtype, np.integer)
                                   or np.issubdtype(x.dtype, np.floating)):
            raise InputError(f"{what}s must be integers, not {x.dtype}")

        def where(k):
            if x.ndim == 1:
                return f"at index {k}"
            return f"at row {k // x.shape[1]}, column {k % x.shape[1]}"
        flat = x.reshape(-1)
        if np.issubdtype(x.dtype, np.floating):
            bad = np.flatnonzero(~np.isfinite(flat) | (flat != np.floor(flat)))
            if len(bad):
                raise InputError(f"{what} {float(flat[bad[0]])!r} {where(bad[0])} is not "
                                 f"an integer (quantize it first)")
        c = self.config
        outside = np.flatnonzero((flat < c.value_min) | (flat > c.value_max))
        if len(outside):
            k = outside[0]
            raise InputError(f"{what} {int(flat[k])} {where(k)} does not fit "
                             f"{c.value_width}-bit signed values")
        return x.astype(np.int64)

    def empty_result(self):
        """Zeros shaped like the program's result."""
        rows = self.shape[0]
        return np.zeros((rows, self.rhs_columns) if self.is_matrix else rows, dtype=np.int64)

    # Cycle prediction.

    def x_buffer(self, tile, x):
        """The X buffer after loading ``tile``'s slices of the operand ``x``."""
        buffer = np.zeros(self.config.x_depth, dtype=np.int64)
        x = np.asarray(x, dtype=np.int64)
        if x.ndim == 1:
            x = x[:, None]
        for address, column, start, stop in tile.loads():
            buffer[address:address + stop - start] = x[start:stop, column]
        return buffer

    def tile_cycles(self, tile, x=None):
        """Predicted ``CYCLES`` of one tile's run (see :mod:`.timing`).

        Column-mode (CSC) instructions visit the columns whose activation in
        ``x`` (the integer operand) is nonzero; without ``x``, or after a
        ``MOVE`` (whose values only a run knows), every column.
        """
        config = self.config
        buffer = None if x is None else self.x_buffer(tile, x)
        run = RunCycles(config)
        streams = {}
        tile = self.held_before(tile)
        for word in tile.code:
            opcode, args = decode(int(word))
            if opcode is Opcode.REDUCE and config.reduce:
                try:
                    routes = decode_routes(tile.ptr, args, config)
                except DescriptorFault:
                    run.other()
                    break
                run.reduce([r.lanes for r in routes], args=args)
                continue
            if opcode is Opcode.LOAD and config.ext_words:
                try:
                    check_load(args, config)
                except DescriptorFault:
                    run.other()
                    break
                tile, streams = self._after_load(tile, args), {}
                run.load(args["count"])
                continue
            if opcode is Opcode.HALT or opcode is Opcode.SYNC and config.ext_words:
                run.sync()
                if opcode is Opcode.HALT:
                    break
                continue
            if opcode is Opcode.MOVE:
                try:
                    check_move(args, config)
                except DescriptorFault:
                    run.other()
                    break
                run.move(args["count"])
                buffer = None           # the moved values are known only to a run
                continue
            if opcode is not Opcode.SPMV:
                run.other()
                if opcode in (Opcode.REDUCE, Opcode.LOAD, Opcode.SYNC, None):
                    break
                continue
            key = (args["fmt"], args["ptr_base"], args["nz_base"])
            if key not in streams:
                zero = dict(args, x_base=0, out_base=0)
                try:
                    streams[key] = [tile.stream(p, zero, config) for p in range(config.pes)]
                except DescriptorFault:
                    run.other()
                    break
            lanes = streams[key]
            try:
                for stream in lanes:
                    stream.check_bases(args["x_base"], args["out_base"], config)
            except DescriptorFault:
                run.other()
                break
            if Format(args["fmt"]) is Format.CSC:
                run.column_mode(lanes, args, buffer)
                continue
            run.spmv([stream.banks(args["x_base"], config.x_banks) for stream in lanes],
                     args=args)
        return run.cycles

    def held_before(self, tile):
        """``tile`` with the lane images its run starts from.

        The lane memories keep their words from one tile to the next, and the
        host writes no image of a streamed tile (its images empty, :attr:`ext`
        given), so such a tile starts from what the ``LOAD`` of the tiles
        before it in this program left (its own loads may then skip blocks
        a half holds already, :mod:`~zeroskip.firmware.compiler.stream`). Any
        other tile, or one not of this program, starts from its own images.
        """
        if self.ext is None or not self.config.ext_words:
            return tile
        index = next((i for i, other in enumerate(self.tiles) if other is tile), None)
        if not index or any(len(image) for image in list(tile.ptr) + list(tile.nz)):
            return tile
        held = self._held_after(index - 1)
        return dataclasses.replace(tile, **{name: getattr(held, name)
                                            for name in ("ptr", "nz", "meta", "bias")})

    def _held_after(self, index):
        """The tile ``index`` with the lane images its ``LOAD`` (after the tiles
        before it, :meth:`held_before`) leave, cached per program."""
        cache = self.__dict__.setdefault("_held", [])
        while len(cache) <= index:
            tile = self.tiles[len(cache)]
            if cache and not any(len(image) for image in list(tile.ptr) + list(tile.nz)):
                tile = dataclasses.replace(tile, **{name: getattr(cache[-1], name)
                                                    for name in ("ptr", "nz", "meta", "bias")})
            for word in tile.code:
                opcode, args = decode(int(word))
                if opcode is Opcode.HALT or opcode is None:
                    break
                if opcode is Opcode.LOAD:
                    try:
                        check_load(args, self.config)
                    except DescriptorFault:
                        break
                    tile = self._after_load(tile, args)
            cache.append(tile)
        return cache[index]

    def _after_load(self, tile, args):
        """A copy of ``tile`` whose lane images hold what the ``LOAD`` with ``args``
        copies from :attr:`ext` (checked operands)."""
        c = self.config
        region = LOAD_REGIONS[LoadRegion(args["region"])]
        name = {Region.PTR: "ptr", Region.NZ: "nz", Region.META: "meta",
                Region.BIAS: "bias"}[region]
        count, dst = args["count"], args["dst_base"]
        ext = np.zeros(c.ext_words, dtype=np.uint32) if self.ext is None else self.ext
        words = np.zeros(c.pes * count, dtype=np.uint32)
        have = ext[args["src"]:args["src"] + c.pes * count]
        words[:len(have)] = have
        words = words.reshape(c.pes, count)
        images = getattr(tile, name)
        dtype = np.int64 if name == "bias" else np.uint32
        updated = []
        for p in range(c.pes):
            old = np.zeros(0, dtype) if images is None else np.asarray(images[p], dtype)
            image = np.zeros(max(len(old), dst + count), dtype)
            image[:len(old)] = old
            image[dst:dst + count] = sign_extend(words[p], c.acc_width) if name == "bias" \
                else words[p]
            updated.append(image)
        return dataclasses.replace(tile, **{name: updated})

    def predicted_cycles(self, x=None):
        """Predicted ``CYCLES`` summed over all tiles (see :meth:`tile_cycles`)."""
        return sum(self.tile_cycles(tile, x) for tile in self.tiles)

    # Listing.

    def listing(self):
        """A human-readable description: configuration, scaling, tiles, balance."""
        c = self.config
        e = self.epilogue
        rows, cols = self.shape
        density = self.nnz / (rows * cols) if rows * cols else 0.0
        lines = [
            f"program {self.name!r}: {rows} x {cols}, {self.nnz} nonzeros "
            f"({100 * density:.2f} %), {len(self.tiles)} tile(s)",
            f"hardware: {config_summary(c)} (fingerprint {c.fingerprint})",
            f"kernel: {self.kernel}, " + (
                f"{self.rhs_columns} right-hand column(s)" if self.is_matrix
                else "right-hand vector") +
            f"; format {self.format_label}, dataflow {self.dataflow_label}",
            f"quantization: a_frac_bits={self.a_frac_bits} x_frac_bits={self.x_frac_bits} "
            f"y_frac_bits={self.y_frac_bits}" + self._row_exp_note(),
        ]
        if e.applied:
            lines.append(f"epilogue: shift={e.shift} relu={int(e.relu)} "
                         f"clamp=[{e.clamp_lo}, {e.clamp_hi}] bias={'yes' if e.has_bias else 'no'}")
        else:
            lines.append(f"epilogue: none (raw accumulator), "
                         f"bias={'yes' if e.has_bias else 'no'}")
        balance = self.lane_balance()
        work = np.array(balance["lane_work"], dtype=np.int64)
        lines.append(f"work spread: tokens per lane min {work.min() if len(work) else 0} "
                     f"max {work.max() if len(work) else 0}, CV {_cv(work):.3f}, "
                     f"balance {balance['balance']:.2f} (max / mean)")
        for line in self.report.get("summary", []):
            lines.append(line)
        total = 0
        for index, tile in enumerate(self.tiles):
            cycles = self.tile_cycles(tile)
            total += cycles
            start, stop = tile.x_cols
            formats = ", ".join(tile.formats()) or "no SPMV"
            loads = tile.loads()
            columns = sorted({column for _, column, _, _ in loads})
            operand = (f"x[{start}:{stop}]" if not self.is_matrix else
                       f"x[{start}:{stop}, {_span(columns)}]")
            lines.append(f"tile {index}: {formats}, {operand}, {len(tile.readback)} "
                         f"results read back, predicted {cycles} cycles, lane balance "
                         f"{balance['tiles'][index]['balance']:.2f}")
            for address, line in enumerate(disassemble(tile.code).splitlines()):
                lines.append(f"  {address:4d}: {line}")
            tokens = tile.lane_tokens(c)
            entries = tile.lane_entries(c)
            lines.append("  lane  rows   nnz  tokens")
            for p, n in enumerate(tile.lane_rows()):
                lines.append(f"  {p:4d} {n:5d} {entries[p]:5d} {tokens[p]:7d}")
        ideal = -(-self.nnz * max(self.rhs_columns, 1) // c.macs_per_cycle)
        lines.append(f"predicted cycles: {total} (ideal {ideal}: nnz / "
                     + ("pes" if c.products_per_lane == 1 else "macs per cycle")
                     + (" per right-hand column" if self.rhs_columns > 1 else "") + ")")
        if self.dense_cycles is not None:
            speedup = self.dense_cycles / total if total else 0.0
            lines.append(f"dense mode on this array: predicted {self.dense_cycles} cycles "
                         f"({speedup:.2f}x)")
        return "\n".join(lines) + "\n"

    def _row_exp_note(self):
        if self.row_exp is None or not len(self.row_exp):
            return ""
        return (f"; row exponents {int(np.min(self.row_exp))} to {int(np.max(self.row_exp))} "
                f"(y[i] = y_raw[i] x 2^-(row_exp[i] + x_exp))")

    # Serialization.

    def save(self, path):
        """Write the program to one ``.npz`` file (arrays and a JSON header)."""
        e = self.epilogue
        header = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "config": self.config.to_dict(),
            "shape": list(self.shape),
            "nnz": int(self.nnz),
            "a_frac_bits": int(self.a_frac_bits),
            "x_frac_bits": int(self.x_frac_bits),
            "epilogue": {"applied": bool(e.applied), "shift": int(e.shift),
                         "relu": bool(e.relu), "clamp_lo": int(e.clamp_lo),
                         "clamp_hi": int(e.clamp_hi), "has_bias": bool(e.has_bias)},
            "lane_nnz": [int(v) for v in self.lane_nnz],
            "kernel": self.kernel,
            "rhs_columns": int(self.rhs_columns),
            "report": self.report,
            "quant": self.quant,
            "tiles": [{"x_cols": [int(v) for v in t.x_cols], "bias": t.bias is not None,
                       "meta": t.meta is not None, "x_loads": t.x_loads is not None}
                      for t in self.tiles],
        }
        arrays = {"header": np.array(json.dumps(header))}
        if self.row_exp is not None:
            arrays["row_exp"] = np.asarray(self.row_exp, dtype=np.int64)
        if self.ext is not None:
            arrays["ext"] = np.asarray(self.ext, dtype=np.uint32)
        if self.source is not None:
            source = self.source.tocsr()
            arrays["source_indptr"] = np.asarray(source.indptr, dtype=np.int64)
            arrays["source_indices"] = np.asarray(source.indices, dtype=np.int64)
            arrays["source_data"] = np.asarray(source.data, dtype=np.float64)
        for i, tile in enumerate(self.tiles):
            arrays[f"t{i}_code"] = np.asarray(tile.code, dtype=np.uint64)
            readback = np.asarray(tile.readback, dtype=np.int64)
            arrays[f"t{i}_readback"] = readback.reshape(-1, readback.shape[-1] if
                                                        readback.ndim == 2 else 3)
            if tile.x_loads is not None:
                arrays[f"t{i}_xloads"] = np.asarray(tile.x_loads, dtype=np.int64).reshape(-1, 4)
            for p in range(self.config.pes):
                arrays[f"t{i}_ptr{p}"] = np.asarray(tile.ptr[p], dtype=np.uint32)
                arrays[f"t{i}_nz{p}"] = np.asarray(tile.nz[p], dtype=np.uint32)
                if tile.meta is not None:
                    arrays[f"t{i}_meta{p}"] = np.asarray(tile.meta[p], dtype=np.uint32)
                if tile.bias is not None:
                    arrays[f"t{i}_bias{p}"] = np.asarray(tile.bias[p], dtype=np.int64)
        with open(path, "wb") as file:
            np.savez_compressed(file, **arrays)

    @classmethod
    def load(cls, path):
        """Read a program written by :meth:`save`.

        Raises
        ------
        InputError
            If the file cannot be read or does not hold a valid program; the
            message names the file.
        """
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise InputError(f"{path}: cannot read program: {error.strerror}") from None
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except _ARCHIVE_ERRORS as error:
            raise InputError(f"{path}: not a zeroskip program ({_one_line(error)})") from None
        try:
            return cls._from_arrays(arrays)
        except _Invalid as error:
            raise InputError(f"{path}: not a valid zeroskip program: {error}") from None

    @classmethod
    def _from_arrays(cls, arrays):
        if "header" not in arrays:
            raise _Invalid("no header")
        try:
            header = json.loads(str(arrays["header"]))
        except json.JSONDecodeError as error:
            raise _Invalid(f"header is not JSON: {error.msg}") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise _Invalid("header does not name the zeroskip program format")
        if header.get("version") not in READABLE_VERSIONS:
            raise _Invalid(f"format version {header.get('version')!r} is not one of "
                           f"{', '.join(str(v) for v in READABLE_VERSIONS)}")
        try:
            config = AcceleratorConfig.from_dict(header["config"], source="config")
            rows, cols = (int(v) for v in header["shape"])
            epi = header["epilogue"]
            epilogue = Epilogue(applied=bool(epi["applied"]), shift=int(epi["shift"]),
                                relu=bool(epi["relu"]), clamp_lo=int(epi["clamp_lo"]),
                                clamp_hi=int(epi["clamp_hi"]), has_bias=bool(epi["has_bias"]))
            kernel = str(header.get("kernel", "spmv"))
            if kernel not in KERNELS:
                raise _Invalid(f"unknown kernel {kernel!r}")
            rhs_columns = int(header.get("rhs_columns", 0))
            if rhs_columns < 0:
                raise _Invalid(f"rhs_columns is {rhs_columns}")
            report = header.get("report", {})
            if not isinstance(report, dict):
                raise _Invalid("report is not an object")
            tiles = []
            for i, meta in enumerate(header["tiles"]):
                tiles.append(_load_tile(arrays, i, meta, config, rows, cols,
                                        max(rhs_columns, 1)))
            program = cls(config=config, shape=(rows, cols), nnz=int(header["nnz"]),
                          tiles=tiles, a_frac_bits=int(header["a_frac_bits"]),
                          x_frac_bits=int(header["x_frac_bits"]), epilogue=epilogue,
                          lane_nnz=np.array(header["lane_nnz"], dtype=np.int64),
                          name=str(header["name"]), kernel=kernel, rhs_columns=rhs_columns,
                          report=report, quant=_quant_header(header),
                          row_exp=_row_exp(arrays, rows),
                          source=_source(arrays, rows, cols), ext=_ext(arrays, config))
        except ConfigError as error:
            raise _Invalid(str(error)) from None
        except KeyError as error:
            raise _Invalid(f"missing {error.args[0]!r}") from None
        except (TypeError, ValueError) as error:
            raise _Invalid(str(error)) from None
        if len(program.lane_nnz) != config.pes:
            raise _Invalid(f"lane_nnz has {len(program.lane_nnz)} lanes, not {config.pes}")
        return program


def _quant_header(header):
    quant = header.get("quant", {})
    if not isinstance(quant, dict):
        raise _Invalid("quant is not an object")
    return quant


def _ext(arrays, config):
    if "ext" not in arrays:
        return None
    return _array(arrays, "ext", np.uint32, config.ext_words, "external memory")


def _row_exp(arrays, rows):
    if "row_exp" not in arrays:
        return None
    row_exp = np.asarray(arrays["row_exp"])
    if row_exp.shape != (rows,) or row_exp.dtype.kind not in "iu":
        raise _Invalid(f"row_exp has shape {row_exp.shape}, not ({rows},)")
    return row_exp.astype(np.int64)


def _source(arrays, rows, cols):
    keys = ("source_indptr", "source_indices", "source_data")
    if not any(key in arrays for key in keys):
        return None
    if not all(key in arrays for key in keys):
        raise _Invalid("the source matrix is incomplete")
    import scipy.sparse
    indptr, indices, data = (np.asarray(arrays[key]) for key in keys)
    if (indptr.shape != (rows + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0)
            or indptr[-1] != len(indices) or len(indices) != len(data)
            or (len(indices) and (indices.min() < 0 or indices.max() >= cols))):
        raise _Invalid("the source matrix is inconsistent")
    return scipy.sparse.csr_matrix((data.astype(np.float64), indices, indptr), shape=(rows, cols))


def _span(columns):
    if not columns:
        return "-"
    if columns == list(range(columns[0], columns[-1] + 1)):
        return str(columns[0]) if len(columns) == 1 else f"{columns[0]}:{columns[-1] + 1}"
    return ",".join(str(c) for c in columns)


class _Invalid(Exception):
    pass


#: What reading a damaged archive raises (zipfile, zlib, and NumPy parsing a
#: member's header).
_ARCHIVE_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
                   NotImplementedError, RuntimeError, tokenize.TokenError)


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _array(arrays, key, dtype, limit, what):
    if key not in arrays:
        raise _Invalid(f"missing array {key!r}")
    value = arrays[key]
    if value.dtype != dtype or value.ndim != 1:
        raise _Invalid(f"{key} must be a 1-D {np.dtype(dtype).name} array")
    if len(value) > limit:
        raise _Invalid(f"{key} holds {len(value)} words but the {what} holds {limit}")
    return value


def _load_tile(arrays, i, meta, config, rows, cols, rhs):
    start, stop = (int(v) for v in meta["x_cols"])
    if not (0 <= start <= stop <= cols):
        raise _Invalid(f"tile {i}: x_cols ({start}, {stop}) does not fit")
    x_loads = None
    if meta.get("x_loads"):
        key = f"t{i}_xloads"
        if key not in arrays:
            raise _Invalid(f"missing array {key!r}")
        x_loads = arrays[key]
        if x_loads.dtype != np.int64 or x_loads.ndim != 2 or x_loads.shape[1] != 4:
            raise _Invalid(f"{key} must be a (k, 4) int64 array")
        for address, column, first, last in x_loads.tolist():
            if not (0 <= first <= last <= cols and 0 <= column < rhs and address >= 0
                    and address + last - first <= config.x_depth):
                raise _Invalid(f"{key} loads x[{first}:{last}, {column}] at {address}, "
                               f"which does not fit")
    elif stop - start > config.x_depth:
        raise _Invalid(f"tile {i}: x_cols ({start}, {stop}) does not fit")
    code = _array(arrays, f"t{i}_code", np.uint64, config.imem_depth, "instruction memory")
    ptr = [_array(arrays, f"t{i}_ptr{p}", np.uint32, config.row_depth, "pointer memory")
           for p in range(config.pes)]
    nz = [_array(arrays, f"t{i}_nz{p}", np.uint32, config.nz_depth, "nonzero memory")
          for p in range(config.pes)]
    lane_meta = None
    if meta.get("meta"):
        lane_meta = [_array(arrays, f"t{i}_meta{p}", np.uint32, config.nz_depth,
                            "meta memory") for p in range(config.pes)]
    bias = None
    if meta["bias"]:
        bias = [_array(arrays, f"t{i}_bias{p}", np.int64, config.row_depth, "bias memory")
                for p in range(config.pes)]
    key = f"t{i}_readback"
    if key not in arrays:
        raise _Invalid(f"missing array {key!r}")
    readback = arrays[key]
    if readback.dtype != np.int64 or readback.ndim != 2 or readback.shape[1] not in (3, 4):
        raise _Invalid(f"{key} must be a (k, 3) or (k, 4) int64 array")
    if len(readback) and ((readback.min(axis=0) < 0).any()
                          or readback[:, 0].max() >= config.pes
                          or readback[:, 1].max() >= config.row_depth
                          or readback[:, 2].max() >= rows
                          or (readback.shape[1] == 4 and readback[:, 3].max() >= rhs)):
        raise _Invalid(f"{key} names a lane, address, row or column outside the program")
    return Tile(code=code, ptr=ptr, nz=nz, bias=bias, x_cols=(start, stop), readback=readback,
                meta=lane_meta, x_loads=x_loads)
