"""Digits: a pruned MLP from scikit-learn, through ONNX, on the accelerator.

scikit-learn's bundled 8x8 handwritten digits (no download); a 64-64-10 ReLU
MLP trained in seconds; exported to ONNX (built with ``onnx.helper`` from
the weights) and read back by zeroskip's front end; pruned to 50/75/90/95 %
once (magnitude, no retraining) and gradually (six prune-and-retrain steps
with ``partial_fit``, masks re-applied); quantized to int8; run on the
accelerator (ISA model by default) over the whole test split.

    python examples/digits.py [--backend model] [--limit N] [--json OUT]
"""

import argparse
import json
import sys
from pathlib import Path

from zeroskip.app.nn import digits
from zeroskip.app.nn.infer import evaluate
from zeroskip.app.nn.onnx_io import load_onnx, save_onnx

SPARSITIES = (0.5, 0.75, 0.9, 0.95)


def run(*, backend="model", limit=None, sparsities=SPARSITIES, out_dir="build/digits",
        baseline=True, value_width=8):
    """Rows of results: dense, then per sparsity one-shot and gradual."""
    x_train, x_test, y_train, y_test = digits.load_data()
    if limit is not None:
        x_test, y_test = x_test[:limit], y_test[:limit]
    model = digits.train(x_train, y_train)
    out_dir = Path(out_dir)
    rows = []

    def record(label, sparsity, method, network, prune=None):
        path = save_onnx(network, out_dir / f"{label}.onnx")
        loaded = load_onnx(path)          # the ONNX front end, as a user would
        result = evaluate(loaded, x_test, labels=y_test, prune=prune, backend=backend,
                          value_width=value_width, baseline=baseline,
                          calibrate=len(x_train))
        result["sparsity"], result["method"] = sparsity, method
        rows.append(result)
        return result

    dense = digits.to_network(model)
    record("dense", 0.0, "dense", dense)
    for sparsity in sparsities:
        record(f"oneshot-{int(sparsity * 100)}", sparsity, "one-shot", dense, prune=sparsity)
        pruned, _ = digits.gradual_prune(model, x_train, y_train, sparsity)
        record(f"gradual-{int(sparsity * 100)}", sparsity, "gradual", digits.to_network(pruned))
    return rows


def print_table(rows):
    print(f"{'method':<9} {'sparsity':>8} {'float':>7} {'accel':>7} {'exact':>6} "
          f"{'cycles/inf':>10} {'dense-mode':>10} {'speedup':>8} {'nJ/inf':>8} "
          f"{'dense nJ':>8}")
    for r in rows:
        print(f"{r['method']:<9} {100 * r['sparsity']:>7.0f}% "
              f"{100 * r['float_pruned_accuracy']:>6.2f}% {100 * r['accuracy']:>6.2f}% "
              f"{'yes' if r['bit_exact_vs_quantized_reference'] else 'NO':>6} "
              f"{r['cycles_per_inference']:>10.0f} {r['dense_mode_cycles_per_inference']:>10.0f} "
              f"{r['speedup_over_dense_mode']:>7.2f}x {r['energy_per_inference_nj']:>8.2f} "
              f"{r['dense_mode_energy_per_inference_nj']:>8.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="model")
    parser.add_argument("--limit", type=int, help="test images to run (default: all)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = run(backend=args.backend, limit=args.limit, baseline=not args.no_baseline)
    print_table(rows)
    dense = rows[0]["float_accuracy"]
    g90 = next(r for r in rows if r["method"] == "gradual" and r["sparsity"] == 0.9)
    gap = 100 * (dense - g90["accuracy"])
    print(f"90 % gradual, int8 on the accelerator: {100 * g90['accuracy']:.2f} % vs float dense "
          f"{100 * dense:.2f} % ({gap:+.2f} points below)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        for r in rows:
            r.pop("outputs")
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    ok = all(r["bit_exact_vs_quantized_reference"] for r in rows) and gap <= 2.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
