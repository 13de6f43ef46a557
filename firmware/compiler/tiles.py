"""Tiles: the microcode and memory images that run a plan."""

from __future__ import annotations

import numpy as np

from zeroskip.firmware import formats
from zeroskip.firmware.asm import encode_halt, encode_spmv
from zeroskip.firmware.compiler.plans import _batch_size, _x_stride, column_bases
from zeroskip.firmware.program import Tile


def _emit(plan, ks, epi, config, matrix, tiles_out, lane_entries):
    """Append the tiles that run ``plan`` for the right-hand columns ``ks``."""
    halt = encode_halt()
    has_bias = epi.bias is not None
    width = 4 if matrix else 3
    for block in plan.blocks:
        n_max = block.n_max
        stride = _x_stride(block, config)
        size = _batch_size(block, config, epi, matrix, len(ks))
        for first_k in range(0, len(ks), size):
            batch = ks[first_k:first_k + size]
            for index, image_set in enumerate(block.sets):
                first, last = index == 0, index == len(block.sets) - 1
                code = [epi.set_epi] if last and epi.applied else []
                code += _columns_code(block, image_set, epi, len(batch), stride, config,
                                      matrix=matrix, first=first, last=last)
                code.append(halt)
                bases = [column_bases(j, stride, n_max, config) for j in range(len(batch))]
                bias = None
                if last and has_bias:
                    bias = []
                    for rows_p in block.lane_rows:
                        starts = [out for _, out in bases]
                        words = np.zeros(max(starts) + len(rows_p), dtype=np.int64)
                        for start in starts:
                            words[start:start + len(rows_p)] = epi.bias[rows_p]
                        bias.append(words)
                meta = None
                if formats.get(image_set.fmt).spec.uses_meta:
                    meta = [image.meta for image in image_set.images]
                loads = None
                if matrix:
                    loads = np.array([(bases[j][0], k, image_set.x_start, image_set.x_stop)
                                      for j, k in enumerate(batch)
                                      if image_set.x_stop > image_set.x_start],
                                     dtype=np.int64).reshape(-1, 4)
                parts = []
                if last:
                    for j, k in enumerate(batch):
                        for p, rows_p in enumerate(block.lane_rows):
                            columns = [np.full(len(rows_p), p),
                                       bases[j][1] + np.arange(len(rows_p)),
                                       rows_p]
                            if matrix:
                                columns.append(np.full(len(rows_p), k))
                            parts.append(np.stack(columns, axis=1))
                readback = (np.concatenate(parts) if parts else np.zeros((0, width))) \
                    .astype(np.int64).reshape(-1, width)
                tiles_out.append(Tile(
                    code=np.array(code, dtype=np.uint64),
                    ptr=[image.ptr for image in image_set.images],
                    nz=[image.nz for image in image_set.images], bias=bias,
                    x_cols=(image_set.x_start, image_set.x_stop), readback=readback,
                    meta=meta, x_loads=loads))
                for p, image in enumerate(image_set.images):
                    lane_entries[p] += len(batch) * len(image.nz)


def _columns_code(block, image_set, epi, count, stride, config, *, matrix, first, last):
    """The instructions of ``count`` right-hand columns of one image set.

    With ``products_per_lane`` above 1 the columns of a split block run step
    by step (every column's ``SPMV``, then every ``REDUCE``, then every
    finish; the columns write disjoint ``out`` words), so that consecutive
    instructions form passes (the pass rule of :mod:`zeroskip.core.timing`).
    """
    n_max = block.n_max
    per_column = []
    for j in range(count):
        x_base, out_base = column_bases(j, stride, n_max, config) if matrix else (0, 0)
        if block.reduce is not None:
            per_column.append(block.reduce.code(x_base, out_base, epi))
        else:
            per_column.append([encode_spmv(
                fmt=image_set.fmt, x_base=x_base, out_base=out_base, accumulate=not first,
                epilogue=last and epi.applied, bias=last and epi.bias is not None)])
    if config.products_per_lane > 1:
        return [word for step in zip(*per_column) for word in step]
    return [word for words in per_column for word in words]
