import numpy as np
import pytest
import scipy.sparse

from zeroskip.core.errors import CompileError
from zeroskip.firmware.quant import quantize


def test_integers_pass_unchanged():
    values = np.array([[1, -2], [32767, -32768]])
    q = quantize(values, value_width=16)
    assert q.frac_bits == 0 and q.saturated == 0
    assert np.array_equal(q.ints, values) and q.ints.dtype == np.int64


def test_integral_floats_count_as_integers():
    q = quantize(np.array([3.0, -4.0]), value_width=8, what="vector")
    assert q.frac_bits == 0 and q.ints.tolist() == [3, -4]


def test_integer_too_large_names_row_and_column():
    values = np.zeros((5, 7))
    values[3, 5] = 70000
    with pytest.raises(CompileError) as info:
        quantize(values, value_width=16)
    assert str(info.value) == ("matrix value 70000 at row 4, column 6 does not fit "
                               "16-bit signed values (use --saturate)")


def test_sparse_error_and_vector_error():
    m = scipy.sparse.coo_matrix(([1, 200], ([0, 2], [1, 4])), shape=(3, 6))
    with pytest.raises(CompileError, match=r"^matrix value 200 at row 3, column 5 does not "
                                           r"fit 8-bit signed values"):
        quantize(m, value_width=8)
    with pytest.raises(CompileError, match=r"^vector value -129 at index 2 does not fit"):
        quantize(np.array([0, -129, 5]), value_width=8, what="vector")


def test_saturate_counts():
    q = quantize(np.array([300, -300, 5, 127]), value_width=8, saturate=True)
    assert q.ints.tolist() == [127, -128, 5, 127]
    assert q.saturated == 2 and q.frac_bits == 0


def test_real_values_pick_largest_frac_bits():
    q = quantize(np.array([0.5, -0.25, 1.0]), value_width=8)
    assert q.frac_bits == 6  # 1.0 * 64 = 64 fits, * 128 does not
    assert q.ints.tolist() == [32, -16, 64]
    q = quantize(np.array([-1.0, 0.3]), value_width=16)
    assert q.frac_bits == 15 and q.ints.tolist() == [-32768, 9830]


def test_tiny_values_cap_at_twice_the_width():
    q = quantize(np.array([1e-9, 2e-9]), value_width=8)
    assert q.frac_bits == 16
    assert q.ints.tolist() == [0, 0]


def test_rounding_ties_away_from_zero():
    q = quantize(np.array([0.75, -0.75, 100.0]), value_width=8)
    assert q.frac_bits == 0
    assert q.ints.tolist() == [1, -1, 100]


def test_rounding_up_into_range():
    # 127.4 rounds to 127 at frac_bits 0.
    q = quantize(np.array([127.4]), value_width=8)
    assert q.frac_bits == 0 and q.ints.tolist() == [127]


def test_real_too_large():
    with pytest.raises(CompileError, match=r"^vector value 70000.5 at index 4 does not fit"):
        quantize(np.array([1, 2, 3, 70000.5]), value_width=16, what="vector")
    q = quantize(np.array([1.5, 70000.5]), value_width=16, saturate=True)
    assert q.saturated == 1 and q.ints.tolist() == [2, 32767]


def test_not_finite():
    with pytest.raises(CompileError, match=r"^matrix value nan at row 1, column 2 is not finite"):
        quantize(np.array([[0.5, np.nan]]), value_width=8)


def test_sparse_real():
    m = scipy.sparse.csr_matrix(np.array([[0.0, 0.5], [-0.25, 0.0]]))
    q = quantize(m, value_width=8)
    assert scipy.sparse.issparse(q.ints)
    assert q.frac_bits == 7
    assert q.ints.toarray().tolist() == [[0, 64], [-32, 0]]
    # values rounding to zero are dropped
    m = scipy.sparse.csr_matrix(np.array([[1.0, 1e-6]]))
    assert quantize(m, value_width=8).ints.nnz == 1


def test_empty_and_zero():
    assert quantize(np.zeros(0), value_width=8).frac_bits == 0
    q = quantize(scipy.sparse.csr_matrix((4, 4)), value_width=16)
    assert q.frac_bits == 0 and q.ints.nnz == 0


# One exponent per row ----------------------------------------------------------------------------

from zeroskip.firmware.quant import (  # noqa: E402
    dequantize,
    error_report,
    quantize_matrix,
    quantize_operand,
)


def test_integer_matrix_that_fits_stays_exact():
    a = scipy.sparse.csr_matrix(np.array([[1, 0, -32768], [0, 0, 0], [0, 32767, 5]]))
    q = quantize_matrix(a, value_width=16)
    assert q.exact and q.row_exp.tolist() == [0, 0, 0]
    assert (q.ints != a).nnz == 0 and q.dropped == 0 and q.nnz_input == 4
    assert not q.worst_case_x


