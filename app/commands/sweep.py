"""``zeroskip sweep``: the design space on Dask, board builds and runs over grids."""

import argparse
import json
from pathlib import Path

from zeroskip.app.commands.common import lazy_import, prepare_output, write_json
from zeroskip.core import progress
from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import InputError, ZeroskipError
from zeroskip.sim.backends import BACKENDS

__all__ = ["HELP", "add_parser", "cmd_sweep"]

HELP = (
    "explore the design space on Dask: board builds and runs over grids",
    """\
Evaluate a grid of points on a Dask cluster (a local one, or an existing one
with --scheduler) and write the results as JSON and a Pareto plot (PNG).
--boards builds a bitstream per board x lane count (--pes) x clock (--clocks)
and measures Fmax, LUTs and BRAM; --matrices runs every configuration (each
--config FILE, or the defaults, at each --pes) on every matrix (files, or
directories of .mtx/.npz: a whole collection) with 'zeroskip run' on
--backend. Builds get a throughput of lanes x min(clock, Fmax) x the
utilization the runs measured at that lane count.""",
    """\
examples:
  zeroskip sweep --matrices examples/data --pes 2,4,8
  zeroskip sweep --boards icebreaker,ulx3s-85f --pes 2,4,8 --clocks 25,50
  zeroskip sweep --boards ulx3s --pes 4,8 --matrices /data/suitesparse \\
      --scheduler tcp://scheduler:8786 -o build/sweep-ulx3s""")


def _positive_list(convert, what):
    """An argparse type: positive values separated by commas, each ``convert``-ed."""
    def parse(text):
        try:
            values = [convert(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} separated by commas, got "
                                             f"{text!r}") from None
        if not values or min(values) <= 0:
            raise argparse.ArgumentTypeError(f"expected positive {what}, got {text!r}")
        return values
    return parse


_int_list = _positive_list(int, "integers")
_float_list = _positive_list(float, "numbers")


def add_parser(command):
    sub = command("sweep", cmd_sweep)
    sub.add_argument("--boards", metavar="LIST", type=lambda t: [b for b in t.split(",") if b],
                     help="boards to build for, comma-separated (see 'boards')")
    sub.add_argument("--pes", metavar="LIST", type=_int_list,
                     help="lane counts, comma-separated (default: each board's or "
                          "configuration's own)")
    sub.add_argument("--clocks", metavar="LIST", type=_float_list,
                     help="clocks in MHz for the builds, comma-separated (default: each "
                          "board's)")
    sub.add_argument("--matrices", metavar="PATH", nargs="+", type=Path,
                     help="matrix files or directories of them (.mtx, .npz) to run")
    sub.add_argument("--config", metavar="FILE", type=Path, action="append",
                     help="a configuration to run (repeatable; default: the defaults)")
    sub.add_argument("--backend", choices=BACKENDS, default="model",
                     help="where the runs run (default model)")
    sub.add_argument("--scheduler", metavar="ADDRESS",
                     help="an existing Dask scheduler, e.g. tcp://host:8786 (default: a local "
                          "cluster)")
    sub.add_argument("--workers", metavar="N", type=int,
                     help="workers of the local cluster (default: one per CPU)")
    sub.add_argument("-o", "--output", metavar="DIR", type=Path, default=Path("build/sweep"),
                     help="where sweep.json, sweep.png and the builds go (default build/sweep)")
    sub.add_argument("--json", metavar="OUT", type=Path,
                     help="write the JSON here instead ('-': only the JSON, on standard output)")


def cmd_sweep(args):
    sweep = lazy_import("zeroskip.app.sweep")
    if not args.boards and not args.matrices:
        raise InputError("sweep needs --boards (bitstream builds), --matrices (runs) or both")
    points = []
    if args.boards:
        targets = lazy_import("zeroskip.boards.targets")
        for board in args.boards:
            info = targets.get_board(board)
            points += sweep.build_grid([info.name], args.pes or [info.config.pes],
                                       args.clocks or [None])
    if args.matrices:
        bases = [AcceleratorConfig.load(path) for path in args.config or []] or \
            [AcceleratorConfig()]
        configs = [base.replace(pes=n) for base in bases for n in args.pes] if args.pes \
            else bases
        points += sweep.run_grid(configs, sweep.matrix_files(args.matrices), args.backend)
    to_stdout = args.json is not None and str(args.json) == "-"
    say = (lambda *a, **k: None) if to_stdout else print
    say(f"sweeping {len(points)} points on "
        + (f"the Dask cluster at {args.scheduler}" if args.scheduler else "a local Dask cluster"),
        flush=True)
    with progress.task("sweep", total=len(points)) as step:
        results = sweep.run_sweep(points, scheduler=args.scheduler, workers=args.workers,
                                  build_dir=args.output / "builds", progress=step)
    summary = sweep.summarize(results)
    failed = [r for r in results if "failure" in r]
    for r in results:
        if r["kind"] == "build":
            figure = (f"Fmax {r['fmax_mhz']:.1f} MHz, LUT {r['resources']['LUT'][0]}, "
                      f"{r['throughput_nnz_per_s'] / 1e6:.1f} M nonzeros/s"
                      if "fmax_mhz" in r else f"failed: {r['failure']}")
        else:
            figure = (f"{r['cycles']} cycles, utilization {100 * r['utilization']:.1f} %"
                      if "cycles" in r else f"failed: {r['failure']}")
        say(f"  {r['name']}: {figure}")
    if to_stdout:
        print(json.dumps(summary, indent=2))
    else:
        out = args.json or args.output / "sweep.json"
        prepare_output(out)
        write_json(out, summary)
        png = sweep.plot(summary, args.output / "sweep.png")
        say(f"wrote {out} and {png}")
    if failed and len(failed) == len(results):
        raise ZeroskipError(f"every sweep point failed; first: {failed[0]['name']}: "
                            f"{failed[0]['failure']}")
    if failed:
        say(f"note: {len(failed)} of {len(results)} points failed (listed above and in the "
            f"JSON with their reason)")
    return 0
