"""TF-style feeds -> validated numpy arrays per placeholder, with TF's errors for bad input.

Feeds are keyed by feature name (a dense array, or a SparseTensor-like: `(indices, values, dense_shape)`, a
dict with those keys, or an object with those attributes such as `tf.SparseTensor`) or by placeholder name.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import config
from ..errors import FeedError, InvalidArgumentError, RequestTooLargeError
from .strings import encode_utf8, from_objects
from .spec import InputSpec

SPARSE_PARTS = ("indices", "values", "dense_shape")


def _sparse_parts(name: str, value) -> tuple:
    if type(value) is tuple and len(value) == 3:  # the common case first
        return value
    if isinstance(value, Mapping):
        missing = [p for p in SPARSE_PARTS if p not in value]
        if missing:
            raise FeedError(f"sparse feature {name!r}: the feed lacks {missing}")
        return tuple(value[p] for p in SPARSE_PARTS)
    if all(hasattr(value, p) for p in SPARSE_PARTS):
        return tuple(np.asarray(getattr(value, p)) for p in SPARSE_PARTS)
    if isinstance(value, (tuple, list)) and len(value) == 3:
        return tuple(value)
    raise FeedError(f"sparse feature {name!r}: expected (indices, values, dense_shape), a dict with those keys "
                    f"or a SparseTensor, got {type(value).__name__}")


RAGGED_PARTS = ("values", "row_splits")


def _ragged_parts(name: str, value) -> tuple:
    if isinstance(value, Mapping):
        missing = [p for p in RAGGED_PARTS if p not in value]
        if missing:
            raise FeedError(f"ragged feature {name!r}: the feed lacks {missing}")
        return tuple(value[p] for p in RAGGED_PARTS)
    if all(hasattr(value, p) for p in RAGGED_PARTS):  # tf.RaggedTensor
        return tuple(np.asarray(getattr(value, p)) for p in RAGGED_PARTS)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(value)
    raise FeedError(f"ragged feature {name!r}: expected (values, row_splits), a dict with those keys or a "
                    f"RaggedTensor, got {type(value).__name__}")


def _check_ragged(name: str, values: np.ndarray, splits: np.ndarray) -> None:
    """TF's RaggedTensor validity (from_row_splits with validate=True)."""
    if splits.ndim != 1 or splits.size == 0:
        raise FeedError(f"ragged feature {name!r}: row_splits must be a non-empty vector, got shape "
                        f"{list(splits.shape)}")
    if splits[0] != 0 or (np.diff(splits) < 0).any() or splits[-1] != values.shape[0]:
        raise InvalidArgumentError(f"ragged feature {name!r}: row_splits must start at 0, be non-decreasing and "
                                   f"end at the number of values ({values.shape[0]}); got {splits[:8].tolist()}...")


_NUMPY_DTYPE: dict[str, np.dtype] = {}

# Feed dtype rules (what a native host stage must reproduce; tests/test_feed_errors.py covers each):
# - a "string" placeholder takes str / bytes arrays (numpy "U" / "S") or sequences / object arrays whose elements
#   are all str or bytes; anything else (numbers of any dtype, None, mixed) is a FeedError.
# - a numeric placeholder takes a numeric array; strings, objects and bools (either side) are a FeedError, and so
#   is a change of kind between integers and floats. The placeholder's own dtype passes unchanged. Another dtype
#   of the same kind passes only if every value converts exactly (`cast_exact`): integers inside the target's
#   range (so uint64 2**64 - 1 is not -1, a "missing" id, and int64 2**40 is not 0 in an int32), floats that
#   round-trip (NaN and +-inf included). TF's typed serving refuses any other dtype; accepting exact
#   conversions only is a convenience that cannot change an answer.
# - an empty array of numpy's default float64 (np.asarray([])) becomes the placeholder's dtype (strings too).


def cast_exact(label: str, arr: np.ndarray, dtype) -> np.ndarray:
    """`arr` as `dtype` when the conversion is exact (see the rules above), else FeedError naming `label`."""
    want = np.dtype(dtype)
    if arr.dtype == want:
        return arr
    if arr.dtype == object or arr.dtype.kind in "USVb" or want.kind in "USVOb" \
            or (want.kind in "iu") != (arr.dtype.kind in "iu"):
        raise FeedError(f"feed {label!r} must be {want}, got {arr.dtype}")
    if want.kind in "iu":
        if not np.can_cast(arr.dtype, want, "safe") and arr.size:
            info = np.iinfo(want)
            lo, hi = arr.min(), arr.max()  # compared as Python ints: no wrap-around on either side
            if int(lo) < info.min or int(hi) > info.max:
                raise FeedError(f"feed {label!r} must be {want}; its {arr.dtype} values do not fit "
                                f"(range [{int(lo)}, {int(hi)}])")
        return arr.astype(want)
    cast = arr.astype(want)
    if not np.array_equal(cast.astype(arr.dtype), arr, equal_nan=True):
        raise FeedError(f"feed {label!r} must be {want}; its {arr.dtype} values do not fit")
    return cast


