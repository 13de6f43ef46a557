"""y = A x for a real sparse matrix on a zeroskip accelerator, checked two ways.

The public API behind ``zeroskip run``: load a SuiteSparse matrix, then
``Accelerator.matmul`` quantizes it (one power-of-two scale per row), compiles
it for one configuration, runs the program on a backend (the ISA model by
default), compares the accelerator's integers with the bit-exact reference and
the dequantized result with scipy's float64 product.

Usage::

    python examples/spmv.py                              # cage5 on the ISA model
    python examples/spmv.py examples/data/494_bus.mtx --pes 16 --backend verilator
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from zeroskip import Accelerator
from zeroskip.app.api import BACKENDS
from zeroskip.firmware.loader import load_matrix

DATA = Path(__file__).resolve().parent / "data"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("matrix", nargs="?", type=Path, default=DATA / "cage5.mtx")
    parser.add_argument("--pes", type=int, default=4)
    parser.add_argument("--backend", choices=[b for b in BACKENDS if b != "board"],
                        default="model")
    args = parser.parse_args()

    a = load_matrix(args.matrix)                        # scipy.sparse.csr_matrix
    x = np.random.default_rng(0).standard_normal(a.shape[1])
    accelerator = Accelerator(pes=args.pes, backend=args.backend)
    result = accelerator.matmul(a, x, name=args.matrix.stem)

    q, error = result.quantization, result.error
    print(f"{args.matrix.stem}: {a.shape[0]} x {a.shape[1]}, {q['nnz_stored']} of "
          f"{q['nnz_input']} nonzeros stored, {args.pes} PEs, backend {args.backend}")
    print(f"scales: row exponents {q['row_exp_min']} to {q['row_exp_max']}, x exponent "
          f"{q['x_exp']}")
    print(f"cycles {result.cycles} (ideal {result.stats['ideal_cycles']}), "
          f"utilization {100 * result.utilization:.1f} %")
    print(f"bit-exact against the reference: {'yes' if result.matches_reference else 'NO'}; "
          f"normwise error against float64: {error['normwise']:.2g}")
    return 0 if result.matches_reference and result.within() else 1


if __name__ == "__main__":
    sys.exit(main())
