"""Streamed SpMV: how much of the external memory's transfers the double buffering hides.

One ``n x n`` matrix with ``k`` nonzeros in every row (the Graph Challenge
layer's shape by default: 1024 x 1024, 32 per row) runs streamed
(``compile_spmv(..., stream=True)``) on the ISA model through the driver, for
every ``ext_words_per_cycle`` and at the ULX3S's SDRAM (``ulx3s-sdram`` of
:mod:`zeroskip.core.extmem`: 8 words per 17 cycles, its own latency); the
result is checked bit-exact against SciPy.
Printed per bandwidth: the cycles of the streamed run, the compute alone (the
same tiles host-loaded, half the lane memories each), the transfers alone
(:func:`zeroskip.core.timing.load_cycles` summed over the ``LOAD``) and their
sum (no overlap), and the host-loaded program on the full lane memories.

Usage::

    python bench/stream.py [--rows 1024] [--per-row 32] [--pes 8] [--latency 20]
"""

import argparse
import sys

import numpy as np
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.core import timing
from zeroskip.core.extmem import ext_preset
from zeroskip.core.isa import Opcode
from zeroskip.firmware.asm import decode
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.firmware.compiler.stream import half_config
from zeroskip.sim.backends import run_model


def matrix(rows, per_row, seed=0):
    rng = np.random.default_rng(seed)
    cols = np.concatenate([rng.choice(rows, per_row, replace=False) for _ in range(rows)])
    values = rng.integers(1, 8, rows * per_row) * rng.choice([-1, 1], rows * per_row)
    a = sp.csr_matrix((values, (np.repeat(np.arange(rows), per_row), cols)), shape=(rows, rows))
    return a.astype(np.int64), rng.integers(-100, 100, rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--per-row", type=int, default=32)
    parser.add_argument("--pes", type=int, default=8)
    parser.add_argument("--latency", type=int, default=20)
    args = parser.parse_args(argv)
    a, x = matrix(args.rows, args.per_row)
    base = AcceleratorConfig(pes=args.pes, x_depth=max(16, 1 << (args.rows - 1).bit_length()))
    print(f"{args.rows} x {args.rows}, {a.nnz} nonzeros, {args.pes} lanes, ext_latency "
          f"{args.latency}")
    print(f"{'words/cycle':>11} {'runs':>5} {'tiles':>5} {'streamed':>9} {'compute':>8} "
          f"{'transfers':>9} {'serial':>8}")
    rates = [(str(n), dict(ext_words=1 << 23, ext_latency=args.latency,
                           ext_words_per_cycle=n)) for n in (1, 2, 4, 8)]
    preset = ext_preset("ulx3s-sdram")
    rates.append((f"{preset.ext_words_per_cycle}/{preset.ext_rate_cycles}", preset.fields()))
    for per_cycle, changes in rates:
        config = base.replace(**changes)
        program = compile_spmv(a, config, stream=True)
        result = run_model(program, x)
        if not np.array_equal(result.y_raw, a @ x):
            print("zeroskip: error: the streamed result differs from SciPy", file=sys.stderr)
            return 1
        half = compile_spmv(a, half_config(config))
        compute = sum(half.tile_cycles(tile, x) for tile in half.tiles)
        loads = sum(timing.load_cycles(operands["count"], config) for tile in program.tiles
                    for opcode, operands in map(decode, tile.code.tolist())
                    if opcode is Opcode.LOAD)
        print(f"{per_cycle:>11} {len(program.tiles):>5} {len(half.tiles):>5} "
              f"{result.counters['cycles']:>9} {compute:>8} {loads:>9} {compute + loads:>8}")
    plain = compile_spmv(a, base)
    print(f"host-loaded on the full lane memories: {plain.predicted_cycles(x)} cycles in "
          f"{len(plain.tiles)} tiles (the host's loads between them not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
