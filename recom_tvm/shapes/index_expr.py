"""Index expressions: the value of `x[i0, i1, ...]` as a tirx expression of the indices.

Layout ops (reshape, expand_dims, broadcast_to, permute_dims, concat, strided_slice), `arange`, constants,
casts and elementwise arithmetic are followed symbolically; anything else is a *leaf*, represented by a load
of a buffer standing for that tensor. This answers questions the rewrites need without running anything:

- "is column 0 of this SparseTensor's indices equal to arange(B)?" (bucketized columns: one id per row)
- "is this mask the broadcast of SparseFillEmptyRows' empty-row indicator along the embedding dim?"
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax, tirx

from .symbolic import analyzer, as_expr, const_array, is_prim, is_tensor_const

_MAX_CONST = 64  # constants up to this size are inlined as select chains


class IndexExprs:
    def __init__(self, lookup: Callable[[relax.Var], relax.Expr | None]) -> None:
        """lookup: the value bound to a Relax var (None for function parameters)."""
        self.lookup = lookup
        self.buffers: dict[int, tirx.Buffer] = {}
        self._leaf_of: dict[int, relax.Expr] = {}

    # ------------------------------------------------------------------------------------------- leaves
    def buffer(self, x: relax.Expr) -> tirx.Buffer:
        key = x.__hash__()
        if key not in self.buffers:
            ty = x.ty
            if ty.shape is not None:
                shape = [as_expr(s) for s in ty.shape.values]
            else:  # data-dependent shape not yet bound: placeholder dims
                shape = [tirx.Var(f"leaf_dim{k}", "int64") for k in range(max(ty.ndim, 0))]
            self.buffers[key] = tirx.decl_buffer(shape, str(ty.dtype), name=getattr(x, "name", "leaf") or "leaf")
            self._leaf_of[key] = x
        return self.buffers[key]

    def load(self, x: relax.Expr, idx: list) -> tvm.ir.Expr:
        return tirx.BufferLoad(self.buffer(x), [as_expr(i) for i in idx])

    def leaf(self, e) -> tuple[relax.Expr, list] | None:
        """(leaf tensor, index list) if `e` is (a cast of) a load of a leaf, else None."""
        while isinstance(e, tirx.Cast):
            e = e.value
        if isinstance(e, tvm.ir.expr.TensorLoad):  # what tirx.BufferLoad builds in TVM 0.27
            for key, buf in self.buffers.items():
                if buf.same_as(e.source):
                    return self._leaf_of[key], list(e.indices)
        return None

    # ------------------------------------------------------------------------------------------- values
    def _resolve(self, x: relax.Expr) -> tuple[relax.Expr, relax.Expr]:
        """(defining expression, last var of the alias / match_cast chain leading to it)."""
        last = x
        for _ in range(64):
            if not isinstance(x, relax.Var):
                break
            v = self.lookup(x)
            if v is None:
                break
            last, x = x, v
        return x, last

    def at(self, x: relax.Expr, idx: list) -> tvm.ir.Expr:
        """x[idx] as an expression, simplified knowing 0 <= idx[k] < x.shape[k] for index vars idx[k]."""
        idx = [as_expr(i) for i in idx]
        # a match_cast asserts equal shapes at run time: bound the indices by the shape of the value behind
        # the aliases (e.g. [B, D] rather than a data-dependent [S, D] it was cast to)
        for _ in range(64):
            v = self.lookup(x) if isinstance(x, relax.Var) else None
            if not isinstance(v, relax.Var):
                break
            x = v
        if x.ty.shape is not None:
            for i, s in zip(idx, _shape(x)):
                if isinstance(i, tirx.Var) and i.name.startswith("ie_"):  # our fresh index vars only
                    analyzer().bind(i, tvm.ir.Range.from_min_extent(tirx.const(0, "int64"), s))
        e = analyzer().simplify(self._at(x, idx))
        return analyzer().simplify(self._drop_divmod(e))

    def _drop_divmod(self, e):
        """floormod(a, b) -> a and floordiv(a, b) -> 0 when 0 <= a < b is provable (TVM's simplifier does this
        for constant b only)."""
        az = analyzer()
        rw = self._drop_divmod
        if isinstance(e, (tirx.FloorMod, tirx.FloorDiv)):
            a, b = rw(e.a), rw(e.b)
            if az.can_prove(a >= 0) and az.can_prove(a < b):
                return a if isinstance(e, tirx.FloorMod) else tirx.const(0, _dt(e))
            return tirx.floormod(a, b) if isinstance(e, tirx.FloorMod) else tirx.floordiv(a, b)
        for cls, make in _REBUILD:
            if isinstance(e, cls):
                return make(rw(e.a), rw(e.b))
        if isinstance(e, tirx.Select):
            return tirx.Select(rw(e.condition), rw(e.true_value), rw(e.false_value))
        if isinstance(e, tirx.Cast):
            return tirx.Cast(_dt(e), rw(e.value))
        if isinstance(e, tvm.ir.expr.TensorLoad):
            for buf in self.buffers.values():
                if buf.same_as(e.source):
                    return tirx.BufferLoad(buf, [rw(i) for i in e.indices])
        return e

    @staticmethod
    def index(name: str) -> tirx.Var:
        """A fresh index var for `at` (its range is bound to the queried dim)."""
        IndexExprs._counter += 1
        return tirx.Var(f"ie_{name}{IndexExprs._counter}", "int64")

    _counter = 0

    def _at(self, x, idx):
        x, orig = self._resolve(x)
        if is_tensor_const(x):
            arr = const_array(x)
            if arr.size == 1 or (arr.size <= _MAX_CONST * 64 and np.all(arr == arr.reshape(-1)[0])):
                return tirx.const(arr.reshape(-1)[0].item(), str(arr.dtype))
            if arr.ndim == 1 and arr.size <= _MAX_CONST:
                e = tirx.const(arr[-1].item(), str(arr.dtype))
                for k in range(arr.size - 2, -1, -1):
                    e = tirx.Select(idx[0] == k, tirx.const(arr[k].item(), str(arr.dtype)), e)
                return e
            return self.load(orig, idx)
        if not isinstance(x, relax.Call) or not isinstance(x.op, tvm.ir.Op):
            return self.load(orig, idx)
        rule = _RULES.get(x.op.name)
        if rule is None:
            return self.load(orig, idx)
        try:
            out = rule(self, x, idx)
        except _NotAffine:
            out = None
        return self.load(orig, idx) if out is None else out


class _NotAffine(Exception):
    pass


def _dt(e) -> str:
    return str(e.ty.dtype)


_REBUILD = [(tirx.Add, lambda a, b: a + b), (tirx.Sub, lambda a, b: a - b), (tirx.Mul, lambda a, b: a * b),
            (tirx.Min, tirx.min), (tirx.Max, tirx.max), (tirx.EQ, lambda a, b: a == b),
            (tirx.NE, lambda a, b: a != b), (tirx.LT, lambda a, b: a < b), (tirx.LE, lambda a, b: a <= b),
            (tirx.GT, lambda a, b: a > b), (tirx.GE, lambda a, b: a >= b), (tirx.And, tirx.And),
            (tirx.Or, tirx.Or)]


def _shape(x) -> list:
    if x.ty.shape is None:
        raise _NotAffine
    return [as_expr(s) for s in x.ty.shape.values]


def _linear(idx, shape):
    lin = tirx.const(0, "int64")
    for i, s in zip(idx, shape):
        lin = lin * s + i
    return lin


def _unravel(lin, shape):
    """Coordinates of linear index `lin` (< prod(shape)): the outermost needs no modulo."""
    out = []
    for k, s in enumerate(reversed(shape)):
        if k == len(shape) - 1:
            out.append(lin)
        else:
            out.append(tirx.floormod(lin, s))
            lin = tirx.floordiv(lin, s)
    return list(reversed(out))


def _prim(v):
    if is_prim(v):
        return v
    if is_tensor_const(v):
        arr = const_array(v)
        return tirx.const(arr.item(), str(arr.dtype))
    raise _NotAffine


def _arange(ie, call, idx):
    start, end, step = call.args[:3]
    dtype = str(call.ty.dtype)
    return tirx.Cast(dtype, _prim(start) + _prim(step) * idx[0]) if dtype != "int64" else \
        _prim(start) + _prim(step) * idx[0]


def _expand_dims(ie, call, idx):
    axes = [int(a) for a in call.attrs.axis]
    rank = len(idx)
    axes = [a % rank for a in axes]
    return ie._at(call.args[0], [i for k, i in enumerate(idx) if k not in axes])


def _reshape(ie, call, idx):
    src = call.args[0]
    return ie._at(src, _unravel(_linear(idx, _shape(call)), _shape(src)))


def _broadcast(ie, call, idx):
    src = call.args[0]
    sshape = _shape(src)
    off = len(idx) - len(sshape)
    sidx = []
    for k, s in enumerate(sshape):
        is_one = isinstance(s, tirx.IntImm) and s.value == 1
        sidx.append(tirx.const(0, "int64") if is_one else idx[off + k])
    return ie._at(src, sidx)


def _permute(ie, call, idx):
    axes = [int(a) for a in call.attrs.axes] if call.attrs.axes is not None else list(range(len(idx)))[::-1]
    sidx = [None] * len(idx)
    for k, a in enumerate(axes):
        sidx[a] = idx[k]
    return ie._at(call.args[0], sidx)


def _concat(ie, call, idx):
    axis = int(call.attrs.axis)
    parts = list(call.args[0].fields) if isinstance(call.args[0], relax.Tuple) else None
    if parts is None:
        raise _NotAffine
    offsets, acc = [], tirx.const(0, "int64")
    for p in parts:
        offsets.append(acc)
        acc = acc + _shape(p)[axis]
    e = None
    for p, off in reversed(list(zip(parts, offsets))):
        sidx = list(idx)
        sidx[axis] = idx[axis] - off
        val = ie._at(p, sidx)
        e = val if e is None else tirx.Select(idx[axis] < off + _shape(p)[axis], val, e)
    return e


def _fields(t) -> list:
    return list(t.fields) if isinstance(t, relax.Tuple) else list(t.values)


def _strided_slice(ie, call, idx):
    axes = [int(a.value) if hasattr(a, "value") else int(a) for a in _fields(call.args[1])]
    begin = _fields(call.args[2])
    strides = _fields(call.args[4]) if len(call.args) > 4 else [1] * len(axes)
    sidx = list(idx)
    for a, b, st in zip(axes, begin, strides):
        sidx[a] = as_expr(b) + as_expr(st) * idx[a]
    return ie._at(call.args[0], sidx)


def _astype(ie, call, idx):
    return tirx.Cast(str(call.ty.dtype), ie._at(call.args[0], idx))


def _binary(fn):
    def rule(ie, call, idx):
        out_shape = _shape(call)
        vals = []
        for arg in call.args[:2]:
            if is_tensor_const(arg) and const_array(arg).size == 1:
                arr = const_array(arg)
                vals.append(tirx.const(arr.item(), str(arr.dtype)))
                continue
            ashape = _shape(arg)
            off = len(out_shape) - len(ashape)
            aidx = [tirx.const(0, "int64") if (isinstance(s, tirx.IntImm) and s.value == 1) else idx[off + k]
                    for k, s in enumerate(ashape)]
            vals.append(ie._at(arg, aidx))
        return fn(*vals)

    return rule


def _where(ie, call, idx):
    vals = []
    out_shape = _shape(call)
    for arg in call.args:
        ashape = _shape(arg)
        off = len(out_shape) - len(ashape)
        aidx = [tirx.const(0, "int64") if (isinstance(s, tirx.IntImm) and s.value == 1) else idx[off + k]
                for k, s in enumerate(ashape)]
        vals.append(ie._at(arg, aidx))
    return tirx.Select(vals[0], vals[1], vals[2])


def _gather(ie, call, idx):
    """recom.gather / take along an axis: x[..., ids[j...], ...]."""
    axis_arg = call.args[2] if call.op.name == "recom.gather" else None
    axis = int(axis_arg.value) if axis_arg is not None else int(call.attrs.axis)
    x, ids = call.args[0], call.args[1]
    nid = len(_shape(ids))
    inner = ie._at(ids, idx[axis:axis + nid])
    return ie._at(x, list(idx[:axis]) + [tirx.Cast("int64", inner)] + list(idx[axis + nid:]))


def _full(ie, call, idx):
    return _prim(call.args[1])


def _zeros_ones(value: int):
    def rule(ie, call, idx):
        return tirx.const(value, str(call.ty.dtype))

    return rule


_RULES = {
    "relax.full": _full,
    "relax.zeros_like": _zeros_ones(0),
    "relax.ones_like": _zeros_ones(1),
    "recom.gather": _gather,
    "relax.take": _gather,
    "relax.arange": _arange,
    "relax.expand_dims": _expand_dims,
    "relax.reshape": _reshape,
    "relax.broadcast_to": _broadcast,
    "relax.permute_dims": _permute,
    "relax.concat": _concat,
    "relax.strided_slice": _strided_slice,
    "relax.astype": _astype,
    "relax.add": _binary(lambda a, b: a + b),
    "relax.subtract": _binary(lambda a, b: a - b),
    "relax.multiply": _binary(lambda a, b: a * b),
    "relax.equal": _binary(lambda a, b: a == b),
    "relax.not_equal": _binary(lambda a, b: a != b),
    "relax.less": _binary(lambda a, b: a < b),
    "relax.less_equal": _binary(lambda a, b: a <= b),
    "relax.greater": _binary(lambda a, b: a > b),
    "relax.greater_equal": _binary(lambda a, b: a >= b),
    "relax.logical_and": _binary(lambda a, b: tirx.And(a, b)),
    "relax.logical_or": _binary(lambda a, b: tirx.Or(a, b)),
    "relax.where": _where,
}
