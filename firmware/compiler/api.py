"""The compiler's entry points."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse

from zeroskip.core import formatspec
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import CompileError
from zeroskip.core.isa import Format
from zeroskip.firmware import formats
from zeroskip.firmware.compiler import stream as streaming
from zeroskip.firmware.compiler.bands import _bands, _column_width, _ranges
from zeroskip.firmware.compiler.cost import (
    _balance,
    _choose,
    _consider_split,
    _dense_cycles,
    _split_record,
)
from zeroskip.firmware.compiler.operand import _operand, _shape_of
from zeroskip.firmware.compiler.plans import _column_tiles, _Context, _plan_csr, _plan_generic
from zeroskip.firmware.compiler.settings import (
    NM_DEFAULT,
    _check_int,
    _epilogue_settings,
    _matrix,
)
from zeroskip.firmware.compiler.tiles import _emit
from zeroskip.firmware.formats import (
    PLAN_ROWS,
    parse_nm,
    prune_nm,
)
from zeroskip.firmware.program import Program


def compile_kernel(matrix, config, *, x=None, kernel="auto", fmt="auto", rhs_columns=None,
                   nm=NM_DEFAULT, prune_nm=False, bias=None, shift=0, relu=False, clamp=None,
                   epilogue=None, a_frac_bits=0, x_frac_bits=0, name="matrix", bank_aware=True,
                   band_rows=None, dense_baseline=True, split_rows="auto",
                   progress=None, stream=False):
    """Compile ``y = A @ x`` (a vector) or ``Y = A @ X`` (a matrix) for one configuration.

    Parameters
    ----------
    matrix : scipy.sparse matrix or 2-D array
        Integer values fitting the signed value width (already quantized).
        Explicit zeros are dropped.
    config : AcceleratorConfig
    x : array or scipy.sparse matrix, optional
        The right-hand operand, or a sample of it: a vector (1-D, or an
        ``n x 1`` / ``1 x n`` sparse matrix) or a matrix with one row per
        column of ``A``. Its shape picks the vector or matrix kernels and,
        for the sparse kernels, its nonzero pattern drives the cost model;
        the program computes the right result for any operand of that shape.
    kernel : str
        ``auto`` (default), ``spmv``, ``spmspv``, ``spmm`` or ``spmspm``.
        ``auto`` takes a matrix kernel for a matrix ``x`` (or ``rhs_columns``)
        and the sparse kernel when at most :data:`ACTIVATION_SPARSE` of ``x``
        is nonzero, or when the cost model, costing column mode (CSC) on the
        sample's zeros, picks column mode anywhere. Dense kernels assume every
        activation nonzero; the sparse ones may run column mode where the
        activations' zeros pay.
    fmt : str
        ``auto`` (default: the cost model picks per row band among the
        configuration's formats) or a format name, which must be enabled.
    rhs_columns : int, optional
        Columns of the right-hand matrix when ``x`` is not given.
    nm : (int, int) or str
        The N:M structure of ``fmt="nm"`` (default 2:4); ``auto`` considers
        NM only for a matrix with that structure.
    prune_nm : bool
        Prune the matrix to N:M first (largest magnitudes kept) instead of
        rejecting a matrix without the structure for ``fmt="nm"``.
    bias : 1-D array of int, optional
        Added to each row at accumulator scale (before the epilogue).
    shift, relu, clamp, epilogue
        The epilogue: right shift (rounding to nearest), ReLU, clamp bounds
        (the value range by default); applied by default when ``shift``,
        ``relu`` or ``clamp`` is given, else the raw accumulator is read back.
    a_frac_bits, x_frac_bits : int
        Fixed-point scaling of the matrix and of the operand (recorded only).
    name : str
    bank_aware : bool
        CSR: order nonzeros to avoid input-vector bank conflicts.
    band_rows : int, optional
        Cap the rows of a band (the unit the cost model picks a format for).
    dense_baseline : bool
        Predict the cycles of dense mode for the same work
        (``program.dense_cycles``).
    split_rows : {"auto", True, False}
        CSR: split the rows longer than a lane's fair share across lanes and
        sum the pieces with ``REDUCE`` (needs ``config.reduce``). ``auto``
        (default) splits where the cost model predicts fewer cycles, ``True``
        wherever there are long rows and the pieces fit, ``False`` never.
    progress : callable, optional
        Called as ``progress(done, total)`` after each band of rows is
        compiled (``total`` bands; every band emits one or more tiles).
    stream : bool
        Stream the tiles' lane images from the external memory (needs
        ``config.ext_words``): the tiles are compiled for half the lane
        memories, their images placed once in :attr:`Program.ext` and every
        run loads them with ``LOAD``, double-buffered
        (:mod:`.stream`). Off by default.

    Returns
    -------
    Program

    Raises
    ------
    CompileError
        On values that are not integers or do not fit, a bias of the wrong
        length, invalid epilogue settings, a format the configuration lacks,
        a matrix that is not N:M structured for ``fmt="nm"``, an operand
        whose shape does not match the kernel or the matrix, or
        ``split_rows=True`` for hardware without the scatter/reduce network.
    """
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
    if stream:
        program = compile_kernel(
            matrix, streaming.half_config(config), x=x, kernel=kernel, fmt=fmt,
            rhs_columns=rhs_columns, nm=nm, prune_nm=prune_nm, bias=bias, shift=shift,
            relu=relu, clamp=clamp, epilogue=epilogue, a_frac_bits=a_frac_bits,
            x_frac_bits=x_frac_bits, name=name, bank_aware=bank_aware, band_rows=band_rows,
            dense_baseline=dense_baseline, split_rows=split_rows, progress=progress)
        return streaming.stream_program(program, config)
    a = _matrix(matrix, config)
    rows, cols = a.shape
    epi = _epilogue_settings(config, rows, bias=bias, shift=shift, relu=relu, clamp=clamp,
                             epilogue=epilogue)
    band_rows, split_rows = _check_options(config, a_frac_bits=a_frac_bits,
                                           x_frac_bits=x_frac_bits, name=name,
                                           band_rows=band_rows, split_rows=split_rows)
    operand = _operand(x, cols, kernel, rhs_columns)
    nm = parse_nm(nm)
    report = {"kernel": operand.kernel, "format_request": str(fmt)}
    a, candidates, notes = _formats_for(a, config, fmt, nm, prune_nm, report)

    # Only the rows whose result is not 0 run: the rows with nonzeros and the
    # empty rows that read back a bias (or an epilogue of 0 that is not 0).
    full_epi = epi
    a, epi, kept = _running_rows(a, epi, config)
    ctx, bands = _context(a, config, epi, operand, nm, band_rows=band_rows,
                          bank_aware=bank_aware, split_rows=split_rows)
    tiles, lane_entries, band_reports, splits = _compile_bands(ctx, bands, candidates, notes,
                                                               kept, progress)
    operand = _column_mode_kernel(operand, band_reports)
    report["kernel"] = operand.kernel
    if len(kept) < rows:
        for tile in tiles:
            tile.readback[:, 2] = kept[tile.readback[:, 2]]
    report["bands"] = band_reports
    report["balance"] = _balance(bands, ctx.counts, config, splits)

    program = Program(config=config, shape=(rows, cols), nnz=int(a.nnz), tiles=tiles,
                      a_frac_bits=int(a_frac_bits), x_frac_bits=int(x_frac_bits),
                      epilogue=full_epi.record(), lane_nnz=lane_entries, name=name,
                      kernel=operand.kernel, rhs_columns=operand.columns, report=report)
    if dense_baseline:
        _add_dense_baseline(report, rows, cols, config, full_epi, operand)
    report["summary"] = _summary(program)
    return program


def _check_options(config, *, a_frac_bits, x_frac_bits, name, band_rows, split_rows):
    """Check the settings recorded or used as given; returns ``(band_rows, split_rows)``
    normalized."""
    for label, value in (("a_frac_bits", a_frac_bits), ("x_frac_bits", x_frac_bits)):
        _check_int(label, value, -64, 64)
    if not isinstance(name, str):
        raise CompileError(f"name must be a string, not {name!r}")
    if band_rows is not None:
        band_rows = _check_int("band_rows", band_rows, 1, 1 << 30)
    return band_rows, _split_setting(split_rows, config)


def _running_rows(a, epi, config):
    """``(a, epi, kept)``: the matrix and epilogue cut to the rows that run
    (:func:`_kept_rows`, whose indices ``kept`` are)."""
    kept = _kept_rows(a, epi, config)
    if len(kept) < a.shape[0]:
        a = _take_rows(a, kept)
        if epi.bias is not None:
            epi = dataclasses.replace(epi, bias=epi.bias[kept])
    return a, epi, kept


def _add_dense_baseline(report, rows, cols, config, epi, operand):
    """Dense mode on every row and column of the matrix (what fmt="dense" compiles
    for the matrix with every entry stored): it multiplies the zeros too, so no row
    is left out (``epi`` is the epilogue of every row)."""
    report["dense_cycles"] = _dense_cycles(rows, cols, _dense_width(cols, config), config,
                                           epi, operand)
    report["dense_source"] = ("predicted by the ISA model's timing rules for every row "
                              "and column in dense mode")


def _context(a, config, epi, operand, nm, *, band_rows, bank_aware, split_rows):
    """``(context, bands)`` of the rows that run: the row bands are the CSR blocks
    (row and nonzero memories), capped at ``band_rows``."""
    width = _column_width(a, config)
    counts, starts = _tile_counts(a, width)
    bands = _bands(counts, config, band_rows)
    ctx = _Context(a=a, counts=counts, starts=starts, width=width, config=config, epi=epi,
                   operand=operand, nm=nm, bank_aware=bank_aware, split_rows=split_rows)
    return ctx, bands


def _column_mode_kernel(operand, band_reports):
    """The operand relabelled sparse when a band runs column mode (``kernel="auto"``:
    column mode was costed on the sample's zeros, which it skips)."""
    column_names = {spec.name for spec in formatspec.SPECS if spec.column_mode}
    if any(column_names & set(band["winner"].split("+")) for band in band_reports):
        return dataclasses.replace(operand, kernel=operand.sparse_label())
    return operand


def _formats_for(a, config, fmt, nm, prune, report):
    """``(a, candidate formats, {refused format: why})``, ``a`` pruned to N:M when
    ``prune`` (``report`` records the entries removed and the N:M structure)."""
    candidates = _candidates(fmt, config)
    if prune:
        a, removed = prune_nm_matrix(a, nm)
        report["pruned"] = removed
    if Format.NM in candidates:
        report["nm"] = list(nm)
    return a, candidates, _refusals(candidates, a, config, nm)


def _candidates(fmt, config):
    """The formats the cost model may pick from: the enabled ones for ``"auto"``,
    else the one asked for (which must be enabled)."""
    enabled = [formats.get(spec.name).fmt for spec in formatspec.specs_of(config.formats)]
    if fmt == "auto":
        return list(enabled)
    requested = formats.get(str(fmt)).fmt
    if requested not in enabled:
        raise CompileError(f"format {formats.get(requested).spec.name!r} is not enabled "
                           f"in this configuration (formats: {', '.join(config.formats)})")
    return [requested]


def _refusals(candidates, a, config, nm):
    """Drop from ``candidates`` (in place) the formats that cannot hold ``a``; returns
    ``{format: why}``. A format that was asked for alone is an error instead."""
    notes = {}
    for codec in [formats.get(f) for f in candidates]:
        problem = codec.refusal(a, config, nm=nm)
        if problem is not None:
            if candidates == [codec.fmt]:
                raise CompileError(problem)
            candidates.remove(codec.fmt)
            notes[codec.fmt] = problem
    return notes


def _build_plan(ctx, fmt, band):
    """The plan of ``band`` in format ``fmt``."""
    start, stop, _, _ = band
    codec = formats.get(fmt)
    if codec.planner == PLAN_ROWS:
        plan = _plan_csr(ctx, fmt, band)
        if fmt is Format.CSR:
            plan = _consider_split(ctx, plan, band)
        return plan
    tile_width = codec.tile_width(ctx.width, ctx.config, ctx.nm)
    return _plan_generic(fmt, np.arange(start, stop), ctx.a,
                         _column_tiles(ctx.a.shape[1], tile_width), ctx.config, ctx.epi, ctx.nm)


def _compile_bands(ctx, bands, candidates, notes, kept, progress):
    """Plan every band in every candidate format, pick, and emit the tiles.

    Returns ``(tiles, stored entries per lane, band reports, split records)``;
    ``kept`` maps the rows of ``ctx.a`` to the matrix's for the reports.
    """
    config, a = ctx.config, ctx.a
    matrix_kernel = ctx.operand.columns > 0
    tiles = []
    lane_entries = np.zeros(config.pes, dtype=np.int64)
    band_reports, splits = [], []
    for index, band in enumerate(bands):
        plans = {f: _build_plan(ctx, f, band) for f in candidates}
        choice, band_report = _choose(plans, ctx.operand, ctx.epi, config)
        start, stop = int(band[0]), int(band[1])
        band_report.update({"rows": [int(kept[start]), int(kept[stop - 1]) + 1],
                            "nnz": int(a.indptr[stop] - a.indptr[start])})
        splits.append(_band_split(plans, choice, band_report["winner"], band, ctx.counts,
                                  config))
        for f, note in notes.items():
            band_report["options"].append({"format": formats.get(f).spec.name,
                                           "dataflow": formats.get(f).spec.dataflow,
                                           "cycles": None,
                                           "tiles": 0, "note": note})
        band_reports.append(band_report)
        for plan, columns in choice:
            _emit(plan, columns, ctx.epi, config, matrix_kernel, tiles, lane_entries)
        if progress is not None:
            progress(index + 1, len(bands))
    return tiles, lane_entries, band_reports, splits


def _dense_width(cols, config):
    """The column tile width ``fmt="dense"`` takes for a matrix with every entry
    stored: :func:`~.bands._column_width` of it (no row of a tile holds more than
    ``nz_depth`` entries; a dense row holds ``min(width, cols)``), capped at
    ``nz_depth``."""
    width = config.x_slot_depth
    while width > config.nz_depth and min(width, cols) > config.nz_depth:
        width //= 2
    return min(width, config.nz_depth)


def _kept_rows(a, epi, config):
    """Indices of the rows the hardware computes: those with nonzeros and the empty
    ones whose result is not 0 (the others read back as 0 without running)."""
    keep = np.diff(a.indptr) > 0
    if epi.bias is not None or epi.applied:
        keep |= epi.empty_rows(a.shape[0], config) != 0
    return np.flatnonzero(keep)


def _take_rows(a, rows):
    """The rows ``rows`` of the CSR matrix ``a`` (in order), in time and memory
    proportional to their nonzeros."""
    lengths = np.diff(a.indptr)[rows]
    entries = _ranges(a.indptr[rows], lengths)
    indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return scipy.sparse.csr_matrix((a.data[entries], a.indices[entries], indptr),
                                   shape=(len(rows), a.shape[1]))


def _tile_counts(a, width):
    """``(counts, starts)``: per row and column tile of ``width`` columns, its
    nonzeros and where they start among ``a``'s entries (CSR columns are sorted,
    so each is a contiguous run)."""
    rows, cols = a.shape
    n_ct = max(1, -(-cols // width))
    entry_rows = np.repeat(np.arange(rows), np.diff(a.indptr))
    keys = entry_rows * n_ct + a.indices // width
    counts = np.bincount(keys, minlength=rows * n_ct).reshape(rows, n_ct)
    starts = a.indptr[:-1, None] + np.cumsum(counts, axis=1) - counts
    return counts, starts


def _split_setting(split_rows, config):
    if isinstance(split_rows, str) and split_rows == "auto":
        return split_rows
    if not isinstance(split_rows, (bool, np.bool_)):
        raise CompileError(f"split_rows must be 'auto', True or False, not {split_rows!r}")
    if split_rows and not config.reduce:
        raise CompileError("split_rows=True needs the scatter/reduce network, which this "
                           "configuration lacks (reduce=false)")
    return bool(split_rows)


def _band_split(plans, choice, winner, band, counts, config):
    """The split record of one band: its CSR plan's, and whether the program uses it."""
    csr = plans.get(Format.CSR)
    if csr is None:
        return _split_record(band, counts, config, "rows are split only in CSR, which this "
                                                   "compilation does not use")
    info = dict(csr.split)
    if info["split"] and not any(plan is csr for plan, _ in choice):
        info.update(split=False, reason=f"the band runs {winner}, not CSR")
    return info


def prune_nm_matrix(a, nm):
    """Prune ``a`` (CSR, int64) to N:M; returns ``(pruned matrix, entries removed)``."""
    pruned, removed = prune_nm(a, *nm)
    pruned = scipy.sparse.csr_matrix(pruned, dtype=np.int64)
    pruned.sort_indices()
    return pruned, removed


def _summary(program):
    report = program.report
    lines = []
    for index, band in enumerate(report.get("bands", [])):
        start, stop = band["rows"]
        options = ", ".join(f"{o['format']} {o['cycles']}" for o in band["options"]
                            if o["cycles"] is not None)
        lines.append(f"band {index}: rows {start}-{stop - 1}: {band['winner']} "
                     f"({band['cycles']} cycles predicted; options: {options})")
    balance = report.get("balance")
    if balance:
        lines.append(f"balance: {balance['long_rows']} row(s) longer than a lane's share; "
                     f"CV of whole rows {balance['cv_whole_rows']:.3f}, "
                     f"{balance['cv_split_rows']:.3f} with them split; {balance['note']}")
    return lines


def compile_spmv(matrix, config, *, bias=None, shift=0, relu=False, clamp=None, epilogue=None,
                 a_frac_bits=0, x_frac_bits=0, name="matrix", bank_aware=True, fmt="auto",
                 x=None, nm=NM_DEFAULT, prune_nm=False, band_rows=None, dense_baseline=False,
                 split_rows="auto", progress=None, stream=False):
    """Compile ``y = A @ x`` for one accelerator configuration.

    Parameters
    ----------
    matrix : scipy.sparse matrix or 2-D array
        Integer values fitting the signed value width (already quantized).
        Explicit zeros are dropped.
    config : AcceleratorConfig
    bias : 1-D array of int, optional
        Added to each row at accumulator scale (before the epilogue).
    shift : int
        Epilogue right shift (rounding to nearest), 0 to 31.
    relu : bool
        Epilogue ReLU.
    clamp : (int, int), optional
        Epilogue clamp bounds; the value range by default.
    epilogue : bool, optional
        Apply the epilogue; by default when ``shift``, ``relu`` or ``clamp``
        is given. Without it the raw accumulator is read back.
    a_frac_bits, x_frac_bits : int
        Fixed-point scaling of the matrix and of the vector (recorded only).
    name : str
        Name of the program.
    bank_aware : bool
        Order nonzeros to avoid input-vector bank conflicts (else by column).
    fmt, x, nm, prune_nm, band_rows, dense_baseline, split_rows, progress, stream
        As for :func:`compile_kernel`; ``x`` (a vector) makes the kernel
        SpMSpV when it is sparse. With the default configuration (CSR only)
        the program is the classic CSR SpMV.

    Returns
    -------
    Program

    Raises
    ------
    CompileError
        On values that are not integers or do not fit, a bias of the wrong
        length, invalid epilogue settings, or ``split_rows=True`` for
        hardware without the scatter/reduce network.
    """
    if x is not None and len(_shape_of(x)) == 2 and 1 not in _shape_of(x):
        raise CompileError("compile_spmv takes a vector x; use compile_kernel for a matrix")
    return compile_kernel(matrix, config, x=x, kernel="auto", fmt=fmt, nm=nm,
                          prune_nm=prune_nm, bias=bias, shift=shift, relu=relu, clamp=clamp,
                          epilogue=epilogue, a_frac_bits=a_frac_bits, x_frac_bits=x_frac_bits,
                          name=name, bank_aware=bank_aware, band_rows=band_rows,
                          dense_baseline=dense_baseline, split_rows=split_rows,
                          progress=progress, stream=stream)
