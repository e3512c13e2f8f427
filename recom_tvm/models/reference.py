"""An independent numpy reference of the embedding stage (DenseFeatures' output) for a ModelSpec.

For models TF cannot run here (full-size E / F with tables generated on the GPU): TF's semantics per column,
written directly: hash / bucketize / identity ids, missing entries and negative ids dropped, out-of-range ids
mapped to the default, mean / sum / sqrtn per row, empty rows zero. numpy only (runs on serving hosts too).
"""

from __future__ import annotations

import numpy as np

from ..runtime.fingerprint import DecimalStrings, hash_bucket_fast
from ..runtime.packer import is_virtual_zeros
from .spec import NORMALIZERS, ColumnSpec, ModelSpec


def feature_column_name(c: ColumnSpec) -> str:
    """The name tf.feature_column gives the column (DenseFeatures orders its output by it)."""
    if c.kind == "numeric":
        return c.name
    if c.kind == "bucketized":
        return f"{c.name}_bucketized_embedding"
    if c.weighted:
        return f"{c.name}_weighted_by_{c.weight_feature}_embedding"
    return f"{c.name}_embedding"


def column_order(spec: ModelSpec) -> list[ColumnSpec]:
    return sorted(spec.columns, key=feature_column_name)


def column_ids(c: ColumnSpec, feed) -> tuple[np.ndarray, np.ndarray, int]:
    """(table ids, row of each id, batch) of one categorical / bucketized column, TF's filters applied."""
    ids, rows, batch, _ = column_bag(c, feed)
    return ids, rows, batch


def _vocab_ids(c: ColumnSpec, values: np.ndarray) -> np.ndarray:
    """TF's vocabulary lookup: the entry's index; else a hash bucket after the vocabulary (num_oov_buckets, the
    key hashed as a string), else the default (-1: dropped)."""
    index = {(v.encode() if isinstance(v, str) else v): i for i, v in enumerate(c.vocabulary())}
    keys = [v.encode() if isinstance(v, str) else (int(v) if not isinstance(v, bytes) else v) for v in values]
    ids = np.array([index.get(k, -1) for k in keys], dtype=np.int64)
    miss = ids < 0
    if c.oov_buckets and miss.any():
        strs = values[miss] if c.strings else DecimalStrings(values[miss].astype(np.int64))
        ids[miss] = c.buckets + hash_bucket_fast(strs, c.oov_buckets)
    elif c.default_value is not None:
        ids[miss] = c.default_value
    return ids


def crossed_ids(c: ColumnSpec, sources: list) -> tuple[np.ndarray, np.ndarray, int]:
    """crossed_column: TF's hashed SparseCross of the raw sparse features (strings, or int64 as is)."""
    from ..runtime.cross import sparse_cross_hashed

    sparse = []
    for src, (idx, vals, shape) in sources:
        vals = np.asarray(vals, dtype=object if src.strings else np.int64)
        if src.strings:
            vals = np.array([v.encode() if isinstance(v, str) else v for v in vals], dtype=object)
        sparse.append((np.asarray(idx), vals, np.asarray(shape)))
    indices, ids, shape = sparse_cross_hashed(sparse, [], c.buckets, 0xDECAFCAFFE)
    return ids, indices[:, 0], int(shape[0])


def column_bag(c: ColumnSpec, feed, weight_feed=None) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """(table ids, row of each id, batch, per-id weights or None), TF's filters applied: negative ids dropped;
    for a weighted column also weights <= 0 unless the combiner is sum (safe_embedding_lookup_sparse)."""
    if c.kind == "bucketized":
        x = np.asarray(feed, np.float32).reshape(-1)
        ids = np.searchsorted(np.asarray(c.boundaries, np.float32), x, side="right").astype(np.int64)
        return ids, np.arange(x.size, dtype=np.int64), x.size, None
    if isinstance(feed, tuple):
        idx, values, shape = feed
        rows, batch = np.asarray(idx)[:, 0].astype(np.int64), int(shape[0])
        values = np.asarray(values, dtype=object if c.strings else np.int64)
    else:  # dense padded: "" / -1 are missing
        dense = np.asarray(feed, dtype=object if c.strings else np.int64)
        batch = dense.shape[0]
        if c.strings:
            keep = np.array([v not in ("", b"") for v in dense.reshape(-1)], dtype=bool).reshape(dense.shape)
        else:
            keep = dense != -1
        rows = np.nonzero(keep)[0].astype(np.int64)
        values = dense[keep]
    if c.kind == "hash_string":
        ids = hash_bucket_fast(values, c.buckets)
    elif c.kind == "hash_int":
        ids = hash_bucket_fast(DecimalStrings(values.astype(np.int64)), c.buckets)
    elif c.kind.startswith("vocab"):
        ids = _vocab_ids(c, values)
    else:
        ids = values.astype(np.int64)
        if c.default_value is not None:
            ids = np.where((ids < 0) | (ids >= c.buckets), c.default_value, ids)
    keep = ids >= 0
    weights = None
    if weight_feed is not None:
        weights = np.asarray(weight_feed[1], np.float32).reshape(-1)
        if weights.size != keep.size:
            raise ValueError(f"column {c.name}: {weights.size} weights for {keep.size} ids")
        if c.combiner != "sum":
            keep &= weights > 0
        weights = weights[keep]
    return ids[keep], rows[keep], batch, weights


