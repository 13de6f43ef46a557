"""zeroskip: sparse-aware accelerators generated from Python.

The package root stays light: it exposes the configuration only. The hardware
lives in :mod:`zeroskip.hdl`, the compiler and ISA model in
:mod:`zeroskip.firmware`, the execution backends in :mod:`zeroskip.sim`.
"""

from zeroskip.config import AcceleratorConfig, ConfigError

__all__ = ["AcceleratorConfig", "ConfigError"]
__version__ = "0.1.0"
