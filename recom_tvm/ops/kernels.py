"""TIR kernels behind the recom ops, written once for every target.

Each kernel is sblock TIR whose outer loops are spatial: on llvm it runs as written, on CUDA dlight's Fallback rule
binds those loops to blocks/threads. Kernels whose work is inherently sequential (scans, compaction) use a unit
spatial loop and run on one thread: correct and simple. They belong to the *unoptimized* module; the redundancy
passes delete them (SparseFillEmptyRows, Unique, Where on ids) or replace them with the fused kernel.

Factories are cached per dtype combination so a module holds one PrimFunc per variant.
"""

from __future__ import annotations

import functools

from tvm import tirx
from tvm.script import tirx as T

I64 = "int64"


@functools.cache
def count_nonzero(cond_dtype: str):
    """out[0] = number of non-zero elements of a flat tensor."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_c: T.handle, var_out: T.handle):
        n = T.int64()
        c = T.match_buffer(var_c, (n,), cond_dtype)
        out = T.match_buffer(var_out, (1,), I64)
        for u in T.serial(1):
            with T.sblock("count_nonzero"):
                vu = T.axis.spatial(1, u)
                T.reads(c[0:n])
                T.writes(out[vu])
                acc = T.alloc_buffer((1,), I64, scope="local")
                acc[0] = T.int64(0)
                for i in T.serial(n):
                    if T.Cast("bool", c[i]):
                        acc[0] = acc[0] + T.int64(1)
                out[vu] = acc[0]

    return kernel


@functools.cache
def where_fill(cond_dtype: str):
    """Coordinates (row-major order) of the non-zero elements of a tensor given flat, with its dims."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_c: T.handle, var_dims: T.handle, var_out: T.handle):
        n = T.int64()
        r = T.int64()
        k = T.int64()
        c = T.match_buffer(var_c, (n,), cond_dtype)
        dims = T.match_buffer(var_dims, (r,), I64)
        out = T.match_buffer(var_out, (k, r), I64)
        for u in T.serial(1):
            with T.sblock("where_fill"):
                vu = T.axis.spatial(1, u)
                T.reads(c[0:n], dims[0:r])
                T.writes(out[0:k, 0:r])
                pos = T.alloc_buffer((1,), I64, scope="local")
                rem = T.alloc_buffer((1,), I64, scope="local")
                pos[0] = T.int64(0)
                for i in T.serial(n):
                    if T.Cast("bool", c[i]):
                        rem[0] = i
                        for jj in T.serial(r):
                            out[pos[0], r - 1 - jj] = T.floormod(rem[0], dims[r - 1 - jj])
                            rem[0] = T.floordiv(rem[0], dims[r - 1 - jj])
                        pos[0] = pos[0] + T.int64(1)

    return kernel


@functools.cache
def sparse_reshape():
    """Re-linearize sparse indices from one dense shape to another (shapes given as int64 tensors)."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_idx: T.handle, var_in: T.handle, var_outshape: T.handle, var_out: T.handle):
        n = T.int64()
        ri = T.int64()
        ro = T.int64()
        idx = T.match_buffer(var_idx, (n, ri), I64)
        in_shape = T.match_buffer(var_in, (ri,), I64)
        out_shape = T.match_buffer(var_outshape, (ro,), I64)
        out = T.match_buffer(var_out, (n, ro), I64)
        for i in T.serial(n):
            with T.sblock("sparse_reshape"):
                vi = T.axis.spatial(n, i)
                T.reads(idx[vi, 0:ri], in_shape[0:ri], out_shape[0:ro])
                T.writes(out[vi, 0:ro])
                lin = T.alloc_buffer((1,), I64, scope="local")
                lin[0] = T.int64(0)
                for j in T.serial(ri):
                    lin[0] = lin[0] * in_shape[j] + idx[vi, j]
                for jj in T.serial(ro):
                    out[vi, ro - 1 - jj] = T.floormod(lin[0], out_shape[ro - 1 - jj])
                    lin[0] = T.floordiv(lin[0], out_shape[ro - 1 - jj])

    return kernel


@functools.cache
def row_counts():
    """counts[r] = number of entries of sparse indices in row r (rows given by indices[:, 0])."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_idx: T.handle, var_counts: T.handle):
        n = T.int64()
        rank = T.int64()
        b = T.int64()
        idx = T.match_buffer(var_idx, (n, rank), I64)
        counts = T.match_buffer(var_counts, (b,), I64)
        for u in T.serial(1):
            with T.sblock("row_counts"):
                vu = T.axis.spatial(1, u)
                T.reads(idx[0:n, 0])
                T.writes(counts[0:b])
                for r in T.serial(b):
                    counts[r] = T.int64(0)
                for i in T.serial(n):
                    counts[idx[i, 0]] = counts[idx[i, 0]] + T.int64(1)

    return kernel


