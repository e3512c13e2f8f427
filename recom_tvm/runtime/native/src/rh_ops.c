/* The host plan's ops, natively (semantics: recom_tvm/runtime/host_stage.py, which follows TF's kernels).
 * An op returns RH_NEED_OP for inputs it does not take (a dtype or broadcast it does not handle): the caller then
 * runs the numpy implementation of that one op. Bad inputs TF rejects give RH_REFUSE (the reference raises). */
#include "rh.h"

#define T(i) (&c->t[op->in[i]])
#define OUT(i) (&c->t[op->out[i]])

static int strings_of(rh_ctx *c, rh_tensor *x, rh_tensor *tmp, const rh_tensor **out) {
  if (x->raw) {
    int rc = rh_finish_raw(c, x);
    if (rc) return rc;
  }
  if (x->dtype == RH_DEC) {
    int rc = rh_materialize_decimal(c, x, tmp);
    if (rc) return rc;
    *out = tmp;
    return RH_OK;
  }
  if (x->dtype != RH_STR) return RH_NEED_OP;
  *out = x;
  return RH_OK;
}

/* the output shape of an elementwise op whose operands have equal shapes or one element (ndim <= the output's):
 * the broadcasts recom_tvm.frontend.converters.host_ops accepts; 0 for anything else */
static int bshape(rh_tensor **ts, int n, int *ndim, int64_t *shape) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (ts[i]->ndim > ts[best]->ndim || (ts[i]->ndim == ts[best]->ndim && ts[best]->size == 1)) best = i;
  const rh_tensor *b = ts[best];
  for (int i = 0; i < n; i++) {
    const rh_tensor *t = ts[i];
    if (t->size == 1 && t->ndim <= b->ndim) continue;  /* all its dims are 1 */
    if (t->ndim != b->ndim) return 0;
    for (int d = 0; d < t->ndim; d++)
      if (t->shape[d] != b->shape[d]) return 0;
  }
  *ndim = b->ndim;
  memcpy(shape, b->shape, sizeof(int64_t) * RH_MAXDIM);
  return 1;
}

static int int_like(int d) { return d == RH_BOOL || (rh_is_int(d) && d != RH_U64); }

static int op_hash(rh_ctx *c, const rh_op *op) {
  rh_tensor *x = T(0), *y = OUT(0);
  uint64_t nb = (uint64_t)op->attr[0];
  if (nb == 0) return RH_NEED_OP;  /* the importer refuses it; TF would divide by zero */
  if (x->raw) {
    int rc = rh_finish_raw(c, x);
    if (rc) return rc;
  }
  if (x->dtype != RH_STR && x->dtype != RH_DEC) return RH_NEED_OP;
  rh_tensor in = *x;
  int rc = rh_new_numeric(c, y, RH_I64, in.ndim, in.shape);
  if (rc) return rc;
  int64_t *o = (int64_t *)y->data;
  rh_u128 m = rh_fastmod_m(nb);
  if (in.dtype == RH_STR) {
    for (int64_t i = 0; i < in.size; i++) o[i] = (int64_t)rh_fastmod(rh_fingerprint64(in.sp[i], (size_t)in.sl[i]), m, nb);
  } else {
    const int64_t *v = (const int64_t *)in.data;
    char buf[24];
    for (int64_t i = 0; i < in.size; i++) {
      int l = rh_decimal(v[i], buf);
      o[i] = (int64_t)rh_fastmod(rh_fingerprint64((const uint8_t *)buf, (size_t)l), m, nb);
    }
  }
  return RH_OK;
}

