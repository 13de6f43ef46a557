"""Progress of long steps on standard error: a live display, plain lines, or nothing.

Every step that can take more than a few seconds (generating Verilog,
building a simulator, compiling a large matrix, running many tiles, a board
build, a sweep) reports through :func:`task`::

    with progress.task("building the verilator simulation") as step:
        step.phase("compiling C++")          # a new stage
        step.detail("V_top__ALL.cpp")        # what the stage is doing now
    with progress.task("running tiles") as step:
        run(..., progress=step)              # step(done, total) after each tile

Where it shows:

- standard error is a terminal: a live line with a spinner (a bar when the
  total is known), the stage, its detail and the elapsed time (``rich``);
- otherwise (a log, CI, a pipe): plain lines, only for a step that runs
  longer than :data:`DELAY` seconds: when it starts a stage, every tenth of
  its total, every :data:`HEARTBEAT` seconds, and when it ends;
- nowhere after :func:`set_quiet` (``zeroskip ... --json -`` writes JSON to
  standard output and nothing else) or with ``ZEROSKIP_PROGRESS=0``.
"""

import contextlib
import os
import sys
import threading
import time

__all__ = ["task", "tracker", "follow", "set_quiet", "is_quiet", "DELAY", "HEARTBEAT"]

#: Seconds a step runs before plain lines start (quick steps print nothing).
DELAY = 2.0
#: Seconds between plain lines while nothing else is reported.
HEARTBEAT = 30.0
#: ``ZEROSKIP_PROGRESS=0`` silences progress; ``plain`` forces plain lines.
ENV = "ZEROSKIP_PROGRESS"

_quiet = False
_lock = threading.RLock()


