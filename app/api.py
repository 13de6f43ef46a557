"""The public Python API: compile sparse products for an accelerator and run them.

::

    import numpy as np, scipy.sparse
    from zeroskip import Accelerator

    A = scipy.sparse.random(200, 300, density=0.02, random_state=0, format="csr")
    x = np.random.default_rng(0).standard_normal(300)
    acc = Accelerator(pes=8)                 # or Accelerator(config, backend="verilator")
    result = acc.matmul(A, x)                # quantize, compile, run, check
    print(result.y[:3], result.error["normwise"], result.cycles, result.utilization)

:class:`Accelerator` holds a configuration and a backend. :meth:`~Accelerator.compile`
quantizes a matrix (one power-of-two exponent per row, see
:mod:`zeroskip.firmware.quant`) and compiles it into a
:class:`~zeroskip.firmware.program.Program`; :meth:`~Accelerator.run` quantizes
an operand (one exponent per vector or column), runs the program on the
backend, compares the integers bit for bit with the ISA reference and the
dequantized result with the float64 product; :meth:`~Accelerator.matmul` does
both. The compiler, the model and the backends are imported when first used.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import weakref

import numpy as np
import scipy.sparse

from zeroskip.core import formatspec
from zeroskip.core.config import AcceleratorConfig, check_generated
from zeroskip.core.errors import CompileError, DeviceError, InputError, ZeroskipError
from zeroskip.firmware.program import KERNELS as PROGRAM_KERNELS
from zeroskip.sim.backends import ALL_BACKENDS

__all__ = ["Accelerator", "Result", "BACKENDS", "DEFAULT_TOLERANCE"]

#: Where a program can run.
BACKENDS = ALL_BACKENDS
#: Options each backend takes (keyword arguments of :class:`Accelerator`).
BACKEND_OPTIONS = {"model": (), "pysim": ("waves", "build_dir"),
                   "icarus": ("waves", "build_dir"), "verilator": ("waves", "build_dir"),
                   "board": ("port", "baudrate")}
#: Normwise error above which a result counts as too far from float64.
DEFAULT_TOLERANCE = 1e-2
#: The ``kernel`` choices of :meth:`Accelerator.compile`: auto or a program's kernel.
KERNELS = ("auto",) + PROGRAM_KERNELS
#: The ``fmt`` choices of :meth:`Accelerator.compile`: auto or a format of the registry
#: (:mod:`zeroskip.core.formatspec`), in the order of their codes.
FORMATS = ("auto",) + formatspec.NAMES


def lazy_import(module):
    """Import a zeroskip module when first needed, with a clear error when it is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and (module == error.name or module.startswith(error.name + ".")):
            raise ZeroskipError(f"this zeroskip installation has no {module} "
                                f"(reinstall zeroskip: pip install -e .)") from None
        raise


def _json_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