static int op_asstring(rh_ctx *c, const rh_op *op) {
  rh_tensor *x = T(0), *y = OUT(0);
  rh_tensor in = *x;
  if (in.dtype == RH_BOOL) {
    int rc = rh_new_strings(c, y, in.ndim, in.shape);
    if (rc) return rc;
    static const uint8_t t[] = "true", f[] = "false";
    for (int64_t i = 0; i < in.size; i++) {
      int v = ((const uint8_t *)in.data)[i] != 0;
      y->sp[i] = v ? t : f;
      y->sl[i] = v ? 4 : 5;
    }
    return RH_OK;
  }
  if (!rh_is_int(in.dtype) || in.dtype == RH_U64) return RH_NEED_OP;
  if (in.dtype == RH_I64) {  /* no copy: the integers are the text */
    *y = in;
    y->dtype = RH_DEC;
    y->pyobj = -1;
    return RH_OK;
  }
  int rc = rh_new_numeric(c, y, RH_I64, in.ndim, in.shape);
  if (rc) return rc;
  for (int64_t i = 0; i < in.size; i++) ((int64_t *)y->data)[i] = rh_geti(&in, i);
  y->dtype = RH_DEC;
  return RH_OK;
}

/* ZerosLike of strings: "" everywhere, x's shape (tf.sparse.from_dense of a string feed compares with it) */
static int op_zeros_like_str(rh_ctx *c, const rh_op *op) {
  rh_tensor in = *T(0), *y = OUT(0);
  if (in.dtype != RH_STR && in.dtype != RH_DEC) return RH_NEED_OP;
  int rc = rh_new_strings(c, y, in.ndim, in.shape);
  if (rc) return rc;
  static const uint8_t empty[1] = {0};
  for (int64_t i = 0; i < in.size; i++) {
    y->sp[i] = empty;
    y->sl[i] = 0;
  }
  return RH_OK;
}

static int op_cast(rh_ctx *c, const rh_op *op) {
  rh_tensor in = *T(0), *y = OUT(0);
  int dst = (int)op->attr[0];
  int src = in.dtype;
  if (src == dst && src != RH_DEC && !in.raw) {
    *y = in;
    return RH_OK;
  }
  if (src == RH_STR || src == RH_DEC || src == RH_F16 || dst == RH_F16 || dst == RH_STR || in.raw) return RH_NEED_OP;
  if (rh_is_float(src) && rh_is_int(dst)) return RH_NEED_OP;  /* numpy's float -> int of NaN / overflow */
  int rc = rh_new_numeric(c, y, dst, in.ndim, in.shape);
  if (rc) return rc;
  for (int64_t i = 0; i < in.size; i++) {
    switch (dst) {
      case RH_BOOL:
        ((uint8_t *)y->data)[i] = rh_is_float(src) ? rh_get_f64(&in, i) != 0.0 : rh_geti(&in, i) != 0;
        break;
      case RH_F32: ((float *)y->data)[i] = (float)rh_get_f64(&in, i); break;
      case RH_F64: ((double *)y->data)[i] = rh_get_f64(&in, i); break;
      case RH_I8: ((int8_t *)y->data)[i] = (int8_t)rh_geti(&in, i); break;
      case RH_I16: ((int16_t *)y->data)[i] = (int16_t)rh_geti(&in, i); break;
      case RH_I32: ((int32_t *)y->data)[i] = (int32_t)rh_geti(&in, i); break;
      case RH_I64: ((int64_t *)y->data)[i] = rh_geti(&in, i); break;
      case RH_U8: ((uint8_t *)y->data)[i] = (uint8_t)rh_geti(&in, i); break;
      case RH_U16: ((uint16_t *)y->data)[i] = (uint16_t)rh_geti(&in, i); break;
      case RH_U32: ((uint32_t *)y->data)[i] = (uint32_t)rh_geti(&in, i); break;
      case RH_U64: ((uint64_t *)y->data)[i] = (uint64_t)rh_geti(&in, i); break;
      default: return RH_NEED_OP;
    }
  }
  return RH_OK;
}

