"""Shape and layout ops: Shape, Reshape, Slice, StridedSlice, Pack, ConcatV2, Tile, Fill, Range, Gather, ..."""

from __future__ import annotations

import numpy as np
from tvm import relax, tirx

from ...shapes import symengine_bridge
from ...shapes.symbolic import analyzer, as_expr, is_const_int, prove_equal, simplify, is_prim
from ..context import shape_expr
from ..values import Device, Known
from . import NotFoldable, device, known

_MAX_FOLD_ELEMENTS = 1 << 16


def _prod(vals):
    out = 1
    for v in vals:
        out = out * v
    return simplify(out) if is_prim(out) else out


def _norm_axis(ctx, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        ctx.fail(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


# ------------------------------------------------------------------------------------ Shape / Size / Rank
@device("Shape", "Size", "Rank")
def _shape(ctx, node, ins):
    v = ins[0]
    shape = v.shape
    dtype = node.attr("out_type", "int32")
    if node.op == "Shape":
        return Known(np.array([simplify(s) for s in shape], dtype=object), dtype)
    if node.op == "Size":
        return Known(np.array(_prod([simplify(s) for s in shape]), dtype=object), dtype)
    return Known(np.array(len(shape), dtype="int32"), "int32")


@device("ShapeN")
def _shape_n(ctx, node, ins):
    dtype = node.attr("out_type", "int32")
    return [Known(np.array([simplify(s) for s in v.shape], dtype=object), dtype) for v in ins]


known("Shape", "Size", "Rank")(_shape)


# ------------------------------------------------------------------------------------------------ Reshape
def resolve_reshape(ctx, in_shape: list, target: list) -> list:
    """TF Reshape's target with -1 resolved (symbolically when needed)."""
    unknown = [i for i, t in enumerate(target) if is_const_int(t) and int(t) == -1]
    if len(unknown) > 1:
        ctx.fail(f"more than one -1 in the target shape {target}")
    total = _prod(in_shape)
    where = f"{ctx.node.op} node {ctx.node.name!r}" if ctx.node else "Reshape"
    if unknown:
        rest = _prod([t for i, t in enumerate(target) if i != unknown[0]])
        if is_const_int(rest) and int(rest) == 0:
            ctx.fail("cannot infer -1 with a zero-sized dimension in the target shape")
        target = list(target)
        # SymEngine cancels through the symbolic divisor (B*T // T -> B); TF's own preconditions, that the
        # divisor is non-zero and divides the size, become host-side checks when they are not provable
        quotient, _ = symengine_bridge.simplify(tirx.floordiv(as_expr(total), as_expr(rest)))
        target[unknown[0]] = simplify(quotient)
        if not is_const_int(rest):
            ctx.assume(as_expr(rest) != 0, f"{where}: cannot infer the -1 dimension of {target} with a zero-sized "
                                           "dimension")
            ctx.assume(tirx.floormod(as_expr(total), as_expr(rest)) == 0,
                       f"{where}: the input's size is not a multiple of the other dimensions of the target shape")
    elif not prove_equal(total, _prod(target)):
        if is_const_int(total) and all(is_const_int(t) for t in target):
            ctx.fail(f"cannot reshape a tensor of {total} elements to {target}")
        ctx.assume(as_expr(total) == as_expr(_prod(target)),
                   f"{where}: the input's size does not match the target shape {target}")
    return target


@device("Reshape")
def _reshape(ctx, node, ins):
    x = ctx.device(ins[0])
    target = resolve_reshape(ctx, x.shape, ctx.known_ints(ins[1], "the target shape"))
    if len(target) == len(x.shape) and all(prove_equal(a, b) for a, b in zip(target, x.shape)):
        return x
    return ctx.emit(relax.op.reshape(x.expr, shape_expr(target)))


@known("Reshape")
def _reshape_known(ctx, node, ins):
    arr = ins[0].value
    target = resolve_reshape(ctx, list(arr.shape), ctx.known_ints(ins[1], "the target shape"))
    if not all(is_const_int(t) for t in target):
        raise NotFoldable
    return Known(arr.reshape([int(t) for t in target]), ins[0].dtype)


@device("ExpandDims")
def _expand_dims(ctx, node, ins):
    x = ctx.device(ins[0])
    (axis,) = ctx.const_ints(ins[1], "the axis")
    axis = axis if axis >= 0 else axis + len(x.shape) + 1
    return ctx.emit(relax.op.expand_dims(x.expr, axis))


@known("ExpandDims")
def _expand_dims_known(ctx, node, ins):
    (axis,) = ctx.const_ints(ins[1], "the axis")
    return Known(np.expand_dims(ins[0].value, axis), ins[0].dtype)


@device("Squeeze")
def _squeeze(ctx, node, ins):
    x = ctx.device(ins[0])
    dims = list(node.attr("squeeze_dims", []) or [])
    rank = len(x.shape)
    if not dims:
        dims = [i for i, d in enumerate(x.shape) if is_const_int(d) and int(d) == 1]
    dims = [_norm_axis(ctx, d, rank) for d in dims]
    for d in dims:
        if not prove_equal(x.shape[d], 1):
            x = ctx.match_shape(x, [1 if i == d else s for i, s in enumerate(x.shape)])
    new_shape = [s for i, s in enumerate(x.shape) if i not in dims]
    return ctx.emit(relax.op.reshape(x.expr, shape_expr(new_shape)))


@known("Squeeze")
def _squeeze_known(ctx, node, ins):
    dims = tuple(node.attr("squeeze_dims", []) or [])
    return Known(np.squeeze(ins[0].value, axis=dims or None), ins[0].dtype)


@device("Transpose")
def _transpose(ctx, node, ins):
    x = ctx.device(ins[0])
    perm = ctx.const_ints(ins[1], "the permutation")
    if perm == list(range(len(perm))):
        return x
    return ctx.emit(relax.op.permute_dims(x.expr, perm))


@known("Transpose")
def _transpose_known(ctx, node, ins):
    return Known(np.transpose(ins[0].value, ctx.const_ints(ins[1], "the permutation")), ins[0].dtype)


# ---------------------------------------------------------------------------------------- concat / pack
@device("ConcatV2", "Concat")
def _concat(ctx, node, ins):
    if node.op == "Concat":
        axis_v, parts = ins[0], ins[1:]
    else:
        axis_v, parts = ins[-1], ins[:-1]
    (axis,) = ctx.const_ints(axis_v, "the concat axis")
    devs = [ctx.device(p) for p in parts]
    rank = len(devs[0].shape)
    axis = _norm_axis(ctx, axis, rank)
    # empty pieces add nothing (tf.sparse.expand_dims concatenates a [n, 0] slice); left in, their zero-extent
    # kernels break CUDA scheduling
    nonempty = [d for d in devs if not (len(d.shape) == rank and prove_equal(d.shape[axis], 0))]
    devs = nonempty or devs[:1]
    devs = ctx.unify(devs, [i for i in range(rank) if i != axis])
    if len(devs) == 1:
        return devs[0]
    return ctx.emit(relax.op.concat([d.expr for d in devs], axis=axis))


@known("ConcatV2", "Concat")
def _concat_known(ctx, node, ins):
    axis_v, parts = (ins[0], ins[1:]) if node.op == "Concat" else (ins[-1], ins[:-1])
    (axis,) = ctx.const_ints(axis_v, "the concat axis")
    arrs = [p.value for p in parts]
    obj = any(a.dtype == object for a in arrs)
    return Known(np.concatenate([a.astype(object) if obj else a for a in arrs], axis=axis), parts[0].dtype)


@device("Pack")
def _pack(ctx, node, ins):
    axis = int(node.attr("axis", 0))
    devs = ctx.unify([ctx.device(v) for v in ins])
    rank = len(devs[0].shape) + 1
    axis = axis % rank
    return ctx.emit(relax.op.concat([relax.op.expand_dims(d.expr, axis) for d in devs], axis=axis)
                    if len(devs) > 1 else relax.op.expand_dims(devs[0].expr, axis))


@known("Pack")
def _pack_known(ctx, node, ins):
    axis = int(node.attr("axis", 0))
    arrs = [np.asarray(v.value) for v in ins]
    obj = any(a.dtype == object for a in arrs)
    return Known(np.stack([a.astype(object) if obj else a for a in arrs], axis=axis), ins[0].dtype)


@device("Unpack")
def _unpack(ctx, node, ins):
    x = ctx.device(ins[0])
    axis = int(node.attr("axis", 0)) % len(x.shape)
    num = int(node.attr("num"))
    outs = []
    rest = [s for i, s in enumerate(x.shape) if i != axis]
    for i in range(num):
        part = ctx.emit(relax.op.strided_slice(x.expr, [axis], [i], [i + 1]))
        outs.append(ctx.emit(relax.op.reshape(part.expr, shape_expr(rest))))
    return outs


@known("Unpack")
def _unpack_known(ctx, node, ins):
    axis = int(node.attr("axis", 0))
    arr = ins[0].value
    # (np.take of a 1-D object array gives the entry itself, e.g. a bare tirx Var: kept a 0-d array)
    return [Known(np.asarray(np.take(arr, i, axis=axis), dtype=arr.dtype), ins[0].dtype)
            for i in range(arr.shape[axis])]


# -------------------------------------------------------------------------------------------------- tile
@device("Tile")
def _tile(ctx, node, ins):
    x = ctx.device(ins[0])
    mult = ints_or_sync(ctx, ins[1], "the multiples")
    if len(mult) != len(x.shape):
        ctx.fail(f"multiples {mult} do not match rank {len(x.shape)}")
    if all(is_const_int(m) and int(m) == 1 for m in mult):
        return x
    # tile == broadcast over an interleaved [m0, d0, m1, d1, ...] view, then merge pairs.
    inter = []
    bshape = []
    for m, d in zip(mult, x.shape):
        inter += [1, d]
        bshape += [m, d]
    y = ctx.emit(relax.op.reshape(x.expr, shape_expr(inter)))
    y = ctx.emit(relax.op.broadcast_to(y.expr, shape_expr(bshape)))
    return ctx.emit(relax.op.reshape(y.expr, shape_expr([_prod([m, d]) for m, d in zip(mult, x.shape)])))


@known("Tile")
def _tile_known(ctx, node, ins):
    mult = ctx.known_ints(ins[1], "the multiples")
    if not all(is_const_int(m) for m in mult):
        raise NotFoldable
    return Known(np.tile(ins[0].value, [int(m) for m in mult]), ins[0].dtype)


# -------------------------------------------------------------------------------------------- Fill / Range
@device("Fill")
def _fill(ctx, node, ins):
    dims = ctx.known_ints(ins[0], "the dims")
    dtype = node.attr("T")
    return ctx.emit(relax.op.full(shape_expr(dims), ctx.scalar(ins[1], dtype), dtype))


@known("Fill")
def _fill_known(ctx, node, ins):
    dims = ctx.known_ints(ins[0], "the dims")
    if not all(is_const_int(d) for d in dims) or _prod(dims) > _MAX_FOLD_ELEMENTS:
        raise NotFoldable
    return Known(np.full([int(d) for d in dims], ins[1].value.reshape(()), dtype=ins[1].value.dtype),
                 ins[1].dtype)


def ints_or_sync(ctx, v, what: str) -> list:
    """Known ints (constants / symbolic sizes) as they are; a device int vector of static length is brought to the
    host as fresh symbolic sizes instead (one device->host sync: ragged code's Range(0, longest row) and
    Tile(x, [1, longest row]))."""
    if isinstance(v, Known):
        return ctx.known_ints(v, what)
    dev = ctx.device(v)
    if len(dev.shape) > 1 or not all(is_const_int(d) for d in dev.shape):
        ctx.fail(f"{what} must be a vector of known length")
    n = int(dev.shape[0]) if dev.shape else 1
    flat = ctx.emit(relax.op.reshape(relax.op.astype(dev.expr, "int64"), shape_expr([n])))
    shape = ctx.bb.emit(relax.op.tensor_to_shape(flat.expr))
    base = ctx.node.name.rsplit("/", 1)[-1] if ctx.node else "d"
    syms = [ctx.symbols.fresh(f"{base}_{what.split()[-1]}{i}", f"data-dependent size at {ctx.node.name}")
            for i in range(n)]
    ctx.bb.match_cast(shape, relax.ShapeType(syms))
    return syms


@device("Range")
def _range(ctx, node, ins):
    start, delta = ctx.known_ints(ins[0], "Range's start")[0], ctx.known_ints(ins[2], "Range's delta")[0]
    limit = ints_or_sync(ctx, ins[1], "Range's limit")[0]  # ragged code: Range(0, longest row)
    dtype = node.attr("Tidx", "int32")
    if not dtype.startswith("int"):
        ctx.fail("Range over floats with symbolic bounds")
    if is_const_int(delta) and int(delta) == 0:
        ctx.fail("Range with delta 0")
    return ctx.emit(relax.op.arange(as_expr(start), as_expr(limit), as_expr(delta), dtype))


@known("Range")
def _range_known(ctx, node, ins):
    vals = [ctx.known_ints(v, "Range's bounds")[0] for v in ins]
    if not all(is_const_int(v) for v in vals):
        raise NotFoldable
    dtype = node.attr("Tidx", "int32")
    return Known(np.arange(*[int(v) for v in vals], dtype=dtype), dtype)


# ------------------------------------------------------------------------------------- Slice / StridedSlice
def _clamp(v, lo, hi):
    return simplify(tirx.min(tirx.max(as_expr(v), as_expr(lo)), as_expr(hi)))


def _slice_bounds(b, e, s, dim):
    """TF/numpy semantics of one slice on a dim of size `dim` (int or symbolic) -> (begin, end, size), with
    begin/end clamped into the dim: [0, dim] for positive strides, [-1, dim - 1] for negative ones."""
    def norm(v, lo, hi):
        if is_const_int(v) and int(v) < 0:
            v = simplify(as_expr(v) + as_expr(dim))
        return _clamp(v, lo, hi)

    if s > 0:
        b = 0 if b is None else norm(b, 0, dim)
        e = dim if e is None else norm(e, 0, dim)
        size = simplify(tirx.max(as_expr(0), tirx.floordiv(as_expr(e) - as_expr(b) + as_expr(s - 1), as_expr(s))))
        return b, e, size
    last = simplify(as_expr(dim) - 1)
    b = last if b is None else norm(b, -1, last)
    e = -1 if e is None else norm(e, -1, last)
    size = simplify(tirx.max(as_expr(0), tirx.floordiv(as_expr(b) - as_expr(e) + as_expr(-s - 1), as_expr(-s))))
    return b, e, size


def strided_slice_spec(ctx, node, rank: int, begin, end, strides):
    """Expand TF's sparse slice spec into per-dim slices plus the output layout.

    Returns (slices, layout): slices[d] = (begin|None, end|None, stride, shrink) for each input dim d;
    layout = output dims as ("dim", d) or ("new",).
    """
    bm, em = int(node.attr("begin_mask", 0)), int(node.attr("end_mask", 0))
    elm, nam, sam = (int(node.attr(k, 0)) for k in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask"))
    n = len(begin)
    real = sum(1 for i in range(n) if not (elm >> i & 1) and not (nam >> i & 1))
    slices, layout, d = [], [], 0
    seen_ellipsis = False
    for i in range(n):
        if elm >> i & 1 and not seen_ellipsis:
            seen_ellipsis = True
            for _ in range(rank - real):
                slices.append((None, None, 1, False))
                layout.append(("dim", d))
                d += 1
        elif nam >> i & 1:
            layout.append(("new",))
        else:
            if d >= rank:
                ctx.fail(f"the slice spec has more entries than the input has dims ({rank})")
            s = int(strides[i])
            if s == 0:
                ctx.fail("stride 0")
            shrink = bool(sam >> i & 1)
            b = None if (bm >> i & 1) and not shrink else begin[i]
            e = None if (em >> i & 1) and not shrink else end[i]
            slices.append((b, e, s, shrink))
            if not shrink:
                layout.append(("dim", d))
            d += 1
    while d < rank:
        slices.append((None, None, 1, False))
        layout.append(("dim", d))
        d += 1
    return slices, layout


@device("StridedSlice")
def _strided_slice(ctx, node, ins):
    x = ctx.device(ins[0])
    begin, end = ctx.known_ints(ins[1], "begin"), ctx.known_ints(ins[2], "end")
    strides = ctx.const_ints(ins[3], "strides")
    slices, layout = strided_slice_spec(ctx, node, len(x.shape), begin, end, strides)
    axes, bs, es, ss, sizes = [], [], [], [], []
    y = x
    for d, (b, e, s, shrink) in enumerate(slices):
        dim = x.shape[d]
        if shrink:
            b = b + dim if is_const_int(b) and int(b) < 0 else b
            b, e, s, size = b, simplify(as_expr(b) + 1), 1, 1
        else:
            b, e, size = _slice_bounds(b, e, s, dim)
        sizes.append(size)
        if s < 0:  # reversed: gather b, b-|s|, ... (begin/end clamped above, so no wrap-around)
            steps = ctx.match_shape(ctx.emit(relax.op.arange(0, as_expr(size), 1, "int64")), [size])
            start = ctx.device(Known(np.array(b, dtype=object), "int64"))
            idx = ctx.emit(relax.op.subtract(start.expr, relax.op.multiply(steps.expr, relax.const(-s, "int64"))))
            y = ctx.emit(relax.op.take(y.expr, idx.expr, axis=d, mode="clip"))
        elif not (prove_equal(b, 0) and prove_equal(size, dim) and s == 1):
            axes.append(d)
            bs.append(as_expr(b))
            es.append(as_expr(e))
            ss.append(as_expr(s))
    if axes:
        y = ctx.emit(relax.op.strided_slice(y.expr, axes, bs, es, ss, assume_inbound=True))
    y = ctx.match_shape(y, sizes)
    out_shape = [1 if item[0] == "new" else sizes[item[1]] for item in layout]
    if len(out_shape) == len(y.shape) and all(prove_equal(a, b) for a, b in zip(out_shape, y.shape)):
        return y
    return ctx.emit(relax.op.reshape(y.expr, shape_expr(out_shape)))


@known("StridedSlice")
def _strided_slice_known(ctx, node, ins):
    arr = ins[0].value
    begin, end = ctx.const_ints(ins[1], "begin"), ctx.const_ints(ins[2], "end")
    strides = ctx.const_ints(ins[3], "strides")
    slices, layout = strided_slice_spec(ctx, node, arr.ndim, begin, end, strides)
    index = []
    for b, e, s, shrink in slices:
        index.append(b if shrink else slice(b, e, s))
    out = np.asarray(arr[tuple(index)])
    kept = iter(out.shape)  # the sliced dims in order; new axes are inserted as 1
    final = [1 if item[0] == "new" else next(kept) for item in layout]
    return Known(out.reshape(final), ins[0].dtype)


@device("Slice")
def _slice(ctx, node, ins):
    x = ctx.device(ins[0])
    if not isinstance(ins[1], Known) or not isinstance(ins[2], Known):
        return _dynamic_slice(ctx, x, ins[1], ins[2])
    begin, size = ctx.known_ints(ins[1], "begin"), ctx.known_ints(ins[2], "size")
    axes, bs, es, sizes = [], [], [], []
    for d, (b, sz) in enumerate(zip(begin, size)):
        dim = x.shape[d]
        sz = simplify(as_expr(dim) - as_expr(b)) if is_const_int(sz) and int(sz) == -1 else sz
        # TF: 0 <= begin and begin + size <= dim, else InvalidArgumentError (a begin fed as a small int vector is
        # a symbol: checked on the host before launch)
        for cond in (as_expr(b) >= 0, as_expr(sz) >= 0, as_expr(b) + as_expr(sz) <= as_expr(dim)):
            if not analyzer().can_prove(cond):
                ctx.assume(cond, f"{ctx.label()}: begin {b} and size {sz} do not fit dimension {d} of size {dim}")
        sizes.append(sz)
        if not (prove_equal(b, 0) and prove_equal(sz, dim)):
            axes.append(d)
            bs.append(as_expr(b))
            es.append(as_expr(simplify(as_expr(b) + as_expr(sz))))
    if not axes:
        return x
    y = ctx.emit(relax.op.strided_slice(x.expr, axes, bs, es, assume_inbound=True))
    return ctx.match_shape(y, sizes)


def _dynamic_slice(ctx, x: Device, begin_v, size_v) -> Device:
    """Slice whose begin (or size) is computed at run time: per dim, a checked gather of begin + arange(size),
    so a begin out of range raises TF's InvalidArgumentError. A size of -1 there (up to the end) is a
    data-dependent size: one device->host sync."""
    from ...ops import defs

    rank = len(x.shape)
    b = ctx.device(begin_v)
    b = ctx.emit(relax.op.astype(b.expr, "int64")) if b.dtype != "int64" else b
    b = ctx.match_shape(b, [rank])
    sizes = ctx.known_ints(size_v, "size") if isinstance(size_v, Known) else ints_or_sync(ctx, size_v, "Slice's size")
    if len(sizes) != rank:
        ctx.fail(f"size has {len(sizes)} entries for a rank-{rank} input")
    to_end = [d for d in range(rank) if is_const_int(sizes[d]) and int(sizes[d]) == -1]
    if to_end:  # dim - begin, learned on the host
        dims = ctx.device(Known(np.array([x.shape[d] for d in to_end], dtype=object), "int64"))
        begins = ctx.emit(relax.op.take(b.expr, relax.const(np.array(to_end, dtype="int64")), axis=0))
        rest = Device(ctx.emit(relax.op.subtract(dims.expr, begins.expr)).expr, "int64", [len(to_end)])
        for d, sz in zip(to_end, ints_or_sync(ctx, rest, "Slice's size")):
            sizes[d] = sz
    y = x
    for d in range(rank):
        bd = ctx.emit(relax.op.reshape(relax.op.strided_slice(b.expr, [0], [d], [d + 1]), []))
        idx = ctx.emit(relax.op.add(relax.op.arange(0, as_expr(sizes[d]), 1, "int64"), bd.expr))
        y = ctx.emit(defs.gather(y.expr, idx.expr, d, check=True, label=ctx.label()),
                     shape=[sizes[i] if i == d else y.shape[i] for i in range(rank)])
    return y


@known("Select", "SelectV2")
def _select_known(ctx, node, ins):
    """A select between known values on a known condition (tf.sparse.expand_dims' axis normalization)."""
    cond, a, b = ins
    if not cond.concrete or cond.dtype != "bool":
        raise NotFoldable
    c = cond.numpy()
    if node.op == "Select" and c.ndim == 1 and a.value.ndim > 1:
        c = c.reshape([-1] + [1] * (a.value.ndim - 1))
    obj = a.value.dtype == object or b.value.dtype == object
    out = np.where(c, a.value.astype(object) if obj else a.value, b.value.astype(object) if obj else b.value)
    if obj and a.dtype != "string":
        out = np.array([simplify(v) if is_prim(v) else v for v in out.reshape(-1)], dtype=object).reshape(out.shape)
    return Known(out, a.dtype)


# ------------------------------------------------------------------------------------------------- Split
def _split(ctx, x: Device, axis: int, sizes: list) -> list:
    axis = _norm_axis(ctx, axis, len(x.shape))
    outs, start = [], 0
    for sz in sizes:
        end = simplify(as_expr(start) + as_expr(sz))
        part = ctx.emit(relax.op.strided_slice(x.expr, [axis], [as_expr(start)], [as_expr(end)],
                                               assume_inbound=True))
        outs.append(ctx.match_shape(part, [sz if i == axis else s for i, s in enumerate(x.shape)]))
        start = end
    return outs


@device("Split")
def _split_even(ctx, node, ins):
    """Split(axis, value) into num_split equal parts (attention heads, CIN's feature maps)."""
    (axis,) = ctx.const_ints(ins[0], "the split axis")
    x = ctx.device(ins[1])
    n = int(node.attr("num_split"))
    axis = _norm_axis(ctx, axis, len(x.shape))
    dim = x.shape[axis]
    if is_const_int(dim) and int(dim) % n:
        ctx.fail(f"dimension {axis} of size {dim} is not divisible by num_split {n}")
    if not is_const_int(dim):
        ctx.assume(tirx.floormod(as_expr(dim), n) == 0,
                   f"{ctx.label()}: dimension {axis} must be divisible by num_split {n}")
    return _split(ctx, x, axis, [simplify(tirx.floordiv(as_expr(dim), n))] * n)


@device("SplitV")
def _split_v(ctx, node, ins):
    """SplitV(value, size_splits, axis): one size may be -1 (the rest)."""
    x = ctx.device(ins[0])
    sizes = ctx.known_ints(ins[1], "size_splits")
    (axis,) = ctx.const_ints(ins[2], "the split axis")
    axis = _norm_axis(ctx, axis, len(x.shape))
    dim = x.shape[axis]
    rest = [i for i, s in enumerate(sizes) if is_const_int(s) and int(s) == -1]
    if len(rest) > 1:
        ctx.fail("more than one -1 in size_splits")
    if rest:
        sizes[rest[0]] = simplify(as_expr(dim) - as_expr(sum_expr(sizes, rest[0])))
    total = sum_expr(sizes)
    if not prove_equal(total, dim):
        if is_const_int(total) and is_const_int(dim):
            ctx.fail(f"size_splits {sizes} do not add up to the dimension's size {dim}")
        ctx.assume(as_expr(total) == as_expr(dim), f"{ctx.label()}: size_splits must add up to dimension {axis}")
    return _split(ctx, x, axis, sizes)


def sum_expr(vals, skip: int | None = None):
    out = 0
    for i, v in enumerate(vals):
        if i != skip:
            out = out + v
    return simplify(out) if is_prim(out) else out


# ------------------------------------------------------------------------------------------------ Bincount
@device("DenseBincount", "Bincount")
def _bincount(ctx, node, ins):
    """Counts (or weight sums) of each value in [0, size) per row of a 1-D / 2-D input; values >= size are
    ignored and a negative one is TF's InvalidArgumentError (Keras' CategoryEncoding multi_hot / count)."""
    if node.op == "Bincount":
        arr, size_v, weights = ins
        binary = False
        dtype = node.attr("T")
    else:
        arr, size_v, weights = ins
        binary = bool(node.attr("binary_output", False))
        dtype = node.attr("T")
    (size,) = ctx.known_ints(size_v, "the size")  # a constant, or a size symbol (fed at run time)
    if is_const_int(size) and int(size) < 0:
        ctx.fail(f"size ({int(size)}) must be non-negative")
    x = ctx.device(arr)
    if len(x.shape) not in (1, 2):
        ctx.fail(f"input of rank {len(x.shape)} (1 or 2 is supported)")
    w = None
    if not (isinstance(weights, Known) and weights.concrete and weights.numpy().size == 0):
        w = ctx.device(weights)
        w = ctx.match_shape(w, x.shape)
    return bincount_rows(ctx, x, size, w, binary, dtype, "Input arr must be non-negative!")


def bincount_rows(ctx, x, size, w, binary: bool, dtype: str, negative_message: str, rows=None, batch=None):
    """Per row of x (1-D: the whole vector) the counts of each value in [0, size) (w: their weight sums; binary:
    1 where present), values >= size ignored; a negative value is TF's InvalidArgumentError. rows: the row of each
    value of a 1-D x (a SparseTensor's), `batch` rows in all (checked to lie in [0, batch))."""
    size_t = ctx.size_scalar(size, x.dtype)
    zero = relax.const(0, x.dtype)
    nonneg = ctx.emit(relax.op.greater_equal(x.expr, zero))
    keep = ctx.emit(relax.op.logical_and(nonneg.expr, relax.op.less(x.expr, size_t)))
    idx = ctx.emit(relax.op.astype(relax.op.where(keep.expr, x.expr, size_t), "int64"))
    ones = relax.op.ones(shape_expr(x.shape), dtype) if (w is None or binary) else w.expr
    lead = list(x.shape[:-1]) if rows is None else [batch]
    axis = len(lead)
    base = relax.op.zeros(shape_expr(lead + [simplify(size + 1)]), dtype)
    if rows is None:
        counts = relax.op.scatter_elements(base, idx.expr, ones, axis, "add")
    else:
        n = x.shape[0]
        pairs = ctx.emit(relax.op.concat([relax.op.expand_dims(relax.op.astype(rows.expr, "int64"), [1]),
                                          relax.op.expand_dims(idx.expr, [1])], axis=1), shape=[n, 2])
        pairs = checked_nd_indices(ctx, pairs, [batch, simplify(size + 1)], f"a row index outside [0, {batch})")
        counts = relax.op.scatter_nd(base, pairs.expr, ones, "add")
    counts = ctx.emit(counts, shape=lead + [simplify(size + 1)])
    out = ctx.emit(relax.op.strided_slice(counts.expr, [axis], [0], [as_expr(size)]), shape=lead + [size])
    if binary:
        out = ctx.emit(relax.op.astype(relax.op.greater(out.expr, relax.const(0, dtype)), dtype))
    return ctx.check(out, all_true(ctx, nonneg.expr), negative_message)


def all_true(ctx, cond) -> Device:
    """Whether every entry of the bool tensor `cond` holds (true for an empty one): no relax all(), so the false
    entries are counted (0 over an empty tensor: backend/empty_reductions)."""
    bad = relax.op.sum(relax.op.astype(relax.op.logical_not(cond), "int64"))
    return ctx.emit(relax.op.equal(bad, relax.const(0, "int64")))


@known("Slice")
def _slice_known(ctx, node, ins):
    arr = ins[0].value
    begin, size = ctx.const_ints(ins[1], "begin"), ctx.const_ints(ins[2], "size")
    index = tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))
    return Known(arr[index], ins[0].dtype)


# ------------------------------------------------------------------------------------------------ gathers
@device("GatherV2", "Gather")
def _gather(ctx, node, ins):
    from ...ops import defs

    params, indices = ins[0], ins[1]
    axis = ctx.const_ints(ins[2], "the axis")[0] if node.op == "GatherV2" else 0
    if int(node.attr("batch_dims", 0)) != 0:
        return _batched_gather(ctx, node, params, indices, axis)
    p = ctx.device(params, table=True)
    axis = _norm_axis(ctx, axis, len(p.shape))
    if isinstance(indices, Known) and indices.concrete:
        idx = indices.numpy()
        limit = p.shape[axis]
        if idx.size and is_const_int(limit) and (idx.min() < 0 or idx.max() >= int(limit)):
            bad = idx[(idx < 0) | (idx >= int(limit))].reshape(-1)[0]
            ctx.fail(f"constant index {bad} is not in [0, {limit})")
    i = ctx.device(indices)
    return ctx.emit(defs.gather(p.expr, i.expr, axis, check=True, label=ctx.label()))


def _batched_gather(ctx, node, params, indices, axis: int):
    """tf.gather(params, indices, batch_dims=bd, axis=bd): out[b.., k.., rest] = params[b.., indices[b.., k..],
    rest] (picking per example, e.g. candidates by index): a GatherNd over (b.., index) tuples, whose lowering
    checks the indices as TF-CPU does."""
    p, i = ctx.device(params), ctx.device(indices)
    bd = int(node.attr("batch_dims", 0))
    bd = bd + len(i.shape) if bd < 0 else bd
    axis = _norm_axis(ctx, axis, len(p.shape))
    if axis != bd or not 0 < bd < len(p.shape) or bd > len(i.shape):
        ctx.fail(f"batch_dims {bd} with axis {axis} (axis == batch_dims is supported)")
    i = ctx.match_shape(i, list(p.shape[:bd]) + list(i.shape[bd:]))
    idx = ctx.emit(relax.op.astype(i.expr, "int64")) if i.dtype != "int64" else i
    coords = []
    for d in range(bd):
        grid = relax.op.arange(0, as_expr(p.shape[d]), 1, "int64")
        grid = relax.op.reshape(grid, shape_expr([p.shape[d] if k == d else 1 for k in range(len(i.shape))]))
        coords.append(relax.op.expand_dims(relax.op.broadcast_to(grid, shape_expr(list(i.shape))), [-1]))
    coords.append(relax.op.expand_dims(idx.expr, [-1]))
    tuples = ctx.emit(relax.op.concat(coords, axis=-1), shape=list(i.shape) + [bd + 1])
    return ctx.emit(relax.op.gather_nd(p.expr, tuples.expr), shape=list(i.shape) + list(p.shape[bd + 1:]))


@known("GatherV2", "Gather")
def _gather_known(ctx, node, ins):
    axis = ctx.const_ints(ins[2], "the axis")[0] if node.op == "GatherV2" else 0
    if not ins[1].concrete:
        raise NotFoldable
    idx = ins[1].numpy()
    arr = ins[0].value
    if idx.size and (idx.min() < -arr.shape[axis] or idx.max() >= arr.shape[axis] or idx.min() < 0):
        ctx.fail(f"index {idx.reshape(-1).tolist()} out of range for a dim of size {arr.shape[axis]}")
    if arr.size > _MAX_FOLD_ELEMENTS:
        raise NotFoldable
    return Known(np.take(arr, idx, axis=axis), ins[0].dtype)


@device("GatherNd")
def _gather_nd(ctx, node, ins):
    p, i = ctx.device(ins[0]), ctx.device(ins[1])
    idx = i.expr if i.dtype == "int64" else relax.op.astype(i.expr, "int64")
    return ctx.emit(relax.op.gather_nd(p.expr, idx))


@known("GatherNd")
def _gather_nd_known(ctx, node, ins):
    if not ins[1].concrete:
        raise NotFoldable
    idx = ins[1].numpy()
    arr = ins[0].value
    return Known(arr[tuple(np.moveaxis(idx, -1, 0))], ins[0].dtype)


def checked_nd_indices(ctx, idx: Device, dims: list, message: str) -> Device:
    """[n, k] indices into the leading k of `dims`, gated on every one being inside them (TF's
    InvalidArgumentError `message` otherwise; a gate, so nothing reads an index out of bounds)."""
    k = int(idx.shape[1])
    limit = ctx.device(Known(np.array(dims[:k], dtype=object), idx.dtype))
    inside = relax.op.logical_and(relax.op.greater_equal(idx.expr, relax.const(0, idx.dtype)),
                                  relax.op.less(idx.expr, limit.expr))
    return ctx.check(idx, all_true(ctx, inside), message)


_SCATTER_ND = {"ScatterNd": "add", "TensorScatterUpdate": "update", "TensorScatterAdd": "add",
               "TensorScatterSub": "add", "TensorScatterMax": "max", "TensorScatterMin": "min"}


@device(*_SCATTER_ND)
def _scatter_nd(ctx, node, ins):
    """tf.scatter_nd (into zeros: repeated indices add up) and tf.tensor_scatter_nd_update / _add / _sub / _max /
    _min into a tensor: indices [.., k] address the leading k dims, updates [.., rest of the dims]. Applied in
    the order of the indices as TF-CPU's kernel does (a repeated index of an update: the last one wins); an index
    outside the shape is TF-CPU's InvalidArgumentError (checked before anything is written)."""
    if node.op == "ScatterNd":
        indices, updates = ctx.device(ins[0]), ctx.device(ins[1])
        dims = ctx.known_ints(ins[2], "the output shape")
        base = ctx.emit(relax.op.zeros(shape_expr(dims), updates.dtype), shape=list(dims))
    else:
        base, indices, updates = ctx.device(ins[0]), ctx.device(ins[1]), ctx.device(ins[2])
        dims = list(base.shape)
    if not indices.shape or not is_const_int(indices.shape[-1]) or not 1 <= int(indices.shape[-1]) <= len(dims):
        ctx.fail(f"indices of shape {indices.shape} into a tensor of rank {len(dims)} (the last dim, the index "
                 "depth, must be a constant in [1, rank])")
    k = int(indices.shape[-1])
    lead = list(indices.shape[:-1])
    n = _prod(lead)
    updates = ctx.match_shape(updates, lead + list(dims[k:]))
    idx = ctx.emit(relax.op.reshape(relax.op.astype(indices.expr, "int64"), shape_expr([n, k])), shape=[n, k])
    idx = checked_nd_indices(ctx, idx, dims, f"indices do not index into shape {list(dims)}")
    upd = relax.op.reshape(updates.expr, shape_expr([n] + list(dims[k:])))
    if node.op == "TensorScatterSub":
        upd = relax.op.negative(upd)
    return ctx.emit(relax.op.scatter_nd(base.expr, idx.expr, upd, _SCATTER_ND[node.op]), shape=list(dims))


# --------------------------------------------------------------------------------------------- reductions
_REDUCE = {"Sum": relax.op.sum, "Prod": relax.op.prod, "Max": relax.op.max, "Min": relax.op.min,
           "Mean": relax.op.mean}


@device(*_REDUCE, "All", "Any")
def _reduce(ctx, node, ins):
    x = ctx.device(ins[0])
    axes = [_norm_axis(ctx, a, len(x.shape)) for a in ctx.const_ints(ins[1], "the reduction axes")]
    keep = bool(node.attr("keep_dims", False))
    if not axes:
        return x
    if node.op in ("All", "Any"):
        as_int = relax.op.astype(x.expr, "int32")
        red = (relax.op.min if node.op == "All" else relax.op.max)(as_int, axes, keep)
        return ctx.emit(relax.op.astype(red, "bool"))
    red = ctx.emit(_REDUCE[node.op](x.expr, axes, keep))
    if node.op in ("Max", "Min") and x.dtype.startswith("float"):  # TF's Max / Min of a NaN is NaN
        # (a sum of the NaN flags: their max over an empty axis is INT_MIN, which read as "a NaN": an empty
        # reduction gave NaN where TF gives -inf / inf)
        nan = relax.op.sum(relax.op.astype(relax.op.isnan(x.expr), "int32"), axes, keep)
        red = ctx.emit(relax.op.where(relax.op.greater(nan, relax.const(0, "int32")), relax.const(np.nan, x.dtype),
                                      red.expr))
    return red


@device("ArgMax", "ArgMin")
def _arg_max_min(ctx, node, ins):
    """The first index of the largest / smallest value along an axis (TF's ties too); an empty axis is TF's
    'Reduction axis ... is empty' error (checked on the host before launch where its size is a feed's)."""
    x = ctx.device(ins[0])
    (axis,) = ctx.const_ints(ins[1], "the dimension")
    axis = _norm_axis(ctx, axis, len(x.shape))
    n = x.shape[axis]
    ctx.assume(as_expr(n) >= 1 if not is_const_int(n) else tirx.const(int(n) >= 1, "bool"),
               f"Reduction axis {axis} is empty in shape {list(x.shape)}")
    out = ctx.emit(_eigen_arg_reduce(x.expr, x.dtype, axis, node.op == "ArgMax"))
    dst = node.attr("output_type", "int64")
    return ctx.emit(relax.op.astype(out.expr, dst)) if dst != "int64" else out


def _eigen_arg_reduce(x, dtype: str, axis: int, largest: bool):
    """TF-CPU's ArgMax / ArgMin (Eigen's arg reducer, in order from the pair (0, lowest) / (0, highest)): NaN is
    skipped, and a value must beat the dtype's lowest (highest) to be taken, so a row of -inf, NaN or lowest gives 0;
    else the first index of the extreme. TVM's own argmax gave -1 for a row of -inf and let NaN win: [-inf, NaN,
    -inf] gave 1, [inf, inf, NaN] gave 2 (TF: 0, 0). Here: the extreme over the values that are not NaN, then
    the first index holding it (argmax of a 0/1 mask: its first 1, or 0)."""
    floating = dtype.startswith(("float", "bfloat"))
    if floating:
        bound = float(np.finfo(dtype).max) if dtype != "bfloat16" else 3.3895313892515355e38
        skip = relax.const(-np.inf if largest else np.inf, dtype)
        clean = relax.op.where(relax.op.isnan(x), skip, x)
    else:
        clean = x
    ext = (relax.op.max if largest else relax.op.min)(clean, [axis], True)
    hit = relax.op.equal(x, ext)
    if floating:  # the extreme must beat the reducer's start value (lowest / highest)
        beats = (relax.op.greater(ext, relax.const(-bound, dtype)) if largest else
                 relax.op.less(ext, relax.const(bound, dtype)))
        hit = relax.op.logical_and(hit, beats)
    return relax.op.argmax(relax.op.astype(hit, "int32"), axis, False)


@device("ReverseV2")
def _reverse(ctx, node, ins):
    """tf.reverse over a list of axes."""
    x = ctx.device(ins[0])
    out = x
    for a in sorted({_norm_axis(ctx, a, len(x.shape)) for a in ctx.const_ints(ins[1], "the axes")}):
        out = ctx.emit(relax.op.flip(out.expr, a), shape=list(x.shape))
    return out


@device("ReverseSequence")
def _reverse_sequence(ctx, node, ins):
    """tf.reverse_sequence: along seq_dim, the first seq_lengths[b] entries of each slice b of batch_dim reversed,
    the rest kept (a gather_elements by a [.., T, ..] source index); a length < 0 or past the dimension is TF's
    InvalidArgumentError."""
    x, lengths = ctx.device(ins[0]), ctx.device(ins[1])
    rank = len(x.shape)
    seq, batch = (_norm_axis(ctx, int(node.attr(k, 0)), rank) for k in ("seq_dim", "batch_dim"))
    if seq == batch:
        ctx.fail(f"seq_dim == batch_dim == {seq}")
    lengths = ctx.match_shape(lengths, [x.shape[batch]])
    n = x.shape[seq]
    lens = ctx.emit(relax.op.astype(lengths.expr, "int64")) if lengths.dtype != "int64" else lengths
    lens_b = relax.op.reshape(lens.expr, shape_expr([x.shape[batch] if d == batch else 1 for d in range(rank)]))
    pos = relax.op.reshape(relax.op.arange(0, as_expr(n), 1, "int64"),
                           shape_expr([n if d == seq else 1 for d in range(rank)]))
    flipped = relax.op.subtract(relax.op.subtract(lens_b, pos), relax.const(1, "int64"))
    src = relax.op.where(relax.op.less(pos, lens_b), flipped, pos)
    src = ctx.emit(relax.op.broadcast_to(src, shape_expr(x.shape)), shape=list(x.shape))
    out = ctx.emit(relax.op.gather_elements(x.expr, src.expr, seq), shape=list(x.shape))
    n_t = ctx.size_scalar(n, "int64")
    ok = relax.op.logical_and(relax.op.greater_equal(lens.expr, relax.const(0, "int64")),
                              relax.op.less_equal(lens.expr, n_t))
    return ctx.check(out, all_true(ctx, ok), f"seq_lens must be in [0, input.dims({seq}) = {n}] (TF: seq_lens(i) > "
                                             f"input.dims({seq}) or < 0)")


@known("Sum", "Prod", "Max", "Min")
def _reduce_known(ctx, node, ins):
    arr = ins[0].value
    axes = tuple(ctx.const_ints(ins[1], "the reduction axes"))
    keep = bool(node.attr("keep_dims", False))
    if arr.dtype != object:
        fn = {"Sum": np.sum, "Prod": np.prod, "Max": np.max, "Min": np.min}[node.op]
        return Known(np.asarray(fn(arr, axis=axes, keepdims=keep)).astype(arr.dtype), ins[0].dtype)
    if node.op in ("Max", "Min"):
        raise NotFoldable
    fn = np.sum if node.op == "Sum" else np.prod
    res = np.asarray(fn(arr, axis=axes, keepdims=keep), dtype=object)
    flat = [simplify(v) if is_prim(v) else int(v) for v in res.reshape(-1)]
    return Known(np.array(flat, dtype=object).reshape(res.shape), ins[0].dtype)


@device("BroadcastTo")
def _broadcast_to(ctx, node, ins):
    """tf.broadcast_to. A dim of the input that is neither 1 nor provably the target's (the user's rows against the
    items': tf.broadcast_to(user, tf.shape(items))) is 1 or the target's only at run time; Relax's broadcast_to
    took it for the target's and read a one-row input past its end (a silent wrong answer), and answered for a
    size that is neither. Such a dim is a gather of row 0 where it is 1, else of row i; any other size is TF's
    error, checked before launch (in the module where the size is learnt while it runs)."""
    dims = ctx.known_ints(ins[1], "the target shape")
    x = ctx.device(ins[0])
    off = len(dims) - len(x.shape)
    if off < 0:
        ctx.fail(f"the input's rank {len(x.shape)} is greater than the target shape's {len(dims)} (TF's error)")
    for i, d in enumerate(list(x.shape)):
        t = dims[off + i]
        if (is_const_int(d) and int(d) == 1) or prove_equal(d, t):
            continue
        if is_const_int(d) and is_const_int(t):
            ctx.fail(f"dim {i} of the input is {int(d)}, neither 1 nor the target's {int(t)} (TF's error)")
        message = (f"Unable to broadcast tensor of shape {[str(s) for s in x.shape]} to tensor of shape "
                   f"{[str(s) for s in dims]}: dim {i} is neither 1 nor the target's")
        n = ctx.size_scalar(d, "int64")
        keep = relax.op.astype(relax.op.not_equal(n, relax.const(1, "int64")), "int64")
        idx = relax.op.multiply(relax.op.arange(0, as_expr(t), 1, "int64"), keep)
        shape = [t if k == i else s for k, s in enumerate(x.shape)]
        out = ctx.emit(relax.op.take(x.expr, idx, axis=i, mode="clip"), shape=shape)
        if ctx.checkable_on_host(d) and ctx.checkable_on_host(t):
            ctx.assume(tirx.Or(as_expr(d) == 1, as_expr(d) == as_expr(t)), message)
        else:
            ok = relax.op.logical_or(relax.op.equal(n, relax.const(1, "int64")),
                                     relax.op.equal(n, ctx.size_scalar(t, "int64")))
            out = ctx.check(out, ctx.emit(ok), message)
        x = out
    return ctx.emit(relax.op.broadcast_to(x.expr, shape_expr(dims)), shape=list(dims))


def _band_mask(ctx, node, ins, m: int, n: int) -> np.ndarray:
    """tf.linalg.band_part's [M, N] mask: entries with (lower < 0 or i - j <= lower) and (upper < 0 or
    j - i <= upper); bands past the matrix are TF's error."""
    lower, upper = (ctx.const_ints(v, what)[0] for v, what in ((ins[1], "num_lower"), (ins[2], "num_upper")))
    if lower > m:
        ctx.fail(f"num_lower {lower} is greater than the number of rows {m} (TF's error)")
    if upper > n:
        ctx.fail(f"num_upper {upper} is greater than the number of columns {n} (TF's error)")
    i, j = np.arange(m)[:, None], np.arange(n)[None, :]
    return ((lower < 0) | (i - j <= lower)) & ((upper < 0) | (j - i <= upper))


@known("MatrixBandPart")
def _band_part_known(ctx, node, ins):
    x = ins[0]
    if not x.concrete or len(x.shape) < 2:
        raise NotFoldable
    arr = x.numpy()
    mask = _band_mask(ctx, node, ins, *arr.shape[-2:])
    return Known(np.where(mask, arr, np.zeros((), arr.dtype)).astype(arr.dtype), x.dtype)


@device("MatrixBandPart")
def _band_part(ctx, node, ins):
    """tf.linalg.band_part (causal attention masks): the input times a constant band mask; the last two dims must
    be static."""
    x = ctx.device(ins[0])
    if len(x.shape) < 2 or not all(is_const_int(d) for d in x.shape[-2:]):
        ctx.fail("the matrix dims (the last two) must be static")
    mask = _band_mask(ctx, node, ins, int(x.shape[-2]), int(x.shape[-1]))
    zero = relax.const(np.zeros((), x.dtype))
    return ctx.emit(relax.op.where(relax.const(mask), x.expr, zero), shape=list(x.shape))


# ------------------------------------------------------------------------------------------------ Pad / PadV2
@device("Pad", "PadV2")
def _pad(ctx, node, ins):
    """tf.pad (mode CONSTANT): `constant_values` (0 for Pad) before and after each dim; the paddings may be
    symbolic (a history padded to a fixed length: [[0, 0], [0, max(T - n, 0)]]), so each padded dim is a concat
    with filled blocks. A negative padding is TF's error (refused here: at import, or before launch)."""
    x = ctx.device(ins[0])
    rank = len(x.shape)
    pads = ctx.known_ints(ins[1], "the paddings")
    if len(pads) != 2 * rank:
        ctx.fail(f"paddings of {len(pads)} values for an input of rank {rank} (TF wants [{rank}, 2])")
    for p in pads:
        if is_const_int(p) and int(p) < 0:
            ctx.fail(f"a negative padding ({int(p)}): TF's 'Paddings must be non-negative'")
        if not is_const_int(p):
            ctx.assume(as_expr(p) >= 0, f"{ctx.label()}: Paddings must be non-negative: {p}")
    fill = ctx.scalar(ins[2], x.dtype) if node.op == "PadV2" else relax.const(0, x.dtype)
    out = x
    for d in range(rank):
        before, after = pads[2 * d], pads[2 * d + 1]
        if is_const_int(before) and is_const_int(after) and int(before) == int(after) == 0:
            continue
        parts = []
        for width in (before, None, after):
            if width is None:
                parts.append(out.expr)
            elif not (is_const_int(width) and int(width) == 0):
                dims = list(out.shape)
                dims[d] = width
                parts.append(relax.op.full(shape_expr(dims), fill, x.dtype))
        dims = list(out.shape)
        dims[d] = simplify(as_expr(before) + as_expr(dims[d]) + as_expr(after))
        out = ctx.emit(relax.op.concat(parts, axis=d), shape=dims)
    return out


def _positions(ctx, n, before=0, after=0):
    """The output positions along a dim of size n padded by (before, after), minus `before` (int64, [width]),
    n as a rank-0 int64 tensor, and the width."""
    width = simplify(as_expr(n) + before + after)
    pos = relax.op.subtract(relax.op.arange(0, as_expr(width), 1, "int64"), relax.const(before, "int64"))
    return pos, ctx.size_scalar(n, "int64"), width


@device("Roll")
def _roll(ctx, node, ins):
    """tf.roll: out[i] = x[(i - shift) mod n] along each axis (shifts of one axis add up); constant shifts and
    axes, any dims (a gather by a position computed modulo the dim: the batch may be 0)."""
    x = ctx.device(ins[0])
    shifts, axes = ctx.const_ints(ins[1], "the shift"), ctx.const_ints(ins[2], "the axis")
    if len(shifts) != len(axes):
        ctx.fail(f"shift and axis must have the same size ({len(shifts)} vs {len(axes)}; TF's error)")
    total: dict[int, int] = {}
    for sh, a in zip(shifts, axes):
        a = _norm_axis(ctx, a, len(x.shape))
        total[a] = total.get(a, 0) + sh
    out = x
    for a, sh in sorted(total.items()):
        n = x.shape[a]
        if is_const_int(n):
            if int(n) == 0 or sh % int(n) == 0:
                continue
            idx = relax.const((np.arange(int(n)) - sh) % int(n), "int64")
        else:
            pos, n_t, _ = _positions(ctx, n)
            idx = relax.op.floor_mod(relax.op.subtract(pos, relax.const(sh, "int64")), n_t)
        out = ctx.emit(relax.op.take(out.expr, idx, a), shape=list(x.shape))
    return out


@device("MirrorPad")
def _mirror_pad(ctx, node, ins):
    """tf.pad in mode REFLECT (the edge not repeated) or SYMMETRIC (repeated): a gather by mirrored positions
    along each padded dim. Paddings are constants; as TF, every dim must be longer than its paddings (REFLECT:
    before and after <= dim - 1; SYMMETRIC: <= dim), unpadded dims included (a batch of 0 rows is TF's error in
    REFLECT mode): checked at import, or before launch for a fed dim."""
    x = ctx.device(ins[0])
    rank = len(x.shape)
    pads = ctx.const_ints(ins[1], "the paddings")
    if len(pads) != 2 * rank:
        ctx.fail(f"paddings of {len(pads)} values for an input of rank {rank} (TF wants [{rank}, 2])")
    mode = node.attr("mode", b"REFLECT")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ("REFLECT", "SYMMETRIC"):
        ctx.fail(f"mode {mode!r}")
    offset = 1 if mode == "REFLECT" else 0
    out = x
    for d in range(rank):
        before, after = pads[2 * d], pads[2 * d + 1]
        if before < 0 or after < 0:
            ctx.fail(f"a negative padding ({before}, {after}): TF's 'Paddings must be non-negative'")
        n = x.shape[d]
        rule = ("paddings must be less than the dimension size: {}, {} not less than {}" if offset else
                "paddings must be no greater than the dimension size: {}, {} greater than {}").format(
            before, after, int(n) if is_const_int(n) else n)
        if is_const_int(n):
            if max(before, after) > int(n) - offset:
                ctx.fail(f"{rule} (TF's error)")
        else:
            ctx.assume(tirx.all(as_expr(before) <= as_expr(n) - offset, as_expr(after) <= as_expr(n) - offset),
                       f"{ctx.label()}: {rule}")
        if before == after == 0:
            continue
        pos, n_t, width = _positions(ctx, n, before, after)
        low = relax.op.subtract(relax.op.negative(pos), relax.const(1 - offset, "int64"))  # -i (-i - 1)
        high = relax.op.subtract(relax.op.subtract(relax.op.multiply(relax.const(2, "int64"), n_t),
                                                   relax.const(1 + offset, "int64")), pos)  # 2n - 2 - i (2n - 1 - i)
        zero = relax.const(0, "int64")
        idx = relax.op.where(relax.op.less(pos, zero), low, relax.op.where(relax.op.less(pos, n_t), pos, high))
        dims = list(out.shape)
        dims[d] = width
        out = ctx.emit(relax.op.take(out.expr, idx, d), shape=dims)
    return out


@device("HistogramFixedWidth")
def _histogram_fixed_width(ctx, node, ins):
    """tf.histogram_fixed_width: counts of the values in `nbins` equal bins over [lo, hi), values below lo in the
    first, from hi on in the last; the bin as TF's kernel computes it: (max(v, lo) - lo) in the values' dtype,
    then in double divided by (hi - lo) / nbins, capped at nbins - 1 and truncated. A constant range and nbins
    (TF's errors for nbins <= 0 and lo >= hi at import); a NaN value is TF's InvalidArgumentError."""
    x = ctx.device(ins[0])
    rng = ins[1]
    if not (isinstance(rng, Known) and rng.concrete):
        ctx.fail("value_range must be a constant")
    lo, hi = np.asarray(rng.numpy()).reshape(-1).astype(x.dtype)
    (nbins,) = ctx.const_ints(ins[2], "nbins")
    if nbins <= 0:
        ctx.fail("nbins should be a positive number (TF's error)")
    if not lo < hi:
        ctx.fail("value_range should satisfy value_range[0] < value_range[1] (TF's error)")
    out_dtype = node.attr("dtype", "int32")
    step = float(np.float64(hi) - np.float64(lo)) / float(nbins) if x.dtype.startswith("float") else \
        float(int(hi) - int(lo)) / float(nbins)
    lo_c = relax.const(lo, x.dtype)
    flat = relax.op.reshape(x.expr, shape_expr([_prod(x.shape)]))
    above = relax.op.where(relax.op.less(flat, lo_c), lo_c, flat)  # Eigen's cwiseMax(lo)
    scaled = relax.op.divide(relax.op.astype(relax.op.subtract(above, lo_c), "float64"), relax.const(step, "float64"))
    top = relax.const(float(nbins - 1), "float64")
    capped = relax.op.where(relax.op.less(top, scaled), top, scaled)  # cwiseMin(nbins - 1)
    bins = relax.op.astype(capped, "int32")
    hit = relax.op.equal(relax.op.expand_dims(bins, [1]),
                         relax.op.expand_dims(relax.op.arange(0, nbins, 1, "int32"), [0]))
    out = ctx.emit(relax.op.sum(relax.op.astype(hit, out_dtype), [0], False), shape=[nbins])
    if not x.dtype.startswith(("float", "bfloat")):
        return out
    ok = ctx.emit(relax.op.logical_not(relax.op.isnan(flat)))
    return ctx.check(out, all_true(ctx, ok.expr), "Histogram values must not contain NaN")


# -------------------------------------------------------------------------------------------- EuclideanNorm
@device("EuclideanNorm")
def _euclidean_norm(ctx, node, ins):
    """tf.math.reduce_euclidean_norm (and tf.norm's default): sqrt of the sum of squares over the axes."""
    x = ctx.device(ins[0])
    if not x.dtype.startswith("float"):
        ctx.fail(f"EuclideanNorm of {x.dtype} (floats are supported)")
    axes = sorted({_norm_axis(ctx, a, len(x.shape)) for a in ctx.const_ints(ins[1], "the reduction axes")})
    keep = bool(node.attr("keep_dims", False))
    if not axes:
        return ctx.emit(relax.op.abs(x.expr), shape=list(x.shape))
    return ctx.emit(relax.op.sqrt(relax.op.sum(relax.op.multiply(x.expr, x.expr), axes, keep)))


@device("L2Loss")
def _l2_loss(ctx, node, ins):
    """tf.nn.l2_loss (and tf.linalg.global_norm / tf.clip_by_global_norm, which sum it over tensors): as TF's
    kernel, sum(x * x * 0.5) over every element, a scalar; 0 over an empty tensor."""
    x = ctx.device(ins[0])
    if not x.dtype.startswith(("float", "bfloat")):
        ctx.fail(f"L2Loss of {x.dtype} (floats are supported)")
    half = relax.op.multiply(relax.op.multiply(x.expr, x.expr), relax.const(0.5, x.dtype))
    return ctx.emit(relax.op.sum(half, None, False), shape=[])
