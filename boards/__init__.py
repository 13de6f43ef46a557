"""Board targets: UART link, board tops, bitstream builds and programming.

Modules (import what you need; nothing is imported here):

- :mod:`.protocol`: the link's frame format and constants, shared by
  gateware and host;
- :mod:`.uart`, :mod:`.bridge`: UART and the UART-to-AXI4-Lite bridge;
- :mod:`.bridged`: :class:`~.bridged.BridgedAccelerator`, a board's logic
  (UART, bridge and accelerator) without pins or clocking;
- :mod:`.clocking`, :mod:`.targets`, :mod:`.tops`: PLLs, the known boards and
  their top levels;
- :mod:`.build`: bitstream builds, their reports, and programming;
- :mod:`.link`: :class:`~.link.SerialBus`, the host side of the link (a bus
  for :class:`~zeroskip.sim.driver.Driver`);
- :mod:`.cosim`: the board logic under cocotb with the host code on a pty.
"""
