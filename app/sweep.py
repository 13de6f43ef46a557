"""Design-space sweeps on Dask: bitstream builds and runs over grids.

Two grids, either or both in one sweep:

- **builds**: boards x lane counts x clocks. Each point builds the board's
  bitstream (:func:`zeroskip.boards.build.build`) with the board's default
  accelerator at that lane count and reports Fmax and resource use.
- **runs**: configurations x matrices. Each point runs ``zeroskip run`` on a
  backend (the ISA model by default, or a simulator) and reports cycles and
  utilization.

The points run on a Dask cluster: a local one by default (threads of this
process: every point runs its tools as child processes), or an existing
cluster given by its scheduler address, with nothing else to change. Matrix
files are read here and sent to the workers, so they need no shared file
system. :func:`summarize` joins both grids into one throughput figure per
point and marks the Pareto front (most throughput for the fewest LUTs/BRAM);
:func:`plot` draws it.

Throughput of a build point is ``lanes x clock x utilization`` nonzeros per
second, at the clock the build met (``min(clock, Fmax)``) and the mean
utilization that the run grid measured at that lane count (1.0, the peak,
when the sweep ran no matrices at that lane count; the result says which).
"""

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zeroskip.core.config import AcceleratorConfig
from zeroskip.core.errors import InputError

__all__ = ["BuildPoint", "RunPoint", "build_grid", "run_grid", "matrix_files", "run_sweep",
           "summarize", "plot", "MATRIX_SUFFIXES"]

#: Matrix files a directory contributes to a sweep.
MATRIX_SUFFIXES = (".mtx", ".npz")


@dataclasses.dataclass(frozen=True)
class BuildPoint:
    """One bitstream build: a board at a lane count and a clock (MHz; None = the board's)."""
    board: str
    pes: int
    clock_mhz: object = None

    @property
    def name(self):
        clock = "default" if self.clock_mhz is None else f"{self.clock_mhz:g}MHz"
        return f"{self.board}-{self.pes}pe-{clock}"


@dataclasses.dataclass(frozen=True)
class RunPoint:
    """One run: a configuration, a matrix file and a backend."""
    config: AcceleratorConfig
    matrix: str
    backend: str = "model"

    @property
    def name(self):
        return f"{Path(self.matrix).stem}-{self.config.pes}pe-{self.config.fingerprint}"


def build_grid(boards, pes, clocks=(None,)):
    """Every ``BuildPoint`` of ``boards x pes x clocks`` (board names checked)."""
    from zeroskip.boards.targets import get_board
    names = [get_board(board).name for board in boards]
    return [BuildPoint(board, int(n), clock) for board in names for n in pes for clock in clocks]


def run_grid(configs, matrices, backend="model"):
    """Every ``RunPoint`` of ``configs x matrices``."""
    return [RunPoint(config, str(matrix), backend) for config in configs for matrix in matrices]


