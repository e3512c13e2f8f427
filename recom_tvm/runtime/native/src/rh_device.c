/* The device part of a request in the same GIL-free stretch as its host stage (issue 15, item 6).
 *
 * Python threads scale only as far as each request's GIL hand-offs allow: on the H100 host, 8 Python threads doing
 * one CUDA-graph replay and one stream sync per request (two GIL round trips) served fewer requests than one thread,
 * while 8 pthreads doing the same scaled 3.5-4.2x (benchmarks/native/launch_scaling.cu, 2026-12-06). So once the
 * host stage has laid out the staging buffer, this file does the rest without returning to Python: the copy to the
 * device, the module's arguments as tensors, the VM's `main` through tvm-ffi's C ABI, the outputs back into one host
 * buffer, one synchronisation.
 *
 * tvm-ffi's C ABI (tvm/ffi/c_api.h, stable): an Any is {int32 type index, 4 bytes, 8-byte value}; an object starts
 * with a 24-byte header, after which a Tensor holds its DLTensor and an Array its sequence cell {data, size, ...}
 * of Anys. Entry points come by address (rh_api), so the library needs neither libtvm_ffi nor libcuda to load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rh.h"

/* DLPack type code per rh dtype: bool 6, signed 0, unsigned 1, float 2 */
const uint8_t RH_DL_CODE[RH_NDTYPES] = {0, 6, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 0, 0};

enum { FFI_NONE = 0, FFI_INT = 1, FFI_STATIC_OBJECT = 64, FFI_SHAPE = 69, FFI_TENSOR = 70, FFI_ARRAY = 71 };
enum { DL_CPU = 1, DL_CUDA = 2, DL_CUDA_HOST = 3 };
#define OBJECT_HEADER 24 /* sizeof(TVMFFIObject): ref counts, type index, padding, deleter */
#define OUT_ALIGN 256

typedef struct {
  int32_t type_index;
  uint32_t zero_padding;
  union { int64_t i; double f; void *p; } v;
} ffi_any;
typedef struct { void *data; int64_t size; } ffi_seq;           /* TVMFFISeqCell's leading fields */
typedef struct { const char *data; size_t size; } ffi_bytes;     /* TVMFFIByteArray */
typedef struct { ffi_bytes kind, message; } ffi_error;          /* TVMFFIErrorCell's leading fields */

static inline void *cell(void *obj) { return (char *)obj + OBJECT_HEADER; }

static int fail(rh_device *d, int code, const char *what, int err) {
  snprintf(d->msg, sizeof d->msg, "%s failed (error %d)", what, err);
  return code;
}

static void free_managed(dl_managed *m) { free(m); }

/* main's argument i: a tensor at its offset in the staging buffer (on the device), or a shape */
static int make_argument(rh_device *d, const rh_ctx *c, int i, uint64_t base, ffi_any *out) {
  const int64_t *dims = c->arg_shape + (size_t)i * RH_MAXDIM;
  int nd = c->arg_ndim[i];
  if (c->arg_off[i] < 0) {
    ffi_any ints[RH_MAXDIM];
    for (int k = 0; k < nd; k++) ints[k] = (ffi_any){FFI_INT, 0, {.i = dims[k]}};
    *out = (ffi_any){FFI_NONE, 0, {.i = 0}};
    return d->api.call(d->shape_fn, ints, nd, out) ? fail(d, RH_DEV_ERROR, "ffi.Shape", 0) : 0;
  }
  int dtype = c->prog->arg[3 * i + 2];
  dl_managed *m = (dl_managed *)calloc(1, sizeof(dl_managed));
  if (!m) return fail(d, RH_DEV_ERROR, "allocating an argument", 0);
  memcpy(m->shape, dims, sizeof(int64_t) * (size_t)nd);
  m->t.data = (void *)(uintptr_t)(base + (uint64_t)c->arg_off[i]);
  m->t.device = (dl_device){d->dev_type, d->dev_id};
  m->t.ndim = nd;
  m->t.dtype = (dl_dtype){RH_DL_CODE[dtype], (uint8_t)(8 * rh_itemsize(dtype)), 1};
  m->t.shape = m->shape;
  m->deleter = free_managed;
  void *obj = NULL;
  int err = d->api.from_dlpack(m, 0, 0, &obj);
  if (err) return fail(d, RH_DEV_ERROR, "TVMFFITensorFromDLPack", err);
  *out = (ffi_any){FFI_TENSOR, 0, {.p = obj}};
  return 0;
}