# The result ---------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class Result:
    """One run of a program: the results, their error and the counters.

    Attributes
    ----------
    y : numpy.ndarray of float64
        The dequantized result, ``y_raw[i] * 2 ** -(row_exp[i] + x_exp)``.
    y_raw : numpy.ndarray of int64
        The integers the accelerator returned.
    y_reference : numpy.ndarray of int64
        The bit-exact expected integers (the ISA's reference).
    matches_reference : bool
        Whether ``y_raw == y_reference``: the hardware did exactly what the
        ISA says. It says nothing about the distance to float64; that is
        :attr:`error`.
    mismatch : str or None
        What differs when ``matches_reference`` is false.
    error : dict
        The error against the float64 product (``normwise``, ``rowwise_max``,
        ``rows_over_1pct``, ``max_abs``, ``y_norm``), see
        :func:`zeroskip.firmware.quant.error_report`; ``reference`` says
        what float64 matrix it was measured against.
    quantization : dict
        ``nnz_input``, ``nnz_stored``, ``dropped``, ``saturated`` (matrix and
        operand), ``row_exp`` (every row), ``row_exp_min``/``row_exp_max``,
        ``x_exp``, ``exact`` and ``worst_case_x``.
    counters : dict
        The raw performance counters.
    stats : dict
        ``cycles``, ``ideal_cycles``, ``utilization``, ``macs``, ``skipped``,
        ``gather_stalls``, ``scatter_stalls``, ``insns``, ``pe_busy``.
    backend : str
    program : Program
    cpu : dict or None
        With ``Accelerator.run(..., baseline=True)``: scipy.sparse's float64
        CSR ``A @ x`` on one core of this machine, measured in the same run
        (``scipy_csr_1_thread_s``), the accelerator's time (cycles at the
        clock named by ``clock_mhz`` and ``clock_source``) and
        ``speedup_vs_scipy_csr_1_thread`` (scipy's time / the accelerator's).
    """

    y: object
    y_raw: object
    y_reference: object
    matches_reference: bool
    mismatch: object
    error: dict
    quantization: dict
    counters: dict
    stats: dict
    backend: str
    program: object
    cpu: dict | None = None

    @property
    def cycles(self):
        return self.stats["cycles"]

    @property
    def utilization(self):
        """PE busy cycles (products) over ``macs_per_cycle x cycles``."""
        return self.stats["utilization"]

    @property
    def dense_cycles(self):
        return getattr(self.program, "dense_cycles", None)

    @property
    def speedup_vs_dense(self):
        dense = self.dense_cycles
        return dense / self.cycles if dense and self.cycles else None

    def timing(self, board=None):
        """Compute and end-to-end time of this run, with the clock's source.

        The clock is :func:`zeroskip.boards.record.clock_for` of the
        program's configuration on ``board`` (the default board when
        omitted); the host transfers are counted by
        :func:`zeroskip.app.transfers.count_program` and timed on this backend's
        link (both links are given). One run is one inference: its code and
        weights are loaded once for it.
        """
        record = lazy_import("zeroskip.boards.record")
        targets = lazy_import("zeroskip.boards.targets")
        transfers = lazy_import("zeroskip.app.transfers")
        board = targets.DEFAULT_BOARD if board is None else board
        config = self.program.config
        clock = record.clock_for(board, config)
        compute = self.cycles / clock.hz
        moved = transfers.count_program(self.program)
        movement = transfers.data_movement(
            moved, inferences=1, clock_mhz=clock.mhz, backend=self.backend,
            compute_seconds=compute,
            amortisation="one run is one inference: the code and weights are loaded once for it "
                         "(the driver loads every tile again for each run)")
        return {"board": targets.get_board(board).name, **clock.to_json(),
                "config_fingerprint": config.fingerprint, "seconds": compute,
                "end_to_end_seconds": movement["end_to_end_seconds_per_inference"],
                "data_movement": movement}

    def within(self, tolerance=DEFAULT_TOLERANCE):
        """Whether the normwise error against float64 is at most ``tolerance`` (or unknown)."""
        return self.error.get("normwise") is None or self.error["normwise"] <= tolerance

    def tolerance_message(self, tolerance=DEFAULT_TOLERANCE, *, option="tolerance"):
        """One line explaining why the result is too far from float64 (None when it is not)."""
        if self.within(tolerance):
            return None
        e, q = self.error, self.quantization
        causes = [f"{e['rows_over_1pct']} of {self.program.shape[0]} rows off by more than 1 %"]
        if q["dropped"]:
            causes.append(f"{q['dropped']} of {q['nnz_input']} matrix nonzeros rounded to 0")
        if q["saturated"]:
            causes.append(f"{q['saturated']} values saturated")
        if q.get("x_dropped"):
            causes.append(f"{q['x_dropped']} x values rounded to 0")
        hint = "a wider --value-width" if self.program.config.value_width < 16 else \
            "values of a narrower range"
        if q["saturated"]:
            hint += " or no --saturate"
        where = ("the hardware matches the bit-exact reference, so the loss is quantization"
                 if self.matches_reference else "the hardware also differs from the reference")
        return (f"normwise error against float64 {e['normwise']:.3g} exceeds {option} "
                f"{tolerance:g} ({'; '.join(causes)}); {where}: try {hint}")

    def to_json(self):
        """The result as a JSON-compatible dictionary."""
        program = self.program
        y_raw = np.asarray(self.y_raw)
        report = {
            "backend": self.backend,
            "pes": program.config.pes,
            "shape": list(program.shape),
            "nnz": self.quantization["nnz_stored"],
            "nnz_input": self.quantization["nnz_input"],
            "nnz_stored": self.quantization["nnz_stored"],
            "kernel": getattr(program, "kernel", "spmv"),
            "format": getattr(program, "format_label", formatspec.CSR.name),
            "dataflow": getattr(program, "dataflow_label", "row"),
            "rows_split": bool(getattr(program, "report", {}).get("balance", {})
                               .get("split", False)),
            **self.stats,
            "dense_cycles": self.dense_cycles,
            "dense_cycles_source": ("predicted by the ISA model"
                                    if self.dense_cycles is not None else None),
            "speedup_vs_dense": self.speedup_vs_dense,
            "matches_reference": bool(self.matches_reference),
            "error": {key: _json_number(value) for key, value in self.error.items()},
            "dropped": self.quantization["dropped"],
            "saturated": self.quantization["saturated"],
            "quantization": self.quantization,
            "config": program.config.to_dict(),
            "y": self.y.tolist(),
            "y_raw": y_raw.tolist(),
        }
        report["time"] = self.timing()
        if y_raw.ndim == 2:
            report["x_columns"] = int(y_raw.shape[1])
        if self.cpu is not None:
            report["cpu"] = dict(self.cpu)
        return report


