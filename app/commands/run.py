"""``zeroskip run``: y = A x on a backend, checked bit for bit and against float64."""

import zipfile
from pathlib import Path

from zeroskip.app.api import BACKENDS, DEFAULT_TOLERANCE
from zeroskip.app.commands.common import (
    SIMULATOR_TOOLS,
    Mismatch,
    add_config_options,
    config_from_args,
    config_overrides,
    find_tool,
    make_accelerator,
    prepare_output,
    write_json,
)
from zeroskip.app.commands.compile import add_saturate_option
from zeroskip.app.commands.matrix import (
    DEFAULT_SEED,
    X_HIGH,
    X_LOW,
    add_kernel_options,
    check_kernel_options,
    compile_matrix,
    describe_random,
    error_line,
    load_operand,
    load_program,
    print_notes,
    quant_notes,
    random_x,
)
from zeroskip.core import formatspec
from zeroskip.core.errors import InputError

__all__ = ["HELP", "add_parser", "cmd_run"]

HELP = (
    "compute y = A x on a backend and check it",
    f"""\
Load A (and x, or draw x as random integers in [{X_LOW}, {X_HIGH}] from
numpy.random.default_rng(SEED), one per column of A), quantize both (a
power-of-two scale per row of A and per vector or column of x; integers that
fit stay exact), compile, run on a backend, compare the output bit for bit
with the reference (the ISA model's integers: 'matches reference') and the
dequantized y with the float64 product A x ('error vs float64'). MATRIX may
also be a program written by 'compile'. x may be a vector or a matrix of
right-hand columns, dense (.npy) or sparse (.mtx, .npz); --kernel auto takes
SpMM/SpMSpM for a matrix and the sparse kernels (column mode allowed) when
at most half of x is nonzero. Prints the kernel, format and dataflow,
cycles, the ideal ceil(nnz / pes), utilization (sum of PE busy cycles / (pes
x cycles)), MACs, skipped products, stalls, the speedup over dense mode on
the same array (predicted by the ISA model), the accelerator's time (cycles
at the ULX3S-85F's default clock) against scipy.sparse's float64 CSR A x on
one core of this machine (measured in the same run; --no-baseline skips it),
the scales, dropped and saturated values and the error against float64.
Exit status 1 when the
result differs from the reference or its normwise error exceeds
--tolerance.""",
    """\
backends:
  model      the ISA model (fast, no hardware)
  pysim      the Amaranth components in Amaranth's simulator
  icarus     the generated Verilog under cocotb on Icarus Verilog
  verilator  the generated Verilog under cocotb on Verilator
  board      a board built with 'zeroskip build --program', over its UART
             bridge (--port DEVICE)

kernels:
  spmv       sparse matrix x dense vector (row mode, dense mode)
  spmspv     sparse matrix x sparse vector (column mode skips zero activations)
  spmm       sparse matrix x dense matrix (several right-hand columns)
  spmspm     sparse matrix x sparse matrix (column or row mode per column)

examples:
  zeroskip run examples/data/west0067.mtx
  zeroskip run examples/data/cage5.mtx --x examples/data/cage5_x.npy --backend icarus --pes 4
  zeroskip run examples/data/494_bus.mtx --formats csr,csc,dense \\
      --x examples/data/494_bus_X.npy --json build/494_bus_X.json
  zeroskip run build/cage5.program.npz --x examples/data/cage5_x.npy --tolerance 1e-3
  zeroskip run W.mtx --formats csr,nm,dense --format nm --nm 2:4 --prune-nm
  zeroskip run examples/data/494_bus.mtx --backend verilator --json build/494_bus.json
  zeroskip run A.mtx --value-width 8 --seed 3 --backend pysim --waves""")


def add_parser(command):
    sub = command("run", cmd_run)
    sub.add_argument("matrix", metavar="MATRIX",
                     help="matrix file (.mtx, .npz or .npy), or a program written by 'compile'")
    add_kernel_options(sub, x_help="right-hand operand: a vector (.npy 1-D, .mtx n x 1, .txt one "
                                   "number a line) or a matrix (.npy 2-D, .mtx, .npz); default: "
                                   "random integers (see --seed)")
    sub.add_argument("--backend", choices=BACKENDS, default="model",
                     help="where to run (default model)")
    add_saturate_option(sub, extra=" (still subject to --tolerance)")
    sub.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="T",
                     help="largest normwise error against float64, max |y - A x| / max |A x|, "
                          f"before the run fails with exit status 1 "
                          f"(default {DEFAULT_TOLERANCE:g})")
    sub.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="N",
                     help=f"seed of the random x (default {DEFAULT_SEED}; unused with --x)")
    sub.add_argument("--no-baseline", action="store_true",
                     help="do not time scipy.sparse's A @ x on one core of this machine")
    sub.add_argument("--json", metavar="OUT", type=Path,
                     help="also write the results as JSON (written only when the run completes)")
    sub.add_argument("--waves", action="store_true",
                     help="record waveforms (simulator backends; under build/waves)")
    sub.add_argument("--port", metavar="DEVICE",
                     help="serial device of the board for --backend board (e.g. /dev/ttyUSB1)")
    add_config_options(sub)


