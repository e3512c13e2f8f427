/* recom_tvm's native host stage: shared types of the core (no Python in the core files).
 *
 * A *program* (built once per model from its InputSpec by recom_tvm/runtime/native/program.py) lists what a
 * request goes through: feed checks, row sorting, the host plan's ops, id checks, symbol binding, the packed
 * layout and the module's arguments. A *context* (one per serving thread) holds one request's tensors in an arena
 * that is reused from request to request. Every check that fails makes the run stop with RH_REFUSE: the caller
 * then runs the numpy reference on the same request, which raises TF's error (or, for inputs the native path
 * does not take, computes the answer).
 */
#ifndef RECOM_HOST_RH_H
#define RECOM_HOST_RH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define RH_MAXDIM 8
#define RH_MAXTHREADS 64

enum rh_dtype {
  RH_NONE = 0, RH_BOOL, RH_I8, RH_I16, RH_I32, RH_I64, RH_U8, RH_U16, RH_U32, RH_U64, RH_F16, RH_F32, RH_F64,
  RH_STR,      /* strings: per element a pointer and a length (bytes, no terminator) */
  RH_DEC,      /* TF's AsString of integers, kept as int64 until something needs the text */
  RH_NDTYPES
};

/* Status codes of the executor. */
enum { RH_OK = 0, RH_REFUSE = 1, RH_NEED_OP = 2, RH_NOMEM = 3 };

/* how a string feed still has to be read (done outside the GIL) */
enum { RAW_NONE = 0, RAW_FIXED = 1 /* numpy 'S': fixed width, trailing NULs dropped */,
       RAW_UCS4 = 2 /* numpy 'U': code points, to UTF-8 */ };

typedef struct {
  int32_t dtype, ndim;
  int64_t shape[RH_MAXDIM];
  int64_t size;                 /* number of elements */
  void *data;                   /* numeric elements (row-major, contiguous); RH_DEC: int64 */
  const uint8_t **sp;           /* RH_STR: element pointers */
  int64_t *sl;                  /* RH_STR: element lengths */
  int32_t raw, raw_width;       /* RAW_*: data holds the fixed-width elements, converted by rh_finish_raw */
  int32_t pyobj;                /* the data is a Python object's, as given: >= 0 held by the context, <= -2 lent (rh_python.c) */
  int32_t set;
  int32_t rows_ok, rows_sorted; /* sparse indices: within their dense_shape (rows >= 0); rows non-decreasing */
  /* sorted rank-2 int64 sparse indices, from the feed check's scan (or Where's): row_end[r + 1] is one past the
   * last entry of row r, or anything not above it where row r has none (the CSR writer takes the running max),
   * r < row_end_rows; valid while `data` is row_end_of and the shape [nnz, 2] (the writer then needs no second
   * pass over the indices); every column index is below row_end_cols then too (GatherNd needs no bounds pass) */
  const int64_t *row_end;
  const void *row_end_of;
  int64_t row_end_rows, row_end_nnz, row_end_cols;
} rh_tensor;

/* an empty tensor (pyobj -1) by 16-byte stores: for a memset or struct copy of this size gcc's generic tuning
 * emits `rep stos` / `rep movs`, whose start-up cost was half of reading a feeds dict (E at B = 32: 1,300 tensors
 * per request) */
static inline void rh_tensor_clear(rh_tensor *t) {
#if defined(__SSE2__)
  __m128i z = _mm_setzero_si128();
  for (size_t i = 0; i < sizeof(rh_tensor) / 16; i++) {
    __m128i *q = (__m128i *)t + i;
    __asm__("" : "+r"(q));  /* (hides the stores' pattern from gcc, which would make them a memset again) */
    _mm_storeu_si128(q, z);
  }
  memset((char *)t + sizeof(rh_tensor) / 16 * 16, 0, sizeof(rh_tensor) % 16);
#else
  memset(t, 0, sizeof *t);
#endif
  t->pyobj = -1;
}

