"""Board builds: Fmax and resources versus PEs, per board.

For each board and PE count, build the bitstream of the board's default
configuration with that many PEs (YoWASP Yosys and nextpnr, timing not
enforced) and print Fmax and the resources used. A configuration that does
not fit is listed with the resources it overflows; a build below the
requested clock is listed with its critical path. Targets: ULX3S-85F with 16
PEs at 100 MHz or more; iCEBreaker with 4 PEs at 40 MHz or more.

Builds are slow (a minute for small designs, tens of minutes for 16 PEs on
the 85F); each goes to ``build/bench/boards/<board>-p<PEs>``.

Usage::

    python bench/boards.py [--boards icebreaker ulx3s-85f] [--pes 1 2 4 8 16]
                           [--clock-mhz MHZ] [--out build/bench/boards.json]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from zeroskip.boards.build import BOARDS, DoesNotFitError, build
from zeroskip.boards.targets import get_board
from zeroskip.errors import ZeroskipError

ROOT = Path(__file__).resolve().parent.parent
#: PE counts tried per board unless --pes is given.
#: (16 PEs on the ULX3S-85F, 60 % of its LUTs, did not finish routing in an
#: hour; pass --pes 16 to try.)
DEFAULT_PES = {"icebreaker": [1, 2, 3, 4], "ulx3s-85f": [4, 8]}
#: The targets of the Boards issue: (board, PEs) -> MHz.
TARGETS = {("ulx3s-85f", 16): 100, ("icebreaker", 4): 40}


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
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "boards.json")
    args = parser.parse_args(argv)

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
