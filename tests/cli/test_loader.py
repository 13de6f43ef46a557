"""Reading matrices and vectors: every bad input gets one exact message."""

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from zeroskip.core.errors import InputError
from zeroskip.firmware.loader import load_matrix, load_vector

SAMPLES = ["west0067", "cage5", "494_bus", "jagmesh7", "Erdos971"]

HEADER = "%%MatrixMarket matrix coordinate real general\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(load, path, **kwargs):
    with pytest.raises(InputError) as info:
        load(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# Shipped samples -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", SAMPLES)
def test_samples_match_scipy(examples_data, name):
    path = examples_data / f"{name}.mtx"
    matrix = load_matrix(path)
    expected = scipy.sparse.csr_matrix(scipy.io.mmread(path))
    assert isinstance(matrix, scipy.sparse.csr_matrix)
    assert matrix.shape == expected.shape
    assert matrix.nnz == expected.nnz
    assert matrix.has_sorted_indices
    assert abs(matrix - expected).max() == 0


def test_symmetric_expansion(examples_data):
    matrix = load_matrix(examples_data / "494_bus.mtx")
    assert matrix.dtype == np.float64
    assert (matrix != matrix.T).nnz == 0
    assert matrix.nnz == 2 * 1080 - 494          # every diagonal entry is stored once


@pytest.mark.parametrize("name", ["Erdos971", "jagmesh7"])
def test_pattern_loads_as_integer_ones(examples_data, name):
    matrix = load_matrix(examples_data / f"{name}.mtx")
    assert matrix.dtype == np.int64
    assert set(np.unique(matrix.data)) == {1}
    assert (matrix != matrix.T).nnz == 0


def test_demo_matrix_is_the_sample(repo_root, examples_data):
    shipped = repo_root / "app" / "data" / "west0067.mtx"
    assert shipped.read_bytes() == (examples_data / "west0067.mtx").read_bytes()


# Matrix Market: good variants ----------------------------------------------------------------

def test_integer_field_keeps_integers(tmp_path):
    path = write(tmp_path, "a.mtx", "%%MatrixMarket matrix coordinate integer general\n"
                 "% a comment\n\n2 3 3\n1 1 5\n2 3 -7\n1 2 0\n")
    matrix = load_matrix(path)
    assert matrix.dtype == np.int64
    assert matrix.toarray().tolist() == [[5, 0, 0], [0, 0, -7]]


def test_skew_symmetric(tmp_path):
    path = write(tmp_path, "s.mtx", "%%MatrixMarket matrix coordinate real skew-symmetric\n"
                 "3 3 2\n2 1 1.5\n3 2 -2\n")
    dense = load_matrix(path).toarray()
    assert dense.tolist() == [[0, -1.5, 0], [1.5, 0, 2], [0, -2, 0]]
    assert dense.tolist() == scipy.io.mmread(path).toarray().tolist()


def test_array_format(tmp_path):
    path = write(tmp_path, "d.mtx", "%%MatrixMarket matrix array real general\n"
                 "2 2\n1\n0\n3.5\n4\n")
    assert load_matrix(path).toarray().tolist() == [[1, 3.5], [0, 4]]


def test_array_symmetric(tmp_path):
    path = write(tmp_path, "d.mtx", "%%MatrixMarket matrix array integer symmetric\n"
                 "2 2\n1\n2\n3\n")
    matrix = load_matrix(path)
    assert matrix.dtype == np.int64
    assert matrix.toarray().tolist() == [[1, 2], [2, 3]]


def test_fortran_exponent_and_case(tmp_path):
    path = write(tmp_path, "f.mtx", "%%matrixmarket MATRIX Coordinate REAL General\n"
                 "1 2 2\n1 1 1.5D+01\n1 2 -.25e-1\n")
    assert load_matrix(path).toarray().tolist() == [[15.0, -0.025]]


# Matrix Market: errors -----------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "data.mtx"
    assert error_of(load_matrix, path) == f"{path}: cannot read: No such file or directory"


def test_relative_name_is_quoted_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert error_of(load_matrix, "data.mtx") == "data.mtx: cannot read: No such file or directory"


def test_directory(tmp_path):
    path = tmp_path / "dir.mtx"
    path.mkdir()
    assert error_of(load_matrix, path) == f"{path}: cannot read: Is a directory"


def test_empty_file(tmp_path):
    path = write(tmp_path, "data.mtx", "")
    assert error_of(load_matrix, path) == (
        f"{path}: the file is empty (expected '%%MatrixMarket matrix coordinate ...')")


def test_not_a_header(tmp_path):
    path = write(tmp_path, "data.mtx", "10 10 3\n1 1 1\n")
    assert error_of(load_matrix, path) == (
        f"{path}:1: not a Matrix Market header "
        f"(expected '%%MatrixMarket matrix coordinate ...')")


def test_short_header(tmp_path):
    path = write(tmp_path, "data.mtx", "%%MatrixMarket matrix coordinate real\n1 1 0\n")
    assert error_of(load_matrix, path) == (
        f"{path}:1: the Matrix Market header needs 5 fields "
        f"('%%MatrixMarket matrix coordinate real general'), found 4")


@pytest.mark.parametrize("header, message", [
    ("%%MatrixMarket matrix coordinate complex general",
     "complex matrices are not supported"),
    ("%%MatrixMarket matrix coordinate complex hermitian",
     "complex matrices are not supported"),
    ("%%MatrixMarket matrix coordinate real hermitian",
     "hermitian matrices are not supported"),
    ("%%MatrixMarket vector coordinate real general",
     "unsupported Matrix Market object 'vector' (expected 'matrix')"),
    ("%%MatrixMarket matrix sparse real general",
     "unknown Matrix Market format 'sparse' (expected 'coordinate' or 'array')"),
    ("%%MatrixMarket matrix coordinate float general",
     "unknown Matrix Market field 'float' (expected 'real', 'integer' or 'pattern')"),
    ("%%MatrixMarket matrix coordinate real diagonal",
     "unknown Matrix Market symmetry 'diagonal' "
     "(expected 'general', 'symmetric' or 'skew-symmetric')"),
    ("%%MatrixMarket matrix array pattern general",
     "a pattern matrix must use the 'coordinate' format"),
])
def test_bad_header(tmp_path, header, message):
    path = write(tmp_path, "data.mtx", header + "\n2 2 0\n")
    assert error_of(load_matrix, path) == f"{path}:1: {message}"


def test_entry_outside(tmp_path):
    body = "".join(f"{i} {i} 1.0\n" for i in range(1, 5))
    path = write(tmp_path, "data.mtx", HEADER + "% c\n% c\n10 10 6\n" + body + "12 3 1.0\n")
    assert error_of(load_matrix, path) == f"{path}:9: entry (12, 3) is outside the 10 x 10 matrix"


def test_entry_index_zero(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "3 4 1\n0 1 1.0\n")
    assert error_of(load_matrix, path) == f"{path}:3: entry (0, 1) is outside the 3 x 4 matrix"


def test_fewer_entries_than_announced(tmp_path):
    body = "".join(f"{i} 1 {i}\n" for i in range(1, 20))
    path = write(tmp_path, "data.mtx", HEADER + "20 20 20\n" + body)
    assert error_of(load_matrix, path) == (
        f"{path}: header announces 20 entries but the file has 19")


def test_more_entries_than_announced(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "5 5 2\n1 1 1\n2 2 2\n3 3 3\n")
    assert error_of(load_matrix, path) == (
        f"{path}:5: header announces 2 entries but the file has more")


def test_wrong_field_count(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "% c\n5 5 3\n1 1 1\n2 2\n3 3 3\n")
    assert error_of(load_matrix, path) == f"{path}:5: expected 3 fields, found 2"


def test_pattern_field_count(tmp_path):
    path = write(tmp_path, "data.mtx", "%%MatrixMarket matrix coordinate pattern general\n"
                 "5 5 1\n1 1 1\n")
    assert error_of(load_matrix, path) == f"{path}:3: expected 2 fields, found 3"


def test_value_not_a_number(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "5 5 2\n1 1 1\n2 2 abc\n")
    assert error_of(load_matrix, path) == f"{path}:4: not a number: 'abc'"


def test_index_not_a_number(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "5 5 1\nx 1 1\n")
    assert error_of(load_matrix, path) == f"{path}:3: not a number: 'x'"


def test_index_not_an_integer(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "5 5 1\n1.5 1 1\n")
    assert error_of(load_matrix, path) == f"{path}:3: not an integer index: '1.5'"


def test_integer_field_with_real_value(tmp_path):
    path = write(tmp_path, "data.mtx", "%%MatrixMarket matrix coordinate integer general\n"
                 "5 5 1\n1 1 2.5\n")
    assert error_of(load_matrix, path) == (
        f"{path}:3: not an integer: '2.5' (the header says 'integer')")


@pytest.mark.parametrize("token", ["nan", "NaN", "inf", "-Infinity", "1e400"])
def test_value_not_finite(tmp_path, token):
    path = write(tmp_path, "data.mtx", HEADER + f"5 5 2\n1 1 1\n3 4 {token}\n")
    assert error_of(load_matrix, path) == (
        f"{path}:4: value of entry (3, 4) is not finite: '{token}'")


def test_size_line_fields(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "% comment\n5 5\n")
    assert error_of(load_matrix, path) == (
        f"{path}:3: size line: expected 3 fields (rows, columns, entries), found 2")


def test_size_line_not_integer(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "5 -5 1\n")
    assert error_of(load_matrix, path) == (
        f"{path}:2: size line: not a non-negative integer: '-5'")


def test_no_size_line(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "% only comments\n\n")
    assert error_of(load_matrix, path) == f"{path}: no size line after the header"


def test_empty_matrix(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "0 5 0\n")
    assert error_of(load_matrix, path) == f"{path}:2: the matrix is empty (0 x 5)"


def test_symmetric_not_square(tmp_path):
    path = write(tmp_path, "data.mtx", "%%MatrixMarket matrix coordinate real symmetric\n"
                 "3 4 0\n")
    assert error_of(load_matrix, path) == (
        f"{path}:2: a symmetric matrix must be square, found 3 x 4")


def test_symmetric_upper_entry(tmp_path):
    path = write(tmp_path, "data.mtx", "%%MatrixMarket matrix coordinate real symmetric\n"
                 "3 3 2\n2 1 1\n1 3 1\n")
    assert error_of(load_matrix, path) == (
        f"{path}:4: entry (1, 3) is above the diagonal of a symmetric matrix "
        f"(only the lower triangle is stored)")


def test_skew_symmetric_diagonal(tmp_path):
    path = write(tmp_path, "data.mtx", "%%MatrixMarket matrix coordinate real skew-symmetric\n"
                 "3 3 1\n2 2 1\n")
    assert error_of(load_matrix, path) == (
        f"{path}:3: entry (2, 2) is on the diagonal of a skew-symmetric matrix "
        f"(only the strict lower triangle is stored)")


def test_duplicate_entry(tmp_path):
    path = write(tmp_path, "data.mtx", HEADER + "4 4 4\n1 1 1\n3 2 5\n2 2 1\n3 2 6\n")
    assert error_of(load_matrix, path) == (
        f"{path}:6: duplicate entry (3, 2) (first given on line 4)")


def test_array_too_few_values(tmp_path):
    path = write(tmp_path, "data.mtx", "%%MatrixMarket matrix array real general\n"
                 "2 2\n1\n2\n3\n")
    assert error_of(load_matrix, path) == (
        f"{path}: the 2 x 2 general array has 4 values but the file has 3")


def test_binary_file(tmp_path):
    path = tmp_path / "data.mtx"
    path.write_bytes(HEADER.encode() + b"2 2 1\n1 1 \xff\n")
    assert error_of(load_matrix, path) == f"{path}:3: not a text file (byte 0xff is not UTF-8)"


def test_gzip_file(tmp_path):
    path = tmp_path / "data.mtx"
    path.write_bytes(b"\x1f\x8b\x08\x00rest")
    assert error_of(load_matrix, path) == (
        f"{path}: compressed (gzip) files are not supported; decompress it first")


def test_unknown_suffix(tmp_path):
    path = write(tmp_path, "data.csv", "1,2\n")
    assert error_of(load_matrix, path) == (
        f"{path}: unknown matrix file type '.csv' (expected .mtx, .npz, .npy)")


# NumPy and SciPy matrices --------------------------------------------------------------------

def test_npy_dense_matrix(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.array([[0, 3], [-2, 0]], dtype=np.int16))
    matrix = load_matrix(path)
    assert matrix.dtype == np.int64
    assert matrix.nnz == 2
    assert matrix.toarray().tolist() == [[0, 3], [-2, 0]]


def test_npy_three_dimensions(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((2, 3, 4)))
    assert error_of(load_matrix, path) == (
        f"{path}: expected a 2-D array, found 3 dimensions (shape 2 x 3 x 4)")


def test_npy_not_finite(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.array([[1.0, 2.0], [0.0, np.nan]]))
    assert error_of(load_matrix, path) == f"{path}: value at [1, 1] is not finite: nan"


def test_npy_complex(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((2, 2), dtype=complex))
    assert error_of(load_matrix, path) == f"{path}: complex matrices are not supported"


def test_npy_objects(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.array([[1, None]], dtype=object), allow_pickle=True)
    assert error_of(load_matrix, path) == f"{path}: arrays of Python objects are not supported"


def test_npy_not_numpy(tmp_path):
    path = write(tmp_path, "a.npy", "hello")
    assert error_of(load_matrix, path) == f"{path}: not a NumPy .npy file"


def test_npz_roundtrip(tmp_path):
    path = tmp_path / "a.npz"
    expected = scipy.sparse.random(20, 30, density=0.1, format="csc", random_state=1)
    scipy.sparse.save_npz(path, expected)
    matrix = load_matrix(path)
    assert isinstance(matrix, scipy.sparse.csr_matrix)
    assert abs(matrix - expected).max() == 0


def test_npz_not_scipy(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, weights=np.arange(3))
    assert error_of(load_matrix, path) == (
        f"{path}: not a scipy.sparse file (written by scipy.sparse.save_npz); "
        f"it holds 'weights'")


def test_npz_not_an_archive(tmp_path):
    path = write(tmp_path, "a.npz", "hello")
    assert error_of(load_matrix, path) == (
        f"{path}: not a .npz archive (scipy.sparse.save_npz writes one)")


def test_npz_not_finite(tmp_path):
    path = tmp_path / "a.npz"
    scipy.sparse.save_npz(path, scipy.sparse.csr_matrix(np.array([[1.0, 0], [0, np.inf]])))
    assert error_of(load_matrix, path) == f"{path}: value at [1, 1] is not finite: inf"


# Vectors -------------------------------------------------------------------------------------

def test_vector_npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(5, dtype=np.int8))
    vector = load_vector(path, length=5)
    assert vector.dtype == np.int64
    assert vector.tolist() == [0, 1, 2, 3, 4]