/* ---------------------------------------------------------------------------------------------- arena */
typedef struct rh_chunk { struct rh_chunk *next; size_t size, used; } rh_chunk;
typedef struct { rh_chunk *head; size_t total; } rh_arena;

void *rh_alloc(rh_arena *a, size_t bytes);  /* 64-byte aligned, NULL when out of memory */
#define RH_ARENA(c) (&(c)->arena[rh_worker()])  /* the arena of the thread running this part of the request */

/* ---------------------------------------------------------------------------------------------- threads */
typedef void (*rh_task_fn)(void *arg, int64_t task, int worker);
/* fn(arg, 0..ntasks-1) on the pool, then return. Tasks are claimed in ascending order, a few at a time, and each
 * thread runs its claims in order (the caller alone: all in order): a task may wait for a lower one */
void rh_parallel(rh_task_fn fn, void *arg, int64_t ntasks);
int rh_parallel_active(void);  /* whether the calling thread's request would run its jobs on the pool */
void rh_set_threads(int n);                                  /* threads per request, the caller included */
void rh_set_parallel_min(int64_t n);                         /* below n input elements a request runs on its caller */
void rh_set_spin_ns(int64_t ns);                             /* how long idle workers poll before sleeping */
void rh_set_request_work(int64_t n);                         /* the caller's request: its input elements (-1: unknown) */
int rh_worker(void);                                         /* 0 on callers, 1.. on the pool's workers */
void rh_arena_reset(rh_arena *a);          /* keeps the largest chunk for the next request */
void rh_arena_free(rh_arena *a);

/* ---------------------------------------------------------------------------------------------- dtypes */
size_t rh_itemsize(int dtype);
int rh_is_int(int dtype);
int rh_is_float(int dtype);
/* element i of a numeric tensor as int64 / double (the C conversions numpy's astype uses for in-range values) */
int64_t rh_get_i64(const rh_tensor *t, int64_t i);
double rh_get_f64(const rh_tensor *t, int64_t i);
static inline int64_t rh_geti(const rh_tensor *t, int64_t i) {  /* rh_get_i64, int64 inline (the common case) */
  return t->dtype == RH_I64 || t->dtype == RH_DEC ? ((const int64_t *)t->data)[i] : rh_get_i64(t, i);
}
void rh_set_shape(rh_tensor *t, int ndim, const int64_t *shape);
/* t (sorted [nnz, 2] int64 indices, rows < rows, columns < cols) gets its row ends (rh_tensor.row_end; end[0] is
 * set here) */
static inline void rh_set_row_end(rh_tensor *t, int64_t *end, int64_t rows, int64_t cols, int64_t nnz) {
  end[0] = 0;
  t->row_end = end;
  t->row_end_of = t->data;
  t->row_end_rows = rows;
  t->row_end_cols = cols;
  t->row_end_nnz = nnz;
}
/* whether t's row ends still describe it (the [nnz, 2] indices they were made from) */
static inline int rh_row_end_current(const rh_tensor *t) {
  return t->row_end && t->row_end_of == t->data && t->ndim == 2 && t->shape[1] == 2 && t->shape[0] == t->row_end_nnz;
}
/* whether t's row ends give the CSR offsets of its first `batch` rows */
static inline int rh_row_end_valid(const rh_tensor *t, int64_t batch) {
  return rh_row_end_current(t) && t->rows_sorted && batch <= t->row_end_rows;
}

/* Streaming reads prefetch 2 KB ahead, once per 64-byte line: the build host (a VM) prefetches poorly on its own
 * (mixed-100 at B = 2,048, one thread: the sparse indices' scan 0.86 -> 0.57 ms with it) */
#define RH_AHEAD 2048
static inline void rh_prefetch_ahead(const void *p) { __builtin_prefetch((const char *)p + RH_AHEAD); }

