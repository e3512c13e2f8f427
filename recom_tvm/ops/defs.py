"""recom's Relax operators: TF's sparse and data-dependent ops that Relax lacks.

Each op has a constructor (usable from TVMScript: `from recom_tvm.ops import defs as Rc`) and a type rule. Static
parameters travel as extra arguments (PrimValue, StringImm, ShapeExpr) because Python-registered ops have no
attribute classes. Output dims that depend on data (Where's count, Unique's size, ...) are left unknown; the
importer binds them to fresh symbolic vars with `match_cast` right after the call.
"""

from __future__ import annotations

import tvm
from tvm import relax

from .registry import define_op


def _tensor_ty(expr) -> relax.TensorType:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType):
        raise TypeError(f"expected a tensor argument, got {ty}")
    return ty


def _dims(expr):
    ty = _tensor_ty(expr)
    return None if ty.shape is None else list(ty.shape.values)


def _str(arg) -> str:
    return arg.value


def _s(x):
    """Python str -> StringImm (constructors also accept IR values, as TVMScript passes them)."""
    return tvm.ir.StringImm(x) if isinstance(x, str) else x


def _p(x):
    """Python int / bool -> PrimValue."""
    return relax.prim_value(int(x)) if isinstance(x, (bool, int)) else x


def _int(arg) -> int:
    return int(arg.value)


# -------------------------------------------------------------------------------------------------------- Where
def _infer_where(call):
    return relax.TensorType(ndim=2, dtype="int64")


WHERE = define_op("where", 1, _infer_where, "TF Where: coordinates of non-zero elements, [k, rank] int64")


def where(cond: relax.Expr) -> relax.Call:
    return relax.Call(WHERE, [cond])


# ------------------------------------------------------------------------------------------------ SparseReshape
def _infer_sparse_reshape(call):
    dims = _dims(call.args[0])
    new_shape = call.args[2]
    n = dims[0] if dims else None
    if n is None:
        return relax.TensorType(ndim=2, dtype="int64")
    return relax.TensorType([n, len(new_shape.values)], "int64")


SPARSE_RESHAPE = define_op("sparse_reshape", 3, _infer_sparse_reshape,
                           "TF SparseReshape's new indices; input and output dense shapes as ShapeExpr")


def sparse_reshape(indices: relax.Expr, in_shape: relax.ShapeExpr, new_shape: relax.ShapeExpr) -> relax.Call:
    return relax.Call(SPARSE_RESHAPE, [indices, in_shape, new_shape])


# ---------------------------------------------------------------------------------------- SparseFillEmptyRows
def _infer_sfer(call):
    idx_dims = _dims(call.args[0])
    vty = _tensor_ty(call.args[1])
    dense_shape = call.args[3].values
    n = idx_dims[0] if idx_dims else None
    rev = relax.TensorType([n], "int64") if n is not None else relax.TensorType(ndim=1, dtype="int64")
    return relax.TupleType([
        relax.TensorType(ndim=2, dtype="int64"),
        relax.TensorType(ndim=1, dtype=str(vty.dtype)),
        relax.TensorType([dense_shape[0]], "bool"),
        rev,
    ])


SPARSE_FILL_EMPTY_ROWS = define_op(
    "sparse_fill_empty_rows", 4, _infer_sfer,
    "TF SparseFillEmptyRows -> (indices, values, empty_row_indicator, reverse_index_map)")


def sparse_fill_empty_rows(indices, values, default_value, dense_shape: relax.ShapeExpr) -> relax.Call:
    return relax.Call(SPARSE_FILL_EMPTY_ROWS, [indices, values, default_value, dense_shape])


# ----------------------------------------------------------------------------------------------------- Unique
def _infer_unique(call):
    ty = _tensor_ty(call.args[0])
    dims = _dims(call.args[0])
    idx = relax.TensorType(dims, _str(call.args[1])) if dims else relax.TensorType(ndim=1, dtype=_str(call.args[1]))
    return relax.TupleType([relax.TensorType(ndim=1, dtype=str(ty.dtype)), idx])


