/* The executor: one request from its feed tensors to the module's arguments in one staging buffer.
 *
 * Stages (each check mirrors one in recom_tvm/runtime: feeds.py, host_stage.py, binding.py, packer.py):
 *   feed checks -> row sorting -> host-plan ops (resumable: an op the core does not take returns RH_NEED_OP and
 *   the caller runs its numpy implementation) -> id checks -> symbol binding and assertions -> the staging layout.
 * rh_write then writes the packed buffer and the other arguments into the caller's (pinned) staging buffer. */
#include <float.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "rh.h"

enum { ST_FEEDS = 0, ST_OPS = 1, ST_DONE = 2 };
static int graph_run = 1;  /* the task graph (run_graph), else stage by stage (config.native_task_graph) */
void rh_set_task_graph(int on) { graph_run = on != 0; }
#define ARG_ALIGN 256
#define ROW_END_SLACK 4096  /* the feed check keeps a sparse feature's row ends for up to nnz + this many rows */

rh_ctx *rh_ctx_new(const rh_program *p) {
  rh_ctx *c = (rh_ctx *)calloc(1, sizeof(rh_ctx));
  if (!c) return NULL;
  c->prog = p;
  int ns = p->nslots ? p->nslots : 1, nsym = p->nsym ? p->nsym : 1, nc = p->ncols ? p->ncols : 1;
  int na = p->nargs ? p->nargs : 1, no = p->nops ? p->nops : 1;
  int ntask = ns;  /* the widest parallel stage: features, sorts, ops, id checks or columns + arguments */
  if (p->nfeat > ntask) ntask = p->nfeat;
  if (p->nops > ntask) ntask = p->nops;
  if (p->nidcheck > ntask) ntask = p->nidcheck;
  if (p->ncols + p->nargs > ntask) ntask = p->ncols + p->nargs;
  if (p->nsort > ntask) ntask = p->nsort;
  if (p->ntasks > ntask) ntask = p->ntasks;
  c->t = (rh_tensor *)calloc((size_t)ns, sizeof(rh_tensor));
  c->sym = (int64_t *)calloc((size_t)nsym, sizeof(int64_t));
  c->sym_src = (int32_t *)calloc((size_t)nsym, sizeof(int32_t));
  c->col_size = (int64_t *)calloc((size_t)nc, sizeof(int64_t));
  c->col_aux = (int64_t *)calloc((size_t)nc, sizeof(int64_t));
  c->col_str0 = (int64_t *)calloc((size_t)nc, sizeof(int64_t));
  c->col_byte0 = (int64_t *)calloc((size_t)nc, sizeof(int64_t));
  c->col_byte1 = (int64_t *)calloc((size_t)nc, sizeof(int64_t));
  c->arg_off = (int64_t *)calloc((size_t)na, sizeof(int64_t));
  c->arg_shape = (int64_t *)calloc((size_t)na * RH_MAXDIM, sizeof(int64_t));
  c->arg_ndim = (int32_t *)calloc((size_t)na, sizeof(int32_t));
  c->op_done = (uint8_t *)calloc((size_t)no, 1);
  c->status = (int32_t *)calloc((size_t)ntask + 1, sizeof(int32_t));
  c->task_state = (_Atomic int32_t *)calloc((size_t)p->ntasks + 1, sizeof(int32_t));
  c->write_order = (int32_t *)calloc((size_t)(p->ncols + p->nargs) + 1, sizeof(int32_t));
  if (!c->t || !c->sym || !c->sym_src || !c->col_size || !c->col_aux || !c->col_str0 || !c->col_byte0 || !c->col_byte1 || !c->arg_off || !c->arg_shape ||
      !c->arg_ndim || !c->op_done || !c->status || !c->task_state || !c->write_order) {
    rh_ctx_free(c);
    return NULL;
  }
  rh_ctx_reset(c);
  return c;
}

void rh_ctx_free(rh_ctx *c) {
  if (!c) return;
  for (int i = 0; i < RH_MAXTHREADS; i++) rh_arena_free(&c->arena[i]);
  free(c->t);
  free(c->sym);
  free(c->sym_src);
  free(c->col_size);
  free(c->col_aux);
  free(c->col_str0);
  free(c->col_byte0);
  free(c->col_byte1);
  free(c->arg_off);
  free(c->arg_shape);
  free(c->arg_ndim);
  free(c->op_done);
  free(c->status);
  free((void *)c->task_state);
  free(c->write_order);
  free(c);
}

void rh_ctx_clear(rh_ctx *c) {
  const rh_program *p = c->prog;
  for (int i = 0; i < RH_MAXTHREADS; i++) rh_arena_reset(&c->arena[i]);
  /* the program's slot template (constants set, every other slot empty, pyobj -1): one sequential copy, where a
   * loop of per-slot branches and stores cost E ~9% of its host stage at B = 32 (1,291 slots of 176 bytes) */
  if (p->consts) {
    memcpy(c->t, p->consts, sizeof(rh_tensor) * (size_t)p->nslots);
  } else {
    memset(c->t, 0, sizeof(rh_tensor) * (size_t)p->nslots);
    for (int i = 0; i < p->nslots; i++) c->t[i].pyobj = -1;
  }
  c->clean = 1;
}

void rh_ctx_reset(rh_ctx *c) {
  const rh_program *p = c->prog;
  if (!c->clean) rh_ctx_clear(c);
  c->clean = 0;
  for (int i = 0; i < p->nsym; i++) {
    c->sym[i] = -1;
    c->sym_src[i] = -1;
  }
  if (p->nops) memset(c->op_done, 0, (size_t)p->nops);
  memset(c->ns, 0, sizeof c->ns);
  c->next_op = -1;
  c->level = 0;
  c->stage = ST_FEEDS;
  c->msg[0] = 0;
  atomic_store(&c->msg_taken, 0);
  c->staging_bytes = 0;
}

/* the first non-zero status of tasks [from, from + n) (RH_NOMEM before RH_REFUSE: a refusal's reason may not be
 * the first) */
static int first_status(const rh_ctx *c, int64_t from, int64_t n) {
  int rc = RH_OK;
  for (int64_t i = from; i < from + n; i++) {
    if (c->status[i] == RH_NOMEM) return RH_NOMEM;
    if (c->status[i] && !rc) rc = c->status[i];
  }
  return rc;
}

/* ---------------------------------------------------------------------------------------------- feeds */
static int check_static(rh_ctx *c, int slot) {
  const rh_program *p = c->prog;
  const rh_tensor *t = &c->t[slot];
  if (!t->set) return rh_refuse(c, "feed tensor %d missing", slot);
  int rank = p->slot_rank[slot];
  if (rank < 0) return RH_OK;
  if (t->ndim != rank) return rh_refuse(c, "feed tensor %d: rank %d, expected %d", slot, t->ndim, rank);
  for (int d = 0; d < rank; d++) {
    int64_t want = p->slot_dims[(size_t)slot * RH_MAXDIM + d];
    if (want >= 0 && want != t->shape[d]) return rh_refuse(c, "feed tensor %d: dim %d", slot, d);
  }
  return RH_OK;
}

static int is_index(const rh_tensor *t) { return rh_is_int(t->dtype); }

static int check_feeds(rh_ctx *c) {
  const rh_program *p = c->prog;
  int64_t total = 0;
  for (int f = 0; f < p->nfeat; f++)
    for (int k = 0; k < p->feat_nparts[f]; k++) {
      int slot = p->feat_part_slot[3 * f + k];
      int rc = check_static(c, slot);
      if (rc) return rc;
      total += c->t[slot].size;
    }
  if (total > c->max_elements) return rh_refuse(c, "request of %lld elements", (long long)total);
  return RH_OK;
}

