"""String tensors on the host: numpy fixed-width bytes ('S') wherever that is exact, so the host stage and the
hashing run vectorized instead of element by element.

numpy's 'S' drops trailing NUL bytes; TF strings may end in one, so such tensors stay object arrays of bytes.
"""

from __future__ import annotations

import numpy as np


def encode_utf8(arr: np.ndarray) -> np.ndarray:
    """A numpy unicode ('U') array as UTF-8 bytes ('S'), vectorized."""
    try:
        return arr.astype(f"S{max(arr.dtype.itemsize // 4, 1)}")  # ASCII text: a C loop
    except UnicodeEncodeError:
        return np.char.encode(arr, "utf-8")


def from_buffer(buf: np.ndarray, lengths: np.ndarray, shape) -> np.ndarray | None:
    """Strings laid end to end in `buf` -> an 'S' array of `shape`, or None if one ends in a NUL byte."""
    n = lengths.size
    width = int(lengths.max()) if n else 0
    if n and width and (buf[np.cumsum(lengths)[lengths > 0] - 1] == 0).any():
        return None
    mat = np.zeros((n, max(width, 1)), np.uint8)
    mat[np.arange(mat.shape[1]) < lengths[:, None]] = buf  # row-major: the mask visits bytes in buffer order
    return mat.view(f"S{mat.shape[1]}").reshape(shape)


def from_objects(obj: np.ndarray) -> np.ndarray:
    """An object array of str / bytes -> 'S' (str as UTF-8) when exact, else an object array of bytes.

    All-str and all-bytes arrays are joined into one buffer (one C-level pass, no per-element encode)."""
    items = obj.reshape(-1).tolist()
    if not items:
        return np.zeros(obj.shape, "S1")
    buf = None
    try:
        text = "".join(items)  # TypeError unless every element is a str
        if text.isascii():
            buf = text.encode("ascii")
    except TypeError:
        try:
            buf = b"".join(items)  # TypeError unless every element is bytes-like
        except TypeError:
            buf = None
    if buf is not None:
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        arr = from_buffer(np.frombuffer(buf, np.uint8), lengths, obj.shape)
        if arr is not None:
            return arr
    enc = [v if type(v) is bytes else v.encode("utf-8") for v in items]  # AttributeError: not a string
    if buf is None:  # mixed or non-ASCII: encoded one by one, then the same layout
        lengths = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
        arr = from_buffer(np.frombuffer(b"".join(enc), np.uint8), lengths, obj.shape)
        if arr is not None:
            return arr
    out = np.empty(len(enc), dtype=object)
    out[:] = enc
    return out.reshape(obj.shape)


def string_matrix(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An 'S' / 'U' array as (byte matrix [n, width], length of each string), flattened, without copying bytes
    ('S'): numpy drops trailing NULs, so a string ends after its last nonzero byte."""
    a = np.ascontiguousarray(encode_utf8(arr) if arr.dtype.kind == "U" else arr).reshape(-1)
    w = a.dtype.itemsize
    if w == 0 or a.size == 0:
        return np.zeros((a.size, 0), np.uint8), np.zeros(a.size, np.int64)
    return a.view(np.uint8).reshape(a.size, w), np.char.str_len(a).astype(np.int64)  # up to the last non-NUL


def string_buffer(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF string elements as (bytes buffer, start of each string, length of each string), flattened."""
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if arr.dtype.kind in "SU":
        mat, lengths = string_matrix(arr)
        return mat.reshape(-1), np.arange(mat.shape[0], dtype=np.int64) * mat.shape[1], lengths
    strings = to_bytes(arr)
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    starts = np.zeros(len(strings), np.int64)
    if len(strings) > 1:
        np.cumsum(lengths[:-1], out=starts[1:])
    return np.frombuffer(b"".join(strings), dtype=np.uint8), starts, lengths


def to_bytes(values) -> list[bytes]:
    """TF string elements (bytes, or str encoded as UTF-8) as a flat list of bytes."""
    flat = np.asarray(values, dtype=object).reshape(-1).tolist()
    try:
        return [v if type(v) is bytes else v.encode("utf-8") for v in flat]
    except AttributeError:
        bad = next(v for v in flat if not isinstance(v, (bytes, str)))
        raise TypeError(f"expected a string element, got {type(bad).__name__}") from None


def end_to_end(values) -> tuple[np.ndarray, np.ndarray]:
    """TF string elements (flattened) as (their bytes laid end to end, the length of each): what the device hash
    reads (runtime/packer.py)."""
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if arr.dtype.kind in "SU":
        mat, lengths = string_matrix(arr)
        if mat.shape[1] == 0:
            return np.zeros(0, np.uint8), lengths
        return mat[np.arange(mat.shape[1]) < lengths[:, None]], lengths  # row-major: the strings in order
    strings = to_bytes(arr)
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    return np.frombuffer(b"".join(strings), dtype=np.uint8), lengths
