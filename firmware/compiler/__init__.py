"""The firmware compiler: a quantized sparse matrix to a :class:`Program`.

Steps: validate (and, on request, prune to N:M); pick the kernel from the
right-hand operand (a vector or a matrix, dense or sparse); split the rows
into bands whose rows and nonzeros fit the lane memories; then, per band,
the cost model builds every candidate — each enabled format with its
dataflow (row mode, dense mode, column mode) and its own partition of the
rows over the lanes — predicts its cycles with the timing contract and keeps
the fastest (for a sparse right-hand matrix, per right-hand column: column
mode or the best row format). Lay out the lane images, emit
``SET_EPI``/``SPMV``/``REDUCE``/``HALT`` per tile, batching as many right-hand
columns per tile as the ``x`` buffer, the ``out`` memories and the
instruction memory hold.

CSR keeps the original path: columns split into tiles of at most ``x_depth``
columns; rows spread over the lanes, balanced by work (a row costs
``max(nnz, 1)`` tokens) with longest-processing-time-first; each row's
nonzeros ordered so that the lanes' heads hit different input-vector banks
(replaying the gather arbitration of the timing contract).

Long rows. With the scatter/reduce network (``config.reduce``) a CSR block
with a single column tile may split the rows longer than a lane's fair share
of its work into pieces (contiguous runs of their nonzeros, of about equal
size) that are placed on the lanes like ordinary rows. The lane holding a
row's first piece owns the row: its local row receives the other pieces'
partial sums and is read back. A lane stores its own rows (whole rows and
owner pieces) at local rows ``0 .. n_own - 1`` and its helper pieces after
them; its ``ptr`` image holds the CSR descriptor of all of them, then (at
``1 + n_max``, the same address on every lane) the ``REDUCE`` route list
``[h, n_own, routes...]`` and, when the tile adds a bias or applies the
epilogue, (at ``route_base + 2 + h_max``) a CSR descriptor of ``n_own`` empty
rows. Per right-hand column the tile runs ``SPMV`` (no bias, no epilogue),
``REDUCE`` and, for the bias and the epilogue, a finishing ``SPMV`` over the
empty rows with ``accumulate`` set; a matrix right-hand side batches these
per column like the unsplit tiles (each column with its own ``out_base``). A
band whose split rows do not fit the row memory is halved until they do. The
cost model keeps the split plan only where it predicts fewer cycles than
whole rows (``split_rows``), and ``report["balance"]`` says what it decided
and why.

The package follows those steps: :mod:`.settings` (validated inputs and the
constants of the choices), :mod:`.operand` (the right-hand operand and the
kernel), :mod:`.bands` (row bands and their spread over the lanes),
:mod:`.gather` (bank-aware ordering of the nonzeros), :mod:`.plans` (each
format's lane images and cycles), :mod:`.split` (long rows split across
lanes), :mod:`.tiles` (microcode and images per tile), :mod:`.cost` (the cost
model's choice and its reasons) and :mod:`.api` (the entry points).
"""

from zeroskip.firmware.compiler.api import compile_kernel, compile_spmv, prune_nm_matrix
from zeroskip.firmware.compiler.operand import choose_kernel
from zeroskip.firmware.compiler.settings import (
    ACTIVATION_SPARSE,
    DENSE_MARGIN,
    FORMAT_CHOICES,
    KERNEL_CHOICES,
    NM_DEFAULT,
)
from zeroskip.firmware.formats import parse_nm

__all__ = ["compile_spmv", "compile_kernel", "choose_kernel", "parse_nm", "ACTIVATION_SPARSE",
           "NM_DEFAULT", "DENSE_MARGIN", "FORMAT_CHOICES", "KERNEL_CHOICES", "prune_nm_matrix"]