/* whether v[0..n) holds a denormal: blocks of 16 reduced without a branch (the compiler vectorizes them), since
 * nearly every feed has none and E's 881 float feeds are scanned per request */
#define DENORMAL_SCAN(name, type, exp, man)                                          \
  static int name(const type *v, int64_t n) {                                      \
    int64_t i = 0;                                                                 \
    for (; i + 16 <= n; i += 16) {                                                 \
      unsigned any = 0;                                                            \
      rh_prefetch_ahead(v + i);                                                    \
      for (int j = 0; j < 16; j++) any |= !(v[i + j] & (exp)) & !!(v[i + j] & (man)); \
      if (any) return 1;                                                           \
    }                                                                              \
    for (; i < n; i++)                                                             \
      if (!(v[i] & (exp)) && (v[i] & (man))) return 1;                             \
    return 0;                                                                      \
  }
DENORMAL_SCAN(has_denormal32, uint32_t, 0x7F800000u, 0x7FFFFFu)
DENORMAL_SCAN(has_denormal64, uint64_t, 0x7FF0000000000000ull, 0x000FFFFFFFFFFFFFull)

/* TF-CPU runs with denormals flushed to zero: a denormal feed value is a signed zero (feeds.flush_denormals).
 * The caller's array is not written: a copy where there is something to flush. */
static int flush_denormals(rh_ctx *c, rh_tensor *t) {
  int64_t n = t->size;
  if (t->dtype == RH_F32) {
    const uint32_t *v = (const uint32_t *)t->data;
    if (!has_denormal32(v, n)) return RH_OK;
    uint32_t *o = (uint32_t *)rh_alloc(RH_ARENA(c), (size_t)n * 4);
    if (!o) return RH_NOMEM;
    for (int64_t i = 0; i < n; i++) o[i] = (!(v[i] & 0x7F800000u) && (v[i] & 0x7FFFFFu)) ? v[i] & 0x80000000u : v[i];
    t->data = o;
  } else {
    const uint64_t *v = (const uint64_t *)t->data;
    const uint64_t exp = 0x7FF0000000000000ull, man = 0x000FFFFFFFFFFFFFull;
    if (!has_denormal64(v, n)) return RH_OK;
    uint64_t *o = (uint64_t *)rh_alloc(RH_ARENA(c), (size_t)n * 8);
    if (!o) return RH_NOMEM;
    for (int64_t i = 0; i < n; i++) o[i] = (!(v[i] & exp) && (v[i] & man)) ? v[i] & (1ull << 63) : v[i];
    t->data = o;
  }
  t->pyobj = -1;
  return RH_OK;
}

/* rank-2 sparse indices: whether any is out of [0, l0) x [0, l1), and whether the rows are sorted; with `end`, the
 * rows' ends too (rh_tensor.row_end; slot 0 takes the stores of rows out of bounds). A loop of its own: few live
 * values, so nothing spills (the indices are the host stage's largest input: ~4 MB for mixed-100 at B = 2,048). */
static int scan_rows(const int64_t *ix, int64_t nnz, uint64_t l0, uint64_t l1, int64_t *end, int *sorted_out) {
  int bad = 0, sorted = 1;
  int64_t prev = 0;
  for (int64_t i = 0; i < nnz; i++) {
    if (!(i & 3)) rh_prefetch_ahead(ix + 2 * i);
    int64_t r = ix[2 * i];
    int out = (uint64_t)r >= l0;
    bad |= out | ((uint64_t)ix[2 * i + 1] >= l1);
    sorted &= r >= prev;
    prev = r;
    if (end) end[out ? 0 : r + 1] = i + 1;
  }
  *sorted_out = sorted;
  return bad;
}

/* one feature: TF's SparseTensor / RaggedTensor validity, the batch limit; string feeds read (numpy 'S' / 'U') */
static int check_feature(rh_ctx *c, int f) {
  const rh_program *p = c->prog;
  {
    const int32_t *ps = &p->feat_part_slot[3 * f];
    for (int k = 0; k < p->feat_nparts[f]; k++) {
      rh_tensor *t = &c->t[ps[k]];
      if (t->dtype == RH_F16) return rh_refuse(c, "float16 feed");  /* the reference flushes its denormals */
      int rc = t->raw ? rh_finish_raw(c, t) : rh_is_float(t->dtype) ? flush_denormals(c, t) : RH_OK;
      if (rc) return rc;
    }
    int64_t batch;
    if (p->feat_kind[f] == 1) {  /* sparse: TF's SparseTensor validity */
      const rh_tensor *idx = &c->t[ps[0]], *val = &c->t[ps[1]], *ds = &c->t[ps[2]];
      if (!is_index(idx) || !is_index(ds) || idx->ndim != 2 || ds->ndim < 1 || val->ndim < 1)
        return rh_refuse(c, "sparse feature %d: malformed", f);
      if (idx->shape[1] != ds->shape[0] || val->shape[0] != idx->shape[0])
        return rh_refuse(c, "sparse feature %d: inconsistent parts", f);
      int64_t rank = idx->shape[1], nnz = idx->shape[0];
      for (int64_t j = 0; j < ds->size; j++)
        if (rh_geti(ds, j) < 0) return rh_refuse(c, "sparse feature %d: negative dense_shape", f);
      if (idx->dtype == RH_I64 && ds->size == rank && rank >= 1) {
        const int64_t *ix = (const int64_t *)idx->data;
        int64_t lim[RH_MAXDIM], prev = 0;
        int sorted = 1;
        if (rank > RH_MAXDIM) return rh_refuse(c, "sparse feature %d: rank", f);
        for (int64_t j = 0; j < rank; j++) lim[j] = rh_geti(ds, j);
        if (rank == 2) {
          const uint64_t l0 = (uint64_t)lim[0], l1 = (uint64_t)lim[1];
          int bad = 0;
          /* the rows' ends on the same pass (the CSR writer's offsets), where the rows are few enough to hold:
           * slot 0 takes the stores of rows out of bounds (refused below) */
          int64_t *end = l0 <= (uint64_t)(nnz + ROW_END_SLACK) ? (int64_t *)rh_alloc(RH_ARENA(c), (l0 + 1) * 8) : NULL;
          if (end) memset(end, 0, (l0 + 1) * 8);
          bad = scan_rows(ix, nnz, l0, l1, end, &sorted);
          if (bad) return rh_refuse(c, "sparse feature %d: index out of bounds", f);
          if (end && sorted) rh_set_row_end(&c->t[ps[0]], end, (int64_t)l0, (int64_t)l1, nnz);
        } else {
          for (int64_t i = 0; i < nnz; i++) {
            for (int64_t j = 0; j < rank; j++)
              if ((uint64_t)ix[i * rank + j] >= (uint64_t)lim[j])
                return rh_refuse(c, "sparse feature %d: index out of bounds", f);
            sorted &= ix[i * rank] >= prev;
            prev = ix[i * rank];
          }
        }
        c->t[ps[0]].rows_ok = 1;
        c->t[ps[0]].rows_sorted = sorted;
      } else {
        for (int64_t i = 0; i < nnz; i++)
          for (int64_t j = 0; j < rank; j++) {
            int64_t v = rh_geti(idx, i * rank + j);
            if (v < 0 || v >= rh_geti(ds, j)) return rh_refuse(c, "sparse feature %d: index out of bounds", f);
          }
      }
      batch = ds->size ? rh_geti(ds, 0) : 0;
    } else if (p->feat_kind[f] == 2) {  /* ragged: values, row_splits */
      const rh_tensor *val = &c->t[ps[0]], *sp = &c->t[ps[1]];
      if (!is_index(sp) || sp->ndim != 1 || sp->size == 0) return rh_refuse(c, "ragged feature %d: splits", f);
      int64_t prev = rh_geti(sp, 0);
      if (prev != 0) return rh_refuse(c, "ragged feature %d: splits must start at 0", f);
      for (int64_t i = 1; i < sp->size; i++) {
        int64_t v = rh_geti(sp, i);
        if (v < prev) return rh_refuse(c, "ragged feature %d: decreasing splits", f);
        prev = v;
      }
      if (val->ndim < 1 || prev != val->shape[0]) return rh_refuse(c, "ragged feature %d: splits end", f);
      batch = sp->size - 1;
    } else {
      const rh_tensor *x = &c->t[ps[0]];
      batch = x->ndim ? x->shape[0] : 0;
    }
    if (batch > c->max_batch) return rh_refuse(c, "feature %d: batch %lld above the limit", f, (long long)batch);
  }
  return RH_OK;
}