# The accelerator ----------------------------------------------------------------------------------

class Accelerator:
    """An accelerator configuration and the backend programs run on.

    Parameters
    ----------
    config : AcceleratorConfig, optional
        The hardware (the defaults when omitted). Keyword arguments named
        like its fields (``pes=8``, ``value_width=8``) override it.
    backend : str
        ``model`` (the ISA model, default), ``pysim``, ``icarus``,
        ``verilator`` or ``board``.
    **options
        Configuration fields, and the backend's options: ``waves`` and
        ``build_dir`` for the simulators, ``port`` (the serial device) and
        ``baudrate`` for ``board``; ``progress``, a ``progress(done, total)`` callback.
    """

    def __init__(self, config=None, backend="model", **options):
        if config is not None and not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig or None, not {config!r}")
        if backend not in BACKENDS:
            raise ZeroskipError(f"unknown backend {backend!r}; choose one of "
                                f"{', '.join(BACKENDS)}")
        fields = {field.name for field in dataclasses.fields(AcceleratorConfig)}
        overrides = {key: options.pop(key) for key in list(options) if key in fields}
        config = config if config is not None else AcceleratorConfig()
        self.config = config.replace(**overrides) if overrides else config
        self.progress = options.pop("progress", None)
        allowed = BACKEND_OPTIONS[backend]
        unknown = [key for key in options if key not in allowed]
        if unknown:
            takes = ", ".join(allowed) or "no options"
            raise TypeError(f"backend {backend!r} takes {takes}, not {unknown[0]!r}")
        if backend == "board" and options.get("port") is None:
            raise ZeroskipError("the board backend needs port= (the board's serial device, "
                                "e.g. /dev/ttyUSB1)")
        if backend != "model":
            check_generated(self.config, ext_port=backend == "pysim")
        self.backend = backend
        self.backend_options = options
        self._sources = weakref.WeakKeyDictionary()

    def __repr__(self):
        return f"Accelerator({self.config!r}, backend={self.backend!r})"

    # Compile.

    def quantize(self, A, x=None, *, saturate=False, source=None):
        """Quantize ``A``, one exponent per row (:func:`.quant.quantize_matrix`)."""
        quant = lazy_import("zeroskip.firmware.quant")
        c = self.config
        return quant.quantize_matrix(A, value_width=c.value_width, acc_width=c.acc_width, x=x,
                                     saturate=saturate, source=source)

    def compile(self, A, x=None, *, kernel="auto", fmt="auto", nm=None, prune_nm=False,
                split_rows="auto", saturate=False, name="matrix", source=None, stream=False):
        """Quantize ``A`` and compile ``y = A x`` into a Program.

        Parameters
        ----------
        A : scipy.sparse matrix or 2-D array
            Real or integer values; each row gets its own power-of-two scale.
        x : array or scipy.sparse matrix, optional
            The operand or a sample of it (a vector, or a matrix of
            right-hand columns). Its shape picks the kernel, its zeros the
            sparse kernels, and its magnitudes bound the row scales so that
            no accumulator overflows. Without it, real rows are scaled for
            the worst case ``|x_q| <= 2 ** (value_width - 1)``.
        kernel, fmt, nm, prune_nm, split_rows
            As for :func:`zeroskip.firmware.compiler.compile_kernel`.
        saturate : bool
            Keep integers that do not fit at scale 1, clipped, instead of
            scaling their rows down.
        name : str
        source : str, optional
            The file ``A`` came from (named in error messages).
        stream : bool
            Stream the tiles from the external memory (as for
            :func:`zeroskip.firmware.compiler.compile_kernel`).
        """
        matrix = _matrix_operand(A, source)
        if x is not None:
            x = _check_operand(x, matrix.shape[1])
        if split_rows == "yes" or split_rows is True:
            if not self.config.reduce:
                raise InputError("--split-rows yes needs the scatter/reduce network, which this "
                                 "configuration lacks (reduce off); use --split-rows auto or no")
        q = self.quantize(matrix, x, saturate=saturate, source=source)
        matrix_int = q.ints
        pruned = 0
        if prune_nm:
            prune = lazy_import("zeroskip.firmware.formats").prune_nm
            matrix_int, pruned = prune(matrix_int, *_nm(nm))
            matrix_int = scipy.sparse.csr_matrix(matrix_int, dtype=np.int64)
            # The error is measured against the pruned matrix: pruning was asked for.
            removed = (q.ints != 0).astype(np.int8) - (matrix_int != 0).astype(np.int8)
            matrix = matrix - matrix.multiply(removed > 0)
            matrix.eliminate_zeros()
        x_sample, x_exp = None, 0
        if x is not None:
            qx = self.quantize_operand(matrix_int, x, saturate=saturate)
            x_sample, x_exp = qx.ints, _first(qx.exp)
        options = {"kernel": kernel, "fmt": fmt, "stream": stream,
                   "split_rows": {"yes": True, "no": False}.get(split_rows, split_rows)}
        if nm is not None:
            options["nm"] = _nm(nm)
        compile_kernel = lazy_import("zeroskip.firmware.compiler").compile_kernel
        program = compile_kernel(matrix_int, self.config, x=x_sample, a_frac_bits=0,
                                 x_frac_bits=int(x_exp), name=name, **options)
        program.row_exp = q.row_exp
        program.quant = {"nnz_input": q.nnz_input, "dropped": q.dropped,
                         "saturated": q.saturated, "pruned": int(pruned),
                         "worst_case_x": bool(q.worst_case_x), "exact": bool(q.exact)}
        if prune_nm:
            program.quant["nm"] = "{}:{}".format(*_nm(nm))
        program.source = matrix.astype(np.float64)
        self._sources[program] = matrix_int
        return program

    def quantize_operand(self, matrix_int, x, *, saturate=False, source=None):
        """Quantize ``x`` for the quantized matrix (one exponent per vector or column)."""
        quant = lazy_import("zeroskip.firmware.quant")
        is_matrix = _is_matrix(x)
        what = "right-hand matrix x" if is_matrix else "vector x"
        if not is_matrix and hasattr(x, "toarray"):
            x = np.asarray(x.toarray()).reshape(-1)
        c = self.config
        return quant.quantize_operand(x, value_width=c.value_width, acc_width=c.acc_width,
                                      matrix_int=matrix_int, saturate=saturate, what=what,
                                      source=source)

    # Run.

    def run(self, program, x, *, A=None, saturate=False, source=None, baseline=False):
        """Run a compiled program on ``x`` and check it.

        Parameters
        ----------
        program : Program
            From :meth:`compile` or ``Program.load``.
        x : array or scipy.sparse matrix
            The operand, of the shape the program was compiled for.
        A : scipy.sparse matrix or 2-D array, optional
            The float matrix to measure the error against; by default the
            one the program was compiled from (saved with it).
        saturate : bool
            Keep integer operands at scale 1, clipped, when they do not fit.
        source : str, optional
            The file ``x`` came from (named in error messages).
        baseline : bool
            Also time scipy.sparse's ``A @ x`` on one core (:attr:`Result.cpu`).

        Returns
        -------
        Result
        """
        if hasattr(program, "check_config"):
            program.check_config(self.config)
        rows, cols = program.shape
        x = _check_operand(x, cols, source=source)
        if _is_matrix(x) != bool(getattr(program, "is_matrix", _is_matrix(x))):
            want = "a matrix of right-hand columns" if program.is_matrix else "a vector"
            raise InputError(f"{_prefix(source)}the program was compiled for {want} x")
        matrix_int = self._matrix_int(program)
        qx = self.quantize_operand(matrix_int, x, saturate=saturate, source=source)
        if matrix_int is not None:
            y_ref = _reference(matrix_int, qx.ints, self.config)
        else:   # a program compiled without its matrix: the ISA model is the reference
            y_ref = np.asarray(_model_y(program, qx.ints), dtype=np.int64)
        run_result = self._run_backend(program, qx.ints)
        y_raw = np.asarray(run_result.y_raw, dtype=np.int64)
        mismatch = _compare(y_raw, y_ref)
        quant = lazy_import("zeroskip.firmware.quant")
        row_exp = _row_exp(program)
        y = quant.dequantize(y_raw if y_raw.shape == y_ref.shape else y_ref, row_exp, qx.exp)
        reference = A if A is not None else getattr(program, "source", None)
        if reference is not None:
            error = quant.error_report(y, _matrix_operand(reference, None), x)
            error["reference"] = "float64 A x"
        else:
            error = {"normwise": None, "rowwise_max": None, "rows_over_1pct": None,
                     "reference": "none: the program does not hold its float64 matrix"}
        q = getattr(program, "quant", {}) or {}
        nnz_stored = int(program.nnz)
        quantization = {
            "nnz_input": int(q.get("nnz_input", nnz_stored)),
            "nnz_stored": nnz_stored,
            "dropped": int(q.get("dropped", 0)),
            "saturated": int(q.get("saturated", 0)) + int(qx.saturated),
            "matrix_saturated": int(q.get("saturated", 0)),
            "x_saturated": int(qx.saturated),
            "x_dropped": int(qx.dropped),
            "pruned": int(q.get("pruned", 0)),
            "row_exp_min": int(row_exp.min()) if len(row_exp) else 0,
            "row_exp_max": int(row_exp.max()) if len(row_exp) else 0,
            "x_exp": qx.exp if isinstance(qx.exp, int) else [int(v) for v in qx.exp],
            "exact": bool(q.get("exact", True)) and bool(qx.exact),
            "worst_case_x": bool(q.get("worst_case_x", False)),
            "row_exp": [int(v) for v in row_exp],
        }
        columns = y_raw.shape[1] if y_raw.ndim == 2 else 1
        stats = _statistics(run_result.counters, nnz_stored, self.config.macs_per_cycle,
                            columns=columns)
        cpu = None
        if baseline:
            float_matrix = reference if reference is not None else matrix_int
            if float_matrix is not None:
                cpu = _cpu_peer(float_matrix, x, stats["cycles"], program.config)
        return Result(y=y, y_raw=y_raw, y_reference=y_ref, matches_reference=mismatch is None,
                      mismatch=mismatch, error=error, quantization=quantization,
                      counters=dict(run_result.counters), stats=stats, backend=self.backend,
                      program=program, cpu=cpu)

    def matmul(self, A, x, *, saturate=False, **compile_options):
        """Compile ``A`` for ``x`` and run it: ``y = A @ x`` on the accelerator."""
        program = self.compile(A, x, saturate=saturate, **compile_options)
        return self.run(program, x, saturate=saturate)

    # Networks (zeroskip.app.nn).

    def compile_network(self, network, calibration, **options):
        """Prune, quantize and compile a network (a ``zeroskip.app.nn`` Network or an ONNX
        path) for this accelerator; see :func:`zeroskip.app.nn.api.compile_network`."""
        return lazy_import("zeroskip.app.nn.api").compile_network(self, network, calibration,
                                                          **options)

    def infer(self, compiled, x, **options):
        """Run a compiled network on inputs ``x``; see :func:`zeroskip.app.nn.api.infer`."""
        return lazy_import("zeroskip.app.nn.api").infer(self, compiled, x, **options)

    # Helpers.

    def _matrix_int(self, program):
        """The program's quantized matrix (None when it cannot be known)."""
        matrix_int = self._sources.get(program)
        if matrix_int is None:
            matrix_int = _stored_matrix(program)
            if matrix_int is not None:
                self._sources[program] = matrix_int
        return matrix_int

    def _run_backend(self, program, x_int):
        if self.backend == "board":
            run_on_board = lazy_import("zeroskip.boards.link").run_on_board
            return run_on_board(program, x_int, progress=self.progress, **self.backend_options)
        run = lazy_import("zeroskip.sim.backends").run
        options = dict(self.backend_options)
        return run(program, x_int, backend=self.backend, progress=self.progress, **options)