def matrix_files(paths):
    """The matrix files named by ``paths``: files as given, directories expanded (sorted).

    Raises
    ------
    InputError
        For a path that does not exist or a directory without matrix files.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in MATRIX_SUFFIXES)
            if not files:
                raise InputError(f"{path}: no matrix files ({', '.join(MATRIX_SUFFIXES)}) in "
                                 f"this directory")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    return found


# What runs on a worker ---------------------------------------------------------------------------

def _evaluate_run(point, data):
    """Run ``zeroskip run`` on the matrix ``data`` (its file's bytes); return a result dict."""
    started = time.monotonic()
    result = {"kind": "run", "name": point.name, "matrix": point.matrix, "pes": point.config.pes,
              "backend": point.backend, "fingerprint": point.config.fingerprint}
    with tempfile.TemporaryDirectory(prefix="zeroskip-sweep-") as work:
        work = Path(work)
        matrix = work / Path(point.matrix).name
        matrix.write_bytes(data)
        config = work / "config.json"
        config.write_text(point.config.to_json())
        out = work / "run.json"
        env = dict(os.environ, ZEROSKIP_PROGRESS="0")
        process = subprocess.run(
            [sys.executable, "-m", "zeroskip", "run", str(matrix), "--config", str(config),
             "--backend", point.backend, "--json", str(out)],
            capture_output=True, text=True, errors="replace", env=env)
        result["exit_status"] = process.returncode
        if out.exists():
            report = json.loads(out.read_text())
            for key in ("nnz", "cycles", "ideal_cycles", "utilization", "gather_stalls",
                        "scatter_stalls", "format", "kernel", "matches_reference", "error",
                        "x_columns"):
                if key in report:
                    result[key] = report[key]
            work_items = report["nnz"] * report.get("x_columns", 1)
            result["nonzeros_per_cycle"] = work_items / report["cycles"] if report["cycles"] \
                else 0.0
        else:
            # The reason, naming the matrix as the sweep was given it.
            lines = process.stderr.replace(str(matrix), point.matrix).strip().splitlines()
            reason = lines[-1] if lines else f"exit status {process.returncode}"
            result["failure"] = reason.removeprefix("zeroskip: error: ")
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _evaluate_build(point, build_root):
    from zeroskip.boards import build
    from zeroskip.boards.targets import get_board
    started = time.monotonic()
    info = get_board(point.board)
    result = {"kind": "build", "name": point.name, "board": info.name, "pes": point.pes,
              "clock_mhz": point.clock_mhz or info.default_clock_mhz}
    try:
        report = build.build(info.name, config=info.config.replace(pes=point.pes),
                             clock_mhz=point.clock_mhz, check_timing=False,
                             build_dir=Path(build_root) / point.name)
    except build.BoardError as error:
        result["failure"] = str(error).splitlines()[0]
    else:
        result.update({
            "clock_mhz": report.clock_mhz, "fmax_mhz": report.fmax_mhz,
            "timing_met": report.timing_met,
            "resources": {name: list(value) for name, value in report.resources.items()},
            "build_seconds": round(report.seconds, 1), "bitstream": str(report.bitstream)})
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _evaluate(point, payload):
    if isinstance(point, RunPoint):
        return _evaluate_run(point, payload)
    return _evaluate_build(point, payload)


# The sweep ---------------------------------------------------------------------------------------

def _client(scheduler, workers):
    from dask.distributed import Client, LocalCluster
    if scheduler is not None:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                           processes=False, dashboard_address=None)
    return Client(cluster), cluster


def run_sweep(points, *, scheduler=None, workers=None, build_dir="build/sweep", progress=None):
    """Evaluate ``points`` on a Dask cluster; return one result dict per point, in order.

    Parameters
    ----------
    points : list of BuildPoint and RunPoint
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``); a local
        cluster when omitted.
    workers : int, optional
        Workers of the local cluster (default: one per CPU).
    build_dir : str or Path
        Where build points write their bitstreams (on the workers).
    progress : callable, optional
        ``progress(done, total)`` as points finish.

    Returns
    -------
    list of dict
        A point that failed has ``failure`` (one line) instead of its figures.
    """
    from dask.distributed import as_completed
    points = list(points)
    if not points:
        return []
    client, cluster = _client(scheduler, workers)
    try:
        matrices = sorted({p.matrix for p in points if isinstance(p, RunPoint)})
        # Each matrix file is read once here and sent to the workers that need it.
        data = {m: client.scatter(Path(m).read_bytes(), broadcast=False) for m in matrices}
        futures = {}
        for index, point in enumerate(points):
            payload = data[point.matrix] if isinstance(point, RunPoint) else str(build_dir)
            futures[client.submit(_evaluate, point, payload, pure=False)] = index
        results = [None] * len(points)
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(points))
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _mean_utilization(results):
    """Lane count -> mean utilization of the successful runs at that count."""
    by_pes = {}
    for r in results:
        if r["kind"] == "run" and "utilization" in r:
            by_pes.setdefault(r["pes"], []).append(r["utilization"])
    return {pes: sum(values) / len(values) for pes, values in by_pes.items()}


