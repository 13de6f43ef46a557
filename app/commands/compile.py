"""``zeroskip compile``: a sparse matrix into a program for a configuration."""

from pathlib import Path

from zeroskip.app.commands.common import (
    add_config_options,
    atomic_write,
    check_stream_option,
    config_from_args,
    pes,
    prepare_output,
    print_text,
    tiles,
    write_json,
)
from zeroskip.app.commands.matrix import (
    add_kernel_options,
    check_kernel_options,
    compile_matrix_file,
    scales,
)

__all__ = ["HELP", "add_parser", "add_saturate_option", "cmd_compile"]

HELP = (
    "compile a sparse matrix into a program",
    """\
Load a matrix (.mtx, .npz from scipy.sparse.save_npz, or a dense 2-D .npy),
quantize it to the value width and compile it into a program (.npz) for the
configuration: microcode plus memory images per tile, the row scales and the
float64 matrix (so 'run PROGRAM.npz' reports the error against it).
Quantization: integers that fit stay exact; every other row gets its own
power-of-two scale, as large as its values and the accumulator allow.
--x gives a sample of the right-hand operand (vector or matrix): its shape
picks the kernel and its magnitudes bound the scales; without it the scales
assume the largest possible x. The cost model picks the format per row band
(--format auto) among the configuration's formats.""",
    """\
examples:
  zeroskip compile examples/data/cage5.mtx
  zeroskip compile examples/data/cage5.mtx --pes 4 -o build/cage5.npz --listing
  zeroskip run build/cage5.npz --x examples/data/cage5_x.npy
  zeroskip compile A.npz --config build/verilog/zeroskip_top.config.json
  zeroskip compile W.mtx --formats csr,nm --format nm --nm 2:4 --prune-nm""")


def add_saturate_option(sub, *, extra=""):
    """--saturate, as compile, explain and run take it."""
    sub.add_argument("--saturate", action="store_true",
                     help="keep integers that do not fit the value width at scale 1, clipped, "
                          "instead of scaling their rows down" + extra)


def add_parser(command):
    sub = command("compile", cmd_compile)
    sub.add_argument("matrix", metavar="MATRIX", help="matrix file: .mtx, .npz or .npy")
    sub.add_argument("-o", "--output", metavar="PROGRAM.npz", type=Path,
                     help="program file to write (default build/<matrix name>.program.npz)")
    add_saturate_option(sub)
    sub.add_argument("--stream", action="store_true",
                     help="stream the tiles from the external memory (--ext-memory or "
                          "--ext-words): every tile's lane images in one external-memory "
                          "image, loaded by LOAD and double-buffered (the ISA model only)")
    sub.add_argument("--listing", action="store_true", help="also print the program's listing")
    sub.add_argument("--json", metavar="OUT", type=Path,
                     help="also write the plan as JSON: kernel, format, predicted and dense-mode "
                          "cycles, the cost model's bands, the row balance and the lane balance "
                          "(work per lane of every tile and SPMV, busiest lane / mean)")
    add_kernel_options(sub, x_help="a sample of the right-hand operand (vector or matrix: .npy, "
                                   ".mtx, .npz, .txt) for the kernel choice and the cost model")
    add_config_options(sub)


def cmd_compile(args):
    config = config_from_args(args)
    check_stream_option(args, config)
    check_kernel_options(args)
    output = Path(args.output) if args.output else \
        Path("build") / f"{Path(args.matrix).stem}.program.npz"
    prepare_output(output)
    if args.json is not None:
        prepare_output(args.json)
    _, program, (rows, cols), _ = compile_matrix_file(args, config)
    atomic_write(output, program.save)
    row_scales = scales(program)
    print(f"wrote {output}: {rows} x {cols}, {program.nnz} nonzeros, {tiles(program)}, "
          f"{config.value_width}-bit values"
          + (f", {row_scales}" if row_scales else " (integers, stored exactly)")
          + f", for configuration {config.fingerprint} ({pes(config)})")
    if (getattr(program, "quant", None) or {}).get("worst_case_x"):
        print(f"note: no --x given: the row scales assume the largest possible x (every "
              f"scaled |x_q| = 2^{config.value_width - 1}), so no accumulator can overflow; "
              f"--x with a sample of x allows finer scales")
    balance = program.lane_balance()
    _print_plan(program, balance)
    if args.listing:
        print_text(program.listing())
    if args.json is not None:
        write_json(args.json, _plan_json(program, output, balance))
        print(f"wrote {args.json}")
    return 0


def _plan_json(program, output, balance):
    """What ``--json`` writes: the program file and the compiler's plan."""
    report = program.report
    return {"program": str(output), "name": program.name, "shape": list(program.shape),
            "nnz": int(program.nnz), "kernel": program.kernel,
            "rhs_columns": int(program.rhs_columns), "format": program.format_label,
            "dataflow": program.dataflow_label, "tiles": len(program.tiles),
            "predicted_cycles": int(program.predicted_cycles()),
            "dense_cycles": program.dense_cycles, "bands": report.get("bands", []),
            "balance": report.get("balance"), "lane_balance": balance,
            "config": program.config.to_dict(), "fingerprint": program.config.fingerprint}


def _print_plan(program, balance):
    """Kernel, format, dataflow and the predicted cycles against dense mode; the lane
    balance (``balance``: :meth:`~zeroskip.firmware.program.Program.lane_balance`)."""
    kernel = getattr(program, "kernel", None)
    if kernel is None:
        return
    predicted = program.predicted_cycles()
    line = (f"kernel {kernel}, format {program.format_label} ({program.dataflow_label} "
            f"dataflow), predicted {predicted} cycles")
    if program.dense_cycles is not None and predicted:
        line += (f"; dense mode {program.dense_cycles} cycles "
                 f"({program.dense_cycles / predicted:.2f}x)")
    print(line)
    if balance["tiles"]:
        worst = max(balance["tiles"], key=lambda tile: tile["balance"])
        print(f"lane balance {balance['balance']:.2f} (busiest lane's work / mean, 1.00 = "
              f"even); least even tile {worst['tile']}: {worst['balance']:.2f}")