def set_quiet(quiet=True):
    """Silence (or restore) every progress display of this process."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet():
    return _quiet or os.environ.get(ENV, "").lower() in ("0", "no", "off", "quiet")


def _elapsed(seconds):
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s"


class Task:
    """One long step; also a ``progress(done, total)`` callback.

    Use :func:`task` to make one. Calling it with ``done == total`` does not
    end it; leaving the ``with`` block (or :meth:`close`) does.
    """

    def __init__(self, what, total=None):
        self.what = what
        self.total = total
        self.done = 0
        self.stage = ""
        self.info = ""
        self.started = time.monotonic()

    @property
    def elapsed(self):
        return time.monotonic() - self.started

    def phase(self, stage):
        """Start a new stage of the step (``"nextpnr: routing"``)."""
        if stage != self.stage:
            self.stage, self.info = stage, ""
            self._changed(stage=True)

    def detail(self, text):
        """What the current stage is doing now (a tool's last line)."""
        self.info = text.strip()[:100]
        self._changed()

    def __call__(self, done, total=None):
        self.done = done
        if total is not None:
            self.total = total
        self._changed()

    def _changed(self, stage=False):
        pass

    def close(self, ok=True):
        pass

    def _label(self):
        return f"{self.what}: {self.stage}" if self.stage else self.what


class _Silent(Task):
    pass


class _Plain(Task):
    """Plain lines on a stream that is not a terminal."""

    def __init__(self, what, total=None, *, stream, delay=DELAY, heartbeat=HEARTBEAT):
        super().__init__(what, total)
        self.stream = stream
        self.delay = delay
        self.heartbeat = heartbeat
        self.printed = None      # time of the last line, None before the first
        self.next_tenth = 1
        self.pending_stage = False
        self._stop = threading.Event()
        self._thread = None
        if delay > 0 or heartbeat > 0:
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()

    def _line(self, text):
        with _lock:
            print(f"{text} ({_elapsed(self.elapsed)})", file=self.stream, flush=True)
        self.printed = time.monotonic()

    def _status(self):
        text = self._label()
        if self.total:
            text += f": {self.done}/{self.total}"
        if self.info:
            text += f" [{self.info}]"
        return text

    def _changed(self, stage=False):
        with _lock:
            self.pending_stage |= stage
            if self.elapsed < self.delay:
                return
            tenth = self.total and self.done * 10 >= self.next_tenth * self.total
            if self.printed is None or self.pending_stage or tenth:
                if self.total:
                    self.next_tenth = self.done * 10 // self.total + 1
                self.pending_stage = False
                self._line(self._status())

    def _watch(self):
        while not self._stop.wait(0.5):
            now = time.monotonic()
            if self.printed is None:
                if self.elapsed >= self.delay:
                    self._changed()
            elif self.heartbeat > 0 and now - self.printed >= self.heartbeat:
                self._line(self._status())

    def close(self, ok=True):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.printed is not None:
            self._line(f"{self.what}: {'done' if ok else 'failed'}")


class _Live:
    """The one ``rich`` live display of the process, shared by nested tasks."""

    def __init__(self):
        self.display = None
        self.users = 0

    def add(self, task):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        with _lock:
            if self.display is None:
                self.display = Progress(
                    SpinnerColumn(), TextColumn("{task.description}"),
                    BarColumn(bar_width=24), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)
                self.display.start()
            self.users += 1
            return self.display.add_task(task.what, total=task.total)

    def remove(self, ident, line):
        with _lock:
            self.display.remove_task(ident)
            if line:
                self.display.console.print(line, highlight=False)
            self.users -= 1
            if self.users == 0:
                self.display.stop()
                self.display = None


_live = _Live()


class _Rich(Task):
    """A live line on a terminal."""

    def __init__(self, what, total=None, *, delay=DELAY):
        super().__init__(what, total)
        self.delay = delay
        self.ident = _live.add(self)

    def _changed(self, stage=False):
        description = self._label() + (f" [dim]{_escape(self.info)}[/]" if self.info else "")
        _live.display.update(self.ident, description=description, completed=self.done,
                             total=self.total)

    def close(self, ok=True):
        line = None
        if self.elapsed >= self.delay or not ok:
            line = f"{self.what}: {'done' if ok else 'failed'} ({_elapsed(self.elapsed)})"
        _live.remove(self.ident, line)


def _escape(text):
    from rich.markup import escape
    return escape(text)


def _make(what, total, delay, stream):
    mode = os.environ.get(ENV, "").lower()
    if is_quiet():
        return _Silent(what, total)
    stream = stream if stream is not None else sys.stderr
    terminal = stream is sys.stderr and stream.isatty() and mode != "plain"
    if terminal:
        return _Rich(what, total, delay=delay)
    return _Plain(what, total, stream=stream, delay=delay)


@contextlib.contextmanager
def task(what, *, total=None, delay=DELAY, stream=None):
    """Show the progress of a long step while the ``with`` block runs.

    Parameters
    ----------
    what : str
        The step, as a short phrase (``"generating Verilog"``).
    total : int, optional
        Units of work when known (tiles, runs); a bar then shows ``done/total``.
    delay : float
        Seconds before plain lines start (0: at once).
    stream : file, optional
        Where plain lines go (standard error by default).

    Yields
    ------
    Task
        :meth:`Task.phase`, :meth:`Task.detail`, and ``task(done, total)``.
    """
    step = _make(what, total, delay, stream)
    ok = False
    try:
        yield step
        ok = True
    finally:
        step.close(ok)


def tracker(what):
    """A ``progress(done, total)`` callback that shows a step and ends it at ``done == total``.

    For code that takes a callback and has no ``with`` block of its own (the
    driver's tiles): the step starts at the first call.
    """
    state = {}

    def progress(done, total):
        if "cm" not in state:
            state["cm"] = task(what, total=total)
            state["step"] = state["cm"].__enter__()
        state["step"](done, total)
        if done >= total:
            cm = state.pop("cm")
            state.pop("step")
            cm.__exit__(None, None, None)
    return progress


def _last_line(path, size=4096):
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - size))
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line for line in lines if line.strip()]
    return lines[-1] if lines else ""


@contextlib.contextmanager
def follow(step, path, *, interval=0.5):
    """Show the last line of the log at ``path`` as ``step``'s detail while the block runs.

    For a tool that writes its log as it goes (a simulator's build).
    """
    if isinstance(step, _Silent):
        yield step
        return
    stop = threading.Event()

    def watch():
        shown = ""
        while not stop.wait(interval):
            line = _last_line(path)
            if line and line != shown:
                shown = line
                step.detail(line)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield step
    finally:
        stop.set()
        thread.join()
