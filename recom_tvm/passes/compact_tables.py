"""CompactTables: store the fused kernel's tables as fp16 / bf16 / int8 rows (recom_tvm.runtime.compact).

Runs on an optimized module (after FuseColumns), from `recom_tvm.build(..., table_dtype=...)`. It re-lays the flat
table parameter (each table's rows in their dtype, 16-byte aligned), rewrites the kernel's static meta (row
stride, table base, dtype code per column) and the parameter's size, and records the dtypes in the parameter's
recipe: the runtime encodes the imported float32 tables at build, at `set_params` and at load. Columns the kernel
does not compute (written beside it into the concat) and the dense tail's weights stay float32; so does every table
of a module without a fused kernel (not optimized, or a single column): a warning says so.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tvm
from tvm import relax

from ..ops import defs
from ..ops.registry import PREFIX
from ..runtime import compact
from ..runtime.fused_layout import META, meta_rows
from ..shapes.symbolic import const_array
from ._util import attach_spec, copy_attrs, spec_of
from .fuse_columns import TABLES


def resolve_dtypes(spec, table_dtype) -> dict[str, str]:
    """{table param: dtype} for the fused kernel's tables from `table_dtype`: one dtype for all, or a mapping
    {"default": dtype, <table param or column name>: dtype, ...} (a column names its table; columns sharing a
    table must agree)."""
    recipe = spec.param_recipes[TABLES]
    tables = list(recipe["concat_flat"])
    if isinstance(table_dtype, str):
        compact.check_dtype(table_dtype)
        return {t: table_dtype for t in tables}
    if not isinstance(table_dtype, Mapping):
        raise TypeError(f"table_dtype: a dtype name or a mapping, got {type(table_dtype).__name__}")
    default = compact.check_dtype(table_dtype.get("default", "float32"), "table_dtype['default']")
    by_column: dict[str, list[str]] = {}
    for col in spec.fused["columns"]:
        if col.get("table") in tables:
            by_column.setdefault(col["name"], []).append(col["table"])
    out = {t: default for t in tables}
    set_by: dict[str, str] = {}
    for key, dtype in table_dtype.items():
        if key == "default":
            continue
        compact.check_dtype(dtype, f"table_dtype[{key!r}]")
        if key in out:
            targets = [key]
        elif key in by_column:
            targets = by_column[key]
        else:
            raise ValueError(f"table_dtype: {key!r} is neither a table nor a column of the fused kernel; columns: "
                           f"{sorted(by_column)[:8]}{'...' if len(by_column) > 8 else ''}")
        for t in targets:
            if t in set_by and out[t] != dtype:
                raise ValueError(f"table_dtype: {key!r} asks {dtype} for table {t!r}, which {set_by[t]!r} set to "
                                 f"{out[t]} (columns sharing a table share its dtype)")
            out[t], set_by[t] = dtype, key
    return out


@tvm.ir.transform.module_pass(opt_level=0, name="CompactTables")
class CompactTables:
    """Lay the fused kernel's tables out in `table_dtype` (see resolve_dtypes); a no-op when all stay float32."""

    def __init__(self, table_dtype) -> None:
        self.table_dtype = table_dtype

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        spec = spec_of(mod)
        if spec is None or not spec.fused or TABLES not in spec.param_recipes:
            import warnings

            warnings.warn("table_dtype applies to the fused embedding kernel's tables, and this module has none "
                          "(not optimized, or fewer than two columns to fuse): every table stays float32",
                          stacklevel=4)
            return mod
        dtypes = resolve_dtypes(spec, self.table_dtype)
        recipe = dict(spec.param_recipes[TABLES])
        if not any(d != "float32" for d in dtypes.values()) and not compact.is_compact(recipe):
            return mod
        shapes = recipe.get("shapes") or {}
        if set(shapes) != set(recipe["concat_flat"]):
            raise ValueError("the optimized module predates compact tables (its table recipe has no shapes): "
                             "run recom_tvm.optimize again")
        recipe["dtypes"] = dtypes
        entries = compact.layout(recipe, {})
        base = {t: offset // 4 for t, offset, _, _ in entries}  # 16-byte units
        size = compact.flat_size(entries)
        meta = meta_rows(spec.fused["meta"])
        f = {k: META.index(k) for k in META}
        for row, col in zip(meta, spec.fused["columns"]):
            t = col.get("table")
            if col["kind"] == "numeric" or t not in dtypes:
                continue
            if row[f["table_base"]] != _old_base(spec.param_recipes[TABLES], t):
                raise ValueError(f"column {col['name']}: its meta row does not point at table {t}")
            row[f["tdtype"]] = compact.CODES[dtypes[t]]
            row[f["stride4"]] = compact.row_units(dtypes[t], shapes[t][1])
            row[f["table_base"]] = base[t]
        out = _rewrite(mod, meta, size)
        spec.fused["meta"] = meta.tolist()
        spec.fused["meta_fields"] = list(META)
        spec.param_recipes = {**spec.param_recipes, TABLES: recipe}
        for inp in spec.module_inputs:
            if inp["name"] == TABLES:
                inp["shape"] = [str(size)]
        return attach_spec(copy_attrs(mod, out), spec)


def _old_base(recipe: dict, table: str) -> int:
    """Where `table` starts in a recipe's layout, in 16-byte units."""
    for t, offset, _, _ in compact.layout(recipe, {}):
        if t == table:
            return offset // 4
    raise KeyError(table)


def _rewrite(mod: tvm.IRModule, meta: np.ndarray, size: int) -> tvm.IRModule:
    """main with the flat tables parameter resized and the fused call reading the new meta."""
    func = mod["main"]
    old = next(p for p in func.params if p.name == TABLES)
    new = relax.Var(TABLES, relax.TensorType([size], "float32"))

    @relax.expr_functor.mutator
    class _Swap(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if isinstance(call.op, tvm.ir.Op) and call.op.name == PREFIX + "fused_embedding":
                packed, _, bounds, _, sizes, width = call.args
                return defs.fused_embedding(packed, relax.const(meta, "int64"), bounds, new, sizes, width)
            return call

        def visit_var_(self, var):
            return new if var.same_as(old) else var

    mutator = _Swap(mod)
    body = mutator.visit_expr(func.body)
    params = [new if p.same_as(old) else p for p in func.params]
    out = tvm.IRModule(dict(mod.functions_items()))
    out["main"] = relax.Function(params, body, func.ret_ty, func.is_pure, func.attrs, func.span)
    return copy_attrs(mod, out)


def fused_meta(mod: tvm.IRModule) -> np.ndarray:
    """The fused call's static meta (for tests)."""
    found = []
    relax.analysis.post_order_visit(mod["main"].body, lambda e: found.append(e) if isinstance(e, relax.Call) and
                                    isinstance(e.op, tvm.ir.Op) and e.op.name == PREFIX + "fused_embedding"
                                    else None)
    return const_array(found[0].args[1]).astype(np.int64)
