"""tf.strings ops of the host stage, bit-exact with TensorFlow's CPU kernels (TF 2.21).

Each op is a pure function `(node, *inputs) -> output | tuple of outputs` of its inputs and the node's attributes
(`node["attrs"]`), registered in `recom_tvm.runtime.host_stage.HOST_IMPLS`. Strings are bytes ('S' arrays, or
object arrays of bytes where a value ends in a NUL byte); text rules follow TF's, not Python's:

- whitespace is ASCII " \\t\\n\\v\\f\\r" (StringSplitV2 without a separator, StringStrip, StringToNumber);
- StringSplit (v1) splits on any byte of the delimiter, or into single bytes when it is empty, skipping empty
  tokens when `skip_empty`; StringSplitV2 splits on the whole separator and keeps empty tokens, or without one
  on runs of whitespace (no empty tokens), both with `maxsplit`;
- StringLower / StringUpper change ASCII letters only unless `encoding` is "utf-8" (then full Unicode case
  mapping; invalid UTF-8 becomes U+FFFD and the text ends at a NUL byte, as in TF's ICU conversion);
- UTF8_CHAR units count characters as TF does: every byte that is not a continuation byte (0b10xxxxxx) starts
  one, whether or not the sequence is valid;
- StringToNumber parses like C's strtod / strtol with surrounding whitespace allowed (hex floats, inf, nan;
  overflow to +-inf) and raises TF's error for anything else; float32 is rounded once, from the exact decimal.
"""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np

from ..errors import InvalidArgumentError
from . import regex as re2
from .siphash import hash_bucket_strong
from .strings import from_objects, to_bytes

_WS = b" \t\n\v\f\r"


def _label(node) -> str:
    return f"{node['op']} node {node['name']!r}"


def _strings(x) -> tuple[list[bytes], tuple]:
    arr = x if isinstance(x, np.ndarray) else np.asarray(x, dtype=object)
    return to_bytes(arr), arr.shape


def _pack(items: list[bytes], shape) -> np.ndarray:
    obj = np.empty(len(items), dtype=object)
    obj[:] = items
    return from_objects(obj.reshape(shape))


def _scalar_string(node, x, what: str) -> bytes:
    items, shape = _strings(x)
    if len(items) != 1 or len(shape) > 1:
        raise InvalidArgumentError(f"{_label(node)}: {what} must be a scalar, got shape {list(shape)}")
    return items[0]


def _sparse(node, rows: list[list[bytes]]) -> tuple:
    """(indices [n, 2], values [n], dense_shape [2]) of the tokens of each row."""
    counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    n = int(counts.sum())
    indices = np.zeros((n, 2), np.int64)
    if n:
        indices[:, 0] = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        indices[:, 1] = np.arange(n, dtype=np.int64) - starts
    values = _pack([t for r in rows for t in r], (n,))
    shape = np.array([len(rows), int(counts.max()) if len(rows) else 0], np.int64)
    return indices, values, shape


# --------------------------------------------------------------------------------------------------- split
def _split_v1(text: bytes, delims: bytes, skip_empty: bool) -> list[bytes]:
    if not delims or not text:  # TF: an empty element has no token, even when empty tokens are kept
        return [text[i:i + 1] for i in range(len(text))]
    parts = re.split(b"[" + re.escape(delims) + b"]", text) if len(delims) > 1 else text.split(delims)
    return [p for p in parts if p] if skip_empty else parts


def string_split(node, x, delimiter):
    """StringSplit (tf.compat.v1.string_split): a SparseTensor of the tokens of each element of a vector."""
    items, shape = _strings(x)
    if len(shape) != 1:
        raise InvalidArgumentError(f"{_label(node)}: input must be a vector, got shape: {list(shape)}")
    delims = _scalar_string(node, delimiter, "delimiter")
    skip = bool(node["attrs"].get("skip_empty", True))
    return _sparse(node, [_split_v1(s, delims, skip) for s in items])


def _split_whitespace(text: bytes, maxsplit: int) -> list[bytes]:
    out: list[bytes] = []
    text = text.lstrip(_WS)
    while text:
        end = 0
        while end < len(text) and text[end] not in _WS:
            end += 1
        out.append(text[:end])
        text = text[end:].lstrip(_WS)
        if maxsplit > 0 and len(out) == maxsplit:
            out.append(text)  # TF keeps the rest, even when it is empty
            return out
    return out


