"""The fused multi-column embedding kernel: every column of a concat, one launch, written into its slice.

Data layout (ARCHITECTURE.md, "The fused kernel"):
- `packed` int64 [P], built on the host per request, one host->device copy:
    [0, C]            unit_start: prefix sums of each column's work units (tiles of bags)
    [C+1, 2C]         data_base: where column c's data starts in `packed`
    [2C+1, 3C]        aux: per-column per-request size (T for dense padded columns)
    then per column:  CSR:     offsets [B+1] (relative), ids [n] (+ weights as float32 bit patterns [n])
                      DENSE:   ids [B*T], -1 = missing (row-major)
                      ONE:     ids [B]
                      BUCKET:  float32 bit patterns [B] (the raw value to bucketize)
                      NUMERIC: float32 bit patterns [B*w]
- `meta` int64 [C, len(META)]: static per-column facts (kind, dim, lanes, output offset, table base, ...)
- `bounds` float32: all bucketize boundaries; `tables` float32: all tables, flat (row r of column c at
  tables[table_base + r * dim]).
- `out` float32 [B, W]: the concat output.

Work unit = (column, tile of bags). A unit has THREADS threads; a column of dim d uses ceil(d/4) lanes per bag
(one float4 load per lane and id; table rows are padded to 4 floats), so THREADS / lanes bags per tile: no
column is one block's critical path, and short columns don't waste a block. On llvm the same body runs with
the unit loop parallel and the thread loop serial.
"""

from __future__ import annotations

import functools

from tvm.script import tirx as T

THREADS = 256
# table_base is in float4 units; lanes = ceil(dim / 4) (each lane owns 4 floats of the row or output)
META = ("kind", "dim", "lanes", "out_off", "table_base", "rows", "mode", "pre", "pre_a", "pre_b", "filter",
        "weighted")
# filter bits: drop entries with a negative id (TF's id >= 0 filter); drop entries with weight <= 0 (TF prunes them
# for weighted mean / sqrtn)
FILTER_NEG_ID = 1
FILTER_NONPOS_WEIGHT = 2
KIND = {"csr": 0, "dense": 1, "one": 2, "bucket": 3, "numeric": 4}
MODE = {"sum": 0, "mean": 1, "sqrtn": 2}
PRE = {"none": 0, "identity_default": 1}
I64 = "int64"
F32 = "float32"


