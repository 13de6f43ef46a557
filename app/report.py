"""``zeroskip report``: the networks report, one Markdown page with PNG plots.

:func:`render` runs the digits example (dense, then 50/75/90/95 % pruned
one-shot and gradually, int8) and the Graph Challenge (int16) on the ISA
model, measures the CPU peers (scipy.sparse on one core, onnxruntime) in the
same run, and writes ``report.md`` with five plots: accuracy versus
sparsity, speedup over dense mode versus sparsity, utilization per layer,
energy breakdown, accelerator versus CPU; and the CPU's energy per inference
(with its power basis) against the accelerator's projection.
The page states the board, clock and PE count it assumes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from zeroskip.app.energy import table_markdown

__all__ = ["render", "collect"]

_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name):
    path = _EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"zeroskip_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def collect(*, gc_images=1200, digits_limit=None, backend="model"):
    """Run the examples: ``{"digits": [rows], "graph_challenge": result}``."""
    rows = _example("digits").run(backend=backend, limit=digits_limit)
    gc, ok = _example("graph_challenge").run(gc_images, backend=backend)
    for row in rows:
        row.pop("outputs", None)
    gc.pop("outputs", None)
    return {"digits": rows, "graph_challenge": gc}


def _plots(data, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, gc = data["digits"], data["graph_challenge"]
    dense = rows[0]
    files = {}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files[name] = name

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in (("one-shot", "o"), ("gradual", "s")):
        sel = [r for r in rows if r["method"] == method]
        xs = [100 * r["sparsity"] for r in sel]
        ax.plot(xs, [100 * r["accuracy"] for r in sel], marker=marker,
                label=f"{method}, int8 on the accelerator")
        ax.plot(xs, [100 * r["float_pruned_accuracy"] for r in sel], marker=marker,
                linestyle="--", alpha=0.6, label=f"{method}, float64")
    ax.axhline(100 * dense["float_accuracy"], color="k", linewidth=0.8, label="dense float")
    ax.set_xlabel("weight sparsity (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Digits MLP: accuracy versus sparsity")
    ax.legend(fontsize=7)
    save(fig, "accuracy.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    sel = [r for r in rows if r["method"] == "gradual"]
    ax.plot([0] + [100 * r["sparsity"] for r in sel],
            [dense["speedup_over_dense_mode"]] + [r["speedup_over_dense_mode"] for r in sel],
            marker="o", label="digits (gradual)")
    ax.set_xlabel("weight sparsity (%)")
    ax.set_ylabel("speedup over dense mode (cycles)")
    ax.set_title("Speedup over the same array in dense mode")
    ax.legend()
    save(fig, "speedup.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    util = [row["utilization"] for row in gc["layers"]]
    ax.bar(range(1, len(util) + 1), util)
    ax.set_xlabel("Graph Challenge layer")
    ax.set_ylabel("PE utilization")
    ax.set_ylim(0, 1)
    ax.set_title("Utilization per layer (busy PE cycles / (cycles x PEs))")
    save(fig, "utilization.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    g90 = next(r for r in rows if r["method"] == "gradual" and r["sparsity"] == 0.9)
    cases = [("digits 90 %\nsparse", g90["energy_breakdown_nj"]),
             ("digits 90 %\ndense mode", g90["dense_mode_energy_breakdown_nj"]),
             ("Graph Chal.\nsparse", gc["energy_breakdown_nj"]),
             ("Graph Chal.\ndense mode", gc["dense_mode_energy_breakdown_nj"])]
    # Compute parts, then the host transfers (sparse runs only) as their own layer.
    keys = [k for k in cases[0][1] if not k.startswith("total")]
    bottom = [0.0] * len(cases)
    for key in keys:
        values = [c[1].get(key, 0.0) for c in cases]
        ax.bar([c[0] for c in cases], values, bottom=bottom, label=key)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_yscale("log")
    ax.set_ylabel("energy per inference (nJ, log)")
    ax.set_title("Energy breakdown (45 nm event model)")
    ax.legend(fontsize=7)
    save(fig, "energy.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    series = (("accelerator (projected)", "accelerator_s"),
              ("scipy.sparse, 1 core", "scipy_sparse_1_thread_s"),
              ("onnxruntime, 1 thread", "dense_1_thread_s"),
              ("onnxruntime, all threads", "dense_all_threads_s"))
    labels, values = [], {key: [] for _, key in series}
    for name, r in (("digits 90 %", g90), ("Graph Challenge", gc)):
        if "cpu" not in r:
            continue
        labels.append(name)
        for _, key in series:
            values[key].append(1e6 * r["cpu"][key])
    xs = range(len(labels))
    width = 0.2
    for index, (label, key) in enumerate(series):
        offset = (index - (len(series) - 1) / 2) * width
        ax.bar([x + offset for x in xs], values[key], width=width, label=label)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels)
    ax.set_yscale("log")
    ax.set_ylabel("time per inference (us, log)")
    ax.set_title("Accelerator versus CPU")
    ax.legend(fontsize=7)
    save(fig, "cpu.png")
    return files


def _transfer_lines(rows, gc):
    """Compute and end-to-end time per inference on each host link, and words moved."""
    g90 = next(r for r in rows if r["method"] == "gradual" and r["sparsity"] == 0.9)
    lines = ["Host transfers (counted by running the host driver, `app/transfers.py`), "
             "per inference:", "",
             "| network | compute | end to end, AXI4-Lite | end to end, UART | words moved | "
             "transfer energy |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in (("digits 90 % gradual", g90), ("Graph Challenge", gc)):
        acc = r["accelerator"]
        moved = acc["data_movement"]
        links = moved["links"]
        lines.append(
            f"| {name} | {1e6 * acc['seconds_per_inference']:.2f} us | "
            f"{1e6 * links['axi4-lite']['end_to_end_seconds_per_inference']:.2f} us | "
            f"{1e3 * links['uart']['end_to_end_seconds_per_inference']:.2f} ms | "
            f"{moved['total_words_per_inference']:,.0f} | "
            f"{r['energy_breakdown_nj']['transfers']:.0f} nJ |")
    moved = gc["accelerator"]["data_movement"]
    lines += ["", f"Links: {moved['links']['axi4-lite']['rate']}; "
              f"{moved['links']['uart']['rate']}. One-off loads "
              f"({', '.join(moved['one_off'])}): {moved['amortisation']}.", ""]
    return lines


def _markdown(data):
    rows, gc = data["digits"], data["graph_challenge"]
    acc = gc["accelerator"]
    lines = [
        "# zeroskip: pruned networks on the accelerator", "",
        f"Assumed hardware: **{acc['board_title']}** ({acc['board']}), **{acc['pes']} PEs** at "
        f"**{acc['clock_mhz']:g} MHz** ({acc['clock_source']}), formats "
        f"{', '.join(acc['formats'])}. Accelerator times are counted cycles (ISA model, equal "
        f"to the RTL's counters) divided by that clock. {acc['layer_chaining']}.", "",
        *_transfer_lines(rows, gc),
        "## Digits MLP (64-64-10, int8)", "",
        "| method | sparsity | float64 | accelerator | bit-exact | cycles/inf | dense mode | "
        "speedup | nJ/inf | dense-mode nJ |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {100 * r['sparsity']:.0f} % | "
            f"{100 * r['float_pruned_accuracy']:.2f} % | {100 * r['accuracy']:.2f} % | "
            f"{'yes' if r['bit_exact_vs_quantized_reference'] else 'no'} | "
            f"{r['cycles_per_inference']:.0f} | {r['dense_mode_cycles_per_inference']:.0f} | "
            f"{r['speedup_over_dense_mode']:.2f}x | {r['energy_per_inference_nj']:.2f} | "
            f"{r['dense_mode_energy_per_inference_nj']:.2f} |")
    lines += ["", "![accuracy](accuracy.png)", "", "![speedup](speedup.png)", "",
              "## Sparse DNN Graph Challenge (1024 x 30 layers, int16)", "",
              f"{gc['images']} images; categories equal to the truth file: "
              f"**{'yes' if gc['categories_match_truth'] else 'NO'}** "
              f"({len(gc['categories'])} found); bit-exact with the quantized reference: "
              f"{'yes' if gc['bit_exact_vs_quantized_reference'] else 'no'}. "
              f"Images whose activations died are not sent again (the challenge's sparse Y "
              f"drops empty rows); images sent per layer: "
              f"{[row['inputs_sent'] for row in gc['layers']]}.", "",
              f"Cycles per inference {gc['cycles_per_inference']:.0f}, dense mode "
              f"{gc['dense_mode_cycles_per_inference']:.0f} "
              f"({gc['speedup_over_dense_mode']:.1f}x); energy per inference "
              f"{gc['energy_per_inference_nj']:.0f} nJ, dense mode "
              f"{gc['dense_mode_energy_per_inference_nj']:.0f} nJ "
              f"({gc['dense_mode_energy_per_inference_nj'] / gc['energy_per_inference_nj']:.1f}x).",
              "", "![utilization](utilization.png)", "", "## Energy", "",
              "Per-event energies applied to the counters (`app/energy.py`):", "",
              table_markdown(), "", "![energy](energy.png)", "", "## Accelerator versus CPU",
              ""] + _cpu_section(rows, gc)
    return "\n".join(lines)


def _cpu_section(rows, gc):
    """The "Accelerator versus CPU" lines: times, ratios, CPU energy and its basis."""
    lines = ["Measured in the same run on this machine: scipy.sparse on one core (float64, "
             "CSR weights, sparse activations where they stay sparse: the Graph Challenge's "
             "own algorithm) and onnxruntime (float32, dense weights: it does not skip "
             "zeros); per inference, ratio = CPU time / accelerator time (above 1 the "
             "accelerator is faster):", "",
             "| network | accelerator | scipy.sparse 1 core | ORT dense 1 thread | "
             "ORT dense all threads | ORT pruned 1 thread | ORT pruned all threads |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    g90 = next(r for r in rows if r["method"] == "gradual" and r["sparsity"] == 0.9)
    cases = [(name, r["cpu"]) for name, r in (("digits 90 % gradual", g90),
                                              ("Graph Challenge", gc)) if r.get("cpu")]
    for name, c in cases:
        a = c["accelerator_s"]

        def cell(t, a=a):
            return f"{1e6 * t:.2f} us ({t / a:.2f}x)"
        lines.append(f"| {name} | {1e6 * a:.2f} us | {cell(c['scipy_sparse_1_thread_s'])} | "
                     f"{cell(c['dense_1_thread_s'])} | {cell(c['dense_all_threads_s'])} | "
                     f"{cell(c['pruned_1_thread_s'])} | {cell(c['pruned_all_threads_s'])} |")
    lines += ["", "scipy.sparse's variant, chosen by measurement: "
              + "; ".join(f"{name}: {c['scipy_sparse_method']}" for name, c in cases)
              + f". One core: {cases[0][1]['one_core']}." if cases else "", "",
              "![cpu](cpu.png)", "", "## Energy: accelerator versus CPU", "",
              "CPU energy per inference = the measured time above x the power figure below. "
              "The accelerator's figure is an ASIC-style projection (45 nm event model), not a "
              "measurement. The seed's claim is about 70x less energy than a CPU.", "",
              "| network | accelerator (45 nm projection) | scipy.sparse 1 core | "
              "ORT dense 1 thread | CPU / accelerator (scipy) | CPU / accelerator (ORT) | "
              "claim |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, c in cases:
        e, ratio = c["energy_per_inference_nj"], c["energy_ratio_vs_accelerator"]
        lines.append(f"| {name} | {c['accelerator_energy_per_inference_nj']:.1f} nJ | "
                     f"{e['scipy_sparse_1_thread']:.0f} nJ | "
                     f"{e['onnxruntime_dense_1_thread']:.0f} nJ | "
                     f"{ratio['scipy_sparse_1_thread']:.1f}x | "
                     f"{ratio['onnxruntime_dense_1_thread']:.1f}x | about 70x |")
    if cases:
        lines += ["", f"CPU power basis: {cases[0][1]['energy_basis']}."
                  + (" (an estimate, not a measurement of this CPU)"
                     if cases[0][1]["energy_estimate"] else ""), ""]
    return lines


def render(output, *, gc_images=1200, digits_limit=None, data=None):
    """Write ``output/report.md`` (and its plots and ``data.json``); returns its path."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = collect(gc_images=gc_images, digits_limit=digits_limit)
    _plots(data, output)
    (output / "data.json").write_text(json.dumps(data, indent=1) + "\n")
    path = output / "report.md"
    tmp = output / "report.md.tmp"
    tmp.write_text(_markdown(data))
    tmp.replace(path)
    return path
