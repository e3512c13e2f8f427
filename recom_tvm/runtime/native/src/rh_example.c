/* ParseExampleV2 natively: serialized tf.Example protos (protobuf wire format) -> the sparse and dense feature
 * tensors, as recom_tvm/runtime/examples.py (TF's semantics) gives them. Strings stay where they are in the request.
 *
 *   Example { Features features = 1; }   Features { map<string, Feature> feature = 1; }
 *   Feature { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
 *   BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1; }  Int64List { repeated int64 ... }
 *
 * Every example is parsed whole (a malformed feature the model does not read is still malformed). What protobuf
 * would merge or resolve by order (a field given twice, a key given twice) is refused: the reference decides. */
#include "rh.h"

typedef struct { const uint8_t *p, *end; } rd;

static int varint(rd *r, uint64_t *out) {
  uint64_t v = 0;
  for (int i = 0; i < 10; i++) {
    if (r->p >= r->end) return 0;
    uint8_t b = *r->p++;
    if (i == 9 && b > 1) return 0;
    v |= (uint64_t)(b & 0x7F) << (7 * i);
    if (!(b & 0x80)) { *out = v; return 1; }
  }
  return 0;
}

static int sub(rd *r, rd *s) {
  uint64_t len;
  if (!varint(r, &len) || len > (uint64_t)(r->end - r->p)) return 0;
  s->p = r->p;
  s->end = r->p + len;
  r->p += len;
  return 1;
}

static int skip(rd *r, int wt) {
  uint64_t v;
  rd s;
  switch (wt) {
    case 0: return varint(r, &v);
    case 1: if (r->end - r->p < 8) return 0; r->p += 8; return 1;
    case 2: return sub(r, &s);
    case 5: if (r->end - r->p < 4) return 0; r->p += 4; return 1;
    default: return 0;  /* groups and invalid wire types: the reference decides */
  }
}

static int tag(rd *r, int *field, int *wt) {
  uint64_t t;
  if (!varint(r, &t) || (t >> 3) == 0 || (t >> 3) > 0x1FFFFFFF) return 0;
  *field = (int)(t >> 3);
  *wt = (int)(t & 7);
  return 1;
}

static int utf8_valid(const uint8_t *s, int64_t n) {
  int64_t i = 0;
  while (i < n) {
    uint8_t b = s[i];
    if (b < 0x80) { i++; continue; }
    int k;
    uint32_t cp;
    if ((b & 0xE0) == 0xC0) { k = 1; cp = b & 0x1F; }
    else if ((b & 0xF0) == 0xE0) { k = 2; cp = b & 0x0F; }
    else if ((b & 0xF8) == 0xF0) { k = 3; cp = b & 0x07; }
    else return 0;
    if (i + k >= n) return 0;  /* needs bytes i + 1 .. i + k */
    for (int j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += k + 1;
  }
  return 1;
}

/* one value list: checks it and counts its values (kind: 1 bytes, 2 float, 3 int64) */
static int scan_list(rd l, int kind, int64_t *count) {
  int64_t n = 0;
  int field, wt;
  while (l.p < l.end) {
    if (!tag(&l, &field, &wt)) return 0;
    if (field != 1) {
      if (!skip(&l, wt)) return 0;
      continue;
    }
    if (kind == 1) {
      rd s;
      if (wt != 2 || !sub(&l, &s)) return 0;
      n++;
    } else if (kind == 2) {
      if (wt == 5) {
        if (l.end - l.p < 4) return 0;
        l.p += 4;
        n++;
      } else if (wt == 2) {
        rd s;
        if (!sub(&l, &s) || (s.end - s.p) % 4) return 0;
        n += (s.end - s.p) / 4;
      } else {
        return 0;
      }
    } else {
      uint64_t v;
      if (wt == 0) {
        if (!varint(&l, &v)) return 0;
        n++;
      } else if (wt == 2) {
        rd s;
        if (!sub(&l, &s)) return 0;
        while (s.p < s.end) {
          if (!varint(&s, &v)) return 0;
          n++;
        }
      } else {
        return 0;
      }
    }
  }
  *count = n;
  return 1;
}

static inline uint32_t quiet_nan(uint32_t bits) {
  /* protobuf hands TF's reference a float as a Python float (double): a signaling NaN comes back quieted */
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x7FFFFFu)) bits |= 0x400000u;
  return bits;
}