static void feature_task(void *arg, int64_t f, int worker) {
  (void)worker;
  rh_ctx *c = (rh_ctx *)arg;
  c->status[f] = check_feature(c, (int)f);
}

/* ---------------------------------------------------------------------------------------------- sorting */
static int permute(rh_ctx *c, rh_tensor *t, const int64_t *perm, int64_t n) {
  if (t->raw) {
    int rc = rh_finish_raw(c, t);
    if (rc) return rc;
  }
  rh_tensor in = *t;
  int64_t inner = n ? in.size / n : 0;
  int rc;
  if (in.dtype == RH_STR) {
    rc = rh_new_strings(c, t, in.ndim, in.shape);
    if (rc) return rc;
    for (int64_t i = 0; i < n; i++) {
      memcpy(t->sp + i * inner, in.sp + perm[i] * inner, (size_t)inner * sizeof(void *));
      memcpy(t->sl + i * inner, in.sl + perm[i] * inner, (size_t)inner * sizeof(int64_t));
    }
    return RH_OK;
  }
  int dtype = in.dtype;
  rc = rh_new_numeric(c, t, dtype, in.ndim, in.shape);
  if (rc) return rc;
  size_t bs = (size_t)inner * rh_itemsize(dtype);
  for (int64_t i = 0; i < n; i++) memcpy((uint8_t *)t->data + i * bs, (const uint8_t *)in.data + perm[i] * bs, bs);
  return RH_OK;
}

static int sort_rows(rh_ctx *c, const int32_t *rec) {
  rh_tensor *idx = &c->t[rec[0]];
  int nalso = rec[2];
  if (!idx->set || idx->ndim != 2 || !is_index(idx)) return rh_refuse(c, "sort: indices");
  int64_t n = idx->shape[0], k = idx->shape[1];
  for (int a = 0; a < nalso; a++) {
    const rh_tensor *t = &c->t[rec[3 + a]];
    if (!t->set || t->ndim < 1 || t->shape[0] != n) return rh_refuse(c, "sort: paired tensor of another length");
  }
  if (n < 2 || (idx->rows_ok && idx->rows_sorted)) return RH_OK;
  int64_t maxrow = 0, prev = INT64_MIN;
  int sorted = 1;
  for (int64_t i = 0; i < n; i++) {
    int64_t r = rh_geti(idx, i * k);
    if (r < prev) sorted = 0;
    prev = r;
    if (r < 0) return rh_refuse(c, "sort: negative row");
    if (r > maxrow) maxrow = r;
  }
  if (sorted) return RH_OK;
  /* stable counting sort by row (rows are within dense_shape: checked with the feeds) */
  int64_t *start = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)(maxrow + 2) * 8);
  int64_t *perm = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)n * 8);
  if (!start || !perm) return RH_NOMEM;
  memset(start, 0, (size_t)(maxrow + 2) * 8);
  for (int64_t i = 0; i < n; i++) start[rh_geti(idx, i * k) + 1]++;
  for (int64_t r = 0; r <= maxrow; r++) start[r + 1] += start[r];
  for (int64_t i = 0; i < n; i++) perm[start[rh_geti(idx, i * k)]++] = i;
  int rows_ok = idx->rows_ok;
  int rc = permute(c, idx, perm, n);
  idx->rows_ok = rows_ok;
  idx->rows_sorted = 1;
  if (!rc) rc = permute(c, &c->t[rec[1]], perm, n);
  for (int a = 0; !rc && a < nalso; a++) rc = permute(c, &c->t[rec[3 + a]], perm, n);
  return rc;
}

static void sort_task(void *arg, int64_t i, int worker) {
  (void)worker;
  rh_ctx *c = (rh_ctx *)arg;
  c->status[i] = sort_rows(c, c->prog->sort[i]);
}

/* ---------------------------------------------------------------------------------------------- ops */
static void op_task(void *arg, int64_t i, int worker) {
  (void)worker;
  rh_ctx *c = (rh_ctx *)arg;
  const rh_program *p = c->prog;
  int k = p->level_ops[p->level_off[c->level] + i];
  if (c->op_done[k]) {
    c->status[i] = RH_OK;
    return;
  }
  const rh_op *op = &p->ops[k];
  c->status[i] = op->code == OP_FALLBACK ? RH_NEED_OP : rh_exec_op(c, op);
}

/* the ops level by level (the ops of a level are independent: they run in parallel) */
static int run_ops(rh_ctx *c) {
  const rh_program *p = c->prog;
  for (; c->level < p->nlevels; c->level++) {
    int64_t first = p->level_off[c->level], n = p->level_off[c->level + 1] - first;
    rh_parallel(op_task, c, n);
    int rc = RH_OK;
    for (int64_t i = 0; i < n; i++) {
      int s = c->status[i];
      if (s == RH_NOMEM) return RH_NOMEM;
      if (s == RH_REFUSE && rc != RH_REFUSE) rc = RH_REFUSE;
    }
    if (rc) return rc;
    int need = -1;
    for (int64_t i = 0; i < n; i++) {
      int k = p->level_ops[first + i];
      if (c->status[i] != RH_NEED_OP) c->op_done[k] = 1;
      else if (need < 0) need = k;
    }
    if (need >= 0) {
      c->next_op = need;  /* the caller runs it in numpy, marks it done (rh_op_done) and resumes this level */
      return RH_NEED_OP;
    }
  }
  return RH_OK;
}

/* The task graph (rh_program.dep_off / dep): each task after the last writer of each slot it reads or changes. A
 * feature check writes its parts (strings read, denormals flushed), a sort its indices, values and the tensors
 * sorted with them, an op its outputs. Every dependency has a lower number: run_graph relies on it. */