/* n bytes (w <= n <= 2w) as two overlapping copies of w bytes, both loaded before either is stored */
static inline void rh_copy_overlapping(uint8_t *dst, const uint8_t *src, int64_t n, size_t w) {
  uint64_t a, b;
  memcpy(&a, src, w);
  memcpy(&b, src + n - w, w);
  memcpy(dst, &a, w);
  memcpy(dst + n - w, &b, w);
}

/* a string's bytes, without a libc call for the short ones (most ids are a few bytes) */
static inline void rh_copy_bytes(uint8_t *dst, const uint8_t *src, int64_t n) {
  if (n > 16) memcpy(dst, src, (size_t)n);
  else if (n >= 8) rh_copy_overlapping(dst, src, n, 8);
  else if (n >= 4) rh_copy_overlapping(dst, src, n, 4);
  else
    for (int64_t j = 0; j < n; j++) dst[j] = src[j];
}

/* ---------------------------------------------------------------------------------------------- hashing */
uint64_t rh_fingerprint64(const uint8_t *s, size_t len);
/* x mod d without a division (Lemire, Kaser, Kurz: "Faster remainder by direct computation", 128-bit M, exact for
 * every 64-bit x and d): m = rh_fastmod_m(d) once, then rh_fastmod(x, m, d) */
typedef unsigned __int128 rh_u128;
static inline rh_u128 rh_fastmod_m(uint64_t d) { return ~(rh_u128)0 / d + 1; }
static inline uint64_t rh_fastmod(uint64_t x, rh_u128 m, uint64_t d) {
  rh_u128 low = m * x;
  rh_u128 bottom = ((low & UINT64_MAX) * d) >> 64;
  rh_u128 top = (low >> 64) * d;
  return (uint64_t)((bottom + top) >> 64);
}
uint64_t rh_fingerprint_cat64(uint64_t a, uint64_t b);
int rh_decimal(int64_t v, char *out);      /* TF's AsString of an int64: writes the digits, returns the length */

/* ---------------------------------------------------------------------------------------------- program */
/* host-plan op codes (program.py writes the same numbers) */
enum {
  OP_FALLBACK = 0, OP_HASH = 1, OP_ASSTRING = 2, OP_IDENTITY = 3, OP_CAST = 4, OP_EQUAL = 5, OP_NOTEQUAL = 6,
  OP_WHERE = 7, OP_GATHERND = 8, OP_GATHERV2 = 9, OP_RESHAPE = 10, OP_EXPANDDIMS = 11, OP_LOOKUP = 12,
  OP_VALIDATE_SPARSE = 13, OP_SPARSECROSS = 14, OP_PARSE_EXAMPLE = 15, OP_ADD = 16, OP_SELECT = 17,
  OP_ZEROS_LIKE_STR = 18
};

typedef struct {
  int32_t code, node;           /* op code, index of the node in the host plan (for the fallback) */
  int32_t nin, nout, nattr;
  int32_t *in, *out;
  int64_t *attr;
} rh_op;

/* a string-key table (LookupTableFind): open addressing on Fingerprint64 */
typedef struct {
  int64_t nkeys, cap;
  const uint8_t **kp; int64_t *kl;
  int64_t *slot_of;            /* cap entries, -1 empty, else key index */
  int32_t vdtype;              /* dtype of values / default */
  void *values;                /* nkeys values */
  int64_t default_i; double default_f;
  uint8_t *blob;
} rh_table;

/* ParseExampleV2's configuration */
typedef struct {
  int32_t nsparse, ndense;
  const uint8_t **key; int64_t *keylen;   /* nsparse + ndense keys */
  int32_t *dtype;                          /* per key: RH_STR, RH_F32 or RH_I64 */
  int32_t *dense_rank; int64_t *dense_shape; /* per dense key: rank, then RH_MAXDIM dims */
  int64_t *dense_size;                     /* elements per example */
  rh_tensor *dense_default;                /* per dense key: .set == 0 when required */
  uint8_t *blob;
} rh_examples_cfg;