def _convert(name: str, value, dtype: str, shape: list | None) -> np.ndarray:
    """One placeholder's feed as an array of the placeholder's dtype and rank (the rules above)."""
    want = None if dtype == "string" else _NUMPY_DTYPE.get(dtype)
    if want is None and dtype != "string":
        want = _NUMPY_DTYPE[dtype] = np.dtype(dtype)
    if want is not None and type(value) is np.ndarray and value.dtype == want and value.flags.c_contiguous \
            and shape is not None and value.ndim == len(shape) \
            and all(w < 0 or w == g for w, g in zip(shape, value.shape)):
        return value  # the common case, already right: no copies, no per-element checks
    if dtype == "string" and isinstance(value, np.ndarray) and value.dtype.kind in "SU":
        arr = value if value.dtype.kind == "S" else encode_utf8(value)  # vectorized: no per-element Python
    elif dtype == "string":
        if isinstance(value, np.ndarray) and value.dtype != object and value.size:
            raise FeedError(f"feed {name!r} must hold strings, got {value.dtype} data")
        try:
            arr = from_objects(np.asarray(value, dtype=object))
        except AttributeError:
            flat = np.asarray(value, dtype=object).reshape(-1).tolist()
            bad = next(v for v in flat if not isinstance(v, (str, bytes)))
            raise FeedError(f"feed {name!r} must hold strings, got an element of type {type(bad).__name__}") \
                from None
    else:
        try:
            arr = np.asarray(value)
        except ValueError as err:  # ragged nesting, e.g. a SparseTensor's (indices, values, shape) for a dense input
            raise FeedError(f"feed {name!r} must be one {dtype} array: {err}") from None
        if arr.dtype == object or arr.dtype.kind in "USV":
            raise FeedError(f"feed {name!r} must be {dtype}, got {arr.dtype} data")
        if arr.dtype != want and arr.size == 0 and arr.dtype == np.float64:  # np.asarray([]) is float64
            arr = arr.astype(want)
        arr = cast_exact(name, arr, want)
    if shape is not None:
        if arr.ndim != len(shape):
            raise FeedError(f"feed {name!r} must have rank {len(shape)} (shape {_fmt(shape)}), got shape "
                            f"{list(arr.shape)}")
        for i, (want_d, got_d) in enumerate(zip(shape, arr.shape)):
            if want_d >= 0 and want_d != got_d:
                raise FeedError(f"feed {name!r} must have shape {_fmt(shape)}, got {list(arr.shape)} (dim {i})")
    # (np.ascontiguousarray would make a 0-d feed 1-d: a Python or numpy scalar for a scalar placeholder)
    return np.asarray(arr, order="C") if arr.dtype != object else arr


def flush_denormals(arr: np.ndarray) -> np.ndarray:
    """Denormal floats as signed zeros: TF-CPU runs its kernels with denormals flushed to zero (FTZ/DAZ), so a
    denormal feed compares, buckets and divides as +-0 there (e.g. Bucketize(-1e-45) against a boundary 0.0).
    The caller's array is never written: a copy is made when there is something to flush."""
    if not arr.size:
        return arr
    sub = np.abs(arr) < np.finfo(arr.dtype).tiny
    sub &= arr != 0
    if not sub.any():
        return arr
    out = arr.copy()
    out[sub] = np.copysign(np.zeros((), arr.dtype), arr[sub])
    return out


def _fmt(shape: list) -> str:
    return "[" + ", ".join("?" if d < 0 else str(d) for d in shape) + "]"


