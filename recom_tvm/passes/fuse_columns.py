"""FuseColumns: every column feeding a concat -> one recom.fused_embedding call (RECom section 3.1, without its
one-block-per-column straggler). The concat disappears: each column writes straight into its slice.

Runs after EliminateRedundancy, on its canonical column forms, recognized through index expressions:
- embedding_bag whose rows are a host tensor's column 0 (a SparseTensor's indices)        -> "csr"
- embedding_bag over the grid of a dense padded [B, T] input (-1 = missing)                -> "dense"
- gather of one id per row from a host tensor                                              -> "one"
- gather of Bucketize(x [B, 1])                                                            -> "bucket"
- a float input [B, w] itself (numeric column)                                             -> "numeric"
with identity-with-default preprocessing and TF's `id >= 0` filter folded into the kernel. The host packs the
columns' inputs into one buffer per request (recom_tvm.runtime.packer): offsets, ids and raw values, one
host->device copy; int32 where every table and id range of the kernel is below 2^31 rows (config.packed_dtype,
runtime.fused_layout.choose_packed_dtype), else int64. If any input of a concat is not recognized the concat is
left alone (and a fact says why).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tvm
from tvm import relax, tirx

from ..ops import defs
from ..ops.fused_kernel import FILTER_NEG_ID, FILTER_NONPOS_WEIGHT, KIND, META, MODE, PRE, class_sort_key
from ..shapes.index_expr import IndexExprs
from ..shapes.symbolic import analyzer, as_expr, const_array, is_tensor_const, prove_equal
from ._util import attach_spec, conjuncts as _conjuncts, copy_attrs, positive_test as _positive_test, spec_of
from ._util import strip_simplified as _strip
from .dataflow import DataflowView, op_name
from .dead_code import RemoveDeadCode
from .eliminate_redundancy import FACTS_ATTR

PACKED = "recom_tvm:packed"
PACKED_SIZES = "recom_tvm:packed_sizes"
TABLES = "recom_tvm_fused_tables"


class _NoMatch(Exception):
    pass


@dataclasses.dataclass
class _Column:
    kind: str
    dim: int
    tensors: dict  # role -> host tensor name
    table: relax.Var | None = None
    mode: str = "sum"
    pre: str = "none"
    pre_a: int = 0
    pre_b: int = 0
    filter: int = 0  # FILTER_* bits
    boundaries: np.ndarray | None = None
    label: str = ""
    weighted: bool = False




class _Classifier:
    def __init__(self, view: DataflowView, spec) -> None:
        self.view = view
        self.ie = IndexExprs(view.value)
        self.inputs = {i["name"]: i for i in spec.module_inputs}

    def host_tensor(self, leaf) -> str:
        """The host tensor (feed or host-stage output) a leaf Relax param carries, also through reshapes that
        keep its elements in order (a scalar feature [B] expanded to [B, 1]): the kernel reads it flat."""
        leaf = self._leaf(leaf)
        inp = self.inputs.get(getattr(leaf, "name", None))
        if not self.view.is_param(leaf) or inp is None or inp["source"] not in ("feed", "host") \
                or inp["kind"] != "tensor":
            raise _NoMatch(f"{leaf} is not a host tensor")
        return inp["ref"]

    def _leaf(self, leaf):
        """leaf through root vars and the reshapes / expand_dims that keep its elements in order."""
        leaf = self.view.root_var(leaf)
        for _ in range(8):
            e = self.view.resolve(leaf)
            if op_name(e) not in ("relax.expand_dims", "relax.reshape") or e.args[0].ty.shape is None or \
                    leaf.ty.shape is None or not prove_equal(_numel(e.args[0].ty), _numel(leaf.ty)):
                break
            leaf = self.view.root_var(e.args[0])
        return leaf

    def load(self, e):
        hit = self.ie.leaf(_strip(e))
        if hit is None:
            raise _NoMatch(f"{e} is not a load")
        return hit

    def preprocessing(self, e) -> tuple[str, int, int, tirx.PrimExpr]:
        """e = pre(raw): ('none' | 'identity_default' | 'wrap_negative', a, b, raw expression)."""
        e = _strip(e)
        if isinstance(e, tirx.Select):
            cond, raw = e.condition, _strip(e.false_value)
            delta = analyzer().simplify(e.true_value - e.false_value)
            if isinstance(cond, tirx.LT) and tvm_equal(_strip(cond.a), raw) and _is(cond.b, 0) and \
                    isinstance(delta, tirx.IntImm) and delta.value > 0:  # Keras: id < 0 -> id + rows
                return "wrap_negative", int(delta.value), 0, raw
            cond, dflt, raw = e.condition, _strip(e.true_value), _strip(e.false_value)
            if isinstance(cond, tirx.Or) and isinstance(dflt, tirx.IntImm):
                bounds = [_bound(t, raw) for t in (cond.a, cond.b)]
                lows = [v for k, v in bounds if k == "lt"]
                highs = [v for k, v in bounds if k == "ge"]
                if lows == [0] and len(highs) == 1:  # TF: id < 0 or id >= num_buckets -> default
                    return "identity_default", highs[0], int(dflt.value), raw
            raise _NoMatch(f"preprocessing {e}")
        return "none", 0, 0, e

    # --------------------------------------------------------------------------------------------- columns
    def column(self, x, width: int, batch) -> _Column:
        """The concat input x ([batch, width]) as a column the kernel computes, or _NoMatch (then it is
        computed beside the kernel and written into its slice). Reshapes keep the row-major data, so they are
        looked through; anything else (a normalizer's scale, shift, relu, ...) is not the kernel's to drop."""
        e = self.view.resolve(x)
        while op_name(e) == "relax.reshape":
            e = self.view.resolve(e.args[0])
        name = op_name(e)
        if name == "recom.embedding_bag":
            col = self.bag(e)
        elif name == "recom.gather":
            col = self.one(e)
        elif name == "relax.where":
            col = self.zero_filled(e)
        elif name in (None, "relax.expand_dims"):
            col = self.numeric(x, width, batch)
        else:
            raise _NoMatch(f"{name} is not a column the kernel computes")
        if col.dim != width:  # e.g. two gathered rows per example read as one row of twice the width
            raise _NoMatch(f"the column's rows have {col.dim} values, its slice of the concat {width}")
        return col

    def numeric(self, x, width: int, batch) -> _Column:
        """A numeric column: a float32 host tensor holding exactly [batch, width] values (through reshapes and
        expand_dims that keep its elements in order), copied as it is."""
        leaf = self._leaf(x)
        ty = leaf.ty
        if str(ty.dtype) != "float32" or ty.shape is None:
            raise _NoMatch(f"{leaf}: not a float32 tensor")
        if not prove_equal(_numel(ty), as_expr(batch) * width):
            raise _NoMatch(f"{leaf} {list(ty.shape.values)} does not hold [{batch}, {width}] values")
        return _Column("numeric", width, {"x": self.host_tensor(leaf)})

    def bag(self, call) -> _Column:
        table, ids, rows, mask, num_bags, mode, check, label, weights = call.args
        if int(check.value):
            raise _NoMatch("device range check")
        if str(table.ty.dtype) != "float32":
            raise _NoMatch(f"a {table.ty.dtype} table")
        weighted = defs.bag_weighted(call)
        j = IndexExprs.index("j")
        pre, a, b, raw = self.preprocessing(self.ie.at(ids, [j]))
        src, ind = self.load(raw)
        row = _strip(self.ie.at(rows, [j]))
        masked = len(mask.ty.shape.values) > 0
        m = _strip(self.ie.at(mask, [j])) if masked else tirx.const(True, "bool")
        out = _Column("csr", int(table.ty.shape.values[1]), {}, table, mode.value, pre, a, b, label=label.value,
                      weighted=weighted)
        rowhit = self.ie.leaf(row)
        if rowhit is not None:  # CSR: rows = I[j, 0], ids = V[j] (, weights = W[j])
            leaf_i, ind_i = rowhit
            if not (len(ind_i) == 2 and _is(ind_i[0], j) and _is(ind_i[1], 0) and len(ind) == 1 and _is(ind[0], j)):
                raise _NoMatch("csr indexing")
            out.tensors = {"indices": self.host_tensor(leaf_i), "ids": self.host_tensor(src)}
            w_load = None
            if weighted:
                w_load = _strip(self.ie.at(weights, [j]))
                w_src, w_ind = self.load(w_load)
                if len(w_ind) != 1 or not _is(w_ind[0], j) or str(w_load.ty.dtype) != "float32":
                    raise _NoMatch("weights indexing")
                out.tensors["weights"] = self.host_tensor(w_src)
            out.filter = self.filter(m, raw, pre_expr=_strip(self.ie.at(ids, [j])), allow_missing=False,
                                     weight=w_load)
            return out
        if weighted:
            raise _NoMatch("weights over a dense padded input")
        # DENSE: rows = j // T, ids = X[j // T, j % T]
        if not (isinstance(row, tirx.FloorDiv) and _is(row.a, j)) or len(ind) != 2:
            raise _NoMatch(f"rows {row}")
        width = row.b
        if not (_is_expr(ind[0], tirx.floordiv(j, width)) and _is_expr(ind[1], tirx.floormod(j, width))):
            raise _NoMatch("dense indexing")
        out.kind = "dense"
        out.tensors = {"x": self.host_tensor(src)}
        out.filter = self.filter(m, raw, pre_expr=_strip(self.ie.at(ids, [j])), allow_missing=True)
        return out

    def zero_filled(self, e) -> _Column:
        """where(mask[:, None], gather(table, where(mask, ids, 0)), 0): EliminateRedundancy's form of a column
        with at most one id per row over a dense [B] (or [B, 1]) input -> the dense kind, one slot per row."""
        cond, value, zero = e.args
        if not (is_tensor_const(zero) and const_array(zero).size == 1 and not const_array(zero).any()):
            raise _NoMatch("where without a zero fill")
        g = self.view.resolve(value)
        if op_name(g) != "recom.gather":
            raise _NoMatch("where over something else than a gather")
        table, ids, axis, check, label = g.args
        if int(check.value) or int(axis.value) != 0:
            raise _NoMatch("checked or non-row gather")
        b = IndexExprs.index("b")
        sel = _strip(self.ie.at(ids, [b]))
        if not (isinstance(sel, tirx.Select) and _is(sel.false_value, 0)):
            raise _NoMatch(f"zero-filled ids {sel}")
        m, pre_expr = _strip(sel.condition), _strip(sel.true_value)
        if not tvm_equal(_strip(self.ie.at(cond, [b, 0])), m):
            raise _NoMatch("fill mask differs from the ids' mask")
        pre, a, bb, raw = self.preprocessing(pre_expr)
        src, ind = self.load(raw)
        if not (len(ind) in (1, 2) and _is(ind[0], b) and (len(ind) == 1 or _is(ind[1], 0))):
            raise _NoMatch("one-slot-per-row indexing")
        out = _Column("dense", int(table.ty.shape.values[1]), {"x": self.host_tensor(src)}, table, "sum", pre, a,
                      bb, label=label.value)
        out.filter = self.filter(m, raw, pre_expr, allow_missing=True)
        return out

    def filter(self, m, raw, pre_expr, allow_missing: bool, weight=None) -> int:
        """The mask as the kernel's filter bits (id >= 0, weight > 0) and missing flag (raw != -1)."""
        terms = _conjuncts(m)
        filt, missing = 0, False
        for t in terms:
            if isinstance(t, tirx.IntImm) and t.value:
                continue
            x = _nonneg_test(t)
            if x is not None and (tvm_equal(x, pre_expr) or tvm_equal(x, raw)):
                filt |= FILTER_NEG_ID
                continue
            if weight is not None and _positive_test(t, weight):
                filt |= FILTER_NONPOS_WEIGHT
                continue
            x = _ne_test(t, -1)
            if allow_missing and x is not None and tvm_equal(x, raw):
                missing = True
                continue
            raise _NoMatch(f"mask term {t}")
        if allow_missing and not missing:
            raise _NoMatch("dense input without its missing-value mask")
        return filt

    def one(self, call) -> _Column:
        table, ids, axis, check, label = call.args
        if int(check.value) or int(axis.value) != 0:
            raise _NoMatch("checked or non-row gather")
        if str(table.ty.dtype) != "float32":
            raise _NoMatch(f"a {table.ty.dtype} table")
        dims = ids.ty.shape.values if ids.ty.shape is not None else None
        j = IndexExprs.index("b")
        rest = list(ids.ty.shape.values[1:]) if ids.ty.shape is not None else []
        if not all(isinstance(d, tirx.IntImm) and d.value == 1 for d in rest):
            raise _NoMatch("more than one id per row")
        e = _strip(self.ie.at(ids, [j] + [0] * len(rest)))  # ids [B] or [B, 1] (Keras' Input((1,)))
        hit = self.ie.leaf(e)
        if hit is not None:
            leaf, ind = hit
            bkt = self.view.resolve(leaf)
            if op_name(bkt) == "recom.bucketize":
                x = bkt.args[0]
                if len(ind) != 2 or not _is(ind[0], j) or not _is(ind[1], 0) or str(x.ty.dtype) != "float32" or \
                        not isinstance(x.ty.shape.values[1], tirx.IntImm) or x.ty.shape.values[1].value != 1:
                    raise _NoMatch("bucketize layout")
                bounds = const_array(bkt.args[1]).astype(np.float32)
                return _Column("bucket", int(table.ty.shape.values[1]), {"x": self.host_tensor(x)}, table, "sum",
                               boundaries=bounds, label=label.value)
        pre, a, b, raw = self.preprocessing(e)
        src, ind = self.load(raw)
        if not (len(ind) in (1, 2) and _is(ind[0], j) and (len(ind) == 1 or _is(ind[1], 0))):
            raise _NoMatch("one-per-row indexing")
        return _Column("one", int(table.ty.shape.values[1]), {"ids": self.host_tensor(src)}, table, "sum", pre, a,
                       b, label=label.value)


def _numel(ty):
    n = tirx.const(1, "int64")
    for d in ty.shape.values:
        n = n * d
    return n


def tvm_equal(a, b) -> bool:
    import tvm_ffi

    return bool(tvm_ffi.structural_equal(a, b))


def _is(e, v) -> bool:
    e = _strip(e)
    if isinstance(v, int):
        if isinstance(e, tirx.Sub) and _is(e.a, 0) and isinstance(_strip(e.b), tirx.IntImm):  # 0 - 1 == -1
            return -int(_strip(e.b).value) == v
        return isinstance(e, tirx.IntImm) and e.value == v
    return isinstance(e, tirx.Var) and e.same_as(v)


def _is_expr(a, b) -> bool:
    return bool(analyzer().can_prove_equal(_strip(a), _strip(b)))


def _bound(t, x) -> tuple[str | None, int | None]:
    """('lt', c) for `x < c`, ('ge', c) for `x >= c`, in their normal forms; (None, None) otherwise."""
    if isinstance(t, (tirx.LT, tirx.GE)) and tvm_equal(_strip(t.a), x) and isinstance(_strip(t.b), tirx.IntImm):
        return ("lt" if isinstance(t, tirx.LT) else "ge"), int(_strip(t.b).value)
    if isinstance(t, tirx.LE) and tvm_equal(_strip(t.b), x) and isinstance(_strip(t.a), tirx.IntImm):
        return "ge", int(_strip(t.a).value)  # c <= x
    if isinstance(t, tirx.GT) and tvm_equal(_strip(t.b), x) and isinstance(_strip(t.a), tirx.IntImm):
        return "lt", int(_strip(t.a).value)  # c > x
    return None, None


def _nonneg_test(t):
    """x if t is `x >= 0` in any of its normal forms (0 <= x, x > -1), else None."""
    if isinstance(t, tirx.GE) and _is(t.b, 0):
        return _strip(t.a)
    if isinstance(t, tirx.LE) and _is(t.a, 0):
        return _strip(t.b)
    if isinstance(t, tirx.GT) and _is(t.b, -1):
        return _strip(t.a)
    if isinstance(t, tirx.LT) and _is(t.a, -1):
        return _strip(t.b)
    return None




def _ne_test(t, value: int):
    """x if t is `x != value` (either side), else None."""
    if isinstance(t, tirx.NE):
        if _is(t.b, value):
            return _strip(t.a)
        if _is(t.a, value):
            return _strip(t.b)
    return None




# ---------------------------------------------------------------------------------------------- the rewrite
MAX_LANES = 1024  # one bag's float4 lanes must fit in one thread block


def _lanes(col: _Column) -> int:
    """float4s per table row of the column; a column wider than one block's threads cannot be fused."""
    lanes = -(-col.dim // 4)
    if lanes > MAX_LANES:
        raise _NoMatch(f"dim {col.dim} too wide for one thread block")
    return lanes


def _layout(columns: list[_Column], offsets: list[int]) -> tuple[np.ndarray, np.ndarray, list, dict]:
    """Static per-column meta, all boundaries, and the flat-tables recipe (16-byte aligned tables)."""
    meta, bounds, tables, base_of, shapes = [], [], [], {}, {}
    total = 0
    for col, out_off in zip(columns, offsets):
        lanes = _lanes(col)
        table_base, rows = 0, 0
        if col.table is not None:
            key = col.table.name
            if key not in base_of:
                base_of[key] = total  # in float4 units
                tables.append(key)
                r, d = (int(v) for v in col.table.ty.shape.values)
                shapes[key] = [r, d]
                total += r * -(-d // 4)  # rows padded to 4 floats: every row starts 16-byte aligned
            table_base = base_of[key]
            rows = int(col.table.ty.shape.values[0])
        pre_a, pre_b = col.pre_a, col.pre_b
        if col.kind == "bucket":
            pre_a, pre_b = sum(len(b) for b in bounds), len(col.boundaries)
            bounds.append(col.boundaries)
        row = dict(kind=KIND[col.kind], dim=col.dim, stride4=lanes, out_off=out_off, table_base=table_base,
                   rows=rows, mode=MODE[col.mode], pre=PRE[col.pre], pre_a=pre_a, pre_b=pre_b,
                   filter=int(col.filter), weighted=int(col.weighted), tdtype=0)  # float32 (CompactTables)
        meta.append([row[k] for k in META])
    flat_bounds = np.concatenate(bounds).astype(np.float32) if bounds else np.zeros(1, np.float32)
    recipe = {"concat_flat": tables, "pad_rows_to": 4, "shapes": shapes}
    return np.array(meta, dtype=np.int64), flat_bounds, tables, recipe


@relax.expr_functor.mutator
class _Replace(relax.PyExprMutator):
    def __init__(self, mod, target_var, make) -> None:
        super().__init__(mod)
        self.target = target_var
        self.make = make

    def visit_var_binding_(self, binding):
        if not binding.var.same_as(self.target):
            return super().visit_var_binding_(binding)
        new_value = self.make(self)
        emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
        self.set_var_remap(binding.var, emit(new_value, binding.var.name))
        return None


@tvm.ir.transform.module_pass(opt_level=0, name="FuseColumns")
class FuseColumns:
    """Fuse the concat with the most columns (DenseFeatures' output) into one kernel."""

    def __init__(self, min_columns: int = 2, packed_dtype: str | None = None) -> None:
        self.min_columns = min_columns
        self.packed_dtype = packed_dtype  # None: config.packed_dtype (read when the pass runs)

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        spec = spec_of(mod)
        if spec is None or spec.fused:
            return mod
        func = mod["main"]
        view = DataflowView(func)
        facts = list(mod.attrs[FACTS_ATTR]) if mod.attrs is not None and FACTS_ATTR in mod.attrs else []
        concats = [b for b in view.order if op_name(b.value) == "relax.concat"]
        concats.sort(key=lambda b: -len(b.value.args[0].fields))
        for b in concats:
            fields = list(b.value.args[0].fields)
            ty = b.var.ty
            axis = int(b.value.attrs.axis)
            if len(fields) < self.min_columns or ty.shape is None or len(ty.shape.values) != 2 or axis not in (1, -1):
                continue
            if str(ty.dtype) != "float32":  # e.g. the int64 concat of tf.sparse.expand_dims' indices
                continue
            if not isinstance(ty.shape.values[1], tirx.IntImm):
                continue
            widths = [int(f.ty.shape.values[1]) for f in fields]
            offsets = [int(x) for x in np.cumsum([0] + widths[:-1])]
            classifier = _Classifier(view, spec)
            columns, fused_off, rest = [], [], []
            for f, w, off in zip(fields, widths, offsets):
                try:
                    col = classifier.column(f, w, ty.shape.values[0])
                    _lanes(col)
                except _NoMatch as why:
                    rest.append((f, off))  # computed as before, written into its slice of the fused output
                    facts.append(f"concat input at column {off} (width {w}) not fused: {why}")
                    continue
                columns.append(col)
                fused_off.append(off)
            if len(columns) < self.min_columns:
                facts.append(f"concat of {len(fields)} inputs not fused: {len(columns)} fusable")
                continue
            # the kernel plans its schedule per class (multi-id or not, dim): make each class one run of columns
            order = sorted(range(len(columns)), key=lambda i: class_sort_key(KIND[columns[i].kind], columns[i].dim))
            columns, fused_off = [columns[i] for i in order], [fused_off[i] for i in order]
            meta, bounds, tables, recipe = _layout(columns, fused_off)
            return self._fuse(mod, spec, view, b, columns, meta, bounds, tables, recipe, facts, rest)
        return mod.with_attr(FACTS_ATTR, facts) if facts else mod

    def _fuse(self, mod, spec, view, binding, columns, meta, bounds, tables, recipe, facts, rest=()):
        from .identify_columns import identify_columns

        before = {c.concat_slot[0]: c for c in identify_columns(mod) if c.concat_slot}
        func = mod["main"]
        batch = binding.var.ty.shape.values[0]
        width = int(binding.var.ty.shape.values[1])
        from .. import config
        from ..runtime.fused_layout import choose_packed_dtype

        dtype = choose_packed_dtype(meta, self.packed_dtype or config.packed_dtype, [c.label for c in columns])
        p_len = tirx.Var("packed_len", "int64")
        packed = relax.Var("recom_tvm_packed", relax.TensorType([p_len], dtype))
        sizes = relax.Var("recom_tvm_packed_sizes", relax.ShapeType([as_expr(batch)]))
        table_rows = sum(int(v.ty.shape.values[0]) * -(-int(v.ty.shape.values[1]) // 4) * 4
                         for v in (next(c.table for c in columns if c.table is not None and c.table.name == t)
                                   for t in tables))
        flat = relax.Var(TABLES, relax.TensorType([max(table_rows, 4)], "float32"))

        def make(mutator):
            out = defs.fused_embedding(packed, relax.const(meta, "int64"), relax.const(bounds, "float32"), flat,
                                       relax.ShapeExpr([as_expr(batch)]), width)
            for field, off in rest:
                out = mutator.builder_.emit(out)
                out = defs.write_slice(out, mutator.visit_expr(field), off)
            return out

        mutator = _Replace(mod, binding.var, make)
        new_func = mutator.visit_expr(func)
        new_func = relax.Function([sizes, packed] + list(new_func.params) + [flat], new_func.body, new_func.ret_ty,
                                  new_func.is_pure, new_func.attrs, new_func.span)
        mutator.builder_.update_func(mod.get_global_var("main"), new_func)
        out = copy_attrs(mod, mutator.builder_.get())
        out = RemoveDeadCode()(out)
        # drop the parameters no op reads any more (the columns' feeds now reach the kernel through `packed`)
        main = out["main"]
        used = {v.__hash__() for v in relax.analysis.free_vars(main.body)}
        keep = [p for p in main.params if p.__hash__() in used or p.same_as(sizes)]
        # a parameter nothing reads may still be the only one defining a size the body uses (a SparseCross
        # dense_shape sizing an indicator's grid): keep it
        defined = {v.name for p in keep for v in relax.analysis.definable_tir_vars_in_type(p.ty)}
        needed = {v.name for v in relax.analysis.free_symbolic_vars(relax.Function(keep, main.body, main.ret_ty))}
        for p in main.params:
            if any(p.same_as(k) for k in keep):
                continue
            names = {v.name for v in relax.analysis.definable_tir_vars_in_type(p.ty)}
            if names & (needed - defined):
                keep.append(p)
                defined |= names
        keep = [p for p in main.params if any(p.same_as(k) for k in keep)]
        dropped = [p for p in main.params if not any(p.same_as(k) for k in keep)]
        out["main"] = relax.Function(keep, main.body, main.ret_ty, main.is_pure, main.attrs, main.span)
        by_name = {i["name"]: i for i in spec.module_inputs}
        kept_inputs = [by_name[p.name] for p in keep if p.name in by_name]
        described = []
        for c, row in zip(columns, meta.tolist()):
            info = before.get(row[META.index("out_off")])
            described.append(dict(kind=c.kind, tensors=c.tensors, dim=c.dim, label=c.label,
                                  name=info.name if info else (c.tensors.get("x") or "?"),
                                  column_kind=info.kind if info else "numeric",
                                  combiner=info.combiner if info else "-",
                                  inputs=info.inputs if info else [], rows=info.rows if info else 0,
                                  table=info.table if info else ""))
        spec.fused = {
            "columns": described,
            "meta": meta.tolist(), "meta_fields": list(META), "width": width,
            "batch_symbol": str(batch), "packed_dtype": dtype,
            "symbol_sources": [by_name[p.name] for p in dropped
                               if p.name in by_name and by_name[p.name]["source"] != "param"],
        }
        new_inputs = [
            {"name": sizes.name, "source": "packed", "ref": PACKED_SIZES, "kind": "shape", "dtype": "int64",
             "shape": [str(batch)]},
            {"name": packed.name, "source": "packed", "ref": PACKED, "kind": "tensor", "dtype": dtype,
             "shape": [p_len.name]},
        ]
        params_in = [i for i in kept_inputs if i["source"] == "param"]
        others = [i for i in kept_inputs if i["source"] != "param"]
        spec.module_inputs = new_inputs + others + params_in + [
            {"name": TABLES, "source": "param", "ref": TABLES, "kind": "tensor", "dtype": "float32",
             "shape": [str(max(table_rows, 4))]}]
        order = [sizes, packed] + [p for p in keep if p.name in {i["name"] for i in others}] + \
            [p for p in keep if p.name in {i["name"] for i in params_in}] + [flat]
        out["main"] = relax.Function(order, out["main"].body, out["main"].ret_ty, out["main"].is_pure,
                                     out["main"].attrs, out["main"].span).with_attr(
                                         "num_input", len(new_inputs) + len(others))
        spec.param_recipes = dict(spec.param_recipes or {})
        spec.param_recipes[TABLES] = recipe
        kinds = {}
        for c in columns:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        facts.append(f"fused {len(columns)} columns ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}) "
                     f"into one kernel writing the [{batch}, {width}] concat"
                     + (f"; {len(rest)} other input(s) written into their slices" if rest else ""))
        out = attach_spec(out, spec)
        return out.with_attr(FACTS_ATTR, facts)