typedef struct rh_program {
  int32_t nslots;
  int32_t nfeat;
  int32_t *feat_kind, *feat_nparts, *feat_part_slot; /* part slots: 3 per feature */
  int32_t *slot_dtype, *slot_rank;                    /* declared placeholder dtype / rank (-1: any) */
  int64_t *slot_dims;                                 /* RH_MAXDIM per slot, -1 unknown */
  int32_t nsort; int32_t **sort;                      /* [idx, values, nalso, also...] */
  int32_t nops; rh_op *ops;
  int32_t nlevels; int32_t *level_ops, *level_off;      /* ops grouped by dependency level (run in parallel) */
  /* the run's tasks as one graph: feature checks, sorts, ops, id checks (numbered in that order), each after the
   * tasks that last wrote its inputs (dep_off / dep: CSR, ntasks + 1 offsets) */
  int32_t ntasks; int32_t *dep_off, *dep;
  int32_t nidcheck; int64_t *idcheck;                 /* [slot, limit, weight slot or -1, hard low, soft low] */
  /* binder sources: isvalue 0 the tensor's shape, 1 its values, 2 its value at src_axis, 3 its dim src_axis (2, 3:
   * sizes only the assertions read, bound only where nothing else bound them) */
  int32_t nsrc; int32_t *src_slot, *src_isvalue, *src_rank, *src_axis; int64_t **src_dims; int32_t **src_dimkind;
  int32_t nsym;
  int32_t npairs; int32_t *pairs;                     /* symbol a == symbol b */
  int32_t batch_sym;                                  /* -1: no fused kernel */
  int32_t ncols; int32_t *col;                        /* [kind, slot a, slot b, slot c] per column */
  int32_t nargs; int32_t *arg;                        /* [kind, slot, dtype] per module input */
  int32_t ntables; rh_table *tables;
  int32_t nexcfg; rh_examples_cfg *excfg;
  rh_tensor *consts;                                  /* per slot: a constant, or .set == 0; the slots' template (rh_ctx_clear) */
} rh_program;

/* module argument kinds */
enum { ARG_PACKED = 0, ARG_PACKED_SIZES = 1, ARG_TENSOR = 2, ARG_SHAPE = 3, ARG_SHAPE_OF = 4 };
/* packed column kinds, as recom_tvm.runtime.fused_layout.KIND; COL_HASHED is or-ed in for a column whose ids the
 * device hashes from its strings (spec.fused["device_hash"]: the strings ship in the device-hash region), and
 * COL_DECIMAL with it where those strings are AsString of integers (RH_DEC: the int64 values ship, 8 bytes each,
 * and the device makes their text: fused_layout.TEXT_DECIMAL) */
enum { COL_CSR = 0, COL_DENSE = 1, COL_ONE = 2, COL_BUCKET = 3, COL_NUMERIC = 4, COL_KIND_MASK = 15, COL_HASHED = 16,
       COL_DECIMAL = 32 };
#define RH_HASH_PAD 2  /* zero words after the strings' bytes (fused_layout.HASH_PAD) */

