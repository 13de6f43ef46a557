"""Cost-model benchmark: the plan the compiler picks against every plan the hardware runs.

For every layer of the digits MLP (64-64-10, int8, dense and pruned 90 %
gradually, its test split's first ``--batch`` images as the activations) and
of the Graph Challenge network (1024 x 1024, 30 layers, int16 with 8
fractional activation bits, a batch of ``--batch`` images), and for every
SpMV sample in examples/data (``*.mtx``, with its operand file where one
ships, else a seeded random vector), compile each plan the configuration can
execute: ``fmt="auto"`` (the cost model's choice), each enabled row format
with split rows off, CSR with split rows forced on (when the hardware has
the scatter/reduce network), column mode (CSC) and dense mode (when
enabled). Every program runs on the ISA model (``zeroskip.firmware.model``,
whose cycles the system tests hold equal to the RTL's counters) on the same
activations it was compiled for.

The table shows per case the chosen plan (what ``auto`` compiled to) and its
run cycles, the fastest plan and its run cycles, their ratio, and the cost
model's predicted cycles (the sum of the bands' winners) next to the run
cycles of the chosen program. The configuration is the board's
(``zeroskip.app.nn.infer.network_config``: 8 PEs of the ULX3S-85F, formats CSR
and CSC); ``--formats`` enables more formats. The JSON goes to
``--out`` (build/bench/plans.json). Exit status 1 when a choice is more than
``--tolerance`` (10 %) slower than the best plan, or when the cost model's
prediction differs from the ISA model's cycles.

Usage::

    python bench/plans.py [--only digits graph spmv] [--layers 1 2 30]
                          [--formats csr coo bitmap dense csc] [--out build/bench/plans.json]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from zeroskip.app.nn.infer import network_config
from zeroskip.core import progress
from zeroskip.core.errors import CompileError, DeviceError
from zeroskip.firmware.compiler import compile_kernel
from zeroskip.sim.backends import run_model

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data"
GROUPS = ("digits", "graph", "spmv")


def plan_options(config):
    """``(label, fmt, split_rows)`` of every plan ``config`` can execute, ``auto`` first."""
    options = [("auto", "auto", "auto")]
    for name in config.formats:
        if name == "csc":
            continue
        options.append((name, name, False))
        if name == "csr" and config.reduce:
            options.append(("csr+split", "csr", True))
    if "csc" in config.formats:
        options.append(("csc", "csc", False))
    return options


def run_plan(units, config, fmt, split_rows):
    """Compile and run every unit of a case with one plan.

    ``units``: ``(matrix, x, compile options)``; returns ``None`` when the
    plan does not compile for some unit (the hardware cannot execute it),
    else ``{"predicted", "run", "formats"}``.
    """
    predicted = run = 0
    formats = []
    for matrix, x, options in units:
        try:
            program = compile_kernel(matrix, config, x=x, fmt=fmt, split_rows=split_rows,
                                     dense_baseline=False, **options)
        except CompileError as error:
            return {"error": str(error)}
        try:
            result = run_model(program, x)
        except DeviceError as error:
            raise SystemExit(f"{program.name}: {error}") from None
        predicted += sum(band["cycles"] for band in program.report["bands"])
        run += int(result.counters["cycles"])
        for band in program.report["bands"]:
            label = band["winner"]
            split = program.report["balance"]["split"] and label.startswith("csr")
            label += "+split" if split else ""
            if label not in formats:
                formats.append(label)
    return {"predicted": int(predicted), "run": int(run), "formats": formats}


# Cases.


def digits_cases(config, batch):
    """The digits MLP's layers, dense and 90 % pruned (gradually), int8."""
    from zeroskip.app.nn import digits
    from zeroskip.app.nn.quantize import quantize_network
    x_train, x_test, y_train, _ = digits.load_data()
    model = digits.train(x_train, y_train)
    pruned, _ = digits.gradual_prune(model, x_train, y_train, 0.9)
    for label, network in (("dense", digits.to_network(model)),
                           ("pruned 90%", digits.to_network(pruned))):
        q = quantize_network(network, x_train, value_width=config.value_width,
                             acc_width=config.acc_width)
        yield from _network_cases(f"digits {label}", q, q.quantize_inputs(x_test[:batch]))


def graph_cases(config, batch, layers):
    """The Graph Challenge network's layers (int16, 8 fractional activation bits)."""
    from zeroskip.app.nn import graph_challenge as gc
    from zeroskip.app.nn.quantize import quantize_network
    network, images, _ = gc.load(DATA / "graph-challenge")
    x = images[:batch]
    q = quantize_network(network, x, value_width=config.value_width,
                         acc_width=config.acc_width, act_frac_bits=8)
    wanted = set(range(1, len(network.layers) + 1) if layers is None else layers)
    yield from _network_cases("graph", q, q.quantize_inputs(x), wanted)


def _network_cases(prefix, q, x, wanted=None):
    """One case per layer: its shift groups as units, on the layer's activations."""
    for index, layer in enumerate(q.layers):
        if wanted is None or index + 1 in wanted:
            units = []
            for shift, rows in layer.groups():
                options = {"bias": None if layer.bias is None else layer.bias[rows],
                           "name": layer.name}
                if layer.epilogue:
                    options.update(shift=shift, relu=layer.relu, epilogue=True,
                                   clamp=layer.clamp)
                units.append((layer.weight[rows], x.T.copy(), options))
            yield f"{prefix} {layer.name}", units
        x = q.layer_reference(index, x)