@functools.cache
def fused_embedding(num_cols: int, width: int, vec_out: bool, gpu: bool):
    """vec_out: every column's dim and output offset (and the width) are multiples of 4, so results go out as
    float4 stores; otherwise lane k of each float4 is stored alone (and lanes past the dim are skipped)."""
    nm = len(META)
    C = num_cols

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_packed: T.handle, var_meta: T.handle, var_bounds: T.handle, var_tables: T.handle,
               num_units: T.int64, var_out: T.handle):
        T.func_attr({"tirx.is_scheduled": gpu, "tirx.noalias": True})
        p_len = T.int64()
        nb = T.int64()
        ne = T.int64()
        b_sz = T.int64()
        packed = T.match_buffer(var_packed, (p_len,), I64)
        meta = T.match_buffer(var_meta, (C, nm), I64)
        bounds = T.match_buffer(var_bounds, (nb,), F32)
        tables = T.match_buffer(var_tables, (ne,), F32)
        out = T.match_buffer(var_out, (b_sz, width), F32)
        for u in (T.thread_binding(num_units, thread="blockIdx.x") if gpu else T.parallel(num_units)):
            for t in (T.thread_binding(THREADS, thread="threadIdx.x") if gpu else T.serial(THREADS)):
                with T.sblock("fused_embedding"):
                    T.reads(packed[0:p_len], meta[0:C, 0:nm], bounds[0:nb], tables[0:ne])
                    T.writes(out[0:b_sz, 0:width])
                    lo = T.alloc_buffer((1,), I64, scope="local")
                    hi = T.alloc_buffer((1,), I64, scope="local")
                    den = T.alloc_buffer((1,), F32, scope="local")
                    wv = T.alloc_buffer((1,), F32, scope="local")
                    rid = T.alloc_buffer((1,), I64, scope="local")
                    top = T.alloc_buffer((1,), I64, scope="local")
                    cbuf = T.alloc_buffer((1,), I64, scope="local")
                    present = T.alloc_buffer((1,), "bool", scope="local")
                    acc4 = T.alloc_buffer((1,), "float32x4", scope="local")
                    # column of this unit: the last c with unit_start[c] <= u
                    lo[0] = T.int64(0)
                    hi[0] = T.int64(C)
                    while hi[0] - lo[0] > T.int64(1):
                        if packed[T.floordiv(lo[0] + hi[0], 2)] <= u:
                            lo[0] = T.floordiv(lo[0] + hi[0], 2)
                        else:
                            hi[0] = T.floordiv(lo[0] + hi[0], 2)
                    cbuf[0] = lo[0]  # lo / hi are reused below: keep the column in its own local
                    c = cbuf[0]
                    kind = meta[c, 0]
                    dim = meta[c, 1]
                    lanes = meta[c, 2]
                    bpb = T.floordiv(T.int64(THREADS), lanes)
                    bag = T.floordiv(T.Cast(I64, t), lanes)
                    lane_idx = T.floormod(T.Cast(I64, t), lanes)
                    b = (u - packed[c]) * bpb + bag
                    base = packed[C + 1 + c]
                    col = meta[c, 3] + lane_idx * T.int64(4)
                    if bag < bpb and b < b_sz:
                        if kind == T.int64(4):  # numeric: copy up to 4 floats
                            for k in T.unroll(4):
                                if lane_idx * 4 + k < dim:
                                    out[b, col + k] = T.reinterpret(
                                        F32, T.Cast("int32", packed[base + b * dim + lane_idx * 4 + k]))
                        else:
                            # the entries of bag b: [lo, hi) in this column's id array
                            if kind == T.int64(0):
                                lo[0] = packed[base + b]
                                hi[0] = packed[base + b + 1]
                            elif kind == T.int64(1):
                                lo[0] = b * packed[2 * C + 1 + c]
                                hi[0] = lo[0] + packed[2 * C + 1 + c]
                            else:
                                lo[0] = b
                                hi[0] = b + 1
                            id_base = base + T.if_then_else(kind == T.int64(0), b_sz + 1, T.int64(0))
                            den[0] = T.float32(0)  # count, or sum(w) / sum(w^2) of a weighted column
                            acc4[0] = T.Broadcast(T.float32(0), 4)
                            for j in T.serial(hi[0] - lo[0]):
                                if kind == T.int64(3):  # bucketize the raw value (upper_bound; NaN -> last)
                                    rid[0] = T.int64(0)
                                    top[0] = meta[c, 9]
                                    while rid[0] < top[0]:
                                        if T.reinterpret(F32, T.Cast("int32", packed[id_base + lo[0] + j])) < \
                                                bounds[meta[c, 8] + T.floordiv(rid[0] + top[0], 2)]:
                                            top[0] = T.floordiv(rid[0] + top[0], 2)
                                        else:
                                            rid[0] = T.floordiv(rid[0] + top[0], 2) + T.int64(1)
                                else:
                                    rid[0] = packed[id_base + lo[0] + j]
                                # a dense padded input marks missing entries with -1 (before preprocessing)
                                present[0] = not (kind == T.int64(1) and rid[0] == T.int64(-1))
                                if meta[c, 7] == T.int64(1):  # identity with default: out of range -> default
                                    rid[0] = T.if_then_else(rid[0] < T.int64(0) or rid[0] >= meta[c, 8],
                                                            meta[c, 9], rid[0])
                                # per-id weight (weighted columns: after the ids, offsets[B] of them)
                                wv[0] = T.if_then_else(
                                    meta[c, 11] == T.int64(1),
                                    T.reinterpret(F32, T.Cast("int32", packed[id_base + packed[base + b_sz] + lo[0]
                                                                              + j])),
                                    T.float32(1))
                                if present[0] and not (T.bitwise_and(meta[c, 10], T.int64(FILTER_NEG_ID)) != 0 and
                                                       rid[0] < T.int64(0)) \
                                        and not (T.bitwise_and(meta[c, 10], T.int64(FILTER_NONPOS_WEIGHT)) != 0
                                                 and wv[0] <= T.float32(0)):
                                    den[0] = den[0] + T.if_then_else(meta[c, 6] == T.int64(2), wv[0] * wv[0], wv[0])
                                    # ids were range-checked (or proven); the clamp only keeps reads in bounds
                                    rid[0] = T.max(T.min(rid[0], meta[c, 5] - T.int64(1)), T.int64(0))
                                    # tables are read only as float4 at 4 * (float4 index): TVM proves the
                                    # alignment and turns the buffer into a float4 pointer (16-byte loads)
                                    acc4[0] = acc4[0] + tables[T.ramp((meta[c, 4] + rid[0] * lanes + lane_idx) * 4,
                                                                      1, 4)] * T.Broadcast(wv[0], 4)
                            # TF: sum (an empty bag sums to 0); mean = / count (or / sum(w)); sqrtn = / sqrt(count)
                            # (or / sqrt(sum(w^2))); 0 where that divisor is 0 (empty bags; DivNoNan)
                            scale = T.if_then_else(
                                meta[c, 6] == T.int64(0), T.float32(1),
                                T.if_then_else(den[0] == T.float32(0), T.float32(0),
                                               T.if_then_else(meta[c, 6] == T.int64(1), T.float32(1) / den[0],
                                                              T.float32(1) / T.sqrt(den[0]))))
                            if vec_out:  # output offsets are multiples of 4 here: 4 * (float4 index)
                                out[b, T.ramp(T.floordiv(meta[c, 3], 4) * 4 + lane_idx * 4, 1, 4)] = \
                                    acc4[0] * T.Broadcast(scale, 4)
                            else:
                                for k in T.unroll(4):
                                    if lane_idx * 4 + k < dim:
                                        out[b, col + k] = T.Shuffle([acc4[0]], [k]) * scale

    return kernel
