"""The host stage's tf.strings ops (recom_tvm/runtime/string_ops.py, regex.py) against TensorFlow's kernels,
element by element, on crafted and random strings: bit-exact outputs, and TF's errors where TF raises."""

from __future__ import annotations

import os

import numpy as np
import pytest

from recom_tvm.errors import InvalidArgumentError
from recom_tvm.runtime import regex as re2
from recom_tvm.runtime import string_ops as so

tf = pytest.importorskip("tensorflow")
R = tf.raw_ops

CRAFTED = [b"", b" ", b"a b", b" a  b ", b"a,,b", b",", b"a\vb", b"a\xc2\x85b", b"\xff\xfe", b"abc", b"\t\n", b"x,y;z",
           b";;", b"a;b;;c", b"UPPER lower", "ünïcödé ÀÉÎ".encode(), "中文字符".encode(), "emoji 🎉🚀".encode(),
           b"a" * 300, b"\x00nul", b"trail\x00", b"\x80lead", b"mid\xe4\xb8dle", "ΟΔΟΣ ΣΑΣ".encode(), "İß ﬁ".encode(),
           b"  padded\t\r\n", b"1,2,,3", b"<>1<>2<><>3<>", b"a||b|", b"Hello World", b"x\ny\n", b"ab\n"]


def _random(rng, n: int) -> list[bytes]:
    alphabet = [b"a", b"b", b"Z", b" ", b",", b";", b"|", b"\t", b"\n", b"\v", b"\x00", b"\xff", b"\x80", b"1", b"-",
                b".", b"e", "é".encode(), "中".encode(), "🎉".encode(), b"<>", b"_"]
    return [b"".join(alphabet[k] for k in rng.integers(0, len(alphabet), rng.integers(0, 12))) for _ in range(n)]


STRINGS = CRAFTED + _random(np.random.default_rng(0), 300)


def _node(op: str, **attrs) -> dict:
    """A host-plan node: string attributes as the importer writes them (bytes as latin-1 text)."""
    attrs = {k: v.encode().decode("latin-1") if isinstance(v, str) else v for k, v in attrs.items()}
    return {"op": op, "name": op.lower(), "attrs": attrs}


def _arr(items) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _same(got, exp, what: str) -> None:
    exp = np.asarray(exp)
    got = np.asarray(got)
    assert got.shape == exp.shape, f"{what}: shape {got.shape} vs TF {exp.shape}"
    if exp.dtype == object:
        assert got.astype(object).reshape(-1).tolist() == exp.reshape(-1).tolist(), what
    else:
        assert got.dtype == exp.dtype, f"{what}: dtype {got.dtype} vs TF {exp.dtype}"
        assert got.tobytes() == exp.tobytes() or (np.isnan(got) == np.isnan(exp)).all() and np.array_equal(
            got[~np.isnan(got)], exp[~np.isnan(exp)]), what


def _both(tf_fn, ours_fn, what: str):
    """Run both; both must raise (ours InvalidArgumentError) or agree."""
    try:
        exp = tf_fn()
    except tf.errors.OpError as err:
        with pytest.raises(InvalidArgumentError):
            ours_fn()
        return err
    got = ours_fn()
    if isinstance(exp, (tuple, list)) or hasattr(exp, "_fields"):
        for k, (g, e) in enumerate(zip(got, exp)):
            _same(g, e.numpy(), f"{what} output {k}")
    else:
        _same(got, exp.numpy(), what)
    return None


@pytest.mark.parametrize("sep", [b"", b",", b";", b",;", b"<>", b" "])
def test_split(sep):
    x = _arr(STRINGS)
    for maxsplit in (-1, 0, 1, 2):
        _both(lambda: R.StringSplitV2(input=STRINGS, sep=sep, maxsplit=maxsplit),
              lambda: so.string_split_v2(_node("StringSplitV2", maxsplit=maxsplit), x, np.array(sep, dtype=object)),
              f"StringSplitV2 sep={sep!r} maxsplit={maxsplit}")
    for skip in (True, False):
        _both(lambda: R.StringSplit(input=STRINGS, delimiter=sep, skip_empty=skip),
              lambda: so.string_split(_node("StringSplit", skip_empty=skip), x, np.array(sep, dtype=object)),
              f"StringSplit delimiter={sep!r} skip_empty={skip}")


