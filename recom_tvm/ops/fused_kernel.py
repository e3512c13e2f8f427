"""The fused multi-column embedding kernel: every column of a concat, one launch, written into its slice.

Data layout (ARCHITECTURE.md, "The fused kernel"):
- `packed` int64 [P], built on the host per request, one host->device copy:
    [0, C)            data_base: where column c's data starts in `packed`
    [C, 2C)           aux: per-column per-request size (T for dense padded columns)
    then per column:  CSR:     offsets [B+1] (relative), ids [n] (+ weights as float32 bit patterns [n])
                      DENSE:   ids [B*T], -1 = missing (row-major)
                      ONE:     ids [B]
                      BUCKET:  float32 bit patterns [B] (the raw value to bucketize)
                      NUMERIC: float32 bit patterns [B*w]
  Nothing in it depends on the kernel's schedule: every tuned variant reads the same buffer.
- `meta` int64 [C, len(META)]: static per-column facts (kind, dim, output offset, table base, ...). FuseColumns
  orders the columns into *classes* (runs of equal (multi-id?, dim)); the schedule is planned per class.
- `bounds` float32: all bucketize boundaries; `tables` float32: all tables, flat, rows padded to 4 floats (row r of
  column c starts at float 4 * (table_base + r * stride4)).
- `out` float32 [B, W]: the concat output.

Work unit = (column, tile of bags): one thread block. A column of dim d uses ceil(d / vec) lanes per bag (one
vec-wide load per lane and id), so a block of `threads` threads holds threads // lanes bags per pass and `rows`
passes for one-id columns: no column is one block's critical path, and short columns don't waste a block. The
block -> (column, tile) map is closed-form per class (compile-time class table, B from the output's shape): no
lookup table, and the packed input stays schedule-independent. `KernelConfig` holds the schedule's knobs (the
MetaSchedule design space in recom_tvm.schedules.fused_space); `fused_embedding` takes one config per batch bucket
and dispatches on B on the host side of the kernel (one PrimFunc, one launch per call). On llvm the same body runs
with the unit loop parallel and the thread loop serial.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from ..runtime.fused_layout import (FILTER_NEG_ID, FILTER_NONPOS_WEIGHT, KIND, META, MODE,  # noqa: F401
                                    MULTI_ID_KINDS, PRE)

I64 = "int64"
F32 = "float32"
MAX_SHARED_BYTES = 48 * 1024
MAX_BUCKETS = 4  # batch buckets one kernel dispatches over


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """The fused kernel's schedule. Every field is a knob of the tuning space (recom_tvm.schedules.fused_space).

    threads: threads per block (one work unit).
    vec: floats per lane (4: float4 loads and stores); lanes per bag = ceil(dim / vec).
    rows: bags per thread for one-id columns (more work per block, fewer blocks).
    unroll: ids of a multi-id bag loaded per step (independent loads in flight).
    heavy_first: blocks of multi-id columns first (the long ones start early: longest-processing-time order).
    interleave: within a class, consecutive blocks take the same tile of consecutive columns (neighbouring output
        slices written together) instead of consecutive tiles of one column.
    smem_bounds: bucketize against the column's boundaries staged in shared memory (CUDA only).
    """

    threads: int = 256
    vec: int = 4
    rows: int = 1
    unroll: int = 1
    heavy_first: bool = True
    interleave: bool = False
    smem_bounds: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "KernelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown kernel config fields {sorted(unknown)}")
        return cls(**d)


DEFAULT = KernelConfig()


def default_config(meta) -> KernelConfig:
    """DEFAULT, with enough threads for the widest column's lanes."""
    widest = max((k.dim for k in column_classes(meta)), default=1)
    threads = DEFAULT.threads
    while -(-widest // DEFAULT.vec) > threads:
        threads *= 2
    return dataclasses.replace(DEFAULT, threads=threads)


@dataclasses.dataclass(frozen=True)
class ColumnClass:
    """A run of meta rows [first, first + count) with the same dim and bag shape (one id or several)."""

    first: int
    count: int
    dim: int
    multi: bool


def column_classes(meta) -> tuple[ColumnClass, ...]:
    """Maximal runs of equal (multi-id, dim) in meta order (FuseColumns sorts the columns so that runs are
    classes)."""
    m = np.asarray(meta, dtype=np.int64).reshape(-1, len(META))
    out: list[ColumnClass] = []
    ki, di = META.index("kind"), META.index("dim")
    for c, row in enumerate(m.tolist()):
        multi = row[ki] in MULTI_ID_KINDS
        if out and out[-1].multi == multi and out[-1].dim == row[di] and out[-1].first + out[-1].count == c:
            last = out[-1]
            out[-1] = ColumnClass(last.first, last.count + 1, last.dim, multi)
        else:
            out.append(ColumnClass(c, 1, row[di], multi))
    return tuple(out)


def class_sort_key(kind: int, dim: int) -> tuple:
    """The canonical column order FuseColumns uses: multi-id columns first, then by dim (stable within)."""
    return (0 if kind in MULTI_ID_KINDS else 1, dim)


def check_config(cfg: KernelConfig, classes, max_bounds: int, gpu: bool) -> str | None:
    """Why `cfg` cannot run these columns, or None."""
    if cfg.threads <= 0 or cfg.threads & (cfg.threads - 1) or cfg.threads > 1024:
        return f"threads {cfg.threads}: a power of two <= 1024"
    if cfg.vec not in (1, 2, 4):
        return f"vec {cfg.vec}: 1, 2 or 4"
    if cfg.rows < 1 or cfg.unroll < 1:
        return "rows and unroll must be >= 1"
    widest = max((k.dim for k in classes), default=1)
    if -(-widest // cfg.vec) > cfg.threads:
        return f"dim {widest} needs {-(-widest // cfg.vec)} lanes of {cfg.vec}, more than {cfg.threads} threads"
    if cfg.smem_bounds and gpu and 4 * max_bounds > MAX_SHARED_BYTES:
        return f"{max_bounds} bucket boundaries do not fit in shared memory"
    return None


def _plan(cfg: KernelConfig, classes) -> list[tuple[int, int, int, int, int]]:
    """Per class in block order: (first, count, lanes, bags per pass, bags per block)."""
    order = sorted(classes, key=lambda k: 0 if k.multi == cfg.heavy_first else 1)  # stable
    out = []
    for k in order:
        lanes = -(-max(k.dim, 1) // cfg.vec)
        bpp = cfg.threads // lanes
        out.append((k.first, k.count, lanes, bpp, bpp * (1 if k.multi else cfg.rows)))
    return out


def num_units(cfg: KernelConfig, classes, batch):
    """Blocks one call launches for `batch` bags (an int, or an int64 PrimExpr)."""
    total = 0
    for _, count, _, _, bpu in _plan(cfg, classes):
        total = total + count * ((batch + (bpu - 1)) // bpu)
    return total


class _UnitMap:
    """Block index u -> (column, tile, lanes, bags per pass, rows) as select chains over the class table."""

    def __init__(self, cfg: KernelConfig, classes, b_sz) -> None:
        self.cfg = cfg
        self.rows: list[tuple] = []
        start = tirx.const(0, I64)
        for first, count, lanes, bpp, bpu in _plan(cfg, classes):
            tiles = tirx.floordiv(b_sz + (bpu - 1), bpu)
            end = start + count * tiles
            self.rows.append((start, end, first, count, tiles, lanes, bpp, bpu))
            start = end

    def _chain(self, u, value) -> tirx.PrimExpr:
        out = value(*self.rows[-1])
        for r in reversed(self.rows[:-1]):
            out = tirx.Select(u < r[1], value(*r), out)
        return out

    def column(self, u):
        if self.cfg.interleave:
            return self._chain(u, lambda s, e, f, n, tl, la, bpp, bpu: f + tirx.floormod(u - s, n))
        return self._chain(u, lambda s, e, f, n, tl, la, bpp, bpu: f + tirx.floordiv(u - s, tl))

    def tile(self, u):
        if self.cfg.interleave:
            return self._chain(u, lambda s, e, f, n, tl, la, bpp, bpu: tirx.floordiv(u - s, n))
        return self._chain(u, lambda s, e, f, n, tl, la, bpp, bpu: tirx.floormod(u - s, tl))

    def lanes(self, u):
        return self._chain(u, lambda s, e, f, n, tl, la, bpp, bpu: tirx.const(la, I64))

    def per_pass(self, u):
        return self._chain(u, lambda s, e, f, n, tl, la, bpp, bpu: tirx.const(bpp, I64))

    def passes(self, u):
        return self._chain(u, lambda s, e, f, n, tl, la, bpp, bpu: tirx.const(bpu // bpp, I64))


def max_bounds(meta) -> int:
    """The most boundaries any bucketized column has (the shared-memory staging buffer's size)."""
    m = np.asarray(meta, dtype=np.int64).reshape(-1, len(META))
    sel = m[:, META.index("kind")] == KIND["bucket"]
    return int(m[sel, META.index("pre_b")].max()) if sel.any() else 0


def _vec_stores(meta, width: int, vec: int) -> bool:
    """Every column's dim and output offset (and the width) are multiples of vec, and none is numeric: results go
    out as vec-wide stores; otherwise lane k of each vector is stored alone (lanes past the dim skipped)."""
    m = np.asarray(meta, dtype=np.int64).reshape(-1, len(META))
    return vec > 1 and width % vec == 0 and bool(
        np.all(m[:, META.index("dim")] % vec == 0) and np.all(m[:, META.index("out_off")] % vec == 0)
        and np.all(m[:, META.index("kind")] != KIND["numeric"]))


def fused_embedding(meta, width: int, gpu: bool, buckets=((None, DEFAULT),), shapes=None):
    """The kernel for these columns (static `meta`, concat `width`), one schedule per batch bucket.

    buckets: ((max batch or None for the last, KernelConfig), ...), at most MAX_BUCKETS, ascending.
    shapes: (packed length, boundaries, table floats, batch) to fix the buffer sizes (tuning tasks); default
        symbolic (one kernel for every request).
    """
    meta = np.asarray(meta, dtype=np.int64).reshape(-1, len(META))
    key = (meta.tobytes(), meta.shape[0], width, gpu,
           tuple((b, tuple(sorted(c.to_json().items()))) for b, c in buckets), shapes)
    if key not in _CACHE:  # TVMScript parsing takes ~0.1 s; tuning asks for the same variants again
        if len(_CACHE) > 256:
            _CACHE.clear()
        _CACHE[key] = _make(meta, width, gpu, tuple(buckets), shapes)
    return _CACHE[key]


_CACHE: dict = {}


def _make(meta, width: int, gpu: bool, buckets, shapes):
    if not buckets or len(buckets) > MAX_BUCKETS:
        raise ValueError(f"1 to {MAX_BUCKETS} batch buckets, got {len(buckets)}")
    classes = column_classes(meta)
    max_nb = max(max_bounds(meta), 1)
    for _, cfg in buckets:
        why = check_config(cfg, classes, max_nb, gpu)
        if why:
            raise ValueError(f"kernel config {cfg}: {why}")
    nm, C = len(META), meta.shape[0]
    if shapes is None:
        dims = [tirx.Var(n, I64) for n in ("p_len", "nb", "ne", "b_sz")]
    else:
        dims = [tirx.const(int(v), I64) for v in shapes]
    limits = [b for b, _ in buckets[:-1]] + [None]
    cfgs = [c for _, c in buckets]
    n_cfg = len(cfgs)
    cfgs = cfgs + [cfgs[-1]] * (MAX_BUCKETS - n_cfg)  # unused slots: parsed, never emitted (static branches)
    limits = [int(x) if x is not None else 0 for x in limits] + [0] * (MAX_BUCKETS - n_cfg)
    stores = [_vec_stores(meta, width, c.vec) for c in cfgs]
    smem = [bool(c.smem_bounds and gpu) for c in cfgs]

    def units(cfg, b_sz):
        return num_units(cfg, classes, b_sz)

    # block -> unit quantities (TVMScript binds only PrimExprs to names, so these are calls, not a map object)
    def u_column(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).column(u)

    def u_tile(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).tile(u)

    def u_lanes(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).lanes(u)

    def u_per_pass(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).per_pass(u)

    def u_passes(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).passes(u)

    @T.macro
    def bag(packed, meta_b, bounds, tables, out, sb, c, lane, b, b_sz, vec, unroll, vec_store, use_smem):
        # one bag b of column c: this thread's lane (vec floats of the row) of it
        lo = T.alloc_buffer((1,), I64, scope="local")
        hi = T.alloc_buffer((1,), I64, scope="local")
        den = T.alloc_buffer((1,), F32, scope="local")
        wv = T.alloc_buffer((1,), F32, scope="local")
        rid = T.alloc_buffer((1,), I64, scope="local")
        top = T.alloc_buffer((1,), I64, scope="local")
        xv = T.alloc_buffer((1,), F32, scope="local")
        bv = T.alloc_buffer((1,), F32, scope="local")
        present = T.alloc_buffer((1,), "bool", scope="local")
        acc = T.alloc_buffer((1,), F32 if vec == 1 else f"float32x{vec}", scope="local")
        kind = meta_b[c, 0]
        dim = meta_b[c, 1]
        base = packed[c]
        col = meta_b[c, 3] + lane * vec
        if kind == T.int64(4):  # numeric: copy up to vec floats
            for k in T.unroll(T.int64(vec)):
                if lane * vec + k < dim:
                    out[b, col + k] = T.reinterpret(F32, T.Cast("int32", packed[base + b * dim + lane * vec + k]))
        else:
            # the entries of bag b: [lo, hi) in this column's id array
            if kind == T.int64(0):
                lo[0] = packed[base + b]
                hi[0] = packed[base + b + 1]
            elif kind == T.int64(1):
                lo[0] = b * packed[C + c]
                hi[0] = lo[0] + packed[C + c]
            else:
                lo[0] = b
                hi[0] = b + 1
            id_base = base + T.if_then_else(kind == T.int64(0), b_sz + 1, T.int64(0))
            den[0] = T.float32(0)  # count, or sum(w) / sum(w^2) of a weighted column
            if vec == 1:
                acc[0] = T.float32(0)
            else:
                acc[0] = T.Broadcast(T.float32(0), vec)
            for jj in T.serial(T.floordiv(hi[0] - lo[0] + (unroll - 1), unroll)):
                for k in T.unroll(T.int64(unroll)):
                    if jj * unroll + k < hi[0] - lo[0]:
                        j = jj * unroll + k
                        if kind == T.int64(3):  # bucketize the raw value (upper_bound; NaN -> last)
                            xv[0] = T.reinterpret(F32, T.Cast("int32", packed[id_base + lo[0] + j]))
                            rid[0] = T.int64(0)
                            top[0] = meta_b[c, 9]
                            while rid[0] < top[0]:
                                # through a local: ThreadSync cannot see a shared load inside a condition
                                if use_smem:
                                    bv[0] = sb[T.floordiv(rid[0] + top[0], 2)]
                                else:
                                    bv[0] = bounds[meta_b[c, 8] + T.floordiv(rid[0] + top[0], 2)]
                                if xv[0] < bv[0]:
                                    top[0] = T.floordiv(rid[0] + top[0], 2)
                                else:
                                    rid[0] = T.floordiv(rid[0] + top[0], 2) + T.int64(1)
                        else:
                            rid[0] = packed[id_base + lo[0] + j]
                        # a dense padded input marks missing entries with -1 (before preprocessing)
                        present[0] = not (kind == T.int64(1) and rid[0] == T.int64(-1))
                        if meta_b[c, 7] == T.int64(1):  # identity with default: out of range -> default
                            rid[0] = T.if_then_else(rid[0] < T.int64(0) or rid[0] >= meta_b[c, 8], meta_b[c, 9],
                                                    rid[0])
                        elif meta_b[c, 7] == T.int64(2):  # Keras' Embedding: a negative id counts from the end
                            rid[0] = T.if_then_else(rid[0] < T.int64(0), rid[0] + meta_b[c, 8], rid[0])
                        # per-id weight (weighted columns: after the ids, offsets[B] of them)
                        wv[0] = T.if_then_else(
                            meta_b[c, 11] == T.int64(1),
                            T.reinterpret(F32, T.Cast("int32", packed[id_base + packed[base + b_sz] + lo[0] + j])),
                            T.float32(1))
                        if present[0] and not (T.bitwise_and(meta_b[c, 10], T.int64(FILTER_NEG_ID)) != 0 and
                                               rid[0] < T.int64(0)) \
                                and not (T.bitwise_and(meta_b[c, 10], T.int64(FILTER_NONPOS_WEIGHT)) != 0
                                         and wv[0] <= T.float32(0)):
                            den[0] = den[0] + T.if_then_else(meta_b[c, 6] == T.int64(2), wv[0] * wv[0], wv[0])
                            # ids were range-checked (or proven); the clamp only keeps reads in bounds
                            rid[0] = T.max(T.min(rid[0], meta_b[c, 5] - T.int64(1)), T.int64(0))
                            # rows start 16-byte aligned and lanes are vec-aligned: TVM proves the alignment and
                            # loads vec floats at once
                            if vec == 1:
                                acc[0] = acc[0] + tables[(meta_b[c, 4] + rid[0] * meta_b[c, 2]) * 4 + lane] * wv[0]
                            else:
                                acc[0] = acc[0] + tables[T.ramp((meta_b[c, 4] + rid[0] * meta_b[c, 2]) * 4 +
                                                                lane * vec, 1, vec)] * T.Broadcast(wv[0], vec)
            # TF: sum (an empty bag sums to 0); mean = / count (or / sum(w)); sqrtn = / sqrt(count)
            # (or / sqrt(sum(w^2))); 0 where that divisor is 0 (empty bags; DivNoNan). A select, not a branch:
            # nvcc keeps the vector store then.
            scale = T.if_then_else(
                meta_b[c, 6] == T.int64(0), T.float32(1),
                T.if_then_else(den[0] == T.float32(0), T.float32(0),
                               T.if_then_else(meta_b[c, 6] == T.int64(1), T.float32(1) / den[0],
                                              T.float32(1) / T.sqrt(den[0]))))
            if vec == 1:
                if lane < dim:
                    out[b, col] = acc[0] * scale
            elif vec_store:  # output offsets are multiples of vec here
                out[b, T.ramp(T.floordiv(meta_b[c, 3], vec) * vec + lane * vec, 1, vec)] = \
                    acc[0] * T.Broadcast(scale, vec)
            else:
                for k in T.unroll(T.int64(vec)):
                    if lane * vec + k < dim:
                        out[b, col + k] = T.Shuffle([acc[0]], [k]) * scale

    @T.macro
    def unit_body(packed, meta_b, bounds, tables, out, b_sz, cfg, vec_store, use_smem):
        for u in (T.thread_binding(units(cfg, b_sz), thread="blockIdx.x") if gpu else
                  T.parallel(units(cfg, b_sz))):
            with T.sblock("unit"):
                T.reads(packed[0:packed.shape[0]], meta_b[0:C, 0:nm], bounds[0:bounds.shape[0]],
                        tables[0:tables.shape[0]])
                T.writes(out[0:b_sz, 0:width])
                # one block's copy of its column's boundaries (a placeholder of one float unless staged)
                sb = T.alloc_buffer((max_nb if use_smem else 1,), F32, scope="shared" if gpu else "global")
                if use_smem:
                    # the unit's column is one for the whole block: stage its boundaries once
                    for t in T.thread_binding(cfg.threads, thread="threadIdx.x"):
                        with T.sblock("stage_bounds"):
                            for i in T.serial((max_nb + cfg.threads - 1) // cfg.threads):
                                if meta_b[u_column(cfg, b_sz, u), 0] == T.int64(3) and \
                                        i * cfg.threads + T.Cast(I64, t) < meta_b[u_column(cfg, b_sz, u), 9]:
                                    sb[i * cfg.threads + T.Cast(I64, t)] = \
                                        bounds[meta_b[u_column(cfg, b_sz, u), 8] + i * cfg.threads +
                                               T.Cast(I64, t)]
                    # explicit: ThreadSync cannot insert a barrier under the host-side bucket dispatch
                    T.tvm_storage_sync("shared")
                for t in (T.thread_binding(cfg.threads, thread="threadIdx.x") if gpu else T.serial(cfg.threads)):
                    with T.sblock("fused_embedding"):
                        T.reads(packed[0:packed.shape[0]], meta_b[0:C, 0:nm], bounds[0:bounds.shape[0]],
                                tables[0:tables.shape[0]], sb[0:sb.shape[0]])
                        T.writes(out[0:b_sz, 0:width])
                        cbuf = T.alloc_buffer((1,), I64, scope="local")
                        cbuf[0] = u_column(cfg, b_sz, u)
                        c = cbuf[0]
                        lanes = u_lanes(cfg, b_sz, u)
                        bpp = u_per_pass(cfg, b_sz, u)
                        bag_in_pass = T.floordiv(T.Cast(I64, t), lanes)
                        lane = T.floormod(T.Cast(I64, t), lanes)
                        first = u_tile(cfg, b_sz, u) * bpp * u_passes(cfg, b_sz, u)
                        for rr in T.unroll(T.int64(cfg.rows)):
                            if bag_in_pass < bpp and rr < u_passes(cfg, b_sz, u) and \
                                    first + rr * bpp + bag_in_pass < b_sz:
                                bag(packed, meta_b, bounds, tables, out, sb, c, lane, first + rr * bpp + bag_in_pass,
                                    b_sz, cfg.vec, cfg.unroll, vec_store, use_smem)

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_packed: T.handle, var_meta: T.handle, var_bounds: T.handle, var_tables: T.handle,
               var_out: T.handle):
        T.func_attr({"tirx.is_scheduled": gpu, "tirx.noalias": True})
        packed = T.match_buffer(var_packed, (dims[0],), I64)
        meta_b = T.match_buffer(var_meta, (C, nm), I64)
        bounds = T.match_buffer(var_bounds, (dims[1],), F32)
        tables = T.match_buffer(var_tables, (dims[2],), F32)
        out = T.match_buffer(var_out, (dims[3], width), F32)
        if out.shape[0] > T.int64(0):  # CUDA rejects an empty grid
            if n_cfg == 1:
                unit_body(packed, meta_b, bounds, tables, out, out.shape[0], cfgs[0], stores[0], smem[0])
            elif out.shape[0] <= limits[0]:
                unit_body(packed, meta_b, bounds, tables, out, out.shape[0], cfgs[0], stores[0], smem[0])
            elif n_cfg == 2:
                unit_body(packed, meta_b, bounds, tables, out, out.shape[0], cfgs[1], stores[1], smem[1])
            elif out.shape[0] <= limits[1]:
                unit_body(packed, meta_b, bounds, tables, out, out.shape[0], cfgs[1], stores[1], smem[1])
            elif n_cfg == 3:
                unit_body(packed, meta_b, bounds, tables, out, out.shape[0], cfgs[2], stores[2], smem[2])
            elif out.shape[0] <= limits[2]:
                unit_body(packed, meta_b, bounds, tables, out, out.shape[0], cfgs[2], stores[2], smem[2])
            else:
                unit_body(packed, meta_b, bounds, tables, out, out.shape[0], cfgs[3], stores[3], smem[3])

    return kernel.with_attr("recom_tvm.fused", json.dumps(
        {"buckets": [[b, c.to_json()] for b, c in buckets], "classes": [dataclasses.astuple(k) for k in classes]}))

