"""Scale benchmark: compile and model time against the nonzeros, not the dimensions.

Cases (each in a fresh process, so that its peak memory is its own):

(a) hypersparse: a 100,000 x 100,000 matrix with 10 nonzeros, compiled with
    the defaults ``zeroskip run`` uses (``compile_kernel``, dense baseline
    included) and run on the ISA model. Target: compile + run < 5 s.
(b) 1M nonzeros: a 20,000 x 20,000 uniform random matrix with 1,000,000
    nonzeros (values 1..99), compiled with the defaults. Targets: compile
    >= 250,000 nonzeros/s (stretch 1,000,000/s); the model runs the program
    at >= 1,000,000 nonzeros/s, measured cold (the schedule memory emptied
    first, as for a program loaded from a file); the warm run (schedules
    remembered from the compile, as in ``zeroskip run``) is shown too.
(c) the same matrix with ``bank_aware=False`` (the gather ordering off), for
    reference only.

Each row also shows where the time goes: the gather ordering of the lanes'
nonzeros (``_bank_order``) and the replay of the gather arbitration
(``zeroskip.core.timing.schedule``); "rest" is everything else. The default
accelerator configuration (8 PEs, 16 x banks); one process, one core of
this machine. Prints a table, saves build/bench/scale.json and exits 1 when
a target is missed.

Usage::

    python bench/scale.py [--nnz 1000000] [--size 20000] [--out build/bench/scale.json]
"""

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent

TARGETS = {"hypersparse_total_s": 5.0, "compile_nnz_per_s": 250_000,
           "compile_nnz_per_s_stretch": 1_000_000, "model_nnz_per_s": 1_000_000}


def random_matrix(size, nnz, seed=0):
    """``size`` x ``size``, ``nnz`` distinct positions, integer values 1..99."""
    rng = np.random.default_rng(seed)
    flat = np.unique(rng.integers(0, size * size, int(nnz * 1.05) + 16))
    flat = rng.permutation(flat)[:nnz]
    values = rng.integers(1, 100, len(flat))
    return sp.csr_matrix((values, (flat // size, flat % size)), shape=(size, size),
                         dtype=np.int64)


class _Timers:
    """Wall time spent inside the gather ordering and the schedule replay."""

    def __init__(self):
        from zeroskip.core import timing
        from zeroskip.firmware.compiler import plans, split
        self.seconds = {"order": 0.0, "schedule": 0.0}
        self._wrap(timing, "schedule", "schedule")
        for module in (plans, split):
            self._wrap(module, "_bank_order", "order")

    def _wrap(self, module, name, key):
        original = getattr(module, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - start
        setattr(module, name, timed)

    def take(self):
        taken = dict(self.seconds)
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        return taken


def _case(name, size, nnz, bank_aware, queue):
    from zeroskip import AcceleratorConfig
    from zeroskip.firmware import cycles
    from zeroskip.firmware.compiler import compile_kernel
    from zeroskip.sim.backends import run_model

    timers = _Timers()
    config = AcceleratorConfig()
    a = random_matrix(size, nnz)
    x = np.random.default_rng(1).integers(-8, 8, size)
    start = time.perf_counter()
    program = compile_kernel(a, config, bank_aware=bank_aware)
    compile_s = time.perf_counter() - start
    compile_parts = timers.take()
    runs = {}
    for kind in ("cold", "warm"):
        if kind == "cold":
            cycles.clear_cache()
        start = time.perf_counter()
        result = run_model(program, x)
        runs[kind] = (time.perf_counter() - start, timers.take())
    exact = bool(np.array_equal(result.y_raw, a @ x))
    queue.put({
        "case": name, "shape": [size, size], "nnz": int(a.nnz), "bank_aware": bank_aware,
        "tiles": len(program.tiles), "cycles": int(result.counters["cycles"]),
        "exact": exact,
        "compile_s": compile_s, "compile_order_s": compile_parts["order"],
        "compile_schedule_s": compile_parts["schedule"],
        "run_cold_s": runs["cold"][0], "run_cold_schedule_s": runs["cold"][1]["schedule"],
        "run_warm_s": runs["warm"][0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })


def run_case(name, size, nnz, bank_aware=True):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_case, args=(name, size, nnz, bank_aware, queue))
    process.start()
    row = queue.get()
    process.join()
    return row


def _rate(nnz, seconds):
    return nnz / seconds if seconds else float("inf")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nnz", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "scale.json")
    args = parser.parse_args(argv)

    rows = [run_case("hypersparse", 100_000, 10),
            run_case("many nonzeros", args.size, args.nnz),
            run_case("many nonzeros, bank_aware=False", args.size, args.nnz, bank_aware=False)]
    print(f"{'case':34} {'shape':>15} {'nnz':>9} {'tiles':>6} {'compile s':>9} "
          f"{'(order':>7} {'sched)':>7} {'nnz/s':>9} {'run s':>7} {'(sched)':>7} "
          f"{'nnz/s':>9} {'warm s':>7} {'RSS MB':>7} exact")
    for row in rows:
        row["compile_nnz_per_s"] = _rate(row["nnz"], row["compile_s"])
        row["run_nnz_per_s"] = _rate(row["nnz"], row["run_cold_s"])
        row["run_warm_nnz_per_s"] = _rate(row["nnz"], row["run_warm_s"])
        shape = f"{row['shape'][0]}x{row['shape'][1]}"
        print(f"{row['case']:34} {shape:>15} {row['nnz']:9d} {row['tiles']:6d} "
              f"{row['compile_s']:9.2f} {row['compile_order_s']:7.2f} "
              f"{row['compile_schedule_s']:7.2f} {row['compile_nnz_per_s']:9.0f} "
              f"{row['run_cold_s']:7.2f} {row['run_cold_schedule_s']:7.2f} "
              f"{row['run_nnz_per_s']:9.0f} {row['run_warm_s']:7.2f} "
              f"{row['peak_rss_mb']:7.0f} {'yes' if row['exact'] else 'NO'}")
    hyper, big = rows[0], rows[1]
    checks = [
        ("hypersparse compile + run < 5 s", hyper["compile_s"] + hyper["run_cold_s"]
         < TARGETS["hypersparse_total_s"]),
        ("compile >= 250,000 nnz/s", big["compile_nnz_per_s"] >= TARGETS["compile_nnz_per_s"]),
        ("model run (cold) >= 1,000,000 nnz/s", big["run_nnz_per_s"]
         >= TARGETS["model_nnz_per_s"]),
        ("results exact", all(row["exact"] for row in rows)),
    ]
    stretch = big["compile_nnz_per_s"] >= TARGETS["compile_nnz_per_s_stretch"]
    print()
    for label, ok in checks:
        print(f"{'met   ' if ok else 'MISSED'} {label}")
    print(f"{'met   ' if stretch else 'missed'} (stretch) compile >= 1,000,000 nnz/s")
    print("(order: gather ordering of the nonzeros; sched: replay of the gather arbitration; "
          "default configuration, 8 PEs; one core)")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} (1 min) on {os.cpu_count()} cores; "
          f"times are wall-clock and grow with it")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"targets": TARGETS, "rows": rows, "loadavg": load,
                                    "met": {label: ok for label, ok in checks}},
                                   indent=2) + "\n")
    print(f"saved {args.out}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
