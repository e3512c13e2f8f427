/* TF's SparseCross in hashed mode (crossed_column), as recom_tvm/runtime/cross.py states it: columns in the op's
 * order (sparse inputs, then dense), per row the cartesian product of the columns' values in odometer order (the
 * last column fastest), h = FingerprintCat64(h, feature) from h = hash_key, id = h mod num_buckets (mod 2^63 - 1
 * when num_buckets is 0); a sparse input's walk stops at the first entry whose row is out of range or goes back. */
#include "rh.h"

typedef struct {
  int64_t *count, *start;  /* per row */
  uint64_t *feat;          /* per value */
  int64_t nvalues;
} cross_col;

static int feature_hashes(rh_ctx *c, rh_tensor *v, cross_col *col) {
  if (v->raw) {
    int rc = rh_finish_raw(c, v);
    if (rc) return rc;
  }
  col->nvalues = v->size;
  col->feat = (uint64_t *)rh_alloc(RH_ARENA(c), (size_t)(v->size ? v->size : 1) * 8);
  if (!col->feat) return RH_NOMEM;
  if (v->dtype == RH_STR) {
    for (int64_t i = 0; i < v->size; i++) col->feat[i] = rh_fingerprint64(v->sp[i], (size_t)v->sl[i]);
  } else if (v->dtype == RH_DEC) {
    char buf[24];
    for (int64_t i = 0; i < v->size; i++) {
      int l = rh_decimal(((const int64_t *)v->data)[i], buf);
      col->feat[i] = rh_fingerprint64((const uint8_t *)buf, (size_t)l);
    }
  } else if (rh_is_int(v->dtype) || v->dtype == RH_BOOL) {
    for (int64_t i = 0; i < v->size; i++) col->feat[i] = (uint64_t)rh_geti(v, i);
  } else {
    return RH_NEED_OP;
  }
  return RH_OK;
}

int rh_op_sparse_cross(rh_ctx *c, const rh_op *op) {
  int n = (int)op->attr[0];
  uint64_t nb = (uint64_t)op->attr[1], key = (uint64_t)op->attr[2];
  int nd = op->nin - 3 * n, ncol = n + nd;
  if (nd < 0) return RH_NEED_OP;
  int64_t batch;
  if (n > 0) {
    const rh_tensor *s = &c->t[op->in[2 * n]];
    if (s->size < 1 || !(rh_is_int(s->dtype))) return rh_refuse(c, "SparseCross: bad dense_shape");
    batch = rh_geti(s, 0);
  } else if (nd > 0) {
    const rh_tensor *d = &c->t[op->in[0]];
    if (d->ndim < 1) return rh_refuse(c, "SparseCross: dense input without a batch dim");
    batch = d->shape[0];
  } else {
    batch = 0;
  }
  if (batch < 0 || batch > c->max_batch) return rh_refuse(c, "SparseCross: batch %lld", (long long)batch);
  /* every input must have that batch (TF's "Expected batch size"): the reference raises it */
  for (int i = 0; i < n; i++) {
    const rh_tensor *s = &c->t[op->in[2 * n + i]];
    if (s->size < 1 || !rh_is_int(s->dtype) || rh_geti(s, 0) != batch)
      return rh_refuse(c, "SparseCross: input %d's batch", i);
  }
  for (int i = 0; i < nd; i++) {
    const rh_tensor *d = &c->t[op->in[3 * n + i]];
    if ((d->ndim < 1 ? 1 : d->shape[0]) != batch) return rh_refuse(c, "SparseCross: dense input %d's batch", i);
  }
  cross_col *cols = (cross_col *)rh_alloc(RH_ARENA(c), sizeof(cross_col) * (size_t)(ncol ? ncol : 1));
  if (!cols) return RH_NOMEM;
  for (int i = 0; i < ncol; i++) {
    cross_col *col = &cols[i];
    col->count = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)(batch + 1) * 8);
    col->start = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)(batch + 1) * 8);
    if (!col->count || !col->start) return RH_NOMEM;
    memset(col->count, 0, (size_t)(batch + 1) * 8);
    rh_tensor *vals = &c->t[op->in[i < n ? n + i : 3 * n + (i - n)]];
    int rc = feature_hashes(c, vals, col);
    if (rc) return rc;
    if (i < n) {
      const rh_tensor *idx = &c->t[op->in[i]];
      if (!rh_is_int(idx->dtype) || idx->size % 2) return RH_NEED_OP;
      if (idx->size && !(idx->ndim == 2 && idx->shape[1] == 2)) return RH_NEED_OP;
      int64_t nrows = idx->size / 2, prev = -1;
      for (int64_t k = 0; k < nrows; k++) {
        int64_t r = rh_geti(idx, 2 * k);
        if (r < 0 || r >= batch || r < prev) break;
        col->count[r]++;
        prev = r;
      }
    } else {
      int64_t k = vals->ndim == 2 ? vals->shape[1] : 1;
      for (int64_t b = 0; b < batch; b++) col->count[b] = k;
    }
    int64_t s = 0;
    for (int64_t b = 0; b < batch; b++) {
      col->start[b] = i < n ? s : b * (vals->ndim == 2 ? vals->shape[1] : 1);
      s += col->count[b];
      if (col->start[b] + col->count[b] > col->nvalues) return rh_refuse(c, "SparseCross: fewer values than entries");
    }
  }
  int64_t total = 0, widest = 0;
  int64_t *per_row = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)(batch + 1) * 8);
  if (!per_row) return RH_NOMEM;
  for (int64_t b = 0; b < batch; b++) {
    int64_t p = ncol ? 1 : 0;
    for (int i = 0; i < ncol; i++) p *= cols[i].count[b];
    per_row[b] = p;
    total += p;
    if (p > widest) widest = p;
    if (total > c->max_elements) return rh_refuse(c, "SparseCross: too many crosses");
  }
  rh_tensor *oi = &c->t[op->out[0]], *ov = &c->t[op->out[1]], *os = &c->t[op->out[2]];
  int64_t ishape[2] = {total, 2}, vshape[1] = {total}, sshape[1] = {2};
  int rc = rh_new_numeric(c, oi, RH_I64, 2, ishape);
  if (!rc) rc = rh_new_numeric(c, ov, RH_I64, 1, vshape);
  if (!rc) rc = rh_new_numeric(c, os, RH_I64, 1, sshape);
  if (rc) return rc;
  ((int64_t *)os->data)[0] = batch;
  ((int64_t *)os->data)[1] = batch && total ? widest : 0;
  const uint64_t mod = nb > 0 ? nb : 0x7FFFFFFFFFFFFFFFULL;
  const rh_u128 mm = rh_fastmod_m(mod);
  int64_t *pi = (int64_t *)oi->data, *pv = (int64_t *)ov->data;
  int64_t digit[64];
  if (ncol > 64) return RH_NEED_OP;
  for (int64_t b = 0; b < batch; b++) {
    if (!per_row[b]) continue;
    for (int i = 0; i < ncol; i++) digit[i] = 0;
    for (int64_t k = 0; k < per_row[b]; k++) {
      uint64_t h = key;
      for (int i = 0; i < ncol; i++) h = rh_fingerprint_cat64(h, cols[i].feat[cols[i].start[b] + digit[i]]);
      *pi++ = b;
      *pi++ = k;
      *pv++ = (int64_t)rh_fastmod(h, mm, mod);
      for (int i = ncol - 1; i >= 0; i--) {  /* the last column is the fastest digit */
        if (++digit[i] < cols[i].count[b]) break;
        digit[i] = 0;
      }
    }
  }
  return RH_OK;
}