def _check_sparse(name: str, indices: np.ndarray, values: np.ndarray, dense_shape: np.ndarray) -> None:
    """TF's SparseTensor validity rules (what its sparse kernels reject)."""
    if indices.ndim != 2:
        raise FeedError(f"sparse feature {name!r}: indices must be a matrix [nnz, rank], got shape "
                        f"{list(indices.shape)}")
    if indices.shape[1] != dense_shape.shape[0]:
        raise FeedError(f"sparse feature {name!r}: indices have {indices.shape[1]} columns but dense_shape has "
                        f"{dense_shape.shape[0]} dims")
    if values.shape[0] != indices.shape[0]:
        raise FeedError(f"sparse feature {name!r}: {indices.shape[0]} indices but {values.shape[0]} values")
    if (dense_shape < 0).any():
        raise InvalidArgumentError(f"sparse feature {name!r}: dense_shape {dense_shape.tolist()} has a negative "
                                   "dimension")
    if indices.size:
        bad = (indices < 0) | (indices >= dense_shape[None, :])
        if bad.any():
            i = int(np.argwhere(bad.any(axis=1))[0, 0])
            raise InvalidArgumentError(f"sparse feature {name!r}: indices[{i}] = {indices[i].tolist()} is out of "
                                       f"bounds of dense_shape {dense_shape.tolist()}")


def normalize_feeds(spec: InputSpec, feeds: Mapping) -> dict[str, np.ndarray]:
    """Validate `feeds` and return placeholder tensor name -> array."""
    if not isinstance(feeds, Mapping):
        raise FeedError(f"feeds must be a dict (feature or placeholder name -> value), got {type(feeds).__name__}")
    aliases = spec.__dict__.get("_aliases")
    if aliases is None:  # placeholder names, with and without ":0", that are not feature names (once per model)
        aliases = {}
        for t in spec.placeholders:
            for a in (t, t[:-2] if t.endswith(":0") else t):
                if spec.feature(a) is None:
                    aliases[a] = t
        spec.__dict__["_aliases"] = aliases
    by_tensor = {}
    used = 0
    if len(feeds) > len(spec.features):  # some keyed by placeholder name
        for key, value in feeds.items():
            if key in aliases:
                by_tensor[aliases[key]] = (key, value)
    for f in spec.features:
        name = f["name"]
        tensors = f["tensors"]
        value = feeds.get(name, _MISSING)
        if value is _MISSING and "default" in f and tensors["value"] not in by_tensor:
            by_tensor[tensors["value"]] = (name, spec.default_feed(name))  # placeholder_with_default left out
        elif value is not _MISSING:
            used += 1
            if f["kind"] == "sparse":
                parts = _sparse_parts(name, value)
                for part, val in zip(SPARSE_PARTS, parts):
                    by_tensor[tensors[part]] = (f"{name}.{part}", val)
            elif f["kind"] == "ragged":
                for part, val in zip(RAGGED_PARTS, _ragged_parts(name, value)):
                    by_tensor[tensors[part]] = (f"{name}.{part}", val)
            else:
                by_tensor[tensors["value"]] = (name, value)
        for part, t in tensors.items():
            if t not in by_tensor:
                what = name if f["kind"] == "dense" else f"{name} ({part})"
                raise FeedError(f"missing feed for feature {what}; the model takes "
                                f"{[g['name'] for g in spec.features]}")
    if used + sum(1 for k in feeds if k in aliases) != len(feeds):
        names = {f["name"] for f in spec.features}
        unknown = sorted(str(k) for k in feeds if k not in names and k not in aliases)
        raise FeedError(f"unknown feed(s) {unknown}; the model takes {[g['name'] for g in spec.features]}")
    placeholders = spec.placeholders
    _check_elements((label, np.size(val) if hasattr(val, "size") else len(val) if hasattr(val, "__len__") else 1)
                    for label, val in by_tensor.values())
    _strings_in_one_pass(by_tensor, placeholders)
    out: dict[str, np.ndarray] = {}
    for t, (label, val) in by_tensor.items():
        ph = placeholders[t]
        out[t] = _convert(label, val, ph["dtype"], ph["shape"])
    _check_elements((label, out[t].size) for t, (label, _) in by_tensor.items())
    for t, arr in out.items():
        if arr.dtype.kind == "f":
            out[t] = flush_denormals(arr)
    for f in spec.features:
        tt = f["tensors"]
        if f["kind"] == "sparse":
            _check_sparse(f["name"], out[tt["indices"]], out[tt["values"]], out[tt["dense_shape"]])
            batch = int(out[tt["dense_shape"]][0]) if out[tt["dense_shape"]].size else 0
        elif f["kind"] == "ragged":
            _check_ragged(f["name"], out[tt["values"]], out[tt["row_splits"]])
            batch = out[tt["row_splits"]].size - 1
        else:
            batch = out[tt["value"]].shape[0] if out[tt["value"]].ndim else 0
        if batch > config.max_batch:
            raise RequestTooLargeError(f"feature {f['name']!r}: batch {batch} is above the serving limit "
                                       f"{config.max_batch} (recom_tvm.config.max_batch / RECOM_TVM_MAX_BATCH)")
    return out