# Operands and checks ------------------------------------------------------------------------------

def _prefix(source):
    return f"{source}: " if source else ""


def _first(exp):
    return int(np.asarray(exp).reshape(-1)[0]) if np.size(exp) else 0


def _nm(nm):
    if nm is None:
        return (2, 4)
    if isinstance(nm, str):
        return lazy_import("zeroskip.firmware.formats").parse_nm(nm)
    return tuple(nm)


def _matrix_operand(A, source):
    if scipy.sparse.issparse(A):
        return scipy.sparse.csr_matrix(A)
    dense = np.asarray(A)
    if dense.ndim != 2:
        raise InputError(f"{_prefix(source)}the matrix must be 2-D, not {dense.ndim}-D")
    return scipy.sparse.csr_matrix(dense)


def _is_matrix(x):
    if scipy.sparse.issparse(x):
        return x.shape[0] > 1 and x.shape[1] > 1
    return np.ndim(x) == 2


def _check_operand(x, cols, *, source=None):
    """A vector of ``cols`` entries or a matrix with ``cols`` rows (sparse kept sparse)."""
    if scipy.sparse.issparse(x):
        if 1 in x.shape:
            x = np.asarray(x.toarray()).reshape(-1)
        elif x.shape[0] != cols:
            raise InputError(f"{_prefix(source)}right-hand matrix has {x.shape[0]} rows but the "
                             f"matrix has {cols} columns")
        else:
            return x
    x = np.asarray(x)
    if x.ndim == 1:
        if len(x) != cols:
            raise InputError(f"{_prefix(source)}vector has {len(x)} entries but the matrix has "
                             f"{cols} columns")
    elif x.ndim == 2:
        if x.shape[0] != cols:
            raise InputError(f"{_prefix(source)}right-hand matrix has {x.shape[0]} rows but the "
                             f"matrix has {cols} columns")
    else:
        raise InputError(f"{_prefix(source)}x must be a vector or a matrix, not {x.ndim}-D")
    return x