def combine(table: np.ndarray, ids: np.ndarray, rows: np.ndarray, batch: int, combiner: str,
            weights: np.ndarray | None = None) -> np.ndarray:
    """Bags of table rows in float64: sum, mean or sqrtn per row (weighted: sum w*e, / sum w, / sqrt(sum w^2),
    0 where the divisor is 0); empty rows give zeros."""
    out = np.zeros((batch, table.shape[1]), np.float64)
    rowsv = table[ids].astype(np.float64)
    if weights is not None:
        w = weights.astype(np.float64)
        np.add.at(out, rows, rowsv * w[:, None])
        if combiner == "sum":
            return out
        den = np.bincount(rows, weights=w if combiner == "mean" else w * w, minlength=batch)[:, None]
        den = den if combiner == "mean" else np.sqrt(den)
        return np.divide(out, den, out=np.zeros_like(out), where=den != 0)
    np.add.at(out, rows, rowsv)
    counts = np.bincount(rows, minlength=batch).astype(np.float64)[:, None]
    if combiner == "mean":
        out = np.divide(out, counts, out=np.zeros_like(out), where=counts > 0)
    elif combiner == "sqrtn":
        out = np.divide(out, np.sqrt(counts), out=np.zeros_like(out), where=counts > 0)
    return out


def embedding_stage(spec: ModelSpec, tables: dict[str, np.ndarray], feeds: dict) -> np.ndarray:
    """DenseFeatures' output [B, concat width] (float64), tables keyed by column name."""
    parts = []
    for c in column_order(spec):
        if c.kind == "numeric":
            x = np.asarray(feeds[c.name], np.float32)
            x = NORMALIZERS[c.normalizer](x) if c.normalizer else x
            parts.append(np.asarray(x, np.float64).reshape(len(feeds[c.name]), -1))
            continue
        if c.kind == "crossed":
            by_name = {x.name: x for x in spec.columns}
            ids, rows, batch = crossed_ids(c, [(by_name[k], feeds[k]) for k in c.cross])
            weights = None
        else:
            ids, rows, batch, weights = column_bag(c, feeds[c.name], feeds.get(c.weight_feature))
        if c.indicator:  # multi-hot counts of the ids in each row
            counts = np.zeros((batch, c.rows), np.float64)
            np.add.at(counts, (rows, ids), 1.0)
            parts.append(counts)
            continue
        parts.append(combine(tables[c.name], ids, rows, batch, c.combiner, weights))
    return np.concatenate(parts, axis=1)


# --------------------------------------------------------------------------------------- the dense tail
TAIL_OPS = ("MatMul", "BiasAdd", "Relu", "Sigmoid", "ConcatV2", "Identity")


