"""The application on top of every other layer: the public API (:mod:`.api`),
the ``zeroskip`` command (:mod:`.cli`, one module per command in
:mod:`.commands`), the network flow (:mod:`.nn`), reports, sweeps, the demo and
the CPU, energy and host-link models."""