def _split_v2(text: bytes, sep: bytes, maxsplit: int) -> list[bytes]:
    if maxsplit == 0:
        return [text]
    if not sep:
        return _split_whitespace(text, maxsplit)
    return text.split(sep, maxsplit if maxsplit > 0 else -1)


def string_split_v2(node, x, sep):
    """StringSplitV2 (tf.strings.split): Python's str.split rules on bytes, with TF's maxsplit remainder."""
    items, shape = _strings(x)
    if len(shape) != 1:
        raise InvalidArgumentError(f"{_label(node)}: input must be a vector, got shape: {list(shape)}")
    s = _scalar_string(node, sep, "sep")
    maxsplit = int(node["attrs"].get("maxsplit", -1))
    return _sparse(node, [_split_v2(t, s, maxsplit) for t in items])


# ------------------------------------------------------------------------------------------ elementwise text
def _map(x, fn) -> np.ndarray:
    items, shape = _strings(x)
    return _pack([fn(s) for s in items], shape)


def _utf8_case(s: bytes, upper: bool) -> bytes:
    # TF converts through a NUL-terminated string: the text ends at the first NUL byte
    text = s.split(b"\0", 1)[0].decode("utf-8", "replace")
    return (text.upper() if upper else text.lower()).encode("utf-8")


def string_lower(node, x):
    if node["attrs"].get("encoding", "") not in ("", b""):
        return _map(x, lambda s: _utf8_case(s, False))
    return _map(x, bytes.lower)  # ASCII only, as absl::AsciiStrToLower


def string_upper(node, x):
    if node["attrs"].get("encoding", "") not in ("", b""):
        return _map(x, lambda s: _utf8_case(s, True))
    return _map(x, bytes.upper)


def zeros_like_strings(node, x):
    """ZerosLike of a string tensor: "" everywhere (tf.sparse.from_dense compares a dense string feed with it)."""
    shape = np.shape(x)
    return _pack([b""] * int(np.prod(shape, dtype=np.int64)), shape)


def string_strip(node, x):
    return _map(x, lambda s: s.strip(_WS))


def _trail(s: bytes, i: int) -> bool:
    return (s[i] & 0xC0) == 0x80


def _forward(s: bytes, n: int, pos: int) -> tuple[bool, int]:
    """TF's ForwardNUTF8CharPositions: move `pos` n characters on (a character: one byte and its trail bytes)."""
    counted = 0
    while counted < n and pos < len(s):
        pos += 1
        while pos < len(s) and _trail(s, pos):
            pos += 1
        counted += 1
    return counted == n, pos


def _back(s: bytes, n: int, pos: int) -> tuple[bool, int]:
    """TF's BackNUTF8CharPositions."""
    counted = 0
    while counted < n and pos > 0:
        pos -= 1
        while _trail(s, pos) and pos > 0:
            pos -= 1
        counted += 1
    return counted == n, pos


def _utf8_window(s: bytes, pos: int, length: int) -> tuple[int, int] | None:
    """(byte pos, byte len) of Substr's UTF8_CHAR window, None when pos is out of range (TF's kernel)."""
    if pos >= 0:
        ok, bpos = _forward(s, pos, 0)
        if not ok:
            return None
        _, end = _forward(s, length, bpos)
        return bpos, end - bpos
    skip = max(0, -pos - length)
    ok, end = _back(s, skip, len(s))
    if not ok:
        return None
    ok, bpos = _back(s, -pos - skip, end)
    if not ok:
        return None
    return bpos, end - bpos


def string_length(node, x):
    items, shape = _strings(x)
    if node["attrs"].get("unit", "BYTE") == "UTF8_CHAR":
        out = [sum(1 for b in s if (b & 0xC0) != 0x80) for s in items]
    else:
        out = [len(s) for s in items]
    return np.array(out, dtype=np.int32).reshape(shape)


def _broadcast_shapes(node, shapes: list[tuple], what: str) -> tuple:
    full = [s for s in shapes if len(s)]
    for s in full[1:]:
        if s != full[0]:
            raise InvalidArgumentError(f"{_label(node)}: {what} shapes do not match: {list(full[0])} vs. {list(s)}")
    return full[0] if full else ()


