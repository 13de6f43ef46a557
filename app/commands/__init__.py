"""The commands of ``zeroskip``, one module each: its help, its parser and its run.

Each command module has ``HELP`` (summary, description, epilog) and
``add_parser(command)``, which registers the command through
``command(name, func)`` and adds its options; :mod:`zeroskip.app.cli` assembles
them (the networks' ``infer`` and ``report`` come from :mod:`zeroskip.app.nn.cli`).
:mod:`.common` holds what several commands share: the configuration options,
output files, the accelerator and the error line; :mod:`.matrix` the
operands and kernel options of the commands that compile a matrix.
"""
