"""recom_tvm's knobs, in one place. Each reads an environment variable once at import; assign to override in code.

    import recom_tvm
    recom_tvm.config.cuda_arch = "sm_80"

| knob | env | default | meaning |
|---|---|---|---|
| cache_dir | RECOM_TVM_CACHE | ~/.cache/recom_tvm | generated TF models, the CUDA driver stub |
| cuda_arch | RECOM_TVM_CUDA_ARCH | sm_90 | GPU architecture for target="cuda" |
| cuda_home | CUDA_PATH / CUDA_HOME | /usr/local/cuda | the CUDA toolkit with nvcc |
| verbose | RECOM_TVM_VERBOSE | 0 | 1: progress lines on stderr during import / build |
| runtime_only | RECOM_TVM_RUNTIME_ONLY | 0 | 1: never load TVM's compiler (serving hosts) |
| allow_unsafe_paths | RECOM_TVM_ALLOW_UNSAFE_PATHS | 0 | 1: models may reference files outside their directory |
| max_batch | RECOM_TVM_MAX_BATCH | 1048576 | requests with a larger batch are refused (RequestTooLargeError) |
| max_request_elements | RECOM_TVM_MAX_REQUEST_ELEMENTS | 134217728 | same, for the total elements of all feeds |
| pool_max_shapes | RECOM_TVM_POOL_MAX_SHAPES | 64 | distinct request shapes before the VM's cached buffers are released |
| host_stage | RECOM_TVM_HOST_STAGE | native | "native": the compiled host stage (runtime/native); "numpy": the reference |
| native_fallback_ops | RECOM_TVM_NATIVE_FALLBACK_OPS | "" | host-plan op types to run in numpy even where native code exists |
| native_threads | RECOM_TVM_NATIVE_THREADS | min(cores, 8) | threads one request's native host stage uses (1: the caller alone) |
| native_parallel_min | RECOM_TVM_NATIVE_PARALLEL_MIN | 262144 | a request with fewer input elements (ids, values, strings, indices) runs its native host stage on the calling thread alone: waking the pool's threads per stage costs more than it saves on small requests |
| native_spin_us | RECOM_TVM_NATIVE_SPIN_US | 50 | how long the native host stage's idle pool threads poll for the request's next stage before they sleep: a request's stages are jobs microseconds apart, and a sleeping worker costs a futex wake and a context switch per stage (mixed-100, B = 2,048: a tenth of the stage's CPU); 0 on a host whose cores are oversubscribed |
| native_strings_outside_gil | RECOM_TVM_NATIVE_STRINGS_OUTSIDE_GIL | 1 | 0: the native host stage reads the elements of object arrays of str with the GIL held (as before 2026-12-05), not from CPython's string fields outside it |
| native_feeds_outside_gil | RECOM_TVM_NATIVE_FEEDS_OUTSIDE_GIL | 1 | the native host stage reads a feeds dict without the GIL where it comes in the usual form (every key the same object as the last request's at its position, exact numpy arrays, sparse / ragged features as tuples): concurrent requests then hold the GIL for one reference to the dict, not a key and an array per feed tensor (E: 1,241 arrays); 0: always with the GIL (as before 2026-12-06). Either way no other thread may modify the feeds during run() |
| native_task_graph | RECOM_TVM_NATIVE_TASK_GRAPH | 1 | the native host stage runs a request's feature checks, sorts, host ops and id checks as one parallel job of dependent tasks (a host op starts once its own feature is checked); 0: stage by stage, each waiting for the slowest task of the one before (as before 2026-12-07) |
| native_serve | RECOM_TVM_NATIVE_SERVE | 1 | run() does the whole device part (copy in, the VM's main through tvm-ffi's C ABI, copies out, one synchronisation) in the native host stage's GIL-free call (runtime/native/src/rh_device.c): one GIL round trip per request instead of about ten, which is what kept threads from scaling; 0: the device part from Python, step by step (as before 2026-12-06) |
| max_vms | RECOM_TVM_MAX_VMS | 8 | VMs (with their staging buffers) one model keeps for concurrent requests |
| host_fallback | RECOM_TVM_HOST_FALLBACK | 1 | ops without a converter run on the host through TensorFlow (RECom's CPU co-run); 0: the import fails naming them |
| dense_tail | RECOM_TVM_DENSE_TAIL | auto | auto: the MLP's layers get recom_tvm's schedules per batch bucket (tuned ones from build's database); off: TVM's defaults |
| dense_gemv_max_batch | RECOM_TVM_DENSE_GEMV_MAX_BATCH | 1073741824 | CUDA: the largest batch the dense tail's default buckets serve (the gemv up to 1,023, the tiled GEMM from 1,024: recom_tvm/schedules/dense_tail.py), dlight's matmul above (default: no matmul; on model E's layers, H100, the gemv beat the matmul at every batch from 1 to 2,048, 1.6x at 2,048, and the tiled GEMM beats the gemv from 1,024); 0: the matmul at every batch. Tuned buckets (build's database) are not affected |
| dense_split_k | RECOM_TVM_DENSE_SPLIT_K | 1 | CUDA: dense-layer buckets whose config splits K over blocks (split_k > 1: partial sums in a buffer Relax plans, a second kernel adds them) keep the split, CUDA-graph builds included; 0: every bucket one kernel (split_k 1) |
| cuda_graph | RECOM_TVM_CUDA_GRAPH | 0 | (off: correct since the capture fix, 624/624 corpus cases on an H100 2026-12-06, but no faster there than launching) 1: CUDA builds replay the kernels after the request's inputs as one CUDA graph per batch size (a request that may capture runs alone, step by step: runtime/capture_gate.py; since 2026-12-06 the batches a VM has captured are served in one native call; since 2026-12-07 on a stream per VM); 0: launch each kernel |
| keep_storage | RECOM_TVM_KEEP_STORAGE | auto | auto: CUDA builds' `main` returns its storages beside its outputs, kept until the request's stream is synchronised (backend/keep_storage.py), so each VM runs on a CUDA stream of its own; "on": every target (tests); "off": TVM's frees at last use, all VMs on one stream |
| slot_streams | RECOM_TVM_SLOT_STREAMS | 1 | on CUDA each VM of the pool runs its requests on a stream of its own, copies included (models built with keep_storage), so concurrent requests overlap on the device (on by default since 2026-12-06, twelfth session: once feeds dicts were read without the GIL, 8 threads served E 12,356 requests/s with it against 8,148 on one stream, mixed-100 19,781 against 11,755, 1 thread the same, 0 wrong answers; H100, `benchmarks/threads_scaling.py`); 0: every request on the default stream, one after another on the device |
| cuda_graph_streams | RECOM_TVM_CUDA_GRAPH_STREAMS | 1 | models built with CUDA graphs take a stream per VM as well (their `main` keeps its storages since 2026-12-07); checked on an H100 on 2026-12-07 (0 wrong answers from 8 threads; 8 threads: E 10,832 vs 9,076 req/s, mixed-100 12,977 vs 10,422 on the shared default stream); 0: the default stream for every graph build's request, as before |
| cuda_graph_max_batch | RECOM_TVM_CUDA_GRAPH_MAX_BATCH | 2048 | the largest batch run through CUDA graphs (each VM holds the graph variant's memory at this batch) |
| packed_dtype | RECOM_TVM_PACKED_DTYPE | auto | the fused kernel's packed request (ids, offsets, float bit patterns): auto = int32 where every table and id range of the kernel is below 2^31 rows (half the bytes packed and copied; ids narrowed saturating, a request whose packed length reaches 2^31 is refused), else int64; "int32" / "int64" force it (read by recom_tvm.optimize: FuseColumns; recorded in the model) |
| device_hash | RECOM_TVM_DEVICE_HASH | auto | where StringToHashBucketFast of string and integer feeds runs (hash-bucket columns): auto = on the device for CUDA builds (the strings, or the integers whose AsString text the kernel makes, ship in the packed input, one hash kernel before the fused one), on the host for llvm; "on" / "off" force it (read by recom_tvm.build: passes/device_hash.py; recorded in the model) |
| llvm_mcpu | RECOM_TVM_LLVM_MCPU | auto | CPU for target="llvm": auto = x86-64-v3 (AVX2, FMA) where the build host has it, else LLVM's generic CPU; a library built for x86-64-v3 needs such a CPU where it runs (set "generic" to build for any x86-64) |
"""