static int program_graph(rh_program *p, rh_arena *a) {
  int nf = p->nfeat, ns = p->nsort, no = p->nops, ni = p->nidcheck, n = nf + ns + no + ni, cap = 0;
  for (int k = 0; k < ns; k++) cap += 3 + p->sort[k][2];
  for (int k = 0; k < no; k++) cap += p->ops[k].nin;
  cap += 2 * ni;
  int32_t *writer = (int32_t *)rh_alloc(a, sizeof(int32_t) * (size_t)(p->nslots + 1));
  p->dep_off = (int32_t *)rh_alloc(a, sizeof(int32_t) * (size_t)(n + 1));
  p->dep = (int32_t *)rh_alloc(a, sizeof(int32_t) * (size_t)(cap + 1));
  if (!writer || !p->dep_off || !p->dep) return RH_NOMEM;
  for (int s = 0; s < p->nslots; s++) writer[s] = -1;
  int nd = 0, t = 0;
#define DEP_ON(slot)                                                                  \
  do {                                                                                \
    int s_ = (slot);                                                                  \
    if (s_ >= 0 && s_ < p->nslots && writer[s_] >= 0) {                              \
      int dup_ = 0;                                                                   \
      for (int q_ = p->dep_off[t]; q_ < nd; q_++) dup_ |= p->dep[q_] == writer[s_];  \
      if (!dup_) p->dep[nd++] = writer[s_];                                           \
    }                                                                                 \
  } while (0)
#define WRITES(slot)                                         \
  do {                                                       \
    int s_ = (slot);                                         \
    if (s_ >= 0 && s_ < p->nslots) writer[s_] = t;           \
  } while (0)
  for (int f = 0; f < nf; f++, t++) {
    p->dep_off[t] = nd;
    for (int k = 0; k < p->feat_nparts[f]; k++) WRITES(p->feat_part_slot[3 * f + k]);
  }
  for (int k = 0; k < ns; k++, t++) {
    const int32_t *rec = p->sort[k];
    p->dep_off[t] = nd;
    for (int j = 0; j < 3 + rec[2]; j++)
      if (j != 2) DEP_ON(rec[j]);
    for (int j = 0; j < 3 + rec[2]; j++)
      if (j != 2) WRITES(rec[j]);
  }
  for (int k = 0; k < no; k++, t++) {
    p->dep_off[t] = nd;
    for (int j = 0; j < p->ops[k].nin; j++) DEP_ON(p->ops[k].in[j]);
    for (int j = 0; j < p->ops[k].nout; j++) WRITES(p->ops[k].out[j]);
  }
  for (int k = 0; k < ni; k++, t++) {
    p->dep_off[t] = nd;
    DEP_ON((int)p->idcheck[5 * k]);
    DEP_ON((int)p->idcheck[5 * k + 2]);
  }
#undef DEP_ON
#undef WRITES
  p->dep_off[n] = nd;
  p->ntasks = n;
  return RH_OK;
}

int rh_program_levels(rh_program *p, rh_arena *a) {
  int32_t *producer_level = (int32_t *)rh_alloc(a, sizeof(int32_t) * (size_t)(p->nslots + 1));
  int32_t *level = (int32_t *)rh_alloc(a, sizeof(int32_t) * (size_t)(p->nops + 1));
  p->level_ops = (int32_t *)rh_alloc(a, sizeof(int32_t) * (size_t)(p->nops + 1));
  if (!producer_level || !level || !p->level_ops) return RH_NOMEM;
  for (int s = 0; s < p->nslots; s++) producer_level[s] = -1;
  int nlevels = 0;
  for (int k = 0; k < p->nops; k++) {  /* ops are in a topological order */
    int lv = 0;
    for (int i = 0; i < p->ops[k].nin; i++) {
      int s = p->ops[k].in[i];
      if (s >= 0 && s < p->nslots && producer_level[s] + 1 > lv) lv = producer_level[s] + 1;
    }
    level[k] = lv;
    for (int i = 0; i < p->ops[k].nout; i++) {
      int s = p->ops[k].out[i];
      if (s >= 0 && s < p->nslots) producer_level[s] = lv;
    }
    if (lv + 1 > nlevels) nlevels = lv + 1;
  }
  p->nlevels = nlevels;
  p->level_off = (int32_t *)rh_alloc(a, sizeof(int32_t) * (size_t)(nlevels + 2));
  if (!p->level_off) return RH_NOMEM;
  memset(p->level_off, 0, sizeof(int32_t) * (size_t)(nlevels + 2));
  for (int k = 0; k < p->nops; k++) p->level_off[level[k] + 1]++;
  for (int l = 0; l < nlevels; l++) p->level_off[l + 1] += p->level_off[l];
  int32_t *fill = producer_level;  /* reused: next position per level */
  for (int l = 0; l < nlevels; l++) fill[l] = p->level_off[l];
  for (int k = 0; k < p->nops; k++) p->level_ops[fill[level[k]]++] = k;  /* ascending within a level */
  return program_graph(p, a);
}

/* floats the host plan made enter the kernels as feeds do: denormals flushed (CompiledModel.host_env), after
 * the whole plan ran (the plan's own ops saw them as computed) */
static void flush_task(void *arg, int64_t i, int worker) {
  (void)worker;
  rh_ctx *c = (rh_ctx *)arg;
  const rh_op *op = &c->prog->ops[i];
  c->status[i] = RH_OK;
  for (int k = 0; k < op->nout; k++) {
    rh_tensor *t = &c->t[op->out[k]];
    if (t->set && t->dtype == RH_F16) c->status[i] = rh_refuse(c, "float16 host tensor");  /* the reference's */
    if (t->set && !t->raw && rh_is_float(t->dtype)) {
      int rc = flush_denormals(c, t);
      if (rc) c->status[i] = rc;
    }
  }
}

void rh_op_done(rh_ctx *c) {
  if (c->next_op >= 0) c->op_done[c->next_op] = 1;
  c->next_op = -1;
}

/* ---------------------------------------------------------------------------------------------- after the ops */
static void idcheck_task(void *arg, int64_t i, int worker);

static int id_checks(rh_ctx *c) {
  rh_parallel(idcheck_task, c, c->prog->nidcheck);
  return first_status(c, 0, c->prog->nidcheck);
}

/* weight k > 0 as the kernels see it: a denormal float is a signed zero there (flush_task), and the task graph may
 * check ids before that flush */
static int weight_positive(const rh_tensor *w, int64_t k) {
  double v = rh_get_f64(w, k);
  if (w->dtype == RH_F32) return v >= (double)FLT_MIN;
  if (w->dtype == RH_F64) return v >= DBL_MIN;
  return v > 0;
}

static int id_check(rh_ctx *c, int i) {
  const rh_program *p = c->prog;
  {
    const int64_t *r = &p->idcheck[5 * i];
    const rh_tensor *ids = &c->t[r[0]];
    if (!ids->set || !(rh_is_int(ids->dtype) || ids->dtype == RH_DEC)) return rh_refuse(c, "id check: ids");
    int64_t limit = r[1];
    const rh_tensor *w = r[2] >= 0 ? &c->t[r[2]] : NULL;
    int64_t hard_low = r[3], soft_low = r[4];
    if (ids->dtype == RH_I64 || ids->dtype == RH_DEC) {  /* all within [both lows, limit): one vectorized pass */
      const int64_t *v = (const int64_t *)ids->data, low = soft_low > hard_low ? soft_low : hard_low;
      int out = 0;
      for (int64_t k = 0; k < ids->size; k++) {
        if (!(k & 7)) rh_prefetch_ahead(v + k);
        out |= (v[k] < low) | (v[k] >= limit);
      }
      if (!out) return RH_OK;
    }
    for (int64_t k = 0; k < ids->size; k++) {
      int64_t v = rh_geti(ids, k);
      if (v < hard_low) return rh_refuse(c, "id %lld below the wrapped range", (long long)k);
      if (v < limit && v >= soft_low) continue;
      if (w) {
        if (!w->set || w->size != ids->size || w->dtype == RH_STR || w->raw) return rh_refuse(c, "id check: weights");
        if (!weight_positive(w, k)) continue;
      }
      return rh_refuse(c, "id %lld out of range", (long long)k);
    }
  }
  return RH_OK;
}

static void idcheck_task(void *arg, int64_t i, int worker) {
  (void)worker;
  rh_ctx *c = (rh_ctx *)arg;
  c->status[i] = id_check(c, (int)i);
}

