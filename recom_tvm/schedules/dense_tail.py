"""Schedules of the dense tail: the MLP's layers, one schedule per batch bucket, dispatched by batch in one kernel.

After TVM's FuseOps a dense layer is one PrimFunc: a matmul `x [B, K] @ w [K, N]` (or `w [N, K]`) and an
elementwise epilogue over [B, N] (bias, activation). Its batch B is the model's symbolic batch, so one schedule must
serve every request: TVM's default (dlight's Matmul rule on CUDA) tiles B by 32 and N by 64 and loops over all of
K in one block, which at small batches leaves most of the GPU idle (model E's first layer, K = 8,120, N = 1,024:
16 blocks at B = 32), and llvm builds get no schedule at all (scalar loops, K innermost over a strided weight).

Here each layer gets one schedule per batch bucket (`DenseConfig`), and `dispatch` joins them into one PrimFunc
that branches on B on the host side of the kernel (one launch per call, like the fused embedding kernel):

- "gemv" (CUDA, B <= 1,023 by default): a block owns `rows` batch rows x `threads_n * vec` columns; `threads_n` threads
  read adjacent columns of w (coalesced) and `threads_k` threads split K (interleaved rows), each keeping
  rows x vec partial sums in registers; the partial sums meet in shared memory, where each thread sums threads_k
  of them for its outputs and applies the epilogue. Blocks along B (rows) and N keep the GPU busy at small
  batches (K split among the block's threads; with split_k also over blocks, below); w is
  read once per row block (from L2 after the first), a thread's vec columns as one vector load when N allows.
  With `kvec` > 1 a K thread owns kvec consecutive K instead of every threads_k-th and loads its kvec x vec
  weights of a K step into registers before the FMAs (kvec loads in flight). With `split_k` > 1 K is also split
  over blocks (blockIdx.z): a long K at a small batch otherwise leaves N / (threads_n * vec) blocks to stream all
  of w (model E's 8,152 x 1,024 layer at B = 1: 32 blocks on 132 SMs, DRAM at 42% of its peak on an H100). Each
  block stores its chunk's sums once to a global [split_k, B, N] buffer and a second kernel, one thread per output,
  adds the chunks and applies the epilogue. In a build that buffer is an extra output of the layer's call, sized
  at the split buckets' batch limit, which Relax plans (recom_tvm.backend.partial_sums: CUDA graphs capture it);
  a layer built on its own allocates it per call on the kernel's host side.
- "tiled" (CUDA, large batches): a register-tiled SIMT GEMM. A block owns (threads_m * rows) batch rows x
  (threads_n * vec) columns; each thread keeps rows x vec sums in registers; per K tile of `k_block`, the block's
  rows of x and columns of w are staged in shared memory (cooperative loads, vector loads of w along N), then
  each thread reads its rows and columns of the tiles into registers for rows x vec FMAs per K. Every x and w
  value a block loads is used threads_n (x) or threads_m (w) times from shared memory: the gemv reads w once per
  row block from L2 and x once per thread. K is padded with zeros to a multiple of k_block (E's K = 8,152 =
  8 x 1,019: a tile of 8 made 1,019 dependent steps, each a global-memory round trip). On an H100 (2026-12-06) it
  beat the gemv only at large batches (E's two wide layers at B = 2,048: 0.90 vs 1.29 ms and 0.12 vs 0.16 ms; at
  256 and 512 the gemv was 1.2-3x faster); narrow layers (N < TILED_MIN_N), layers whose w is [N, K] and layers
  whose N is not a multiple of a block's columns keep the gemv under a tiled config (fit). The default from
  B = 1,024 (CUDA_DEFAULT), and part of the dense design space (tuning).
- "matmul" (CUDA): dlight's Matmul rule (shared-memory tiles), TVM's own default.
- "cpu" (llvm): register tiles of `rows` x `cols` outputs (cols a multiple of the vector width) over K blocks of
  `k_block`, vectorized along N, parallel over column tiles (tiles divide N and K: no predicate in the vector
  loop).

The batch is padded to a multiple of `rows` inside the kernel, so registers and shared memory have constant sizes
for any B: a bucket whose batches are all at least `rows` shifts its last row block back to end at row B
(shift_last_row_block: every row exists, as at a static batch), others read padded rows clamped to the last row and
do not write them (clamp_padded_rows). Every transformation is a TVM
schedule primitive: the schedules compute the same function as the unscheduled layer (tests check it on llvm; the
GPU check runs the CUDA ones). `DenseConfig` fields are the knobs of the tuning space (recom_tvm.schedules.
dense_space).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import tvm
import tvm_ffi
from tvm import tirx
from tvm.ir.expr import TensorLoad  # what tirx.BufferLoad builds
from tvm.s_tir import Schedule
from tvm.s_tir.stmt import SBlock, SBlockRealize

RULES = ("gemv", "tiled", "matmul", "cpu")
MAX_SHARED_BYTES = 48 * 1024
MAX_THREADS = 1024
MAX_BUCKETS = 5
DENSE_ATTR = "recom_tvm.dense"  # on a scheduled layer: its buckets, as JSON


@dataclasses.dataclass(frozen=True)
class DenseConfig:
    """One schedule of a dense layer. Fields beside `rule` are the rule's knobs (others are ignored).

    gemv: rows (batch rows per block, in registers), threads_n (threads along N), vec (columns per thread),
        threads_k (threads splitting K), unroll (K steps unrolled), kvec (consecutive K per thread and step),
        split_k (blocks splitting K: each block sums its chunk of K into a global buffer of partial sums that a
        second kernel adds up before the epilogue; 1: one kernel, K split only among a block's threads).
    cpu: rows (rows per register tile), cols (columns per tile, vectorized), k_block (K per cache block), unroll,
        k_outer (1: K blocks outside the row tiles, each block of w reused from L1 by every row tile, the sums in
        memory; 0: each row tile's sums in registers over all of K), pack (1: each thread first copies its
        column strip of w to a contiguous buffer, read by every row tile: consecutive K rows of a strip are N
        floats apart in w, a new page per row for wide layers; worth it when several row tiles reuse the strip).
    tiled: rows (batch rows per thread), vec (columns per thread), threads_m (threads along the batch), threads_n
        (threads along N), k_block (K per shared-memory tile), unroll (K steps of a tile unrolled), pipeline (0: load
        a tile, then compute on it; 1: the next tiles load while this one is computed on, two buffers each
        (TVM's software pipeline); 2: the same with asynchronous copies, cp.async).
    matmul: no knobs (dlight's Matmul rule).
    """

    rule: str = "gemv"
    rows: int = 8
    threads_n: int = 16
    vec: int = 1
    threads_k: int = 16
    unroll: int = 4
    cols: int = 16
    k_block: int = 256
    k_outer: int = 0
    pack: int = 0
    kvec: int = 1
    threads_m: int = 16
    pipeline: int = 0
    split_k: int = 1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "DenseConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown dense config fields {sorted(unknown)}")
        return cls(**d)

    def knobs(self) -> dict:
        """The fields this config's rule reads (what a record or a log should show)."""
        names = {"gemv": ("rows", "threads_n", "vec", "threads_k", "unroll", "kvec", "split_k"), "matmul": (),
                 "tiled": ("rows", "vec", "threads_m", "threads_n", "k_block", "unroll", "pipeline"),
                 "cpu": ("rows", "cols", "k_block", "unroll", "k_outer", "pack")}[self.rule]
        return {"rule": self.rule, **{n: getattr(self, n) for n in names}}


# Defaults per target: ((max batch of the bucket or None for the rest, config), ...); `fit` shrinks them to a
# layer's N and K. CUDA: the configs with the least time summed over model E's three layers (8,152 -> 1,024,
# 1,024 -> 1,024, 1,024 -> 128) among 30 configs measured on every layer at B = 1 / 8 / 32 / 128 / 256 / 512 /
# 1,024 / 2,048 (NVIDIA H100, 2026-12-05, each kernel alone, L2 flushed; the configs: the best per layer of a
# random grid, benchmarks/tuning/dense_consensus_e_2026-12-05.json; results/dense_consensus_e_h100_2026-12-05.json).
# The three layers' sum, us, against the previous defaults (kvec = 1; dlight's matmul above 512):
#   B = 1: 58 (122); 8: 64 (116); 32: 79 (147); 128: 142 (178); 256: 228 (288); 512: 410 (504); 2,048: 1,490
#   (dlight's matmul 2,384).
# All four own 4 consecutive K per thread (kvec = 4); the small batches one or four rows per block and 64 K threads
# (more blocks, more loads in flight), the large ones 8 rows and 64-column blocks. dlight's matmul lost at every
# batch: it serves no bucket unless config.dense_gemv_max_batch says so (default_buckets).
# From B = 1,024 the tiled GEMM (64 x 64 outputs per block of 128 threads, 8 x 4 per thread, K tiles of 32): on E's
# two wide layers (H100, 2026-12-06, benchmarks/results/dense_tiled_e_h100_2026-12-06.json), us, gemv -> tiled:
# 8,152 -> 1,024 at B = 1,024 658 -> 536, at 2,048 1,292 -> 901; 1,024 -> 1,024 85 -> 74 and 157 -> 120. At 512 the
# gemv is faster (336 vs 426 us); between 512 and 1,024 it was not measured. Narrow layers (N < TILED_MIN_N:
# E's 1,024 -> 128, 29 vs 60 us) keep the gemv in that bucket too.
# Up to B = 64, split-K over blocks (2026-12-06, H100, 23 configs on E's three layers at B = 1 / 8 / 32 / 64 / 128 /
# 256, L2 flushed; benchmarks/results/dense_split_k_e_h100_2026-12-06.json), the three layers' sum, us, before ->
# after: B = 1: 55.4 -> 48.9 (the 8,152 x 1,024 layer 33.9 -> 25.8); 8: 72.6 -> 54.2; 32: 82.1 -> 68.8; 64: 121.4 ->
# 92.5. From 128 on no split config won (140.0 either way at 128, 231 vs 238 at 256).
CUDA_DEFAULT = (
    (8, DenseConfig("gemv", rows=8, threads_n=8, vec=4, threads_k=32, unroll=2, kvec=4, split_k=8)),
    (64, DenseConfig("gemv", rows=8, threads_n=8, vec=4, threads_k=32, unroll=2, kvec=4, split_k=4)),
    (128, DenseConfig("gemv", rows=8, threads_n=8, vec=4, threads_k=32, unroll=2, kvec=4)),
    (1023, DenseConfig("gemv", rows=8, threads_n=16, vec=4, threads_k=16, unroll=2, kvec=4)),
    (None, DenseConfig("tiled", rows=8, vec=4, threads_m=8, threads_n=16, k_block=32, unroll=8)),
)
LARGE_BATCH_GEMV = CUDA_DEFAULT[3][1]  # what a narrow layer runs under a tiled config (fit)
# Where K may not be split over blocks (config.dense_split_k off) the split buckets' one-kernel configs of before
# (the same measurement: their 8-row blocks without the split were 2x slower at B = 1).
CUDA_ONE_KERNEL = (
    (8, DenseConfig("gemv", rows=1, threads_n=16, vec=2, threads_k=64, unroll=4, kvec=4)),
    (64, DenseConfig("gemv", rows=4, threads_n=16, vec=2, threads_k=64, unroll=1, kvec=4)),
) + CUDA_DEFAULT[2:]
# llvm (measured on the 2-core build host, model E's 8,152 x 1,024 layer, CPU time of one thread): one row streams
# w in strips of 512 columns (2 KB of each row: 3.2 ms at B = 1, 3.4 with 256, 2.3 with whole rows but then one
# column tile, one thread; 5.6 with 32); from two rows on, each thread first packs its column strip (a page per K
# row of w otherwise: 8x fewer cycles at B = 256, 119 vs 954 ms) and reuses it for every 4-row tile.
CPU_DEFAULT = (
    (1, DenseConfig("cpu", rows=1, cols=512, k_block=256, unroll=1)),
    (None, DenseConfig("cpu", rows=4, cols=16, k_block=256, unroll=4, pack=1)),
)


GEMV_EVERY_BATCH = 1 << 30
TILED_MIN_N = 256  # narrower layers (E's 1,024 -> 128: 60 us tiled, 29 gemv at B = 2,048) keep the gemv


def default_buckets(target_kind: str, one_kernel: bool = False) -> tuple:
    """The default buckets of a target; on CUDA the buckets of CUDA_DEFAULT (gemv, then tiled from B = 1,024; with
    one_kernel those of CUDA_ONE_KERNEL: no split-K) up to config.dense_gemv_max_batch (default: every batch),
    dlight's matmul above it."""
    if target_kind != "cuda":
        return CPU_DEFAULT
    from .. import config

    table = CUDA_ONE_KERNEL if one_kernel else CUDA_DEFAULT
    limit = int(config.dense_gemv_max_batch)
    if limit < 1:
        return ((None, DenseConfig("matmul")),)
    if limit >= GEMV_EVERY_BATCH:
        return table
    from .tasks import fit_buckets

    kept = tuple((b, c) for b, c in table if b is not None and b < limit)
    at = next(c for b, c in table if b is None or b >= limit)  # the config of the bucket holding `limit`
    return fit_buckets(kept + ((limit, at), (None, DenseConfig("matmul"))), MAX_BUCKETS)


# ------------------------------------------------------------------------------------------------------ matching
@dataclasses.dataclass(frozen=True)
class DenseLayer:
    """What `match_dense` found: the batch (a symbolic var or a constant), K, N, and whether w is [N, K]."""

    batch: tirx.PrimExpr
    k: int
    n: int
    transposed: bool
    dtype: str

    @property
    def static_batch(self) -> int | None:
        return int(self.batch) if isinstance(self.batch, tirx.IntImm) else None


def _same(xs, ys) -> bool:
    return xs is not None and len(xs) == len(ys) and all(x.same_as(y) for x, y in zip(xs, ys))


def _point_vars(region) -> list | None:
    """The block vars a point access reads (one var per dimension), or None if it is not such an access."""
    out = []
    for r in region.region:
        if not (isinstance(r.extent, tirx.IntImm) and int(r.extent) == 1 and isinstance(r.min, tirx.Var)):
            return None
        out.append(r.min)
    return out


def match_dense(func) -> DenseLayer | None:
    """A dense layer (matmul + elementwise epilogue, as FuseOps makes it), or None for anything else."""
    if not isinstance(func, tirx.PrimFunc) or func.attrs is None:
        return None
    attrs = func.attrs
    if any(k in attrs for k in ("tirx.is_scheduled", "recom_tvm.fused", DENSE_ATTR)):
        return None
    try:
        sch = Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
    except Exception:  # noqa: BLE001 - not a schedulable function
        return None
    stmts = [sch.get(b) for b in blocks]
    if any(_has_nested_blocks(sch, b) for b in blocks):
        return None
    red = [i for i, s in enumerate(stmts) if any(v.iter_type == tirx.IterVar.CommReduce for v in s.iter_vars)]
    if len(red) != 1 or red[0] != 0:
        return None  # one reduction, first: no prologue (a producer would need its own schedule)
    mm = stmts[0]
    kinds = [v.iter_type for v in mm.iter_vars]
    if kinds != [tirx.IterVar.DataPar, tirx.IterVar.DataPar, tirx.IterVar.CommReduce] or len(mm.reads) != 2 \
            or len(mm.writes) != 1:
        return None
    vi, vj, vk = (v.var for v in mm.iter_vars)
    if not _same(_point_vars(mm.writes[0]), [vi, vj]) or not _is_mul_add(mm):
        return None
    x_read, w_read = mm.reads
    xv, wv = _point_vars(x_read), _point_vars(w_read)
    if not _same(xv, [vi, vk]):
        xv, wv = wv, xv
    if not _same(xv, [vi, vk]) or not (_same(wv, [vk, vj]) or _same(wv, [vj, vk])):
        return None
    ext = [v.dom.extent for v in mm.iter_vars]
    if not (isinstance(ext[1], tirx.IntImm) and isinstance(ext[2], tirx.IntImm)):
        return None
    dtype = str(mm.writes[0].source.dtype)
    if not dtype.startswith("float"):
        return None
    for s in stmts[1:]:  # the epilogue: elementwise over [B, N]
        if any(v.iter_type != tirx.IterVar.DataPar for v in s.iter_vars) or len(s.iter_vars) != 2:
            return None
        if any(str(r.source.dtype) == "bool" for r in s.reads):
            return None  # a bool in a vectorized epilogue becomes `float2 v = make_ushort2(..)` (TVM 0.27 CUDA codegen)
    return DenseLayer(ext[0], int(ext[2]), int(ext[1]), _same(wv, [vj, vk]), dtype)


def _has_nested_blocks(sch: Schedule, block) -> bool:
    return bool(sch.get_child_blocks(block))


def _is_mul_add(block) -> bool:
    """C[i, j] = C[i, j] + a * b, initialised to 0."""
    body, init = block.body, block.init
    if not isinstance(body, tirx.BufferStore) or not isinstance(body.value, tirx.Add):
        return False
    if not isinstance(init, tirx.BufferStore) or not (isinstance(init.value, tirx.FloatImm) and
                                                      float(init.value.value) == 0.0):
        return False
    a, b = body.value.a, body.value.b
    if isinstance(b, TensorLoad) and b.source.same_as(body.buffer):
        a, b = b, a
    return isinstance(a, TensorLoad) and a.source.same_as(body.buffer) and isinstance(b, tirx.Mul)


def layer_key(func: tirx.PrimFunc, target_tag: str) -> str:
    """Identifies a layer across builds and batch sizes: its function with the batch left symbolic (structural
    hash: shapes, epilogue, constants) and the target."""
    h = hashlib.sha1()
    h.update(str(tvm_ffi.structural_hash(func.without_attr("global_symbol"), map_free_vars=True)).encode())
    h.update(target_tag.encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------------ configs
def _pow2_at_most(n: int) -> int:
    return 1 << max(0, int(math.log2(max(n, 1))))


def fit(cfg: DenseConfig, layer: DenseLayer) -> DenseConfig:
    """The config shrunk to the layer: no more columns per block than N has, no more K threads than K has groups
    of kvec (kvec divides K)."""
    if cfg.rule == "gemv":
        # a block's columns at most N: with more (N = 24 under 8 threads x 4), TVM's final sum covered the N
        # columns there are but the epilogue placed at it still ran once per thread, and the spare threads wrote
        # the next row block's outputs from sums never made (wrong results from two row blocks on, emulated)
        cols = _pow2_at_most(layer.n)
        tn = min(cfg.threads_n, cols)
        vec = min(cfg.vec, max(1, cols // tn))
        kvec = next(v for v in (4, 2, 1) if v <= cfg.kvec and layer.k % v == 0)
        # K threads at most K's groups of kvec: a K thread with no K left never writes its partial sums, which the
        # final sum still reads (K = 40 under 16 threads x kvec 4: wrong, emulated)
        tk = max(1, min(cfg.threads_k * (cfg.threads_n // tn), _pow2_at_most(layer.k // kvec), MAX_THREADS // tn))
        return dataclasses.replace(cfg, threads_n=tn, vec=vec, threads_k=tk, kvec=kvec,
                                   split_k=_split_count(layer.k // kvec, tk, cfg.split_k))
    if cfg.rule == "tiled" and (layer.n < TILED_MIN_N or layer.transposed or layer.n % (cfg.threads_n * cfg.vec)):
        # too few column blocks to fill the GPU, w read as [N, K], or N not a multiple of a block's columns (what
        # was measured): the gemv, not a failed schedule (which would leave the layer to TVM's default)
        return fit(LARGE_BATCH_GEMV, layer)
    if cfg.rule == "tiled":  # (a block's columns divide N: no predicate but the batch's and K's padding)
        k_block = min(cfg.k_block, _pow2_at_most(layer.k))  # (K is padded to a multiple of it)
        return dataclasses.replace(cfg, k_block=k_block, unroll=_divisor_at_most(k_block, cfg.unroll))
    if cfg.rule == "cpu":  # tiles that divide N and K: no predicate inside the vectorized loop
        cols = next(c for c in (2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)
                    if c <= cfg.cols and layer.n % c == 0)
        k_block = _divisor_at_most(layer.k, cfg.k_block)
        if k_block * 4 < min(cfg.k_block, layer.k):  # K has no divisor near the block: one block over all of K
            k_block = layer.k
        return dataclasses.replace(cfg, cols=cols, k_block=k_block, unroll=_divisor_at_most(k_block, cfg.unroll))
    return cfg


def _split_count(groups: int, threads_k: int, most: int) -> int:
    """K's blocks for `groups` groups of kvec under threads_k K threads: at most `most`, and every block's chunk,
    the last (shorter) one included, at least threads_k groups (the same reason as fit's cap on threads_k: a K
    thread with no K would leave its partial sums unwritten)."""
    for s in range(max(1, most), 1, -1):
        chunk = -(-groups // s)
        if groups - (s - 1) * chunk >= threads_k:
            return s
    return 1


def _divisor_at_most(n: int, most: int) -> int:
    return next(d for d in range(min(n, most), 0, -1) if n % d == 0)


def check_config(cfg: DenseConfig, layer: DenseLayer | None = None) -> str | None:
    """Why the config cannot be built (None if it can)."""
    if cfg.rule not in RULES:
        return f"unknown rule {cfg.rule!r}"
    for name in ("rows", "threads_n", "vec", "threads_k", "unroll", "cols", "k_block"):
        if getattr(cfg, name) < 1:
            return f"{name} must be >= 1"
    if cfg.rule == "gemv":
        if cfg.threads_n * cfg.threads_k > MAX_THREADS:
            return f"{cfg.threads_n * cfg.threads_k} threads per block (at most {MAX_THREADS})"
        smem = cfg.threads_k * cfg.rows * cfg.threads_n * cfg.vec * 4
        if smem > MAX_SHARED_BYTES:
            return f"{smem} bytes of partial sums in shared memory (at most {MAX_SHARED_BYTES})"
        if cfg.rows * cfg.vec > 128:
            return f"{cfg.rows * cfg.vec} accumulators per thread (at most 128)"
        if cfg.kvec not in (1, 2, 4):
            return f"kvec must be 1, 2 or 4 (one load of at most 16 bytes), got {cfg.kvec}"
        if layer is not None and layer.k % cfg.kvec:
            return f"kvec {cfg.kvec} does not divide K = {layer.k}"
        if cfg.split_k < 1:
            return "split_k must be >= 1"
    if cfg.rule == "tiled":
        if cfg.threads_m < 1:
            return "threads_m must be >= 1"
        if cfg.threads_m * cfg.threads_n > MAX_THREADS:
            return f"{cfg.threads_m * cfg.threads_n} threads per block (at most {MAX_THREADS})"
        if cfg.rows * cfg.vec > 128:
            return f"{cfg.rows * cfg.vec} accumulators per thread (at most 128)"
        smem = (cfg.threads_m * cfg.rows + cfg.threads_n * cfg.vec) * cfg.k_block * 4
        if smem > MAX_SHARED_BYTES:
            return f"{smem} bytes of x and w tiles in shared memory (at most {MAX_SHARED_BYTES})"
        if layer is not None and layer.transposed:
            return "w is [N, K]: the tiled rule reads w as [K, N]"
        if cfg.pipeline not in (0, 1, 2):
            return f"pipeline must be 0, 1 or 2, got {cfg.pipeline}"
        if cfg.pipeline and 2 * smem > MAX_SHARED_BYTES:
            return f"{2 * smem} bytes of double-buffered tiles in shared memory (at most {MAX_SHARED_BYTES})"
    if cfg.rule == "cpu" and cfg.rows * cfg.cols > 2048:
        return f"{cfg.rows * cfg.cols} accumulators per tile (at most 2048)"
    return None


# ---------------------------------------------------------------------------------------------------- schedules
def schedule(func: tirx.PrimFunc, cfg: DenseConfig, target: tvm.target.Target,
             min_batch: int | None = None) -> tirx.PrimFunc:
    """The layer under one schedule, for any batch of at least `min_batch` (default 1; a static batch: itself);
    the result carries tirx.is_scheduled."""
    layer = match_dense(func)
    if layer is None:
        raise ValueError("not a dense layer (matmul + elementwise epilogue)")
    cfg = fit(cfg, layer)
    err = check_config(cfg, layer)
    if err:
        raise ValueError(f"dense config {cfg.knobs()}: {err}")
    if cfg.rule == "matmul":
        out = _dlight_matmul(func, target)
    elif cfg.rule == "tiled":
        sch = Schedule(func)
        mm, epi, pads = _prepare(sch, cfg.rows * cfg.threads_m, keep_pad=True, k_multiple=cfg.k_block)
        _tiled(sch, mm, epi, pads, cfg)
        out = _bound_padded_rows(sch.mod["main"], cfg.rows * cfg.threads_m, layer, min_batch)
    else:
        sch = Schedule(func)
        mm, epi = _prepare(sch, cfg.rows)
        if cfg.rule == "gemv" and cfg.kvec > 1:
            blocks = _gemv_kvec(sch, mm, epi, cfg, layer)
        elif cfg.rule == "gemv":
            blocks = _gemv(sch, mm, epi, cfg, vector_w=_vector_columns(cfg, layer))
        else:
            _cpu(sch, mm, epi, cfg)
        out = sch.mod["main"]
        if cfg.rule == "gemv":
            block_sum, epilogue = blocks  # (the same pair, or split-K's partials' store and its second kernel)
            out = guard_epilogue(out, *block_sum)
            if epilogue != block_sum:
                out = guard_epilogue(out, *epilogue)
            if cfg.rows * cfg.threads_n * cfg.vec < cfg.threads_n * cfg.threads_k:  # spare final-sum threads
                out = bound_final_sum_rows(out, block_sum, cfg.rows)
            # (split-K: the partial sums' rows are the block's own, so the last row block cannot shift)
            out = _bound_padded_rows(out, cfg.rows, layer, min_batch if cfg.split_k == 1 else 1)
    return out.with_attr("tirx.is_scheduled", True)


def _bound_padded_rows(func: tirx.PrimFunc, rows: int, layer: DenseLayer, min_batch: int | None) -> tirx.PrimFunc:
    """The padded rows of a schedule whose blocks own `rows` batch rows: the last row block shifted back where every
    batch it serves fills a block (min_batch, default 1; a static batch: itself), else its reads clamped."""
    least = min_batch if min_batch is not None else (layer.static_batch or 1)
    if rows > 1 and least >= rows:  # every row block can be a whole one
        return shift_last_row_block(func, rows, layer.batch)
    return clamp_padded_rows(func)


def _prepare(sch: Schedule, rows: int, keep_pad: bool = False, k_multiple: int = 1):
    """Pad the batch to a multiple of `rows` (padded rows read 0 until clamped or shifted), inline the padding and
    every epilogue block but the last into their consumers; -> (matmul block, epilogue block writing the output),
    and with keep_pad the padded copy of x too (not inlined: the tiled rule makes it its shared-memory tile, whose
    size is then the padded tile's, not min(B, tile) rows): then a list of the padded copies, and K is padded to a
    multiple of k_multiple too (zeros in x and w: E's K = 8,152 is 8 x 1,019)."""
    root = sch.get_sblock("root")
    mm = sch.get_child_blocks(root)[0]
    if rows > 1 or k_multiple > 1:
        sch.pad_einsum(mm, [rows, 1, k_multiple])
    blocks = sch.get_child_blocks(root)
    names = [sch.get(b).name_hint for b in blocks]
    mm = blocks[next(i for i, b in enumerate(blocks) if sch.get(b).init is not None)]
    mm_pos = names.index(sch.get(mm).name_hint)
    pads = []
    for b in blocks[:mm_pos]:  # the padded copies of x (and w): read in place, guarded
        if keep_pad:
            pads.append(b)
        else:
            sch.compute_inline(b)
    after = blocks[mm_pos + 1:]
    if not after:  # the matmul writes the output: accumulate in a local copy, then write
        epi = sch.cache_write(mm, 0, "global")
    else:
        for b in after[:-1]:
            sch.compute_inline(b)
        epi = after[-1]
    return (mm, epi, pads) if keep_pad else (mm, epi)


def _gemv(sch: Schedule, mm, epi, cfg: DenseConfig, vector_w: bool) -> tuple:
    rf, (by, bx, ts, tr, ko, ku, ii, v), top, last = _split_k_threads(sch, mm, cfg, kvec=1)
    if vector_w:  # one 8- or 16-byte load of w per K step (LDG.64/.128), not vec scalar ones; before
        sch.vectorize(v)  # decompose_reduction: the update alone is not a block vectorize accepts
    sch.decompose_reduction(rf, ko)
    for loop in (ku, ii) if vector_w else (ku, ii, v):
        sch.unroll(loop)
    return _sums(sch, mm, top, epi, last, cfg)


def _gemv_kvec(sch: Schedule, mm, epi, cfg: DenseConfig, layer: DenseLayer) -> tuple:
    """The gemv with each K thread owning `kvec` consecutive K (not every threads_k-th): per K step a thread first
    loads its kvec x vec weights into registers (kvec independent loads in flight, vector loads along N when N
    allows, along K when w is [N, K]), then does rows x vec x kvec FMAs, reading x in place. K must be a multiple of
    kvec (fit). Staging x in registers too cost registers and time (E's layers, H100: 43 against 32 registers,
    82 against 49 us at B = 32) and was dropped."""
    w = sch.get(mm).reads[_weight_read(sch, mm)].source
    rf, (by, bx, ts, tr, ko, ku, kk, ii, v), top, last = _split_k_threads(sch, mm, cfg, kvec=cfg.kvec)
    w_index = next(n for n, r in enumerate(sch.get(rf).reads) if r.source.same_as(w))
    w_tile = sch.cache_read(rf, w_index, "local")  # kvec x vec of w (vec x kvec if transposed)
    sch.compute_at(w_tile, ku)
    *_, outer, inner = sch.get_loops(w_tile)
    if layer.transposed or _vector_columns(cfg, layer):  # inner: kvec consecutive K, or vec aligned columns
        sch.vectorize(inner)
    else:
        sch.unroll(inner)
    sch.unroll(outer)
    sch.decompose_reduction(rf, ko)
    for loop in (ku, kk, ii, v):
        sch.unroll(loop)
    return _sums(sch, mm, top, epi, last, cfg)


def _tiled(sch: Schedule, mm, epi, pads: list, cfg: DenseConfig) -> None:
    """The register-tiled GEMM (module docstring). Thread (ty, tx) owns rows ty * rows .. + rows and columns
    tx * vec .. + vec of its block (vec consecutive columns: one vector load of w from shared memory); the epilogue
    runs per thread on its rows x vec sums. pads: the padded copies of x and w (_prepare), each made its tile."""
    x_index, w_index = _input_read(sch, mm), _weight_read(sch, mm)
    block = sch.get(mm)
    padded = {}
    for b in pads:
        written = sch.get(b).writes[0].source
        for index in (x_index, w_index):
            if block.reads[index].source.same_as(written):
                padded[index] = b
    for b in pads:  # (none expected: pad_einsum pads the two inputs)
        if not any(b.same_as(p) for p in padded.values()):
            sch.compute_inline(b)
    i, j, k = sch.get_loops(mm)
    by, ty, ii = sch.split(i, [None, cfg.threads_m, cfg.rows])
    bx, tx, jj = sch.split(j, [None, cfg.threads_n, cfg.vec])
    ko, ku, ki = sch.split(k, [None, cfg.k_block // cfg.unroll, cfg.unroll])
    sch.reorder(by, bx, ty, tx, ko, ku, ki, ii, jj)
    sch.bind(by, "blockIdx.y")
    sch.bind(bx, "blockIdx.x")
    sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")
    sch.set_scope(mm, 0, "local")
    sch.reverse_compute_at(epi, tx, preserve_unit_loops=True)
    threads, depth = cfg.threads_m * cfg.threads_n, 5  # (by, bx, ty, tx, ko: what the tiles are computed at)
    for index, vector in ((x_index, 1), (w_index, 4 if cfg.vec % 4 == 0 else 2 if cfg.vec % 2 == 0 else 1)):
        if index in padded:
            tile = padded[index]
            sch.set_scope(tile, 0, "shared")
        else:
            tile = sch.cache_read(mm, index, "shared")  # (the later cache_read's index is unchanged: same slot)
        sch.compute_at(tile, ko)
        own = sch.get_loops(tile)[depth:]  # (a unit dimension has no loop: N = 1)
        fused = sch.fuse(*own) if len(own) > 1 else own[0]
        extent = sch.get(fused).extent
        vector = vector if isinstance(extent, tirx.IntImm) and int(extent) % (threads * vector) == 0 else 1
        _, t_y, t_x, v = sch.split(fused, [None, cfg.threads_m, cfg.threads_n, vector])
        sch.bind(t_y, "threadIdx.y")
        sch.bind(t_x, "threadIdx.x")
        if vector > 1:
            sch.vectorize(v)
    for index in (x_index, w_index):  # this thread's rows of x and columns of w, per K, into registers
        reg = sch.cache_read(mm, index, "local")
        sch.compute_at(reg, ki)
        if index == w_index and cfg.vec % 2 == 0:  # vec consecutive floats of the w tile: 8- or 16-byte loads
            width = 4 if cfg.vec % 4 == 0 else 2
            inner = sch.get_loops(reg)[-1]
            if cfg.vec > width:
                inner = sch.split(inner, [None, width])[1]
            sch.vectorize(inner)
    sch.decompose_reduction(mm, ko)
    for loop in (ki, ii, jj):
        sch.unroll(loop)
    if cfg.pipeline:  # ko's children: the x tile, the w tile, the compute on them
        sch.annotate(ko, "software_pipeline_stage", [0, 0, 1])
        sch.annotate(ko, "software_pipeline_order", [0, 1, 2])
        if cfg.pipeline == 2:
            sch.annotate(ko, "software_pipeline_async_stages", [0])


def _split_k_threads(sch: Schedule, mm, cfg: DenseConfig, kvec: int):
    """Both gemvs' tiling: blocks of `rows` rows x threads_n * vec columns, threads_k threads splitting K (each
    owning kvec consecutive K when kvec > 1; adjacent threads on adjacent K: conflict-free shared memory), their
    partial sums factored out (rfactor) and meeting in shared memory. With split_k > 1 K is first cut into
    split_k chunks of whole kvec groups, one per blockIdx.z, factored out too: the block's sum of its chunk goes to
    a global [split_k, B, N] buffer (`top`, the block summing its K threads) and `mm` becomes the sum over the
    chunks (_split_k_sum). -> (the partial-sum block, its loops: by, bx, ts, tr, ko, ku, [kk,] ii, v; `top` (mm
    without split_k); the innermost block loop)."""
    i, j, k = sch.get_loops(mm)
    kk = []
    if kvec > 1:  # exact: the K predicate (if any) is per group, never inside a vector
        k, kv = sch.split(k, [None, kvec])
        kk = [kv]
    top, bz = mm, []
    if cfg.split_k > 1:
        ks, k = sch.split(k, [cfg.split_k, None])
        top = sch.rfactor(ks, 0)  # [split_k, B, N] partial sums, in global memory (written once per output)
        i, j, ks, k, *kk = sch.get_loops(top)  # (the factored block stays in the original nest)
        bz = [ks]
    by, ii = sch.split(i, [None, cfg.rows])
    bx, ts, v = sch.split(j, [None, cfg.threads_n, cfg.vec])
    ko, ku, tr = sch.split(k, [None, cfg.unroll, cfg.threads_k])
    sch.reorder(by, bx, *bz, ts, tr, ko, ku, *kk, ii, v)
    rf = sch.rfactor(tr, 0)  # partial sums per K thread
    loops = list(sch.get_loops(rf))
    sch.bind(loops[0], "blockIdx.y")
    sch.bind(loops[1], "blockIdx.x")
    last = loops[1]
    if bz:
        last = loops.pop(2)
        sch.bind(last, "blockIdx.z")
    _partial_sums_to_shared(sch, rf, loops[2], loops[3])
    return rf, loops, top, last


def _sums(sch: Schedule, mm, top, epi, last, cfg: DenseConfig) -> tuple:
    """The final sum over a block's K threads and the epilogue; with split_k the block's sum goes to the global
    partial sums (through a register: `top` writes each output once) and a second kernel adds the chunks and
    applies the epilogue. -> ((the final sum's blocks), (the epilogue's sum block and epilogue)) by name."""
    if top.same_as(mm):
        names = _final_sum(sch, mm, epi, last, cfg.threads_n, cfg.threads_k)
        return names, names
    store = sch.cache_write(top, 0, "local")
    names = _final_sum(sch, top, store, last, cfg.threads_n, cfg.threads_k)
    return names, _split_k_sum(sch, mm, epi)


def _split_k_sum(sch: Schedule, mm, epi, threads: int = 256) -> tuple[str, str]:
    """The second kernel of a split-K gemv: a thread per output adds its split_k partial sums and applies the
    epilogue."""
    *outer, ks = sch.get_loops(mm)
    bx, tx = sch.split(sch.fuse(*outer), [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    sch.set_scope(mm, 0, "local")
    sch.reverse_compute_at(epi, tx)
    return sch.get(mm).name_hint, sch.get(epi).name_hint


def _partial_sums_to_shared(sch: Schedule, rf, ts, tr) -> None:
    """Bind the threads; each K thread accumulates in registers, then writes its partial sums to shared memory
    once."""
    sch.bind(ts, "threadIdx.x")
    sch.bind(tr, "threadIdx.y")
    part = sch.cache_write(rf, 0, "local")
    sch.reverse_compute_at(part, tr)
    sch.set_scope(part, 0, "shared")


def _final_sum(sch: Schedule, mm, epi, bx, tn: int, tk: int) -> tuple[str, str]:
    """The final sum over the K threads: each thread sums threads_k partial sums for its outputs, then the
    epilogue; -> the two blocks' names (guard_epilogue)."""
    sch.reverse_compute_at(mm, bx, preserve_unit_loops=True)  # loops over (K thread, row, column)
    r, mi, mj = sch.get_loops(mm)[-3:]
    sch.reorder(mi, mj, r)
    o, t_y, t_x = sch.split(sch.fuse(mi, mj), [None, tk, tn])
    sch.reorder(t_y, t_x, o)
    sch.bind(t_y, "threadIdx.y")
    sch.bind(t_x, "threadIdx.x")
    sch.set_scope(mm, 0, "local")
    sch.reverse_compute_at(epi, o)
    return sch.get(mm).name_hint, sch.get(epi).name_hint


def guard_epilogue(func: tirx.PrimFunc, sum_block: str, epilogue: str) -> tirx.PrimFunc:
    """The epilogue placed at the final sum runs under the sum's predicate too. The final sum splits a block's
    rows x columns outputs over threads_k x threads_n threads and TVM guards the spare threads' sums, but the
    epilogue at the same loop gets only the layer's bounds: a spare thread applied it to an output past the block's
    own (the next row block's rows; with rows = 1 the next column block's columns: wrong on an H100 at B = 1) from
    a sum never made."""
    found = []
    tvm_ffi.structural_walk(func.body, [(SBlockRealize, lambda r: found.append(r.predicate)
                                         if r.block.name_hint == sum_block else None)], order="post")
    if len(found) != 1:
        raise ValueError(f"dense tail: final sum block {sum_block!r} found {len(found)} times")
    guard = found[0]

    def add(r):
        if r.block.name_hint != epilogue:
            return r
        return SBlockRealize(r.iter_values, tirx.And(r.predicate, guard), r.block)

    return func.with_body(tvm_ffi.structural_map(func.body, [(SBlockRealize, add)]))


def bound_final_sum_rows(func: tirx.PrimFunc, blocks: tuple[str, str], rows: int) -> tirx.PrimFunc:
    """The final sum and its epilogue (`blocks`) work on row `by * rows + (f // cols) % rows` instead of `by * rows +
    f // cols` (f: the thread's output in the block). The same row for every thread whose sum is made (f < rows *
    cols: the predicate both blocks carry); a spare thread (more threads than outputs: N = 20 under 64 x 16 threads
    and 4 x 16 outputs) now stays inside the block's rows. Without it TVM's buffer compaction sized the shared
    partial sums by the rows the spare threads would reach, `min(ceil(B / 4), 16) * 4`: a run-time size, and the
    layer fell back to TVM's default schedule."""
    by = _block_var(func, "blockIdx.y")
    if by is None or rows == 1:
        return func
    n = tirx.const(rows, str(by.ty))

    def wrap(e):  # by * rows + e -> by * rows + e % rows
        if isinstance(e, tirx.Add) and isinstance(e.a, tirx.Mul) and e.a.a.same_as(by) \
                and isinstance(e.a.b, tirx.IntImm) and int(e.a.b) == rows:
            return tirx.Add(e.a, tirx.FloorMod(e.b, n))
        return e

    def realize(r):
        if r.block.name_hint not in blocks:
            return r
        return SBlockRealize([wrap(v) for v in r.iter_values], r.predicate, r.block)

    return func.with_body(tvm_ffi.structural_map(func.body, [(SBlockRealize, realize)]))


def _block_var(func: tirx.PrimFunc, tag: str):
    """The loop variable bound to `tag` (blockIdx.y: the row blocks), or None."""
    loops = []
    tvm_ffi.structural_walk(func.body, [(tirx.For, lambda f: loops.append(f.loop_var) if f.thread_binding is not None
                                         and f.thread_binding.thread_tag == tag else None)])
    return loops[0] if loops else None


def clamp_padded_rows(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """Reads of the padded batch, `if_then_else(i < B, x[i, k], 0)`, as `x[min(i, B - 1), k]`: always in bounds,
    no predicate per load. A padded row then computes on a copy of the last row; its outputs are never written
    (the epilogue keeps its own `i < B` guard), so the layer's results are the same. Why: with the batch symbolic
    (as inside a model) each of a thread's rows x unroll loads carried its own guard (44 ISETP in the inner loop
    against 3 at a static batch) and E's 8,152 x 1,024 layer ran 2.5x slower than the same schedule compiled for
    B = 32: H100, L2 flushed, 278 us symbolic, 116 clamped, 112 static (1,024 x 1,024: 42 / 32 / 22;
    benchmarks/results/dense_symbolic_batch_h100_2026-12-05.json). B >= 1 wherever the kernel runs (its grid has
    ceil(B / rows) row blocks)."""
    from tvm.ir.expr import Call

    def clamp(call):
        found = _padded_read(call)
        if found is None:
            return call
        load, cond, rest = found
        return _guarded(rest, tirx.BufferLoad(load.source, [tirx.Min(cond.a, cond.b - 1), *list(load.indices)[1:]]))

    return func.with_body(tvm_ffi.structural_map(func.body, [(Call, clamp)]))


def _padded_read(call):
    """pad_einsum's read of a padded row, `if_then_else(i < B, x[i, ...], 0)` (or `i < B and k < K` where K is
    padded too: the tiled rule) -> (the load, `i < B`, the rest of the condition or None), else None."""
    if not call.op.same_as(tvm.ir.Op.get("prim.if_then_else")):
        return None
    cond, load, other = call.args
    if not (isinstance(load, TensorLoad) and isinstance(other, tirx.FloatImm) and float(other.value) == 0.0
            and load.indices):
        return None

    def row_cond(c):
        return isinstance(c, tirx.LT) and tvm_ffi.structural_equal(load.indices[0], c.a)

    if row_cond(cond):
        return load, cond, None
    if isinstance(cond, tirx.And):
        if row_cond(cond.a):
            return load, cond.a, cond.b
        if row_cond(cond.b):
            return load, cond.b, cond.a
    return None


def _guarded(rest, load):
    """`load`, under the part of a padded read's condition that is not about the row (K's padding), if any."""
    if rest is None:
        return load
    return tirx.if_then_else(rest, load, tirx.const(0.0, str(load.source.dtype)))


def shift_last_row_block(func: tirx.PrimFunc, rows: int, batch: tirx.PrimExpr) -> tirx.PrimFunc:
    """For batches of at least `rows`: the last row block reads and writes rows B - rows .. B - 1 (overlapping its
    neighbour) instead of running past B, so every row it touches exists. Row r of a block is read and written as
    base + r % rows with base = min(r // rows * rows, B - rows): one base per block plus constant offsets, no clamp
    or guard per row. Only the accesses to [B, ...] buffers (x, the output, epilogue inputs) and the guards move;
    the block's registers and shared memory keep their indices. The overlapping rows are computed by both blocks
    in the same order and written with the same values."""
    from tvm.ir.expr import Call

    by = _block_var(func, "blockIdx.y")
    if by is None:
        return func
    n = tirx.const(rows, str(batch.ty))

    def row(r):
        return tirx.Min(tirx.FloorDiv(r, n) * n, batch - n) + tirx.FloorMod(r, n)

    def batch_rows(buf) -> bool:
        return len(buf.shape) > 0 and buf.shape[0].same_as(batch)

    def load(ld):
        if not batch_rows(ld.source):
            return ld
        return tirx.BufferLoad(ld.source, [row(ld.indices[0]), *list(ld.indices)[1:]])

    def store(st):
        if not batch_rows(st.buffer):
            return st
        return tirx.BufferStore(st.buffer, st.value, [row(st.indices[0]), *list(st.indices)[1:]])

    def unguard(call):  # the padded copy's guard `i < B`: every row read exists now (K's guard stays)
        found = _padded_read(call)
        if found is None or not found[1].b.same_as(batch):
            return call
        return _guarded(found[2], found[0])

    def rebase(m):  # in the guards: the block's first row as shifted
        if m.a.same_as(by) and isinstance(m.b, tirx.IntImm) and int(m.b) == rows:
            return tirx.Min(m, batch - n)
        return m

    def realize(r):
        pred = tvm_ffi.structural_map(r.predicate, [(tirx.Mul, rebase)])
        return SBlockRealize(r.iter_values, pred, r.block)

    body = tvm_ffi.structural_map(func.body, [(Call, unguard)])  # (before the loads inside the guards move)
    body = tvm_ffi.structural_map(body, [(TensorLoad, load), (tirx.BufferStore, store)])
    return func.with_body(tvm_ffi.structural_map(body, [(SBlockRealize, realize)]))


def _vector_columns(cfg: DenseConfig, layer: DenseLayer) -> bool:
    """Whether a thread's vec columns can be one vector load: 2 or 4 of them, and N a multiple of a block's
    columns (no column predicate, every thread's first column a multiple of vec: aligned)."""
    return cfg.vec in (2, 4) and not layer.transposed and layer.n % (cfg.threads_n * cfg.vec) == 0


def _cpu(sch: Schedule, mm, epi, cfg: DenseConfig) -> None:
    i, j, k = sch.get_loops(mm)
    io, ii = sch.split(i, [None, cfg.rows])
    jo, ji = sch.split(j, [None, cfg.cols])
    ko, kb, ku = sch.split(k, [None, cfg.k_block // cfg.unroll, cfg.unroll])
    if cfg.k_outer:  # each K block of the column strip stays in L1 across all row tiles; sums live in memory
        sch.reorder(jo, ko, io, kb, ku, ii, ji)
        sch.parallel(jo)
        sch.set_scope(mm, 0, "global")
        sch.reverse_compute_at(epi, jo, preserve_unit_loops=True)
    else:  # each row tile's sums stay in registers over all of K
        sch.reorder(jo, io, ko, kb, ku, ii, ji)
        sch.parallel(jo)
        sch.set_scope(mm, 0, "local")
        sch.reverse_compute_at(epi, io, preserve_unit_loops=True)  # loops over (row, column) of the tile
    sch.unroll(ku)
    sch.unroll(ii)
    sch.vectorize(ji)  # before decompose_reduction: the update alone is not a block vectorize accepts
    sch.decompose_reduction(mm, ko)
    sch.vectorize(sch.get_loops(epi)[-1])  # the epilogue over the tile's columns
    if cfg.pack:  # the strip of w this column tile reads, copied once per call into a contiguous buffer
        w_index = _weight_read(sch, mm)
        strip = sch.cache_read(mm, w_index, "global")
        sch.compute_at(strip, jo, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(strip)[-1])


def _weight_read(sch: Schedule, mm) -> int:
    """The index of w among the update's reads: the one indexed by (k, j) or (j, k). Not "the read without the
    batch": at a static batch (a tuning task) x and the accumulator the reduction was decomposed into have
    constant shapes too."""
    return _read_index(sch, mm, "weight", ((2, 1), (1, 2)))


def _input_read(sch: Schedule, mm) -> int:
    """The index of x among the update's reads: the one indexed by (i, k)."""
    return _read_index(sch, mm, "input", ((0, 2),))


def _read_index(sch: Schedule, mm, what: str, accesses: tuple) -> int:
    """The index of the update's read that is a point access by one of `accesses` (positions of its block vars
    i, j, k, in the read's index order)."""
    block = sch.get(mm)
    v = [iv.var for iv in block.iter_vars]
    for n, r in enumerate(block.reads):
        pv = _point_vars(r)
        if any(_same(pv, [v[a] for a in acc]) for acc in accesses):
            return n
    raise ValueError(f"dense tail: no {what} among the reads of {block.name_hint}")


def _dlight_matmul(func: tirx.PrimFunc, target: tvm.target.Target) -> tirx.PrimFunc:
    from tvm.s_tir import dlight as dl

    for rule in (dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Fallback()):
        sch = rule.apply(func, target, False)
        if isinstance(sch, list):
            sch = sch[0] if sch else None
        if sch is not None:
            return sch.mod["main"]
    raise ValueError("no dlight rule applies to this dense layer")


# ----------------------------------------------------------------------------------------------------- dispatch
def dispatch(func: tirx.PrimFunc, variants: list[tuple[int | None, tirx.PrimFunc]]) -> tirx.PrimFunc:
    """One PrimFunc running variants[i] for batches up to its limit (the last: every larger batch).

    The variants are schedules of `func` (same parameters and buffers); their bodies become the branches of an
    if-chain on the batch, decided on the host side of the kernel."""
    layer = match_dense(func)
    if len(variants) == 1 or layer.static_batch is not None:
        if layer.static_batch is not None:  # a fixed batch: the bucket holding it
            b = layer.static_batch
            body = next(f for lim, f in variants if lim is None or b <= lim)
            return body
        return variants[0][1]
    for _, f in variants:
        if len(f.params) != len(func.params) or any(not a.same_as(b) for a, b in zip(f.params, func.params)):
            raise ValueError("dispatch: variants must be schedules of the same function")
    body = variants[-1][1].body
    for lim, f in reversed(variants[:-1]):
        # thread-invariant: the branch is taken on the host, each launches its own kernel (and ThreadSync may put
        # barriers inside the branches)
        cond = tirx.op.tvm_thread_invariant(layer.batch <= tirx.const(lim, "int64"))
        body = tirx.IfThenElse(cond, f.body, body)
    root = SBlock([], [], [], "root", body)
    return func.with_body(SBlockRealize([], True, root)).with_attr("tirx.is_scheduled", True)


def one_kernel_buckets(buckets) -> tuple:
    """The buckets with K split only inside a block (split_k 1): config.dense_split_k off, or a graph build whose
    split cannot be bounded (recom_tvm.backend.pipeline.dense_tail_pass)."""
    return tuple((lim, dataclasses.replace(c, split_k=1)) for lim, c in buckets)


def schedule_buckets(func: tirx.PrimFunc, buckets, target: tvm.target.Target) -> tirx.PrimFunc:
    """The layer with one schedule per batch bucket ((max batch or None, DenseConfig), ... ascending)."""
    import json

    if not buckets or len(buckets) > MAX_BUCKETS:
        raise ValueError(f"1 to {MAX_BUCKETS} batch buckets, got {len(buckets)}")
    limits = [b for b, _ in buckets]
    if limits[-1] is not None or any(b is None for b in limits[:-1]) or limits[:-1] != sorted(set(limits[:-1])):
        raise ValueError(f"bucket limits must ascend and end with None: {limits}")
    lows = [1] + [lim + 1 for lim in limits[:-1]]  # each bucket's smallest batch
    variants = [(lim, schedule(func, cfg, target, low)) for (lim, cfg), low in zip(buckets, lows)]
    if target.kind.name == "cuda":  # CPUs allocate run-time sizes on the heap
        for _, f in variants:
            _check_static_allocations(f)
    out = dispatch(func, variants)
    return out.with_attr(DENSE_ATTR, json.dumps([[b, c.to_json()] for b, c in buckets]))


def kernel_allocations(func: tirx.PrimFunc) -> list:
    """The buffers a scheduled layer's kernel will allocate: placed at their use and compacted to the region used
    (an alloc of the whole [B, N] before compaction is fine when only a constant tile of it is touched per
    thread)."""
    import tvm.s_tir.transform as st

    mod = tvm.IRModule({"main": func})
    for p in (st.LowerInitBlock(), st.ConvertBlocksToOpaque(), st.PlanAndUpdateBufferAllocationLocation(),
              st.CompactBufferAllocation()):
        mod = p(mod)
    bufs = []
    tvm_ffi.structural_walk(mod["main"].body, [(SBlock, lambda n: bufs.extend(n.alloc_buffers)),
                                               (tirx.stmt.AllocBuffer, lambda n: bufs.append(n.buffer))],
                            order="post")
    return bufs


def _check_static_allocations(func: tirx.PrimFunc) -> None:
    """Raise if a scheduled layer still allocates a buffer of run-time size inside its kernel (an epilogue that
    could not be inlined: [B, N] intermediates), which CUDA cannot hold (TVM: 'Can only handle constant size stack
    allocation'); the layer then keeps TVM's default schedule. Global buffers (split-K's partial sums) are
    allocated outside the kernels, at any size (by Relax, recom_tvm.backend.partial_sums, or the host side)."""
    bad = [list(b.shape) for b in kernel_allocations(func)
           if b.scope() != "global" and not all(isinstance(d, tirx.IntImm) for d in b.shape)]
    if bad:
        raise ValueError(f"intermediate buffers of run-time size {bad[0]} left in the kernel")