@functools.cache
def sfer_fill(value_dtype: str):
    """SparseFillEmptyRows given per-row counts: stable counting sort by row, a default entry per empty row."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_idx: T.handle, var_vals: T.handle, var_default: T.handle, var_counts: T.handle,
               var_oidx: T.handle, var_ovals: T.handle, var_empty: T.handle, var_rev: T.handle,
               var_cursor: T.handle):
        n = T.int64()
        rank = T.int64()
        b = T.int64()
        m = T.int64()
        idx = T.match_buffer(var_idx, (n, rank), I64)
        vals = T.match_buffer(var_vals, (n,), value_dtype)
        default = T.match_buffer(var_default, (), value_dtype)
        counts = T.match_buffer(var_counts, (b,), I64)
        oidx = T.match_buffer(var_oidx, (m, rank), I64)
        ovals = T.match_buffer(var_ovals, (m,), value_dtype)
        empty = T.match_buffer(var_empty, (b,), "bool")
        rev = T.match_buffer(var_rev, (n,), I64)
        cursor = T.match_buffer(var_cursor, (b,), I64)
        for u in T.serial(1):
            with T.sblock("sfer_fill"):
                vu = T.axis.spatial(1, u)
                T.reads(idx[0:n, 0:rank], vals[0:n], default[()], counts[0:b])
                T.writes(oidx[0:m, 0:rank], ovals[0:m], empty[0:b], rev[0:n], cursor[0:b])
                run = T.alloc_buffer((1,), I64, scope="local")
                run[0] = T.int64(0)
                for r in T.serial(b):
                    cursor[r] = run[0]
                    empty[r] = counts[r] == T.int64(0)
                    if counts[r] == T.int64(0):
                        oidx[run[0], 0] = r
                        for j in T.serial(rank - 1):
                            oidx[run[0], j + 1] = T.int64(0)
                        ovals[run[0]] = default[()]
                        run[0] = run[0] + T.int64(1)
                    else:
                        run[0] = run[0] + counts[r]
                for i in T.serial(n):
                    pos = cursor[idx[i, 0]]
                    for j in T.serial(rank):
                        oidx[pos, j] = idx[i, j]
                    ovals[pos] = vals[i]
                    rev[i] = pos
                    cursor[idx[i, 0]] = pos + T.int64(1)

    return kernel


@functools.cache
def first_occurrence(dtype: str):
    """first[i] = smallest j with x[j] == x[i] (parallel over i)."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_x: T.handle, var_first: T.handle):
        n = T.int64()
        x = T.match_buffer(var_x, (n,), dtype)
        first = T.match_buffer(var_first, (n,), I64)
        for i in T.serial(n):
            with T.sblock("first_occurrence"):
                vi = T.axis.spatial(n, i)
                T.reads(x[0:n])
                T.writes(first[vi])
                f = T.alloc_buffer((1,), I64, scope="local")
                f[0] = vi
                for jj in T.serial(n):
                    if jj < f[0] and x[jj] == x[vi]:
                        f[0] = jj
                first[vi] = f[0]

    return kernel