def test_each_row_gets_its_own_exponent():
    a = np.array([[1000.5, 0.0], [0.0, 0.001], [3e5, 1.0], [0.0, 0.0]])
    q = quantize_matrix(a, value_width=16, x=np.ones(2))
    # 1000.5 x 2^5 = 32016 fits; 0.001 x 2^25 = 33554 does not, 2^24 does;
    # 3e5 needs 2^-4 (18750), and its 1.0 rounds to 0; the empty row keeps 0.
    assert q.row_exp.tolist() == [5, 24, -4, 0]
    assert q.ints.toarray().tolist() == [[32016, 0], [0, 16777], [18750, 0], [0, 0]]
    assert (q.dropped, q.nnz_input, q.nnz_stored) == (1, 4, 3)
    assert not q.exact


def test_rows_of_an_integer_matrix_scale_down_only_where_needed():
    q = quantize_matrix(np.array([[1, 300], [0, 2]]), value_width=8, x=np.ones(2))
    assert q.row_exp.tolist() == [-2, 0]
    assert q.ints.toarray().tolist() == [[0, 75], [0, 2]]
    q = quantize_matrix(np.array([[1, 300], [0, 2]]), value_width=8, saturate=True)
    assert q.row_exp.tolist() == [0, 0] and q.saturated == 1


@pytest.mark.parametrize("seed", range(6))
def test_the_accumulator_cannot_overflow(seed):
    rng = np.random.default_rng(seed)
    width = (8, 16)[seed % 2]
    acc = 2 * width if seed % 3 == 0 else 32
    a = scipy.sparse.random(40, 60, density=0.3, random_state=seed, format="csr")
    a.data = rng.choice([-1, 1], a.nnz) * 10.0 ** rng.uniform(-4, 5, a.nnz)
    acc_max = (1 << (acc - 1)) - 1
    # Without x: the worst case, every |x_q| at 2^(width - 1).
    q = quantize_matrix(a, value_width=width, acc_width=acc)
    assert q.worst_case_x
    assert np.asarray(abs(q.ints).sum(axis=1)).max() * 2 ** (width - 1) <= acc_max
    # With x: the actual x, and the operand quantized for that matrix.
    x = rng.standard_normal((60, 3)) * 10.0 ** rng.uniform(-3, 3, 3)
    q = quantize_matrix(a, value_width=width, acc_width=acc, x=x)
    qx = quantize_operand(x, value_width=width, acc_width=acc, matrix_int=q.ints)
    assert np.asarray(abs(q.ints) @ np.abs(qx.ints)).max() <= acc_max
    assert np.abs(qx.ints).max() <= 2 ** (width - 1)
    y = dequantize(q.ints @ qx.ints, q.row_exp, qx.exp)
    report = error_report(y, a, x)
    if width == 16 and acc == 32:
        assert report["normwise"] < 1e-3


def test_operand_exponent_per_column_and_integers_kept():
    qx = quantize_operand(np.array([3, -4, 0]), value_width=8)
    assert qx.exp == 0 and qx.exact and qx.ints.tolist() == [3, -4, 0]
    qx = quantize_operand(np.array([[0.5, 100.0], [-0.25, 3.0]]), value_width=8)
    # 0.5 x 2^8 = 128 does not fit 8 bits: exponent 7; 100 x 2 does not fit: exponent 0.
    assert qx.exp.tolist() == [7, 0] and qx.ints.tolist() == [[64, 100], [-32, 3]]


def test_operand_errors_count_from_one_and_name_the_file():
    with pytest.raises(CompileError, match=r"^x\.npy: vector x value inf at index 3 is not "
                                           r"finite$"):
        quantize_operand(np.array([1.0, 2.0, np.inf]), value_width=8, what="vector x",
                         source="x.npy")
    with pytest.raises(CompileError, match=r"^A\.mtx: matrix value nan at row 2, column 1 "):
        quantize_matrix(np.array([[0.0, 1.0], [np.nan, 0.0]]), value_width=8, source="A.mtx")


def test_dequantize_and_error_report_by_hand():
    y = dequantize(np.array([134, 202]), np.array([6, 0]), 0)
    assert y.tolist() == [134 / 64, 202.0]
    assert dequantize(np.array([[4, 8]]), np.array([1]), np.array([0, 2])).tolist() == [[2, 1]]
    report = error_report(y, np.array([[1.5, 0.3], [0.0, 100.7]]), np.array([1, 2]))
    assert report["normwise"] == pytest.approx(0.6 / 201.4)
    assert report["rowwise_max"] == pytest.approx(0.6 / 201.4)
    assert report["rows_over_1pct"] == 0
    zero = error_report(np.zeros(2), np.zeros((2, 2)), np.ones(2))
    assert zero["normwise"] == 0 and zero["rowwise_max"] == 0
