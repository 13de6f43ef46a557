"""zeroskip: sparse-aware accelerators generated from Python.

The package root stays light: it exposes the configuration, and
:class:`~zeroskip.api.Accelerator` (the public API) is imported when first
used. The hardware lives in :mod:`zeroskip.hdl`, the compiler and ISA model in
:mod:`zeroskip.firmware`, the execution backends in :mod:`zeroskip.sim`.
"""

from zeroskip.config import AcceleratorConfig, ConfigError

__all__ = ["AcceleratorConfig", "ConfigError", "Accelerator", "Result"]
__version__ = "0.1.0"

_LAZY = {"Accelerator": "zeroskip.api", "Result": "zeroskip.api"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zeroskip' has no attribute {name!r}")