static int op_compare(rh_ctx *c, const rh_op *op, int equal) {
  rh_tensor *a = T(0), *b = T(1), *y = OUT(0), ta, tb;
  rh_tensor *ts[2] = {a, b};
  int ndim;
  int64_t shape[RH_MAXDIM];
  if (!bshape(ts, 2, &ndim, shape)) return RH_NEED_OP;
  int sa = a->raw || a->dtype == RH_STR || a->dtype == RH_DEC, sb = b->raw || b->dtype == RH_STR || b->dtype == RH_DEC;
  if (sa != sb) return RH_NEED_OP;
  int64_t ia = a->size == 1 ? 0 : 1, ib = b->size == 1 ? 0 : 1;
  if (sa) {
    const rh_tensor *xa, *xb;
    int rc = strings_of(c, a, &ta, &xa);
    if (!rc) rc = strings_of(c, b, &tb, &xb);
    if (rc) return rc;
    rc = rh_new_numeric(c, y, RH_BOOL, ndim, shape);
    if (rc) return rc;
    uint8_t *o = (uint8_t *)y->data;
    if (ia && !ib && xb->sl[0] == 0) {  /* x == "" / x != "": the dense-feed pattern, lengths only */
      const int64_t *la = xa->sl;
      for (int64_t i = 0; i < y->size; i++) o[i] = (uint8_t)((la[i] == 0) == equal);
      return RH_OK;
    }
    for (int64_t i = 0; i < y->size; i++) {
      int64_t j = i * ia, k = i * ib;
      o[i] = (uint8_t)(rh_str_eq(xa->sp[j], xa->sl[j], xb->sp[k], xb->sl[k]) == equal);
    }
    return RH_OK;
  }
  int floats = a->dtype == b->dtype && rh_is_float(a->dtype);
  if (!floats && !(int_like(a->dtype) && int_like(b->dtype))) return RH_NEED_OP;
  rh_tensor xa = *a, xb = *b;
  int rc = rh_new_numeric(c, y, RH_BOOL, ndim, shape);
  if (rc) return rc;
  uint8_t *o = (uint8_t *)y->data;
  if (ia && !ib && (xa.dtype == RH_I64 || xa.dtype == RH_I32 || xa.dtype == RH_F32)) {
    /* a tensor against a scalar (x != -1: the dense-feed pattern), in the tensor's type: vectorized */
    if (xa.dtype == RH_F32) {
      const float *v = (const float *)xa.data, s = ((const float *)xb.data)[0];  /* (floats: b is F32 too) */
      for (int64_t i = 0; i < y->size; i++) o[i] = (uint8_t)((v[i] == s) == equal);
    } else if (xa.dtype == RH_I64) {
      const int64_t *v = (const int64_t *)xa.data, s = rh_geti(&xb, 0);
      for (int64_t i = 0; i < y->size; i++) o[i] = (uint8_t)((v[i] == s) == equal);
    } else {
      const int32_t *v = (const int32_t *)xa.data;
      const int64_t s = rh_geti(&xb, 0);
      for (int64_t i = 0; i < y->size; i++) o[i] = (uint8_t)(((int64_t)v[i] == s) == equal);
    }
    return RH_OK;
  }
  for (int64_t i = 0; i < y->size; i++) {
    int eq = floats ? rh_get_f64(&xa, i * ia) == rh_get_f64(&xb, i * ib)
                    : rh_geti(&xa, i * ia) == rh_geti(&xb, i * ib);
    o[i] = (uint8_t)(eq == equal);
  }
  return RH_OK;
}