@functools.cache
def count_firsts():
    """out[0] = number of i with first[i] == i (the number of unique values)."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_first: T.handle, var_out: T.handle):
        n = T.int64()
        first = T.match_buffer(var_first, (n,), I64)
        out = T.match_buffer(var_out, (1,), I64)
        for u in T.serial(1):
            with T.sblock("count_firsts"):
                vu = T.axis.spatial(1, u)
                T.reads(first[0:n])
                T.writes(out[vu])
                acc = T.alloc_buffer((1,), I64, scope="local")
                acc[0] = T.int64(0)
                for i in T.serial(n):
                    if first[i] == i:
                        acc[0] = acc[0] + T.int64(1)
                out[vu] = acc[0]

    return kernel


@functools.cache
def unique_fill(dtype: str, idx_dtype: str):
    """TF Unique: values in order of first occurrence, and each element's position among them."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_x: T.handle, var_first: T.handle, var_y: T.handle, var_idx: T.handle, var_rank: T.handle):
        n = T.int64()
        u = T.int64()
        x = T.match_buffer(var_x, (n,), dtype)
        first = T.match_buffer(var_first, (n,), I64)
        y = T.match_buffer(var_y, (u,), dtype)
        idx = T.match_buffer(var_idx, (n,), idx_dtype)
        rank = T.match_buffer(var_rank, (n,), I64)
        for w in T.serial(1):
            with T.sblock("unique_fill"):
                vw = T.axis.spatial(1, w)
                T.reads(x[0:n], first[0:n])
                T.writes(y[0:u], idx[0:n], rank[0:n])
                cnt = T.alloc_buffer((1,), I64, scope="local")
                cnt[0] = T.int64(0)
                for i in T.serial(n):
                    if first[i] == i:
                        rank[i] = cnt[0]
                        y[cnt[0]] = x[i]
                        cnt[0] = cnt[0] + T.int64(1)
                    idx[i] = T.Cast(idx_dtype, rank[first[i]])

    return kernel


@functools.cache
def last_segment_plus_one(seg_dtype: str):
    """out[0] = segment_ids[k-1] + 1, or 0 when k == 0 (TF's output row count without num_segments)."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_seg: T.handle, var_out: T.handle):
        k = T.int64()
        seg = T.match_buffer(var_seg, (k,), seg_dtype)
        out = T.match_buffer(var_out, (1,), I64)
        for u in T.serial(1):
            with T.sblock("last_segment"):
                vu = T.axis.spatial(1, u)
                T.reads(seg[0:k])
                T.writes(out[vu])
                out[vu] = T.if_then_else(k > 0, T.Cast(I64, seg[k - 1]) + T.int64(1), T.int64(0))

    return kernel


@functools.cache
def segment_reduce(dtype: str, idx_dtype: str, seg_dtype: str, mode: str):
    """out[s, :] = combine(data[indices[j], :] for j in segment s); segment ids sorted (TF requires it).

    Each segment finds its [lo, hi) by binary search, so the work is parallel over segments.
    mode: "sum", "mean" (sum / count), "sqrtn" (sum / sqrt(count)), "max", "min" or "prod"; empty segments give
    0 (TF's SegmentMax / SegmentMin too), 1 for "prod" (TF's SegmentProd). Float max / min start at -inf / +inf
    as TF's (TVM's min_value / max_value are finite: a segment of -inf gave -3.4e38).
    """
    floating = dtype.startswith("bfloat") or dtype.startswith("float")
    lowest = tirx.const(float("-inf"), dtype) if floating else tirx.min_value(dtype)
    highest = tirx.const(float("inf"), dtype) if floating else tirx.max_value(dtype)

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_data: T.handle, var_ind: T.handle, var_seg: T.handle, var_out: T.handle):
        rows = T.int64()
        d = T.int64()
        k = T.int64()
        s = T.int64()
        data = T.match_buffer(var_data, (rows, d), dtype)
        ind = T.match_buffer(var_ind, (k,), idx_dtype)
        seg = T.match_buffer(var_seg, (k,), seg_dtype)
        out = T.match_buffer(var_out, (s, d), dtype)
        for i in T.serial(s):
            with T.sblock("segment_reduce"):
                vi = T.axis.spatial(s, i)
                T.reads(data[0:rows, 0:d], ind[0:k], seg[0:k])
                T.writes(out[vi, 0:d])
                lo = T.alloc_buffer((1,), I64, scope="local")
                hi = T.alloc_buffer((1,), I64, scope="local")
                end = T.alloc_buffer((1,), I64, scope="local")
                acc = T.alloc_buffer((1,), dtype, scope="local")
                lo[0] = T.int64(0)  # lower_bound(seg, vi)
                hi[0] = k
                while lo[0] < hi[0]:
                    if T.Cast(I64, seg[T.floordiv(lo[0] + hi[0], 2)]) < vi:
                        lo[0] = T.floordiv(lo[0] + hi[0], 2) + T.int64(1)
                    else:
                        hi[0] = T.floordiv(lo[0] + hi[0], 2)
                end[0] = lo[0]  # upper_bound(seg, vi)
                hi[0] = k
                while end[0] < hi[0]:
                    if T.Cast(I64, seg[T.floordiv(end[0] + hi[0], 2)]) <= vi:
                        end[0] = T.floordiv(end[0] + hi[0], 2) + T.int64(1)
                    else:
                        hi[0] = T.floordiv(end[0] + hi[0], 2)
                for j in T.serial(d):
                    if mode == "max":  # TF's SegmentMax: an empty segment gives 0
                        acc[0] = T.if_then_else(end[0] > lo[0], lowest, T.Cast(dtype, 0))
                        for jj in T.serial(end[0] - lo[0]):
                            acc[0] = T.max(acc[0], data[T.Cast(I64, ind[lo[0] + jj]), j])
                    elif mode == "min":  # SegmentMin: 0 for an empty segment as well
                        acc[0] = T.if_then_else(end[0] > lo[0], highest, T.Cast(dtype, 0))
                        for jj in T.serial(end[0] - lo[0]):
                            acc[0] = T.min(acc[0], data[T.Cast(I64, ind[lo[0] + jj]), j])
                    elif mode == "prod":  # SegmentProd: 1 for an empty segment
                        acc[0] = T.Cast(dtype, 1)
                        for jj in T.serial(end[0] - lo[0]):
                            acc[0] = acc[0] * data[T.Cast(I64, ind[lo[0] + jj]), j]
                    else:
                        acc[0] = T.Cast(dtype, 0)
                        for jj in T.serial(end[0] - lo[0]):
                            acc[0] = acc[0] + data[T.Cast(I64, ind[lo[0] + jj]), j]
                    if mode in ("sum", "max", "min", "prod"):
                        out[vi, j] = acc[0]
                    elif mode == "mean":
                        out[vi, j] = T.if_then_else(end[0] > lo[0], acc[0] / T.Cast(dtype, end[0] - lo[0]),
                                                    T.Cast(dtype, 0))
                    else:
                        out[vi, j] = T.if_then_else(end[0] > lo[0],
                                                    acc[0] / T.sqrt(T.Cast(dtype, end[0] - lo[0])),
                                                    T.Cast(dtype, 0))

    return kernel


@functools.cache
def write_slice(dtype: str, width: int, dim: int, offset: int):
    """out[:, offset:offset + dim] = value, in place (call_tir_inplace on `out`)."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_out: T.handle, var_value: T.handle):
        b = T.int64()
        out = T.match_buffer(var_out, (b, T.int64(width)), dtype)
        value = T.match_buffer(var_value, (b, T.int64(dim)), dtype)
        for i, j in T.grid(b, T.int64(dim)):
            with T.sblock("write_slice"):
                vi, vj = T.axis.remap("SS", [i, j])
                T.reads(value[vi, vj])
                T.writes(out[vi, vj + T.int64(offset)])
                out[vi, vj + T.int64(offset)] = value[vi, vj]

    return kernel


