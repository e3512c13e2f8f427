"""identify_columns: each embedding column's subgraph, from its inputs to its slot in the concat it feeds.

An analysis (RECom section 3.1.2): a column is an op reading a table parameter with ids — an embedding_bag or a
gather after EliminateRedundancy, or the SparseSegment reduction of the imported module. From there it walks
back to the serving features the ids come from, and forward (through reshapes) to the concat and the columns
it occupies there. `summary(mod)` prints one line per column.
"""

from __future__ import annotations

import dataclasses
import re

import tvm
from tvm import relax

from ..module_spec import spec_of
from .dataflow import DataflowView, op_name

_COLUMN_OPS = ("recom.embedding_bag", "recom.gather", "recom.sparse_segment_reduce")
_LABEL = re.compile(r"\(column '([^']+)'\)")


@dataclasses.dataclass
class ColumnInfo:
    name: str
    kind: str  # bucketized | hash_bucket | identity | identity_with_default | categorical
    op: str  # the op reading the table
    table: str  # parameter name
    rows: int
    dim: int
    combiner: str  # sum | mean | sqrtn | one id per row
    inputs: list[str]  # serving features the column reads
    concat_slot: tuple[int, int] | None  # (first column, width) in the concat output, if it feeds one
    var: relax.Var = dataclasses.field(repr=False, default=None)
    corun: bool = False  # its ids come (partly) from the host co-run subgraph run by TensorFlow


def _table_of(view: DataflowView, call) -> relax.Var | None:
    name = op_name(call)
    if name in ("recom.embedding_bag", "recom.gather"):
        t = view.root_var(call.args[0])
        return t if view.is_param(t) else None
    if name == "recom.sparse_segment_reduce":
        g = view.call(call.args[0], "recom.gather")
        if g is not None:
            t = view.root_var(g.args[0])
            return t if view.is_param(t) else None
    return None


def _label(view: DataflowView, call) -> str:
    name = op_name(call)
    arg = call.args[7] if name == "recom.embedding_bag" else call.args[4] if name == "recom.gather" else None
    if name == "recom.sparse_segment_reduce":
        g = view.call(call.args[0], "recom.gather")
        arg = g.args[4] if g is not None else None
    return arg.value if arg is not None else ""


def _producers(view: DataflowView, expr) -> tuple[set, set]:
    """(op names, param vars) upstream of expr."""
    ops, params, stack, seen = set(), set(), [expr], set()
    while stack:
        e = stack.pop()
        for v in relax.analysis.free_vars(e) if not isinstance(e, relax.Var) else [e]:
            k = v.__hash__()
            if k in seen:
                continue
            seen.add(k)
            value = view.value(v)
            if value is None:
                if view.is_param(v):
                    params.add(v)
                continue
            n = op_name(value)
            if n:
                ops.add(n)
            stack.append(value)
    return ops, params


def _kind(ops: set, host_ops: set) -> str:
    if "recom.bucketize" in ops:
        return "bucketized"
    if "StringToHashBucketFast" in host_ops:
        return "hash_bucket"
    if "relax.where" in ops and "relax.logical_or" in ops:
        return "identity_with_default"
    return "identity"


def _slot(view: DataflowView, var) -> tuple[int, int] | None:
    """Follow reshapes / match_casts forward to a concat along the last axis; (offset, width) there."""
    for _ in range(16):
        users = view.all_users(var)
        names = sorted(op_name(u.value) or "" for u in users)
        if names == ["relax.where", "relax.zeros_like"]:  # the imported module's empty-row Select
            users = [u for u in users if op_name(u.value) == "relax.where"]
        if len(users) != 1:
            return None
        u = users[0]
        name = op_name(u.value)
        if name == "relax.where":
            var = u.var
            continue
        if name == "relax.reshape":
            var = u.var
            continue
        if name == "recom.write_slice" and u.value.args[1].same_as(var):  # a column the fused kernel left out
            return int(u.value.args[2].value), int(var.ty.shape.values[-1])
        if name == "relax.concat":
            fields = list(u.value.args[0].fields)
            offset = 0
            for f in fields:
                width = f.ty.shape.values[-1]
                if view.root_var(f).same_as(view.root_var(var)) or f.same_as(var):
                    return int(offset), int(width)
                offset += int(width)
        return None
    return None