static int op_where(rh_ctx *c, const rh_op *op) {
  rh_tensor in = *T(0), *y = OUT(0);
  if (in.dtype == RH_STR || in.dtype == RH_DEC || in.raw || in.dtype == RH_F16) return RH_NEED_OP;
  int64_t n = 0;
  size_t isz = rh_itemsize(in.dtype);
  const uint8_t *d = (const uint8_t *)in.data;
  if ((in.dtype == RH_BOOL || isz == 1) && in.ndim == 2) {  /* the dense-feed pattern: Where(NotEqual(x, "")) */
    for (int64_t i = 0; i < in.size; i++) n += d[i] != 0;
    int64_t shape[2] = {n + 1, 2};  /* a spare row: every element is written, the pointer moves on the true ones */
    int rc = rh_new_numeric(c, y, RH_I64, 2, shape);
    if (rc) return rc;
    shape[0] = n;
    rh_set_shape(y, 2, shape);
    int64_t *o = (int64_t *)y->data, cols = in.shape[1], rows = in.shape[0];
    int64_t *end = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)(rows + 1) * 8);  /* the CSR writer's row ends */
    for (int64_t r = 0, i = 0; r < rows; r++) {
      for (int64_t k = 0; k < cols; k++, i++) {  /* no branch: the mask is data (a mispredict per element) */
        o[0] = r;
        o[1] = k;
        o += 2 * (d[i] != 0);
      }
      if (end) end[r + 1] = (o - (int64_t *)y->data) / 2;
    }
    y->rows_ok = y->rows_sorted = 1;  /* row-major: sorted, rows in [0, rows) */
    if (end) rh_set_row_end(y, end, rows, cols, n);
    return RH_OK;
  }
  for (int64_t i = 0; i < in.size; i++) {
    int nz;
    if (in.dtype == RH_BOOL || isz == 1) nz = d[i] != 0;
    else nz = rh_is_float(in.dtype) ? rh_get_f64(&in, i) != 0.0 : rh_geti(&in, i) != 0;
    n += nz;
  }
  int64_t shape[2] = {n, in.ndim};
  int rc = rh_new_numeric(c, y, RH_I64, 2, shape);
  if (rc) return rc;
  int64_t *o = (int64_t *)y->data, idx[RH_MAXDIM] = {0};
  for (int64_t i = 0; i < in.size; i++) {
    int nz;
    if (in.dtype == RH_BOOL || isz == 1) nz = d[i] != 0;
    else nz = rh_is_float(in.dtype) ? rh_get_f64(&in, i) != 0.0 : rh_geti(&in, i) != 0;
    if (nz) {
      for (int k = 0; k < in.ndim; k++) *o++ = idx[k];
    }
    for (int k = in.ndim - 1; k >= 0; k--) {  /* row-major odometer */
      if (++idx[k] < in.shape[k]) break;
      idx[k] = 0;
    }
  }
  return RH_OK;
}

/* out[k] = params[item(k)] for blocks of `inner` elements, any element kind */
static int gather_blocks(rh_ctx *c, const rh_tensor *p, rh_tensor *y, int ndim, const int64_t *shape,
                         const int64_t *src_block, int64_t nblocks, int64_t inner) {
  int rc;
  if (p->dtype == RH_STR) {
    rc = rh_new_strings(c, y, ndim, shape);
    if (rc) return rc;
    if (inner == 1) {
      for (int64_t k = 0; k < nblocks; k++) {
        y->sp[k] = p->sp[src_block[k]];
        y->sl[k] = p->sl[src_block[k]];
      }
      return RH_OK;
    }
    for (int64_t k = 0; k < nblocks; k++) {
      memcpy(y->sp + k * inner, p->sp + src_block[k] * inner, (size_t)inner * sizeof(void *));
      memcpy(y->sl + k * inner, p->sl + src_block[k] * inner, (size_t)inner * sizeof(int64_t));
    }
    return RH_OK;
  }
  rc = rh_new_numeric(c, y, p->dtype, ndim, shape);
  if (rc) return rc;
  size_t bs = (size_t)inner * rh_itemsize(p->dtype);
  if (bs == 8) {
    for (int64_t k = 0; k < nblocks; k++) ((uint64_t *)y->data)[k] = ((const uint64_t *)p->data)[src_block[k]];
    return RH_OK;
  }
  for (int64_t k = 0; k < nblocks; k++)
    memcpy((uint8_t *)y->data + k * bs, (const uint8_t *)p->data + src_block[k] * bs, bs);
  return RH_OK;
}

static int index_tensor(const rh_tensor *t) { return t->dtype == RH_I64 || t->dtype == RH_I32; }