/* the values of a list checked by scan_list, written from position `pos` of the output tensor */
static void read_list(rd l, int kind, rh_tensor *out, int64_t pos) {
  int field = 0, wt = 0;
  while (l.p < l.end) {
    tag(&l, &field, &wt);
    if (field != 1) {
      skip(&l, wt);
      continue;
    }
    if (kind == 1) {
      rd s = {NULL, NULL};
      sub(&l, &s);
      out->sp[pos] = s.p;
      out->sl[pos] = s.end - s.p;
      pos++;
    } else if (kind == 2) {
      uint32_t *o = (uint32_t *)out->data;
      if (wt == 5) {
        uint32_t b;
        memcpy(&b, l.p, 4);
        l.p += 4;
        o[pos++] = quiet_nan(b);
      } else {
        rd s = {NULL, NULL};
        sub(&l, &s);
        for (; s.p < s.end; s.p += 4) {
          uint32_t b;
          memcpy(&b, s.p, 4);
          o[pos++] = quiet_nan(b);
        }
      }
    } else {
      int64_t *o = (int64_t *)out->data;
      uint64_t v;
      if (wt == 0) {
        varint(&l, &v);
        o[pos++] = (int64_t)v;
      } else {
        rd s = {NULL, NULL};
        sub(&l, &s);
        while (s.p < s.end) {
          varint(&s, &v);
          o[pos++] = (int64_t)v;
        }
      }
    }
  }
}

typedef struct { const uint8_t *p; int32_t len; int8_t kind; int64_t count; } found;  /* kind 0: absent */

static int64_t key_index(const rh_table *keys, const uint8_t *k, int64_t len) {
  return keys->nkeys ? rh_table_find(keys, k, len) : -1;
}

/* one Feature message: its kind and value list, checked */
static int scan_feature(rd f, int8_t *kind, rd *list, int64_t *count) {
  int field, wt, seen = 0;
  *kind = 0;
  *count = 0;
  while (f.p < f.end) {
    if (!tag(&f, &field, &wt)) return 0;
    if (field >= 1 && field <= 3) {
      if (wt != 2 || seen) return 0;
      seen = 1;
      if (!sub(&f, list)) return 0;
      *kind = (int8_t)field;
      if (!scan_list(*list, field, count)) return 0;
    } else if (!skip(&f, wt)) {
      return 0;
    }
  }
  return 1;
}

static int parse_one(const uint8_t *s, int64_t len, const rh_table *keys, found *row) {
  rd r = {s, s + len};
  int field, wt, seen_features = 0;
  while (r.p < r.end) {
    if (!tag(&r, &field, &wt)) return 0;
    if (field != 1) {
      if (!skip(&r, wt)) return 0;
      continue;
    }
    rd fs;
    if (wt != 2 || seen_features || !sub(&r, &fs)) return 0;
    seen_features = 1;
    while (fs.p < fs.end) {
      int ff, fw;
      if (!tag(&fs, &ff, &fw)) return 0;
      if (ff != 1) {
        if (!skip(&fs, fw)) return 0;
        continue;
      }
      rd entry;
      if (fw != 2 || !sub(&fs, &entry)) return 0;
      rd key = {(const uint8_t *)"", (const uint8_t *)""}, value = {NULL, NULL};
      int have_key = 0, have_value = 0;
      while (entry.p < entry.end) {
        int ef, ew;
        if (!tag(&entry, &ef, &ew)) return 0;
        if (ef == 1 || ef == 2) {
          rd *dst = ef == 1 ? &key : &value;
          int *have = ef == 1 ? &have_key : &have_value;
          if (ew != 2 || *have || !sub(&entry, dst)) return 0;
          *have = 1;
        } else if (!skip(&entry, ew)) {
          return 0;
        }
      }
      if (!utf8_valid(key.p, key.end - key.p)) return 0;
      int8_t kind = 0;
      int64_t count = 0;
      rd list = {NULL, NULL};
      if (have_value && !scan_feature(value, &kind, &list, &count)) return 0;
      int64_t k = key_index(keys, key.p, key.end - key.p);
      if (k < 0) continue;
      if (row[k].p) return 0;  /* the same key twice */
      row[k].p = list.p ? list.p : (const uint8_t *)"";
      row[k].len = (int32_t)(list.end - list.p);
      row[k].kind = kind;
      row[k].count = count;
    }
  }
  return 1;
}

static int kind_of(int dtype) { return dtype == RH_STR ? 1 : dtype == RH_F32 ? 2 : 3; }