@functools.cache
def table_find(key_dtype: str, value_dtype: str, steps: int):
    """out[i] = values[k] if keys[k] == x[i] (keys sorted, `steps` = bits of len(keys)), else default[0]."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_x: T.handle, var_keys: T.handle, var_values: T.handle, var_default: T.handle,
               var_out: T.handle):
        n = T.int64()
        m = T.int64()
        x = T.match_buffer(var_x, (n,), key_dtype)
        keys = T.match_buffer(var_keys, (m,), key_dtype)
        values = T.match_buffer(var_values, (m,), value_dtype)
        default = T.match_buffer(var_default, (1,), value_dtype)
        out = T.match_buffer(var_out, (n,), value_dtype)
        for i in T.serial(n):
            with T.sblock("table_find"):
                vi = T.axis.spatial(n, i)
                T.reads(x[vi], keys[0:m], values[0:m], default[0])
                T.writes(out[vi])
                lo = T.alloc_buffer((2,), I64, scope="local")  # [lo, hi): lower_bound by halving
                lo[0] = T.int64(0)
                lo[1] = m
                for _ in T.serial(steps):
                    if lo[0] < lo[1]:
                        if keys[(lo[0] + lo[1]) // T.int64(2)] < x[vi]:
                            lo[0] = (lo[0] + lo[1]) // T.int64(2) + T.int64(1)
                        else:
                            lo[1] = (lo[0] + lo[1]) // T.int64(2)
                if lo[0] < m and keys[T.min(lo[0], m - T.int64(1))] == x[vi]:
                    out[vi] = values[T.min(lo[0], m - T.int64(1))]
                else:
                    out[vi] = default[0]

    return kernel


@functools.cache
def index_range_check(idx_dtype: str):
    """status = [number of indices outside [0, limit), position of the first, its value]."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_idx: T.handle, limit: T.int64, var_status: T.handle):
        n = T.int64()
        idx = T.match_buffer(var_idx, (n,), idx_dtype)
        status = T.match_buffer(var_status, (3,), I64)
        for u in T.serial(1):
            with T.sblock("index_range_check"):
                vu = T.axis.spatial(1, u)
                T.reads(idx[0:n])
                T.writes(status[0:3])
                status[0] = T.int64(0)
                status[1] = T.int64(-1)
                status[2] = T.int64(0)
                for i in T.serial(n):
                    if T.Cast(I64, idx[i]) < T.int64(0) or T.Cast(I64, idx[i]) >= limit:
                        if status[0] == T.int64(0):
                            status[1] = i
                            status[2] = T.Cast(I64, idx[i])
                        status[0] = status[0] + T.int64(1)

    return kernel