def _check_elements(sizes) -> None:
    """Refuse a request whose feeds hold more than config.max_request_elements elements in all."""
    total, largest = 0, ("", 0)
    for label, n in sizes:
        total += int(n)
        largest = max(largest, (label, int(n)), key=lambda x: x[1])
    if total > config.max_request_elements:
        raise RequestTooLargeError(f"the request holds {total} elements (the largest feed, {largest[0]!r}, "
                                   f"{largest[1]}), above the serving limit {config.max_request_elements} "
                                   "(recom_tvm.config.max_request_elements / RECOM_TVM_MAX_REQUEST_ELEMENTS)")


_MISSING = object()


def _strings_in_one_pass(by_tensor: dict, placeholders: dict) -> None:
    """Convert the string feeds given as Python objects (lists, object arrays) together, in chunks of about
    4k strings: the fixed costs are paid per chunk instead of per feed, and a chunk still fits the caches."""
    pending = [(t, np.asarray(v, dtype=object)) for t, (_, v) in by_tensor.items()
               if placeholders[t]["dtype"] == "string" and not (isinstance(v, np.ndarray) and v.dtype.kind in "SU")]
    chunk, size = [], 0
    for i, (t, a) in enumerate(pending):
        chunk.append((t, a))
        size += a.size
        if size < _STRING_CHUNK and i + 1 < len(pending):
            continue
        try:
            flat = from_objects(np.concatenate([x.reshape(-1) for _, x in chunk]))
        except AttributeError:  # a non-string element: the per-feed conversion names the feed
            flat = None
        pos = 0
        for tc, x in chunk:
            if flat is not None:
                by_tensor[tc] = (by_tensor[tc][0], flat[pos:pos + x.size].reshape(x.shape))
            pos += x.size
        chunk, size = [], 0


_STRING_CHUNK = 1 << 12


def sort_rows(feature: dict, env: dict[str, np.ndarray], also=(), describe=str) -> None:
    """Stably sort a sparse feature's entries by row when they are not (TF's SparseFillEmptyRows orders them so).

    The passes ask for this only where every consumer of the feature is order-insensitive (bags of rows), so
    the result equals TF's up to float summation order.
    """
    tt = feature["tensors"]
    idx = env[tt["indices"]]
    rows = idx[:, 0]
    for t in also:  # tensors paired with the values by position (a weighted column's weights)
        if np.shape(env[t])[:1] != (rows.size,):
            raise InvalidArgumentError(f"{describe(t)}: {np.shape(env[t])[0]} entries, but feature "
                                       f"{feature['name']!r} has "
                                       f"{rows.size} (they are paired by position)")
    if rows.size < 2 or bool(np.all(rows[1:] >= rows[:-1])):
        return
    perm = np.argsort(rows, kind="stable")
    env[tt["indices"]] = np.ascontiguousarray(idx[perm])
    env[tt["values"]] = env[tt["values"]][perm]
    for t in also:
        env[t] = np.ascontiguousarray(env[t][perm])


def check_ids(check: dict, ids: np.ndarray, weights: np.ndarray | None = None) -> None:
    """TF-CPU's GatherV2 error for ids outside [0, limit) (EliminateRedundancy moved the check here).

    check: {"tensor", "limit", "label"[, "negative": True][, "low": L][, "where_positive": weights tensor]}. Ids
    >= limit always raise; negative ids raise only with "negative" (else the column drops them before its gather,
    as TF's id filter does); with "low" the raw ids are wrapped by + limit when negative (Keras' Embedding), so
    only raw ids < low raise (reported as TF sees them, wrapped); with "where_positive" (`weights` given) only ids
    whose weight is > 0 count (a weighted column drops the others). The first offending position is reported."""
    ids = np.asarray(ids).reshape(-1)
    if not ids.size:
        return
    limit = check["limit"]
    low = check.get("low")
    if low is not None and int(ids.min()) < low:
        pos = int(np.argmax(ids < low))
        raise InvalidArgumentError(f"{check['label']}: indices[{pos}] = {int(ids[pos]) + limit} is not in "
                                   f"[0, {limit})")
    negative = check.get("negative", False)
    if int(ids.max()) < limit and not (negative and int(ids.min()) < 0):
        return
    bad = (ids >= limit) | (ids < 0) if negative else ids >= limit
    if weights is not None:
        bad &= np.asarray(weights).reshape(-1) > 0
    if not bad.any():
        return
    pos = int(np.argmax(bad))
    raise InvalidArgumentError(f"{check['label']}: indices[{pos}] = {int(ids[pos])} is not in [0, {limit})")