UNIQUE = define_op("unique", 2, _infer_unique, "TF Unique: (values in first-occurrence order, index of each)")


def unique(x: relax.Expr, out_idx: str = "int32") -> relax.Call:
    return relax.Call(UNIQUE, [x, _s(out_idx)])


# ----------------------------------------------------------------------------------------- SparseSegmentReduce
SEGMENT_MODES = ("sum", "mean", "sqrtn", "max", "min", "prod")


def _infer_segment(call):
    dims = _dims(call.args[0])
    ty = _tensor_ty(call.args[0])
    num_segments = call.args[3]
    mode = _str(call.args[4])
    if mode not in SEGMENT_MODES:
        raise ValueError(f"sparse_segment_reduce: unknown mode {mode!r}")
    if dims is None:
        return relax.TensorType(ndim=-1, dtype=str(ty.dtype))
    known = not (isinstance(num_segments, tvm.tirx.IntImm) and num_segments.value < 0)
    if not known:
        return relax.TensorType(ndim=len(dims), dtype=str(ty.dtype))
    return relax.TensorType([num_segments] + dims[1:], str(ty.dtype))


SPARSE_SEGMENT_REDUCE = define_op(
    "sparse_segment_reduce", 5, _infer_segment,
    "TF SparseSegment{Sum,Mean,SqrtN}[WithNumSegments], Segment{Sum,Mean,Max,Min,Prod}; num_segments < 0 means "
    "segment_ids[-1] + 1")


def sparse_segment_reduce(data, indices, segment_ids, num_segments, mode: str) -> relax.Call:
    if isinstance(num_segments, int):
        num_segments = relax.prim_value(tvm.tirx.IntImm("int64", num_segments))
    return relax.Call(SPARSE_SEGMENT_REDUCE, [data, indices, segment_ids, num_segments, _s(mode)])


# --------------------------------------------------------------------------------------------------- Bucketize
def _infer_bucketize(call):
    ty = _tensor_ty(call.args[0])
    return relax.TensorType(ty.shape, "int32") if ty.shape is not None else relax.TensorType(
        ndim=ty.ndim, dtype="int32")


BUCKETIZE = define_op("bucketize", 2, _infer_bucketize, "TF Bucketize: number of boundaries <= x (upper_bound)")


def bucketize(x: relax.Expr, boundaries: relax.Expr) -> relax.Call:
    return relax.Call(BUCKETIZE, [x, boundaries])


# ------------------------------------------------------------------------------------------------- TableFind
def _infer_table_find(call):
    x, values = _tensor_ty(call.args[0]), _tensor_ty(call.args[2])
    return relax.TensorType(x.shape, values.dtype) if x.shape is not None else relax.TensorType(
        ndim=x.ndim, dtype=values.dtype)


TABLE_FIND = define_op("table_find", 4, _infer_table_find,
                       "a static hash table (integer keys): values[k] where sorted_keys[k] == x, else default")


def table_find(x: relax.Expr, sorted_keys: relax.Expr, values: relax.Expr, default: relax.Expr) -> relax.Call:
    """LookupTableFindV2 over integer keys, as a binary search in `sorted_keys` (values permuted alike)."""
    return relax.Call(TABLE_FIND, [x, sorted_keys, values, default])


# ------------------------------------------------------------------------------------------------- WriteSlice
WRITE_SLICE = define_op("write_slice", 3, lambda call: _tensor_ty(call.args[0]),
                        "out with columns [offset, offset + d) replaced by value [B, d] (in place once lowered)")


def write_slice(out: relax.Expr, value: relax.Expr, offset) -> relax.Call:
    """A column the fused kernel does not compute, written into its slice of the fused kernel's output."""
    return relax.Call(WRITE_SLICE, [out, value, _p(offset)])


# ------------------------------------------------------------------------------------------------------ Gather
def _infer_gather(call):
    p = _tensor_ty(call.args[0])
    pd, idims = _dims(call.args[0]), _dims(call.args[1])
    axis = _int(call.args[2])
    if pd is None or idims is None:
        return relax.TensorType(ndim=-1, dtype=str(p.dtype))
    return relax.TensorType(pd[:axis] + idims + pd[axis + 1:], str(p.dtype))