def _stored_matrix(program):
    """The quantized matrix of a program, rebuilt from its float64 source (or None)."""
    quant = lazy_import("zeroskip.firmware.quant")
    source = getattr(program, "source", None)
    if source is not None:
        row_exp = _row_exp(program)
        c = program.config
        ints = quant.round_half_away(np.ldexp(source.data, row_exp[np.repeat(
            np.arange(source.shape[0]), np.diff(source.indptr))]))
        high = c.value_max
        ints = np.clip(ints, -high - 1, high)
        m = scipy.sparse.csr_matrix((ints.astype(np.int64), source.indices, source.indptr),
                                    shape=source.shape)
        m.eliminate_zeros()
        if m.nnz == program.nnz:
            return m
    return None


def _row_exp(program):
    if hasattr(program, "row_frac_bits"):
        return program.row_frac_bits
    row_exp = getattr(program, "row_exp", None)
    if row_exp is not None:
        return np.asarray(row_exp, dtype=np.int64)
    return np.full(program.shape[0], int(getattr(program, "a_frac_bits", 0)), dtype=np.int64)


def _reference(matrix_int, x_int, config):
    """The bit-exact expected output; an accumulator overflow is an error."""
    spmv_reference = lazy_import("zeroskip.firmware.reference").spmv_reference
    y, overflow = spmv_reference(matrix_int, x_int, config=config)
    if np.ndim(overflow) > 0:
        overflow = bool(np.any(overflow))
    if overflow:
        y_full = np.asarray(matrix_int @ np.asarray(x_int, dtype=np.int64), dtype=np.int64)
        y_full = y_full.reshape(y_full.shape[0], -1)
        rows = np.flatnonzero(((y_full < config.acc_min) | (y_full > config.acc_max)).any(axis=1))
        where = f" in row {int(rows[0]) + 1}" if len(rows) else ""
        more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
        raise CompileError(
            f"accumulator overflow{where}{more}: a partial sum does not fit "
            f"{config.acc_width} signed bits (use a wider --acc-width or a narrower "
            f"--value-width)")
    return np.asarray(y, dtype=np.int64)