def _is_program_file(path):
    """Whether ``path`` is a program written by 'compile' (not a scipy.sparse .npz)."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "header.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


#: Options of 'run' that only apply when it compiles a matrix: (dest, default, option).
_COMPILE_ONLY = (("kernel", "auto", "--kernel"), ("format", "auto", "--format"),
                 ("prune_nm", False, "--prune-nm"), ("split_rows", "auto", "--split-rows"),
                 ("formats", None, "--formats"))


def _run_inputs(args):
    """The program, operand and description of what 'run' runs.

    ``MATRIX`` is a matrix file (quantized and compiled here) or a program
    written by 'compile' (run as it is).
    """
    from zeroskip.firmware.loader import load_matrix
    path = Path(args.matrix)
    if _is_program_file(path):
        for dest, default, option in _COMPILE_ONLY:
            if getattr(args, dest) != default:
                raise InputError(f"{option} applies when compiling a matrix; {path} is a "
                                 f"compiled program")
        program = load_program(path)
        given = bool(config_overrides(args)) or args.config is not None
        config = config_from_args(args) if given else program.config
        program.check_config(config)
        accelerator = make_accelerator(config, args.backend, waves=args.waves, port=args.port)
        cols = program.shape[1]
        if args.x is not None:
            x, x_source = load_operand(args.x, cols), str(args.x)
        else:
            columns = program.rhs_columns if program.is_matrix else None
            x = random_x(cols, args.seed, kernel=program.kernel, columns=columns)
            x_source = describe_random(program.kernel, args.seed, columns=columns)
        return accelerator, program, x, x_source, str(path)
    config = config_from_args(args)
    check_kernel_options(args)
    if args.backend == "board" and args.port is None:
        make_accelerator(config, "board")   # the error naming --port, before any work
    matrix = load_matrix(path)
    cols = matrix.shape[1]
    if args.x is not None:
        x, x_source = load_operand(args.x, cols), str(args.x)
    else:
        x = random_x(cols, args.seed, kernel=args.kernel)
        x_source = describe_random(args.kernel, args.seed)
    accelerator = make_accelerator(config, args.backend, waves=args.waves, port=args.port)
    program = compile_matrix(accelerator, args, matrix, x, path.stem, str(path))
    return accelerator, program, x, x_source, str(path)


#: Short names of the host links in run's table.
_LINK_LABELS = {"axi4-lite": "AXI", "uart": "UART"}


def _time_rows(timing):
    """The time lines of 'run': the clock and its source, compute and end to end per link."""
    moved = timing["data_movement"]
    words = ", ".join(f"{kind} {count:,.0f}"
                      for kind, count in moved["words_per_inference"].items())
    rows = [("clock", f"{timing['clock_mhz']:.4g} MHz on the {timing['board']}: "
                      f"{timing['clock_source']}"),
            ("compute time", f"{1e6 * timing['seconds']:.2f} us  (cycles / clock)"),
            ("host transfers", f"{moved['total_words_per_inference']:,.0f} words ({words})")]
    for link, facts in moved["links"].items():
        mark = ", this backend's link" if link == moved["link"] else ""
        rows.append((f"end-to-end {_LINK_LABELS[link]}",
                     f"{1e6 * facts['end_to_end_seconds_per_inference']:.2f} us  (transfers "
                     f"{1e6 * facts['transfer_seconds_per_inference']:.2f} us on {link}{mark})"))
    return rows


def _run_table(result, *, x_source, config, tolerance):
    """The ``label  value`` lines 'run' prints."""
    rate = "pes" if config.products_per_lane == 1 else "macs per cycle"
    program, stats, q = result.program, result.stats, result.quantization
    rows, cols = program.shape
    columns = result.y_raw.shape[1] if result.y_raw.ndim == 2 else 1
    nnz = f"{q['nnz_stored']}"
    if q["nnz_stored"] != q["nnz_input"]:
        nnz += f"  (of {q['nnz_input']} given)"
    table = [
        ("backend", result.backend),
        ("pes", config.pes),
        ("shape", f"{rows} x {cols}"),
        ("nnz", nnz),
        ("x", x_source),
        ("kernel", getattr(program, "kernel", "spmv")),
        ("format", f"{getattr(program, 'format_label', formatspec.CSR.name)} "
                   f"({getattr(program, 'dataflow_label', 'row')} dataflow)"),
        ("cycles", stats["cycles"]),
        ("ideal cycles", f"{stats['ideal_cycles']}  (ceil(nnz / {rate})"
                         + (f" x {columns} columns)" if columns > 1 else ")")),
        ("utilization", f"{100 * stats['utilization']:.1f} %  (sum of PE busy cycles / "
                        f"({rate} x cycles))"),
        ("MACs", stats["macs"]),
        ("skipped", stats["skipped"]),
        ("gather stalls", stats["gather_stalls"]),
        ("scatter stalls", stats["scatter_stalls"]),
    ]
    if result.dense_cycles is not None:
        table.append(("dense cycles", f"{result.dense_cycles}  (dense mode on this array, "
                                      f"predicted by the ISA model)"))
        speedup = result.speedup_vs_dense
        table.append(("speedup vs dense", f"{speedup:.2f}x" if speedup else "-"))
    cpu = result.cpu
    if cpu is not None:
        table.append(("scipy CSR 1 core", f"{1e6 * cpu['scipy_csr_1_thread_s']:.2f} us  "
                                          f"(float64 A @ x on this machine, best of "
                                          f"{cpu['runs']} runs on one core)"))
        ratio = cpu["speedup_vs_scipy_csr_1_thread"]
        table.append(("vs scipy 1 core", f"{ratio:.2f}x  (scipy's time / the accelerator's "
                                         f"compute time)"
                                         if ratio else "-"))
    if q["exact"]:
        table.append(("scales", "none: integers stored exactly"))
    else:
        x_exp = q["x_exp"]
        x_text = (f"x_exp {x_exp}" if isinstance(x_exp, int)
                  else f"x_exp {min(x_exp)} to {max(x_exp)} per column")
        table.append(("scales", f"row exponents {q['row_exp_min']} to {q['row_exp_max']}, "
                                f"{x_text}: y_i = y_raw_i x 2^-(row_exp_i + x_exp)"))
    table.append(("dropped", f"{q['dropped']} matrix nonzeros rounded to 0"
                             + (f", {q['x_dropped']} x values" if q["x_dropped"] else "")))
    table.append(("saturated", f"{q['saturated']} values clipped to the {config.value_width}-bit "
                               f"range" if q["saturated"] else "0"))
    table += _time_rows(result.timing())
    table.append(("tolerance", f"{tolerance:g} normwise"))
    table.append(("error vs float64", error_line(result.error)))
    table.append(("matches reference", result.mismatch or "yes"))
    return table


def cmd_run(args):
    if args.json is not None:
        prepare_output(args.json)
    if args.waves and args.backend == "model":
        print("note: --waves has no effect on the model backend (it has no signals)")
    if args.tolerance is not None and not args.tolerance >= 0:
        raise InputError(f"--tolerance must be 0 or more, not {args.tolerance}")
    accelerator, program, x, x_source, source = _run_inputs(args)
    config = accelerator.config
    print_notes(quant_notes(program, config))
    if args.backend in SIMULATOR_TOOLS:
        find_tool(SIMULATOR_TOOLS[args.backend])   # e.g. .venv/bin/verilator when not on PATH
    result = accelerator.run(program, x, saturate=args.saturate,
                             source=str(args.x) if args.x is not None else None,
                             baseline=not args.no_baseline)
    table = _run_table(result, x_source=x_source, config=config, tolerance=args.tolerance)
    width = max(len(label) for label, _ in table)
    for label, value in table:
        print(f"{label:<{width}}  {value}")
    if args.waves and args.backend != "model":
        waves = sorted((Path("build") / "waves").glob(f"{args.backend}-{config.fingerprint}*"))
        print("waves: " + (", ".join(str(path) for path in waves) or "build/waves/"))
    if args.json is not None:
        report = {"matrix": source, "x": x_source, **result.to_json(),
                  "tolerance": args.tolerance, "within_tolerance": result.within(args.tolerance)}
        write_json(args.json, report)
        print(f"wrote {args.json}")
    if result.mismatch:
        raise Mismatch(f"the {args.backend} result differs from the reference: "
                       f"{result.mismatch}")
    message = result.tolerance_message(args.tolerance, option="--tolerance")
    if message:
        raise Mismatch(message)
    return 0
