"""Static hash tables (vocabulary columns): LookupTableFindV2 / LookupTableSizeV2 over tables whose contents the
importer recovered (`recom_tvm.frontend.tables`). String keys are looked up in the host stage; integer keys in the
compiled module (`recom.table_find`, a binary search over the sorted keys)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from ...ops import defs
from ..tables import Table
from ..values import Host, Known
from . import placed


def _table(ctx, v) -> Table:
    if not isinstance(v, Table):
        ctx.fail("the table input is not a table the importer could read (a HashTableV2 with a constant or "
                 "vocabulary-file initializer, or a TF2 table recovered from the SavedModel)")
    return v


@placed("LookupTableSizeV2", "LookupTableSize")
def _size(ctx, node, ins):
    return Known(np.array(len(_table(ctx, ins[0]).keys), dtype="int64"), "int64")


def _np_lookup(table: Table, x: np.ndarray, default) -> np.ndarray:
    index = {k: v for k, v in zip(table.keys.tolist(), table.values.tolist())}
    flat = [index.get(k if not isinstance(k, str) else k.encode(), default) for k in x.reshape(-1).tolist()]
    return np.array(flat, dtype=table.values.dtype).reshape(x.shape)


@placed("LookupTableFindV2", "LookupTableFind")
def _find(ctx, node, ins):
    table = _table(ctx, ins[0])
    x, dflt = ins[1], ins[2]
    if not (isinstance(dflt, Known) and dflt.concrete and dflt.numpy().size == 1):
        ctx.fail("the default value must be a constant scalar")
    default = dflt.numpy().reshape(()).item()
    string_values = table.values.dtype == object
    vdtype = "string" if string_values else str(table.values.dtype)
    if isinstance(x, Known) and x.concrete:
        return Known(_np_lookup(table, x.numpy(), default), vdtype if not string_values else "string")
    if table.key_dtype == "string" or string_values:  # strings live in the host stage
        if not isinstance(x, Host):
            ctx.fail("the keys of a table with string keys or values must be a host value (a feed or a host-stage "
                     "result)")
        if x.dtype != table.key_dtype:
            ctx.fail(f"{x.dtype} keys for a table of {table.key_dtype} keys")

        def text(v):
            return v.decode("latin-1") if isinstance(v, bytes) else v

        out = f"{node.name}:0"
        ctx.add_host_op({
            "name": node.name, "op": "LookupTableFind", "inputs": [{"tensor": x.tensor}],
            "attrs": {"keys": [text(k) for k in table.keys.tolist()], "key_dtype": table.key_dtype,
                      "values": [text(v) for v in table.values.tolist()], "value_dtype": vdtype,
                      "default": text(default)},
            "outputs": [out]})
        h = Host(out, vdtype, list(x.shape))
        ctx.host_values[out] = h
        return h
    if x.dtype != table.key_dtype:
        ctx.fail(f"{x.dtype} keys for a table of {table.key_dtype} keys")
    order = np.argsort(table.keys, kind="stable")
    xd = ctx.device(x)
    vdt = str(table.values.dtype)
    return ctx.emit(defs.table_find(xd.expr, relax.const(table.keys[order], table.key_dtype),
                                    relax.const(table.values[order], vdt),
                                    relax.const(np.array(default, dtype=vdt), vdt)))