static int op_gather_nd(rh_ctx *c, const rh_op *op) {
  rh_tensor *pp = T(0), *ii = T(1), *y = OUT(0);
  if (pp->raw) {
    int rc = rh_finish_raw(c, pp);
    if (rc) return rc;
  }
  rh_tensor p = *pp, idx = *ii;
  if (!index_tensor(&idx) || idx.ndim < 1 || p.dtype == RH_F16) return RH_NEED_OP;
  int64_t depth = idx.shape[idx.ndim - 1];
  if (depth < 1 || depth > p.ndim) return RH_NEED_OP;
  int64_t n = idx.size / depth, inner = 1;
  for (int d = (int)depth; d < p.ndim; d++) inner *= p.shape[d];
  int64_t shape[RH_MAXDIM];
  int ndim = 0;
  for (int d = 0; d < idx.ndim - 1; d++) shape[ndim++] = idx.shape[d];
  for (int d = (int)depth; d < p.ndim; d++) {
    if (ndim >= RH_MAXDIM) return RH_NEED_OP;
    shape[ndim++] = p.shape[d];
  }
  if (depth == 2 && p.ndim == 2 && idx.dtype == RH_I64 && (p.dtype == RH_STR || rh_itemsize(p.dtype) == 8)) {
    /* elements at (row, column) pairs: Where's output on a dense feed, one pass (no bounds pass where the pairs
     * are Where's or a checked feed's, of a shape within p's) */
    const int64_t *ix = (const int64_t *)idx.data;
    const uint64_t d0 = (uint64_t)p.shape[0], d1 = (uint64_t)p.shape[1];
    if (!(rh_row_end_current(&idx) && (uint64_t)idx.row_end_rows <= d0 && (uint64_t)idx.row_end_cols <= d1)) {
      int bad = 0;
      for (int64_t k = 0; k < n; k++) bad |= ((uint64_t)ix[2 * k] >= d0) | ((uint64_t)ix[2 * k + 1] >= d1);
      if (bad) return rh_refuse(c, "GatherNd index out of bounds");
    }
    if (p.dtype != RH_STR) {
      int rc = rh_new_numeric(c, y, p.dtype, ndim, shape);
      if (rc) return rc;
      const uint64_t *v = (const uint64_t *)p.data;
      uint64_t *o = (uint64_t *)y->data;
      for (int64_t k = 0; k < n; k++) o[k] = v[ix[2 * k] * (int64_t)d1 + ix[2 * k + 1]];
      return RH_OK;
    }
    int rc = rh_new_strings(c, y, ndim, shape);
    if (rc) return rc;
    for (int64_t k = 0; k < n; k++) {
      int64_t flat = ix[2 * k] * (int64_t)d1 + ix[2 * k + 1];
      y->sp[k] = p.sp[flat];
      y->sl[k] = p.sl[flat];
    }
    return RH_OK;
  }
  int64_t *src = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)(n ? n : 1) * sizeof(int64_t));
  if (!src) return RH_NOMEM;
  for (int64_t k = 0; k < n; k++) {
    int64_t flat = 0;
    for (int64_t j = 0; j < depth; j++) {
      int64_t v = rh_geti(&idx, k * depth + j);
      if (v < 0 || v >= p.shape[j]) return rh_refuse(c, "GatherNd index out of bounds");
      flat = flat * p.shape[j] + v;
    }
    src[k] = flat;
  }
  return gather_blocks(c, &p, y, ndim, shape, src, n, inner);
}