def test_vector_length(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(99))
    assert error_of(load_vector, path, length=100) == (
        f"{path}: vector has 99 entries but the matrix has 100 columns")


def test_vector_npy_two_dimensions(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((3, 4)))
    assert error_of(load_vector, path) == (
        f"{path}: expected a 1-D array, found 2 dimensions (shape 3 x 4)")


def test_vector_npy_not_finite(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([0.5, 1.0, -np.inf]))
    assert error_of(load_vector, path) == f"{path}: value at [2] is not finite: -inf"


def test_vector_txt(tmp_path):
    path = write(tmp_path, "x.txt", "# x\n1\n-2\n\n3\n")
    vector = load_vector(path, length=3)
    assert vector.dtype == np.int64
    assert vector.tolist() == [1, -2, 3]
    path = write(tmp_path, "y.txt", "1\n-2.5\n")
    assert load_vector(path).tolist() == [1.0, -2.5]


@pytest.mark.parametrize("text, message", [
    ("1\nabc\n", "2: not a number: 'abc'"),
    ("1\n2 3\n", "2: expected one number, found 2 fields"),
    ("1\n2\nnan\n", "3: value of the entry is not finite: 'nan'"),
])
def test_vector_txt_errors(tmp_path, text, message):
    path = write(tmp_path, "x.txt", text)
    assert error_of(load_vector, path) == f"{path}:{message}"