static int bind(rh_ctx *c) {
  const rh_program *p = c->prog;
  for (int s = 0; s < p->nsrc; s++) {
    const rh_tensor *t = &c->t[p->src_slot[s]];
    int rank = p->src_rank[s];
    if (!t->set) return rh_refuse(c, "binding: source %d not computed", s);
    if (p->src_isvalue[s] >= 2) {  /* one size only the assertions read */
      int64_t sym = p->src_dims[s][0], axis = p->src_axis[s];
      if (c->sym_src[sym] >= 0) continue;
      if (p->src_isvalue[s] == 2) {
        if (!rh_is_int(t->dtype) || axis < 0 || axis >= t->size) return rh_refuse(c, "binding: feed symbol");
        c->sym[sym] = rh_geti(t, axis);
        /* every size symbol is compiled as >= 0: the reference raises the feed's error */
        if (c->sym[sym] < 0) return rh_refuse(c, "binding: a negative size value");
      } else {
        if (axis < 0 || axis >= t->ndim) return rh_refuse(c, "binding: feed symbol");
        c->sym[sym] = t->shape[axis];
      }
      c->sym_src[sym] = s;
      continue;
    }
    if (p->src_isvalue[s]) {
      if (!(rh_is_int(t->dtype)) || t->size != rank) return rh_refuse(c, "binding: source %d values", s);
    } else if (t->ndim != rank) {
      return rh_refuse(c, "binding: source %d rank", s);
    }
    for (int d = 0; d < rank; d++) {
      int64_t v = p->src_isvalue[s] ? rh_geti(t, d) : t->shape[d];
      int kind = p->src_dimkind[s][d];
      int64_t want = p->src_dims[s][d];
      if (kind == 1) {
        if (v != want) return rh_refuse(c, "binding: source %d dim %d is %lld", s, d, (long long)v);
      } else if (kind == 0) {
        if (v < 0) return rh_refuse(c, "binding: a negative size value");
        if (c->sym_src[want] < 0) {
          c->sym[want] = v;
          c->sym_src[want] = s;
        } else if (c->sym[want] != v) {
          return rh_refuse(c, "binding: inconsistent sizes (symbol %lld)", (long long)want);
        }
      }
    }
  }
  for (int i = 0; i < p->npairs; i++) {
    int a = p->pairs[2 * i], b = p->pairs[2 * i + 1];
    if (c->sym_src[a] < 0 || c->sym_src[b] < 0 || c->sym[a] != c->sym[b])
      return rh_refuse(c, "assertion %d failed", i);
  }
  return RH_OK;
}

static int numeric_or_dec(const rh_tensor *t) {
  return t->set && !t->raw && t->dtype != RH_STR && t->dtype != RH_F16 && t->dtype != RH_NONE;
}

/* ids the packed int64 buffer holds exactly (uint64 could wrap, floats truncate, bools are not ids: the reference
 * decides those, by whatever conversion rule feeds.py has) */
static int exact_ids(const rh_tensor *t) {
  return t->set && !t->raw && ((rh_is_int(t->dtype) && t->dtype != RH_U64) || t->dtype == RH_DEC);
}

static int layout(rh_ctx *c) {
  const rh_program *p = c->prog;
  int64_t batch = 0;
  if (p->batch_sym >= 0) {
    if (c->sym_src[p->batch_sym] < 0) return rh_refuse(c, "cannot tell the batch size");
    batch = c->sym[p->batch_sym];
    if (batch < 0) return rh_refuse(c, "negative batch");
  }
  c->batch = batch;
  int64_t total = 2 * (int64_t)p->ncols;
  int64_t nseg = 0, nstr = 0, nbytes = 0;
  for (int k = 0; k < p->ncols; k++) {
    const int32_t *col = &p->col[4 * k];
    const int kind = col[0] & COL_KIND_MASK, hashed = (col[0] & COL_HASHED) != 0;
    const rh_tensor *a = &c->t[col[1]];
    if (hashed) {  /* the ids' strings: counted into the device-hash region, in column order (the segments) */
      const rh_tensor *s = &c->t[col[kind == COL_CSR ? 2 : 1]];
      const int dec = (col[0] & COL_DECIMAL) != 0;
      if (!s->set || s->raw || s->dtype != (dec ? RH_DEC : RH_STR)) return rh_refuse(c, "column %d: hashed strings", k);
      c->col_str0[k] = nstr;
      c->col_byte0[k] = nbytes;
      nseg++;
      nstr += s->size;
      if (dec) nbytes += 8 * s->size;  /* the int64 values; the device makes their text */
      else for (int64_t i = 0; i < s->size; i++) nbytes += s->sl[i];
      c->col_byte1[k] = nbytes;
    }
    if (!(hashed && kind != COL_CSR) && !numeric_or_dec(a)) return rh_refuse(c, "column %d: input", k);
    int64_t size;
    c->col_aux[k] = 0;
    switch (kind) {
      case COL_CSR: {
        const rh_tensor *ids = &c->t[col[2]];
        if (a->ndim != 2 || a->shape[1] < 1 || !is_index(a) || !(hashed || exact_ids(ids)))
          return rh_refuse(c, "column %d: csr inputs", k);
        size = batch + 1 + ids->size * (col[3] >= 0 ? 2 : 1);
        if (col[3] >= 0) {
          const rh_tensor *w = &c->t[col[3]];
          if (!w->set || w->raw || w->dtype != RH_F32 || w->size != ids->size)
            return rh_refuse(c, "column %d: weights", k);
        }
        if (!a->rows_ok)
          for (int64_t i = 0; i < a->shape[0]; i++)
            if (rh_geti(a, i * a->shape[1]) < 0) return rh_refuse(c, "column %d: negative row", k);
        break;
      }
      case COL_DENSE:  /* [B, T] padded ids (a scalar feature [B]: one slot per row) */
        if (a->ndim < 1 || !(hashed || exact_ids(a))) return rh_refuse(c, "column %d: dense input", k);
        c->col_aux[k] = a->ndim >= 2 ? a->shape[1] : 1;
        size = a->size;
        break;
      case COL_ONE:
        if (!(hashed || exact_ids(a))) return rh_refuse(c, "column %d: ids", k);
        size = a->size;
        break;
      default:  /* bucket, numeric: float32 bit patterns */
        if (a->dtype != RH_F32) return rh_refuse(c, "column %d: not float32", k);
        size = a->size;
        break;
    }
    c->col_size[k] = size;
    total += size;
  }
  int packed32 = 0;
  for (int i = 0; i < p->nargs; i++)
    if (p->arg[3 * i] == ARG_PACKED && p->arg[3 * i + 2] == RH_I32) packed32 = 1;
  const int64_t wb = packed32 ? 4 : 8;
  c->hash_segments = nseg;
  c->hash_strings = nstr;
  c->hash_bytes = nbytes;
  c->hash_words = nseg ? 2 * nseg + 2 + nstr + (nbytes + wb - 1) / wb + RH_HASH_PAD : 0;
  total += c->hash_words;
  c->packed_len = total;
  /* an int32 packed input holds positions in itself (and byte offsets): the reference raises
   * RequestTooLargeError (packer.py) */
  if (packed32 && (total > INT32_MAX || nbytes > INT32_MAX))
    return rh_refuse(c, "packed length %lld above the int32 layout", (long long)total);
  c->packed32 = packed32;
  int64_t off = 0;
  for (int i = 0; i < p->nargs; i++) {
    const int32_t *ar = &p->arg[3 * i];
    int64_t bytes = 0;
    c->arg_off[i] = -1;
    int64_t *shape = &c->arg_shape[(size_t)i * RH_MAXDIM];
    switch (ar[0]) {
      case ARG_PACKED:
        c->arg_ndim[i] = 1;
        shape[0] = total;
        bytes = total * (packed32 ? 4 : 8);
        break;
      case ARG_PACKED_SIZES:  /* [B], or [B, strings] when the device hashes (its kernel's grid) */
        c->arg_ndim[i] = nseg ? 2 : 1;
        shape[0] = batch;
        shape[1] = nstr;
        break;
      case ARG_TENSOR: {  /* in the module's dtype already: another one is the reference's conversion to make */
        const rh_tensor *t = &c->t[ar[1]];
        if (!numeric_or_dec(t) || !(t->dtype == ar[2] || (t->dtype == RH_DEC && ar[2] == RH_I64)))
          return rh_refuse(c, "argument %d: dtype", i);
        c->arg_ndim[i] = t->ndim;
        memcpy(shape, t->shape, sizeof(int64_t) * RH_MAXDIM);
        bytes = t->size * (int64_t)rh_itemsize(ar[2]);
        break;
      }
      case ARG_SHAPE: {
        const rh_tensor *t = &c->t[ar[1]];
        if (!t->set || !rh_is_int(t->dtype) || t->size > RH_MAXDIM) return rh_refuse(c, "argument %d", i);
        c->arg_ndim[i] = (int32_t)t->size;
        for (int64_t j = 0; j < t->size; j++) shape[j] = rh_geti(t, j);
        break;
      }
      case ARG_SHAPE_OF: {
        const rh_tensor *t = &c->t[ar[1]];
        if (!t->set) return rh_refuse(c, "argument %d", i);
        c->arg_ndim[i] = t->ndim;
        memcpy(shape, t->shape, sizeof(int64_t) * RH_MAXDIM);
        break;
      }
      default:
        return rh_refuse(c, "argument kind");
    }
    if (ar[0] == ARG_PACKED || ar[0] == ARG_TENSOR) {
      c->arg_off[i] = off;
      off += (bytes + ARG_ALIGN - 1) / ARG_ALIGN * ARG_ALIGN;
    }
  }
  c->staging_bytes = off;
  return RH_OK;
}