static int op_gather(rh_ctx *c, const rh_op *op) {
  rh_tensor *pp = T(0), *ii = T(1), *ax = T(2), *y = OUT(0);
  if (pp->raw) {
    int rc = rh_finish_raw(c, pp);
    if (rc) return rc;
  }
  rh_tensor p = *pp, idx = *ii;
  if (!index_tensor(&idx) || ax->size != 1 || !int_like(ax->dtype) || p.dtype == RH_F16) return RH_NEED_OP;
  int64_t axis = rh_geti(ax, 0);
  if (axis < 0) axis += p.ndim;
  if (axis < 0 || axis >= p.ndim) return RH_NEED_OP;
  int64_t outer = 1, inner = 1, dim = p.shape[axis];
  for (int d = 0; d < axis; d++) outer *= p.shape[d];
  for (int d = (int)axis + 1; d < p.ndim; d++) inner *= p.shape[d];
  int ndim = 0;
  int64_t shape[RH_MAXDIM];
  if (p.ndim - 1 + idx.ndim > RH_MAXDIM) return RH_NEED_OP;
  for (int d = 0; d < axis; d++) shape[ndim++] = p.shape[d];
  for (int d = 0; d < idx.ndim; d++) shape[ndim++] = idx.shape[d];
  for (int d = (int)axis + 1; d < p.ndim; d++) shape[ndim++] = p.shape[d];
  for (int64_t k = 0; k < idx.size; k++) {
    int64_t v = rh_geti(&idx, k);
    if (v < 0 || v >= dim) return rh_refuse(c, "GatherV2 index out of range");
  }
  int64_t nb = outer * idx.size;
  int64_t *src = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)(nb ? nb : 1) * sizeof(int64_t));
  if (!src) return RH_NOMEM;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t k = 0; k < idx.size; k++) src[o * idx.size + k] = o * dim + rh_geti(&idx, k);
  return gather_blocks(c, &p, y, ndim, shape, src, nb, inner);
}

static int op_reshape(rh_ctx *c, const rh_op *op) {
  rh_tensor *x = T(0), *s = T(1), *y = OUT(0);
  if (!int_like(s->dtype) || s->ndim > 1 || s->size > RH_MAXDIM) return RH_NEED_OP;
  int64_t shape[RH_MAXDIM], known = 1;
  int neg = -1;
  for (int64_t i = 0; i < s->size; i++) {
    shape[i] = rh_geti(s, i);
    if (shape[i] == -1) {
      if (neg >= 0) return rh_refuse(c, "Reshape with two -1 dims");
      neg = (int)i;
    } else if (shape[i] < 0) {
      return rh_refuse(c, "Reshape to a negative dim");
    } else {
      known *= shape[i];
    }
  }
  if (neg >= 0) {
    if (known == 0 || x->size % known) return rh_refuse(c, "Reshape: sizes do not match");
    shape[neg] = x->size / known;
  } else if (known != x->size) {
    return rh_refuse(c, "Reshape: sizes do not match");
  }
  rh_tensor in = *x;
  *y = in;
  rh_set_shape(y, (int)s->size, shape);
  if (in.raw) { /* keep the raw form: same elements */ }
  y->pyobj = -1;
  return RH_OK;
}

static int op_expand_dims(rh_ctx *c, const rh_op *op) {
  rh_tensor *x = T(0), *a = T(1), *y = OUT(0);
  if (!int_like(a->dtype) || a->size != 1 || x->ndim + 1 > RH_MAXDIM) return RH_NEED_OP;
  int64_t axis = rh_geti(a, 0);
  if (axis < -(x->ndim + 1) || axis > x->ndim) return rh_refuse(c, "ExpandDims axis out of range");
  if (axis < 0) axis += x->ndim + 1;
  int64_t shape[RH_MAXDIM];
  int n = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (d == axis) shape[n++] = 1;
    shape[n++] = x->shape[d];
  }
  if (axis == x->ndim) shape[n++] = 1;
  rh_tensor in = *x;
  *y = in;
  rh_set_shape(y, n, shape);
  y->pyobj = -1;
  return RH_OK;
}

static int op_lookup(rh_ctx *c, const rh_op *op) {
  const rh_table *tb = &c->prog->tables[op->attr[0]];
  rh_tensor tmp;
  const rh_tensor *x;
  int rc = strings_of(c, T(0), &tmp, &x);
  if (rc) return rc;
  rh_tensor in = *x, *y = OUT(0);
  rc = rh_new_numeric(c, y, tb->vdtype, in.ndim, in.shape);
  if (rc) return rc;
  size_t isz = rh_itemsize(tb->vdtype);
  uint8_t dflt[8];
  switch (tb->vdtype) {
    case RH_I64: { int64_t v = tb->default_i; memcpy(dflt, &v, 8); break; }
    case RH_I32: { int32_t v = (int32_t)tb->default_i; memcpy(dflt, &v, 4); break; }
    case RH_F32: { float v = (float)tb->default_f; memcpy(dflt, &v, 4); break; }
    case RH_F64: { double v = tb->default_f; memcpy(dflt, &v, 8); break; }
    default: return RH_NEED_OP;
  }
  for (int64_t i = 0; i < in.size; i++) {
    int64_t k = rh_table_find(tb, in.sp[i], in.sl[i]);
    memcpy((uint8_t *)y->data + i * isz, k >= 0 ? (const uint8_t *)tb->values + k * isz : dflt, isz);
  }
  return RH_OK;
}

