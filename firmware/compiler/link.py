"""Linking: one-tile programs chained into one program with ``MOVE``.

A *stage* is one layer of a chain: one or more *parts*, each a program of one
tile compiled for one right-hand column (a vector), whose rows are some of
the stage's rows. :func:`link` runs every stage for ``columns`` right-hand
columns in one tile: stage 0 reads the operand the host loads (column ``j``
at X word ``j * x_stride``); after every stage but the last, one ``MOVE``
copies the stage's outputs into X, where the next stage reads them; the last
stage's outputs are read back.

Where a stage's outputs are (:class:`Layout`): per lane, ``words`` out words
per right-hand column, from ``out_base``; column ``j`` of part ``g`` at
``out_base + j * words + offsets[g]``, its local row ``i`` one word further
each. Every lane of a part that a ``MOVE`` follows holds the same rows
(:func:`pad_lane`): the padding rows are empty rows without bias, so each
writes the epilogue of 0 (0 when the clamp range holds 0) and never a stale
word; the next stage has no entry in their columns (no row of the stage is
there), so it never multiplies them. The ``MOVE`` (``src_base = out_base``,
``count = columns * words``) puts lane ``p``'s word ``w`` at X word
:func:`lane_major` ``(p, w, count)``, so the next stage's column ``j`` reads
X from ``j * words`` and the stage's row held by lane ``p`` at word ``i`` of
a column is its column ``lane_major(p, i, count)``
(:meth:`Layout.x_columns`).

With ``products_per_lane`` ``k`` above 1, X and ``out`` are ``k`` slots
(the pass rule of :mod:`zeroskip.core.timing`): column ``j`` is column ``j //
k`` of slot ``j % k`` (:func:`~.plans.column_bases`), every region above
holds :func:`steps` ``= ceil(columns / k)`` columns in each slot, and one
``MOVE`` per slot copies it into the same slot of X.

Every stage's out words (and bias words, indexed like them) have a region of
their own, the last stage's from word 0 (the host reads it back from there);
the parts' ``ptr``, ``nz`` and ``meta`` images follow one another in the lane
memories. What does not fit raises :class:`CompileError` naming
the memory.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from zeroskip.core import timing
from zeroskip.core.errors import CompileError
from zeroskip.core.isa import Format, Opcode
from zeroskip.firmware.asm import decode, encode_halt, encode_move, encode_reduce, encode_spmv
from zeroskip.firmware.compiler.plans import column_bases
from zeroskip.firmware.program import Epilogue, Program, Tile

__all__ = ["lane_major", "Part", "Layout", "layout", "pad_lane", "link", "x_stride",
           "check_move_fits", "steps"]

#: Formats whose lanes :func:`pad_lane` pads by their header alone (CSR adds row ends).
PADDABLE = (Format.CSR, Format.COO, Format.CSC)


def lane_major(lane, word, count, dst_base=0):
    """The X word ``MOVE dst_base count`` writes lane ``lane``'s out word
    ``src_base + word`` to: ``dst_base + lane * count + word`` (the ISA's rule)."""
    return dst_base + np.asarray(lane, dtype=np.int64) * count + np.asarray(word, dtype=np.int64)


def steps(columns, config):
    """Columns per slot of ``columns`` right-hand columns: ``ceil(columns / k)``."""
    return timing.passes(columns, config.products_per_lane)


def _slot(config, name):
    """The words of one slot of memory ``name`` (``x_depth`` or ``row_depth``) and
    how an error names that limit."""
    k = config.products_per_lane
    depth = config.x_slot_depth if name == "x_depth" else config.row_slot_depth
    return depth, (name if k == 1 else f"{name} / products_per_lane {k}")


def x_stride(width, config):
    """X words between the host-loaded columns of ``width`` words: ``width``
    rounded up to whole bank rows (at least one word)."""
    banks = config.x_banks
    return -(-max(int(width), 1) // banks) * banks


@dataclasses.dataclass
class Part:
    """A one-tile, one-column program and the stage row of each of its rows."""
    program: Program
    rows: np.ndarray

    @property
    def tile(self):
        return self.program.tiles[0]

    @property
    def words(self):
        """Out words the part takes per column on each lane (its fullest lane's rows)."""
        return max(self.tile.lane_rows(), default=0)


@dataclasses.dataclass
class Layout:
    """Where a stage's outputs are (see the module documentation)."""
    out_base: int
    words: int
    offsets: list
    lanes: np.ndarray       # per stage row: its lane, -1 for a row never computed
    index: np.ndarray       # per stage row: its word in a column (offsets included)

    def count(self, columns):
        """The ``MOVE`` count of ``columns`` right-hand columns."""
        return columns * self.words

    def x_columns(self, columns):
        """Per stage row, the next stage's column that reads it (-1: none)."""
        where = lane_major(self.lanes, self.index, self.count(columns))
        return np.where(self.lanes >= 0, where, -1)


def layout(parts, rows, out_base):
    """The :class:`Layout` of a stage of ``rows`` rows whose parts are ``parts``."""
    lanes = np.full(rows, -1, dtype=np.int64)
    index = np.zeros(rows, dtype=np.int64)
    offsets, words = [], 0
    for part in parts:
        _check_one_tile(part.program)
        offsets.append(words)
        readback = part.tile.results()
        lanes[part.rows[readback[:, 2]]] = readback[:, 0]
        index[part.rows[readback[:, 2]]] = words + readback[:, 1]
        words += part.words
    return Layout(out_base=int(out_base), words=words, offsets=offsets, lanes=lanes, index=index)


def _check_one_tile(program):
    if len(program.tiles) != 1 or program.is_matrix:
        raise CompileError(f"{program.name} needs {len(program.tiles)} tiles of one column; "
                           f"a chained program holds every layer on chip at once")


def pad_lane(fmt, ptr, rows):
    """A lane's ``ptr`` image with ``rows`` rows: the rows past its own are empty."""
    fmt = Format(fmt)
    ptr = np.asarray(ptr, dtype=np.uint32).copy()
    n = int(ptr[0]) if len(ptr) else 0
    if fmt not in PADDABLE:
        names = ", ".join(f.name.lower() for f in PADDABLE)
        raise CompileError(f"a chained program pads lanes of {names}, not {fmt.name.lower()}")
    if fmt is Format.CSR:
        if len(ptr) != 1 + n:
            raise CompileError("a chained program pads CSR lanes without a route list only")
        end = ptr[n] if n else 0
        ptr = np.concatenate([ptr, np.full(rows - n, end, dtype=np.uint32)])
    ptr[0] = rows
    return ptr


def _lane_images(stages, pad):
    """Per part, its lane images (padded where ``pad``) and where they start:
    ``[(ptr, nz, meta, ptr_base, nz_base)]`` per stage, and the lanes' totals."""
    placed, ptr_at, nz_at = [], 0, 0
    for stage, padded in zip(stages, pad, strict=True):
        for part in stage:
            tile = part.tile
            formats = {args["fmt"] for args in tile.spmvs()}
            ptr = list(tile.ptr)
            if padded:
                (fmt,) = formats
                ptr = [pad_lane(fmt, p, part.words) for p in ptr]
            nz = list(tile.nz)
            meta = list(tile.meta) if tile.meta is not None else [np.zeros(len(n), np.uint32)
                                                                   for n in nz]
            width = max(max(len(n) for n in nz), max(len(m) for m in meta))
            height = max(len(p) for p in ptr)
            placed.append((ptr, nz, meta, ptr_at, nz_at))
            ptr_at += height
            nz_at += width
    return placed, ptr_at, nz_at


def _memories(placed, config):
    """Per lane, the concatenated ``ptr``, ``nz`` and ``meta`` images."""
    images = []
    for lane in range(config.pes):
        memory = {}
        for key, index in (("ptr", 0), ("nz", 1), ("meta", 2)):
            words = []
            for entry in placed:
                image = np.asarray(entry[index][lane], dtype=np.uint32)
                start = entry[3] if key == "ptr" else entry[4]
                at = sum(len(w) for w in words)
                words.append(np.zeros(start - at, dtype=np.uint32))
                words.append(image)
            memory[key] = np.concatenate(words) if words else np.zeros(0, np.uint32)
        images.append(memory)
    return images


def _check_fits(what, need, limit, name):
    if need > limit:
        raise CompileError(f"{what} {need} words but {name} is {limit}")


def check_move_fits(lay, columns, config, stage):
    """Refuse a ``MOVE`` of ``lay``'s outputs for ``columns`` right-hand columns (after
    stage number ``stage``) that does not fit one slot of X."""
    count = lay.count(steps(columns, config))
    _check_fits(f"the MOVE after layer {stage} ({config.pes} lanes x {count} words) needs",
                config.pes * count, *_slot(config, "x_depth"))


def _part_code(part, columns, *, x_step, out_base, words, ptr_base, nz_base, config):
    """The part's ``SET_EPI`` (if any) and its instructions for every column, step by
    step when ``products_per_lane`` is above 1 (as the compiler orders them)."""
    head, body = [], []
    for word in part.tile.code:
        opcode, args = decode(int(word))
        if opcode is Opcode.HALT:
            break
        if opcode is Opcode.SET_EPI:
            head.append(int(word))
        elif opcode in (Opcode.SPMV, Opcode.REDUCE):
            body.append((opcode, args))
        elif opcode is not Opcode.NOP:
            raise CompileError(f"{part.program.name}: a linked part holds no {opcode.name}")
    per_column = []
    for j in range(columns):
        x_at, out_at = column_bases(j, x_step, words, config)
        out = out_base + out_at
        code = []
        for opcode, args in body:
            if opcode is Opcode.SPMV:
                code.append(encode_spmv(**dict(args, ptr_base=args["ptr_base"] + ptr_base,
                                               nz_base=args["nz_base"] + nz_base,
                                               x_base=args["x_base"] + x_at,
                                               out_base=args["out_base"] + out)))
            else:
                code.append(encode_reduce(ptr_base=args["ptr_base"] + ptr_base,
                                          src_base=args["src_base"] + out,
                                          dst_base=args["dst_base"] + out))
        per_column.append(code)
    if config.products_per_lane > 1:
        return head + [word for step in zip(*per_column) for word in step]
    return head + [word for code in per_column for word in code]


def _bias(stages, layouts, columns, config):
    """Per lane, the bias words of every part that adds one (None if none does)."""
    if not any(part.tile.bias is not None for stage in stages for part in stage):
        return None
    slots = min(columns, config.products_per_lane)
    top = max((slots - 1) * config.row_slot_depth + lay.out_base
              + steps(columns, config) * lay.words for lay in layouts)
    bias = [np.zeros(top, dtype=np.int64) for _ in range(config.pes)]
    for stage, lay in zip(stages, layouts, strict=True):
        for part, offset in zip(stage, lay.offsets, strict=True):
            if part.tile.bias is None:
                continue
            for lane, words in enumerate(part.tile.bias):
                for j in range(columns):
                    start = lay.out_base + column_bases(j, 0, lay.words, config)[1] + offset
                    bias[lane][start:start + len(words)] = words
    return bias


def _readback(stage, lay, columns, config):
    """``(lane, out address, row, column)`` of the last stage's results."""
    parts = []
    for part, offset in zip(stage, lay.offsets, strict=True):
        table = part.tile.results()
        for j in range(columns):
            at = lay.out_base + column_bases(j, 0, lay.words, config)[1] + offset
            parts.append(np.stack([table[:, 0], at + table[:, 1], part.rows[table[:, 2]],
                                   np.full(len(table), j)], axis=1))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 4), np.int64)


