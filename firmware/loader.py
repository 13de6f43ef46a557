"""Reading matrices and vectors from files, with exact error messages.

:func:`load_matrix` reads a sparse matrix from Matrix Market (``.mtx``),
SciPy (``.npz``, written by :func:`scipy.sparse.save_npz`) or NumPy
(``.npy``, a dense 2-D array) files; :func:`load_vector` reads a vector from
``.npy`` (1-D), ``.mtx`` (an ``n x 1`` or ``1 x n`` matrix, dense or sparse)
or ``.txt`` (one number per line) files.

Every problem with the input raises :class:`~zeroskip.core.errors.InputError`
with one line naming the file, the line (Matrix Market, text) or the index
(NumPy, SciPy) and the offending value, for example::

    data.mtx:7: entry (12, 3) is outside the 10 x 10 matrix

Matrix Market row and column numbers are quoted 1-based, as in the file;
indices into NumPy and SciPy arrays are quoted 0-based, in brackets.

Values keep an integer type when the input has one: Matrix Market
``integer`` and ``pattern`` matrices (a pattern loads as all ones) and integer
NumPy arrays load as ``int64``; everything else loads as ``float64``.
"""

import math
import os
import re
import tokenize
import zipfile
import zlib

import numpy as np
import scipy.sparse

from zeroskip.core.errors import InputError

__all__ = ["load_matrix", "load_vector", "MATRIX_SUFFIXES", "VECTOR_SUFFIXES"]

#: File name endings :func:`load_matrix` understands.
MATRIX_SUFFIXES = (".mtx", ".npz", ".npy")
#: File name endings :func:`load_vector` understands.
VECTOR_SUFFIXES = (".npy", ".mtx", ".txt")

_HEADER_HINT = "expected '%%MatrixMarket matrix coordinate ...'"
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_UINT_RE = re.compile(r"[0-9]+\Z")
_REAL_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eEdD][+-]?[0-9]+)?\Z")
_NONFINITE_RE = re.compile(r"[+-]?(nan|inf|infinity)\Z", re.IGNORECASE)
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
#: Largest row count, column count or entry count a size line may give.
_INDEX_MAX = (1 << 31) - 1


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _name(path):
    return os.fspath(path)


def _read_bytes(path):
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise InputError(f"{_name(path)}: cannot read: {error.strerror}") from None


def _decode_text(path, raw):
    if raw[:2] == b"\x1f\x8b":
        raise InputError(f"{_name(path)}: compressed (gzip) files are not supported; "
                         f"decompress it first")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise InputError(f"{_name(path)}:{line}: not a text file "
                         f"(byte 0x{raw[error.start]:02x} is not UTF-8)") from None


def _suffix(path):
    return os.path.splitext(_name(path))[1].lower()


# Matrix Market -----------------------------------------------------------------------------------

class _MatrixMarket:
    """The parsed content of a Matrix Market file (before conversion)."""

    def __init__(self, fmt, field, symmetry, shape, rows, cols, values):
        self.fmt = fmt
        self.field = field
        self.symmetry = symmetry
        self.shape = shape
        self.rows = rows          # 0-based, stored entries only (coordinate)
        self.cols = cols
        self.values = values      # numpy array (int64 or float64)


def _parse_value(name, lineno, token, field, where):
    """Parse one value token of an ``integer`` or ``real`` matrix."""
    if field == "integer":
        if not _INT_RE.match(token):
            if _REAL_RE.match(token) or _NONFINITE_RE.match(token):
                raise InputError(f"{name}:{lineno}: not an integer: {token!r} "
                                 f"(the header says 'integer')")
            raise InputError(f"{name}:{lineno}: not a number: {token!r}")
        value = int(token)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InputError(f"{name}:{lineno}: integer {token!r} does not fit 64 bits")
        return value
    if _NONFINITE_RE.match(token):
        raise InputError(f"{name}:{lineno}: value of {where} is not finite: {token!r}")
    if not _REAL_RE.match(token):
        raise InputError(f"{name}:{lineno}: not a number: {token!r}")
    value = float(token.replace("d", "e").replace("D", "e"))
    if not math.isfinite(value):
        raise InputError(f"{name}:{lineno}: value of {where} is not finite: {token!r}")
    return value