def test_case_strip_length():
    x = _arr(STRINGS)
    for enc in ("", "utf-8"):
        _both(lambda: R.StringLower(input=STRINGS, encoding=enc), lambda: so.string_lower(
            _node("StringLower", encoding=enc), x), f"StringLower {enc!r}")
        _both(lambda: R.StringUpper(input=STRINGS, encoding=enc), lambda: so.string_upper(
            _node("StringUpper", encoding=enc), x), f"StringUpper {enc!r}")
    _both(lambda: R.StringStrip(input=STRINGS), lambda: so.string_strip(_node("StringStrip"), x), "StringStrip")
    for unit in ("BYTE", "UTF8_CHAR"):
        _both(lambda: R.StringLength(input=STRINGS, unit=unit), lambda: so.string_length(
            _node("StringLength", unit=unit), x), f"StringLength {unit}")


@pytest.mark.parametrize("unit", ["BYTE", "UTF8_CHAR"])
def test_substr(unit):
    rng = np.random.default_rng(1)
    items = [s for s in STRINGS if len(s) < 40]
    x = _arr(items)
    for pos, length in ((0, 3), (1, 2), (-2, 5), (0, 0), (2, -1), (-1, 1)):  # scalars
        _both(lambda: R.Substr(input=items, pos=pos, len=length, unit=unit),
              lambda: so.substr(_node("Substr", unit=unit), x, np.int32(pos), np.int32(length)),
              f"Substr pos={pos} len={length}")
    lens = np.array([len(s) for s in items])
    for _ in range(20):  # per element, in range (an out-of-range one fails the whole batch, checked below)
        pos = np.array([rng.integers(-n, n + 1) if n else 0 for n in lens], np.int32) // 2
        length = rng.integers(-2, 6, len(items)).astype(np.int32)
        _both(lambda: R.Substr(input=items, pos=pos, len=length, unit=unit),
              lambda: so.substr(_node("Substr", unit=unit), x, pos, length), "Substr vectors")
    err = _both(lambda: R.Substr(input=[b"hello"], pos=[6], len=[1], unit=unit),
                lambda: so.substr(_node("Substr", unit=unit), _arr([b"hello"]), np.array([6]), np.array([1])),
                "Substr out of range")
    assert err is not None


def test_join_reduce_join():
    a = _arr(STRINGS[:40])
    b = _arr(STRINGS[40:80])
    for sep in ("", "-", "<>"):
        _both(lambda: R.StringJoin(inputs=[a.tolist(), b.tolist()], separator=sep),
              lambda: so.string_join(_node("StringJoin", separator=sep), a, b), "StringJoin")
        _both(lambda: R.StringJoin(inputs=[a.tolist(), "x", b.tolist()], separator=sep),
              lambda: so.string_join(_node("StringJoin", separator=sep), a, np.array(b"x", dtype=object), b),
              "StringJoin with a scalar")
    m = _arr(STRINGS[:24]).reshape(2, 3, 4)
    for axes in ([0], [1], [-1], [0, 2], [2, 0], [], [0, 1, 2], [3], [1, 1]):
        for keep in (False, True):
            _both(lambda: R.ReduceJoin(inputs=m.tolist(), reduction_indices=axes, keep_dims=keep, separator="|"),
                  lambda: so.reduce_join(_node("ReduceJoin", keep_dims=keep, separator="|"), m,
                                         np.array(axes, np.int32)), f"ReduceJoin {axes} keep={keep}")