from __future__ import annotations

import os


def _env_bool(name: str, default: bool) -> bool:
    val = os.environ.get(name)
    if val is None:
        return default
    return val.strip().lower() not in ("", "0", "false", "no", "off")


cache_dir: str = os.environ.get("RECOM_TVM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "recom_tvm"))
cuda_arch: str = os.environ.get("RECOM_TVM_CUDA_ARCH", "sm_90")
cuda_home: str = os.environ.get("CUDA_PATH", os.environ.get("CUDA_HOME", "/usr/local/cuda"))
verbose: bool = _env_bool("RECOM_TVM_VERBOSE", False)
runtime_only: bool = _env_bool("RECOM_TVM_RUNTIME_ONLY", False)
allow_unsafe_paths: bool = _env_bool("RECOM_TVM_ALLOW_UNSAFE_PATHS", False)
# A graph with ops we cannot translate still serves: the subgraph they need runs in TensorFlow on the host, feeding
# the compiled module (slow, and the serving host then needs TensorFlow; the import and `load` say so).
host_fallback: bool = _env_bool("RECOM_TVM_HOST_FALLBACK", True)
# Serving limits: a request's batch fixes the output and workspace sizes, its elements the host and device copies.
max_batch: int = int(os.environ.get("RECOM_TVM_MAX_BATCH", 1 << 20))
max_request_elements: int = int(os.environ.get("RECOM_TVM_MAX_REQUEST_ELEMENTS", 1 << 27))
# The VM's pooled allocator keeps one buffer set per size class forever; this many distinct shapes, then release.
pool_max_shapes: int = int(os.environ.get("RECOM_TVM_POOL_MAX_SHAPES", 64))
# The request path: the native host stage (C, GIL released) or the numpy reference; both give the same arguments
# and the same errors (tests run both).
host_stage: str = os.environ.get("RECOM_TVM_HOST_STAGE", "native").strip().lower()
native_fallback_ops: str = os.environ.get("RECOM_TVM_NATIVE_FALLBACK_OPS", "")
native_threads: int = int(os.environ.get("RECOM_TVM_NATIVE_THREADS", min(os.cpu_count() or 1, 8)))
native_parallel_min: int = int(os.environ.get("RECOM_TVM_NATIVE_PARALLEL_MIN", 262144))
native_spin_us: int = int(os.environ.get("RECOM_TVM_NATIVE_SPIN_US", 50))
native_strings_outside_gil: bool = os.environ.get("RECOM_TVM_NATIVE_STRINGS_OUTSIDE_GIL", "1") != "0"
native_feeds_outside_gil: bool = _env_bool("RECOM_TVM_NATIVE_FEEDS_OUTSIDE_GIL", True)
native_task_graph: bool = _env_bool("RECOM_TVM_NATIVE_TASK_GRAPH", True)
native_serve: bool = _env_bool("RECOM_TVM_NATIVE_SERVE", True)
# A TVM VM is not reentrant: concurrent requests take one VM each from a pool of at most this many per model.
max_vms: int = int(os.environ.get("RECOM_TVM_MAX_VMS", 8))
# Code generation: the dense tail's schedules, CUDA graphs, the CPU llvm builds for.
dense_tail: str = os.environ.get("RECOM_TVM_DENSE_TAIL", "auto").strip().lower()
dense_gemv_max_batch: int = int(os.environ.get("RECOM_TVM_DENSE_GEMV_MAX_BATCH", 1 << 30))
dense_split_k: bool = _env_bool("RECOM_TVM_DENSE_SPLIT_K", True)
cuda_graph: bool = _env_bool("RECOM_TVM_CUDA_GRAPH", False)
cuda_graph_max_batch: int = int(os.environ.get("RECOM_TVM_CUDA_GRAPH_MAX_BATCH", 2048))
# Concurrent requests on the GPU: main keeps its storages until synced (read at build), a stream per VM (at run).
keep_storage: str = os.environ.get("RECOM_TVM_KEEP_STORAGE", "auto").strip().lower()
slot_streams: bool = _env_bool("RECOM_TVM_SLOT_STREAMS", True)
cuda_graph_streams: bool = _env_bool("RECOM_TVM_CUDA_GRAPH_STREAMS", True)
# The fused kernel's packed input: "auto" (int32 where exact, else int64), "int32" or "int64"; read by FuseColumns.
packed_dtype: str = os.environ.get("RECOM_TVM_PACKED_DTYPE", "auto").strip().lower()
# String hashing of hash-bucket columns: "auto" (device for CUDA, host for llvm), "on", "off"; read at build.
device_hash: str = os.environ.get("RECOM_TVM_DEVICE_HASH", "auto").strip().lower()
llvm_mcpu: str = os.environ.get("RECOM_TVM_LLVM_MCPU", "auto").strip()


def log(msg: str) -> None:
    """Progress output for long work, shown when `verbose` is on."""
    if verbose:
        import sys

        print(f"[recom_tvm] {msg}", file=sys.stderr, flush=True)
