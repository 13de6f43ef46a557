"""What the commands that compile or run a matrix share: operands, kernel options, notes.

``compile``, ``explain``, ``run`` and ``demo`` read the right-hand operand
(or draw a seeded one), take the same kernel options and print the same
notes on what quantization lost.
"""

import zipfile
from pathlib import Path

from zeroskip.app.api import FORMATS, KERNELS
from zeroskip.app.commands.common import lazy_import, make_accelerator
from zeroskip.core import formatspec
from zeroskip.core.errors import InputError, ZeroskipError

__all__ = ["X_LOW", "X_HIGH", "DEFAULT_SEED", "RANDOM_COLUMNS", "RANDOM_ACTIVATION",
           "add_kernel_options", "check_kernel_options", "compile_matrix", "compile_matrix_file",
           "random_x",
           "describe_random", "load_operand", "sample_operand", "load_program", "quant_notes",
           "print_notes", "scales", "error_line"]

#: The seeded input vector used when ``run`` gets no ``--x``: integers in [X_LOW, X_HIGH].
X_LOW, X_HIGH = -8, 7
DEFAULT_SEED = 0
#: Right-hand columns drawn for a matrix kernel without ``--x``.
RANDOM_COLUMNS = 4
#: Share of nonzero activations drawn for a sparse kernel without ``--x``.
RANDOM_ACTIVATION = 0.25


# The kernel options -------------------------------------------------------------------------------

def add_kernel_options(sub, *, x_help):
    """--x, --kernel, --format, --nm, --prune-nm and --split-rows."""
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


def _nm_option(args):
    """The ``--nm N:M`` option as ``(N, M)``."""
    parse_nm = lazy_import("zeroskip.firmware.formats").parse_nm
    try:
        return parse_nm(args.nm)
    except ZeroskipError as error:
        raise InputError(f"--nm: {error}") from None


def check_kernel_options(args):
    """Reject kernel options that contradict each other, before any work."""
    if args.prune_nm and args.format not in (formatspec.NM.name, "auto"):
        raise InputError(f"--prune-nm prunes to N:M for --format nm or auto, not --format "
                         f"{args.format}")
    _nm_option(args)


def compile_matrix_file(args, config):
    """Load MATRIX (and --x, a sample) of compile and explain and compile it for ``config``.

    Prints the notes on what quantization lost; returns ``(accelerator,
    program, shape of the matrix, x)``.
    """
    from zeroskip.firmware.loader import load_matrix
    path = Path(args.matrix)
    matrix = load_matrix(path)
    x = sample_operand(args, matrix.shape[1])
    accelerator = make_accelerator(config)
    program = compile_matrix(accelerator, args, matrix, x, path.stem, str(path))
    print_notes(quant_notes(program, config))
    return accelerator, program, matrix.shape, x


def compile_matrix(accelerator, args, matrix, x, name, source):
    """Quantize and compile ``matrix`` as the kernel options of ``args`` ask."""
    return accelerator.compile(matrix, x, kernel=args.kernel, fmt=args.format,
                               nm=_nm_option(args), prune_nm=args.prune_nm,
                               split_rows=args.split_rows, saturate=args.saturate, name=name,
                               source=source, stream=getattr(args, "stream", False))


# Operands -----------------------------------------------------------------------------------------

def random_x(cols, seed, *, kernel="auto", columns=None):
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


def describe_random(kernel, seed, *, columns=None):
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


def load_operand(path, cols):
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


def sample_operand(args, cols):
    """``--x`` of compile and explain (a sample of the operand), or None."""
    if getattr(args, "x", None) is None:
        if args.kernel in ("spmm", "spmspm"):
            raise InputError(f"--kernel {args.kernel} needs --x FILE: the right-hand matrix "
                             f"(or a sample with its number of columns)")
        return None
    return load_operand(args.x, cols)


def load_program(path):
    """A program written by 'compile', or an :class:`InputError` naming the file."""
    Program = lazy_import("zeroskip.firmware.program").Program
    try:
        return Program.load(path)
    except ZeroskipError:
        raise
    except (KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: not a zeroskip program: {error}") from None


# Notes and figures --------------------------------------------------------------------------------

def quant_notes(program, config):
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


def print_notes(notes):
    for note in notes:
        print(note)


def scales(program):
    """One line on the row exponents (None for an exactly stored integer matrix)."""
    import numpy as np
    row_exp = getattr(program, "row_exp", None)
    if row_exp is None or not len(row_exp) or not np.any(row_exp):
        return None
    return (f"row exponents s_i from {int(np.min(row_exp))} to {int(np.max(row_exp))} "
            f"(A_q = round(A x 2^s_i))")


def error_line(error):
    """The error against float64 in one line (``Result.error``)."""
    if error.get("normwise") is None:
        return f"not measured ({error.get('reference')})"
    return (f"normwise {error['normwise']:.2g}, rowwise max {error['rowwise_max']:.2g}, "
            f"{error['rows_over_1pct']} rows off by more than 1 %")