def test_ngrams():
    rng = np.random.default_rng(2)
    data = STRINGS[:30]
    lens = [0, 1, 2, 3, 0, 5, 4, 15]
    splits = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    for widths, pad, lp, rp, preserve in (([1], 0, "", "", False), ([2], -1, "<s>", "</s>", False),
                                          ([2, 3], 1, "L", "R", False), ([4], 0, "", "", True),
                                          ([3, 5], 2, "[", "]", True), ([6], -1, "", "", True)):
        node = _node("StringNGrams", separator=" ", ngram_widths=widths, left_pad=lp, right_pad=rp,
                     pad_width=pad, preserve_short_sequences=preserve)
        _both(lambda: R.StringNGrams(data=data, data_splits=splits, separator=" ", ngram_widths=widths,
                                     left_pad=lp, right_pad=rp, pad_width=pad, preserve_short_sequences=preserve),
              lambda: so.string_ngrams(node, _arr(data), splits), f"StringNGrams {widths} pad {pad}")
    del rng


PATTERNS = [(r"x*", "-"), (r"", "-"), (r"b$", "X"), (r"\s", "_"), (r"\s+", " "), (r".", "x"), (r"[^a]", "x"),
            (r"(\w+) (\w+)", r"\2 \1"), (r"(\w+) (\w+)", r"\2 \\ \1 \0"), (r"l", r"\n"), (r"(l)", r"\2"),
            (r"(?i)é", "e"), (r"(?i)[a-c]+", "#"), (r"\bw", "W"), (r"\Bb", "B"), (r"a{2}", "b"), (r"a{2,}", "b"),
            (r"[[:digit:]]+", "#"), (r"[[:punct:][:space:]]", ""), (r"\Qa.b\E", "X"), (r"(?s).", "-"),
            (r"(?m)^", "-"), (r"(?m)$", "-"), (r"\z", "-"), (r"^\s+|\s+$", ""), (r"[,;|]+", ","), (r"\d+", "<num>"),
            (r"[^\w\s]", ""), (r"(a|ab)(c|bcd)(d*)", r"[\1,\2,\3]"), (r"a*?", "-"), (r"[\x{4e00}-\x{9fff}]", "C"),
            (r"\x41|\x{263a}", "Y"), (r"(?P<w>[a-z]+)-(?P<n>\d)", r"\2\1"), (r"\.", "dot"), (r"[a\-z]", "!"),
            (r"(?:ab)+|(?i:B)", "~"), (r"[]a]", "]"), (r"a{,2}", "!"), (r"^", ">"), (r"\W+", "_"), (r"\D", ""),
            (r"\S+", "w"), (r"[\t-\r]", "ws"), (r"\A\n|\n\z", ""), (r"a(?i)b", "#"), (r"(?s:.)(?i:B).", "#"),
            (r"(?s:a(?i:b)c)d", "#"), (r"(a(?i:b))c", r"<\1>"), (r"(?im)^z.", "#"),
            (r"[^\d\s]", "#")]


@pytest.mark.parametrize("pattern,rewrite", PATTERNS)
def test_regex(pattern, rewrite):
    x = _arr(STRINGS)
    try:
        re2.translate(pattern)
    except re2.UnsupportedRegex:
        assert pattern in (r"a{,2}",), f"{pattern!r} should be supported"
        return
    for global_ in (True, False):
        node = _node("StaticRegexReplace", pattern=pattern, rewrite=rewrite, replace_global=global_)
        _both(lambda: R.StaticRegexReplace(input=STRINGS, pattern=pattern, rewrite=rewrite, replace_global=global_),
              lambda: so.regex_replace(node, x), f"StaticRegexReplace {pattern!r} -> {rewrite!r} global={global_}")
        node = _node("RegexReplace", replace_global=global_)
        _both(lambda: R.RegexReplace(input=STRINGS, pattern=pattern, rewrite=rewrite, replace_global=global_),
              lambda: so.regex_replace(node, x, np.array(pattern.encode(), dtype=object),
                                       np.array(rewrite.encode(), dtype=object)), f"RegexReplace {pattern!r}")
    _both(lambda: R.RegexFullMatch(input=STRINGS, pattern=pattern),
          lambda: so.regex_full_match(_node("RegexFullMatch"), x, np.array(pattern.encode(), dtype=object)),
          f"RegexFullMatch {pattern!r}")
    _both(lambda: R.StaticRegexFullMatch(input=STRINGS, pattern=pattern),
          lambda: so.regex_full_match(_node("StaticRegexFullMatch", pattern=pattern), x),
          f"StaticRegexFullMatch {pattern!r}")


