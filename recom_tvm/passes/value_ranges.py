"""Value ranges of integer tensors, and FoldProvenComparisons, which decides comparisons the ranges settle.

Sources of ranges (RECom section 5, extended):
- StringToHashBucketFast / SparseCross in the host stage: [0, num_buckets)  (hash_bucket, crossed columns)
- Bucketize: [0, len(boundaries)]                                   (bucketized columns)
- identity with default: SelectV2(x < 0 | x >= n, default, x) -> [0, n) plus the default's range
- constants, arange, casts, layout ops, arithmetic by interval rules, Where / Unique / SparseFillEmptyRows
Feature columns filter ids with `ids >= 0`; once that comparison is folded to true, the eliminate_redundancy
rules delete the filter (Where + two gathers) and its data-dependent shape.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax

from ..shapes.symbolic import const_array, is_prim, is_tensor_const
from ._util import copy_attrs, spec_of

Range = tuple  # (lo | None, hi | None), inclusive; None = unbounded
FULL: Range = (None, None)


def _union(a: Range, b: Range) -> Range:
    lo = None if a[0] is None or b[0] is None else min(a[0], b[0])
    hi = None if a[1] is None or b[1] is None else max(a[1], b[1])
    return lo, hi


def _add(a: Range, b: Range) -> Range:
    return (None if a[0] is None or b[0] is None else a[0] + b[0],
            None if a[1] is None or b[1] is None else a[1] + b[1])


def _neg(a: Range) -> Range:
    return (None if a[1] is None else -a[1], None if a[0] is None else -a[0])


def _mul(a: Range, b: Range) -> Range:
    if None in a or None in b:
        return FULL
    prods = [x * y for x in a for y in b]
    return min(prods), max(prods)


def _op_name(call) -> str | None:
    return call.op.name if isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) else None


class ValueRanges:
    """Intervals of the integer tensors of one Relax function (memoized by var)."""

    def __init__(self, func: relax.Function, spec=None) -> None:
        self.bindings: dict[int, relax.Expr] = {}
        for block in func.body.blocks:
            for b in block.bindings:
                self.bindings[b.var.__hash__()] = b.value
        self.input_ranges: dict[str, Range] = {}
        if spec is not None:
            self._from_host_plan(spec)
        self._memo: dict[int, Range] = {}

    def _from_host_plan(self, spec) -> None:
        hashed: dict[str, Range] = {}
        not_equal: dict[str, tuple[str, int]] = {}  # host tensor -> (x, c) of x != c (a vocabulary's OOV test)

        def rng(inp):
            if "tensor" in inp:
                return hashed.get(inp["tensor"])
            v = np.asarray(inp["const"])
            return (int(v.min()), int(v.max())) if v.size and v.dtype.kind in "iu" else None

        for node in spec.host_plan:  # in plan order: inputs before their consumers
            out, op, ins = node["outputs"][0], node["op"], node["inputs"]
            if op in ("StringToHashBucketFast", "StringToHashBucketStrong"):
                hashed[out] = (0, int(node["attrs"]["num_buckets"]) - 1)
            elif op == "LookupTableFind" and node["attrs"]["value_dtype"].startswith("int"):
                vals = list(node["attrs"]["values"]) + [node["attrs"]["default"]]
                hashed[out] = (int(min(vals)), int(max(vals)))
            elif op == "Bucketize":  # run on the host when a crossed column reads it too
                hashed[out] = (0, len(node["attrs"]["boundaries"]))
            elif op in ("Cast", "Identity", "Reshape", "ExpandDims") and rng(ins[0]) and (
                    op != "Cast" or str(node["attrs"].get("DstT", "")).startswith("int")):
                hashed[out] = rng(ins[0])
            elif op in ("SparseCross", "SparseCrossHashed") and int(node["attrs"]["num_buckets"]) > 0:
                hashed[node["outputs"][1]] = (0, int(node["attrs"]["num_buckets"]) - 1)
            elif op == "AddV2" and all(rng(i) for i in ins):
                (a0, a1), (b0, b1) = rng(ins[0]), rng(ins[1])
                hashed[out] = (a0 + b0, a1 + b1)
            elif op == "NotEqual" and "tensor" in ins[0] and "const" in ins[1] and np.size(ins[1]["const"]) == 1 \
                    and str(ins[1].get("dtype", "")).startswith("int"):
                not_equal[out] = (ins[0]["tensor"], int(np.asarray(ins[1]["const"]).reshape(())))
            elif op == "SelectV2" and rng(ins[1]) and rng(ins[2]):
                kept = rng(ins[1])
                cond = not_equal.get(ins[0].get("tensor"))
                if cond is not None and ins[1].get("tensor") == cond[0]:  # x != c ? x : y never takes c from x
                    lo, hi = kept
                    kept = (lo + 1, hi) if lo == cond[1] else (lo, hi - 1) if hi == cond[1] else kept
                hashed[out] = _union(kept, rng(ins[2])) if kept[0] <= kept[1] else rng(ins[2])
        for inp in spec.module_inputs:
            if inp["source"] == "host" and inp["ref"] in hashed:
                self.input_ranges[inp["name"]] = hashed[inp["ref"]]

    def lookup(self, var) -> relax.Expr | None:
        return self.bindings.get(var.__hash__()) if isinstance(var, relax.Var) else None

    def of(self, x: relax.Expr) -> Range:
        if is_tensor_const(x):
            arr = const_array(x)
            if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
                return FULL
            return int(arr.min()), int(arr.max())
        if is_prim(x):
            return (int(x.value), int(x.value)) if hasattr(x, "value") else FULL
        if isinstance(x, relax.Var):
            key = x.__hash__()
            if key not in self._memo:
                self._memo[key] = FULL  # cycles cannot happen in dataflow, but stay safe
                value = self.lookup(x)
                self._memo[key] = self.input_ranges.get(x.name, FULL) if value is None else self.of(value)
            return self._memo[key]
        if isinstance(x, relax.TupleGetItem):
            return self._tuple_item(x)
        name = _op_name(x)
        if name in _RULES:
            return _RULES[name](self, x)
        return FULL

    def _tuple_item(self, item: relax.TupleGetItem) -> Range:
        src = item.tuple_value
        while isinstance(src, relax.Var) and self.lookup(src) is not None:
            src = self.lookup(src)
        if isinstance(src, relax.Tuple):
            return self.of(src.fields[item.index])
        name = _op_name(src)
        if name == "recom.sparse_fill_empty_rows":
            if item.index == 1:  # values, plus the default in empty rows
                return _union(self.of(src.args[1]), self.of(src.args[2]))
            if item.index == 0:
                return (0, None)
        if name == "recom.unique" and item.index == 0:
            return self.of(src.args[0])
        return FULL


def _same(idx: int = 0) -> Callable:
    return lambda vr, call: vr.of(call.args[idx])


def _where(vr: ValueRanges, call) -> Range:
    cond, a, b = call.args
    rb = vr.of(b)
    # identity column with default: where(x < L | x >= H, default, x): the kept x lie in [L, H)
    c = vr.lookup(cond) if isinstance(cond, relax.Var) else cond
    if _op_name(c) == "relax.logical_or":
        sides = [vr.lookup(s) if isinstance(s, relax.Var) else s for s in c.args]
        names = [_op_name(s) for s in sides]
        if sorted(names) == ["relax.greater_equal", "relax.less"]:
            less = sides[names.index("relax.less")]
            ge = sides[names.index("relax.greater_equal")]
            if less.args[0].same_as(b) and ge.args[0].same_as(b):
                lo, _ = vr.of(less.args[1])
                _, hi = vr.of(ge.args[1])
                if lo is not None and hi is not None and lo == vr.of(less.args[1])[1] and hi == vr.of(ge.args[1])[0]:
                    kept = (lo if rb[0] is None else max(lo, rb[0]), hi - 1 if rb[1] is None else min(hi - 1, rb[1]))
                    return _union(vr.of(a), kept)
    return _union(vr.of(a), rb)


def _arange(vr, call) -> Range:
    start, end = vr.of(call.args[0]), vr.of(call.args[1])
    step = vr.of(call.args[2])
    if step[0] is not None and step[0] > 0:
        return start[0], None if end[1] is None else end[1] - 1
    return FULL


def _floor_mod(vr, call) -> Range:
    d = vr.of(call.args[1])
    if d[0] is not None and d[0] > 0 and d[1] is not None:
        return 0, d[1] - 1
    return FULL


def _clip(vr, call) -> Range:
    lo, hi = vr.of(call.args[1]), vr.of(call.args[2])
    return lo[0], hi[1]


def _bucketize(vr, call) -> Range:
    return 0, int(const_array(call.args[1]).size)


def _table_find(vr, call) -> Range:
    vals = np.concatenate([const_array(call.args[2]).reshape(-1), const_array(call.args[3]).reshape(-1)])
    return int(vals.min()), int(vals.max())


def _concat(vr, call) -> Range:
    fields = call.args[0].fields if isinstance(call.args[0], relax.Tuple) else []
    out = None
    for f in fields:
        out = vr.of(f) if out is None else _union(out, vr.of(f))
    return out or FULL


def _full(vr, call) -> Range:
    return vr.of(call.args[1])


_RULES: dict[str, Callable] = {
    "recom.bucketize": _bucketize,
    "recom.table_find": _table_find,
    "recom.gather": _same(0),
    "relax.take": _same(0),
    "relax.gather_nd": _same(0),
    "relax.astype": _same(0),
    "relax.reshape": _same(0),
    "relax.expand_dims": _same(0),
    "relax.squeeze": _same(0),
    "relax.broadcast_to": _same(0),
    "relax.permute_dims": _same(0),
    "relax.strided_slice": _same(0),
    "relax.concat": _concat,
    "relax.add": lambda vr, c: _add(vr.of(c.args[0]), vr.of(c.args[1])),
    "relax.subtract": lambda vr, c: _add(vr.of(c.args[0]), _neg(vr.of(c.args[1]))),
    "relax.multiply": lambda vr, c: _mul(vr.of(c.args[0]), vr.of(c.args[1])),
    "relax.maximum": lambda vr, c: (None if None in (vr.of(c.args[0])[0], vr.of(c.args[1])[0]) else max(
        vr.of(c.args[0])[0], vr.of(c.args[1])[0]), _union(vr.of(c.args[0]), vr.of(c.args[1]))[1]),
    "relax.floor_mod": _floor_mod,
    "relax.clip": _clip,
    "relax.where": _where,
    "relax.arange": _arange,
    "relax.full": _full,
    "relax.zeros_like": lambda vr, c: (0, 0),
    "relax.ones_like": lambda vr, c: (1, 1),
}

_COMPARE = {
    "relax.greater_equal": lambda r, c: True if r[0] is not None and r[0] >= c else (
        False if r[1] is not None and r[1] < c else None),
    "relax.greater": lambda r, c: True if r[0] is not None and r[0] > c else (
        False if r[1] is not None and r[1] <= c else None),
    "relax.less": lambda r, c: True if r[1] is not None and r[1] < c else (
        False if r[0] is not None and r[0] >= c else None),
    "relax.less_equal": lambda r, c: True if r[1] is not None and r[1] <= c else (
        False if r[0] is not None and r[0] > c else None),
}


def decide(vr: ValueRanges, call) -> bool | None:
    """The constant value of `x <op> c` if the range of x settles it for every element, else None."""
    name = _op_name(call)
    if name not in _COMPARE:
        return None
    x, c = call.args
    rc = vr.of(c)
    if rc[0] is None or rc[0] != rc[1]:
        return None
    return _COMPARE[name](vr.of(x), rc[0])


@relax.expr_functor.mutator
class _Fold(relax.PyExprMutator):
    def __init__(self, mod, ranges: ValueRanges) -> None:
        super().__init__(mod)
        self.ranges = ranges
        self.folded = 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        new = super().visit_call_(call)
        verdict = decide(self.ranges, call)
        if verdict is None:
            return new
        self.folded += 1
        return relax.op.full(call.ty.shape, relax.const(verdict, "bool"), "bool")


@tvm.ir.transform.module_pass(opt_level=0, name="FoldProvenComparisons")
class FoldProvenComparisons:
    """Replace comparisons the value ranges decide (e.g. `hashed_ids >= 0`) by constant masks."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        spec = spec_of(mod)
        out = mod
        for gv, func in mod.functions_items():
            if not isinstance(func, relax.Function):
                continue
            mutator = _Fold(out, ValueRanges(func, spec))
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
            out = mutator.builder_.get()
        return copy_attrs(mod, out)
