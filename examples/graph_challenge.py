"""Sparse DNN Graph Challenge (1024 neurons, 30 layers) on the accelerator.

Each layer is ``Y = min(max(Y @ W + bias, 0), 32)`` with ``bias = -0.3``; the
images whose last output row is non-empty are the categories, which must
equal the truth file exactly. The network runs in 16-bit values with 8
fractional bits for the activations (the weights are all 0.0625 = 2 ** -4,
exact), column mode (activation zero-skipping) where the cost model picks
it, and images whose activations have all died are not sent again (the
challenge's sparse ``Y`` drops empty rows; ``evaluate`` drops them by default
because every layer maps a zero input to zero: bias -0.3, clamp at 0).

    python examples/graph_challenge.py [--images N] [--backend model] [--json OUT]
                                       [--products-per-lane K] [--stream [PRESET]]

``--stream`` streams every layer's tiles from an external memory, by default
the ULX3S's SDRAM (``ulx3s-sdram`` of :mod:`zeroskip.core.extmem`, an
estimate): the weights are written to it once, each layer's tiles are loaded
by ``LOAD`` double-buffered, and the cycles include the loads that compute
does not hide (the ISA model only).

The data ships in ``examples/data/graph-challenge/`` (see its README for the
provenance).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from zeroskip.app.nn import graph_challenge as gc
from zeroskip.app.nn.infer import evaluate, network_config
from zeroskip.core.extmem import EXT_PRESETS, ext_preset

DATA = Path(__file__).resolve().parent / "data" / "graph-challenge"


def run(images=1200, *, backend="model", batch=16, baseline=True, build_dir="build",
        products_per_lane=1, stream=None):
    """Run the challenge; returns ``(result dict, categories equal to the truth?)``.

    ``products_per_lane`` above 1 runs on the ISA model only (a projection);
    ``stream`` (a preset of :data:`zeroskip.core.extmem.EXT_PRESETS`) streams the
    layers from that external memory (the ISA model only)."""
    start = time.perf_counter()
    network, inputs, truth = gc.load(DATA)
    inputs = inputs[:images]
    truth = truth[truth < images]
    config = None
    if products_per_lane != 1 or stream is not None:
        changes = {} if stream is None else ext_preset(stream).fields()
        config = network_config(value_width=16).replace(products_per_lane=products_per_lane,
                                                        **changes)
    result = evaluate(network, inputs, value_width=16, backend=backend, batch=batch,
                      act_frac_bits=8, baseline=baseline, build_dir=build_dir, config=config,
                      stream=stream is not None)
    found = gc.categories(np.asarray(result["outputs"]))
    result["categories"] = found.tolist()
    result["truth"] = truth.tolist()
    result["categories_match_truth"] = bool(np.array_equal(found, truth))
    result["wall_seconds"] = time.perf_counter() - start
    return result, result["categories_match_truth"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--backend", default="model")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--products-per-lane", type=int, default=1, choices=(1, 2, 4, 8))
    parser.add_argument("--stream", nargs="?", const="ulx3s-sdram", choices=tuple(EXT_PRESETS),
                        metavar="PRESET", help="stream the layers from an external memory "
                                               "(default ulx3s-sdram)")
    args = parser.parse_args(argv)
    from zeroskip.app.nn.cli import print_summary
    result, ok = run(args.images, backend=args.backend, batch=args.batch,
                     baseline=not args.no_baseline, products_per_lane=args.products_per_lane,
                     stream=args.stream)
    result_short = dict(result)
    print_summary(result_short)
    sent = [row["inputs_sent"] for row in result["layers"]]
    print(f"images sent per layer (empty ones are dropped): {sent}")
    print(f"categories: {len(result['categories'])} found, {len(result['truth'])} in the "
          f"truth file: {'equal' if ok else 'DIFFERENT'}; {result['wall_seconds']:.1f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if ok and result["bit_exact_vs_quantized_reference"] else 1


if __name__ == "__main__":
    sys.exit(main())