@pytest.mark.parametrize("pattern", [r"(?=l)", r"(?<!a)b", r"\1", r"\Z", r"\pL", r"\p{Greek}", r"(?U)a+", r"\C",
                                     r"a{1001}", r"[\W]", r"x(?m)^", r"(?<n>a)",
                                     r"((?i)b|c)d"])
def test_regex_refused(pattern):
    """Outside the subset: refused with the reason (RE2 itself rejects the first four)."""
    with pytest.raises(re2.UnsupportedRegex, match="regular expression"):
        re2.translate(pattern)


NUMBERS = ["1.5", " 1.5 ", "1.5abc", "", " ", "inf", "-inf", "Infinity", "INF", "nan", "NaN", "-nan", "+1", "0x1A",
           "1e40", "1e-50", "1_000", "  -0  ", "3.4028235e38", "3.40282357e38", "1.", ".5", "0x1p3", "1" * 31,
           "1" * 400, "\t7\n", "7\v", "nan(123)", "0x", "1e", "-0x1A", "0x1.8p1", "infin", "0.1", "1e-45",
           "7.006492321624085e-46", "  +.5e-3  ", "+inf", "2147483648", "-2147483648", "9223372036854775807",
           "9223372036854775808", "007", "+-1", "1 2", "3.4028235677973366e38", "3.4028235677973367e38",
           "1.4012984643248170e-45", "7.0064923216240854e-46", "0x1p5000", "1.00000005960464477539062499",
           "1.000000059604644775390625", "1.00000005960464477539062501", "−1", "١", "\x007", "0x.8", "-", "+", "e5"]


@pytest.mark.parametrize("out_type", ["float32", "float64", "int32", "int64"])
def test_string_to_number(out_type):
    rng = np.random.default_rng(3)
    rand = [repr(float(v)) for v in rng.normal(size=50) * 10.0 ** rng.integers(-40, 40, 50)]
    rand += [str(int(v)) for v in rng.integers(-(1 << 62), 1 << 62, 20)]
    for s in NUMBERS + rand:
        _both(lambda: R.StringToNumber(string_tensor=[s], out_type=tf.as_dtype(out_type)),
              lambda: so.string_to_number(_node("StringToNumber", out_type=out_type), _arr([s.encode()])),
              f"StringToNumber {s!r} -> {out_type}")


def test_runtime_only_imports():
    """string_ops and regex import nothing beyond the runtime's own modules (see test_runtime_only.py)."""
    import ast

    root = os.path.join(os.path.dirname(__file__), "..", "recom_tvm", "runtime")
    for name in ("string_ops.py", "regex.py"):
        tree = ast.parse(open(os.path.join(root, name)).read())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in mods if m.split(".")[0] in ("tensorflow", "tvm", "symengine")}, mods


def test_hash_bucket_strong():
    """StringToHashBucketStrong (keyed SipHash-2-4) over strings of every block count."""
    x = _arr(STRINGS)
    for key, buckets in (([17, 42], 7), ([0, 0], 1000), ([-(2**62) - 5, 12345678901234567], 2**40)):
        _both(lambda: R.StringToHashBucketStrong(input=STRINGS, num_buckets=buckets, key=key),
              lambda: so.IMPLS["StringToHashBucketStrong"](_node("StringToHashBucketStrong", num_buckets=buckets,
                                                                 key=key), x), f"strong hash {key}")