def identify_columns(mod: tvm.IRModule, func: str = "main") -> list[ColumnInfo]:
    spec = spec_of(mod)
    view = DataflowView(mod[func])
    inputs = {i["name"]: i for i in spec.module_inputs} if spec else {}
    feature_of = {}
    if spec:
        for f in spec.features:
            for t in f["tensors"].values():
                feature_of[t] = f["name"]
    host_op_of = {o: n for n in (spec.host_plan if spec else []) for o in n["outputs"]}
    out = []
    for b in view.order:
        name = op_name(b.value)
        if name == "recom.fused_embedding" and spec is not None and spec.fused:
            fields = spec.fused["meta_fields"]
            for col, row in zip(spec.fused["columns"], spec.fused["meta"]):
                if col["kind"] == "numeric":
                    continue
                out.append(ColumnInfo(col["name"], col["column_kind"], name, col["table"], col["rows"],
                                      col["dim"], col["combiner"], col["inputs"],
                                      (row[fields.index("out_off")], col["dim"]), b.var))
            continue
        if name not in _COLUMN_OPS:
            continue
        table = _table_of(view, b.value)
        if table is None or table.ty.shape is None or len(table.ty.shape.values) != 2 or \
                inputs.get(table.name, {}).get("source") != "param":
            continue
        if name == "recom.gather" and view.all_users(b.var) and any(
                op_name(u.value) == "recom.sparse_segment_reduce" for u in view.all_users(b.var)):
            continue  # the imported module's table gather: the segment reduction is the column
        label = _label(view, b.value)
        m = _LABEL.search(label)
        ops, params = _producers(view, b.value.args[1])
        feats, host_ops = set(), set()
        for p in params:
            inp = inputs.get(p.name)
            if inp is None or inp["source"] == "param":
                continue
            ref = inp["ref"]
            if inp["source"] == "feed":
                feats.add(feature_of.get(ref, ref))
            else:  # a host-stage output: walk the host plan back to the feeds
                stack = [ref]
                while stack:
                    t = stack.pop()
                    if t in feature_of:
                        feats.add(feature_of[t])
                    node = host_op_of.get(t)
                    if node is not None:
                        host_ops.add(node["op"])
                        stack.extend(i["tensor"] for i in node["inputs"] if "tensor" in i)
        combiner = {"recom.embedding_bag": lambda c: c.args[5].value,
                    "recom.sparse_segment_reduce": lambda c: c.args[4].value,
                    "recom.gather": lambda c: "one id per row"}[name](b.value)
        rows, dim = (int(v) for v in table.ty.shape.values)
        out.append(ColumnInfo(m.group(1) if m else table.name, _kind(ops, host_ops), name, table.name, rows, dim,
                              combiner, sorted(feats), _slot(view, b.var), b.var, "TFSubgraph" in host_ops))
    return out


def summary(mod: tvm.IRModule) -> str:
    cols = identify_columns(mod)
    lines = [f"{len(cols)} embedding columns",
             f"{'column':32s} {'kind':22s} {'rows':>9s} {'dim':>4s} {'combiner':15s} {'slot':>10s}  inputs"]
    for c in cols:
        slot = f"{c.concat_slot[0]}:{c.concat_slot[0] + c.concat_slot[1]}" if c.concat_slot else "-"
        kind = c.kind + (" (co-run)" if c.corun else "")
        lines.append(f"{c.name[:32]:32s} {kind:22s} {c.rows:9d} {c.dim:4d} {c.combiner:15s} {slot:>10s}  "
                     f"{', '.join(c.inputs)}")
    spec = spec_of(mod)
    for c in spec.corun if spec is not None else []:
        lines.append(f"host co-run (TensorFlow): {c['op']} node {c['node']!r}"
                     + (f" (column {c['column']!r})" if c.get("column") else ""))
    return "\n".join(lines)
