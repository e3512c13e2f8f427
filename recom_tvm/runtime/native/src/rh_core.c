/* Arena, dtypes and string helpers of the native host stage. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rh.h"

/* ---------------------------------------------------------------------------------------------- arena */
#define ALIGN 64

void *rh_alloc(rh_arena *a, size_t bytes) {
  bytes = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (bytes == 0) bytes = ALIGN;
  rh_chunk *h = a->head;
  if (!h || h->used + bytes > h->size) {
    size_t size = bytes + ALIGN;
    size_t want = a->total < (1u << 20) ? (1u << 20) : a->total;  /* grow geometrically */
    if (size < want) size = want;
    rh_chunk *n = (rh_chunk *)malloc(sizeof(rh_chunk) + size + ALIGN);
    if (!n) return NULL;
    n->size = size;
    n->used = 0;
    n->next = h;
    a->head = h = n;
    a->total += size;
  }
  uintptr_t base = ((uintptr_t)(h + 1) + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
  void *p = (void *)(base + h->used);
  h->used += bytes;
  return p;
}

void rh_arena_reset(rh_arena *a) {
  /* keep one chunk as large as everything the last request needed */
  rh_chunk *h = a->head;
  if (!h) return;
  if (h->next) {
    size_t total = a->total;
    while (h) { rh_chunk *n = h->next; free(h); h = n; }
    a->head = NULL;
    a->total = 0;
    rh_chunk *n = (rh_chunk *)malloc(sizeof(rh_chunk) + total + ALIGN);
    if (!n) return;
    n->size = total;
    n->used = 0;
    n->next = NULL;
    a->head = n;
    a->total = total;
    return;
  }
  if (h->size > ((size_t)64 << 20) && h->used < h->size / 8) {  /* after one huge request: give it back */
    free(h);
    a->head = NULL;
    a->total = 0;
    return;
  }
  h->used = 0;
}

void rh_arena_free(rh_arena *a) {
  rh_chunk *h = a->head;
  while (h) { rh_chunk *n = h->next; free(h); h = n; }
  a->head = NULL;
  a->total = 0;
}

/* ---------------------------------------------------------------------------------------------- dtypes */
size_t rh_itemsize(int dtype) {
  switch (dtype) {
    case RH_BOOL: case RH_I8: case RH_U8: return 1;
    case RH_I16: case RH_U16: case RH_F16: return 2;
    case RH_I32: case RH_U32: case RH_F32: return 4;
    case RH_I64: case RH_U64: case RH_F64: case RH_DEC: return 8;
    default: return 0;
  }
}

int rh_is_int(int d) { return d >= RH_I8 && d <= RH_U64; }
int rh_is_float(int d) { return d == RH_F32 || d == RH_F64; }

int64_t rh_get_i64(const rh_tensor *t, int64_t i) {
  switch (t->dtype) {
    case RH_BOOL: return ((const uint8_t *)t->data)[i] != 0;
    case RH_I8: return ((const int8_t *)t->data)[i];
    case RH_I16: return ((const int16_t *)t->data)[i];
    case RH_I32: return ((const int32_t *)t->data)[i];
    case RH_I64: case RH_DEC: return ((const int64_t *)t->data)[i];
    case RH_U8: return ((const uint8_t *)t->data)[i];
    case RH_U16: return ((const uint16_t *)t->data)[i];
    case RH_U32: return ((const uint32_t *)t->data)[i];
    case RH_U64: return (int64_t)((const uint64_t *)t->data)[i];
    case RH_F32: return (int64_t)((const float *)t->data)[i];
    case RH_F64: return (int64_t)((const double *)t->data)[i];
    default: return 0;
  }
}

double rh_get_f64(const rh_tensor *t, int64_t i) {
  switch (t->dtype) {
    case RH_F32: return ((const float *)t->data)[i];
    case RH_F64: return ((const double *)t->data)[i];
    case RH_U64: return (double)((const uint64_t *)t->data)[i];
    default: return (double)rh_get_i64(t, i);
  }
}

void rh_set_shape(rh_tensor *t, int ndim, const int64_t *shape) {
  t->ndim = ndim;
  t->size = 1;
  for (int i = 0; i < ndim; i++) {
    t->shape[i] = shape[i];
    t->size *= shape[i];
  }
}

int rh_refuse(rh_ctx *c, const char *fmt, ...) {
  if (atomic_exchange(&c->msg_taken, 1) == 0) {  /* the first reason wins (tasks may refuse at once) */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
  }
  return RH_REFUSE;
}

int64_t rh_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int rh_new_numeric(rh_ctx *c, rh_tensor *t, int dtype, int ndim, const int64_t *shape) {
  rh_tensor_clear(t);
  t->dtype = dtype;
  rh_set_shape(t, ndim, shape);
  t->data = rh_alloc(RH_ARENA(c), (size_t)t->size * rh_itemsize(dtype));
  t->set = 1;
  return t->data ? RH_OK : RH_NOMEM;
}

int rh_new_strings(rh_ctx *c, rh_tensor *t, int ndim, const int64_t *shape) {
  rh_tensor_clear(t);
  t->dtype = RH_STR;
  rh_set_shape(t, ndim, shape);
  t->sp = (const uint8_t **)rh_alloc(RH_ARENA(c), (size_t)t->size * sizeof(void *));
  t->sl = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)t->size * sizeof(int64_t));
  t->set = 1;
  return t->sp && t->sl ? RH_OK : RH_NOMEM;
}

