"""SpMV benchmark: cycles, ideal cycles, PE utilization and gather stalls.

For P in {4, 8, 16} and densities {1, 5, 20} % on 512 x 512 uniform random
matrices, and on the SuiteSparse samples shipped in examples/data, compile and
run y = A @ x and print a table. The ISA model's cycle prediction is used by
default (the system tests check it against the RTL's counters); pass
``--backend verilator`` to count cycles on the generated Verilog instead.

Usage::

    python bench/spmv.py [--backend model|pysim|icarus|verilator] [--out build/bench/spmv.json]
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.firmware.loader import load_matrix
from zeroskip.firmware.quant import quantize
from zeroskip.sim.backends import BACKENDS, run

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ["west0067", "cage5", "494_bus", "jagmesh7", "Erdos971"]


def workloads(seed=0):
    rng = np.random.default_rng(seed)
    for density in (0.01, 0.05, 0.20):
        matrix = sp.random(512, 512, density=density, format="csr", random_state=rng,
                           data_rvs=lambda n: rng.integers(-100, 100, n) | 1)
        yield f"uniform 512x512 {density:.0%}", matrix
    for name in SAMPLES:
        yield name, load_matrix(ROOT / "examples" / "data" / f"{name}.mtx")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=BACKENDS, default="model")
    parser.add_argument("--pes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "spmv.json")
    args = parser.parse_args(argv)

    rows = []
    header = (f"{'matrix':<22} {'P':>3} {'nnz':>7} {'cycles':>8} {'ideal':>7} "
              f"{'util':>6} {'stall%':>7} {'CV':>6}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(1)
    for name, matrix in workloads():
        quantized = quantize(matrix, value_width=16)
        a_int = sp.csr_matrix(quantized.ints)
        x_int = rng.integers(-8, 8, a_int.shape[1])
        for pes in args.pes:
            config = AcceleratorConfig(pes=pes, nz_depth=16384, row_depth=512, x_depth=1024)
            started = time.perf_counter()
            program = compile_spmv(a_int, config, name=name)
            result = run(program, x_int, backend=args.backend)
            counters = result.counters
            nnz = a_int.count_nonzero()
            ideal = math.ceil(nnz / pes)
            cycles = counters["cycles"]
            row = {
                "matrix": name, "pes": pes, "shape": list(a_int.shape), "nnz": int(nnz),
                "cycles": cycles, "ideal_cycles": ideal,
                "utilization": sum(counters["pe_busy"]) / (pes * cycles),
                "gather_stall_share": counters["gather_stalls"] / (pes * cycles),
                "work_cv": float(program.work_cv) if hasattr(program, "work_cv") else None,
                "tiles": len(program.tiles), "backend": args.backend,
                "seconds": round(time.perf_counter() - started, 2),
            }
            rows.append(row)
            cv = f"{row['work_cv']:.3f}" if row["work_cv"] is not None else "-"
            print(f"{name:<22} {pes:>3} {nnz:>7} {cycles:>8} {ideal:>7} "
                  f"{row['utilization']:>6.3f} {100 * row['gather_stall_share']:>6.1f}% {cv:>6}",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