def _parse_header(name, line):
    if not line.lower().startswith("%%matrixmarket"):
        raise InputError(f"{name}:1: not a Matrix Market header ({_HEADER_HINT})")
    tokens = line.split()
    if tokens[0].lower() != "%%matrixmarket" or len(tokens) != 5:
        raise InputError(f"{name}:1: the Matrix Market header needs 5 fields "
                         f"('%%MatrixMarket matrix coordinate real general'), found {len(tokens)}")
    obj, fmt, field, symmetry = (token.lower() for token in tokens[1:])
    if obj != "matrix":
        raise InputError(f"{name}:1: unsupported Matrix Market object {tokens[1]!r} "
                         f"(expected 'matrix')")
    if fmt not in ("coordinate", "array"):
        raise InputError(f"{name}:1: unknown Matrix Market format {tokens[2]!r} "
                         f"(expected 'coordinate' or 'array')")
    if field == "complex":
        raise InputError(f"{name}:1: complex matrices are not supported")
    if field == "double":
        field = "real"
    if field not in ("real", "integer", "pattern"):
        raise InputError(f"{name}:1: unknown Matrix Market field {tokens[3]!r} "
                         f"(expected 'real', 'integer' or 'pattern')")
    if symmetry == "hermitian":
        raise InputError(f"{name}:1: hermitian matrices are not supported")
    if symmetry not in ("general", "symmetric", "skew-symmetric"):
        raise InputError(f"{name}:1: unknown Matrix Market symmetry {tokens[4]!r} "
                         f"(expected 'general', 'symmetric' or 'skew-symmetric')")
    if field == "pattern" and fmt == "array":
        raise InputError(f"{name}:1: a pattern matrix must use the 'coordinate' format")
    if field == "pattern" and symmetry == "skew-symmetric":
        raise InputError(f"{name}:1: a pattern matrix cannot be skew-symmetric")
    return fmt, field, symmetry


def _parse_mtx(path):
    name = _name(path)
    text = _decode_text(path, _read_bytes(path))
    lines = text.splitlines()
    if not lines or not text.strip():
        raise InputError(f"{name}: the file is empty ({_HEADER_HINT})")
    fmt, field, symmetry = _parse_header(name, lines[0])

    # The size line: the first line after the header that is neither a comment nor blank.
    index = 1
    while index < len(lines) and (not lines[index].strip() or lines[index].lstrip()[0] == "%"):
        index += 1
    if index == len(lines):
        raise InputError(f"{name}: no size line after the header")
    lineno = index + 1
    tokens = lines[index].split()
    wanted = 3 if fmt == "coordinate" else 2
    what = "rows, columns, entries" if fmt == "coordinate" else "rows, columns"
    if len(tokens) != wanted:
        raise InputError(f"{name}:{lineno}: size line: expected {wanted} fields ({what}), "
                         f"found {len(tokens)}")
    for token in tokens:
        if not _UINT_RE.match(token):
            raise InputError(f"{name}:{lineno}: size line: not a non-negative integer: {token!r}")
    sizes = [int(token) for token in tokens]
    n_rows, n_cols = sizes[0], sizes[1]
    for size in sizes:
        if size > _INDEX_MAX:
            raise InputError(f"{name}:{lineno}: size line: {size} is too large "
                             f"(at most {_INDEX_MAX})")
    if n_rows == 0 or n_cols == 0:
        raise InputError(f"{name}:{lineno}: the matrix is empty ({n_rows} x {n_cols})")
    if symmetry != "general" and n_rows != n_cols:
        raise InputError(f"{name}:{lineno}: a {symmetry} matrix must be square, "
                         f"found {n_rows} x {n_cols}")

    if fmt == "coordinate":
        return _parse_coordinate(name, lines, index + 1, field, symmetry,
                                 (n_rows, n_cols), sizes[2])
    return _parse_array(name, lines, index + 1, field, symmetry, (n_rows, n_cols))


def _data_lines(lines, start):
    """Yield ``(line number, fields)`` of the non-blank, non-comment lines."""
    for index in range(start, len(lines)):
        tokens = lines[index].split()
        if tokens and tokens[0][0] != "%":
            yield index + 1, tokens