/* ---------------------------------------------------------------------------------------------- the task graph */
/* A request's feature checks, sorts, host ops and id checks as one parallel job (rh_program.dep): each task waits
 * for the tasks it depends on, so a host op starts once its feature is checked instead of once every feature is,
 * and no stage waits for the slowest task of the one before (mixed-100 at B = 2,048: six such barriers). The
 * outcome is the staged run's: the first failing feature check (then sort) decides a refusal; a task whose input
 * failed is skipped; where an op needs its numpy fallback, the run goes on level by level from there (run_ops,
 * the ops that ran marked done). */
enum { RH_SKIPPED = 4 };  /* (this file's: a task whose input failed) */

static inline void relax_cpu(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void graph_task(void *arg, int64_t t, int worker) {
  (void)worker;
  rh_ctx *c = (rh_ctx *)arg;
  const rh_program *p = c->prog;
  int failed = 0;
  for (int q = p->dep_off[t]; q < p->dep_off[t + 1]; q++) {
    int st;
    for (int spins = 0; !(st = atomic_load_explicit(&c->task_state[p->dep[q]], memory_order_acquire)); spins++)
      if (spins < 4096) relax_cpu();
      else sched_yield();  /* (the thread running it was descheduled) */
    failed |= st != 1;
  }
  int64_t f = p->nfeat, s = f + p->nsort, o = s + p->nops;
  int rc, kind = t < f ? 0 : t < s ? 1 : t < o ? 2 : 3;
  if (failed) rc = RH_SKIPPED;
  else if (kind == 0) rc = check_feature(c, (int)t);
  else if (kind == 1) rc = sort_rows(c, p->sort[t - f]);
  else if (kind == 2) rc = p->ops[t - s].code == OP_FALLBACK ? RH_NEED_OP : rh_exec_op(c, &p->ops[t - s]);
  else rc = id_check(c, (int)(t - o));
  c->status[t] = rc;
  if (t + 1 == f || t + 1 == s || t + 1 == o || t + 1 == p->ntasks) {  /* a kind's last task: its end, for timings
                                                                          * (a clock per task cost E's 2,000) */
    int64_t now = rh_now_ns(), end = atomic_load_explicit(&c->task_end[kind], memory_order_relaxed);
    while (end < now && !atomic_compare_exchange_weak(&c->task_end[kind], &end, now)) {}
  }
  atomic_store_explicit(&c->task_state[t], rc == RH_OK ? 1 : 2, memory_order_release);
}

/* floats the host ops made, flushed (flush_task) where there are any */
static int flush_ops(rh_ctx *c) {
  const rh_program *p = c->prog;
  int any = 0;
  for (int k = 0; k < p->nops && !any; k++)
    for (int j = 0; j < p->ops[k].nout; j++) {
      const rh_tensor *t = &c->t[p->ops[k].out[j]];
      any |= t->set && (t->dtype == RH_F16 || (!t->raw && rh_is_float(t->dtype)));
    }
  if (!any) return RH_OK;
  rh_parallel(flush_task, c, p->nops);
  return first_status(c, 0, p->nops);
}

/* after the id checks' outcome `rc`: the symbols bound and the staging layout made (stage ST_DONE), or the refusal */
static int finish(rh_ctx *c, int rc) {
  if (!rc) rc = bind(c);
  if (!rc) rc = layout(c);
  if (!rc) c->stage = ST_DONE;
  return rc;
}

/* -> RH_OK with c->stage ST_DONE (layout made) or ST_OPS (an op needs its fallback: run_ops goes on), or the
 * refusal */
static int run_graph(rh_ctx *c, int64_t t0) {
  const rh_program *p = c->prog;
  int64_t nf = p->nfeat, s = nf + p->nsort, o = s + p->nops;
  for (int64_t i = 0; i < p->ntasks; i++) atomic_store_explicit(&c->task_state[i], 0, memory_order_relaxed);
  for (int k = 0; k < 4; k++) atomic_store_explicit(&c->task_end[k], t0, memory_order_relaxed);
  /* claimed a few at a time in order (one per claim: E's 2,000 tasks contend for the counter from 8 threads); a
   * waiting task's input was claimed before it, by a thread that runs its claims in order */
  rh_parallel(graph_task, c, p->ntasks);
  int64_t ef = c->task_end[0], es = c->task_end[1] > ef ? c->task_end[1] : ef;
  int64_t eo = c->task_end[2] > es ? c->task_end[2] : es;
  c->ns[1] += ef - t0;
  c->ns[2] += es - ef;
  c->ns[3] += eo - es;
  int rc = first_status(c, 0, nf);
  if (!rc) rc = first_status(c, nf, p->nsort);
  if (rc) return rc;
  int need = 0;
  for (int64_t k = 0; k < p->nops; k++) {
    int st = c->status[s + k];
    if (st == RH_NOMEM) return RH_NOMEM;
    if (st == RH_REFUSE) rc = RH_REFUSE;
    need |= st == RH_NEED_OP || st == RH_SKIPPED;
    c->op_done[k] = st == RH_OK;
  }
  if (rc) return rc;
  if (need) {  /* the ops level by level from here; id checks after them (as the staged run) */
    c->stage = ST_OPS;
    c->level = 0;
    return RH_OK;
  }
  rc = flush_ops(c);
  if (!rc) rc = first_status(c, o, p->nidcheck);
  rc = finish(c, rc);
  c->ns[4] += rh_now_ns() - eo;
  return rc;
}

int rh_run(rh_ctx *c) {
  const rh_program *p = c->prog;
  int rc;
  int64_t t0 = rh_now_ns(), t1;
  if (c->stage == ST_FEEDS && graph_run && rh_parallel_active()) {  /* (on one thread the stages' order is the
                                                                      * graph's, without its bookkeeping per task) */
    rc = check_feeds(c);
    if (!rc) rc = run_graph(c, t0);
    if (rc || c->stage == ST_DONE) return rc;
    t0 = rh_now_ns();
  }
  if (c->stage == ST_FEEDS) {
    rc = check_feeds(c);
    if (rc) return rc;
    rh_parallel(feature_task, c, p->nfeat);
    rc = first_status(c, 0, p->nfeat);
    if (rc) return rc;
    t1 = rh_now_ns();
    c->ns[1] += t1 - t0;
    t0 = t1;
    rh_parallel(sort_task, c, p->nsort);
    rc = first_status(c, 0, p->nsort);
    if (rc) return rc;
    t1 = rh_now_ns();
    c->ns[2] += t1 - t0;
    t0 = t1;
    c->stage = ST_OPS;
  }
  if (c->stage == ST_OPS) {
    rc = run_ops(c);
    if (!rc) rc = flush_ops(c);
    t1 = rh_now_ns();
    c->ns[3] += t1 - t0;
    t0 = t1;
    if (rc) return rc;
    rc = finish(c, id_checks(c));
    c->ns[4] += rh_now_ns() - t0;
    if (rc) return rc;
  }
  return RH_OK;
}

/* ---------------------------------------------------------------------------------------------- writing */
/* how many of the n sorted rows ix[0], ix[stride], ... are below `limit` (a binary search: usually all are) */
static int64_t sorted_prefix_below(const int64_t *ix, int64_t n, int64_t stride, int64_t limit) {
  if (n == 0 || ix[(n - 1) * stride] < limit) return n;
  int64_t lo = 0, hi = n - 1;  /* ix[hi * stride] >= limit */
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (ix[mid * stride] >= limit) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/* The packed buffer in the model's dtype: int64, or int32 (FuseColumns chose it; every table and id range of the
 * kernel is below 2^31 rows, and layout() refused a packed length above INT32_MAX). The same writers for both
 * (PACKED_WRITERS), as packer.py: float32 bit patterns as int32 (sign-extended into int64), ids as the int64
 * layout holds them, narrowed *saturating* to int32 (every comparison the kernel makes of an id with a value
 * below 2^31 keeps its truth value; a wrapping cast could turn an out-of-range id into a valid row). */
static inline int32_t sat32(int64_t v) { return v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : (int32_t)v; }
static inline int64_t put64(int64_t v) { return v; }

#define PACKED_WRITERS(T, SFX, NARROW)                                                                          \
  static void write_floats_##SFX(const rh_tensor *x, T *dst) {                                                  \
    const int32_t *b = (const int32_t *)x->data;                                                                \
    if (sizeof(T) == 4) memcpy(dst, b, (size_t)x->size * 4);                                                    \
    else for (int64_t i = 0; i < x->size; i++) dst[i] = b[i];                                                   \
  }                                                                                                             \
  static void write_ints_##SFX(const rh_tensor *x, T *dst) {                                                    \
    if (x->dtype == RH_I64 || x->dtype == RH_DEC) {                                                             \
      const int64_t *v = (const int64_t *)x->data;                                                              \
      if (sizeof(T) == 8) memcpy(dst, v, (size_t)x->size * 8);                                                  \
      else for (int64_t i = 0; i < x->size; i++) {                                                              \
        if (!(i & 7)) rh_prefetch_ahead(v + i);                                                                 \
        dst[i] = (T)NARROW(v[i]);                                                                               \
      }                                                                                                         \
    } else if (x->dtype == RH_I32 && sizeof(T) == 4) {                                                          \
      memcpy(dst, x->data, (size_t)x->size * 4);                                                                \
    } else {                                                                                                    \
      for (int64_t i = 0; i < x->size; i++) dst[i] = (T)NARROW(rh_geti(x, i));                                 \
    }                                                                                                           \
  }                                                                                                             \
  /* the header: where each column's data starts, its per-request size (recom_tvm.ops.fused_kernel) */          \
  static void write_header_##SFX(rh_ctx *c, T *packed) {                                                        \
    const rh_program *p = c->prog;                                                                              \
    int64_t nc = p->ncols, pos = 2 * nc + c->hash_words;                                                        \
    for (int k = 0; k < nc; k++) {                                                                              \
      packed[k] = (T)pos;                                                                                       \
      packed[nc + k] = (T)c->col_aux[k];                                                                        \
      pos += c->col_size[k];                                                                                    \
    }                                                                                                           \
    if (!c->hash_words) return;                                                                                 \
    /* the device-hash region (fused_layout): first string and ids position per segment, then the offsets    \
     * (each column writes its strings' own, and their bytes), the bytes' last word and the pad zeroed */      \
    T *r = packed + 2 * nc;                                                                                     \
    int64_t s = 0, S = c->hash_segments, n = c->hash_strings;                                                  \
    for (int k = 0; k < nc; k++) {                                                                              \
      const int32_t *col = &p->col[4 * k];                                                                      \
      if (!(col[0] & COL_HASHED)) continue;                                                                     \
      r[s] = (T)c->col_str0[k];                                                                                 \
      r[S + 1 + s] = (T)((int64_t)packed[k] + ((col[0] & COL_KIND_MASK) == COL_CSR ? c->batch + 1 : 0));        \
      s++;                                                                                                      \
    }                                                                                                           \
    r[S] = (T)n;                                                                                                \
    r[2 * S + 1 + n] = (T)c->hash_bytes;                                                                        \
    T *bytes = r + 2 * S + 2 + n;                                                                               \
    int64_t full = c->hash_bytes / (int64_t)sizeof(T);                                                          \
    memset(bytes + full, 0, (size_t)(c->hash_words - (2 * S + 2 + n) - full) * sizeof(T));                     \
  }                                                                                                             \
  /* a hashed column's strings into the region (offsets, bytes) and its ids' words zeroed (the device's) */     \
  static void write_strings_##SFX(rh_ctx *c, T *packed, int k, const rh_tensor *s, T *ids) {                   \
    int64_t S = c->hash_segments, n = c->hash_strings;                                                          \
    T *off = packed + 2 * (int64_t)c->prog->ncols + 2 * S + 1 + c->col_str0[k];                                 \
    uint8_t *bytes = (uint8_t *)(packed + 2 * (int64_t)c->prog->ncols + 2 * S + 2 + n) + c->col_byte0[k];       \
    int64_t b = c->col_byte0[k];                                                                                \
    if (s->dtype == RH_DEC) {  /* AsString of integers: the int64 values, 8 bytes each (COL_DECIMAL) */         \
      for (int64_t i = 0; i < s->size; i++) off[i] = (T)(b + 8 * i);                                            \
      memcpy(bytes, s->data, (size_t)s->size * 8);                                                              \
    } else {                                                                                                    \
      const int64_t fast_end = c->col_byte1[k] - 16;                                                            \
      for (int64_t i = 0; i < s->size; i++) {                                                                   \
        if (i + 32 < s->size) __builtin_prefetch(s->sp[i + 32]);  /* scattered (Python objects' bytes) */       \
        const uint8_t *src = s->sp[i];                                                                          \
        const int64_t n = s->sl[i];                                                                             \
        off[i] = (T)b;                                                                                          \
        if (n <= 16 && b <= fast_end && ((uintptr_t)src & 4095) <= 4096 - 16)                                   \
          memcpy(bytes, src, 16);  /* 16 bytes whatever the length (no branch on it): the next string's bytes   \
                                    * overwrite the excess, this column's own region holds it, the source page \
                                    * holds the 16 read */                                                      \
        else                                                                                                    \
          rh_copy_bytes(bytes, src, n);                                                                         \
        bytes += n;                                                                                             \
        b += n;                                                                                                 \
      }                                                                                                         \
    }                                                                                                           \
    memset(ids, 0, (size_t)s->size * sizeof(T));                                                                \
  }                                                                                                             \
  /* column k's data: the one place that writes each column kind's layout */                                   \
  static void write_column_##SFX(rh_ctx *c, T *packed, int k) {                                                 \
    const rh_program *p = c->prog;                                                                              \
    int64_t batch = c->batch;                                                                                   \
    const int32_t *col = &p->col[4 * k];                                                                        \
    const int hashed = (col[0] & COL_HASHED) != 0;                                                              \
    T *d = packed + (int64_t)packed[k];                                                                         \
    const rh_tensor *a = &c->t[col[1]];                                                                         \
    switch (col[0] & COL_KIND_MASK) {                                                                           \
      case COL_CSR: {                                                                                           \
        const rh_tensor *ids = &c->t[col[2]];                                                                   \
        int64_t n = a->shape[0], stride = a->shape[1];                                                          \
        d[0] = 0;                                                                                               \
        if (rh_row_end_valid(a, batch)) {                                                                       \
          /* the feed check's row ends (rows past batch not counted: the running max stops at batch) */        \
          const int64_t *e = a->row_end;                                                                        \
          int64_t run = 0;                                                                                      \
          for (int64_t b = 1; b <= batch; b++) {                                                                \
            run = e[b] > run ? e[b] : run;                                                                      \
            d[b] = (T)run;                                                                                      \
          }                                                                                                     \
        } else if (a->rows_ok && a->rows_sorted && a->dtype == RH_I64) {                                        \
          /* sorted rows >= 0: offsets straight from them, without a branch per id (a scan that stops at each  \
           * row's end mispredicts once per row): the last id of row r stores its count at r + 1, then a       \
           * running max fills the empty rows. Rows at or past batch (a dense_shape larger than the batch) are  \
           * a suffix and not counted, as with bincount(rows)[:batch]. */                                       \
          const int64_t *ix = (const int64_t *)a->data;                                                         \
          int64_t m = sorted_prefix_below(ix, n, stride, batch);                                                \
          memset(d, 0, (size_t)(batch + 1) * sizeof(T));                                                        \
          for (int64_t i = 0; i < m; i++) d[ix[i * stride] + 1] = (T)(i + 1);                                   \
          for (int64_t b = 0; b < batch; b++) d[b + 1] = d[b + 1] > d[b] ? d[b + 1] : d[b];                     \
        } else {                                                                                                \
          memset(d, 0, (size_t)(batch + 1) * sizeof(T));                                                        \
          for (int64_t i = 0; i < n; i++) {                                                                     \
            int64_t r = rh_geti(a, i * stride);                                                                 \
            if (r < batch) d[r + 1]++;                                                                          \
          }                                                                                                     \
          for (int64_t b = 0; b < batch; b++) d[b + 1] += d[b];                                                 \
        }                                                                                                       \
        if (hashed) write_strings_##SFX(c, packed, k, ids, d + batch + 1);                                      \
        else write_ints_##SFX(ids, d + batch + 1);                                                              \
        if (col[3] >= 0) write_floats_##SFX(&c->t[col[3]], d + batch + 1 + ids->size);                          \
        break;                                                                                                  \
      }                                                                                                         \
      case COL_DENSE:                                                                                           \
      case COL_ONE:                                                                                             \
        if (hashed) write_strings_##SFX(c, packed, k, a, d);                                                    \
        else write_ints_##SFX(a, d);                                                                            \
        break;                                                                                                  \
      default:                                                                                                  \
        write_floats_##SFX(a, d);                                                                               \
        break;                                                                                                  \
    }                                                                                                           \
  }