def substr(node, x, pos, length):
    """Substr: pos / len of the same shape, the input's or one broadcast against it (TF's kernel: at most two
    dims); a negative pos counts from the end; pos past the end is TF's error; a negative len reads to the end
    (BYTE) or takes nothing (UTF8_CHAR); characters are stepped over as TF's kernel does."""
    items, shape = _strings(x)
    pos, length = np.asarray(pos), np.asarray(length)
    if pos.shape != length.shape:
        raise InvalidArgumentError(f"{_label(node)}: pos and len should have the same shape, got: "
                                   f"{list(pos.shape)} vs. {list(length.shape)}")
    arr = np.empty(shape, dtype=object)
    arr.reshape(-1)[:] = items
    try:
        arr_b, pos_b, len_b = np.broadcast_arrays(arr, pos, length)
    except ValueError:
        raise InvalidArgumentError(f"{_label(node)}: incompatible shapes: {list(shape)} vs. {list(pos.shape)}") \
            from None
    if arr_b.ndim > 2 and not (pos.ndim == 0 or pos.shape == arr.shape):
        raise InvalidArgumentError(f"{_label(node)}: Substr broadcast not implemented for {arr_b.ndim} dimensions")
    utf8 = node["attrs"].get("unit", "BYTE") == "UTF8_CHAR"
    out = []
    for i, (s, p, n) in enumerate(zip(arr_b.reshape(-1).tolist(), pos_b.reshape(-1).tolist(),
                                      len_b.reshape(-1).tolist())):
        p, n = int(p), int(n)
        if utf8:
            window = _utf8_window(s, p, n)
            if window is None:
                raise InvalidArgumentError(f"{_label(node)}: pos {p} out of range for string at index {i}")
            begin, size = window
        else:
            begin, size = (p + len(s) if p < 0 else p), n
            if not 0 <= begin <= len(s):
                raise InvalidArgumentError(f"{_label(node)}: pos {p} out of range for string {s!r} at index {i}")
        out.append(s[begin:] if size < 0 else s[begin:begin + size])  # a negative byte length: to the end
    return _pack(out, arr_b.shape)


def string_join(node, *inputs):
    """StringJoin: elementwise join of equal-shaped tensors (scalars broadcast) with the separator."""
    sep = node["attrs"].get("separator", "")
    sep = sep.encode("latin-1") if isinstance(sep, str) else sep
    parts = [_strings(v) for v in inputs]
    shape = _broadcast_shapes(node, [s for _, s in parts], "Input")
    n = int(np.prod(shape)) if shape else 1
    cols = [items if len(s) else items * n for items, s in parts]
    return _pack([sep.join(row) for row in zip(*cols)] if cols else [b""] * n, shape)


def reduce_join(node, x, axes):
    """ReduceJoin: join along each reduction axis in the order given (empty: nothing reduced)."""
    items, shape = _strings(x)
    sep = node["attrs"].get("separator", "")
    sep = sep.encode("latin-1") if isinstance(sep, str) else sep
    keep = bool(node["attrs"].get("keep_dims", False))
    axes = [int(a) for a in np.asarray(axes).reshape(-1)]
    rank = len(shape)
    norm = []
    for a in axes:
        if not -rank <= a < rank:
            raise InvalidArgumentError(f"{_label(node)}: Invalid reduction dimension {a} for input with {rank} "
                                       "dimension(s)")
        a %= rank
        if a in norm:
            raise InvalidArgumentError(f"{_label(node)}: Duplicate reduction dimension {a}")
        norm.append(a)
    arr = np.empty(shape, dtype=object)
    arr.reshape(-1)[:] = items
    for a in norm:
        moved = np.moveaxis(arr, a, -1)
        joined = np.empty(moved.shape[:-1], dtype=object)
        flat = moved.reshape(-1, moved.shape[-1]) if moved.size else np.empty((joined.size, 0), dtype=object)
        joined.reshape(-1)[:] = [sep.join(row) for row in flat.tolist()] if joined.size else []
        arr = np.expand_dims(joined, a)
    if not keep and norm:
        arr = arr.squeeze(axis=tuple(norm))
    return _pack(arr.reshape(-1).tolist(), arr.shape)