/* ---------------------------------------------------------------------------------------------- strings */
int rh_str_eq(const uint8_t *a, int64_t la, const uint8_t *b, int64_t lb) {
  return la == lb && (la == 0 || memcmp(a, b, (size_t)la) == 0);
}

/* numpy 'S' (fixed width, a string ends after its last non-NUL byte) and 'U' (UCS4 code points, the same for
 * NUL code points; encoded to UTF-8 as recom_tvm.runtime.strings.encode_utf8 does) as per-element strings. */
int rh_finish_raw(rh_ctx *c, rh_tensor *t) {
  int64_t n = t->size, w = t->raw_width;
  const uint8_t *base = (const uint8_t *)t->data;
  const uint8_t **sp = (const uint8_t **)rh_alloc(RH_ARENA(c), (size_t)n * sizeof(void *));
  int64_t *sl = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)n * sizeof(int64_t));
  if (!sp || !sl) return RH_NOMEM;
  if (t->raw == RAW_FIXED) {
    for (int64_t i = 0; i < n; i++) {
      const uint8_t *s = base + i * w;
      int64_t l = w;
      while (l > 0 && s[l - 1] == 0) l--;
      sp[i] = s;
      sl[i] = l;
    }
  } else {
    const uint32_t *cp = (const uint32_t *)t->data;
    int64_t bytes = 0;
    for (int64_t i = 0; i < n * w; i++) {
      uint32_t u = cp[i];
      if (u >= 0xD800 && u <= 0xDFFF) return rh_refuse(c, "lone surrogate in a unicode feed");
      if (u > 0x10FFFF) return rh_refuse(c, "code point above U+10FFFF in a unicode feed");
      bytes += u < 0x80 ? 1 : u < 0x800 ? 2 : u < 0x10000 ? 3 : 4;
    }
    uint8_t *out = (uint8_t *)rh_alloc(RH_ARENA(c), (size_t)bytes + 1);
    if (!out) return RH_NOMEM;
    uint8_t *o = out;
    for (int64_t i = 0; i < n; i++) {
      const uint32_t *s = cp + i * w;
      int64_t l = w;
      while (l > 0 && s[l - 1] == 0) l--;
      sp[i] = o;
      for (int64_t j = 0; j < l; j++) {
        uint32_t u = s[j];
        if (u < 0x80) {
          *o++ = (uint8_t)u;
        } else if (u < 0x800) {
          *o++ = (uint8_t)(0xC0 | (u >> 6));
          *o++ = (uint8_t)(0x80 | (u & 0x3F));
        } else if (u < 0x10000) {
          *o++ = (uint8_t)(0xE0 | (u >> 12));
          *o++ = (uint8_t)(0x80 | ((u >> 6) & 0x3F));
          *o++ = (uint8_t)(0x80 | (u & 0x3F));
        } else {
          *o++ = (uint8_t)(0xF0 | (u >> 18));
          *o++ = (uint8_t)(0x80 | ((u >> 12) & 0x3F));
          *o++ = (uint8_t)(0x80 | ((u >> 6) & 0x3F));
          *o++ = (uint8_t)(0x80 | (u & 0x3F));
        }
      }
      sl[i] = o - sp[i];
    }
  }
  t->sp = sp;
  t->sl = sl;
  t->dtype = RH_STR;
  t->raw = RAW_NONE;
  return RH_OK;
}

int rh_materialize_decimal(rh_ctx *c, const rh_tensor *in, rh_tensor *out) {
  int rc = rh_new_strings(c, out, in->ndim, in->shape);
  if (rc) return rc;
  char *buf = (char *)rh_alloc(RH_ARENA(c), (size_t)in->size * 20 + 1);
  if (!buf) return RH_NOMEM;
  const int64_t *v = (const int64_t *)in->data;
  char *o = buf;
  for (int64_t i = 0; i < in->size; i++) {
    int l = rh_decimal(v[i], o);
    out->sp[i] = (const uint8_t *)o;
    out->sl[i] = l;
    o += l;
  }
  return RH_OK;
}
