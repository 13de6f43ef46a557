"""SpMV benchmark: cycles, ideal cycles, PE utilization, gather stalls, and the
projected time at a clock next to scipy.sparse on one CPU core.

For P in {4, 8, 16} and densities {1, 5, 20} % on 512 x 512 uniform random
matrices, and on the SuiteSparse samples shipped in examples/data, compile and
run y = A @ x and print a table. The ISA model's cycle prediction is used by
default (the system tests check it against the RTL's counters); pass
``--backend verilator`` to count cycles on the generated Verilog instead.
``--cluster-lanes`` sets the lanes per gather cluster (1: every lane has its
own copy of x). The projected time is cycles / the clock of the
configuration on ``--board`` from the build record
(:func:`zeroskip.boards.record.clock_for`: a routed build, else the board's
default clock labelled an unrouted estimate; ``--clock-mhz`` forces one,
labelled as given); "e2e us" adds the host transfers counted by
:mod:`zeroskip.app.transfers` (code, tiles, x, results, control) on AXI4-Lite at
that clock. scipy's time is the best of repeated ``A @ x`` (float64 CSR, the
same x) on one core of this machine in the same run (zeroskip.app.cpu.scipy_spmv:
the thread pinned to one CPU, BLAS pools limited to one thread). All absolute
times and the ratios (scipy / accelerator) are printed.

Usage::

    python bench/spmv.py [--backend model|pysim|icarus|verilator] [--pes 8 32]
                         [--cluster-lanes 1] [--board ulx3s-85f] [--clock-mhz MHZ]
                         [--out build/bench/spmv.json]
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
from zeroskip.app import transfers
from zeroskip.app.cpu import scipy_spmv
from zeroskip.boards.record import clock_for
from zeroskip.boards.targets import DEFAULT_BOARD
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


def scipy_seconds(matrix, x, repeats=200):
    """Best time of ``matrix @ x`` (float64 CSR) on one core, in seconds, and how."""
    peer = scipy_spmv(matrix, x, repeats=repeats)
    return peer["seconds"], peer["one_core"]


def _clock(args, config):
    """The clock (MHz, Hz, source) of ``config``: forced by ``--clock-mhz`` or from the record."""
    if args.clock_mhz is not None:
        return {"mhz": args.clock_mhz, "hz": args.clock_mhz * 1e6,
                "source": f"{args.clock_mhz:g} MHz given by --clock-mhz (not a routed build)"}
    clock = clock_for(args.board, config)
    return {"mhz": clock.mhz, "hz": clock.hz, "source": clock.source}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=BACKENDS, default="model")
    parser.add_argument("--pes", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--cluster-lanes", type=int, default=1)
    parser.add_argument("--board", default=DEFAULT_BOARD,
                        help="board whose build record gives the clock (default %(default)s)")
    parser.add_argument("--clock-mhz", type=float, default=None,
                        help="force the clock of the projected time (default: the record's)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "spmv.json")
    args = parser.parse_args(argv)

    rows = []
    header = (f"{'matrix':<22} {'P':>3} {'nnz':>7} {'cycles':>8} {'ideal':>7} "
              f"{'util':>6} {'stall%':>7} {'CV':>6} {'proj us':>8} {'e2e us':>8} {'scipy us':>8} "
              f"{'x':>6}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(1)
    for name, matrix in workloads():
        quantized = quantize(matrix, value_width=16)
        a_int = sp.csr_matrix(quantized.ints)
        x_int = rng.integers(-8, 8, a_int.shape[1])
        cpu, one_core = scipy_seconds(matrix, x_int)
        for pes in args.pes:
            config = AcceleratorConfig(pes=pes, nz_depth=16384, row_depth=512, x_depth=1024,
                                       cluster_lanes=min(args.cluster_lanes, pes))
            started = time.perf_counter()
            program = compile_spmv(a_int, config, name=name)
            result = run(program, x_int, backend=args.backend)
            counters = result.counters
            clock = _clock(args, config)
            moved = transfers.count_program(program)
            link_s = sum(transfers.link_seconds(moved, "axi4-lite", clock_hz=clock["hz"]).values())
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
                "cluster_lanes": config.cluster_lanes, "clock_mhz": clock["mhz"],
                "clock_source": clock["source"],
                "projected_us": cycles / clock["mhz"],
                "transfer_words": {k: moved.words(k) for k in moved.kinds()},
                "end_to_end_axi4_lite_us": cycles / clock["mhz"] + 1e6 * link_s,
                "scipy_us": cpu * 1e6,
                "seconds": round(time.perf_counter() - started, 2),
            }
            rows.append(row)
            cv = f"{row['work_cv']:.3f}" if row["work_cv"] is not None else "-"
            print(f"{name:<22} {pes:>3} {nnz:>7} {cycles:>8} {ideal:>7} "
                  f"{row['utilization']:>6.3f} {100 * row['gather_stall_share']:>6.1f}% {cv:>6} "
                  f"{row['projected_us']:>8.1f} {row['end_to_end_axi4_lite_us']:>8.1f} "
                  f"{row['scipy_us']:>8.1f} "
                  f"{row['scipy_us'] / row['projected_us']:>6.2f}",
                  flush=True)
    print(f"scipy: {one_core}")
    for source in dict.fromkeys(r["clock_source"] for r in rows):
        print(f"clock: {source}")
    for pes in args.pes:
        mine = [r for r in rows if r["pes"] == pes]
        means = [math.exp(sum(math.log(r["scipy_us"] / r[key]) for r in mine) / len(mine))
                 for key in ("projected_us", "end_to_end_axi4_lite_us")]
        print(f"P={pes}: geometric mean speed-up over scipy (one core) at "
              f"{mine[0]['clock_mhz']:g} MHz: compute {means[0]:.2f}x, end to end over "
              f"AXI4-Lite {means[1]:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