int rh_op_parse_example(rh_ctx *c, const rh_op *op) {
  const rh_examples_cfg *cfg = &c->prog->excfg[op->attr[0]];
  const rh_table *keys = &c->prog->tables[op->attr[1]];
  rh_tensor *ser = &c->t[op->in[0]];
  if (ser->raw) {
    int rc = rh_finish_raw(c, ser);
    if (rc) return rc;
  }
  if (ser->dtype != RH_STR) return RH_NEED_OP;
  int64_t batch = ser->size, nk = cfg->nsparse + cfg->ndense;
  found *rows = (found *)rh_alloc(RH_ARENA(c), sizeof(found) * (size_t)(batch * nk + 1));
  if (!rows) return RH_NOMEM;
  memset(rows, 0, sizeof(found) * (size_t)(batch * nk + 1));
  for (int64_t b = 0; b < batch; b++)
    if (!parse_one(ser->sp[b], ser->sl[b], keys, rows + b * nk))
      return rh_refuse(c, "example %lld: not a tf.Example this parser takes", (long long)b);
  for (int64_t i = 0; i < batch * nk; i++) {
    int k = (int)(i % nk);
    if (rows[i].kind && rows[i].kind != kind_of(cfg->dtype[k]))
      return rh_refuse(c, "example %lld: data types don't match", (long long)(i / nk));
  }
  int rc;
  for (int k = 0; k < cfg->nsparse; k++) {
    int64_t total = 0, widest = 0;
    for (int64_t b = 0; b < batch; b++) {
      int64_t n = rows[b * nk + k].count;
      total += n;
      if (n > widest) widest = n;
    }
    rh_tensor *oi = &c->t[op->out[k]], *ov = &c->t[op->out[cfg->nsparse + k]];
    rh_tensor *os = &c->t[op->out[2 * cfg->nsparse + k]];
    int64_t ishape[2] = {total, 2}, vshape[1] = {total}, sshape[1] = {2};
    rc = rh_new_numeric(c, oi, RH_I64, 2, ishape);
    if (!rc) rc = cfg->dtype[k] == RH_STR ? rh_new_strings(c, ov, 1, vshape)
                                          : rh_new_numeric(c, ov, cfg->dtype[k], 1, vshape);
    if (!rc) rc = rh_new_numeric(c, os, RH_I64, 1, sshape);
    if (rc) return rc;
    ((int64_t *)os->data)[0] = batch;
    ((int64_t *)os->data)[1] = batch ? widest : 0;
    int64_t *pi = (int64_t *)oi->data, pos = 0;
    for (int64_t b = 0; b < batch; b++) {
      const found *f = &rows[b * nk + k];
      for (int64_t j = 0; j < f->count; j++) {
        *pi++ = b;
        *pi++ = j;
      }
      if (f->count) {
        rd l = {f->p, f->p + f->len};
        read_list(l, kind_of(cfg->dtype[k]), ov, pos);
      }
      pos += f->count;
    }
  }
  for (int d = 0; d < cfg->ndense; d++) {
    int k = cfg->nsparse + d;
    int64_t size = cfg->dense_size[d];
    int64_t shape[RH_MAXDIM];
    int rank = cfg->dense_rank[d];
    if (rank + 1 > RH_MAXDIM) return RH_NEED_OP;
    shape[0] = batch;
    for (int j = 0; j < rank; j++) shape[j + 1] = cfg->dense_shape[d * RH_MAXDIM + j];
    rh_tensor *o = &c->t[op->out[3 * cfg->nsparse + d]];
    rc = cfg->dtype[k] == RH_STR ? rh_new_strings(c, o, rank + 1, shape)
                                 : rh_new_numeric(c, o, cfg->dtype[k], rank + 1, shape);
    if (rc) return rc;
    const rh_tensor *dflt = &cfg->dense_default[d];
    size_t isz = rh_itemsize(cfg->dtype[k]);
    for (int64_t b = 0; b < batch; b++) {
      const found *f = &rows[b * nk + k];
      if (f->count == 0) {
        if (!dflt->set) return rh_refuse(c, "required feature missing");
        if (dflt->size != size) return rh_refuse(c, "default of the wrong size");
        if (cfg->dtype[k] == RH_STR) {
          memcpy(o->sp + b * size, dflt->sp, (size_t)size * sizeof(void *));
          memcpy(o->sl + b * size, dflt->sl, (size_t)size * sizeof(int64_t));
        } else {
          memcpy((uint8_t *)o->data + b * size * isz, dflt->data, (size_t)size * isz);
        }
        continue;
      }
      if (f->count != size) return rh_refuse(c, "example %lld: wrong number of values", (long long)b);
      rd l = {f->p, f->p + f->len};
      read_list(l, kind_of(cfg->dtype[k]), o, b * size);
    }
  }
  return RH_OK;
}