def spmv_cases(config):
    """Every ``*.mtx`` in examples/data with its operand (``NAME_x.npy`` / ``NAME_X.npy``)."""
    from zeroskip.app.api import Accelerator
    from zeroskip.firmware.loader import load_matrix
    accelerator = Accelerator(config)
    for path in sorted(DATA.glob("*.mtx")):
        matrix = load_matrix(path)
        x = None
        for suffix in ("_x.npy", "_X.npy"):
            candidate = path.with_name(path.stem + suffix)
            if candidate.exists():
                x = np.load(candidate)
        if x is None:
            x = np.random.default_rng(2026).standard_normal(matrix.shape[1])
        q = accelerator.quantize(matrix, x)
        x_int = accelerator.quantize_operand(q.ints, x).ints
        yield f"spmv {path.stem}", [(sp.csr_matrix(q.ints), x_int, {"name": path.stem})]


# The table.


def measure(name, units, config, options, tolerance):
    """Every plan of one case; the row of the table."""
    plans = {}
    for label, fmt, split_rows in options:
        plans[label] = run_plan(units, config, fmt, split_rows)
    chosen = plans["auto"]
    runnable = {k: v for k, v in plans.items() if k != "auto" and "run" in v}
    best = min(runnable, key=lambda k: runnable[k]["run"])
    if plans["auto"]["run"] < runnable[best]["run"]:
        best = "auto"       # a per-band or per-column mix beats every single plan
    best_run = plans[best]["run"]
    ratio = chosen["run"] / best_run if best_run else 1.0
    return {"case": name, "chosen": "/".join(chosen["formats"]), "chosen_cycles": chosen["run"],
            "best": best, "best_cycles": best_run, "ratio": round(ratio, 4),
            "predicted": chosen["predicted"], "run": chosen["run"],
            "prediction_exact": chosen["predicted"] == chosen["run"],
            "slow": ratio > 1 + tolerance, "plans": plans}


def print_row(row):
    flags = ("  SLOW" if row["slow"] else "") + ("" if row["prediction_exact"] else "  MISPREDICT")
    print(f"{row['case']:<26} {row['chosen']:<14} {row['chosen_cycles']:>9} "
          f"{row['best']:<10} {row['best_cycles']:>9} {row['ratio']:>6.3f} "
          f"{row['predicted']:>9} {row['run']:>9}{flags}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS),
                        help="which cases to run (default: all)")
    parser.add_argument("--layers", type=int, nargs="+",
                        help="Graph Challenge layers to run, 1-based (default: all 30)")
    parser.add_argument("--batch", type=int, default=16,
                        help="images per layer run (default 16)")
    parser.add_argument("--formats", nargs="+",
                        help="enable these formats (default: the board configuration's)")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "plans.json")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be at least 1, not {args.batch}")
    if args.layers is not None:
        bad = [n for n in args.layers if not 1 <= n <= 30]
        if bad:
            parser.error(f"--layers: {bad[0]} is not a layer of the network (1 to 30)")
    configs = {"digits": network_config(value_width=8), "graph": network_config(value_width=16),
               "spmv": network_config(value_width=16)}
    if args.formats is not None:
        try:
            configs = {k: c.replace(formats=tuple(args.formats)) for k, c in configs.items()}
        except Exception as error:     # the configuration's own message
            parser.error(f"--formats: {error}")
    header = (f"{'case':<26} {'chosen':<14} {'cycles':>9} {'best':<10} {'cycles':>9} "
              f"{'ratio':>6} {'predicted':>9} {'run':>9}")
    shown = configs["digits"]
    origin = "the ulx3s-85f board's" + (", formats from --formats" if args.formats else "")
    print(f"configuration: {shown.pes} PEs, formats {', '.join(shown.formats)}, reduce "
          f"{'on' if shown.reduce else 'off'} ({origin}); cycles are the ISA model's")
    print(header)
    print("-" * len(header))
    rows = []
    sources = {"digits": lambda c: digits_cases(c, args.batch),
               "graph": lambda c: graph_cases(c, args.batch, args.layers),
               "spmv": spmv_cases}
    for group in args.only:
        config = configs[group]
        options = plan_options(config)
        cases = list(sources[group](config))
        with progress.task(f"{group}: {len(cases)} case(s) x {len(options)} plans",
                           total=len(cases)) as step:
            for done, (name, units) in enumerate(cases, 1):
                step.detail(name)
                row = measure(name, units, config, options, args.tolerance)
                row["config"] = {"pes": config.pes, "value_width": config.value_width,
                                 "formats": list(config.formats), "reduce": config.reduce}
                rows.append(row)
                print_row(row)
                step(done, len(cases))
    slow = [r for r in rows if r["slow"]]
    wrong = [r for r in rows if not r["prediction_exact"]]
    print(f"\n{len(rows)} cases: {len(slow)} choice(s) more than {100 * args.tolerance:g} % "
          f"slower than the best plan, {len(wrong)} prediction(s) different from the ISA "
          f"model's cycles")
    worst = max(rows, key=lambda r: r["ratio"], default=None)
    if worst is not None:
        print(f"worst choice: {worst['case']}: {worst['chosen']} {worst['chosen_cycles']} "
              f"cycles, {worst['best']} {worst['best_cycles']} ({worst['ratio']:.3f}x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"tolerance": args.tolerance, "cases": rows}, indent=1)
                        + "\n")
    print(f"saved {args.out}")
    return 1 if slow or wrong else 0


if __name__ == "__main__":
    sys.exit(main())