def extract_tail(pb: str, start: str, output: str, params: dict, feeds: dict) -> dict:
    """The MLP between DenseFeatures' output `start` and `output` of a frozen graph, as a small program for
    `eval_tail`: steps in topological order; constants the importer made parameters are named by their
    parameter (matched by content, so their values can be replaced), the rest stored inline. `feeds` maps
    placeholder names to feature names (the dense input). Host side (reads the graph)."""
    from ..frontend.graph import Graph, parse_tensor_name

    with open(pb, "rb") as f:
        g = Graph.from_bytes(f.read())
    by_placeholder = {parse_tensor_name(t)[0]: k for k, t in feeds.items() if isinstance(t, str)}
    start_node = parse_tensor_name(start)[0]
    steps, consts, order, seen = [], {}, [], set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name != start_node:
            for src, _ in g.nodes[name].inputs:
                visit(src)
        order.append(name)

    visit(parse_tensor_name(output)[0])
    for name in order:
        node = g.nodes[name]
        if name == start_node:
            steps.append({"op": "Start", "out": name, "ins": []})
        elif node.op == "Placeholder":
            if name not in by_placeholder:
                raise ValueError(f"the dense tail reads placeholder {name!r}, which no feature feeds")
            steps.append({"op": "Feed", "out": name, "ins": [], "feature": by_placeholder[name]})
        elif node.op == "Const":
            arr = np.asarray(node.attrs["value"])
            match = [k for k, v in params.items() if v.shape == arr.shape and v.dtype == arr.dtype
                     and not is_virtual_zeros(v) and np.array_equal(v, arr)]
            if len(match) > 1:  # equal constants (two zero-initialised biases of one width): by name
                match = _by_name(match, name, [n for n in order if name in (s for s, _ in g.nodes[n].inputs)])
            if match:
                steps.append({"op": "Param", "out": name, "ins": [], "param": match[0]})
            else:
                consts[name] = arr
                steps.append({"op": "Const", "out": name, "ins": []})
        elif node.op in TAIL_OPS:
            steps.append({"op": node.op, "out": name, "ins": [src for src, _ in node.inputs],
                          "transpose_a": bool(node.attr("transpose_a", False)),
                          "transpose_b": bool(node.attr("transpose_b", False))})
        else:
            raise ValueError(f"the dense tail holds {node.op} ({name}); the reference evaluates only "
                             f"{', '.join(TAIL_OPS)}")
    return {"steps": steps, "consts": consts, "output": parse_tensor_name(output)[0]}


def _by_name(params: list[str], const: str, consumers: list[str]) -> list[str]:
    """The parameter the importer made of `const`, among parameters of equal content: it names a parameter after
    the op reading the constant (frontend.context._var_name: `model/dense_2/BiasAdd` -> model_dense_2_BiasAdd),
    a prefix of the constant's own name here (`model/dense_2/BiasAdd/ReadVariableOp/resource`). Matching by content alone gave the second of two zero biases the first's
    parameter, and the reference the wrong bias once the benchmarks set random weights."""
    import re

    names = {re.sub(r"\W", "_", n) for n in [const, *consumers]}  # ".../BiasAdd/ReadVariableOp/resource"
    named = [p for p in params if any(n == p or n.startswith(p + "_") for n in names)]
    longest = max(map(len, named), default=0)
    named = [p for p in named if len(p) == longest]
    if len(named) != 1:
        raise ValueError(f"the dense tail's constant {const!r} equals the parameters {params[:4]} and none is "
                         f"named after it or its consumers {consumers[:3]}")
    return named


LEAF_STEPS = ("Start", "Feed", "Param", "Const")
# the array ops the tail needs, per array library (the step loop is shared: run_tail)
NUMPY_OPS = {"Relu": lambda x: np.maximum(x, 0), "Sigmoid": lambda x: 1 / (1 + np.exp(-x)),
             "ConcatV2": lambda xs, axis: np.concatenate(xs, axis=axis)}


def run_tail(tail: dict, leaf, ops: dict):
    """Evaluate `extract_tail`'s program: `leaf(step)` gives the Start / Feed / Param / Const values, `ops` the
    array library's Relu / Sigmoid / ConcatV2 (NUMPY_OPS here; torch in benchmarks/torch_baselines.py)."""
    env: dict = {}
    for s in tail["steps"]:
        op, ins = s["op"], [env[i] for i in s["ins"]]
        if op in LEAF_STEPS:
            v = leaf(s)
        elif op == "MatMul":
            a, b = ins
            v = (a.T if s["transpose_a"] else a) @ (b.T if s["transpose_b"] else b)
        elif op == "BiasAdd":
            v = ins[0] + ins[1]
        elif op == "ConcatV2":
            v = ops["ConcatV2"](ins[:-1], int(ins[-1]))
        elif op in ops:
            v = ops[op](ins[0])
        else:  # Identity
            v = ins[0]
        env[s["out"]] = v
    return env[tail["output"]]


def eval_tail(tail: dict, params: dict, start: np.ndarray, feeds: dict) -> np.ndarray:
    """Evaluate `extract_tail`'s program in float64 (numpy only): the model's output from the embedding stage."""
    leaves = {"Start": lambda s: np.asarray(start, np.float64),
              "Feed": lambda s: np.asarray(feeds[s["feature"]], np.float64),
              "Param": lambda s: np.asarray(params[s["param"]], np.float64),
              "Const": lambda s: np.asarray(tail["consts"][s["out"]])}
    return run_tail(tail, lambda s: leaves[s["op"]](s), NUMPY_OPS)
