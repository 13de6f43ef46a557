"""cocotb test module: runs a batch of jobs on the generated accelerator.

Started by :mod:`zeroskip.sim.cocotb_backend`; it reads the jobs from the
pickle named by ``ZEROSKIP_JOBS`` and writes one result (or error) per job to
the pickle named by ``ZEROSKIP_RESULTS``. The batch's ``load`` says how the
driver fills the memories: ``"axi"`` through the host port, ``"backdoor"``
through the simulator's handles, ``"compare"`` both (see
:func:`~zeroskip.sim.backdoor.compare_loads`).
"""

import os
import pickle

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from zeroskip.core.errors import ZeroskipError
from zeroskip.sim.backdoor import BackdoorMemories, MemoryLayout, compare_loads
from zeroskip.sim.backends import SessionJob, job_polls, run_job
from zeroskip.sim.buses import CocotbBus
from zeroskip.sim.cocotb_backend import ENV_JOBS, ENV_RESULTS

MANAGER_OUTPUTS = ("awaddr", "awvalid", "wdata", "wstrb", "wvalid", "bready",
                   "araddr", "arvalid", "rready")


@cocotb.test()
async def run_jobs(dut):
    """Run every job through the driver over AXI4-Lite."""
    with open(os.environ[ENV_JOBS], "rb") as file:
        batch = pickle.load(file)
    config, jobs = batch["config"], batch["jobs"]

    # Drive every manager output before reset ends: an undriven valid would
    # reach the slave's state machine as X.
    for name in MANAGER_OUTPUTS:
        getattr(dut, f"axil__{name}").value = 0
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "axil_"), dut.clk, dut.rst)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    bus = CocotbBus(master)
    load = batch["load"]
    results = []
    try:
        backdoor = BackdoorMemories(dut, MemoryLayout(config, batch["memories"]))
    except ZeroskipError as error:  # no usable back door: every job that needs one fails
        backdoor = error
    for job in jobs:
        polls = job_polls(job)
        try:
            if load != "axi" and isinstance(backdoor, ZeroskipError):
                raise backdoor
            if load == "compare" and not isinstance(job, SessionJob):
                results.append(await compare_loads(bus, backdoor, job, max_polls=polls))
                continue
            results.append(await run_job(bus, config, job, max_polls=polls,
                                         memories=backdoor if load == "backdoor" else None))
        except ZeroskipError as error:
            results.append(error)

    partial = os.environ[ENV_RESULTS] + ".partial"
    with open(partial, "wb") as file:
        pickle.dump(results, file)
    os.replace(partial, os.environ[ENV_RESULTS])
