"""Quantization benchmark: the error of y = A x against float64, per matrix.

For the real SuiteSparse samples shipped in examples/data and synthetic
matrices shaped like harder SuiteSparse ones (values spread over seven
decades like zenios, values up to 3e5 like west0479, a cryg2500-like
spread), run ``Accelerator.matmul`` at 16 and 8 bits with random integer and
standard-normal operands on the ISA model and print the normwise and rowwise
errors, the rows more than 1 % off, the dropped nonzeros and the row
exponents. Saves the table as JSON and exits 1 when a 16-bit run's normwise
error exceeds 1e-3 (the target for real matrices with default options).

Usage::

    python bench/quant.py [--out build/bench/quant.json] [--quick]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from zeroskip import Accelerator
from zeroskip.firmware.loader import load_matrix

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ["west0067", "cage5", "494_bus"]
TARGET = 1e-3


def spread(n, nnz, low, high, seed):
    """An n x n random matrix whose magnitudes spread from 10**low to 10**high."""
    rng = np.random.default_rng(seed)
    a = sp.random(n, n, density=nnz / n / n, random_state=seed, format="csr")
    a.data = rng.choice([-1.0, 1.0], a.nnz) * 10.0 ** rng.uniform(low, high, a.nnz)
    return a


def workloads(quick):
    for name in SAMPLES:
        yield name, load_matrix(ROOT / "examples" / "data" / f"{name}.mtx")
    scale = 4 if quick else 1
    yield "zenios-like (1e-3..1e4)", spread(2873 // scale, 27191 // scale, -3, 4, seed=1)
    yield "west0479-like (to 3e5)", spread(479, 1910, -2, np.log10(3e5), seed=2)
    yield "cryg2500-like (1e-1..1e3)", spread(2500 // scale, 12349 // scale, -1, 3, seed=3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "quant.json")
    parser.add_argument("--quick", action="store_true", help="smaller synthetic matrices")
    args = parser.parse_args()

    rows = []
    header = (f"{'matrix':<26} {'bits':>4} {'x':<7} {'normwise':>9} {'rowwise':>9} "
              f"{'>1 %':>5} {'dropped':>13} {'row exp':>9} {'match':>5}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for name, a in workloads(args.quick):
        for width in (16, 8):
            accelerator = Accelerator(value_width=width, acc_width=32)
            for operand in ("integer", "normal"):
                x = rng.integers(-8, 8, a.shape[1]) if operand == "integer" else \
                    rng.standard_normal(a.shape[1])
                result = accelerator.matmul(a, x)
                e, q = result.error, result.quantization
                rows.append({"matrix": name, "value_width": width, "x": operand,
                             "shape": list(a.shape), **{k: e[k] for k in
                                                        ("normwise", "rowwise_max",
                                                         "rows_over_1pct")},
                             "dropped": q["dropped"], "nnz_input": q["nnz_input"],
                             "row_exp_min": q["row_exp_min"], "row_exp_max": q["row_exp_max"],
                             "x_exp": q["x_exp"], "matches_reference": result.matches_reference})
                print(f"{name:<26} {width:>4} {operand:<7} {e['normwise']:>9.2e} "
                      f"{e['rowwise_max']:>9.2e} {e['rows_over_1pct']:>5} "
                      f"{q['dropped']:>6}/{q['nnz_input']:<6} "
                      f"{q['row_exp_min']:>4}..{q['row_exp_max']:<3} "
                      f"{'yes' if result.matches_reference else 'NO':>5}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"target_normwise_16bit": TARGET, "runs": rows}, indent=2))
    print(f"wrote {args.out}")
    missed = [r for r in rows if r["value_width"] == 16 and r["normwise"] > TARGET]
    broken = [r for r in rows if not r["matches_reference"]]
    for r in missed:
        print(f"MISSED: {r['matrix']} 16-bit, x {r['x']}: normwise {r['normwise']:.2e} > {TARGET}")
    for r in broken:
        print(f"NOT BIT-EXACT: {r['matrix']} {r['value_width']}-bit, x {r['x']}")
    return 1 if missed or broken else 0


if __name__ == "__main__":
    sys.exit(main())