static int op_validate_sparse(rh_ctx *c, const rh_op *op) {
  rh_tensor *x = T(0), *y = OUT(0);
  if (x->ndim == 2 && x->shape[0] > 1) {
    if (!int_like(x->dtype)) return RH_NEED_OP;
    int64_t n = x->shape[0], k = x->shape[1];
    for (int64_t i = 1; i < n; i++) {
      int order = 0;  /* -1 out of order, 0 repeated, 1 increasing */
      for (int64_t j = 0; j < k; j++) {
        int64_t a = rh_geti(x, (i - 1) * k + j), b = rh_geti(x, i * k + j);
        if (a != b) { order = b > a ? 1 : -1; break; }
      }
      if (order <= 0) return rh_refuse(c, "SparseToDense indices repeated or out of order");
    }
  }
  rh_tensor in = *x;
  *y = in;
  return RH_OK;
}

static int arith_dtype(int d) { return d == RH_I64 || d == RH_I32 || d == RH_F32 || d == RH_F64; }

static int op_add(rh_ctx *c, const rh_op *op) {
  rh_tensor *a = T(0), *b = T(1), *y = OUT(0);
  rh_tensor *ts[2] = {a, b};
  int ndim;
  int64_t shape[RH_MAXDIM];
  if (a->dtype != b->dtype || !arith_dtype(a->dtype) || !bshape(ts, 2, &ndim, shape)) return RH_NEED_OP;
  rh_tensor xa = *a, xb = *b;
  int rc = rh_new_numeric(c, y, xa.dtype, ndim, shape);
  if (rc) return rc;
  int64_t ia = xa.size == 1 ? 0 : 1, ib = xb.size == 1 ? 0 : 1;
  for (int64_t i = 0; i < y->size; i++) {
    switch (xa.dtype) {
      case RH_I64:
        ((int64_t *)y->data)[i] = (int64_t)((uint64_t)((int64_t *)xa.data)[i * ia] + (uint64_t)((int64_t *)xb.data)[i * ib]);
        break;
      case RH_I32:
        ((int32_t *)y->data)[i] = (int32_t)((uint32_t)((int32_t *)xa.data)[i * ia] + (uint32_t)((int32_t *)xb.data)[i * ib]);
        break;
      case RH_F32: ((float *)y->data)[i] = ((float *)xa.data)[i * ia] + ((float *)xb.data)[i * ib]; break;
      default: ((double *)y->data)[i] = ((double *)xa.data)[i * ia] + ((double *)xb.data)[i * ib]; break;
    }
  }
  return RH_OK;
}

