"""tf.strings ops: host-stage rules (output dtypes and symbolic shapes; the numpy kernels are in
`recom_tvm.runtime.string_ops`). The splits produce SparseTensors whose dense_shape becomes symbolic sizes of the
module, so they are placed by their converter like SparseCross."""

from __future__ import annotations

import numpy as np

from ...runtime import regex as re2
from ..values import Host, Known, host_attrs, host_input
from . import host, placed


def _same(ins, dtype: str) -> list:
    return [(dtype, list(ins[0].shape))]


def _const_string(ctx, v, what: str) -> str:
    if not (isinstance(v, Known) and v.concrete and v.numpy().size == 1):
        ctx.fail(f"the {what} must be a constant string")
    raw = v.numpy().reshape(-1)[0]
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)


def _check_regex(ctx, pattern: str) -> None:
    try:
        re2.translate(pattern)
    except re2.UnsupportedRegex as err:
        ctx.fail(f"{err}; see recom_tvm/runtime/regex.py for the supported RE2 subset")


def _check_rewrite(ctx, pattern: str, rewrite: str) -> None:
    if re2.rewrite_groups(rewrite) < 0:
        ctx.fail(f"invalid rewrite {rewrite!r}: RE2 knows only \\0-\\9 and \\\\ (TF logs an error and drops the "
                 "text after the bad escape)")


def _str_attr(node, name: str) -> str:
    """A string attribute as text (bytes undecodable as UTF-8 kept byte for byte as surrogates)."""
    value = node.attr(name, b"")
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


@host("StringLower", "StringUpper")
def _case(ctx, node, ins):
    enc = _str_attr(node, "encoding")
    if enc not in ("", "utf-8"):
        ctx.fail(f"encoding {enc!r} ('' for ASCII, 'utf-8' are TF's)")
    return _same(ins, "string")


@host("StringStrip")
def _strip(ctx, node, ins):
    return _same(ins, "string")


@host("StaticRegexReplace")
def _static_regex_replace(ctx, node, ins):
    pattern, rewrite = _str_attr(node, "pattern"), _str_attr(node, "rewrite")
    _check_regex(ctx, pattern)
    _check_rewrite(ctx, pattern, rewrite)
    return _same(ins, "string")


@host("RegexReplace")
def _regex_replace(ctx, node, ins):
    pattern = _const_string(ctx, ins[1], "pattern")
    _check_regex(ctx, pattern)
    _check_rewrite(ctx, pattern, _const_string(ctx, ins[2], "rewrite"))
    return _same(ins, "string")


@host("StaticRegexFullMatch")
def _static_full_match(ctx, node, ins):
    _check_regex(ctx, _str_attr(node, "pattern"))
    return _same(ins, "bool")


@host("RegexFullMatch")
def _full_match(ctx, node, ins):
    _check_regex(ctx, _const_string(ctx, ins[1], "pattern"))
    return _same(ins, "bool")


@host("StringToHashBucketStrong")
def _hash_strong(ctx, node, ins):
    if int(node.attr("num_buckets", 0)) <= 0:
        ctx.fail("num_buckets must be positive")
    if len(node.attr("key") or []) != 2:
        ctx.fail("the key must hold two integers")
    return _same(ins, "int64")


@host("StringLength")
def _length(ctx, node, ins):
    return _same(ins, "int32")


@host("StringToNumber")
def _to_number(ctx, node, ins):
    out = node.attr("out_type", "float32")
    if out not in ("float32", "float64", "int32", "int64"):
        ctx.fail(f"out_type {out}")
    return _same(ins, out)


def _broadcast(ctx, shapes: list[list], what: str) -> list:
    """Equal shapes (two features' batch sizes asserted equal), or rank-0 operands broadcast: TF's string kernels
    accept no other broadcasting."""
    from .host_ops import _broadcast as broadcast

    full = [s for s in shapes if s]
    if any(len(s) != len(full[0]) for s in full):
        ctx.fail(f"{what}: operands of shapes {shapes} (equal shapes or scalars are supported)")
    return broadcast(ctx, full)


@host("Substr")
def _substr(ctx, node, ins):
    x, pos, length = ins
    if len(pos.shape) != len(length.shape):
        ctx.fail("pos and len of different ranks")
    if not pos.shape:
        return _same(ins, "string")
    return [("string", _broadcast(ctx, [list(x.shape), list(pos.shape)], "Substr"))]


@host("StringJoin")
def _join(ctx, node, ins):
    return [("string", _broadcast(ctx, [list(v.shape) for v in ins], "StringJoin"))]


@host("ReduceJoin")
def _reduce_join(ctx, node, ins):
    x, axes = ins
    rank = len(x.shape)
    red = ctx.const_ints(axes, "the reduction axes")
    norm = []
    for a in red:
        if not -rank <= a < rank:
            ctx.fail(f"reduction axis {a} of a rank-{rank} input")
        norm.append(a % rank)
    keep = bool(node.attr("keep_dims", False))
    shape = [1 if i in norm else d for i, d in enumerate(x.shape)] if keep else [
        d for i, d in enumerate(x.shape) if i not in norm]
    return [("string", shape)]


@placed("StringNGrams")
def _ngrams(ctx, node, ins):
    splits = ins[1]
    out = _host_op(ctx, node, ins, 2)
    count = ctx.symbols.fresh("ngrams", f"number of ngrams of {node.name}")
    ngrams = Host(out[0], "string", [count])
    new_splits = Host(out[1], splits.dtype, list(splits.shape))
    for h in (ngrams, new_splits):
        ctx.host_values[h.tensor] = h
    return [ngrams, new_splits]


@placed("StringSplit", "StringSplitV2")
def _split(ctx, node, ins):
    """A SparseTensor of tokens: indices [k, 2], values [k] on the host, dense_shape [rows, width] as sizes."""
    x = ins[0]
    if not isinstance(x, Host) or len(x.shape) != 1:
        ctx.fail("the input must be a host-stage vector of strings (a feed or a string op's result)")
    out = _host_op(ctx, node, ins, 3)
    stem = node.name.rsplit("/", 1)[-1]
    count = ctx.symbols.fresh(f"{stem}_tokens", f"number of tokens of {node.name}")
    width = ctx.symbols.fresh(f"{stem}_width", f"most tokens in one element at {node.name}")
    idx = ctx.host_values[out[0]] = Host(out[0], "int64", [count, 2])
    vals = ctx.host_values[out[1]] = Host(out[1], "string", [count])
    return [idx, vals, ctx.shape_feed_input(out[2], "int64", [x.shape[0], width], source="host")]


def _host_op(ctx, node, ins, n_out: int) -> list[str]:
    """Add `node` to the host plan reading `ins` (host tensors or constants); its output tensor names."""
    inputs = []
    for v in ins:
        if (inp := host_input(v)) is None:
            ctx.fail("a host-stage op reads a value computed on the device")
        inputs.append(inp)
    outs = [f"{node.name}:{i}" for i in range(n_out)]
    ctx.add_host_op({"name": node.name, "op": node.op, "inputs": inputs, "attrs": host_attrs(node.attrs),
                     "outputs": outs})
    return outs

