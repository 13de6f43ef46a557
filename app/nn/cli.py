"""The ``zeroskip infer`` and ``zeroskip report`` commands.

:func:`add_commands` registers them on the main parser's sub-commands; their
bodies import onnx, onnxruntime and matplotlib only when run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zeroskip.app.commands.common import (
    EXT_OPTIONS,
    add_ext_options,
    check_board_options,
    write_json,
)
from zeroskip.boards.protocol import DEFAULT_BAUDRATE
from zeroskip.core.errors import InputError
from zeroskip.sim.backends import ALL_BACKENDS

__all__ = ["add_commands", "cmd_infer", "cmd_report", "load_array"]

_INFER_EPILOG = """\
The accelerator's time is its counted cycles divided by the named board's
default clock (its PE count is the board's). Measured in the same run on
this machine's CPU: scipy.sparse on one core (float64, CSR weights, sparse
activations where they stay sparse) and onnxruntime (dense float32, one
thread and all). CPU energy is that time x a stated power figure (RAPL when
readable, else the CPU model's TDP per core); the accelerator's energy is a
45 nm event-model projection.

--backend board runs the network on a board programmed with 'zeroskip build
--program' (its bitstream built from the configuration infer uses: the
--board's default with the network's value width and CSR and CSC), over its
UART bridge. It implies --chained, with the program resident: the board's
identity and configuration fingerprint are checked, code, weights and biases
are loaded once, then each batch writes its inputs, starts, polls and reads
its outputs and counters. Cycles, MACs and utilization are the board's own
counters; times are those cycles at the --board's clock, and the link's time
is the counted words at the baud rate (USB latency and the host's own time
are not counted); energies are model projections.