static int op_select(rh_ctx *c, const rh_op *op) {
  rh_tensor *cc = T(0), *a = T(1), *b = T(2), *y = OUT(0);
  rh_tensor *ts[3] = {cc, a, b};
  int ndim;
  int64_t shape[RH_MAXDIM];
  if (cc->dtype != RH_BOOL || a->dtype != b->dtype || a->raw || b->raw || a->dtype == RH_DEC ||
      !bshape(ts, 3, &ndim, shape))
    return RH_NEED_OP;
  rh_tensor xc = *cc, xa = *a, xb = *b;
  int64_t ic = xc.size == 1 ? 0 : 1, ia = xa.size == 1 ? 0 : 1, ib = xb.size == 1 ? 0 : 1;
  const uint8_t *cd = (const uint8_t *)xc.data;
  int rc;
  if (xa.dtype == RH_STR) {
    rc = rh_new_strings(c, y, ndim, shape);
    if (rc) return rc;
    for (int64_t i = 0; i < y->size; i++) {
      const rh_tensor *s = cd[i * ic] ? &xa : &xb;
      int64_t j = i * (s == &xa ? ia : ib);
      y->sp[i] = s->sp[j];
      y->sl[i] = s->sl[j];
    }
    return RH_OK;
  }
  size_t isz = rh_itemsize(xa.dtype);
  if (!isz) return RH_NEED_OP;
  rc = rh_new_numeric(c, y, xa.dtype, ndim, shape);
  if (rc) return rc;
  for (int64_t i = 0; i < y->size; i++) {
    const uint8_t *src = cd[i * ic] ? (const uint8_t *)xa.data + i * ia * isz : (const uint8_t *)xb.data + i * ib * isz;
    memcpy((uint8_t *)y->data + i * isz, src, isz);
  }
  return RH_OK;
}

int rh_exec_op(rh_ctx *c, const rh_op *op) {
  for (int i = 0; i < op->nin; i++)
    if (!c->t[op->in[i]].set) return rh_refuse(c, "host op input %d not computed", i);
  switch (op->code) {
    case OP_HASH: return op_hash(c, op);
    case OP_ASSTRING: return op_asstring(c, op);
    case OP_IDENTITY: { rh_tensor in = *T(0); *OUT(0) = in; return RH_OK; }
    case OP_CAST: return op_cast(c, op);
    case OP_EQUAL: return op_compare(c, op, 1);
    case OP_NOTEQUAL: return op_compare(c, op, 0);
    case OP_WHERE: return op_where(c, op);
    case OP_GATHERND: return op_gather_nd(c, op);
    case OP_GATHERV2: return op_gather(c, op);
    case OP_RESHAPE: return op_reshape(c, op);
    case OP_EXPANDDIMS: return op_expand_dims(c, op);
    case OP_LOOKUP: return op_lookup(c, op);
    case OP_VALIDATE_SPARSE: return op_validate_sparse(c, op);
    case OP_SPARSECROSS: return rh_op_sparse_cross(c, op);
    case OP_PARSE_EXAMPLE: return rh_op_parse_example(c, op);
    case OP_ADD: return op_add(c, op);
    case OP_SELECT: return op_select(c, op);
    case OP_ZEROS_LIKE_STR: return op_zeros_like_str(c, op);
    default: return RH_NEED_OP;
  }
}

/* ---------------------------------------------------------------------------------------------- tables */
int rh_table_build(rh_table *t, rh_arena *a) {
  int64_t cap = 16;
  while (cap < 2 * t->nkeys + 16) cap <<= 1;
  t->cap = cap;
  t->slot_of = (int64_t *)rh_alloc(a, (size_t)cap * sizeof(int64_t));
  if (!t->slot_of) return RH_NOMEM;
  for (int64_t i = 0; i < cap; i++) t->slot_of[i] = -1;
  for (int64_t k = 0; k < t->nkeys; k++) {
    if (rh_table_find(t, t->kp[k], t->kl[k]) >= 0) continue;  /* duplicate key: the first one wins */
    uint64_t h = rh_fingerprint64(t->kp[k], (size_t)t->kl[k]) & (uint64_t)(cap - 1);
    while (t->slot_of[h] >= 0) h = (h + 1) & (uint64_t)(cap - 1);
    t->slot_of[h] = k;
  }
  return RH_OK;
}

int64_t rh_table_find(const rh_table *t, const uint8_t *s, int64_t len) {
  uint64_t h = rh_fingerprint64(s, (size_t)len) & (uint64_t)(t->cap - 1);
  for (;;) {
    int64_t k = t->slot_of[h];
    if (k < 0) return -1;
    if (rh_str_eq(t->kp[k], t->kl[k], s, len)) return k;
    h = (h + 1) & (uint64_t)(t->cap - 1);
  }
}