GATHER = define_op("gather", 5, _infer_gather,
                   "TF GatherV2 with TF-CPU's error on out-of-range indices when check is 1; label names the node")


def gather(params, indices, axis: int, check: bool = True, label: str = "") -> relax.Call:
    return relax.Call(GATHER, [params, indices, _p(axis), _p(check), _s(label)])


# ------------------------------------------------------------------------------------------- EmbeddingBag
def _infer_bag(call):
    table = _tensor_ty(call.args[0])
    dims = _dims(call.args[0])
    num_bags = call.args[4]
    if dims is None:
        return relax.TensorType(ndim=2, dtype=str(table.dtype))
    return relax.TensorType([num_bags] + dims[1:], str(table.dtype))


EMBEDDING_BAG = define_op(
    "embedding_bag", 9, _infer_bag,
    "Bags of table rows: out[b] = combine(w[j] * table[ids[j]] for j with rows[j] == b and mask[j]); rows "
    "sorted, empty bags give 0. The canonical form of an embedding column after redundancy elimination.")


def embedding_bag(table, ids, rows, mask, num_bags, mode: str, check: bool = False, label: str = "",
                  weights=None) -> relax.Call:
    """mask: a bool tensor like ids, or the scalar constant True (no entry is skipped).

    check: raise TF's GatherV2 error for a kept id outside [0, rows of table) (otherwise the ids are known to be
    in range, or checked on the host before launch). The label names the TF node and column for that error.
    weights: per-id float weights like ids (a weighted_categorical_column), or None (the scalar constant 1).
    Weighted, TF's combiners are sum(w e), sum(w e) / sum(w) and sum(w e) / sqrt(sum(w^2)), 0 where the divisor
    is 0; unweighted, mean and sqrtn divide by the count and its square root.
    """
    if isinstance(mode, str) and mode not in SEGMENT_MODES:
        raise ValueError(f"embedding_bag: unknown mode {mode!r}")
    if mask is True:
        mask = relax.const(True, "bool")
    if weights is None:
        weights = relax.const(1.0, "float32")
    if isinstance(num_bags, int):
        num_bags = relax.prim_value(tvm.tirx.IntImm("int64", num_bags))
    return relax.Call(EMBEDDING_BAG, [table, ids, rows, mask, num_bags, _s(mode), _p(check), _s(label), weights])


def bag_weighted(call: relax.Call) -> bool:
    """Does this embedding_bag call carry per-id weights?"""
    w = call.args[8]
    return w.ty.shape is None or len(w.ty.shape.values) > 0


# ------------------------------------------------------------------------------------------ FusedEmbedding
def _infer_fused(call):
    sizes = call.args[4]
    return relax.TensorType([sizes.values[0], call.args[5]], "float32")


FUSED_EMBEDDING = define_op(
    "fused_embedding", 6, _infer_fused,
    "All columns of a concat in one kernel (recom_tvm.ops.fused_kernel): (packed, meta, bounds, tables, "
    "shape [B], width) -> [B, width]")


def fused_embedding(packed, meta, bounds, tables, sizes: relax.ShapeExpr, width) -> relax.Call:
    return relax.Call(FUSED_EMBEDDING, [packed, meta, bounds, tables, sizes, _p(width)])

# ------------------------------------------------------------------------------------------ HashStrings
def _infer_hash_strings(call):
    return call.args[0].ty


HASH_STRINGS = define_op(
    "hash_strings", 5, _infer_hash_strings,
    "StringToHashBucketFast of the strings shipped in the fused kernel's packed input, each id written where the "
    "kernel reads it (recom_tvm.ops.fingerprint_tir.hash_packed_func; layout: runtime.fused_layout): (packed, "
    "num_buckets int64 [S], shape [n strings], region word, text int64 [S]: each segment's TEXT_* code) -> the "
    "packed input with the ids")


def hash_strings(packed, num_buckets, strings: relax.ShapeExpr, region: int, text) -> relax.Call:
    return relax.Call(HASH_STRINGS, [packed, num_buckets, strings, _p(region), text])
