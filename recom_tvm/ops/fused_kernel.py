"""The fused multi-column embedding kernel: every column of a concat, one launch, written into its slice.

Data layout (ARCHITECTURE.md, "The fused kernel"):
- `packed` int64 or int32 [P] (the model's packed dtype: int32 where every table and id range is below 2^31
  rows, ids narrowed saturating; recom_tvm.runtime.fused_layout.choose_packed_dtype), built on the host per
  request, one host->device copy:
    [0, C)            data_base: where column c's data starts in `packed`
    [C, 2C)           aux: per-column per-request size (T for dense padded columns)
    [2C, data_base[0]) nothing the kernel reads: the device-hash region of a model that hashes strings on the
                      device (recom_tvm.runtime.fused_layout; the hash kernel writes those columns' ids first)
    then per column:  CSR:     offsets [B+1] (relative), ids [n] (+ weights as float32 bit patterns [n])
                      DENSE:   ids [B*T], -1 = missing (row-major)
                      ONE:     ids [B]
                      BUCKET:  float32 bit patterns [B] (the raw value to bucketize)
                      NUMERIC: float32 bit patterns [B*w]
  Nothing in it depends on the kernel's schedule: every tuned variant reads the same buffer.
- `meta` int64 [C, len(META)]: static per-column facts (kind, dim, output offset, table base, ...). FuseColumns
  orders the columns into *classes* (runs of equal (multi-id?, dim)); the schedule is planned per class.
- `bounds` float32: all bucketize boundaries; `tables` 32-bit words: all tables, flat, every row 16-byte aligned
  (row r of column c starts at word 4 * (table_base + r * stride4)), stored as its column's `tdtype` says:
  float32, float16, bfloat16, or int8 codes followed by the row's float32 scale and bias (recom_tvm.runtime.
  compact). The kernel reads the same words through float16 / uint16 / uint8 / uint32 views and accumulates in
  float32; only the dtypes a model has are compiled in.
- `out` float32 [B, W]: the concat output.

Work unit = (column, tile of bags): one thread block (or `group` adjacent columns of a class and a tile). A column
of dim d uses ceil(d / vec) lanes per bag (one
vec-wide load per lane and id), so a block of `threads` threads holds threads // lanes bags per pass and `rows`
passes for one-id columns: no column is one block's critical path, and short columns don't waste a block. The
block -> (column, tile) map is closed-form per class (compile-time class table, B from the output's shape): no
lookup table, and the packed input stays schedule-independent. `KernelConfig` holds the schedule's knobs (the
MetaSchedule design space in recom_tvm.schedules.fused_space); `fused_embedding` takes one config per batch bucket
and dispatches on B on the host side of the kernel (one PrimFunc, one launch per call). A block may first stage
what its threads share (the columns' meta rows, boundaries, each bag's bucket) in shared memory, behind a barrier.
On llvm the same body runs with the unit loop parallel, the thread loops serial, and the staging in per-unit
scratch (so every knob is tested on the host).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from ..runtime.fused_layout import (FILTER_NEG_ID, FILTER_NONPOS_WEIGHT, KIND, META, MODE,  # noqa: F401
                                    MULTI_ID_KINDS, PRE, meta_rows)

I64 = "int64"
F32 = "float32"
MAX_SHARED_BYTES = 48 * 1024
MAX_BUCKETS = 4  # batch buckets one kernel dispatches over


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """The fused kernel's schedule. Every field is a knob of the tuning space (recom_tvm.schedules.fused_space).

    threads: threads per block (one work unit).
    vec: table elements per lane (4: float4 loads and stores of float32 rows; 8 halves = one 16-byte load of
        fp16 / bf16 rows); lanes per bag = ceil(dim / vec).
    rows: bags per thread for one-id columns (more work per block, fewer blocks).
    unroll: ids of a multi-id bag loaded per step (independent loads in flight).
    heavy_first: blocks of multi-id columns first (the long ones start early: longest-processing-time order).
    interleave: within a class, consecutive blocks take the same tile of consecutive columns (neighbouring output
        slices written together) instead of consecutive tiles of one column.
    smem_bounds: bucketize against the column's boundaries staged in shared memory (CUDA only).
    stage_meta: the block's columns' meta rows (and their packed offsets) loaded once per block into shared memory
        and read from there, instead of by every thread from global memory.
    search_once: bucketize each bag once per block (one thread per bag, before the bags are summed; the result in
        shared memory) instead of in every lane of the bag.
    group: adjacent columns of one class per block (at most; fewer where a row needs more lanes): neighbouring
        threads write neighbouring columns' slices of one output row, so a warp's stores cover whole 128-byte
        lines instead of one 32-byte segment per bag.
    linear_search: 0, or the most boundaries a column may have to be bucketized by counting the boundaries <= x
        (independent loads, unrolled) instead of a binary search (a chain of dependent loads: the top stall of
        E's vec8 kernel at B = 512, 17% of samples). Columns with more boundaries keep the binary search. A tuning
        knob, off by default: on E (H100, 2026-12-07) it pays at B = 32 (7.0 -> 6.8 us, latency-bound) and costs
        at 512 / 2,048 (26.4 -> 28.7 us: 64 registers, more instructions).
    occupancy: 0, or the share of an SM's 2,048 threads (percent) the kernel is compiled to keep resident
        (`__launch_bounds__(threads, blocks)`: ptxas caps the registers to fit; CUDA only). Not in the tuning
        space: on E (B = 512, vec8) 75% took 40 registers and spilled, 30.2 -> 31.6 us (H100, 2026-12-07).
    """

    threads: int = 256
    vec: int = 4
    rows: int = 1
    unroll: int = 1
    heavy_first: bool = True
    interleave: bool = False
    smem_bounds: bool = False
    stage_meta: bool = False
    search_once: bool = False
    group: int = 1
    occupancy: int = 0
    linear_search: int = 0

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


def min_blocks(cfg: KernelConfig) -> int:
    """Blocks per SM that `cfg.occupancy` percent of 2,048 resident threads asks of the compiler (>= 1)."""
    return max(1, (2048 * cfg.occupancy // 100) // cfg.threads)
META_STAGED = 16  # int64 per staged column: its meta row, then data base, aux, a CSR column's id count
_DATA, _AUX, _TOTAL = len(META), len(META) + 1, len(META) + 2


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
    m = meta_rows(meta)
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


def shared_bytes(cfg: KernelConfig, max_bounds: int, has_bucket: bool = True) -> int:
    """Shared memory one block of `cfg` stages (CUDA)."""
    total = 4 * cfg.group * max_bounds if cfg.smem_bounds else 0
    total += 8 * META_STAGED * cfg.group if cfg.stage_meta else 0
    total += 4 * cfg.threads * cfg.rows if cfg.search_once and has_bucket else 0
    return total


def check_config(cfg: KernelConfig, classes, max_bounds: int, gpu: bool) -> str | None:
    """Why `cfg` cannot run these columns, or None."""
    if cfg.threads <= 0 or cfg.threads & (cfg.threads - 1) or cfg.threads > 1024:
        return f"threads {cfg.threads}: a power of two <= 1024"
    if cfg.vec not in (1, 2, 4, 8):
        return f"vec {cfg.vec}: 1, 2, 4 or 8"
    if cfg.group not in (1, 2, 4, 8):
        return f"group {cfg.group}: 1, 2, 4 or 8"
    if cfg.rows < 1 or cfg.unroll < 1:
        return "rows and unroll must be >= 1"
    if not 0 <= cfg.linear_search <= 64:
        return f"linear_search {cfg.linear_search}: 0 (binary search) to 64 boundaries"
    if not 0 <= cfg.occupancy <= 100:
        return f"occupancy {cfg.occupancy}: a percentage (0: no bound)"
    widest = max((k.dim for k in classes), default=1)
    if -(-widest // cfg.vec) > cfg.threads:
        return f"dim {widest} needs {-(-widest // cfg.vec)} lanes of {cfg.vec}, more than {cfg.threads} threads"
    if gpu and shared_bytes(cfg, max_bounds) > MAX_SHARED_BYTES:
        if cfg.smem_bounds and 4 * max_bounds > MAX_SHARED_BYTES:
            return f"{max_bounds} bucket boundaries do not fit in shared memory"
        return f"{shared_bytes(cfg, max_bounds)} bytes of shared memory staged per block, more than {MAX_SHARED_BYTES}"
    return None


def _plan(cfg: KernelConfig, classes) -> list[tuple[int, int, int, int, int, int]]:
    """Per class in block order: (first, count, lanes, columns per block, bags per pass, bags per block)."""
    order = sorted(classes, key=lambda k: 0 if k.multi == cfg.heavy_first else 1)  # stable
    out = []
    for k in order:
        lanes = -(-max(k.dim, 1) // cfg.vec)
        grp = max(1, min(cfg.group, cfg.threads // lanes, k.count))
        bpp = cfg.threads // (lanes * grp)
        out.append((k.first, k.count, lanes, grp, bpp, bpp * (1 if k.multi else cfg.rows)))
    return out


def num_units(cfg: KernelConfig, classes, batch):
    """Blocks one call launches for `batch` bags (an int, or an int64 PrimExpr)."""
    total = 0
    for _, count, _, grp, _, bpu in _plan(cfg, classes):
        total = total + (-(-count // grp)) * ((batch + (bpu - 1)) // bpu)
    return total


class _UnitMap:
    """Block index u -> (first column, tile, lanes, columns, bags per pass, passes, ...) as select chains over the
    class table."""

    def __init__(self, cfg: KernelConfig, classes, b_sz) -> None:
        self.cfg = cfg
        self.rows: list[tuple] = []
        start = tirx.const(0, I64)
        for first, count, lanes, grp, bpp, bpu in _plan(cfg, classes):
            tiles = tirx.floordiv(b_sz + (bpu - 1), bpu)
            groups = -(-count // grp)
            end = start + groups * tiles
            self.rows.append((start, end, first, count, groups, tiles, lanes, grp, bpp, bpu))
            start = end

    def _chain(self, u, value) -> tirx.PrimExpr:
        out = value(*self.rows[-1])
        for r in reversed(self.rows[:-1]):
            out = tirx.Select(u < r[1], value(*r), out)
        return out

    def column(self, u):
        """The first column of the unit's group."""
        if self.cfg.interleave:
            return self._chain(u, lambda s, e, f, n, gs, tl, la, g, bpp, bpu:
                               f + tirx.floormod(u - s, gs) * g)
        return self._chain(u, lambda s, e, f, n, gs, tl, la, g, bpp, bpu: f + tirx.floordiv(u - s, tl) * g)

    def end(self, u):
        """One past the unit's class's last column."""
        return self._chain(u, lambda s, e, f, n, gs, tl, la, g, bpp, bpu: tirx.const(f + n, I64))

    def tile(self, u):
        if self.cfg.interleave:
            return self._chain(u, lambda s, e, f, n, gs, tl, la, g, bpp, bpu: tirx.floordiv(u - s, gs))
        return self._chain(u, lambda s, e, f, n, gs, tl, la, g, bpp, bpu: tirx.floormod(u - s, tl))

    def lanes(self, u):
        return self._chain(u, lambda s, e, f, n, gs, tl, la, g, bpp, bpu: tirx.const(la, I64))

    def group(self, u):
        return self._chain(u, lambda s, e, f, n, gs, tl, la, g, bpp, bpu: tirx.const(g, I64))

    def per_pass(self, u):
        return self._chain(u, lambda s, e, f, n, gs, tl, la, g, bpp, bpu: tirx.const(bpp, I64))

    def per_unit(self, u):
        return self._chain(u, lambda s, e, f, n, gs, tl, la, g, bpp, bpu: tirx.const(bpu, I64))

    def passes(self, u):
        return self._chain(u, lambda s, e, f, n, gs, tl, la, g, bpp, bpu: tirx.const(bpu // bpp, I64))


def max_bounds(meta) -> int:
    """The most boundaries any bucketized column has (the shared-memory staging buffer's size)."""
    m = meta_rows(meta)
    sel = m[:, META.index("kind")] == KIND["bucket"]
    return int(m[sel, META.index("pre_b")].max()) if sel.any() else 0


def _vec_stores(meta, width: int, vec: int) -> bool:
    """Every column's dim and output offset (and the width) are multiples of vec, and none is numeric: results go
    out as vec-wide stores; otherwise lane k of each vector is stored alone (lanes past the dim skipped)."""
    m = meta_rows(meta)
    return vec > 1 and width % vec == 0 and bool(
        np.all(m[:, META.index("dim")] % vec == 0) and np.all(m[:, META.index("out_off")] % vec == 0)
        and np.all(m[:, META.index("kind")] != KIND["numeric"]))


def fused_embedding(meta, width: int, gpu: bool, buckets=((None, DEFAULT),), shapes=None,
                    packed_dtype: str = "int64"):
    """The kernel for these columns (static `meta`, concat `width`), one schedule per batch bucket.

    buckets: ((max batch or None for the last, KernelConfig), ...), at most MAX_BUCKETS, ascending.
    shapes: (packed length, boundaries, table words, batch) to fix the buffer sizes (tuning tasks); default
        symbolic (one kernel for every request).
    packed_dtype: "int64", or "int32" for a packed input whose offsets and ids fit in 31 bits (half the bytes the
        kernel reads of it; values widened to int64 as they are read, so the body is the same). The model's
        dtype is its packed parameter's (FuseColumns chooses it; the host packers write it).
    """
    if packed_dtype not in ("int64", "int32"):
        raise ValueError(f"packed_dtype must be int64 or int32, got {packed_dtype!r}")
    meta = meta_rows(meta)
    key = (meta.tobytes(), meta.shape[0], width, gpu,
           tuple((b, tuple(sorted(c.to_json().items()))) for b, c in buckets), shapes, packed_dtype)
    if key not in _CACHE:  # TVMScript parsing takes ~0.1 s; tuning asks for the same variants again
        if len(_CACHE) > 256:
            _CACHE.clear()
        _CACHE[key] = _make(meta, width, gpu, tuple(buckets), shapes, packed_dtype)
    return _CACHE[key]


_CACHE: dict = {}


def _row_value(views, locs, dt: int, unit, lane, vec: int, dim, s: int):
    """float32 values of elements [lane * vec + s * w, + w) (w = min(vec, 4)) of the row starting at 16-byte unit
    `unit` of a table of dtype code dt; vec = 8 reads the locals the kernel loaded first (h8 / b8 / q8), int8
    the row's scale and bias (qp)."""
    tables, th, tb, tq, tw = views
    h8, b8, q8, qp = locs
    w = min(vec, 4)
    fv = F32 if w == 1 else f"float32x{w}"

    def rng(base, lanes):
        return base if lanes == 1 else T.ramp(base, 1, lanes)

    if dt == 0:  # float32
        return tables[rng(unit * 4 + lane * vec + s * w, w)]
    if dt in (1, 2):  # float16 / bfloat16
        if vec == 8:
            raw = T.Shuffle([(h8 if dt == 1 else b8)[0]], [s * 4 + k for k in range(4)])
        else:
            raw = (th if dt == 1 else tb)[rng(unit * 8 + lane * vec, w)]
        if dt == 1:
            return T.Cast(fv, raw)
        u = "uint32" if w == 1 else f"uint32x{w}"  # bfloat16 is the top half of a float32
        return T.reinterpret(fv, T.shift_left(T.Cast(u, raw), T.uint32(16) if w == 1 else
                                              T.Broadcast(T.uint32(16), w)))
    # int8: q * scale + bias
    scale, bias = T.Shuffle([qp[0]], [0]), T.Shuffle([qp[0]], [1])
    if vec == 8:  # 8 codes in two words: the bytes of word s
        q = T.Cast(fv, T.bitwise_and(T.shift_right(T.Broadcast(T.Shuffle([q8[0]], [s]), 4),
                                                   T.Ramp(T.uint32(0), T.uint32(8), 4)),
                                     T.Broadcast(T.uint32(255), 4)))
    else:
        q = T.Cast(fv, tq[rng(unit * 16 + lane * vec, w)])
    return q * scale + bias if w == 1 else q * T.Broadcast(scale, w) + T.Broadcast(bias, w)


def _make(meta, width: int, gpu: bool, buckets, shapes, packed_dtype: str = "int64"):
    if not buckets or len(buckets) > MAX_BUCKETS:
        raise ValueError(f"1 to {MAX_BUCKETS} batch buckets, got {len(buckets)}")
    classes = column_classes(meta)
    max_nb = max(max_bounds(meta), 1)
    for _, cfg in buckets:
        why = check_config(cfg, classes, max_nb, gpu)
        if why:
            raise ValueError(f"kernel config {cfg}: {why}")
    nm, C = len(META), meta.shape[0]
    tables_read = meta[:, META.index("kind")] != KIND["numeric"]  # the table dtypes the kernel must decode
    dtypes = sorted({int(x) for x in meta[tables_read, META.index("tdtype")]}) or [0]
    has_bucket = bool((meta[:, META.index("kind")] == KIND["bucket"]).any())
    if shapes is None:
        dims = [tirx.Var(n, I64) for n in ("p_len", "nb", "ne", "b_sz")]
    else:
        dims = [tirx.const(int(v), I64) for v in shapes]
    limits = [b for b, _ in buckets[:-1]] + [None]
    cfgs = [c for _, c in buckets]
    n_cfg = len(cfgs)
    cfgs = cfgs + [cfgs[-1]] * (MAX_BUCKETS - n_cfg)  # unused slots: parsed, never emitted (static branches)
    limits = [int(x) if x is not None else 0 for x in limits] + [0] * (MAX_BUCKETS - n_cfg)
    stores = [_vec_stores(meta, width, min(c.vec, 4)) for c in cfgs]
    smem = [bool(c.smem_bounds and gpu) for c in cfgs]

    def units(cfg, b_sz):
        return num_units(cfg, classes, b_sz)

    # block -> unit quantities (TVMScript binds only PrimExprs to names, so these are calls, not a map object)
    def u_column(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).column(u)

    def u_end(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).end(u)

    def u_tile(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).tile(u)

    def u_lanes(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).lanes(u)

    def u_group(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).group(u)

    def u_per_pass(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).per_pass(u)

    def u_per_unit(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).per_unit(u)

    def u_passes(cfg, b_sz, u):
        return _UnitMap(cfg, classes, b_sz).passes(u)

    # what a column's thread reads of its static facts: its local copy `ml` of the row the block staged in shared
    # memory (a local: ThreadSync cannot see shared loads inside conditions), or global memory
    def mget(meta_b, ml, packed, c, g, k, staged):
        return ml[k] if staged else meta_b[c, k]

    # one int64 word of the packed input (an int32 input is widened as it is read: the body stays int64)
    def pk(packed, i):
        return packed[i] if packed_dtype == I64 else T.Cast(I64, packed[i])

    def data_base(meta_b, ml, packed, c, g, staged):
        return ml[_DATA] if staged else pk(packed, c)

    def aux(meta_b, ml, packed, c, g, staged):
        return ml[_AUX] if staged else pk(packed, C + c)

    def csr_total(meta_b, ml, packed, c, g, base, b_sz, staged):
        return ml[_TOTAL] if staged else pk(packed, base + b_sz)

    def row_unit(meta_b, ml, packed, c, g, rid, staged):  # the 16-byte unit where row rid[0] starts
        return mget(meta_b, ml, packed, c, g, 4, staged) + rid[0] * mget(meta_b, ml, packed, c, g, 2, staged)

    def row_value(views, locs, dt, unit, lane, vec, dim, s):
        return _row_value(views, locs, dt, unit, lane, vec, dim, s)

    @T.macro
    def binary_search(bounds, sb, xv, rid, top, bv, lo_b, count, g, use_smem):
        top[0] = count
        while rid[0] < top[0]:
            # through a local: ThreadSync cannot see a shared load inside a condition
            if use_smem:
                bv[0] = sb[g * max_nb + T.floordiv(rid[0] + top[0], 2)]
            else:
                bv[0] = bounds[lo_b + T.floordiv(rid[0] + top[0], 2)]
            if xv[0] < bv[0]:
                top[0] = T.floordiv(rid[0] + top[0], 2)
            else:
                rid[0] = T.floordiv(rid[0] + top[0], 2) + T.int64(1)

    @T.macro
    def search(bounds, sb, xv, rid, top, bv, lo_b, count, g, use_smem, lin):
        # bucketize xv[0] (upper_bound; NaN -> last) into rid[0]
        rid[0] = T.int64(0)
        if lin > 0:
            if count <= T.int64(lin):
                # the count of boundaries <= x (sorted: the same index). A select on x < b, not !(x < b): TVM's
                # simplifier turns the latter into b <= x, false for NaN, which TF sends to the last bucket
                for i in T.unroll(T.int64(lin)):
                    if use_smem:  # slots past count hold stale words: loaded anyway, not counted
                        rid[0] = rid[0] + T.Select(i < count, T.Select(xv[0] < sb[g * max_nb + i], T.int64(0),
                                                                        T.int64(1)), T.int64(0))
                    else:
                        rid[0] = rid[0] + T.if_then_else(i < count, T.if_then_else(
                            xv[0] < bounds[lo_b + T.min(i, count - T.int64(1))], T.int64(0), T.int64(1)),
                            T.int64(0))
            else:
                binary_search(bounds, sb, xv, rid, top, bv, lo_b, count, g, use_smem)
        else:
            binary_search(bounds, sb, xv, rid, top, bv, lo_b, count, g, use_smem)

    @T.macro
    def accumulate(tables, th, tb, tw, tq, acc, h8, b8, q8, qp, dt, unit, lane, wv, dim, vec, w):
        # one id's row (this lane's elements) times its weight, into acc (w = min(vec, 4) elements per sub-vector)
        if dt == 1 and vec == 8:  # one 16-byte load of 8 halves
            h8[0] = th[T.ramp(unit * 8 + lane * vec, 1, 8)]
        if dt == 2 and vec == 8:
            b8[0] = tb[T.ramp(unit * 8 + lane * vec, 1, 8)]
        if dt == 3:  # the row's scale and bias, after its codes (8-byte aligned)
            qp[0] = tables[T.ramp(unit * 4 + T.floordiv(dim + 7, 8) * 2, 1, 2)]
        if dt == 3 and vec == 8:  # 8 codes: one 8-byte load
            q8[0] = tw[T.ramp(unit * 4 + lane * 2, 1, 2)]
        if w == 1:
            acc[0] = acc[0] + row_value((tables, th, tb, tq, tw), (h8, b8, q8, qp), dt, unit, lane, vec, dim,
                                        0) * wv[0]
        else:
            acc[0] = acc[0] + row_value((tables, th, tb, tq, tw), (h8, b8, q8, qp), dt, unit, lane, vec, dim,
                                        0) * T.Broadcast(wv[0], w)
        if vec == 8:
            if dt != 0:
                acc[1] = acc[1] + row_value((tables, th, tb, tq, tw), (h8, b8, q8, qp), dt, unit, lane, vec, dim,
                                            1) * T.Broadcast(wv[0], w)
            elif lane * vec + 4 < dim:  # a float32 row is padded to 4 floats only
                acc[1] = acc[1] + row_value((tables, th, tb, tq, tw), (h8, b8, q8, qp), dt, unit, lane, vec, dim,
                                            1) * T.Broadcast(wv[0], w)

    @T.macro
    def store_lanes(out, acc, b, col, s, w, lane, vec, dim, scale):
        for k in T.unroll(T.int64(w)):
            if lane * vec + s * w + k < dim:
                out[b, col + s * w + k] = T.Shuffle([acc[s]], [k]) * scale

    @T.macro
    def bag(packed, meta_b, bounds, tables, th, tb, tw, tq, out, sb, ml, sid, c, g, lane, b, slot, b_sz, vec,
            unroll, staged, once, w, subs, vec_store, use_smem, lin):
        # one bag b of column c: this thread's lane (vec elements of the row, in subs vectors of w) of it
        lo = T.alloc_buffer((1,), I64, scope="local")
        hi = T.alloc_buffer((1,), I64, scope="local")
        den = T.alloc_buffer((1,), F32, scope="local")
        wv = T.alloc_buffer((1,), F32, scope="local")
        rid = T.alloc_buffer((1,), I64, scope="local")
        top = T.alloc_buffer((1,), I64, scope="local")
        xv = T.alloc_buffer((1,), F32, scope="local")
        bv = T.alloc_buffer((1,), F32, scope="local")
        present = T.alloc_buffer((1,), "bool", scope="local")
        acc = T.alloc_buffer((subs,), F32 if w == 1 else f"float32x{w}", scope="local")
        h8 = T.alloc_buffer((1,), "float16x8" if 1 in dtypes and vec == 8 else F32, scope="local")
        b8 = T.alloc_buffer((1,), "uint16x8" if 2 in dtypes and vec == 8 else F32, scope="local")
        q8 = T.alloc_buffer((1,), "uint32x2" if 3 in dtypes and vec == 8 else F32, scope="local")
        qp = T.alloc_buffer((1,), "float32x2" if 3 in dtypes else F32, scope="local")
        kind = mget(meta_b, ml, packed, c, g, 0, staged)
        dim = mget(meta_b, ml, packed, c, g, 1, staged)
        base = data_base(meta_b, ml, packed, c, g, staged)
        col = mget(meta_b, ml, packed, c, g, 3, staged) + lane * vec
        if kind == T.int64(4):  # numeric: copy up to vec floats
            for k in T.unroll(T.int64(vec)):
                if lane * vec + k < dim:
                    out[b, col + k] = T.reinterpret(F32, T.Cast("int32", packed[base + b * dim + lane * vec + k]))
        else:
            # the entries of bag b: [lo, hi) in this column's id array
            if kind == T.int64(0):
                lo[0] = pk(packed, base + b)
                hi[0] = pk(packed, base + b + 1)
            elif kind == T.int64(1):
                lo[0] = b * aux(meta_b, ml, packed, c, g, staged)
                hi[0] = lo[0] + aux(meta_b, ml, packed, c, g, staged)
            else:
                lo[0] = b
                hi[0] = b + 1
            id_base = base + T.if_then_else(kind == T.int64(0), b_sz + 1, T.int64(0))
            den[0] = T.float32(0)  # count, or sum(w) / sum(w^2) of a weighted column
            for s in T.unroll(subs):
                if w == 1:
                    acc[s] = T.float32(0)
                else:
                    acc[s] = T.Broadcast(T.float32(0), w)
            for jj in T.serial(T.floordiv(hi[0] - lo[0] + (unroll - 1), unroll)):
                for k in T.unroll(T.int64(unroll)):
                    if jj * unroll + k < hi[0] - lo[0]:
                        j = jj * unroll + k
                        if kind == T.int64(3):  # bucketize the raw value
                            if once:  # searched once for the block, before the bags
                                rid[0] = T.Cast(I64, sid[slot])
                            else:
                                xv[0] = T.reinterpret(F32, T.Cast("int32", packed[id_base + lo[0] + j]))
                                search(bounds, sb, xv, rid, top, bv, mget(meta_b, ml, packed, c, g, 8, staged),
                                       mget(meta_b, ml, packed, c, g, 9, staged), g, use_smem, lin)
                        else:
                            rid[0] = pk(packed, id_base + lo[0] + j)
                        # a dense padded input marks missing entries with -1 (before preprocessing)
                        present[0] = not (kind == T.int64(1) and rid[0] == T.int64(-1))
                        if mget(meta_b, ml, packed, c, g, 7, staged) == T.int64(1):
                            # identity with default: out of range -> default
                            rid[0] = T.if_then_else(rid[0] < T.int64(0) or
                                                    rid[0] >= mget(meta_b, ml, packed, c, g, 8, staged),
                                                    mget(meta_b, ml, packed, c, g, 9, staged), rid[0])
                        elif mget(meta_b, ml, packed, c, g, 7, staged) == T.int64(2):
                            # Keras' Embedding: a negative id counts from the end
                            rid[0] = T.if_then_else(rid[0] < T.int64(0),
                                                    rid[0] + mget(meta_b, ml, packed, c, g, 8, staged), rid[0])
                        # per-id weight (weighted columns: after the ids, offsets[B] of them)
                        wv[0] = T.if_then_else(
                            mget(meta_b, ml, packed, c, g, 11, staged) == T.int64(1),
                            T.reinterpret(F32, T.Cast("int32", packed[
                                id_base + csr_total(meta_b, ml, packed, c, g, base, b_sz, staged) + lo[0] + j])),
                            T.float32(1))
                        if present[0] and not (T.bitwise_and(mget(meta_b, ml, packed, c, g, 10, staged),
                                                             T.int64(FILTER_NEG_ID)) != 0 and rid[0] < T.int64(0)) \
                                and not (T.bitwise_and(mget(meta_b, ml, packed, c, g, 10, staged),
                                                       T.int64(FILTER_NONPOS_WEIGHT)) != 0
                                         and wv[0] <= T.float32(0)):
                            den[0] = den[0] + T.if_then_else(mget(meta_b, ml, packed, c, g, 6, staged) == T.int64(2),
                                                             wv[0] * wv[0], wv[0])
                            # ids were range-checked (or proven); the clamp only keeps reads in bounds
                            rid[0] = T.max(T.min(rid[0], mget(meta_b, ml, packed, c, g, 5, staged) - T.int64(1)),
                                           T.int64(0))
                            # rows start 16-byte aligned and lanes are vec-aligned: vector loads of the row
                            if len(dtypes) == 1:
                                accumulate(tables, th, tb, tw, tq, acc, h8, b8, q8, qp, dtypes[0],
                                           row_unit(meta_b, ml, packed, c, g, rid, staged), lane, wv, dim,
                                           vec, w)
                            else:
                                tdt = mget(meta_b, ml, packed, c, g, 12, staged)
                                if 0 in dtypes:
                                    if tdt == T.int64(0):
                                        accumulate(tables, th, tb, tw, tq, acc, h8, b8, q8, qp, 0,
                                                   row_unit(meta_b, ml, packed, c, g, rid, staged), lane, wv,
                                                   dim, vec, w)
                                if 1 in dtypes:
                                    if tdt == T.int64(1):
                                        accumulate(tables, th, tb, tw, tq, acc, h8, b8, q8, qp, 1,
                                                   row_unit(meta_b, ml, packed, c, g, rid, staged), lane, wv,
                                                   dim, vec, w)
                                if 2 in dtypes:
                                    if tdt == T.int64(2):
                                        accumulate(tables, th, tb, tw, tq, acc, h8, b8, q8, qp, 2,
                                                   row_unit(meta_b, ml, packed, c, g, rid, staged), lane, wv,
                                                   dim, vec, w)
                                if 3 in dtypes:
                                    if tdt == T.int64(3):
                                        accumulate(tables, th, tb, tw, tq, acc, h8, b8, q8, qp, 3,
                                                   row_unit(meta_b, ml, packed, c, g, rid, staged), lane, wv,
                                                   dim, vec, w)
            # TF: sum (an empty bag sums to 0); mean = / count (or / sum(w)); sqrtn = / sqrt(count)
            # (or / sqrt(sum(w^2))); 0 where that divisor is 0 (empty bags; DivNoNan). A select, not a branch:
            # nvcc keeps the vector store then.
            scale = T.if_then_else(
                mget(meta_b, ml, packed, c, g, 6, staged) == T.int64(0), T.float32(1),
                T.if_then_else(den[0] == T.float32(0), T.float32(0),
                               T.if_then_else(mget(meta_b, ml, packed, c, g, 6, staged) == T.int64(1),
                                              T.float32(1) / den[0],
                                              T.float32(1) / T.sqrt(den[0]))))
            for s in T.unroll(subs):
                if s == 0 or lane * vec + s * w < dim:
                    if w == 1:
                        if lane * vec < dim:
                            out[b, col] = acc[s] * scale
                    elif vec_store and gpu:
                        # output offsets are multiples of w here. A vector store through st.global.v4: nvcc split
                        # the plain `*(float4*)p = v` of this kernel into four 4-byte stores (ncu, E at B = 512:
                        # 4x the output's sectors written to L2, the kernel's busiest unit)
                        T.evaluate(T.call_extern("void", "__stwb", T.address_of(out[b, T.ramp(
                            T.floordiv(mget(meta_b, ml, packed, c, g, 3, staged), w) * w + lane * vec + s * w, 1, w)]),
                            acc[s] * T.Broadcast(scale, w)))
                    elif vec_store:
                        out[b, T.ramp(T.floordiv(mget(meta_b, ml, packed, c, g, 3, staged), w) * w + lane * vec +
                                      s * w, 1, w)] = acc[s] * T.Broadcast(scale, w)
                    elif gpu:
                        # some column is numeric or misaligned: each vector stored whole where it lies 16-byte
                        # aligned inside its column (decided per bag: with an odd width the rows' alignment
                        # alternates), lane by lane elsewhere
                        if T.floormod(b * width + col + s * w, w) == T.int64(0) and lane * vec + s * w + w <= dim:
                            T.evaluate(T.call_extern("void", "__stwb", T.address_of(out[b, T.ramp(col + s * w, 1, w)]),
                                                     acc[s] * T.Broadcast(scale, w)))
                        else:
                            store_lanes(out, acc, b, col, s, w, lane, vec, dim, scale)
                    else:
                        store_lanes(out, acc, b, col, s, w, lane, vec, dim, scale)

    @T.macro
    def unit_block(u, packed, meta_b, bounds, tables, th, tb, tw, tq, out, b_sz, cfg, vec_store, use_smem):
        with T.sblock("unit"):
            T.reads(packed[0:packed.shape[0]], meta_b[0:C, 0:nm], bounds[0:bounds.shape[0]],
                    tables[0:tables.shape[0]])
            T.writes(out[0:b_sz, 0:width])
            # the block's copies of its columns' boundaries, meta rows and buckets (placeholders of one
            # element unless staged; on llvm one unit's scratch)
            sb = T.alloc_buffer((cfg.group * max_nb if use_smem else 1,), F32,
                                scope="shared" if gpu else "global")
            sm = T.alloc_buffer((cfg.group * META_STAGED if cfg.stage_meta else 1,), I64,
                                scope="shared" if gpu else "global")
            sid = T.alloc_buffer((cfg.threads * cfg.rows if cfg.search_once and has_bucket else 1,), "int32",
                                 scope="shared" if gpu else "global")
            if use_smem or cfg.stage_meta:
                # the unit's columns are the same for the whole block: stage their facts once
                for t in (T.thread_binding(cfg.threads, thread="threadIdx.x") if gpu else
                          T.serial(cfg.threads)):
                    with T.sblock("stage"):
                        T.reads(packed[0:packed.shape[0]], meta_b[0:C, 0:nm], bounds[0:bounds.shape[0]])
                        T.writes(sm[0:sm.shape[0]], sb[0:sb.shape[0]])
                        c0 = u_column(cfg, b_sz, u)
                        g_n = u_group(cfg, b_sz, u)
                        c_end = u_end(cfg, b_sz, u)
                        if cfg.stage_meta:
                            for i in T.serial((cfg.group * META_STAGED + cfg.threads - 1) // cfg.threads):
                                if i * cfg.threads + T.Cast(I64, t) < cfg.group * META_STAGED:
                                    gs = T.floordiv(i * cfg.threads + T.Cast(I64, t), META_STAGED)
                                    ks = T.floormod(i * cfg.threads + T.Cast(I64, t), META_STAGED)
                                    if gs < g_n and c0 + gs < c_end:
                                        if ks < nm:
                                            sm[i * cfg.threads + T.Cast(I64, t)] = meta_b[c0 + gs, ks]
                                        elif ks == _DATA:
                                            sm[i * cfg.threads + T.Cast(I64, t)] = pk(packed, c0 + gs)
                                        elif ks == _AUX:
                                            sm[i * cfg.threads + T.Cast(I64, t)] = pk(packed, C + c0 + gs)
                                        elif meta_b[c0 + gs, 0] == T.int64(0):  # a CSR column's id count
                                            sm[i * cfg.threads + T.Cast(I64, t)] = \
                                                pk(packed, pk(packed, c0 + gs) + b_sz)
                        if use_smem:
                            for i in T.serial((cfg.group * max_nb + cfg.threads - 1) // cfg.threads):
                                if i * cfg.threads + T.Cast(I64, t) < cfg.group * max_nb:
                                    gb = T.floordiv(i * cfg.threads + T.Cast(I64, t), max_nb)
                                    jb = T.floormod(i * cfg.threads + T.Cast(I64, t), max_nb)
                                    if gb < g_n and c0 + gb < c_end:
                                        if meta_b[c0 + gb, 0] == T.int64(3) and jb < meta_b[c0 + gb, 9]:
                                            sb[i * cfg.threads + T.Cast(I64, t)] = \
                                                bounds[meta_b[c0 + gb, 8] + jb]
                if gpu:  # explicit: ThreadSync cannot insert a barrier under the host-side bucket dispatch
                    T.tvm_storage_sync("shared")
            if cfg.search_once and has_bucket:
                # every bag of the block's bucketized columns searched once, by one thread
                for t in (T.thread_binding(cfg.threads, thread="threadIdx.x") if gpu else
                          T.serial(cfg.threads)):
                    with T.sblock("search"):
                        T.reads(packed[0:packed.shape[0]], meta_b[0:C, 0:nm], bounds[0:bounds.shape[0]],
                                sm[0:sm.shape[0]], sb[0:sb.shape[0]])
                        T.writes(sid[0:sid.shape[0]])
                        sxv = T.alloc_buffer((1,), F32, scope="local")
                        srid = T.alloc_buffer((1,), I64, scope="local")
                        stop = T.alloc_buffer((1,), I64, scope="local")
                        sbv = T.alloc_buffer((1,), F32, scope="local")
                        sml = T.alloc_buffer((META_STAGED if cfg.stage_meta else 1,), I64, scope="local")
                        c0 = u_column(cfg, b_sz, u)
                        bpu = u_per_unit(cfg, b_sz, u)
                        g_n = u_group(cfg, b_sz, u)
                        c_end = u_end(cfg, b_sz, u)
                        b0 = u_tile(cfg, b_sz, u) * bpu
                        for i in T.serial(cfg.rows):
                            gq = T.floordiv(i * cfg.threads + T.Cast(I64, t), bpu)
                            bq = b0 + T.floormod(i * cfg.threads + T.Cast(I64, t), bpu)
                            if gq < g_n and c0 + gq < c_end and bq < b_sz:
                                if cfg.stage_meta:
                                    for k in T.unroll(META_STAGED):
                                        sml[k] = sm[gq * META_STAGED + k]
                                if mget(meta_b, sml, packed, c0 + gq, gq, 0, cfg.stage_meta) == T.int64(3):
                                    sxv[0] = T.reinterpret(F32, T.Cast("int32", packed[
                                        data_base(meta_b, sml, packed, c0 + gq, gq, cfg.stage_meta) + bq]))
                                    search(bounds, sb, sxv, srid, stop, sbv,
                                           mget(meta_b, sml, packed, c0 + gq, gq, 8, cfg.stage_meta),
                                           mget(meta_b, sml, packed, c0 + gq, gq, 9, cfg.stage_meta), gq,
                                           use_smem, min(cfg.linear_search, max_nb))
                                    sid[i * cfg.threads + T.Cast(I64, t)] = T.Cast("int32", srid[0])
                if gpu:
                    T.tvm_storage_sync("shared")
            for t in (T.thread_binding(cfg.threads, thread="threadIdx.x") if gpu else T.serial(cfg.threads)):
                with T.sblock("fused_embedding"):
                    T.reads(packed[0:packed.shape[0]], meta_b[0:C, 0:nm], bounds[0:bounds.shape[0]],
                            tables[0:tables.shape[0]], sb[0:sb.shape[0]], sm[0:sm.shape[0]],
                            sid[0:sid.shape[0]])
                    T.writes(out[0:b_sz, 0:width])
                    cbuf = T.alloc_buffer((1,), I64, scope="local")
                    ml = T.alloc_buffer((META_STAGED if cfg.stage_meta else 1,), I64, scope="local")
                    if cfg.group == 1:
                        cbuf[0] = u_column(cfg, b_sz, u)
                        c = cbuf[0]
                        lanes = u_lanes(cfg, b_sz, u)
                        bpp = u_per_pass(cfg, b_sz, u)
                        bag_in_pass = T.floordiv(T.Cast(I64, t), lanes)
                        lane = T.floormod(T.Cast(I64, t), lanes)
                        first = u_tile(cfg, b_sz, u) * bpp * u_passes(cfg, b_sz, u)
                        if cfg.stage_meta:
                            for k in T.unroll(META_STAGED):
                                ml[k] = sm[k]
                        for rr in T.unroll(T.int64(cfg.rows)):
                            if bag_in_pass < bpp and rr < u_passes(cfg, b_sz, u) and \
                                    first + rr * bpp + bag_in_pass < b_sz:
                                bag(packed, meta_b, bounds, tables, th, tb, tw, tq, out, sb, ml, sid, c, T.int64(0),
                                    lane,
                                    first + rr * bpp + bag_in_pass, rr * bpp + bag_in_pass, b_sz, cfg.vec,
                                    cfg.unroll, cfg.stage_meta, cfg.search_once and has_bucket, min(cfg.vec, 4),
                                    cfg.vec // min(cfg.vec, 4), vec_store, use_smem, min(cfg.linear_search, max_nb))
                    else:
                        lanes = u_lanes(cfg, b_sz, u)
                        bpp = u_per_pass(cfg, b_sz, u)
                        passes = u_passes(cfg, b_sz, u)
                        lane = T.floormod(T.Cast(I64, t), lanes)
                        first = u_tile(cfg, b_sz, u) * bpp * passes
                        grp = u_group(cfg, b_sz, u)
                        gt = T.floormod(T.floordiv(T.Cast(I64, t), lanes), grp)
                        cbuf[0] = u_column(cfg, b_sz, u) + gt
                        c = cbuf[0]
                        c_end = u_end(cfg, b_sz, u)
                        bag_in_pass = T.floordiv(T.Cast(I64, t), lanes * grp)
                        if cfg.stage_meta:
                            for k in T.unroll(META_STAGED):
                                ml[k] = sm[gt * META_STAGED + k]
                        for rr in T.unroll(T.int64(cfg.rows)):
                            if bag_in_pass < bpp and rr < passes and first + rr * bpp + bag_in_pass < b_sz and \
                                    c < c_end:
                                bag(packed, meta_b, bounds, tables, th, tb, tw, tq, out, sb, ml, sid, c, gt, lane,
                                    first + rr * bpp + bag_in_pass, gt * bpp * passes + rr * bpp + bag_in_pass,
                                    b_sz, cfg.vec,
                                    cfg.unroll, cfg.stage_meta, cfg.search_once and has_bucket, min(cfg.vec, 4),
                                    cfg.vec // min(cfg.vec, 4), vec_store, use_smem, min(cfg.linear_search, max_nb))

    @T.macro
    def unit_body(packed, meta_b, bounds, tables, th, tb, tw, tq, out, b_sz, cfg, vec_store, use_smem):
        for u in (T.thread_binding(units(cfg, b_sz), thread="blockIdx.x") if gpu else
                  T.parallel(units(cfg, b_sz))):
            if gpu and cfg.occupancy > 0:  # __launch_bounds__(threads, min blocks): ptxas keeps the registers under it
                with T.attr(0, "tirx.launch_bounds_min_blocks_per_sm", min_blocks(cfg)):
                    unit_block(u, packed, meta_b, bounds, tables, th, tb, tw, tq, out, b_sz, cfg, vec_store, use_smem)
            else:
                unit_block(u, packed, meta_b, bounds, tables, th, tb, tw, tq, out, b_sz, cfg, vec_store, use_smem)

    @T.prim_func(private=True, s_tir=True)
    def kernel(var_packed: T.handle, var_meta: T.handle, var_bounds: T.handle, var_tables: T.handle,
               var_out: T.handle):
        T.func_attr({"tirx.is_scheduled": gpu, "tirx.noalias": True})
        packed = T.match_buffer(var_packed, (dims[0],), packed_dtype)
        meta_b = T.match_buffer(var_meta, (C, nm), I64)
        bounds = T.match_buffer(var_bounds, (dims[1],), F32)
        tables = T.match_buffer(var_tables, (dims[2],), F32)
        out = T.match_buffer(var_out, (dims[3], width), F32)
        # compact tables: the same words read as halves / bfloat16 / bytes / words (recom_tvm.runtime.compact)
        th = T.decl_buffer((dims[2] * 2,), "float16", data=tables.data)
        tb = T.decl_buffer((dims[2] * 2,), "uint16", data=tables.data)
        tq = T.decl_buffer((dims[2] * 4,), "uint8", data=tables.data)
        tw = T.decl_buffer((dims[2],), "uint32", data=tables.data)
        if out.shape[0] > T.int64(0):  # CUDA rejects an empty grid
            if n_cfg == 1:
                unit_body(packed, meta_b, bounds, tables, th, tb, tw, tq, out, out.shape[0], cfgs[0], stores[0],
                          smem[0])
            elif out.shape[0] <= limits[0]:
                unit_body(packed, meta_b, bounds, tables, th, tb, tw, tq, out, out.shape[0], cfgs[0], stores[0],
                          smem[0])
            elif n_cfg == 2:
                unit_body(packed, meta_b, bounds, tables, th, tb, tw, tq, out, out.shape[0], cfgs[1], stores[1],
                          smem[1])
            elif out.shape[0] <= limits[1]:
                unit_body(packed, meta_b, bounds, tables, th, tb, tw, tq, out, out.shape[0], cfgs[1], stores[1],
                          smem[1])
            elif n_cfg == 3:
                unit_body(packed, meta_b, bounds, tables, th, tb, tw, tq, out, out.shape[0], cfgs[2], stores[2],
                          smem[2])
            elif out.shape[0] <= limits[2]:
                unit_body(packed, meta_b, bounds, tables, th, tb, tw, tq, out, out.shape[0], cfgs[2], stores[2],
                          smem[2])
            else:
                unit_body(packed, meta_b, bounds, tables, th, tb, tw, tq, out, out.shape[0], cfgs[3], stores[3],
                          smem[3])

    return kernel.with_attr("recom_tvm.fused", json.dumps(
        {"buckets": [[b, c.to_json()] for b, c in buckets], "classes": [dataclasses.astuple(k) for k in classes]}))