@functools.cache
def unique_hash(dtype: str, idx_dtype: str):
    """TF Unique over integers in one pass with an open-addressing hash table (scratch of `cap` slots, cap > n).

    Writes the unique values (first-occurrence order) to y_scratch[0:u], each element's index, and u.
    """

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_x: T.handle, var_ys: T.handle, var_idx: T.handle, var_count: T.handle, var_keys: T.handle,
               var_vals: T.handle):
        n = T.int64()
        cap = T.int64()
        x = T.match_buffer(var_x, (n,), dtype)
        ys = T.match_buffer(var_ys, (n,), dtype)
        idx = T.match_buffer(var_idx, (n,), idx_dtype)
        count = T.match_buffer(var_count, (1,), I64)
        keys = T.match_buffer(var_keys, (cap,), dtype)
        vals = T.match_buffer(var_vals, (cap,), I64)
        for w in T.serial(1):
            with T.sblock("unique_hash"):
                vw = T.axis.spatial(1, w)
                T.reads(x[0:n])
                T.writes(ys[0:n], idx[0:n], count[vw], keys[0:cap], vals[0:cap])
                u = T.alloc_buffer((1,), I64, scope="local")
                h = T.alloc_buffer((1,), I64, scope="local")
                u[0] = T.int64(0)
                for c in T.serial(cap):
                    vals[c] = T.int64(-1)
                for i in T.serial(n):
                    # multiplicative hash of the 64-bit pattern, reduced mod cap
                    h[0] = T.Cast(I64, T.shift_right(T.Cast("uint64", x[i]) * T.uint64(0x5851F42D4C957F2D),
                                                     T.uint64(17)) % T.Cast("uint64", cap))
                    while vals[h[0]] >= T.int64(0) and keys[h[0]] != x[i]:
                        h[0] = T.if_then_else(h[0] + T.int64(1) == cap, T.int64(0), h[0] + T.int64(1))
                    if vals[h[0]] < T.int64(0):
                        keys[h[0]] = x[i]
                        vals[h[0]] = u[0]
                        ys[u[0]] = x[i]
                        u[0] = u[0] + T.int64(1)
                    idx[i] = T.Cast(idx_dtype, vals[h[0]])
                count[vw] = u[0]

    return kernel


