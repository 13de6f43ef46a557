"""y = A x for a real sparse matrix on a zeroskip accelerator, checked two ways.

The Python API behind ``zeroskip run``, step by step: load a SuiteSparse
matrix, quantize it to the accelerator's value width, compile it for one
configuration, run the program on a backend (the ISA model by default) and
compare the accelerator's integers with the bit-exact reference, then the
scaled result with scipy's floating-point product.

Usage::

    python examples/spmv.py                              # cage5 on the ISA model
    python examples/spmv.py examples/data/494_bus.mtx --pes 16 --backend verilator
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from zeroskip import AcceleratorConfig
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.firmware.loader import load_matrix
from zeroskip.firmware.quant import quantize
from zeroskip.firmware.reference import spmv_reference
from zeroskip.sim.backends import BACKENDS, run

DATA = Path(__file__).resolve().parent / "data"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("matrix", nargs="?", type=Path, default=DATA / "cage5.mtx")
    parser.add_argument("--pes", type=int, default=4)
    parser.add_argument("--backend", choices=BACKENDS, default="model")
    args = parser.parse_args()

    config = AcceleratorConfig(pes=args.pes)
    a = load_matrix(args.matrix)                       # scipy.sparse.csr_matrix
    qa = quantize(a, value_width=config.value_width)   # integers and fractional bits
    x = np.random.default_rng(0).integers(-8, 8, size=a.shape[1])

    program = compile_spmv(qa.ints, config, a_frac_bits=qa.frac_bits, name=args.matrix.stem)
    result = run(program, x, backend=args.backend)

    y_ref, overflow = spmv_reference(qa.ints, x, config=config)
    assert not overflow, "accumulator overflow"
    exact = np.array_equal(result.y_raw, y_ref)
    y = result.y_raw * 2.0 ** -program.y_frac_bits
    y_float = a @ x
    error = np.max(np.abs(y - y_float)) / np.max(np.abs(y_float))

    cycles = result.counters["cycles"]
    print(f"{args.matrix.stem}: {a.shape[0]} x {a.shape[1]}, {a.nnz} nonzeros, "
          f"{config.pes} PEs, backend {args.backend}")
    print(f"cycles {cycles} (ideal {math.ceil(a.nnz / config.pes)}), "
          f"utilization {100 * a.nnz / (config.pes * cycles):.1f} %")
    print(f"bit-exact against the reference: {'yes' if exact else 'NO'}; "
          f"max |y - A x| against float64: {100 * error:.2g} % of max |A x|")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