def string_ngrams(node, data, splits):
    """StringNGrams (tf.strings.ngrams over a RaggedTensor): TF's kernel, padding and short sequences included."""
    a = node["attrs"]

    def b(key):
        v = a.get(key, "")
        return v.encode("latin-1") if isinstance(v, str) else v

    sep, lpad, rpad = b("separator"), b("left_pad"), b("right_pad")
    widths = [int(w) for w in a.get("ngram_widths", [])]
    pad_width = int(a.get("pad_width", 0))
    preserve = bool(a.get("preserve_short_sequences", False))
    if any(w <= 0 for w in widths):
        raise InvalidArgumentError(f"{_label(node)}: ngram_widths must contain positive values")
    items, _ = _strings(data)
    splits = np.asarray(splits)
    sp = splits.reshape(-1).tolist()
    if sp:
        if sp[0] != 0:
            raise InvalidArgumentError(f"{_label(node)}: First split value must be 0, got {sp[0]}")
        for prev, cur in zip(sp, sp[1:]):
            if not prev <= cur <= len(items):
                raise InvalidArgumentError(f"{_label(node)}: Invalid split value {cur}, must be in [{prev}, "
                                           f"{len(items)}]")
        if sp[-1] != len(items):
            raise InvalidArgumentError(f"{_label(node)}: Last split value must be data size. Expected "
                                       f"{len(items)}, got {sp[-1]}")
    if not items or not sp:
        return _pack([], (0,)), np.zeros(splits.shape, splits.dtype)

    def pad_of(w):
        return min(w - 1 if pad_width < 0 else pad_width, w - 1)

    def count(length, w):
        return max(0, length + 2 * pad_of(w) - w + 1)

    def grams(row, num, w):
        pw = pad_of(w)
        out = []
        for k in range(num):
            left = max(0, pw - k)
            right = max(0, pw - (num - (k + 1)))
            ntok = w - (left + right)
            start = 0 if left > 0 else k - pw
            out.append(sep.join([lpad] * left + row[start:start + ntok] + [rpad] * right))
        return out

    result, out_splits = [], [0]
    for i in range(len(sp) - 1):
        row = items[sp[i]:sp[i + 1]]
        produced = []
        for w in widths:
            produced += grams(row, count(len(row), w), w)
        if preserve and not produced and row:
            if pad_width < 0:
                raise InvalidArgumentError(f"{_label(node)}: Pad width should be >= 0 when preserve_short_sequences "
                                           f"is True and ngram_widths are not provided, got {pad_width}")
            produced = grams(row, 1, len(row) + 2 * pad_width)
        result += produced
        out_splits.append(out_splits[-1] + len(produced))
    return _pack(result, (len(result),)), np.array(out_splits, dtype=splits.dtype)


# -------------------------------------------------------------------------------------------------- regex
def _text(node, key: str, value) -> str:
    """A pattern / rewrite: the op's input, or its attribute (plan attributes hold bytes as latin-1 text)."""
    raw = _scalar_string(node, value, key) if value is not None else node["attrs"].get(key, "").encode("latin-1")
    return raw.decode("utf-8", "surrogateescape")


def _regex_args(node, pattern, rewrite):
    a = node["attrs"]
    pat, rew = _text(node, "pattern", pattern), _text(node, "rewrite", rewrite)
    try:
        compiled = re2.translate(pat)
    except re2.UnsupportedRegex as err:
        raise InvalidArgumentError(f"{_label(node)}: {err}") from None
    return compiled, rew, bool(a.get("replace_global", True))


def regex_replace(node, x, pattern=None, rewrite=None):
    """RegexReplace (pattern and rewrite as inputs) / StaticRegexReplace (as attributes), RE2 semantics."""
    compiled, rew, global_ = _regex_args(node, pattern, rewrite)
    return _map(x, lambda s: re2.replace(s, compiled, rew, global_))


def regex_full_match(node, x, pattern=None):
    pat = _text(node, "pattern", pattern)
    try:
        compiled = re2.translate(pat)
    except re2.UnsupportedRegex as err:
        raise InvalidArgumentError(f"{_label(node)}: {err}") from None
    items, shape = _strings(x)
    return np.array([re2.full_match(s, compiled) for s in items], dtype=bool).reshape(shape)


