"""Finding the command-line tools zeroskip drives (simulators, YoWASP, loaders), and the
lock their shared build directories take."""

import contextlib
import fcntl
import os
import shutil
import sys
from pathlib import Path

__all__ = ["find_tool", "locked", "scripts_dir"]


def scripts_dir():
    """The directory of the running interpreter's console scripts (a virtualenv's bin)."""
    return str(Path(sys.executable).parent)


def find_tool(name, *, add_to_path=False):
    """Return the path of the executable ``name``, or ``None``.

    Looks on ``PATH`` first, then beside the running interpreter, so tools
    installed into a virtualenv are found even when it is not activated.

    Parameters
    ----------
    name : str
    add_to_path : bool
        When the tool is found only beside the interpreter, put that directory
        on this process's ``PATH`` (for programs that look tools up by name).
    """
    found = shutil.which(name)
    if found:
        return found
    found = shutil.which(name, path=scripts_dir())
    if found and add_to_path:
        os.environ["PATH"] = scripts_dir() + os.pathsep + os.environ.get("PATH", "")
    return found


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on the file ``path`` (created with its folder) while
    the block runs: one process at a time builds a shared simulator directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