examples:
  zeroskip infer mlp.onnx --inputs x.npy --labels y.npy
  zeroskip infer mlp.onnx --inputs x.npy --prune 0.9 --value-width 8 --json build/infer.json
  zeroskip infer mlp.onnx --inputs x.npy --nm 2:4 --backend verilator --limit 64
  zeroskip infer mlp.onnx --inputs x.npy --prune 0.9 --chained
  zeroskip infer mlp.onnx --inputs x.npy --prune 0.9 --backend board --port /dev/ttyUSB1"""

_REPORT_EPILOG = """\
example:
  zeroskip report -o build/report"""


def load_array(path, what):
    """A ``.npy`` array, or an :class:`InputError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path}: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{what} {path}: not a NumPy .npy array: {error}") from None


def add_commands(commands, formatter):
    """Register ``infer`` and ``report`` on ``commands`` (an argparse sub-parsers object)."""
    sub = commands.add_parser(
        "infer", help="run an ONNX network on the accelerator and compare with the CPU",
        description="Import an ONNX feed-forward network, prune (optional) and quantize it, "
                    "compile it to the accelerator, run a batch of inputs and report accuracy, "
                    "cycles, utilization, energy and the CPU peers (scipy.sparse, onnxruntime).",
        epilog=_INFER_EPILOG, formatter_class=formatter)
    sub.set_defaults(func=cmd_infer)
    sub.add_argument("model", metavar="MODEL.onnx", type=Path, help="the ONNX model")
    sub.add_argument("--inputs", metavar="X.npy", type=Path, required=True,
                     help="inputs, one per row (float)")
    sub.add_argument("--labels", metavar="Y.npy", type=Path, help="class labels (integers)")
    group = sub.add_mutually_exclusive_group()
    group.add_argument("--prune", metavar="S", help="one-shot magnitude pruning to sparsity S "
                                                    "in [0, 1)")
    group.add_argument("--nm", metavar="N:M", help="one-shot N:M pruning, e.g. 2:4")
    sub.add_argument("--value-width", type=int, choices=(8, 16), default=8,
                     help="bits of weights and activations (default 8)")
    sub.add_argument("--act-frac-bits", type=int, metavar="F",
                     help="fractional bits of every layer's activations (default: "
                          "calibrated on the inputs)")
    sub.add_argument("--backend", choices=ALL_BACKENDS, default="model",
                     help="where to run (default model); board: over --port, chained and "
                          "resident")
    sub.add_argument("--port", metavar="DEVICE",
                     help="serial device of the board for --backend board (e.g. /dev/ttyUSB1)")
    sub.add_argument("--baudrate", type=int, metavar="N",
                     help=f"the board link's baud rate for --backend board (default "
                          f"{DEFAULT_BAUDRATE}, the bitstream's)")
    sub.add_argument("--board", default="ulx3s-85f",
                     help="board whose clock and PE count are assumed (default ulx3s-85f)")
    sub.add_argument("--products-per-lane", dest="products_per_lane", type=int, metavar="K",
                     help="products each lane issues per cycle, on K inputs of a batch: 1, 2, "
                          "4 or 8 (default the board's, 1; above 1 the ISA model only, and "
                          "every figure is labelled a model projection)")
    sub.add_argument("--batch", type=int, default=16, help="inputs per run (default 16)")
    sub.add_argument("--chained", action="store_true",
                     help="run the whole network as one program per batch: the layers chain "
                          "on chip with MOVE, the host writes the inputs and reads the last "
                          "layer's outputs only (every layer must fit on chip at once)")
    sub.add_argument("--resident", action="store_true",
                     help="with --chained: load the program (code, weights, biases) once and "
                          "keep it on chip; each batch writes its inputs and reads its outputs "
                          "only (--backend board always runs so)")
    sub.add_argument("--stream", action="store_true",
                     help="stream every layer's tiles from the external memory (--ext-memory "
                          "or --ext-words; the ISA model only): the lane images are written "
                          "to it once, the cycles include the loads not hidden by compute")
    add_ext_options(sub.add_argument_group(
        "external memory", "the board memory --stream loads lane images from (the ISA "
                           "model only)"))
    sub.add_argument("--limit", type=int, metavar="N", help="run only the first N inputs")
    sub.add_argument("--no-baseline", action="store_true",
                     help="skip the CPU peers (scipy.sparse, onnxruntime)")
    sub.add_argument("--json", metavar="OUT", type=Path, help="write the results as JSON")

    sub = commands.add_parser(
        "report", help="render the networks report (Markdown and plots)",
        description="Run the digits and Graph Challenge examples and write one Markdown page "
                    "with PNG plots: accuracy and speedup versus sparsity, utilization per "
                    "layer, energy, accelerator versus CPU.",
        epilog=_REPORT_EPILOG, formatter_class=formatter)
    sub.set_defaults(func=cmd_report)
    sub.add_argument("-o", "--output", metavar="DIR", type=Path, default=Path("build/report"))
    sub.add_argument("--images", type=int, default=1200,
                     help="Graph Challenge images to run (default all 1200)")


def print_summary(result):
    acc = result["accelerator"]
    print(f"network {result['network']}: {result['images']} inputs on {result['backend']}, "
          f"int{result['value_width']} values, batch {result['batch']}")
    if result["accuracy"] is not None:
        print(f"accuracy {100 * result['accuracy']:.2f} % (float dense "
              f"{100 * result['float_accuracy']:.2f} %, float pruned "
              f"{100 * result['float_pruned_accuracy']:.2f} %)")
    print(f"top-1 agreement with the float network: {100 * result['top1_agreement']:.2f} %; "
          f"bit-exact with the quantized reference: "
          f"{'yes' if result['bit_exact_vs_quantized_reference'] else 'NO'}; max |error| vs "
          f"float64 {result['max_abs_error_vs_float64']:.4g}")
    print(f"{'layer':<10} {'shape':>11} {'density':>8} {'formats':>9} {'cycles':>10} "
          f"{'dense':>10} {'util':>6} {'balance':>7} {'macs':>11} {'skipped':>11}")
    for row in result["layers"]:
        shape = f"{row['shape'][0]}x{row['shape'][1]}"
        print(f"{row['name'][:10]:<10} {shape:>11} {row['density']:>8.3f} "
              f"{'+'.join(row['formats']):>9} {row['cycles']:>10} {row['dense_mode_cycles']:>10} "
              f"{row['utilization']:>6.2f} {row['lane_balance']['balance']:>7.2f} "
              f"{row['macs']:>11} {row['skipped']:>11}")
    print(f"cycles per inference {result['cycles_per_inference']:.0f} (dense mode "
          f"{result['dense_mode_cycles_per_inference']:.0f}, speedup "
          f"{result['speedup_over_dense_mode']:.2f}x)")
    dropped = result.get("inputs_dropped")
    if dropped:
        print(f"inputs dropped (all-zero activations, dense mode drops the same): "
              f"{dropped['total']} over {dropped['layers_that_drop']} layer(s) "
              f"(skip_empty={result['skip_empty']!r})")
    lanes = f"{acc['pes']} PEs" + ("" if acc["products_per_lane"] == 1 else
                                   f" x {acc['products_per_lane']} products")
    print(f"at {acc['clock_mhz']:g} MHz ({acc['board']}, {lanes}): "
          f"{1e6 * acc['seconds_per_inference']:.2f} us per inference, "
          f"{acc['throughput_per_s']:.0f} inferences/s; batch of {result['batch']} "
          f"{1e6 * acc['batch_latency_s']:.1f} us")
    print(f"clock: {acc['clock_source']}")
    if acc.get("projection"):
        print(f"note: {acc['projection']}; every time, energy and speedup above is one")
    _print_data_movement(acc)
    print(f"energy per inference {result['energy_per_inference_nj']:.2f} nJ (dense mode "
          f"{result['dense_mode_energy_per_inference_nj']:.2f} nJ; 45 nm event model)")
    cpu = result.get("cpu")
    if cpu:
        _print_cpu(cpu)
    for note in result["notes"]:
        print(f"note: {note}")


def _print_cpu(cpu):
    """The CPU peers' lines of :func:`print_summary`."""
    a = cpu["accelerator_s"]
    print(f"per inference, accelerator {1e6 * a:.2f} us against the CPU ({cpu['clock']}):")
    print(f"  scipy.sparse float64, 1 core ({cpu['scipy_sparse_method']}): "
          f"{1e6 * cpu['scipy_sparse_1_thread_s']:.2f} us, accelerator "
          f"x{cpu['speedup_vs_scipy_sparse_1_thread']:.2f}; top-1 equal to float64 on "
          f"{100 * cpu['scipy_sparse_top1_agreement']:.2f} %")
    print(f"  onnxruntime float32 dense: {1e6 * cpu['dense_1_thread_s']:.2f} us (1 thread, "
          f"x{cpu['speedup_vs_dense_1_thread']:.2f}), {1e6 * cpu['dense_all_threads_s']:.2f} us "
          f"({cpu['threads_all']} threads, x{cpu['speedup_vs_dense_all_threads']:.2f}); pruned "
          f"{1e6 * cpu['pruned_1_thread_s']:.2f} / {1e6 * cpu['pruned_all_threads_s']:.2f} us")
    print(f"  (x = CPU time / accelerator time; {cpu['one_core']})")
    energy, ratio = cpu["energy_per_inference_nj"], cpu["energy_ratio_vs_accelerator"]
    print(f"CPU energy per inference: scipy.sparse 1 core "
          f"{energy['scipy_sparse_1_thread']:.0f} nJ ({ratio['scipy_sparse_1_thread']:.1f}x "
          f"the accelerator's), onnxruntime dense 1 thread "
          f"{energy['onnxruntime_dense_1_thread']:.0f} nJ "
          f"({ratio['onnxruntime_dense_1_thread']:.1f}x); accelerator "
          f"{cpu['accelerator_energy_per_inference_nj']:.2f} nJ (45 nm event-model projection)")
    print(f"  CPU power: {cpu['energy_basis']}")


def _print_data_movement(acc):
    """Compute and end-to-end time per inference, and the words per kind."""
    moved = acc["data_movement"]
    words = ", ".join(f"{kind} {count:,.0f}" for kind, count in
                      moved["words_per_inference"].items())
    print(f"host transfers per inference: {moved['total_words_per_inference']:,.0f} words "
          f"({words}); one-off loads {', '.join(moved['one_off']) or 'none'} amortised: "
          f"{moved['amortisation']}")
    resident = moved.get("resident")
    if resident:
        load = ", ".join(f"{kind} {n:,}" for kind, n in resident["load_words"].items())
        batch = ", ".join(f"{kind} {n:,}" for kind, n in resident["words_per_batch"].items())
        print(f"  resident: one load of {sum(resident['load_words'].values()):,} words "
              f"({load}), then {sum(resident['words_per_batch'].values()):,} words per batch "
              f"({batch}) x {resident['batches']} batches")
    stream = moved.get("stream")
    if stream:
        load = sum(stream["load_words"].values())
        batches = ", ".join(f"{kind} {n:,}" for kind, n in stream["batch_words"].items())
        ext = acc.get("external_memory") or {}
        print(f"  streamed: one load of {load:,} words into the external memory "
              f"({ext.get('preset') or 'custom'}: {ext.get('ext_words_per_cycle')} words per "
              f"{ext.get('ext_rate_cycles')} cycles, latency {ext.get('ext_latency')}), then "
              f"{sum(stream['batch_words'].values()):,} words over the "
              f"{stream['batches']} batches ({batches})")
    for link, facts in moved["links"].items():
        mark = " (this backend's link)" if link == moved["link"] else ""
        print(f"  {link}{mark}: compute {1e6 * acc['seconds_per_inference']:.2f} us + "
              f"transfers {1e6 * facts['transfer_seconds_per_inference']:.2f} us = end to end "
              f"{1e6 * facts['end_to_end_seconds_per_inference']:.2f} us per inference "
              f"({facts['rate']})")


def cmd_infer(args):
    from zeroskip.app.nn.infer import evaluate
    from zeroskip.app.nn.onnx_io import load_onnx
    from zeroskip.app.nn.prune import check_sparsity
    check_board_options(args.backend, args.port, args.baudrate)
    if args.resident and not args.chained and args.backend != "board":
        raise InputError("--resident needs --chained (only a chained network is one program "
                         "that stays on chip)")
    prune = check_sparsity(args.prune) if args.prune is not None else None
    if args.nm is not None:
        from zeroskip.firmware.formats import parse_nm
        try:
            parse_nm(args.nm)
        except ValueError as error:
            raise InputError(f"--nm: {error}") from None
    if args.batch < 1:
        raise InputError(f"--batch must be at least 1, not {args.batch}")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, not {args.limit}")
    if args.act_frac_bits is not None and not 0 <= args.act_frac_bits < args.value_width:
        raise InputError(f"--act-frac-bits must be between 0 and {args.value_width - 1} for "
                         f"{args.value_width}-bit values, not {args.act_frac_bits}")
    network = load_onnx(args.model)
    inputs = load_array(args.inputs, "--inputs")
    labels = load_array(args.labels, "--labels") if args.labels is not None else None
    x = network.check_inputs(inputs, what=f"--inputs {args.inputs}")
    if labels is not None:
        from zeroskip.app.nn.infer import check_labels
        labels = check_labels(labels, len(x))
    if args.limit is not None:
        x = x[:args.limit]
        labels = labels[:args.limit] if labels is not None else None
    if args.json is not None:
        if args.json.is_dir():
            raise InputError(f"--json {args.json}: is a directory")
        args.json.parent.mkdir(parents=True, exist_ok=True)
    config = _config(args)
    result = evaluate(network, x, labels=labels, prune=prune, nm=args.nm,
                      value_width=args.value_width, backend=args.backend, board=args.board,
                      config=config, batch=args.batch, baseline=not args.no_baseline,
                      act_frac_bits=args.act_frac_bits, chained=args.chained,
                      resident=args.resident, port=args.port, baudrate=args.baudrate,
                      stream=args.stream)
    print_summary(result)
    if args.json is not None:
        write_json(args.json, result, indent=1)
        print(f"wrote {args.json}")
    return 0 if result["bit_exact_vs_quantized_reference"] else 1


def _config(args):
    """``None`` (the board's network configuration), or it with the configuration
    options given (``--products-per-lane``, the external memory's)."""
    from zeroskip.app.commands.common import check_stream_option, config_from_args
    from zeroskip.app.nn.infer import network_config
    names = ("products_per_lane", "ext_memory") + tuple(name for name, _ in EXT_OPTIONS)
    config = None
    if any(getattr(args, name) is not None for name in names):
        config = config_from_args(args, base=network_config(
            args.board, value_width=args.value_width, nm=args.nm))
    check_stream_option(args, config or network_config(args.board,
                                                       value_width=args.value_width))
    if args.stream and args.chained:
        raise InputError("--stream and --chained exclude each other: a streamed network runs "
                         "layer by layer (a streamed program holds no MOVE)")
    if args.stream and args.backend != "model":
        raise InputError(f"--stream runs on --backend model only, not {args.backend}: the "
                         f"generated hardware has no external-memory port yet")
    return config


def cmd_report(args):
    from zeroskip.app.report import render
    path = render(args.output, gc_images=args.images)
    print(f"wrote {path}")
