"""Energy model: per-event energies applied to the performance counters.

One table, :data:`EVENTS`, gives the energy of each event at 45 nm, 0.9 V,
with its source. The sources are:

- [H14] M. Horowitz, "Computing's energy problem (and what we can do about
  it)", ISSCC 2014, pp. 10-14 (the 45 nm energy table: integer add 8/16/32
  bits 0.03/0.05/0.1 pJ; integer multiply 8/32 bits 0.2/3.1 pJ; 64-bit SRAM
  read 10 pJ from an 8 KB array, 20 pJ from 32 KB, 100 pJ from 1 MB);
- [HPTD15] S. Han, J. Pool, J. Tran, W. Dally, "Learning both weights and
  connections for efficient neural networks", NeurIPS 2015, Table 1
  (45 nm, from [H14]): 32-bit register file access 1 pJ; 32-bit DRAM
  access 640 pJ (the low end of [H14]'s 1.3-2.6 nJ per 64-bit DRAM access,
  per 32 bits).

Derived entries say how they were derived (``note``). SRAM energies are per
access and scale linearly with the word width from [H14]'s 64-bit figures;
an array is charged at the smallest of [H14]'s sizes that holds it. Static
power and the clock tree are not modelled.

:func:`energy` turns counters and the sizes of one run into a breakdown in
picojoules: the accelerator's compute. :func:`transfer_energy` charges the
words moved between the host and the accelerator (counted by
:mod:`zeroskip.app.transfers`) apart from it, so compute-only energy stays
visible.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Event", "EVENTS", "sram_read_pj", "energy", "transfer_energy", "table_markdown"]


@dataclasses.dataclass(frozen=True)
class Event:
    name: str
    pj: float
    source: str
    note: str = ""


#: Per-event energies, 45 nm.
EVENTS = {
    "add8": Event("8-bit integer add", 0.03, "H14"),
    "add16": Event("16-bit integer add", 0.05, "H14"),
    "add32": Event("32-bit integer add (accumulate)", 0.1, "H14"),
    "mul8": Event("8-bit integer multiply", 0.2, "H14"),
    "mul16": Event("16-bit integer multiply", 0.8, "H14",
                   "derived: multiplier energy grows with the square of the width; "
                   "4 x the 8-bit figure (the 32-bit one, 3.1 pJ, is 15.5 x)"),
    "mul32": Event("32-bit integer multiply", 3.1, "H14"),
    "sram8k_64": Event("64-bit read, 8 KB SRAM", 10.0, "H14"),
    "sram32k_64": Event("64-bit read, 32 KB SRAM", 20.0, "H14"),
    "sram1m_64": Event("64-bit read, 1 MB SRAM", 100.0, "H14"),
    "reg32": Event("32-bit register file access / register hop", 1.0, "HPTD15",
                   "used for one hop of a word through a pipeline register or network "
                   "stage, scaled by width / 32"),
    "control": Event("sequencer and decoder control, per cycle", 1.0, "HPTD15",
                      "assumed: one 32-bit register access per cycle for the sequencer "
                      "state"),
    "dram32": Event("32-bit DRAM access (host transfer, per word)", 640.0, "HPTD15",
                    "charged once per 32-bit word moved between the host and the "
                    "accelerator: the host reads it from or writes it to its DRAM; the low end "
                    "of [H14]'s 1.3-2.6 nJ per 64 bits, so a lower bound; the link's own I/O "
                    "energy (pads, UART, USB) is in neither source and not modelled"),
}

_SRAM_SIZES = ((8 * 1024, "sram8k_64"), (32 * 1024, "sram32k_64"), (1 << 20, "sram1m_64"))


def sram_read_pj(width_bits, size_bytes):
    """Energy of one ``width_bits`` access to an SRAM of ``size_bytes`` (write = read)."""
    key = next((k for limit, k in _SRAM_SIZES if size_bytes <= limit), _SRAM_SIZES[-1][1])
    return EVENTS[key].pj * width_bits / 64.0


def _mul(width):
    return EVENTS["mul8" if width <= 8 else "mul16" if width <= 16 else "mul32"].pj


def energy(config, *, cycles, macs, tokens, rows_out, x_writes=0):
    """Energy breakdown (pJ) of one run from its counts.

    Parameters
    ----------
    config : AcceleratorConfig
    cycles : int
        The ``CYCLES`` counter.
    macs : int
        Multiplies issued (``MACS``).
    tokens : int
        Entries streamed (the sum of ``PE_BUSY``): each reads a nonzero
        word and an operand of X and moves the operand through the gather
        network (two register hops).
    rows_out : int
        Output words written (one per row and input; read back once).
    x_writes : int
        Words written to X.

    Returns
    -------
    dict
        ``mac``, ``nz_read``, ``x_read``, ``network``, ``out``, ``control``
        and ``total`` in pJ.
    """
    vw, aw = config.value_width, config.acc_width
    nz_bits = config.col_width + vw
    nz_bytes = config.nz_depth * nz_bits // 8
    x_bytes = config.x_depth * vw // 8
    out_bytes = config.row_depth * aw // 8
    parts = {
        "mac": macs * (_mul(vw) + EVENTS["add32"].pj),
        "nz_read": tokens * sram_read_pj(nz_bits, nz_bytes),
        "x_read": tokens * sram_read_pj(vw, x_bytes) + x_writes * sram_read_pj(vw, x_bytes),
        "network": tokens * 2 * EVENTS["reg32"].pj * vw / 32.0,
        # Each output word: written once by the epilogue, read once by the host.
        "out": rows_out * 2 * sram_read_pj(aw, out_bytes),
        "control": cycles * EVENTS["control"].pj,
    }
    parts["total"] = sum(parts.values())
    return parts


def transfer_energy(words):
    """Energy (pJ) of moving ``words`` 32-bit words between the host and the accelerator."""
    return words * EVENTS["dram32"].pj


def table_markdown():
    """The event table as Markdown."""
    lines = ["| event | pJ (45 nm) | source | note |", "| --- | ---: | --- | --- |"]
    for event in EVENTS.values():
        lines.append(f"| {event.name} | {event.pj:g} | {event.source} | {event.note} |")
    return "\n".join(lines)