# -------------------------------------------------------------------------------------------- to_number
_FLOAT = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(?:(inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)|"
                    rb"0[xX]((?:[0-9A-Fa-f]+\.?[0-9A-Fa-f]*|\.[0-9A-Fa-f]+)(?:[pP][+-]?[0-9]+)?)|"
                    rb"((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?))[ \t\n\v\f\r]*", re.IGNORECASE)
_INT = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")


def _hex_fraction(text: bytes) -> Fraction:
    s = text.decode().lower()
    mant, _, exp = s.partition("p")
    whole, _, frac = mant.partition(".")
    value = Fraction(int((whole or "0") + frac, 16), 16 ** len(frac))
    e = int(exp) if exp else 0
    return value * (Fraction(2) ** e)


def _round_f32(exact: Fraction) -> float:
    """The float32 nearest to `exact` >= 0 (ties to even, subnormals, overflow to inf): strtof's one rounding."""
    if exact == 0:
        return 0.0
    e = exact.numerator.bit_length() - exact.denominator.bit_length()
    if Fraction(2) ** e > exact:
        e -= 1
    ulp = Fraction(2) ** (max(e, -126) - 23)
    value = round(exact / ulp) * ulp  # round() of a Fraction is ties-to-even
    return float("inf") if value >= Fraction(2) ** 128 else float(value)


def _to_f32(v: float, exact) -> float:
    """float32 of the double `v` parsed from a number whose exact value `exact()` gives: rounding through the
    double is exact unless the double fell on a float32 midpoint."""
    with np.errstate(over="ignore"):
        f = np.float32(v)
    if not np.isfinite(f):
        return _round_f32(exact()) if np.isfinite(v) else float(f)
    with np.errstate(over="ignore"):
        other = np.nextafter(f, np.float32(np.inf) if v > float(f) else np.float32(-np.inf))
    if v != float(f) and np.isfinite(other) and v == (float(f) + float(other)) / 2:
        return _round_f32(exact())
    return float(f)


def _parse_float(s: bytes, f32: bool):
    m = _FLOAT.fullmatch(s)
    if m is None:
        return None
    sign, special, hexpart, dec = m.groups()
    if special:
        v = float("nan") if special[:1].lower() == b"n" else float("inf")
    elif hexpart is not None:
        try:
            v = _round_f32(_hex_fraction(hexpart)) if f32 else float.fromhex("0x" + hexpart.decode())
        except OverflowError:
            v = float("inf")
    else:
        v = float(dec)  # correctly rounded to double
        if f32:
            v = _to_f32(v, lambda: Fraction(dec.decode()))
    return -v if sign == b"-" else v


def string_to_number(node, x):
    """StringToNumber: TF's InvalidArgumentError for text that is not a number of out_type."""
    items, shape = _strings(x)
    out_type = node["attrs"].get("out_type", "float32")
    out = np.empty(len(items), dtype=out_type)
    info = np.iinfo(out_type) if out_type.startswith("int") else None
    for i, s in enumerate(items):
        if info is not None:
            m = _INT.fullmatch(s)
            v = int(m.group(1)) if m else None
            if v is not None and not info.min <= v <= info.max:
                v = None
        else:
            v = _parse_float(s, out_type == "float32")
        if v is None:
            raise InvalidArgumentError(f"{_label(node)}: StringToNumberOp could not correctly convert string: "
                                       f"{s.decode('utf-8', 'replace')}")
        out[i] = v
    return out.reshape(shape)


IMPLS = {
    "StringSplit": string_split,
    "StringSplitV2": string_split_v2,
    "StringLower": string_lower,
    "StringUpper": string_upper,
    "StringStrip": string_strip,
    "ZerosLike": zeros_like_strings,
    "StringLength": string_length,
    "Substr": substr,
    "StringJoin": string_join,
    "ReduceJoin": reduce_join,
    "StringNGrams": string_ngrams,
    "RegexReplace": regex_replace,
    "StaticRegexReplace": regex_replace,
    "RegexFullMatch": regex_full_match,
    "StaticRegexFullMatch": regex_full_match,
    "StringToNumber": string_to_number,
    "StringToHashBucketStrong": hash_bucket_strong,
}