def _parse_coordinate(name, lines, start, field, symmetry, shape, announced):
    n_rows, n_cols = shape
    wanted = 2 if field == "pattern" else 3
    rows, cols, values, linenos = [], [], [], []
    for lineno, tokens in _data_lines(lines, start):
        if len(rows) == announced:
            raise InputError(f"{name}:{lineno}: header announces {announced} entries "
                             f"but the file has more")
        if len(tokens) != wanted:
            raise InputError(f"{name}:{lineno}: expected {wanted} fields, found {len(tokens)}")
        for token in tokens[:2]:
            if not _INT_RE.match(token):
                if _REAL_RE.match(token) or _NONFINITE_RE.match(token):
                    raise InputError(f"{name}:{lineno}: not an integer index: {token!r}")
                raise InputError(f"{name}:{lineno}: not a number: {token!r}")
        i, j = int(tokens[0]), int(tokens[1])
        if not (1 <= i <= n_rows and 1 <= j <= n_cols):
            raise InputError(f"{name}:{lineno}: entry ({i}, {j}) is outside the "
                             f"{n_rows} x {n_cols} matrix")
        if symmetry == "symmetric" and i < j:
            raise InputError(f"{name}:{lineno}: entry ({i}, {j}) is above the diagonal of a "
                             f"symmetric matrix (only the lower triangle is stored)")
        if symmetry == "skew-symmetric" and i <= j:
            where = "on" if i == j else "above"
            raise InputError(f"{name}:{lineno}: entry ({i}, {j}) is {where} the diagonal of a "
                             f"skew-symmetric matrix (only the strict lower triangle is stored)")
        if field == "pattern":
            values.append(1)
        else:
            values.append(_parse_value(name, lineno, tokens[2], field, f"entry ({i}, {j})"))
        rows.append(i - 1)
        cols.append(j - 1)
        linenos.append(lineno)
    if len(rows) != announced:
        raise InputError(f"{name}: header announces {announced} entries "
                         f"but the file has {len(rows)}")

    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    dtype = np.float64 if field == "real" else np.int64
    values = np.asarray(values, dtype=dtype)

    # Duplicate entries: report the second occurrence (in file order) of the first repeat.
    if len(rows) > 1:
        keys = rows * n_cols + cols
        order = np.argsort(keys, kind="stable")
        repeats = np.flatnonzero(keys[order][1:] == keys[order][:-1])
        if len(repeats):
            second = order[repeats + 1]
            first = order[repeats]
            k = int(np.argmin(second))
            dup, orig = int(second[k]), int(first[k])
            raise InputError(f"{name}:{linenos[dup]}: duplicate entry "
                             f"({rows[dup] + 1}, {cols[dup] + 1}) "
                             f"(first given on line {linenos[orig]})")
    return _MatrixMarket("coordinate", field, symmetry, shape, rows, cols, values)


def _parse_array(name, lines, start, field, symmetry, shape):
    n_rows, n_cols = shape
    # Column-major; symmetric: lower triangle with the diagonal; skew: strict lower triangle.
    expected = {"general": n_rows * n_cols, "symmetric": n_rows * (n_rows + 1) // 2,
                "skew-symmetric": n_rows * (n_rows - 1) // 2}[symmetry]
    given = sum(1 for _ in _data_lines(lines, start))
    if given < expected:   # before listing the positions of a huge array
        raise InputError(f"{name}: the {n_rows} x {n_cols} {symmetry} array has "
                         f"{expected} values but the file has {given}")
    if symmetry == "general":
        positions = [(i, j) for j in range(n_cols) for i in range(n_rows)]
    elif symmetry == "symmetric":
        positions = [(i, j) for j in range(n_cols) for i in range(j, n_rows)]
    else:
        positions = [(i, j) for j in range(n_cols) for i in range(j + 1, n_rows)]
    values = []
    for lineno, tokens in _data_lines(lines, start):
        if len(values) == len(positions):
            raise InputError(f"{name}:{lineno}: the {n_rows} x {n_cols} {symmetry} array has "
                             f"{len(positions)} values but the file has more")
        if len(tokens) != 1:
            raise InputError(f"{name}:{lineno}: expected 1 field, found {len(tokens)}")
        i, j = positions[len(values)]
        values.append(_parse_value(name, lineno, tokens[0], field, f"entry ({i + 1}, {j + 1})"))
    if len(values) != len(positions):
        raise InputError(f"{name}: the {n_rows} x {n_cols} {symmetry} array has "
                         f"{len(positions)} values but the file has {len(values)}")
    dtype = np.float64 if field == "real" else np.int64
    values = np.asarray(values, dtype=dtype)
    rows = np.asarray([p[0] for p in positions], dtype=np.int64)
    cols = np.asarray([p[1] for p in positions], dtype=np.int64)
    keep = values != 0
    return _MatrixMarket("array", field, symmetry, shape, rows[keep], cols[keep], values[keep])


def _mtx_to_csr(parsed):
    rows, cols, values = parsed.rows, parsed.cols, parsed.values
    if parsed.symmetry != "general":
        off = rows != cols
        sign = -1 if parsed.symmetry == "skew-symmetric" else 1
        rows, cols, values = (np.concatenate([rows, parsed.cols[off]]),
                              np.concatenate([cols, parsed.rows[off]]),
                              np.concatenate([values, sign * values[off]]))
    matrix = scipy.sparse.coo_matrix((values, (rows, cols)), shape=parsed.shape,
                                     dtype=values.dtype)
    return _canonical(matrix.tocsr())


def _canonical(matrix):
    matrix = scipy.sparse.csr_matrix(matrix)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


# NumPy and SciPy ---------------------------------------------------------------------------------

def _check_dtype(name, dtype, what):
    if dtype.kind == "c":
        raise InputError(f"{name}: complex {what} are not supported")
    if dtype.kind not in "biuf":
        raise InputError(f"{name}: {what} of type {dtype} are not supported "
                         f"(expected integers or real numbers)")


def _format_index(index):
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _normalize_values(name, values, positions):
    """Return ``values`` as int64 or float64; ``positions(k)`` names element ``k``."""
    values = np.asarray(values)
    if values.dtype.kind == "b":
        return values.astype(np.int64)
    if values.dtype.kind == "u" and values.dtype.itemsize == 8 and values.size:
        too_big = np.flatnonzero(values > np.uint64(_INT64_MAX))
        if len(too_big):
            k = int(too_big[0])
            raise InputError(f"{name}: value at {positions(k)} does not fit a 64-bit signed "
                             f"integer: {values.flat[k]}")
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    values = values.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values.ravel()))
    if len(bad):
        k = int(bad[0])
        raise InputError(f"{name}: value at {positions(k)} is not finite: {values.flat[k]}")
    return values