def link(stages, rows, columns, config, *, name="linked"):
    """One program of one tile that runs ``stages`` for ``columns`` right-hand columns.

    Parameters
    ----------
    stages : list of list of Part
        Stage ``k + 1``'s parts read stage ``k``'s outputs at the columns
        :meth:`Layout.x_columns` of :func:`layout` gives (with the out bases
        :func:`link` uses: the stages' out regions one after another).
    rows : list of int
        Rows of each stage; the first stage's parts read the operand's columns.
    columns : int
        Right-hand columns (the host loads column ``j`` at ``j * x_stride(...)``).
    config : AcceleratorConfig

    Returns
    -------
    (Program, list of Layout)

    Raises
    ------
    CompileError
        Naming the memory a stage or the whole program does not fit.
    """
    # Out regions from the last stage's down, so that the host reads back from word 0
    # the last stage's region alone.
    per_slot = steps(columns, config)
    layouts, out_base = [], 0
    for stage, count in reversed(list(zip(stages, rows, strict=True))):
        layouts.insert(0, layout(stage, count, out_base))
        out_base += per_slot * layouts[0].words
    limit, label = _slot(config, "row_depth")
    _check_fits(f"the outputs of {columns} column(s) of every layer need", out_base,
                limit, f"{label} (out and bias words per lane)")
    first = stages[0][0].program
    inputs = first.shape[1]
    stride = x_stride(inputs, config)
    _check_fits(f"{columns} input column(s) of {inputs} words need", per_slot * stride,
                *_slot(config, "x_depth"))
    for index, lay in enumerate(layouts[:-1]):
        check_move_fits(lay, columns, config, index + 1)
    pad = [True] * (len(stages) - 1) + [False]
    placed, ptr_words, nz_words = _lane_images(stages, pad)
    _check_fits("the row-pointer images of every layer need", ptr_words,
                config.row_depth, "row_depth")
    _check_fits("the nonzero images of every layer need", nz_words, config.nz_depth,
                "nz_depth")
    code, at = [], 0
    for index, (stage, lay) in enumerate(zip(stages, layouts, strict=True)):
        x_step = stride if index == 0 else layouts[index - 1].words
        for part, offset in zip(stage, lay.offsets, strict=True):
            _, _, _, ptr_base, nz_base = placed[at]
            at += 1
            code += _part_code(part, columns, x_step=x_step, out_base=lay.out_base + offset,
                               words=lay.words, ptr_base=ptr_base, nz_base=nz_base,
                               config=config)
        if index < len(stages) - 1:
            for slot in range(min(columns, config.products_per_lane)):
                code.append(encode_move(src_base=lay.out_base + slot * config.row_slot_depth,
                                        dst_base=slot * config.x_slot_depth,
                                        count=lay.count(per_slot)))
    code.append(encode_halt())
    _check_fits("the instructions of every layer need", len(code), config.imem_depth,
                "imem_depth")
    return _program(stages, layouts, placed, code, columns, config, name=name,
                    rows=rows[-1], stride=stride), layouts


