"""Errors zeroskip reports to its users.

Every error a user can cause derives from :class:`ZeroskipError`; the CLI
prints its message on one line and exits non-zero. Messages name the problem
precisely: file and line, row and column, value, parameter.
"""

__all__ = ["ZeroskipError", "ConfigError", "InputError", "CompileError",
           "ProgramMismatchError", "DeviceError", "InternalError"]


class ZeroskipError(Exception):
    """Base of all errors zeroskip reports to users."""


class ConfigError(ZeroskipError, ValueError):
    """An accelerator configuration that cannot be built."""


class InputError(ZeroskipError, ValueError):
    """Unreadable or invalid input data (matrix or vector files, arrays)."""


class CompileError(ZeroskipError, ValueError):
    """Input the firmware compiler cannot turn into a program."""


class ProgramMismatchError(ZeroskipError):
    """A program built for a different accelerator configuration."""


class DeviceError(ZeroskipError):
    """The accelerator (or its simulation) reported an error or stopped answering.

    Attributes
    ----------
    code : ErrorCode or None
        The error code from the status register, if the hardware set one.
    pc : int or None
        The instruction address the hardware reported.
    tile : int or None
        The index of the program's tile whose run failed.
    result : RunResult or None
        What the run produced up to and including the failed tile (its
        counters; its results only after ``OVERFLOW``, other words are 0).
    """

    def __init__(self, message, *, code=None, pc=None, tile=None, result=None):
        super().__init__(message)
        self.code = code
        self.pc = pc
        self.tile = tile
        self.result = result


class InternalError(RuntimeError):
    """A figure zeroskip computed broke a bound it must meet: a bug in zeroskip,
    not in the user's input (deliberately not a :class:`ZeroskipError`)."""