typedef struct rh_ctx {
  const rh_program *prog;
  rh_tensor *t;                 /* nslots */
  rh_arena arena[RH_MAXTHREADS];/* one per thread id (rh_worker) */
  int32_t next_op;              /* the op the caller runs in numpy (RH_NEED_OP) */
  int32_t stage, level;
  uint8_t *op_done;             /* nops */
  int32_t *status;              /* per task of a parallel stage */
  _Atomic int32_t *task_state;  /* ntasks: the task graph's progress (0 pending, 1 done, 2 failed or skipped) */
  _Atomic int64_t task_end[4];  /* when the last feature check / sort / op / id check of the graph ended */
  int64_t ns[6];                /* time per step: ingest, feed checks, sorting, ops, checks + layout, write */
  _Atomic int msg_taken;
  int64_t *sym;                 /* nsym values, -1 unbound */
  int32_t *sym_src;             /* source index that bound it */
  /* layout of the staging buffer */
  int64_t packed_len, batch;
  int packed32;                 /* the packed input is int32 (else int64) */
  int64_t *col_size, *col_aux;  /* ncols */
  int64_t *col_str0, *col_byte0;/* ncols: a hashed column's first string and first byte in the device-hash region */
  int64_t *col_byte1;           /* ncols: and one past its last byte */
  int32_t *write_order;         /* ncols + nargs: rh_write's tasks, the largest first (on the pool) */
  int64_t hash_segments, hash_strings, hash_bytes, hash_words; /* the device-hash region (0 words: none) */
  int64_t *arg_off, *arg_shape; /* nargs, nargs * RH_MAXDIM */
  int32_t *arg_ndim;
  int64_t staging_bytes;
  int64_t max_batch, max_elements; /* the serving limits (config.max_batch, config.max_request_elements) */
  int clean;                    /* the tensors and arenas are cleared already (rh_ctx_clear after the last write) */
  char msg[512];                /* why the run was refused (diagnostics) */
} rh_ctx;

int rh_refuse(rh_ctx *c, const char *fmt, ...);
int64_t rh_now_ns(void);
int rh_program_levels(rh_program *p, rh_arena *a);  /* level_ops / level_off and the task graph, from the ops'
                                                    * inputs and outputs */

/* executor (rh_exec.c) */
rh_ctx *rh_ctx_new(const rh_program *p);
void rh_ctx_free(rh_ctx *c);
void rh_ctx_reset(rh_ctx *c);   /* before a request: clears what rh_ctx_clear has not (nslots tensors, arenas) */
void rh_ctx_clear(rh_ctx *c);   /* the tensors and arenas, once the staging buffer is written: without the GIL,
                                 * instead of at the next request's start with it (0.7 MB of tensors for E) */
int rh_run(rh_ctx *c);          /* from the feeds to the staging layout; RH_NEED_OP: c->next_op is a fallback */
void rh_op_done(rh_ctx *c);     /* the caller ran c->next_op (in numpy): resume after it */
void rh_set_task_graph(int on); /* rh_run's checks and ops as one job of dependent tasks (default) or by stages */
int rh_write(rh_ctx *c, uint8_t *dst, int64_t capacity);  /* the module's arguments into the staging buffer */

/* strings (rh_strings.c) */
int rh_finish_raw(rh_ctx *c, rh_tensor *t);                 /* RAW_FIXED / RAW_UCS4 -> RH_STR */
int rh_materialize_decimal(rh_ctx *c, const rh_tensor *in, rh_tensor *out);
int rh_str_eq(const uint8_t *a, int64_t la, const uint8_t *b, int64_t lb);

/* ops (rh_ops.c, rh_cross.c, rh_example.c): 0 ok, else RH_REFUSE / RH_NOMEM / RH_NEED_OP */
int rh_exec_op(rh_ctx *c, const rh_op *op);
int rh_op_sparse_cross(rh_ctx *c, const rh_op *op);
int rh_op_parse_example(rh_ctx *c, const rh_op *op);
int rh_table_build(rh_table *t, rh_arena *a);  /* index the keys (arena: the program's) */
int64_t rh_table_find(const rh_table *t, const uint8_t *s, int64_t len);

/* allocation helpers */
int rh_new_numeric(rh_ctx *c, rh_tensor *t, int dtype, int ndim, const int64_t *shape);
int rh_new_strings(rh_ctx *c, rh_tensor *t, int ndim, const int64_t *shape);

