"""Co-simulation load time: AXI4-Lite against the simulators' back door.

A random matrix (2048 x 2048, about 30,000 nonzeros by default) is compiled
for the default accelerator (8 PEs, X 1024, nz 2048, rows 256 per lane) and
run on Icarus and Verilator twice: once loading microcode, lane images and X
through AXI4-Lite (cocotbext-axi from Python, as a board's host would) and
once through the back door (cocotb handles on the generated Verilog's
memories). Control, status polling and counters use AXI4-Lite both times.

Times are wall-clock seconds measured by the driver inside the simulation
(``RunResult.seconds``: load, run to ``HALT``, read back counters and
results), summed over tiles; "total" adds the simulator's start-up and the
pickling around it. The hardware is built once per simulator before timing.
Both runs must give the ISA model's results and counters bit for bit.

Target: the back door loads at least 20 times faster than AXI4-Lite on each
simulator. Prints a table, saves build/bench/cosim.json, exits 1 on a miss.

Usage::

    python bench/cosim.py [--size 2048] [--nnz 30000] [--simulators icarus verilator]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from zeroskip import AcceleratorConfig
from zeroskip.firmware.compiler import compile_spmv
from zeroskip.sim.backends import LOAD_MODES, run
from zeroskip.sim.cocotb_backend import SIMULATORS, build_simulation

ROOT = Path(__file__).resolve().parent.parent
TARGET = 20.0


def random_matrix(size, nnz, seed):
    rng = np.random.default_rng(seed)
    matrix = sp.random(size, size, density=nnz / size ** 2, format="csr", random_state=rng,
                       data_rvs=lambda n: rng.integers(-100, 100, n))
    matrix.data[matrix.data == 0] = 1
    return matrix.astype(np.int64)


def loaded_words(program):
    """32-bit words the driver writes: microcode halves, lane images, X slices."""
    words = 0
    loaded_x = None
    for tile in program.tiles:
        words += 2 * len(tile.code)
        for images in (tile.ptr, tile.nz, getattr(tile, "meta", None), tile.bias):
            words += sum(len(image) for image in images or ())
        loads = tuple(tile.loads())
        if loads != loaded_x:
            words += sum(stop - start for _, _, start, stop in loads)
            loaded_x = loads
    return words


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="rows and columns")
    parser.add_argument("--nnz", type=int, default=30_000, help="nonzeros (about)")
    parser.add_argument("--simulators", nargs="+", choices=SIMULATORS, default=list(SIMULATORS))
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "cosim.json")
    args = parser.parse_args(argv)

    config = AcceleratorConfig()
    matrix = random_matrix(args.size, args.nnz, seed=0)
    x = np.random.default_rng(1).integers(-100, 100, args.size)
    program = compile_spmv(matrix, config)
    words = loaded_words(program)
    model = run(program, x, backend="model")
    print(f"{args.size} x {args.size}, {matrix.nnz} nonzeros, {len(program.tiles)} tiles, "
          f"{words} words to load; P = {config.pes}, {model.counters['cycles']} "
          f"accelerator cycles")

    rows = []
    header = (f"{'simulator':<10} {'load':<9} {'load s':>8} {'words/s':>9} {'run s':>7} "
              f"{'read s':>7} {'total s':>8} {'load speedup':>12}")
    print(header)
    print("-" * len(header))
    ok = True
    for simulator in args.simulators:
        build_simulation(simulator, config)
        axi_load = None
        for load in LOAD_MODES:
            started = time.perf_counter()
            result = run(program, x, backend=simulator, load=load)
            total = time.perf_counter() - started
            same = (np.array_equal(result.y_raw, model.y_raw)
                    and result.counters == model.counters)
            ok &= same
            seconds = result.seconds
            if load == "axi":
                axi_load = seconds["load"]
            speedup = axi_load / seconds["load"] if axi_load else None
            rows.append({"simulator": simulator, "load": load, "seconds": seconds,
                         "total_seconds": total, "words": words,
                         "words_per_second": words / seconds["load"],
                         "load_speedup": speedup, "matches_model": same})
            print(f"{simulator:<10} {load:<9} {seconds['load']:>8.2f} "
                  f"{words / seconds['load']:>9.0f} {seconds['run']:>7.2f} "
                  f"{seconds['read']:>7.2f} {total:>8.1f} "
                  f"{'' if load == 'axi' else f'{speedup:.0f}x':>12}"
                  f"{'' if same else '  RESULTS DIFFER FROM THE MODEL'}", flush=True)

    print("\ntargets")
    for row in rows:
        if row["load"] == "backdoor" and row["load_speedup"] is not None:
            met = row["load_speedup"] >= TARGET
            ok &= met
            print(f"  {row['simulator']}: back-door load >= {TARGET:.0f}x faster than AXI4-Lite"
                  f"  {row['load_speedup']:.0f}x  {'met' if met else 'MISSED'}")
    print(f"  results equal to the ISA model on every run  "
          f"{'met' if all(r['matches_model'] for r in rows) else 'MISSED'}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "size": args.size, "nnz": int(matrix.nnz), "tiles": len(program.tiles),
        "words": words, "cycles": model.counters["cycles"], "config": config.to_dict(),
        "rows": rows}, indent=1))
    print(f"saved {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