def _sparse_input(rng, n_rows: int, kind: str):
    lens = rng.integers(0, 4, n_rows)
    rows = np.repeat(np.arange(n_rows), lens)
    cols = np.concatenate([np.arange(k) for k in lens]) if n_rows else np.zeros(0, int)
    idx = np.stack([rows, cols], 1).astype(np.int64).reshape(-1, 2)
    n = int(lens.sum())
    if kind == "string":
        vals = _arr([STRINGS[i] for i in rng.integers(0, len(STRINGS), n)])
    else:
        vals = rng.integers(-(1 << 40), 1 << 40, n).astype(np.int64)
    return idx, vals, np.array([n_rows, max(1, int(lens.max()) if n_rows else 1)], np.int64)


def _tf_sparse(sp):
    idx, vals, shape = sp
    return tf.constant(idx), tf.constant(vals.tolist() if vals.dtype == object else vals), tf.constant(shape)


@pytest.mark.parametrize("kinds", [("string", "int"), ("string", "string", "int"), ("int",)])
def test_sparse_crosses(kinds):
    """String crosses (SparseCross without hashing, SparseCrossV2) and SparseCrossHashed (fast and strong, TF's
    keyed-column hashes) against TF, with a dense input too."""
    from recom_tvm.runtime.cross import IMPLS

    rng = np.random.default_rng(4)
    sparse = [_sparse_input(rng, 9, k) for k in kinds]
    dense = _arr([STRINGS[i] for i in rng.integers(0, len(STRINGS), 18)]).reshape(9, 2)
    tfs = [_tf_sparse(s) for s in sparse]
    args = [s[0] for s in sparse] + [s[1] for s in sparse] + [s[2] for s in sparse] + [dense]
    n = len(sparse)
    node = {"op": "SparseCrossV2", "name": "x", "attrs": {"N": n, "sep": "#"}}
    _both(lambda: R.SparseCrossV2(indices=[t[0] for t in tfs], values=[t[1] for t in tfs], shapes=[t[2] for t in tfs],
                                  dense_inputs=[tf.constant(dense.tolist())], sep="#"),
          lambda: IMPLS["SparseCrossV2"](node, *args), "SparseCrossV2")
    strs = [i for i, k in enumerate(kinds) if k == "string"]  # SparseCross (v1) strings: string inputs only
    if strs:
        v1_args = ([sparse[i][0] for i in strs] + [sparse[i][1] for i in strs] + [sparse[i][2] for i in strs] +
                   [dense])
        node = {"op": "SparseCrossV2", "name": "x", "attrs": {"N": len(strs), "sep": "_X_"}}
        _both(lambda: R.SparseCross(indices=[tfs[i][0] for i in strs], values=[tfs[i][1] for i in strs],
                                    shapes=[tfs[i][2] for i in strs], dense_inputs=[tf.constant(dense.tolist())],
                                    hashed_output=False, num_buckets=0, hash_key=0, out_type=tf.string,
                                    internal_type=tf.string),
              lambda: IMPLS["SparseCrossV2"](node, *v1_args), "SparseCross (strings)")
    for strong in (False, True):
        salt = [7, -3]
        node = {"op": "SparseCrossHashed", "name": "x", "attrs": {"N": n, "num_buckets": 1000, "strong_hash": strong,
                                                                  "salt": salt}}
        _both(lambda: R.SparseCrossHashed(indices=[t[0] for t in tfs], values=[t[1] for t in tfs],
                                          shapes=[t[2] for t in tfs], dense_inputs=[tf.constant(dense.tolist())],
                                          num_buckets=1000, strong_hash=strong, salt=salt),
              lambda: IMPLS["SparseCrossHashed"](node, *args), f"SparseCrossHashed strong={strong}")