def _load_npy(path, what):
    name = _name(path)
    raw_check = _read_bytes_head(path, 6)
    if raw_check != b"\x93NUMPY":
        raise InputError(f"{name}: not a NumPy .npy file")
    try:
        array = np.load(path, allow_pickle=False)
    except OSError as error:
        if error.strerror:
            raise InputError(f"{name}: cannot read: {error.strerror}") from None
        raise InputError(f"{name}: not a valid NumPy .npy file: {_one_line(error)}") from None
    except (EOFError, SyntaxError, tokenize.TokenError) as error:
        # A damaged header: NumPy's parser of its dictionary gives up.
        raise InputError(f"{name}: not a valid NumPy .npy file: {_one_line(error)}") from None
    except ValueError as error:
        if "pickle" in str(error):
            raise InputError(f"{name}: arrays of Python objects are not supported") from None
        raise InputError(f"{name}: not a valid NumPy .npy file: {_one_line(error)}") from None
    _check_dtype(name, array.dtype, what)
    return array


def _read_bytes_head(path, count):
    try:
        with open(path, "rb") as file:
            return file.read(count)
    except OSError as error:
        raise InputError(f"{_name(path)}: cannot read: {error.strerror}") from None


def _describe_shape(shape):
    return " x ".join(str(n) for n in shape) if shape else "a scalar"


def _load_matrix_npy(path):
    name = _name(path)
    array = _load_npy(path, "matrices")
    if array.ndim != 2:
        raise InputError(f"{name}: expected a 2-D array, found {array.ndim} dimensions "
                         f"(shape {_describe_shape(array.shape)})")
    if 0 in array.shape:
        raise InputError(f"{name}: the matrix is empty ({array.shape[0]} x {array.shape[1]})")
    values = _normalize_values(
        name, array, lambda k: _format_index(np.unravel_index(k, array.shape)))
    return _canonical(scipy.sparse.csr_matrix(values))


def _load_matrix_npz(path):
    name = _name(path)
    _read_bytes_head(path, 1)
    if not zipfile.is_zipfile(path):
        raise InputError(f"{name}: not a .npz archive (scipy.sparse.save_npz writes one)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
            RuntimeError) as error:
        raise InputError(f"{name}: not a valid .npz archive: {_one_line(error)}") from None
    if "format" not in keys or "shape" not in keys:
        listed = ", ".join(repr(key) for key in sorted(keys)) or "no arrays"
        raise InputError(f"{name}: not a scipy.sparse file (written by scipy.sparse.save_npz); "
                         f"it holds {listed}")
    try:
        matrix = scipy.sparse.load_npz(path)
    except Exception as error:  # scipy raises ValueError, KeyError, TypeError... on bad content
        raise InputError(f"{name}: not a valid scipy.sparse file: {_one_line(error)}") from None
    if len(matrix.shape) != 2:
        raise InputError(f"{name}: expected a 2-D sparse matrix, found shape "
                         f"{_describe_shape(matrix.shape)}")
    if 0 in matrix.shape:
        raise InputError(f"{name}: the matrix is empty ({matrix.shape[0]} x {matrix.shape[1]})")
    _check_dtype(name, matrix.dtype, "matrices")
    csr = _canonical(matrix)
    row_of = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    data = _normalize_values(name, csr.data,
                             lambda k: _format_index((row_of[k], csr.indices[k])))
    return scipy.sparse.csr_matrix((data, csr.indices, csr.indptr), shape=csr.shape)


