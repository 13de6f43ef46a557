"""``zeroskip explain``: the cost model's options per row band and why the winner won."""


from zeroskip.app.commands.common import (
    add_config_options,
    config_from_args,
    lazy_import,
    print_text,
)
from zeroskip.app.commands.compile import add_saturate_option
from zeroskip.app.commands.matrix import (
    add_kernel_options,
    check_kernel_options,
    compile_matrix_file,
)

__all__ = ["HELP", "add_parser", "cmd_explain"]

HELP = (
    "show the cost model's options and why the winner won",
    """\
Compile a matrix the way 'run' and 'compile' do and print, per row band,
every option the cost model weighed - each enabled format with its dataflow
(row mode, dense mode, column mode), its tiles and its predicted cycles -
the winner and why it won, then the program's total against dense mode on
the same array and the spread of work over the PEs. Last, it runs the
program on the ISA model and shows where the PE cycles go - useful work,
empty rows, waiting for x (gather stalls), uneven work, per-tile overhead -
and names the biggest loss. --x gives the right-hand operand (or a sample of
it): its shape picks the kernel and, for the sparse kernels, its zeros drive
column mode.""",
    """\
examples:
  zeroskip explain examples/data/west0067.mtx
  zeroskip explain examples/data/Erdos971.mtx --formats csr,coo,bitmap,dense,csc \\
      --x examples/data/Erdos971_x.npy
  zeroskip explain W.npz --formats csr,nm,dense --format nm --nm 2:4 --prune-nm""")


def add_parser(command):
    sub = command("explain", cmd_explain)
    sub.add_argument("matrix", metavar="MATRIX", help="matrix file: .mtx, .npz or .npy")
    add_saturate_option(sub)
    add_kernel_options(sub, x_help="the right-hand operand or a sample of it (vector or matrix: "
                                   ".npy, .mtx, .npz, .txt)")
    add_config_options(sub)


def cmd_explain(args):
    import numpy as np

    config = config_from_args(args)
    check_kernel_options(args)
    model, program, _, x = compile_matrix_file(args, config)
    x_int = None
    if x is not None:
        x_int = model.quantize_operand(model._matrix_int(program), x).ints
        nonzero = int(np.count_nonzero(x_int))
        shape = " x ".join(str(v) for v in x_int.shape)
        operand = (f"{args.x}: {'matrix' if x_int.ndim == 2 else 'vector'} of {shape}, "
                   f"{nonzero} of {x_int.size} nonzero "
                   f"({100 * nonzero / max(x_int.size, 1):.1f} %)")
    else:
        operand = "none given (--x): every activation assumed nonzero"
    explain = lazy_import("zeroskip.firmware.explain").explain
    run = lazy_import("zeroskip.sim.backends").model_counters
    print_text(explain(program, operand=operand, x=x_int, run=run))
    return 0