PACKED_WRITERS(int64_t, i64, put64)
PACKED_WRITERS(int32_t, i32, sat32)

static void write_header(rh_ctx *c, void *packed) {
  if (c->packed32) write_header_i32(c, (int32_t *)packed);
  else write_header_i64(c, (int64_t *)packed);
}

static void write_column(rh_ctx *c, void *packed, int k) {
  if (c->packed32) write_column_i32(c, (int32_t *)packed, k);
  else write_column_i64(c, (int64_t *)packed, k);
}

static void write_tensor(const rh_tensor *t, int dtype, uint8_t *dst) {  /* layout() checked the dtype */
  memcpy(dst, t->data, (size_t)t->size * rh_itemsize(dtype));
}

typedef struct { rh_ctx *c; uint8_t *dst; void *packed; const int32_t *order; } write_job;

/* rh_write's tasks (columns, then arguments) by their bytes, the largest first: the pool's threads then finish
 * together instead of one writing the last big column alone. Bytes rounded down to a power of two (a counting
 * sort: no comparison sort per request). -> order, or NULL on one thread */
static const int32_t *write_order(rh_ctx *c, int64_t ncol) {
  const rh_program *p = c->prog;
  int64_t n = ncol + p->nargs, count[65] = {0};
  if (n < 3 || !rh_parallel_active()) return NULL;
  uint8_t *cls = (uint8_t *)rh_alloc(RH_ARENA(c), (size_t)n);
  if (!cls) return NULL;
  for (int64_t i = 0; i < n; i++) {
    int64_t bytes;
    if (i < ncol) {
      bytes = c->col_size[i] * (c->packed32 ? 4 : 8);
      if (p->col[4 * i] & COL_HASHED) bytes += c->col_byte1[i] - c->col_byte0[i] + 16 * c->col_size[i];
    } else {
      const int32_t *ar = &p->arg[3 * (i - ncol)];
      bytes = ar[0] == ARG_TENSOR ? c->t[ar[1]].size * (int64_t)rh_itemsize(ar[2]) : 0;
    }
    cls[i] = (uint8_t)(bytes > 0 ? 64 - __builtin_clzll((unsigned long long)bytes) : 0);
    count[64 - cls[i]]++;
  }
  for (int k = 0, at = 0; k < 65; k++) {  /* positions: the largest class first */
    int64_t m = count[k];
    count[k] = at;
    at += (int)m;
  }
  int32_t *order = c->write_order;
  for (int64_t i = 0; i < n; i++) order[count[64 - cls[i]]++] = (int32_t)i;
  return order;
}