# Public API ---------------------------------------------------------------------------------------

def load_matrix(path):
    """Read a sparse matrix from a ``.mtx``, ``.npz`` or ``.npy`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A Matrix Market file (``coordinate`` or ``array``; ``real``,
        ``integer`` or ``pattern``; ``general``, ``symmetric`` or
        ``skew-symmetric``), a :func:`scipy.sparse.save_npz` file or a dense
        2-D NumPy array.

    Returns
    -------
    scipy.sparse.csr_matrix
        With sorted indices and no duplicates; symmetric storage expanded;
        ``int64`` values for integer and pattern input, ``float64`` otherwise.

    Raises
    ------
    InputError
        With a one-line message naming the file, line or index, and value.
    """
    suffix = _suffix(path)
    if suffix == ".mtx":
        return _mtx_to_csr(_parse_mtx(path))
    if suffix == ".npz":
        return _load_matrix_npz(path)
    if suffix == ".npy":
        return _load_matrix_npy(path)
    raise InputError(f"{_name(path)}: unknown matrix file type {suffix or '(no suffix)'!r} "
                     f"(expected {', '.join(MATRIX_SUFFIXES)})")


def _load_vector_txt(path):
    name = _name(path)
    text = _decode_text(path, _read_bytes(path))
    values, integral = [], True
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0][0] == "#":
            continue
        if len(tokens) != 1:
            raise InputError(f"{name}:{lineno}: expected one number, found {len(tokens)} fields")
        token = tokens[0]
        if _INT_RE.match(token):
            value = int(token)
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise InputError(f"{name}:{lineno}: integer {token!r} does not fit 64 bits")
        else:
            value = _parse_value(name, lineno, token, "real", "the entry")
            integral = False
        values.append(value)
    if not values:
        raise InputError(f"{name}: the file holds no numbers")
    return np.asarray(values, dtype=np.int64 if integral else np.float64)


def _load_vector_mtx(path):
    name = _name(path)
    parsed = _parse_mtx(path)
    n_rows, n_cols = parsed.shape
    if n_rows != 1 and n_cols != 1:
        raise InputError(f"{name}: expected a vector (an n x 1 or 1 x n matrix), found a "
                         f"{n_rows} x {n_cols} matrix")
    dense = _mtx_to_csr(parsed).toarray()
    return dense.ravel()


def _load_vector_npy(path):
    name = _name(path)
    array = _load_npy(path, "vectors")
    if array.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array, found {array.ndim} dimensions "
                         f"(shape {_describe_shape(array.shape)})")
    if array.size == 0:
        raise InputError(f"{name}: the vector is empty")
    return _normalize_values(name, array, lambda k: f"[{k}]")


def load_vector(path, *, length=None):
    """Read a vector from a ``.npy``, ``.mtx`` or ``.txt`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A 1-D NumPy array, a Matrix Market ``n x 1`` or ``1 x n`` matrix
        (``array`` or ``coordinate``; missing entries are zeros) or a text
        file with one number per line (blank lines and ``#`` comments are
        skipped).
    length : int, optional
        The number of entries the vector must have: the columns of the
        matrix it multiplies.

    Returns
    -------
    numpy.ndarray
        1-D, ``int64`` when every value is an integer (and the file type can
        tell), ``float64`` otherwise.

    Raises
    ------
    InputError
        With a one-line message naming the file, line or index, and value.
    """
    suffix = _suffix(path)
    if suffix == ".npy":
        vector = _load_vector_npy(path)
    elif suffix == ".mtx":
        vector = _load_vector_mtx(path)
    elif suffix == ".txt":
        vector = _load_vector_txt(path)
    else:
        raise InputError(f"{_name(path)}: unknown vector file type {suffix or '(no suffix)'!r} "
                         f"(expected {', '.join(VECTOR_SUFFIXES)})")
    if length is not None and len(vector) != length:
        raise InputError(f"{_name(path)}: vector has {len(vector)} entries but the matrix has "
                         f"{length} columns")
    return vector