@functools.cache
def copy_prefix(dtype: str):
    """out[0:u] = src[0:u]."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_src: T.handle, var_out: T.handle):
        n = T.int64()
        u = T.int64()
        src = T.match_buffer(var_src, (n,), dtype)
        out = T.match_buffer(var_out, (u,), dtype)
        for i in T.serial(u):
            with T.sblock("copy_prefix"):
                vi = T.axis.spatial(u, i)
                out[vi] = src[vi]

    return kernel


@functools.cache
def embedding_bag(dtype: str, id_dtype: str, row_dtype: str, mode: str, masked: bool, weighted: bool = False):
    """out[b, :] = combine(w[j] * table[ids[j], :] for j in [lo_b, hi_b) with mask[j]), rows sorted; empty bag -> 0.

    Unweighted, mean / sqrtn divide by the count / its square root; weighted (w given), by sum(w) / sqrt(sum(w^2)),
    0 where that is 0 (TF's DivNoNan). The reference lowering of recom.embedding_bag (one thread per bag on GPUs);
    the fused multi-column kernel replaces it in the optimized pipeline.
    """

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_table: T.handle, var_ids: T.handle, var_rows: T.handle, var_mask: T.handle, var_w: T.handle,
               var_out: T.handle):
        r = T.int64()
        d = T.int64()
        n = T.int64()
        nm = T.int64()
        nw = T.int64()
        b = T.int64()
        table = T.match_buffer(var_table, (r, d), dtype)
        ids = T.match_buffer(var_ids, (n,), id_dtype)
        rows = T.match_buffer(var_rows, (n,), row_dtype)
        mask = T.match_buffer(var_mask, (nm,), "bool")
        w = T.match_buffer(var_w, (nw,), "float32")
        out = T.match_buffer(var_out, (b, d), dtype)
        for i in T.serial(b):
            with T.sblock("embedding_bag"):
                vi = T.axis.spatial(b, i)
                T.reads(table[0:r, 0:d], ids[0:n], rows[0:n], mask[0:nm], w[0:nw])
                T.writes(out[vi, 0:d])
                lo = T.alloc_buffer((1,), I64, scope="local")
                hi = T.alloc_buffer((1,), I64, scope="local")
                end = T.alloc_buffer((1,), I64, scope="local")
                den = T.alloc_buffer((1,), dtype, scope="local")
                acc = T.alloc_buffer((1,), dtype, scope="local")
                lo[0] = T.int64(0)
                hi[0] = n
                while lo[0] < hi[0]:
                    if T.Cast(I64, rows[T.floordiv(lo[0] + hi[0], 2)]) < vi:
                        lo[0] = T.floordiv(lo[0] + hi[0], 2) + T.int64(1)
                    else:
                        hi[0] = T.floordiv(lo[0] + hi[0], 2)
                end[0] = lo[0]
                hi[0] = n
                while end[0] < hi[0]:
                    if T.Cast(I64, rows[T.floordiv(end[0] + hi[0], 2)]) <= vi:
                        end[0] = T.floordiv(end[0] + hi[0], 2) + T.int64(1)
                    else:
                        hi[0] = T.floordiv(end[0] + hi[0], 2)
                den[0] = T.Cast(dtype, 0)  # count, sum(w) or sum(w^2)
                for jj in T.serial(end[0] - lo[0]):
                    if not masked or mask[T.min(lo[0] + jj, nm - 1)]:
                        if not weighted:
                            den[0] = den[0] + T.Cast(dtype, 1)
                        elif mode == "mean":
                            den[0] = den[0] + T.Cast(dtype, w[T.min(lo[0] + jj, nw - 1)])
                        else:
                            den[0] = den[0] + T.Cast(dtype, w[T.min(lo[0] + jj, nw - 1)] * w[T.min(lo[0] + jj,
                                                                                                    nw - 1)])
                for j in T.serial(d):
                    acc[0] = T.Cast(dtype, 0)
                    for jj in T.serial(end[0] - lo[0]):
                        if not masked or mask[T.min(lo[0] + jj, nm - 1)]:
                            if weighted:
                                acc[0] = acc[0] + table[T.Cast(I64, ids[lo[0] + jj]), j] * T.Cast(
                                    dtype, w[T.min(lo[0] + jj, nw - 1)])
                            else:
                                acc[0] = acc[0] + table[T.Cast(I64, ids[lo[0] + jj]), j]
                    if mode == "sum":
                        out[vi, j] = acc[0]
                    elif mode == "mean":
                        out[vi, j] = T.if_then_else(den[0] != T.Cast(dtype, 0), acc[0] / den[0], T.Cast(dtype, 0))
                    else:
                        out[vi, j] = T.if_then_else(den[0] != T.Cast(dtype, 0), acc[0] / T.sqrt(den[0]),
                                                    T.Cast(dtype, 0))

    return kernel


@functools.cache
def masked_range_check(id_dtype: str):
    """status = [count of kept ids outside [0, limit), position of the first, its value] (mask: nm == n or 1)."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_ids: T.handle, var_mask: T.handle, limit: T.int64, var_status: T.handle):
        n = T.int64()
        nm = T.int64()
        ids = T.match_buffer(var_ids, (n,), id_dtype)
        mask = T.match_buffer(var_mask, (nm,), "bool")
        status = T.match_buffer(var_status, (3,), I64)
        for u in T.serial(1):
            with T.sblock("masked_range_check"):
                vu = T.axis.spatial(1, u)
                T.reads(ids[0:n], mask[0:nm])
                T.writes(status[0:3])
                status[0] = T.int64(0)
                status[1] = T.int64(-1)
                status[2] = T.int64(0)
                for i in T.serial(n):
                    if mask[T.min(i, nm - 1)] and (T.Cast(I64, ids[i]) < T.int64(0)
                                                   or T.Cast(I64, ids[i]) >= limit):
                        if status[0] == T.int64(0):
                            status[1] = i
                            status[2] = T.Cast(I64, ids[i])
                        status[0] = status[0] + T.int64(1)

    return kernel


# status codes of segment_check (recom_tvm.runtime.builtins turns them into TF's messages)
SEGMENT_OK, SEGMENT_BAD_INDEX, SEGMENT_NOT_SORTED, SEGMENT_NEGATIVE, SEGMENT_TOO_LARGE = range(5)


@functools.cache
def segment_check(idx_dtype: str, seg_dtype: str):
    """TF-CPU's checks of a segment reduction's inputs, first failure in entry order:
    status = [code, position, value] (code SEGMENT_*: index outside [0, rows), segment ids not increasing,
    a negative segment id, one >= num_segments when that is given (num >= 0))."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_ind: T.handle, var_seg: T.handle, rows: T.int64, num: T.int64, var_status: T.handle):
        k = T.int64()
        ind = T.match_buffer(var_ind, (k,), idx_dtype)
        seg = T.match_buffer(var_seg, (k,), seg_dtype)
        status = T.match_buffer(var_status, (3,), I64)
        for u in T.serial(1):
            with T.sblock("segment_check"):
                vu = T.axis.spatial(1, u)
                T.reads(ind[0:k], seg[0:k])
                T.writes(status[0:3])
                status[0] = T.int64(SEGMENT_OK)
                status[1] = T.int64(-1)
                status[2] = T.int64(0)
                for i in T.serial(k):
                    if status[0] == T.int64(SEGMENT_OK):
                        if T.Cast(I64, ind[i]) < T.int64(0) or T.Cast(I64, ind[i]) >= rows:
                            status[0] = T.int64(SEGMENT_BAD_INDEX)
                            status[1] = i
                            status[2] = T.Cast(I64, ind[i])
                        elif T.Cast(I64, seg[i]) < T.int64(0):
                            status[0] = T.int64(SEGMENT_NEGATIVE)
                            status[1] = i
                            status[2] = T.Cast(I64, seg[i])
                        elif num >= T.int64(0) and T.Cast(I64, seg[i]) >= num:
                            status[0] = T.int64(SEGMENT_TOO_LARGE)
                            status[1] = i
                            status[2] = T.Cast(I64, seg[i])
                        elif i > T.int64(0) and T.Cast(I64, seg[i]) < T.Cast(I64, seg[T.max(i - 1, T.int64(0))]):
                            status[0] = T.int64(SEGMENT_NOT_SORTED)
                            status[1] = i
                            status[2] = T.Cast(I64, seg[i])

    return kernel


@functools.cache
def gather_nd_check(idx_dtype: str, depth: int):
    """TF-CPU's GatherNd check: status = [1 if a row of indices lies outside the params' shape, the first such
    row, 0]; limits[d] = the params' dim d."""

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_idx: T.handle, var_limits: T.handle, var_status: T.handle):
        n = T.int64()
        idx = T.match_buffer(var_idx, (n, depth), idx_dtype)
        limits = T.match_buffer(var_limits, (depth,), I64)
        status = T.match_buffer(var_status, (3,), I64)
        for u in T.serial(1):
            with T.sblock("gather_nd_check"):
                vu = T.axis.spatial(1, u)
                T.reads(idx[0:n, 0:depth], limits[0:depth])
                T.writes(status[0:3])
                status[0] = T.int64(0)
                status[1] = T.int64(-1)
                status[2] = T.int64(0)
                for i, d in T.grid(n, depth):
                    if status[0] == T.int64(0) and (T.Cast(I64, idx[i, d]) < T.int64(0)
                                                    or T.Cast(I64, idx[i, d]) >= limits[d]):
                        status[0] = T.int64(1)
                        status[1] = i

    return kernel