def _pareto(points, cost, gain):
    """Indices of the points no other point beats on both (less ``cost``, more ``gain``)."""
    front = []
    for i, p in enumerate(points):
        if not any((cost(q) <= cost(p) and gain(q) >= gain(p)) and
                   (cost(q) < cost(p) or gain(q) > gain(p)) for q in points):
            front.append(i)
    return front


def summarize(results):
    """The sweep's results with throughput and the Pareto fronts filled in.

    Returns
    -------
    dict
        ``results`` (each build with ``throughput_nnz_per_s`` and
        ``utilization_source``, each point with ``pareto_lut``/``pareto_bram``
        or, for runs, ``pareto_lanes``), and ``pareto``: the names on each front.
    """
    utilization = _mean_utilization(results)
    builds = [r for r in results if r["kind"] == "build" and "fmax_mhz" in r]
    for r in builds:
        clock = min(r["clock_mhz"], r["fmax_mhz"])
        measured = r["pes"] in utilization
        r["utilization_source"] = "measured by this sweep's runs" if measured else \
            "peak (no run at this lane count)"
        r["throughput_nnz_per_s"] = r["pes"] * clock * 1e6 * utilization.get(r["pes"], 1.0)
    pareto = {}
    for resource in ("LUT", "BRAM"):
        have = [r for r in builds if resource in r["resources"]]
        front = _pareto(have, lambda r: r["resources"][resource][0],  # noqa: B023
                        lambda r: r["throughput_nnz_per_s"])
        pareto[resource] = [have[i]["name"] for i in front]
    # Runs alone: throughput per cycle against lanes, per matrix (geometric mean).
    lanes = {}
    for r in results:
        if r["kind"] == "run" and r.get("nonzeros_per_cycle"):
            lanes.setdefault((r["pes"], r["fingerprint"]), []).append(r["nonzeros_per_cycle"])
    configs = [{"pes": pes, "fingerprint": fp,
                "nonzeros_per_cycle": math.exp(sum(map(math.log, v)) / len(v)),
                "matrices": len(v)} for (pes, fp), v in sorted(lanes.items())]
    front = _pareto(configs, lambda c: c["pes"], lambda c: c["nonzeros_per_cycle"])
    pareto["lanes"] = [configs[i]["fingerprint"] for i in front]
    return {"results": results, "configurations": configs, "pareto": pareto}


def plot(summary, path):
    """Draw throughput against LUTs and BRAM (builds) or against lanes (runs only) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    builds = [r for r in summary["results"] if "throughput_nnz_per_s" in r]
    panels = [("LUT", "LUTs"), ("BRAM", "block RAMs")] if builds else [("lanes", "lanes (PEs)")]
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for axis, (key, label) in zip(axes[0], panels):
        if builds:
            have = [r for r in builds if key in r["resources"]]
            xs = [r["resources"][key][0] for r in have]
            ys = [r["throughput_nnz_per_s"] / 1e6 for r in have]
            names = [r["name"] for r in have]
            axis.set_ylabel("throughput (M nonzeros/s at min(clock, Fmax))")
        else:
            have = summary["configurations"]
            xs = [c["pes"] for c in have]
            ys = [c["nonzeros_per_cycle"] for c in have]
            names = [c["fingerprint"] for c in have]
            axis.set_ylabel("nonzeros per cycle (geometric mean over matrices)")
        front = set(summary["pareto"][key])
        axis.scatter(xs, ys, color="tab:gray", label="configurations")
        on = sorted((x, y) for x, y, n in zip(xs, ys, names) if n in front)
        if on:
            axis.plot(*zip(*on), "o-", color="tab:red", label="Pareto front")
        for x, y, n in zip(xs, ys, names):
            axis.annotate(n, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("zeroskip sweep: throughput against cost")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