static void write_task(void *arg, int64_t i, int worker) {
  (void)worker;
  write_job *w = (write_job *)arg;
  const rh_program *p = w->c->prog;
  if (w->order) i = w->order[i];
  int64_t ncol = w->packed ? p->ncols : 0;
  if (i < ncol) {
    write_column(w->c, w->packed, (int)i);
    return;
  }
  const int32_t *ar = &p->arg[3 * (i - ncol)];
  if (ar[0] == ARG_TENSOR) write_tensor(&w->c->t[ar[1]], ar[2], w->dst + w->c->arg_off[i - ncol]);
}

int rh_write(rh_ctx *c, uint8_t *dst, int64_t capacity) {
  const rh_program *p = c->prog;
  if (c->stage != ST_DONE) return rh_refuse(c, "write before the run finished");
  if (capacity < c->staging_bytes) return rh_refuse(c, "staging buffer too small");
  int64_t t0 = rh_now_ns();
  write_job w = {c, dst, NULL, NULL};
  for (int i = 0; i < p->nargs; i++)
    if (p->arg[3 * i] == ARG_PACKED) w.packed = dst + c->arg_off[i];
  if (w.packed) write_header(c, w.packed);
  int64_t ncol = w.packed ? p->ncols : 0;
  w.order = write_order(c, ncol);
  rh_parallel(write_task, &w, ncol + p->nargs);
  c->ns[5] += rh_now_ns() - t0;
  return RH_OK;
}
