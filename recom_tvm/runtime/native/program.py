"""An InputSpec as a program for the native host stage (built once per model; plain ints and arrays).

Every tensor of a request (feed placeholders, host-plan outputs, constants) gets a slot. The program lists, in
order: the features' slots with their dtypes and static shapes, the rows to sort, the host plan's ops (each with
its native op code, or OP_FALLBACK: its numpy implementation in host_stage.HOST_IMPLS runs instead, per op), the id
checks, the binder's sources (symbolic sizes), the assertions that are `symbol == symbol`, the fused kernel's
columns and the module's arguments. The layout of each column kind in the packed buffer (int64 or int32, the
packed argument's dtype) is written in one place of the native code (rh_exec.c, write_column), as packer.py is
here.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from ..host_stage import _const
from ..fused_layout import TEXT_DECIMAL, segment_text
from ..packer import PACKED, PACKED_SIZES
from ..spec import InputSpec

_I64_MIN = -(1 << 63)

# dtype codes (rh.h enum rh_dtype)
DTYPE = {"bool": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "uint8": 6, "uint16": 7, "uint32": 8, "uint64": 9,
         "float16": 10, "float32": 11, "float64": 12, "string": 13}
NUMPY = {v: np.dtype(k) for k, v in DTYPE.items() if k != "string"}
OP = {"StringToHashBucketFast": 1, "AsString": 2, "Identity": 3, "Cast": 4, "Equal": 5, "NotEqual": 6, "Where": 7,
      "GatherNd": 8, "GatherV2": 9, "Reshape": 10, "ExpandDims": 11, "LookupTableFind": 12,
      "ValidateSparseIndices": 13, "SparseCross": 14, "ParseExampleV2": 15, "AddV2": 16, "SelectV2": 17,
      "ZerosLike": 18}
OP_FALLBACK = 0
FEATURE_KIND = {"dense": 0, "sparse": 1, "ragged": 2}
PARTS = {"dense": ("value",), "sparse": ("indices", "values", "dense_shape"), "ragged": ("values", "row_splits")}
COL_KIND = {"csr": 0, "dense": 1, "one": 2, "bucket": 3, "numeric": 4}
COL_HASHED = 16  # or-ed into the kind: the column's ids are hashed on the device from its strings (rh.h)
COL_DECIMAL = 32  # and this too: those strings are AsString of integers, shipped as the int64 values
ARG = {"packed": 0, "packed_sizes": 1, "tensor": 2, "shape": 3, "shape_of": 4}
MAXDIM = 8
_IDENT = re.compile(r"^[A-Za-z_]\w*$")


class Unsupported(Exception):
    """The spec has something the native program cannot describe: the model runs on the numpy reference."""


@dataclasses.dataclass
class Program:
    args: tuple                       # program_new's arguments
    slots: dict[str, int]             # tensor -> slot
    plan: list[dict]                  # host plan in execution order (op records refer to it by index)
    symbols: list[str]                # symbol index -> name
    general_assertions: bool          # assertions beyond symbol == symbol: checked in Python after the run
    module_args: list[dict]           # the module's non-param inputs, in call order
    fallback_ops: list[str]           # ops that run in numpy (reported)


def _i64(values) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1))


def _dtype(name: str) -> int:
    if name not in DTYPE:
        raise Unsupported(f"dtype {name!r}")
    return DTYPE[name]


def _topological(plan: list[dict], available: set[str]) -> list[dict]:
    out, pending, have = [], list(plan), set(available)
    while pending:
        ready = [n for n in pending if all("tensor" not in i or i["tensor"] in have for i in n["inputs"])]
        if not ready:
            raise Unsupported(f"host plan stuck at {pending[0]['name']}")
        for n in ready:
            out.append(n)
            have.update(n["outputs"])
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    return out


def compile_program(spec: InputSpec, ndarray_type, fallback: frozenset = frozenset()) -> Program:
    """The native program of `spec` (ndarray_type: numpy.ndarray; fallback: op types to run in numpy anyway)."""
    slots: dict[str, int] = {}

    def slot(name: str) -> int:
        if name not in slots:
            slots[name] = len(slots)
        return slots[name]

    rank, dims, dtypes = [], [], []

    def declare(s: int, dtype: int, shape) -> None:
        while len(rank) <= s:
            rank.append(-1)
            dims.append([-1] * MAXDIM)
            dtypes.append(-1)
        dtypes[s] = dtype
        if shape is not None:
            if len(shape) > MAXDIM:
                raise Unsupported("rank above 8")
            rank[s] = len(shape)
            dims[s] = [int(d) if d is not None and int(d) >= 0 else -1 for d in shape] + [-1] * (MAXDIM - len(shape))

    # ---------------------------------------------------------------- features
    feat_kind, feat_nparts, feat_slots = [], [], []
    for f in spec.features:
        kind = f["kind"]
        if kind not in FEATURE_KIND:
            raise Unsupported(f"feature kind {kind!r}")
        parts = PARTS[kind]
        ss = []
        for part in parts:
            t = f["tensors"][part]
            ph = spec.placeholders[t]
            s = slot(t)
            declare(s, _dtype(ph["dtype"]), ph["shape"])
            ss.append(s)
        feat_kind.append(FEATURE_KIND[kind])
        feat_nparts.append(len(parts))
        feat_slots += ss + [-1] * (3 - len(ss))
    feeds = set(slots)

    # ---------------------------------------------------------------- sorting
    sorts = []
    for name in spec.sort_rows:
        tt = spec.feature(name)["tensors"]
        also = [slot(t) for t in spec.sort_with.get(name, ())]
        sorts.append(_i64([slot(tt["indices"]), slot(tt["values"]), len(also)] + also))

    # ---------------------------------------------------------------- host plan
    plan = _topological(spec.host_plan, feeds)
    ops, tables, excfgs, consts, fallback_ops = [], [], [], [], []
    for k, node in enumerate(plan):
        ins = []
        for i in node["inputs"]:
            if "tensor" in i:
                ins.append(slot(i["tensor"]))
                continue
            s = slot(f"recom_tvm:const:{k}:{len(ins)}")
            value = _const(i)
            if value.dtype == object or value.dtype.kind == "S":
                payload = [v if isinstance(v, bytes) else bytes(v) for v in value.reshape(-1).tolist()]
                consts.append((s, DTYPE["string"], tuple(value.shape), payload))
            else:
                dt = _dtype(str(value.dtype))
                consts.append((s, dt, tuple(value.shape), np.ascontiguousarray(value)))
            ins.append(s)
        outs = [slot(o) for o in node["outputs"]]
        code, attrs = _native_op(node, tables, excfgs)
        if node["op"] in fallback or code == OP_FALLBACK:
            code, attrs = OP_FALLBACK, []
            fallback_ops.append(node["op"])
        ops.append((code, k, _i64(ins), _i64(outs), _i64(attrs)))

    # ---------------------------------------------------------------- id checks
    idcheck = []
    for c in spec.id_checks:
        # [ids, limit, weights or -1, hard low (ids below raise whatever their weight: Keras' wrapped ids), soft
        # low (ids below count as out of range, subject to the weights: 0 with "negative")] (feeds.check_ids)
        idcheck += [slot(c["tensor"]), int(c["limit"]), slot(c["where_positive"]) if "where_positive" in c else -1,
                    int(c["low"]) if c.get("low") is not None else _I64_MIN, 0 if c.get("negative") else _I64_MIN]

    # ---------------------------------------------------------------- binding
    symbols: dict[str, int] = {}
    sources = []

    def source(ref: str, kind: str, shape: list[str]) -> None:
        if ref not in slots:
            raise Unsupported(f"binding source {ref!r} is neither fed nor computed")
        kinds, vals = [], []
        for d in shape:
            if _IDENT.match(d):
                kinds.append(0)
                vals.append(symbols.setdefault(d, len(symbols)))
            elif d.lstrip("-").isdigit():
                kinds.append(1)
                vals.append(int(d))
            else:
                kinds.append(2)
                vals.append(0)
        sources.append((slots[ref], 1 if kind == "shape" else 0, _i64(kinds), _i64(vals), 0))

    # the module's own inputs first (one may be what tells the fused kernel's batch), then the packed columns'
    # sources: the order CompiledModel.arguments binds them in
    module_args = [i for i in spec.module_inputs if i["source"] != "param"]
    for inp in module_args:
        if inp["source"] != "packed":
            source(inp["ref"], inp["kind"], inp["shape"])
    if spec.fused:
        for s in spec.fused["symbol_sources"]:
            source(s["ref"], s["kind"], s["shape"])
    args = []
    for inp in module_args:
        if inp["source"] == "packed":
            args += [ARG["packed"] if inp["ref"] == PACKED else ARG["packed_sizes"], -1,
                     DTYPE[inp["dtype"] if inp["ref"] == PACKED else "int64"]]
            if inp["ref"] not in (PACKED, PACKED_SIZES):
                raise Unsupported(f"packed input {inp['ref']!r}")
            continue
        if inp["kind"] == "tensor":
            args += [ARG["tensor"], slots[inp["ref"]], _dtype(inp["dtype"])]
        elif inp["kind"] in ("shape", "shape_of"):
            args += [ARG[inp["kind"]], slots[inp["ref"]], -1]
        else:
            raise Unsupported(f"module input kind {inp['kind']!r}")
    batch_sym = -1
    if spec.fused:
        batch_sym = symbols.setdefault(spec.fused["batch_symbol"], len(symbols))

    # ---------------------------------------------------------------- assertions
    # sizes only the assertions read, from a feed's shape or values (spec.feed_symbols), where nothing else binds
    # them: sources of one dim, read last and only into unbound symbols
    wanted = set()
    for a in spec.assertions:
        stack = [a["expr"]]
        while stack:
            e = stack.pop()
            if e[0] == "var":
                wanted.add(e[1])
            elif e[0] != "int":
                stack.extend(e[1:])
    for sym in sorted(wanted - set(symbols)):
        hit = (getattr(spec, "feed_symbols", None) or {}).get(sym)
        if hit is None:
            continue
        tensor, axis, kind = hit
        if tensor not in slots:
            raise Unsupported(f"feed symbol {sym!r} reads {tensor!r}, neither fed nor computed")
        sources.append((slots[tensor], 2 if kind == "value" else 3, _i64([0]),
                        _i64([symbols.setdefault(sym, len(symbols))]), int(axis)))
    pairs, general = [], False
    for a in spec.assertions:
        e = a["expr"]
        if e[0] == "eq" and len(e) == 3 and e[1][0] == "var" and e[2][0] == "var":
            pairs += [symbols.setdefault(e[1][1], len(symbols)), symbols.setdefault(e[2][1], len(symbols))]
        else:
            general = True
    if general:
        pairs = []  # all of them in Python, in order (the first failing one names the error)

    # ---------------------------------------------------------------- the fused kernel's columns
    cols = []
    segments = list(spec.fused.get("device_hash") or ()) if spec.fused else []
    hashed = [h["column"] for h in segments]
    decimal = {h["column"] for h in segments if segment_text(h) == TEXT_DECIMAL}
    if hashed != sorted(hashed):  # the core writes the segments in column order
        raise Unsupported("device-hash segments out of column order")
    for c, col in enumerate(spec.fused.get("columns", []) if spec.fused else []):
        kind, t = col["kind"], col["tensors"]
        if kind not in COL_KIND:
            raise Unsupported(f"column kind {kind!r}")
        flag = (COL_HASHED if c in hashed else 0) | (COL_DECIMAL if c in decimal else 0)
        for ref in t.values():
            if ref not in slots:
                raise Unsupported(f"column input {ref!r} is neither fed nor computed")
        if kind == "csr":
            cols += [COL_KIND[kind] | flag, slots[t["indices"]], slots[t["ids"]],
                     slots[t["weights"]] if "weights" in t else -1]
        else:
            cols += [COL_KIND[kind] | flag, slots[t["x"] if kind != "one" else t["ids"]], -1, -1]

    nslots = len(slots)
    while len(rank) < nslots:  # computed tensors: any dtype and shape
        declare(len(rank), -1, None)
    names = tuple(f["name"] for f in spec.features)
    program_args = (
        names, ndarray_type, nslots, _i64(rank[:nslots]), _i64(sum((d for d in dims[:nslots]), [])),
        _i64(dtypes[:nslots]), _i64(feat_kind), _i64(feat_nparts), _i64(feat_slots), sorts, ops, _i64(idcheck), sources, len(symbols), _i64(pairs), batch_sym, _i64(cols),
        _i64(args), tables, excfgs, consts)
    by_index = sorted(symbols, key=symbols.get)
    return Program(program_args, dict(slots), plan, by_index, general, module_args, fallback_ops)


def _native_op(node: dict, tables: list, excfgs: list) -> tuple[int, list]:
    """(op code, attrs) of a plan node, or (OP_FALLBACK, []) when the native core does not take it."""
    op, a = node["op"], node.get("attrs", {})
    if op not in OP:
        return OP_FALLBACK, []
    if op == "StringToHashBucketFast":
        return OP[op], [int(a["num_buckets"])]
    if op == "Cast":
        dst = a.get("DstT")
        return (OP[op], [DTYPE[dst]]) if dst in DTYPE and dst != "string" else (OP_FALLBACK, [])
    if op == "LookupTableFind":  # string keys to numbers natively; other tables (index-to-string, ...) in numpy
        if a.get("key_dtype", "string") != "string" or a["value_dtype"] not in ("int64", "int32", "float32",
                                                                               "float64"):
            return OP_FALLBACK, []
        vdt = a["value_dtype"]
        keys = [k.encode("latin-1") for k in a["keys"]]
        values = np.ascontiguousarray(np.asarray(a["values"], dtype=vdt).reshape(-1))
        default = np.asarray(a["default"], dtype=vdt).reshape(())
        tables.append((keys, values, DTYPE[vdt], int(default) if vdt.startswith("int") else 0,
                       float(default) if vdt.startswith("float") else 0.0))
        return OP[op], [len(tables) - 1]
    if op == "SparseCross":
        key = int(a["hash_key"]) & (2**64 - 1)
        return OP[op], [int(a["N"]), int(a["num_buckets"]), key - 2**64 if key >= 2**63 else key]
    if op == "ParseExampleV2":
        code = {"string": DTYPE["string"], "float32": DTYPE["float32"], "int64": DTYPE["int64"]}
        sparse, dense = [tuple(x) for x in a["sparse"]], [tuple(x) for x in a["dense"]]
        if any(d not in code for _, d in sparse) or any(x[1] not in code for x in dense):
            return OP_FALLBACK, []
        keys = [k.encode("utf-8") for k, _ in sparse] + [x[0].encode("utf-8") for x in dense]
        if len(set(keys)) != len(keys):
            return OP_FALLBACK, []
        dtypes = [code[d] for _, d in sparse] + [code[x[1]] for x in dense]
        ranks, shapes, sizes, defaults = [], [], [], []
        for _, d, shape, default in dense:
            shape = [int(s) for s in shape]
            if len(shape) + 1 > MAXDIM:
                return OP_FALLBACK, []
            ranks.append(len(shape))
            shapes += shape + [0] * (MAXDIM - len(shape))
            sizes.append(int(np.prod(shape)) if shape else 1)
            if default is None:
                defaults.append(None)
            elif d == "string":
                vals = [v.encode("latin-1") if isinstance(v, str) else bytes(v) for v in default]
                defaults.append((vals, (len(vals),)))
            else:
                vals = np.ascontiguousarray(np.asarray(list(default), dtype=d).reshape(-1))
                defaults.append((vals, (vals.size,)))
        excfgs.append((keys, _i64(dtypes), len(sparse), _i64(ranks), _i64(shapes), _i64(sizes), defaults))
        key_table = (keys, np.arange(len(keys), dtype=np.int64), DTYPE["int64"], -1, 0.0)
        tables.append(key_table)
        return OP[op], [len(excfgs) - 1, len(tables) - 1]
    return OP[op], []