static void release(rh_device *d, ffi_any *v) {
  if (v->type_index >= FFI_STATIC_OBJECT && v->v.p) d->api.decref(v->v.p);
  v->type_index = FFI_NONE;
  v->v.p = NULL;
}

/* main's outputs: a tensor, or an array of nout tensors; with keeps, the first of (outputs, storages) */
static int outputs_of(rh_device *d, ffi_any *result, void **tensors) {
  ffi_any *outs = result;
  if (d->keeps) {
    ffi_seq *s = result->type_index == FFI_ARRAY ? (ffi_seq *)cell(result->v.p) : NULL;
    if (!s || s->size != 2) return fail(d, RH_DEV_UNSUPPORTED, "main's (outputs, storages)", result->type_index);
    outs = (ffi_any *)s->data;
  }
  if (d->nout == 1 && outs->type_index == FFI_TENSOR) {
    tensors[0] = outs->v.p;
    return 0;
  }
  ffi_seq *s = outs->type_index == FFI_ARRAY ? (ffi_seq *)cell(outs->v.p) : NULL;
  if (!s || s->size != d->nout) return fail(d, RH_DEV_UNSUPPORTED, "main's outputs", outs->type_index);
  for (int k = 0; k < d->nout; k++) {
    ffi_any *item = (ffi_any *)s->data + k;
    if (item->type_index != FFI_TENSOR) return fail(d, RH_DEV_UNSUPPORTED, "an output that is not a tensor", k);
    tensors[k] = item->v.p;
  }
  return 0;
}

/* lay the outputs out in out_buf (offsets, dtypes, shapes); grow it where needed */
static int plan_outputs(rh_device *d, void **tensors) {
  size_t total = 0;
  for (int k = 0; k < d->nout; k++) {
    const dl_tensor *t = (const dl_tensor *)cell(tensors[k]);
    if (t->ndim > RH_MAXDIM || t->dtype.lanes != 1 || t->dtype.bits % 8)
      return fail(d, RH_DEV_UNSUPPORTED, "an output's rank or dtype", k);
    if (t->device.device_type != DL_CPU && t->device.device_type != DL_CUDA && t->device.device_type != DL_CUDA_HOST)
      return fail(d, RH_DEV_UNSUPPORTED, "an output's device", t->device.device_type);
    int64_t n = 1, expect = 1;
    for (int a = t->ndim - 1; a >= 0; a--) {  /* compact row-major only */
      if (t->strides && t->shape[a] != 1 && t->strides[a] != expect)
        return fail(d, RH_DEV_UNSUPPORTED, "a strided output", k);
      expect *= t->shape[a];
      n *= t->shape[a];
      d->out_shape[k][a] = t->shape[a];
    }
    d->out_ndim[k] = t->ndim;
    d->out_dtype[k] = t->dtype;
    d->out_off[k] = total;
    d->out_bytes[k] = (size_t)n * (t->dtype.bits / 8);
    total += (d->out_bytes[k] + OUT_ALIGN - 1) / OUT_ALIGN * OUT_ALIGN;
  }
  if (total > d->out_cap) {
    size_t cap = total > 2 * d->out_cap ? total : 2 * d->out_cap;
    cap = cap < 65536 ? 65536 : cap;
    void *p = NULL;
    if (d->out_buf) d->out_pinned ? (void)d->api.host_free(d->out_buf) : free(d->out_buf);
    d->out_buf = NULL;
    d->out_cap = 0;
    d->out_pinned = d->api.host_alloc != NULL && d->dev_type == DL_CUDA;
    if (d->out_pinned) {
      int err = d->api.host_alloc(&p, cap, 0);
      if (err) return fail(d, RH_DEV_CUDA, "cuMemHostAlloc", err);
    } else if (!(p = malloc(cap))) {
      return fail(d, RH_DEV_ERROR, "allocating the output buffer", 0);
    }
    d->out_buf = (uint8_t *)p;
    d->out_cap = cap;
  }
  d->out_n = d->nout;
  return 0;
}