def _program(stages, layouts, placed, code, columns, config, *, name, rows, stride):
    memories = _memories(placed, config)
    uses_meta = any(part.tile.meta is not None for stage in stages for part in stage)
    first = stages[0][0].program
    inputs = first.shape[1]
    loads = np.array([(column_bases(j, stride, 0, config)[0], j, 0, inputs)
                      for j in range(columns)],
                     dtype=np.int64).reshape(-1, 4)
    tile = Tile(code=np.array(code, dtype=np.uint64), ptr=[m["ptr"] for m in memories],
                nz=[m["nz"] for m in memories],
                bias=_bias(stages, layouts, columns, config), x_cols=(0, inputs),
                readback=_readback(stages[-1], layouts[-1], columns, config),
                meta=[m["meta"] for m in memories] if uses_meta else None, x_loads=loads)
    last = stages[-1][0].program.epilogue
    epilogue = Epilogue(**{**dataclasses.asdict(last),
                           "has_bias": any(p.program.epilogue.has_bias for p in stages[-1])})
    return Program(config=config, shape=(rows, inputs),
                   nnz=sum(part.program.nnz for stage in stages for part in stage),
                   tiles=[tile], epilogue=epilogue, name=name, kernel="spmm",
                   rhs_columns=columns,
                   report={"linked": {"stages": len(stages), "columns": columns,
                                      "words": [lay.words for lay in layouts]}})