def _model_y(program, x_int):
    """The ISA model's output words for ``program`` (up to its error, if it stops on one)."""
    backends = lazy_import("zeroskip.sim.backends")
    try:
        return backends.run_model(program, x_int).y_raw
    except DeviceError as error:
        if error.result is None:
            raise
        return error.result.y_raw


def _compare(y_raw, y_ref):
    """None when equal, else what differs (rows and columns counted from 1)."""
    y_raw = np.asarray(y_raw, dtype=np.int64)
    if y_raw.shape != y_ref.shape:
        if y_raw.ndim == y_ref.ndim == 1:
            return f"NO (the backend returned {y_raw.shape[0]} rows, expected {y_ref.shape[0]})"
        return f"NO (the backend returned shape {y_raw.shape}, expected {y_ref.shape})"
    bad = np.argwhere(y_raw != y_ref)
    if not len(bad):
        return None
    if y_ref.ndim == 1:
        row = int(bad[0][0])
        return (f"NO ({len(bad)} of {len(y_ref)} rows differ; first row {row + 1}: "
                f"got {int(y_raw[row])}, expected {int(y_ref[row])})")
    row, column = (int(v) for v in bad[0])
    return (f"NO ({len(bad)} of {y_ref.size} results differ; first row {row + 1}, column "
            f"{column + 1}: got {int(y_raw[row, column])}, expected {int(y_ref[row, column])})")


