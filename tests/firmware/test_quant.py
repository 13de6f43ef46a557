import numpy as np
import pytest
import scipy.sparse

from zeroskip.errors import CompileError
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