/* ---------------------------------------------------------------------------------------------- DLPack */
/* DLPack's C ABI (dlpack.h, v0.8): what TVM's from_dlpack reads */
typedef struct { uint8_t code, bits; uint16_t lanes; } dl_dtype;
typedef struct { int32_t device_type, device_id; } dl_device;
typedef struct {
  void *data;
  dl_device device;
  int32_t ndim;
  dl_dtype dtype;
  int64_t *shape, *strides;
  uint64_t byte_offset;
} dl_tensor;
typedef struct dl_managed {
  dl_tensor t;
  void *ctx;
  void (*deleter)(struct dl_managed *);
  int64_t shape[RH_MAXDIM];
} dl_managed;
extern const uint8_t RH_DL_CODE[RH_NDTYPES];  /* DLPack type code per rh dtype (numeric ones) */

/* ---------------------------------------------------------------------------------------------- device part */
/* Entry points of libtvm_ffi and libcuda, by address (given from Python: no link-time dependency, so the library
 * still loads where neither exists). The CUDA ones are NULL for a CPU device. */
typedef struct {
  int (*call)(void *func, void *args, int32_t nargs, void *result);      /* TVMFFIFunctionCall */
  int (*decref)(void *obj);                                              /* TVMFFIObjectDecRef */
  int (*incref)(void *obj);                                              /* TVMFFIObjectIncRef */
  int (*from_dlpack)(dl_managed *from, int32_t align, int32_t contiguous, void **out); /* TVMFFITensorFromDLPack */
  int (*set_stream)(int32_t dev_type, int32_t dev_id, void *stream, void **prev);      /* TVMFFIEnvSetStream */
  void (*error_move)(void **err);                                        /* TVMFFIErrorMoveFromRaised */
  int (*ctx_set_current)(void *ctx);                                     /* cuCtxSetCurrent */
  int (*h2d)(uint64_t dst, const void *src, size_t n, void *stream);     /* cuMemcpyHtoDAsync_v2 */
  int (*d2h)(void *dst, uint64_t src, size_t n, void *stream);           /* cuMemcpyDtoHAsync_v2 */
  int (*sync)(void *stream);                                             /* cuStreamSynchronize */
  int (*host_alloc)(void **p, size_t n, unsigned flags);                 /* cuMemHostAlloc */
  int (*host_free)(void *p);                                             /* cuMemFreeHost */
} rh_api;

#define RH_MAXOUT 64
typedef struct rh_device {
  rh_api api;
  void *main_fn, *shape_fn;     /* the VM's main, tvm-ffi's "ffi.Shape" (references held) */
  void **params; int32_t nparams; /* device tensors (references held) */
  int32_t dev_type, dev_id;
  void *cu_ctx, *stream;        /* CUDA: the primary context, the slot's stream (NULL: the legacy default stream) */
  int32_t keeps, nout;          /* main returns (outputs, storages); the model's outputs */
  uint8_t *out_buf; size_t out_cap; int out_pinned; /* where the outputs come back */
  /* the last call's outputs, in out_buf */
  int32_t out_n;
  size_t out_off[RH_MAXOUT], out_bytes[RH_MAXOUT];
  dl_dtype out_dtype[RH_MAXOUT];
  int32_t out_ndim[RH_MAXOUT];
  int64_t out_shape[RH_MAXOUT][RH_MAXDIM];
  char msg[256];
} rh_device;

enum { RH_DEV_OK = 0, RH_DEV_ERROR = 1 /* main raised: msg */, RH_DEV_UNSUPPORTED = 2 /* an output it cannot return */,
       RH_DEV_CUDA = 3 /* a driver call failed */ };
/* The request's device part on the staging buffer rh_write filled at `host` (nbytes): to the device at `dev` (CUDA),
 * the arguments as tensors, main, the outputs back into out_buf, one synchronisation. GIL not needed. */
int rh_device_call(rh_device *d, rh_ctx *c, uint8_t *host, uint64_t dev, int64_t nbytes);
void rh_device_free(rh_device *d);

#endif