def test_vector_txt_empty(tmp_path):
    path = write(tmp_path, "x.txt", "# nothing\n")
    assert error_of(load_vector, path) == f"{path}: the file holds no numbers"


def test_vector_mtx_dense_and_sparse(tmp_path):
    dense = write(tmp_path, "d.mtx", "%%MatrixMarket matrix array integer general\n"
                  "3 1\n4\n0\n-1\n")
    assert load_vector(dense, length=3).tolist() == [4, 0, -1]
    sparse = write(tmp_path, "s.mtx", "%%MatrixMarket matrix coordinate real general\n"
                   "1 4 2\n1 2 0.5\n1 4 2\n")
    assert load_vector(sparse, length=4).tolist() == [0, 0.5, 0, 2]


def test_vector_mtx_matrix(tmp_path):
    path = write(tmp_path, "x.mtx", HEADER + "3 2 1\n1 1 1\n")
    assert error_of(load_vector, path) == (
        f"{path}: expected a vector (an n x 1 or 1 x n matrix), found a 3 x 2 matrix")


def test_vector_unknown_suffix(tmp_path):
    path = write(tmp_path, "x.csv", "1\n")
    assert error_of(load_vector, path) == (
        f"{path}: unknown vector file type '.csv' (expected .npy, .mtx, .txt)")


def test_vector_missing(tmp_path):
    path = tmp_path / "x.npy"
    assert error_of(load_vector, path) == f"{path}: cannot read: No such file or directory"
