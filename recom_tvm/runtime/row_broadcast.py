"""Repeat a one-row feed that TF broadcasts against the batch (the importer's analysis: frontend/row_broadcast.py).

The compiled model binds such a feed's dim 0 to the batch it meets; TF broadcasts its one row. For the features the
spec lists (`spec.row_broadcast`: groups of {"features", "anchors": [[feature, part, axis, kind], ...]}), a request
feeding one row where an anchor has B != 1 rows gets the row repeated B times, which gives TF's answer (the feed reaches the
broadcast through row-wise ops only). Any other size goes as fed: the binding raises TF's error where sizes
disagree. Per request: a dict lookup and a shape per listed feature; nothing for models without such features."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .feeds import _sparse_parts


def _anchor_size(feeds: Mapping, anchor: list) -> int | None:
    name, part, axis, kind = anchor
    value = feeds.get(name)
    if value is None:
        return None
    try:
        if part == "value":
            # kind "value": a size fed as data (an int scalar or a small shape vector: tf.zeros([n, d]) + user),
            # read from its values as for a sparse dense_shape; it was read from the feed's shape (a scalar n gave
            # no size, a [3, 4] shape 2 rows: TF's broadcast refused)
            arr = value
        else:
            parts = dict(zip(("indices", "values", "dense_shape"), _sparse_parts(name, value)))
            arr = parts.get(part)
            if arr is None:
                return None
        if kind == "value":
            flat = np.asarray(arr).reshape(-1)
            size = int(flat[axis]) if axis < flat.size else None
            return size if size is not None and size >= 0 else None  # (a negative size: TF's error, as fed)
        dims = np.shape(arr)
        return int(dims[axis]) if axis < len(dims) else None
    except Exception:  # noqa: BLE001 - a malformed feed: the feed checks raise TF's error for it
        return None


def repeat_one_row_feeds(spec, feeds):
    """`feeds` with each listed group of one-row features repeated to the size it is broadcast against (a new
    dict where one changes; the caller's is not modified). A group (features the model joins row by row, e.g.
    in a concat) is repeated only when every member present has one row: TF raises otherwise, and so does the
    binding."""
    plan = getattr(spec, "row_broadcast", None)
    if not plan or not isinstance(feeds, Mapping):
        return feeds
    out = None
    for _ in range(len(plan)):  # an anchor may be a member of a group repeated in this loop
        grew = False
        for group in plan:
            cur = out or feeds
            present = [n for n in group["features"] if cur.get(n) is not None]
            if not present or any(np.shape(cur[n])[:1] != (1,) for n in present):
                continue
            sizes = [_anchor_size(cur, a) for a in group["anchors"]]
            rows = next((s for s in sizes if s is not None and s != 1), None)
            if rows is None:
                continue
            out = dict(feeds) if out is None else out
            for n in present:
                out[n] = np.repeat(np.asarray(out[n]), rows, axis=0)
            grew = True
        if not grew:
            break
    return out if out is not None else feeds
