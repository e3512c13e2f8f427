"""The dense tail: MatMul, BatchMatMul, Einsum, Softmax, Conv2D (CIN), TopKV2 (retrieval heads)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from ...shapes.symbolic import as_expr, is_const_int, is_prim, prove_equal, simplify
from ..context import shape_expr
from . import device


def _t(ctx, x, flag: bool):
    if not flag:
        return x
    perm = list(range(len(x.shape)))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return ctx.emit(relax.op.permute_dims(x.expr, perm))


def _product(ctx, a, b, out_dtype=None):
    """a @ b as TF-CPU computes it. float16 (Keras' mixed_float16 Dense layers): products summed in float32 and
    rounded to float16 once, as TF's MatMul / BatchMatMul kernels do (TVM's float16 matmul rounded every partial
    sum: results 1 ulp off, which moved the float32 head's score by ~1e-4)."""
    if a.dtype == "float16" and b.dtype == "float16" and out_dtype in (None, "float16"):
        wide = ctx.emit(relax.op.matmul(a.expr, b.expr, out_dtype="float32"))
        return ctx.emit(relax.op.astype(wide.expr, "float16"))
    return ctx.emit(relax.op.matmul(a.expr, b.expr, out_dtype=out_dtype))


@device("MatMul")
def _matmul(ctx, node, ins):
    a, b = (ctx.device(v) for v in ins)
    a = _t(ctx, a, bool(node.attr("transpose_a", False)))
    b = _t(ctx, b, bool(node.attr("transpose_b", False)))
    b = ctx.match_shape(b, [a.shape[1], b.shape[1]])
    return _product(ctx, a, b)


@device("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def _batch_matmul(ctx, node, ins):
    a, b = (ctx.device(v) for v in ins)
    a = _t(ctx, a, bool(node.attr("adj_x", False)))
    b = _t(ctx, b, bool(node.attr("adj_y", False)))
    if len(a.shape) == len(b.shape) > 2:  # batch dims of separate features' batch symbols: assert them equal
        from .math import broadcast_target

        lead = len(a.shape) - 2
        target, need = broadcast_target(a.shape[:lead], b.shape[:lead])
        if need:
            b = ctx.match_shape_cast(b, target + list(b.shape[lead:]))
    out_dtype = node.attr("Tout") if node.op == "BatchMatMulV3" else None
    return _product(ctx, a, b, out_dtype)


@device("Softmax", "LogSoftmax")
def _softmax(ctx, node, ins):
    x = ctx.device(ins[0])
    fn = relax.op.nn.softmax if node.op == "Softmax" else relax.op.nn.log_softmax
    return ctx.emit(fn(x.expr, axis=-1))


# -------------------------------------------------------------------------------------------------- Einsum
_LETTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _einsum_terms(ctx, equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Parse 'ab,bc->ac' (spaces ignored; '...' expanded to fresh labels by each operand's rank)."""
    eq = equation.replace(" ", "")
    if "->" not in eq:
        ctx.fail(f"equation {equation!r} without '->' (implicit output) is not supported")
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        ctx.fail(f"equation {equation!r} names {len(terms)} operands, the op has {len(ranks)}")
    spare = [c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in eq]
    ell_rank = max([r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t] or [0])
    ell = "".join(spare[:ell_rank])
    expanded = []
    for t, r in zip(terms, ranks):
        if "..." in t:
            n = r - len(t.replace("...", ""))
            t = t.replace("...", ell[ell_rank - n:])
        expanded.append(t)
    out = out.replace("...", ell)
    for t, r in zip(expanded, ranks):
        if len(t) != r or not set(t) <= _LETTERS:
            ctx.fail(f"equation {equation!r}: term {t!r} does not match an operand of rank {r}")
        if len(set(t)) != len(t):
            ctx.fail(f"equation {equation!r}: a label repeated within one operand (diagonals) is not supported")
    if len(set(out)) != len(out) or not set(out) <= set("".join(expanded)):
        ctx.fail(f"equation {equation!r}: bad output term")
    return expanded, out


def _einsum_reduce(ctx, x, term: str, keep: set):
    """Sum away the labels of one operand that appear nowhere else."""
    drop = [i for i, c in enumerate(term) if c not in keep]
    if not drop:
        return x, term
    x = ctx.emit(relax.op.sum(x.expr, drop, False))
    return x, "".join(c for c in term if c in keep)


@device("Einsum")
def _einsum(ctx, node, ins):
    """Einsum with one or two operands, as TF computes it: labels summed away, then one batched matmul over
    (batch labels, free labels of each side, contracted labels), transposed to the output's order."""
    from ...shapes.symbolic import prove_equal

    xs = [ctx.device(v) for v in ins]
    if len(xs) not in (1, 2):
        ctx.fail(f"{len(xs)} operands (1 or 2 are supported)")
    equation = node.attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    terms, out = _einsum_terms(ctx, equation, [len(x.shape) for x in xs])
    size = {}
    for x, t in zip(xs, terms):
        for c, d in zip(t, x.shape):
            if c in size and not prove_equal(size[c], d):
                if not (is_const_int(d) and int(d) == 1) and not (is_const_int(size[c]) and int(size[c]) == 1):
                    ctx.assume(as_expr(size[c]) == as_expr(d), f"{ctx.label()}: label {c!r} has two sizes")
                else:
                    ctx.fail(f"equation {equation!r}: broadcasting label {c!r} is not supported")
            size.setdefault(c, d)
    if len(xs) == 1:
        x, t = _einsum_reduce(ctx, xs[0], terms[0], set(out))
        perm = [t.index(c) for c in out]
        return x if perm == list(range(len(perm))) else ctx.emit(relax.op.permute_dims(x.expr, perm))
    (a, ta), (b, tb) = (_einsum_reduce(ctx, xs[i], terms[i], set(out) | set(terms[1 - i])) for i in (0, 1))
    batch = [c for c in ta if c in tb and c in out]
    contract = [c for c in ta if c in tb and c not in out]
    free_a = [c for c in ta if c not in tb]
    free_b = [c for c in tb if c not in ta]

    def arrange(x, t, order, shape):
        perm = [t.index(c) for c in order]
        if perm != list(range(len(perm))):
            x = ctx.emit(relax.op.permute_dims(x.expr, perm))
        return ctx.emit(relax.op.reshape(x.expr, shape_expr(shape)))

    prod = _prod_of(size)
    a = arrange(a, ta, batch + free_a + contract, [prod(batch), prod(free_a), prod(contract)])
    b = ctx.match_shape(arrange(b, tb, batch + contract + free_b, [prod(batch), prod(contract), prod(free_b)]),
                        [a.shape[0], a.shape[2], prod(free_b)])
    y = ctx.emit(relax.op.matmul(a.expr, b.expr))
    got = batch + free_a + free_b
    y = ctx.emit(relax.op.reshape(y.expr, shape_expr([size[c] for c in got])))
    perm = [got.index(c) for c in out]
    return y if perm == list(range(len(perm))) else ctx.emit(relax.op.permute_dims(y.expr, perm))


def _prod_of(size: dict):
    def prod(labels):
        out = 1
        for c in labels:
            out = out * size[c]
        return simplify(out) if is_prim(out) else out

    return prod


# -------------------------------------------------------------------------------------------------- Conv2D
def _same_pads(ctx, size, k: int, stride: int, dilation: int) -> tuple[int, int]:
    if not is_const_int(size):
        ctx.fail("padding='SAME' over a spatial dim whose size is only known at run time")
    size = int(size)
    eff = (k - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


@device("Conv2D")
def _conv2d(ctx, node, ins):
    """Conv2D in NHWC with HWIO filters (Conv1D, as xDeepFM's CIN and DeepCTR write it, is ExpandDims + Conv2D);
    VALID, SAME and EXPLICIT padding, strides and dilations."""
    fmt = node.attr("data_format", b"NHWC")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt != "NHWC":
        ctx.fail(f"data_format {fmt} (NHWC is supported; TF-CPU runs only NHWC)")
    x, w = ctx.device(ins[0]), ctx.device(ins[1])
    if len(x.shape) != 4 or len(w.shape) != 4 or not all(is_const_int(d) for d in w.shape):
        ctx.fail("input must be 4-D and the filter a 4-D constant shape")
    kh, kw, cin, cout = (int(d) for d in w.shape)
    strides = [int(s) for s in node.attr("strides", [1, 1, 1, 1])]
    dil = [int(s) for s in node.attr("dilations", [1, 1, 1, 1])]
    if strides[0] != 1 or strides[3] != 1 or dil[0] != 1 or dil[3] != 1:
        ctx.fail("strides / dilations over the batch or channel dim")
    padding = node.attr("padding", b"VALID")
    padding = padding.decode() if isinstance(padding, bytes) else padding
    if padding == "VALID":
        pads = (0, 0, 0, 0)
    elif padding == "SAME":
        (t, b), (left, right) = (_same_pads(ctx, x.shape[1], kh, strides[1], dil[1]),
                                 _same_pads(ctx, x.shape[2], kw, strides[2], dil[2]))
        pads = (t, left, b, right)
    elif padding == "EXPLICIT":
        e = [int(v) for v in node.attr("explicit_paddings", [])]
        if len(e) != 8 or e[0] or e[1] or e[6] or e[7]:
            ctx.fail(f"explicit_paddings {e}")
        pads = (e[2], e[4], e[3], e[5])
    else:
        ctx.fail(f"padding {padding}")
    groups = 1
    if not is_const_int(x.shape[3]) or int(x.shape[3]) != cin:
        if is_const_int(x.shape[3]) and int(x.shape[3]) % cin == 0:
            groups = int(x.shape[3]) // cin
        else:
            ctx.fail(f"input channels {x.shape[3]} vs filter channels {cin}")
    y = relax.op.nn.conv2d(x.expr, w.expr, strides=(strides[1], strides[2]), padding=pads,
                           dilation=(dil[1], dil[2]), groups=groups, data_layout="NHWC", kernel_layout="HWIO")
    return ctx.emit(y)


# -------------------------------------------------------------------------------------------------- TopKV2
@device("TopKV2", "TopK")
def _top_k(ctx, node, ins):
    """The k largest along the last axis, sorted, ties by the lower index (as TF). A NaN never ranks above a
    number here; TF's own order of rows holding NaN is an artefact of its sort (its CPU and GPU kernels differ).
    k may be a size known only at run time: the last dim itself (tf.sort / tf.argsort of a [B, None] input: TF
    writes TopKV2 with k = tf.shape(x)[-1]) or an int scalar feed (`tf.math.top_k(scores, k=k)`): then the whole
    row is sorted (a stable descending argsort) and its first k kept."""
    x = ctx.device(ins[0])
    if node.op == "TopKV2":
        (k,) = ctx.known_ints(ins[1], "k")
    else:
        k = int(node.attr("k"))
    n = x.shape[-1]
    if is_const_int(k) and is_const_int(n) and int(k) > int(n):
        ctx.fail(f"k = {k} is larger than the last dimension ({n})")
    if not (is_const_int(k) and is_const_int(n)):
        ctx.assume(as_expr(n) >= as_expr(k), f"{ctx.label()}: input must have at least k = {k} columns")
    index = node.attr("index_type", "int32")
    key = x
    if x.dtype.startswith("float"):  # NaN -> -inf for the ranking (stable among equals), values read back
        key = ctx.emit(relax.op.where(relax.op.isnan(x.expr), relax.const(-np.inf, x.dtype), x.expr))
    axis = len(x.shape) - 1
    if is_const_int(k):
        res = ctx.bb.emit(relax.op.topk(key.expr, int(k), -1, "indices", True, "int64"))
        ids = ctx.emit(res, shape=list(x.shape[:-1]) + [k])
    else:
        order = ctx.emit(relax.op.argsort(key.expr, axis=-1, descending=True, dtype="int64"), shape=list(x.shape))
        ids = order if prove_equal(k, n) else ctx.emit(
            relax.op.strided_slice(order.expr, [axis], [0], [as_expr(k)], assume_inbound=True),
            shape=list(x.shape[:-1]) + [k])
    values = ctx.emit(relax.op.gather_elements(x.expr, ids.expr, axis), shape=list(ids.shape))
    return [values, ctx.emit(relax.op.astype(ids.expr, index)) if index != "int64" else ids]
