"""Merging the requests Triton's dynamic batcher hands over together into one run, and splitting the answers.

Why not Triton's own concatenation: Triton batches by concatenating every input along dim 0. That is right for
a dense feature ([B, ...]) and for serialized tf.Examples ([B]), but wrong for a SparseTensor: concatenating two
requests' `indices` keeps their row numbers (both start at row 0), and `dense_shape` ([2] per request) would
become [4]. So the batching unit is the request: every Triton request carries one whole recom_tvm request with a
leading request dimension of 1 (wire.py), the dynamic batcher groups requests, and this module merges a group
the way TF would see the rows arrive together: dense features concatenated, sparse `indices` shifted by the rows
before them, `dense_shape[0]` summed, ragged `row_splits` shifted. The outputs are split back by row ranges.

When it is right, and what is checked:
- The model is row-wise: each output's dim 0 is the batch (a feature column's "batch size of feature" symbol of
  the spec; in a graph without feature columns, dim 0 of a dense feed or dense_shape[0] of a sparse one); the
  rows of one request do not change the answers of another. That is the assumption Triton's and TF Serving's
  batching make; a model that mixes rows (batch statistics, a softmax over the batch) must be exported with
  merging off (`export_triton(..., merge_requests=False)`).
- Only requests with the same padding merge: equal dtypes, equal trailing dims of dense features and equal
  dense_shape[1:] of sparse features, so a merged request holds exactly the rows and padding that came in.
  (A tf.Example model's VarLen features are padded by the parser to the longest list of the merged batch, as
  under TF Serving's batching: neutral for embedding columns.)
- A request is merged only if it is well-formed where merging relies on it: all features agree on the batch,
  sparse indices lie inside their dense_shape, row_splits are valid. Otherwise it runs alone and gets the
  runtime's (TF's) error. Shifting rows of an invalid request could otherwise land its ids in a neighbour's rows.
- If the merged run fails (one request has an out-of-range id, say), every request of the group runs alone, so
  each gets its own answer or error.
- A dense feature without a batch dim (a scalar threshold, a scale) is the same for every row of a request:
  requests merge only where its value is equal (the merged run gets that value).
- A feature with a default (placeholder_with_default) may be left out: requests that leave out the same ones
  merge, and the merged run takes each default once. That is each request's answer wherever the model treats
  the default row-wise (broadcasts it: a one-row default is repeated to the merged rows where the spec lists it,
  runtime/row_broadcast.py); where the default's own row count meets the batch's, the merged run fails and every
  request runs alone. A request feeding such a feature one row against B rows of the others merges once the
  executor has repeated that row to the request's rows (executor.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .wire import PARTS

SHARED_MAX = 4096  # elements of a feature without a batch dim that a merge key may hold (compared by value)


class Merger:
    """Merges feeds of several requests of one model. `reason` is None when merging is possible, else why not."""

    def __init__(self, spec) -> None:
        self.reason, unaligned = _not_row_wise(spec)
        self.features = [{"name": f["name"], "kind": f["kind"], "optional": "default" in f,
                          "shared": _without_batch(spec, f) or f["name"] in unaligned} for f in spec.features]

    # ------------------------------------------------------------------------------------------- inspect
    def inspect(self, feeds: Mapping) -> tuple[int, tuple] | None:
        """(rows, merge key) of a request, or None if it must run alone."""
        if self.reason is not None:
            return None
        rows, key = None, []
        try:
            for f in self.features:
                if f["optional"] and f["name"] not in feeds:
                    key.append("default")  # merges with requests that leave it out too: one default for all
                    continue
                value = feeds[f["name"]]
                if f["shared"]:  # no batch dim (a threshold, a scale): merged only with requests of equal value
                    arr = np.asarray(value)
                    if arr.dtype == object or arr.size > SHARED_MAX:
                        return None
                    key.append(("shared", arr.dtype.str, arr.shape, arr.tobytes()))
                    continue
                if f["kind"] == "dense":
                    arr = np.asarray(value)
                    if arr.ndim == 0:
                        return None
                    r, k = arr.shape[0], (arr.dtype.str, arr.shape[1:])
                elif f["kind"] == "sparse":
                    r, k = _inspect_sparse(*value)
                else:
                    r, k = _inspect_ragged(*value)
                if r is None or (rows is not None and r != rows):
                    return None  # inconsistent batches: the runtime raises TF's error for this request alone
                rows = r
                key.append(k)
        except (KeyError, TypeError, ValueError):
            return None
        return (rows or 0), tuple(key)

    # ------------------------------------------------------------------------------------- merge / split
    def merge(self, feeds_list: list[Mapping], rows: list[int]) -> dict:
        """One request holding the rows of every request of `feeds_list`, in order."""
        offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
        total = int(sum(rows))
        merged = {}
        for f in self.features:
            name = f["name"]
            if name not in feeds_list[0]:  # an optional feature every request of the group leaves out (equal keys)
                continue
            values = [feeds[name] for feeds in feeds_list]
            if f["shared"]:
                merged[name] = values[0]  # equal in every request of the group (equal keys)
            elif f["kind"] == "dense":
                merged[name] = np.concatenate([np.asarray(v) for v in values], axis=0)
            elif f["kind"] == "sparse":
                indices = []
                for (idx, _, _), off in zip(values, offsets.tolist()):
                    idx = np.array(idx, dtype=np.int64, copy=True)
                    idx[:, 0] += off
                    indices.append(idx)
                shape = np.array(np.asarray(values[0][2]), dtype=np.int64, copy=True)
                shape[0] = total
                merged[name] = (np.concatenate(indices, axis=0), _concat([v[1] for v in values]), shape)
            else:
                starts = np.cumsum([0] + [np.asarray(v[0]).shape[0] for v in values])
                splits = [np.asarray(values[0][1])[:1]] + [np.asarray(v[1])[1:] + s for v, s in zip(values, starts)]
                merged[name] = (_concat([v[0] for v in values]), np.concatenate(splits).astype(
                    np.asarray(values[0][1]).dtype))
        return merged

    @staticmethod
    def split(outputs: Mapping[str, np.ndarray], rows: list[int]) -> list[dict]:
        """The merged run's outputs -> each request's rows."""
        total = int(sum(rows))
        for name, arr in outputs.items():
            if np.ndim(arr) == 0 or np.shape(arr)[0] != total:
                raise ValueError(f"output {name!r} has shape {list(np.shape(arr))}, not {total} rows: not row-wise")
        bounds = np.cumsum([0] + list(rows)).tolist()
        return [{name: arr[a:b] for name, arr in outputs.items()} for a, b in zip(bounds[:-1], bounds[1:])]


def plan(keys: list[tuple | None], rows: list[int | None], max_rows: int) -> list[list[int]]:
    """Groups of request positions to run together: equal keys, at most `max_rows` rows per group (a larger
    request alone), first-come order inside a group; None keys alone."""
    groups: list[list[int]] = []
    open_group: dict = {}  # key -> (group, rows so far)
    for i, (key, n) in enumerate(zip(keys, rows)):
        if key is None:
            groups.append([i])
            continue
        current = open_group.get(key)
        if current is None or current[1] + n > max_rows:
            current = open_group[key] = ([], 0)
            groups.append(current[0])
        current[0].append(i)
        open_group[key] = (current[0], current[1] + n)
    return groups


def _concat(arrays: list) -> np.ndarray:
    arrays = [np.asarray(a) for a in arrays]
    return np.concatenate(arrays, axis=0) if arrays else np.zeros(0)


def _inspect_sparse(indices, values, dense_shape) -> tuple:
    idx, vals, shape = np.asarray(indices), np.asarray(values), np.asarray(dense_shape)
    if (shape.ndim != 1 or shape.size < 1 or shape.dtype.kind not in "iu" or idx.dtype.kind not in "iu"
            or idx.ndim != 2 or idx.shape[1] != shape.size or vals.ndim != 1 or vals.shape[0] != idx.shape[0]
            or (shape < 0).any()):
        return None, None
    if idx.size and ((idx < 0).any() or (idx >= shape[None, :]).any()):
        return None, None
    return int(shape[0]), (idx.dtype.str, vals.dtype.str, tuple(shape[1:].tolist()))


def _inspect_ragged(values, row_splits) -> tuple:
    vals, splits = np.asarray(values), np.asarray(row_splits)
    if (splits.ndim != 1 or splits.size < 1 or splits.dtype.kind not in "iu" or vals.ndim < 1 or splits[0] != 0
            or (np.diff(splits) < 0).any() or splits[-1] != vals.shape[0]):
        return None, None
    return splits.size - 1, (vals.dtype.str, splits.dtype.str, vals.shape[1:])


def _without_batch(spec, f: dict) -> bool:
    """A dense feature of no batch dim: a scalar or a fixed shape (a threshold, a scale, keep_prob)."""
    if f["kind"] != "dense":
        return False
    shape = spec.placeholders[f["tensors"]["value"]]["shape"]
    return shape is not None and (not shape or shape[0] >= 0)


def _not_row_wise(spec) -> tuple[str | None, set]:
    """(why the model's requests cannot be merged or None, the dense features merged only by equal value).

    The batch: a feature column's batch symbol ("batch size of feature"), or in a graph without feature columns
    the outputs' dim 0 where it is dim 0 of a dense feed or dense_shape[0] of a sparse one. There, a feed whose own
    dim 0 is another symbol is not known to be row-aligned with the outputs (a list of ids the model looks up as
    a set, a 1-row context): a dense one merges only with requests of an equal value, a sparse one stops merging."""
    if not spec.features:
        return "the model has no features", set()
    for f in spec.features:
        if f["kind"] not in PARTS:
            return f"feature {f['name']!r} of kind {f['kind']!r}", set()
    symbols = getattr(spec, "feed_symbols", {}) or {}
    dim0 = {(t, kind): s for s, (t, axis, kind) in symbols.items() if axis == 0}
    structured = {s for s, origin in spec.symbols.items() if str(origin).startswith("batch size of feature")}
    out0 = {o["shape"][0] for o in spec.outputs if o["shape"]}
    raw = {s for s in out0 if str(spec.symbols.get(s, "")).startswith(("dim 0 of feed ", "value 0 of feed "))}
    for o in spec.outputs:
        if not o["shape"] or o["shape"][0] not in structured | raw:
            return f"output {o['name']!r} (shape {o['shape']}) is not row-wise: its dim 0 is not the batch", set()
    unaligned = set()
    if raw:
        for f in spec.features:
            if f["kind"] == "dense" and not _without_batch(spec, f):
                if dim0.get((f["tensors"]["value"], "shape")) not in raw:
                    unaligned.add(f["name"])
            elif f["kind"] == "sparse" and dim0.get((f["tensors"]["dense_shape"], "value")) not in raw:
                return f"sparse feature {f['name']!r}: its rows are not known to be the outputs' rows", set()
            elif f["kind"] == "ragged":
                return f"ragged feature {f['name']!r} in a graph without feature columns", set()
        # a feature TF broadcasts against aligned rows (row_broadcast: it meets them row for row, repeated where
        # it came with one) is aligned too
        groups = getattr(spec, "row_broadcast", None) or []
        for _ in range(len(groups)):  # until nothing changes: an anchor may be aligned by another group
            before = len(unaligned)
            for group in groups:
                if any(a[0] not in unaligned and a[1] == "value" and a[2] == 0 for a in group["anchors"]):
                    unaligned -= set(group["features"])
            if len(unaligned) == before:
                break
    return None, unaligned