def _cpu_peer(matrix, x, cycles, config):
    """scipy.sparse's CSR ``A @ x`` on one core against the accelerator's ``cycles``.

    The accelerator's time is its cycles at the clock of ``config`` on the
    default board (:func:`zeroskip.boards.record.clock_for`), compute only.
    """
    targets = lazy_import("zeroskip.boards.targets")
    clock = lazy_import("zeroskip.boards.record").clock_for(targets.DEFAULT_BOARD, config)
    peer = lazy_import("zeroskip.app.cpu").scipy_spmv(_matrix_operand(matrix, None), x)
    accelerator_s = cycles / clock.hz
    return {
        "runtime": "scipy.sparse CSR A @ x, float64, one core",
        "clock": "wall clock (time.perf_counter), best of repeated runs on this machine",
        "one_core": peer["one_core"], "runs": peer["runs"],
        "scipy_csr_1_thread_s": peer["seconds"],
        "accelerator_s": accelerator_s, "clock_mhz": clock.mhz,
        "board": targets.get_board(targets.DEFAULT_BOARD).name,
        "clock_source": f"{clock.source}; the accelerator's cycles only, no host transfers",
        "speedup_vs_scipy_csr_1_thread": peer["seconds"] / accelerator_s if cycles else None,
    }


def _statistics(counters, nnz, macs_per_cycle, *, columns=1):
    """Counters and derived figures of a run.

    Utilization is the share of the array's product slots that consumed an
    entry: the ``PE_BUSY`` counters summed over ``macs_per_cycle x cycles``
    (``AcceleratorConfig.macs_per_cycle``; at most 1).
    """
    cycles = int(counters["cycles"])
    busy = [int(v) for v in counters.get("pe_busy", [])]
    return {
        "cycles": cycles,
        "ideal_cycles": math.ceil(nnz * columns / macs_per_cycle),
        "utilization": sum(busy) / (macs_per_cycle * cycles) if cycles else 0.0,
        "macs": int(counters.get("macs", 0)),
        "skipped": int(counters.get("skipped", 0)),
        "gather_stalls": int(counters.get("gather_stalls", 0)),
        "scatter_stalls": int(counters.get("scatter_stalls", 0)),
        "insns": int(counters.get("insns", 0)),
        "pe_busy": busy,
    }
