"""Sparsity benchmark: speedup over dense mode, utilization, 2:4 against dense.

For P in {8, 16}, on accelerators with every format enabled (the default
buffer depths otherwise), compile with ``fmt="auto"`` and run on a backend
(the ISA model by default, whose cycle prediction the system tests check
against the RTL's counters):

(a) speedup over dense mode on the same array versus density, 0.5 % to 90 %,
    for weight sparsity alone (SpMV, dense activations) and for weight x
    activation sparsity (activations as sparse as the weights: SpMSpV, the
    cost model choosing row or column mode);
(b) PE utilization (PE busy cycles / (P x cycles)) of SpMV on uniform random
    matrices and on the skewed SuiteSparse samples of examples/data
    (Erdos971 foremost), with the predicted per-PE work spread;
(c) a 2:4-structured matrix in the N:M format (and whatever auto picks)
    against dense mode.

Dense mode is measured once per array (DENSE format on the same backend) and
compared with the compiler's prediction. Prints tables, checks the targets
(benchmarks, not tests) and saves build/bench/sparsity.png and .json.

Targets: utilization >= 0.85 on uniform random and >= 0.75 on Erdos971;
speedup over dense >= 0.8 / density for densities 2.5-50 %; 2:4 exactly 2x
dense; auto never more than 5 % slower than dense.

Usage::

    python bench/sparsity.py [--backend model|pysim|icarus|verilator] [--size 512]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.firmware.formats import prune_nm
from zeroskip.firmware.loader import load_matrix
from zeroskip.firmware.quant import quantize
from zeroskip.sim.backends import BACKENDS, run

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("csr", "coo", "bitmap", "nm", "dense", "csc")
DENSITIES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
SAMPLES = ("Erdos971", "494_bus", "jagmesh7", "west0067", "cage5")
UNIFORM = (0.01, 0.05, 0.2)


def uniform(rng, rows, cols, density):
    matrix = sp.random(rows, cols, density=density, format="csr", random_state=rng,
                       data_rvs=lambda n: rng.integers(1, 100, n))
    return matrix.astype(np.int64)


def ragged(rng, rows, cols):
    """Four rows of 80-100 % density among rows of 0.5 % (a power-law-like skew)."""
    matrix = uniform(rng, rows, cols, 0.005).tolil()
    for row in rng.choice(rows, 4, replace=False):
        picked = rng.choice(cols, int(cols * rng.uniform(0.8, 1.0)), replace=False)
        matrix[row, picked] = rng.integers(1, 100, len(picked))
    return matrix.tocsr()


def activations(rng, cols, density):
    x = rng.integers(1, 8, cols) * rng.choice([-1, 1], cols)
    if density < 1:
        x = x * (rng.random(cols) < density)
    return x.astype(np.int64)


class Bench:
    def __init__(self, backend):
        self.backend = backend
        self.dense = {}

    def cycles(self, program, x):
        result = run(program, x, backend=self.backend)
        return result.counters

    def dense_cycles(self, matrix, config, x, predicted):
        """Dense mode measured on the backend (once per array shape): every row and
        column of the array stored and multiplied, the zeros too."""
        key = (matrix.shape, config.fingerprint)
        if key not in self.dense:
            full = np.ones(matrix.shape, dtype=np.int64)
            program = compile_kernel(full, config, fmt="dense", dense_baseline=False)
            self.dense[key] = self.cycles(program, x)["cycles"]
        measured = self.dense[key]
        if predicted is not None and predicted != measured:
            print(f"warning: dense mode predicted {predicted}, measured {measured}")
        return measured


def speedup_table(bench, pes, size, rng):
    config = AcceleratorConfig(pes=pes, formats=FORMATS)
    rows = []
    print(f"\n(a) speedup over dense mode, P = {pes}, {size} x {size}")
    header = (f"{'density':>8} {'kind':<18} {'kernel':<7} {'format':<9} {'cycles':>7} "
              f"{'dense':>7} {'speedup':>8} {'target':>7} {'auto/dense':>10}")
    print(header)
    print("-" * len(header))
    for density in DENSITIES:
        matrix = uniform(rng, size, size, density)
        for kind in ("weights", "weights x activ."):
            sparse = kind != "weights"
            x = activations(rng, size, density if sparse else 1.0)
            started = time.perf_counter()
            # Sparse activations: SpMSpV, where the cost model weighs column mode too.
            program = compile_kernel(matrix, config, x=x, kernel="spmspv" if sparse else "spmv")
            counters = bench.cycles(program, x)
            dense = bench.dense_cycles(matrix, config, x, program.dense_cycles)
            cycles = counters["cycles"]
            speedup = dense / cycles
            target = 0.8 / density if 0.025 <= density <= 0.5 else None
            row = {"pes": pes, "size": size, "density": density, "kind": kind,
                   "kernel": program.kernel, "format": program.format_label,
                   "cycles": cycles, "dense_cycles": dense, "speedup": speedup,
                   "target": target, "auto_over_dense": cycles / dense,
                   "seconds": round(time.perf_counter() - started, 2)}
            rows.append(row)
            mark = "" if target is None else ("ok" if speedup >= target else "MISS")
            print(f"{100 * density:>7.1f}% {kind:<18} {program.kernel:<7} "
                  f"{program.format_label:<9} {cycles:>7} {dense:>7} {speedup:>7.2f}x "
                  f"{'' if target is None else f'{target:.1f}x':>7} "
                  f"{cycles / dense:>10.3f} {mark}", flush=True)
    return rows


def utilization_table(bench, pes, rng):
    config = AcceleratorConfig(pes=pes, formats=FORMATS)
    rows = []
    print(f"\n(b) utilization of SpMV (PE busy / (P x cycles)), P = {pes}")
    header = (f"{'matrix':<22} {'nnz':>7} {'format':<7} {'cycles':>7} {'ideal':>6} "
              f"{'util':>6} {'target':>6} {'CV':>6} {'long rows':>9} {'split':>5}")
    print(header)
    print("-" * len(header))
    cases = [(f"uniform 512x512 {100 * d:g}%", uniform(rng, 512, 512, d), 0.85, "auto")
             for d in UNIFORM]
    cases.append(("uniform 1024x1024 1%", uniform(rng, 1024, 1024, 0.01), 0.85, "auto"))
    for name in SAMPLES:
        matrix = sp.csr_matrix(quantize(load_matrix(ROOT / "examples" / "data" / f"{name}.mtx"),
                                        value_width=16).ints)
        cases.append((name, matrix, 0.75 if name == "Erdos971" else None, "auto"))
    # Long rows next to short ones: whole rows leave most PEs idle; split
    # rows are summed back by REDUCE.
    skewed = ragged(rng, 512, 512)
    cases += [("ragged 512x512 whole", skewed, None, False),
              ("ragged 512x512 split", skewed, None, "auto")]
    for name, matrix, target, split_rows in cases:
        x = activations(rng, matrix.shape[1], 1.0)
        program = compile_kernel(matrix, config, x=x, kernel="spmv", dense_baseline=False,
                                 split_rows=split_rows)
        counters = bench.cycles(program, x)
        cycles = counters["cycles"]
        utilization = sum(counters["pe_busy"]) / (pes * cycles)
        ideal = -(-matrix.nnz // pes)
        balance = program.report["balance"]
        row = {"pes": pes, "matrix": name, "nnz": int(matrix.nnz), "format": program.format_label,
               "cycles": cycles, "ideal": ideal, "utilization": utilization, "target": target,
               "work_cv": program.work_cv, "long_rows": balance["long_rows"],
               "split": bool(balance["split"])}
        rows.append(row)
        mark = "" if target is None else ("ok" if utilization >= target else "MISS")
        print(f"{name:<22} {matrix.nnz:>7} {program.format_label:<7} {cycles:>7} {ideal:>6} "
              f"{utilization:>6.3f} {'' if target is None else f'{target:.2f}':>6} "
              f"{program.work_cv:>6.3f} {balance['long_rows']:>9} "
              f"{'yes' if balance['split'] else 'no':>5} {mark}", flush=True)
    return rows


def nm_table(bench, pes, size, rng):
    config = AcceleratorConfig(pes=pes, formats=FORMATS)
    matrix, _ = prune_nm(sp.csr_matrix(rng.integers(1, 100, (size, size))), 2, 4)
    x = activations(rng, size, 1.0)
    rows = []
    print(f"\n(c) 2:4 against dense mode, P = {pes}, {size} x {size}")
    for fmt in ("nm", "auto"):
        program = compile_kernel(matrix, config, x=x, fmt=fmt)
        cycles = bench.cycles(program, x)["cycles"]
        dense = bench.dense_cycles(matrix, config, x, program.dense_cycles)
        rows.append({"pes": pes, "fmt": fmt, "format": program.format_label, "cycles": cycles,
                     "dense_cycles": dense, "ratio": dense / cycles})
        print(f"  --format {fmt:<5} ({program.format_label:<4}): {cycles} cycles, dense "
              f"{dense}: {dense / cycles:.3f}x (target 2x)", flush=True)
    return rows


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    for pes in sorted({r["pes"] for r in rows}):
        for kind, style in (("weights", "-o"), ("weights x activ.", "--s")):
            mine = [r for r in rows if r["pes"] == pes and r["kind"] == kind]
            ax.plot([100 * r["density"] for r in mine], [r["speedup"] for r in mine], style,
                    label=f"P={pes}, {kind}")
    densities = np.array([0.025, 0.5])
    ax.plot(100 * densities, 0.8 / densities, ":k", label="target 0.8 / density")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("density (%)")
    ax.set_ylabel("speedup over dense mode (same array)")
    ax.set_title("zeroskip: auto format vs dense mode")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=BACKENDS, default="model")
    parser.add_argument("--pes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--size", type=int, default=512, help="rows and columns of (a) and (c)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "sparsity.json")
    args = parser.parse_args(argv)

    bench = Bench(args.backend)
    rng = np.random.default_rng(0)
    results = {"speedup": [], "utilization": [], "nm": []}
    for pes in args.pes:
        results["speedup"] += speedup_table(bench, pes, args.size, rng)
        results["utilization"] += utilization_table(bench, pes, rng)
        results["nm"] += nm_table(bench, pes, args.size, rng)

    print("\ntargets")
    checks = []
    uniform_rows = [r for r in results["utilization"] if r["matrix"].startswith("uniform")]
    erdos = [r for r in results["utilization"] if r["matrix"] == "Erdos971"]
    checks.append(("utilization >= 0.85 on uniform random",
                   min(r["utilization"] for r in uniform_rows), 0.85))
    checks.append(("utilization >= 0.75 on Erdos971", min(r["utilization"] for r in erdos), 0.75))
    ratios = [r["speedup"] * r["density"] for r in results["speedup"] if r["target"]]
    checks.append(("speedup x density >= 0.8 (2.5-50 %)", min(ratios), 0.8))
    nm_ratios = [r["ratio"] for r in results["nm"] if r["fmt"] == "nm"]
    checks.append(("2:4 / dense = 2x (worst)", max(nm_ratios, key=lambda v: abs(v - 2)), None))
    worst_auto = max(r["auto_over_dense"] for r in results["speedup"])
    checks.append(("auto / dense <= 1.05 (worst)", worst_auto, None))
    for label, value, bound in checks:
        if bound is not None:
            ok = value >= bound
        elif label.startswith("2:4"):
            ok = abs(value - 2) <= 0.01 * 2
        else:
            ok = value <= 1.05
        print(f"  {label:<40} {value:>8.3f}  {'met' if ok else 'MISSED'}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    png = plot(results["speedup"], args.out.with_suffix(".png"))
    print(f"\nsaved {args.out}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
