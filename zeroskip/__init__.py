"""zeroskip: sparse-aware accelerators generated from Python.

The package root stays light: it exposes the configuration, and
:class:`~zeroskip.app.api.Accelerator` (the public API) is imported when first
used. The layers are sub-packages: the foundation (configuration, ISA, format
registry, timing rules) in :mod:`zeroskip.core`, the hardware in
:mod:`zeroskip.hdl`, the compiler and ISA model in :mod:`zeroskip.firmware`, the
execution backends in :mod:`zeroskip.sim`, the boards in :mod:`zeroskip.boards`
and the application (API, command line, networks) in :mod:`zeroskip.app`.
"""

from zeroskip.core.config import AcceleratorConfig, ConfigError

__all__ = ["AcceleratorConfig", "ConfigError", "Accelerator", "Result"]
__version__ = "0.1.0"

_LAZY = {"Accelerator": "zeroskip.app.api", "Result": "zeroskip.app.api"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zeroskip' has no attribute {name!r}")