int rh_device_call(rh_device *d, rh_ctx *c, uint8_t *host, uint64_t dev, int64_t nbytes) {
  rh_api *a = &d->api;
  const int cuda = d->dev_type == DL_CUDA;
  const int nargs = c->prog->nargs, total = nargs + d->nparams;
  ffi_any stack[64], *args = total <= 64 ? stack : (ffi_any *)calloc((size_t)total, sizeof(ffi_any));
  ffi_any result = {FFI_NONE, 0, {.i = 0}};
  void *tensors[RH_MAXOUT];
  int rc = 0, err, made = 0;
  d->out_n = 0;
  d->msg[0] = 0;
  if (!args) return fail(d, RH_DEV_ERROR, "allocating the arguments", 0);
  if (cuda) {
    if ((err = a->ctx_set_current(d->cu_ctx))) {
      rc = fail(d, RH_DEV_CUDA, "cuCtxSetCurrent", err);
      goto done;
    }
    if (nbytes && (err = a->h2d(dev, host, (size_t)nbytes, d->stream))) {
      rc = fail(d, RH_DEV_CUDA, "cuMemcpyHtoDAsync", err);
      goto done;
    }
  }
  for (; made < nargs; made++)
    if ((rc = make_argument(d, c, made, cuda ? dev : (uint64_t)(uintptr_t)host, &args[made]))) goto done;
  for (int k = 0; k < d->nparams; k++) args[nargs + k] = (ffi_any){FFI_TENSOR, 0, {.p = d->params[k]}};
  void *prev = NULL;
  if (cuda) a->set_stream(DL_CUDA, d->dev_id, d->stream, &prev);
  err = a->call(d->main_fn, args, total, &result);
  if (cuda) a->set_stream(DL_CUDA, d->dev_id, prev, NULL);
  if (err) {
    void *e = NULL;
    a->error_move(&e);
    if (e) {
      const ffi_error *ec = (const ffi_error *)cell(e);
      snprintf(d->msg, sizeof d->msg, "%.*s: %.*s", (int)ec->kind.size, ec->kind.data,
               (int)(ec->message.size < 200 ? ec->message.size : 200), ec->message.data);
      a->decref(e);
    }
    rc = RH_DEV_ERROR;
    goto done;
  }
  if ((rc = outputs_of(d, &result, tensors)) || (rc = plan_outputs(d, tensors))) goto done;
  for (int k = 0; k < d->nout; k++) {
    const dl_tensor *t = (const dl_tensor *)cell(tensors[k]);
    if (cuda && t->device.device_type == DL_CUDA && d->out_bytes[k] &&
        (err = a->d2h(d->out_buf + d->out_off[k], (uint64_t)(uintptr_t)t->data + t->byte_offset, d->out_bytes[k],
                      d->stream))) {
      rc = fail(d, RH_DEV_CUDA, "cuMemcpyDtoHAsync", err);
      goto done;
    }
  }
  /* the host stage's tensors and arenas are cleared while the device works (main's arguments are made: only the
   * layout, which a clear keeps, was read), instead of after the synchronisation */
  if (cuda) rh_ctx_clear(c);
done:
  /* what was queued ends before the request's memory (its storages, the staging buffer) can be reused */
  if (cuda && (err = a->sync(d->stream)) && !rc) rc = fail(d, RH_DEV_CUDA, "cuStreamSynchronize", err);
  if (!rc)
    for (int k = 0; k < d->nout; k++) {
      const dl_tensor *t = (const dl_tensor *)cell(tensors[k]);
      if (t->device.device_type != DL_CUDA && d->out_bytes[k])
        memcpy(d->out_buf + d->out_off[k], (const uint8_t *)t->data + t->byte_offset, d->out_bytes[k]);
    }
  if (rc) d->out_n = 0;
  release(d, &result);  /* the outputs and, with keeps, the storages go back to the pool */
  for (int k = 0; k < made; k++) release(d, &args[k]);
  if (args != stack) free(args);
  return rc;
}

void rh_device_free(rh_device *d) {
  if (!d) return;
  if (d->dev_type == DL_CUDA && d->api.ctx_set_current) d->api.ctx_set_current(d->cu_ctx);
  if (d->out_buf) d->out_pinned ? (void)d->api.host_free(d->out_buf) : free(d->out_buf);
  if (d->main_fn) d->api.decref(d->main_fn);
  if (d->shape_fn) d->api.decref(d->shape_fn);
  for (int k = 0; k < d->nparams; k++)
    if (d->params[k]) d->api.decref(d->params[k]);
  free(d->params);
  free(d);
}
