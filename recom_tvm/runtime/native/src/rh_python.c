/* The Python side of the native host stage: the `recom_tvm_host` extension module, on CPython's stable ABI
 * (Py_LIMITED_API 3.11: one binary for every CPython >= 3.11, so a library built on the build host loads on a
 * serving host with another Python). No numpy C API: arrays are read through their ABI-stable leading fields,
 * checked once per dtype against the buffer protocol (which reads every other array).
 *
 * Per request, with the GIL: the feeds dict itself (one reference) and, where the request is not in the usual form
 * (see ingest_unlocked), its keys and one buffer per feed tensor. Everything else (the dict's entries when every key
 * is the same object as the last request's at its position and every feed an exact numpy array, the elements of
 * object arrays of str when they are compact ASCII, checks, sorting, hashing, binding, packing) runs with the GIL
 * released. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rh.h"

/* ------------------------------------------------------------------------------------------- program */
typedef struct {
  rh_program p;
  rh_arena arena;
  PyObject *names;   /* tuple: feature names (str), looked up in the feeds dict */
  PyObject *index;   /* dict: feature name -> its index */
  PyObject *ndarray; /* numpy.ndarray: feeds of exactly this type are read in place */
} prog_state;

/* an object array of strings whose elements are read after the feeds, outside the GIL (strings_outside_gil) */
typedef struct {
  int32_t slot, feature, part;
  PyObject *const *items;
  PyObject *obj;     /* the feed part (borrowed: the feeds dict holds it during the call) */
  int64_t n, slow;   /* elements; those left to read with the GIL (not exactly a compact ASCII str) */
} deferred_strings;

typedef struct {
  rh_ctx *c;
  PyObject *prog;    /* the program capsule */
  PyObject **kept;   /* objects whose memory the request's tensors point into (a reference each) */
  int nkept, capkept;
  PyObject **lent;   /* feed arrays read without the GIL: borrowed, the feeds dict (in `kept`) holds them */
  int nlent, caplent;
  int unlocked_skip, unlocked_misses; /* requests left before ingest_unlocked is tried again; its misses in a row */
  long long unlocked_hits, unlocked_tries; /* requests read by ingest_unlocked; requests it was tried on */
  PyObject **key_obj; /* nfeat: the last feeds dict's keys in its order (references), and their features */
  int32_t *key_feat;
  Py_buffer *bufs;
  int nbufs, capbufs;
  deferred_strings *defer;
  int ndefer, capdefer;
  int32_t cur_feature, cur_part; /* the feed part being ingested by run() (-1: read strings at once) */
  PyObject *cur_obj;
  /* arm(): the request's device part runs right after its host stage, in the same GIL-free stretch */
  PyObject *serve_dev, *serve_pairs;
  unsigned long long serve_host, serve_addr;
  long long serve_cap;
  /* guard(): a model with CUDA graphs runs an armed device part only for the capture keys (a batch: argument
   * guard_arg's dim guard_axis) its VM has captured; another key leaves the request to Python (a capture runs
   * alone: runtime/capture_gate.py). guard_arg < 0: no guard. Kept across requests. */
  int32_t guard_arg, guard_axis;
  int64_t *guard_keys, guard_n;
} ctx_state;

static void *palloc(prog_state *ps, size_t n) { return rh_alloc(&ps->arena, n ? n : 1); }

/* an int64 numpy array (or anything with an 'l' / 'q' buffer) -> a copy in the program's arena */
static int64_t *i64_array(prog_state *ps, PyObject *o, Py_ssize_t *n) {
  Py_buffer v;
  if (PyObject_GetBuffer(o, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
  const char *f = v.format ? v.format : "B";
  if (*f == '<' || *f == '=' || *f == '@') f++;
  if (v.itemsize != 8 || !(*f == 'l' || *f == 'q')) {
    PyBuffer_Release(&v);
    PyErr_SetString(PyExc_TypeError, "expected an int64 array");
    return NULL;
  }
  *n = v.len / 8;
  int64_t *out = (int64_t *)palloc(ps, (size_t)v.len);
  if (out) memcpy(out, v.buf, (size_t)v.len);
  PyBuffer_Release(&v);
  if (!out) PyErr_NoMemory();
  return out;
}

static int32_t *i32_from(prog_state *ps, PyObject *o, Py_ssize_t *n) {
  int64_t *a = i64_array(ps, o, n);
  if (!a) return NULL;
  int32_t *out = (int32_t *)palloc(ps, (size_t)*n * 4);
  for (Py_ssize_t i = 0; i < *n; i++) out[i] = (int32_t)a[i];
  return out;
}

static int64_t item_i64(PyObject *seq, Py_ssize_t i) {
  PyObject *o = PySequence_GetItem(seq, i);
  if (!o) return -1;
  int64_t v = PyLong_AsLongLong(o);
  Py_DECREF(o);
  return v;
}

static double item_f64(PyObject *seq, Py_ssize_t i) {
  PyObject *o = PySequence_GetItem(seq, i);
  if (!o) return -1;
  double v = PyFloat_AsDouble(o);
  Py_DECREF(o);
  return v;
}

/* a list of bytes -> pointers and lengths into one copy */
static int bytes_list(prog_state *ps, PyObject *list, const uint8_t ***kp, int64_t **kl, Py_ssize_t *n) {
  Py_ssize_t m = PySequence_Size(list);
  if (m < 0) return -1;
  *n = m;
  *kp = (const uint8_t **)palloc(ps, (size_t)m * sizeof(void *));
  *kl = (int64_t *)palloc(ps, (size_t)m * 8);
  for (Py_ssize_t i = 0; i < m; i++) {
    PyObject *b = PySequence_GetItem(list, i);
    char *s;
    Py_ssize_t l;
    if (!b || PyBytes_AsStringAndSize(b, &s, &l) < 0) {
      Py_XDECREF(b);
      return -1;
    }
    uint8_t *copy = (uint8_t *)palloc(ps, (size_t)l + 1);
    memcpy(copy, s, (size_t)l);
    (*kp)[i] = copy;
    (*kl)[i] = l;
    Py_DECREF(b);
  }
  return 0;
}

/* a constant or default: numpy array (numeric) or list of bytes (strings) with its dtype code and shape */
static int const_tensor(prog_state *ps, int dtype, PyObject *shape, PyObject *payload, rh_tensor *t) {
  rh_tensor_clear(t);
  t->dtype = dtype;
  Py_ssize_t nd = PySequence_Size(shape);
  if (nd < 0 || nd > RH_MAXDIM) return -1;
  int64_t dims[RH_MAXDIM];
  for (Py_ssize_t i = 0; i < nd; i++) dims[i] = item_i64(shape, i);
  rh_set_shape(t, (int)nd, dims);
  if (dtype == RH_STR) {
    Py_ssize_t n;
    const uint8_t **kp;
    int64_t *kl;
    if (bytes_list(ps, payload, &kp, &kl, &n) < 0) return -1;
    if (n != t->size) {
      PyErr_SetString(PyExc_ValueError, "string constant: size does not match its shape");
      return -1;
    }
    t->sp = kp;
    t->sl = kl;
  } else {
    Py_buffer v;
    if (PyObject_GetBuffer(payload, &v, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if ((size_t)v.len != (size_t)t->size * rh_itemsize(dtype)) {
      PyBuffer_Release(&v);
      PyErr_SetString(PyExc_ValueError, "constant: size does not match its shape and dtype");
      return -1;
    }
    t->data = palloc(ps, (size_t)v.len);
    memcpy(t->data, v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
  }
  t->set = 1;
  return 0;
}

static void prog_free(PyObject *cap) {
  prog_state *ps = (prog_state *)PyCapsule_GetPointer(cap, "recom_tvm_host.program");
  if (!ps) return;
  Py_XDECREF(ps->names);
  Py_XDECREF(ps->index);
  Py_XDECREF(ps->ndarray);
  rh_arena_free(&ps->arena);
  free(ps);
}

#define GET(i) PyTuple_GetItem(args, i)

/* program_new(names, ndarray, nslots, slot_rank, slot_dims, slot_dtype, feat_kind, feat_nparts, feat_part_slot,
 *             sorts, ops, idcheck, sources, nsym, pairs, batch_sym, cols, args, tables,
 *             excfgs, consts): see recom_tvm/runtime/native/program.py */
static PyObject *program_new(PyObject *self, PyObject *args) {
  (void)self;
  if (!PyTuple_Check(args) || PyTuple_Size(args) != 21) {
    PyErr_SetString(PyExc_TypeError, "program_new takes 21 arguments");
    return NULL;
  }
  prog_state *ps = (prog_state *)calloc(1, sizeof(prog_state));
  if (!ps) return PyErr_NoMemory();
  rh_program *p = &ps->p;
  PyObject *cap = PyCapsule_New(ps, "recom_tvm_host.program", prog_free);
  if (!cap) {
    free(ps);
    return NULL;
  }
  ps->names = GET(0);
  Py_INCREF(ps->names);
  ps->ndarray = GET(1);
  Py_INCREF(ps->ndarray);
  Py_ssize_t n, m;
  p->nslots = (int32_t)PyLong_AsLong(GET(2));
  p->slot_rank = i32_from(ps, GET(3), &n);
  if (!p->slot_rank) goto fail;
  p->slot_dims = i64_array(ps, GET(4), &n);
  if (!p->slot_dims) goto fail;
  p->slot_dtype = i32_from(ps, GET(5), &n);
  if (!p->slot_dtype) goto fail;
  p->feat_kind = i32_from(ps, GET(6), &n);
  if (!p->feat_kind) goto fail;
  p->nfeat = (int32_t)n;
  if (PyTuple_Size(ps->names) != p->nfeat || !(ps->index = PyDict_New())) goto fail;
  for (int f = 0; f < p->nfeat; f++) {
    PyObject *i = PyLong_FromLong(f);
    int bad = !i || PyDict_SetItem(ps->index, PyTuple_GetItem(ps->names, f), i) < 0;
    Py_XDECREF(i);
    if (bad) goto fail;
  }
  p->feat_nparts = i32_from(ps, GET(7), &n);
  p->feat_part_slot = i32_from(ps, GET(8), &n);
  if (!p->feat_nparts || !p->feat_part_slot) goto fail;
  /* sorts */
  PyObject *sorts = GET(9);
  p->nsort = (int32_t)PySequence_Size(sorts);
  p->sort = (int32_t **)palloc(ps, sizeof(int32_t *) * (size_t)p->nsort);
  for (int i = 0; i < p->nsort; i++) {
    PyObject *o = PySequence_GetItem(sorts, i);
    p->sort[i] = o ? i32_from(ps, o, &n) : NULL;
    Py_XDECREF(o);
    if (!p->sort[i]) goto fail;
  }
  /* ops: (code, node, in, out, attr) */
  PyObject *ops = GET(10);
  p->nops = (int32_t)PySequence_Size(ops);
  p->ops = (rh_op *)palloc(ps, sizeof(rh_op) * (size_t)p->nops);
  for (int i = 0; i < p->nops; i++) {
    PyObject *o = PySequence_GetItem(ops, i);
    if (!o) goto fail;
    rh_op *op = &p->ops[i];
    op->code = (int32_t)item_i64(o, 0);
    op->node = (int32_t)item_i64(o, 1);
    PyObject *a = PySequence_GetItem(o, 2), *b = PySequence_GetItem(o, 3), *at = PySequence_GetItem(o, 4);
    Py_DECREF(o);
    if (!a || !b || !at) {
      Py_XDECREF(a); Py_XDECREF(b); Py_XDECREF(at);
      goto fail;
    }
    op->in = i32_from(ps, a, &n);
    op->nin = (int32_t)n;
    op->out = i32_from(ps, b, &n);
    op->nout = (int32_t)n;
    op->attr = i64_array(ps, at, &n);
    op->nattr = (int32_t)n;
    Py_DECREF(a); Py_DECREF(b); Py_DECREF(at);
    if (!op->in || !op->out || !op->attr) goto fail;
  }
  p->idcheck = i64_array(ps, GET(11), &n);
  if (!p->idcheck) goto fail;
  p->nidcheck = (int32_t)(n / 5);
  /* binder sources: (slot, isvalue, kinds, dims, axis) */
  PyObject *srcs = GET(12);
  p->nsrc = (int32_t)PySequence_Size(srcs);
  p->src_slot = (int32_t *)palloc(ps, 4 * (size_t)p->nsrc);
  p->src_isvalue = (int32_t *)palloc(ps, 4 * (size_t)p->nsrc);
  p->src_rank = (int32_t *)palloc(ps, 4 * (size_t)p->nsrc);
  p->src_dims = (int64_t **)palloc(ps, sizeof(void *) * (size_t)p->nsrc);
  p->src_dimkind = (int32_t **)palloc(ps, sizeof(void *) * (size_t)p->nsrc);
  p->src_axis = (int32_t *)palloc(ps, 4 * (size_t)p->nsrc);
  for (int i = 0; i < p->nsrc; i++) {
    PyObject *o = PySequence_GetItem(srcs, i);
    if (!o) goto fail;
    p->src_slot[i] = (int32_t)item_i64(o, 0);
    p->src_isvalue[i] = (int32_t)item_i64(o, 1);
    p->src_axis[i] = (int32_t)item_i64(o, 4);
    PyObject *k = PySequence_GetItem(o, 2), *d = PySequence_GetItem(o, 3);
    Py_DECREF(o);
    if (!k || !d) {
      Py_XDECREF(k); Py_XDECREF(d);
      goto fail;
    }
    p->src_dimkind[i] = i32_from(ps, k, &n);
    p->src_rank[i] = (int32_t)n;
    p->src_dims[i] = i64_array(ps, d, &m);
    Py_DECREF(k); Py_DECREF(d);
    if (!p->src_dimkind[i] || !p->src_dims[i] || m != n) goto fail;
  }
  p->nsym = (int32_t)PyLong_AsLong(GET(13));
  p->pairs = i32_from(ps, GET(14), &n);
  if (!p->pairs) goto fail;
  p->npairs = (int32_t)(n / 2);
  p->batch_sym = (int32_t)PyLong_AsLong(GET(15));
  p->col = i32_from(ps, GET(16), &n);
  if (!p->col) goto fail;
  p->ncols = (int32_t)(n / 4);
  p->arg = i32_from(ps, GET(17), &n);
  if (!p->arg) goto fail;
  p->nargs = (int32_t)(n / 3);
  for (int i = 0; i < p->nargs; i++)  /* the packed input: int64, or int32 (ids narrowed saturating) */
    if (p->arg[3 * i] == ARG_PACKED && p->arg[3 * i + 2] != RH_I64 && p->arg[3 * i + 2] != RH_I32) {
      PyErr_SetString(PyExc_ValueError, "the packed input must be int64 or int32");
      goto fail;
    }
  /* tables: (keys, values, vdtype, default_i, default_f) */
  PyObject *tables = GET(18);
  p->ntables = (int32_t)PySequence_Size(tables);
  p->tables = (rh_table *)palloc(ps, sizeof(rh_table) * (size_t)p->ntables);
  memset(p->tables, 0, sizeof(rh_table) * (size_t)p->ntables);
  for (int i = 0; i < p->ntables; i++) {
    PyObject *o = PySequence_GetItem(tables, i);
    if (!o) goto fail;
    rh_table *t = &p->tables[i];
    PyObject *keys = PySequence_GetItem(o, 0), *vals = PySequence_GetItem(o, 1);
    t->vdtype = (int32_t)item_i64(o, 2);
    t->default_i = item_i64(o, 3);
    t->default_f = item_f64(o, 4);
    Py_DECREF(o);
    if (!keys || !vals) {
      Py_XDECREF(keys); Py_XDECREF(vals);
      goto fail;
    }
    Py_ssize_t nk;
    int bad = bytes_list(ps, keys, &t->kp, &t->kl, &nk) < 0;
    t->nkeys = nk;
    Py_DECREF(keys);
    if (!bad) {
      Py_buffer v;
      if (PyObject_GetBuffer(vals, &v, PyBUF_C_CONTIGUOUS) < 0) {
        bad = 1;
      } else {
        if ((size_t)v.len != (size_t)nk * rh_itemsize(t->vdtype)) {
          PyErr_SetString(PyExc_ValueError, "table values do not match its keys");
          bad = 1;
        } else {
          t->values = palloc(ps, (size_t)v.len);
          memcpy(t->values, v.buf, (size_t)v.len);
        }
        PyBuffer_Release(&v);
      }
    }
    Py_DECREF(vals);
    if (bad || PyErr_Occurred() || rh_table_build(t, &ps->arena)) goto fail;
  }
  /* tf.Example configurations: (keys, dtypes, nsparse, dense_rank, dense_shape, dense_size, defaults) */
  PyObject *ex = GET(19);
  p->nexcfg = (int32_t)PySequence_Size(ex);
  p->excfg = (rh_examples_cfg *)palloc(ps, sizeof(rh_examples_cfg) * (size_t)p->nexcfg);
  for (int i = 0; i < p->nexcfg; i++) {
    PyObject *o = PySequence_GetItem(ex, i);
    if (!o) goto fail;
    rh_examples_cfg *cfg = &p->excfg[i];
    PyObject *keys = PySequence_GetItem(o, 0), *dt = PySequence_GetItem(o, 1), *dr = PySequence_GetItem(o, 3);
    PyObject *dsh = PySequence_GetItem(o, 4), *dsz = PySequence_GetItem(o, 5), *dfl = PySequence_GetItem(o, 6);
    cfg->nsparse = (int32_t)item_i64(o, 2);
    Py_DECREF(o);
    int bad = !keys || !dt || !dr || !dsh || !dsz || !dfl;
    Py_ssize_t nk = 0;
    if (!bad) bad = bytes_list(ps, keys, &cfg->key, &cfg->keylen, &nk) < 0;
    if (!bad) {
      cfg->dtype = i32_from(ps, dt, &n);
      cfg->dense_rank = i32_from(ps, dr, &n);
      cfg->ndense = (int32_t)n;
      cfg->dense_shape = i64_array(ps, dsh, &n);
      cfg->dense_size = i64_array(ps, dsz, &n);
      bad = !cfg->dtype || !cfg->dense_rank || !cfg->dense_shape || !cfg->dense_size;
    }
    if (!bad) {
      cfg->dense_default = (rh_tensor *)palloc(ps, sizeof(rh_tensor) * (size_t)(cfg->ndense ? cfg->ndense : 1));
      for (int d = 0; d < cfg->ndense && !bad; d++) {
        PyObject *df = PySequence_GetItem(dfl, d);
        if (!df) { bad = 1; break; }
        memset(&cfg->dense_default[d], 0, sizeof(rh_tensor));
        if (df != Py_None) {
          PyObject *dflat = PySequence_GetItem(df, 0), *dshape = PySequence_GetItem(df, 1);
          bad = !dflat || !dshape ||
                const_tensor(ps, cfg->dtype[cfg->nsparse + d], dshape, dflat, &cfg->dense_default[d]) < 0;
          Py_XDECREF(dflat); Py_XDECREF(dshape);
        }
        Py_DECREF(df);
      }
    }
    Py_XDECREF(keys); Py_XDECREF(dt); Py_XDECREF(dr); Py_XDECREF(dsh); Py_XDECREF(dsz); Py_XDECREF(dfl);
    if (bad) goto fail;
  }
  /* constants: (slot, dtype, shape, payload) */
  PyObject *consts = GET(20);
  p->consts = (rh_tensor *)palloc(ps, sizeof(rh_tensor) * (size_t)(p->nslots ? p->nslots : 1));
  memset(p->consts, 0, sizeof(rh_tensor) * (size_t)(p->nslots ? p->nslots : 1));
  Py_ssize_t nc = PySequence_Size(consts);
  for (Py_ssize_t i = 0; i < nc; i++) {
    PyObject *o = PySequence_GetItem(consts, i);
    if (!o) goto fail;
    int slot = (int)item_i64(o, 0), dtype = (int)item_i64(o, 1);
    PyObject *shape = PySequence_GetItem(o, 2), *payload = PySequence_GetItem(o, 3);
    Py_DECREF(o);
    int bad = !shape || !payload || slot < 0 || slot >= p->nslots ||
              const_tensor(ps, dtype, shape, payload, &p->consts[slot]) < 0;
    Py_XDECREF(shape); Py_XDECREF(payload);
    if (bad) goto fail;
  }
  if (PyErr_Occurred()) goto fail;
  /* every slot of the template as rh_ctx_clear leaves it: constants set, the rest empty, no Python object */
  for (int i = 0; i < p->nslots; i++) p->consts[i].pyobj = -1;
  for (int i = 0; i < p->nops; i++)
    for (int k = 0; k < p->ops[i].nin + p->ops[i].nout; k++) {
      int s = k < p->ops[i].nin ? p->ops[i].in[k] : p->ops[i].out[k - p->ops[i].nin];
      if (s < 0 || s >= p->nslots) goto fail;
    }
  if (rh_program_levels(p, &ps->arena)) {
    PyErr_NoMemory();
    goto fail;
  }
  return cap;
fail:
  if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "malformed native host program");
  Py_DECREF(cap);
  return NULL;
}

/* ------------------------------------------------------------------------------------------- contexts */
static void release_request(ctx_state *cs) {
  for (int i = 0; i < cs->nbufs; i++) PyBuffer_Release(&cs->bufs[i]);
  cs->nbufs = 0;
  for (int i = 0; i < cs->nkept; i++) Py_DECREF(cs->kept[i]);
  cs->nkept = 0;
  cs->nlent = 0;
}

/* a feed array read without the GIL (borrowed: the request holds the dict) -> its pyobj code (-2 - index), or -1
 * where memory ran out (no Python error: the caller reads the request again with the GIL) */
static int lend_object(ctx_state *cs, PyObject *obj) {
  if (cs->nlent == cs->caplent) {
    int cap = cs->caplent ? 2 * cs->caplent : 256;
    PyObject **nl = (PyObject **)realloc(cs->lent, sizeof(PyObject *) * (size_t)cap);
    if (!nl) return -1;
    cs->lent = nl;
    cs->caplent = cap;
  }
  cs->lent[cs->nlent] = obj;
  return -2 - cs->nlent++;
}

/* the Python object a tensor's data is (pyobj >= 0: held in `kept`; <= -2: lent), or NULL */
static PyObject *tensor_object(const ctx_state *cs, const rh_tensor *t) {
  if (t->pyobj >= 0) return cs->kept[t->pyobj];
  if (t->pyobj <= -2) return cs->lent[-2 - t->pyobj];
  return NULL;
}

/* hold `obj` for the request (a reference in a C array: a list append cost more per feed array) -> its index */
static int keep_object(ctx_state *cs, PyObject *obj) {
  if (cs->nkept == cs->capkept) {
    int cap = cs->capkept ? 2 * cs->capkept : 256;
    PyObject **nk = (PyObject **)realloc(cs->kept, sizeof(PyObject *) * (size_t)cap);
    if (!nk) {
      PyErr_NoMemory();
      return -1;
    }
    cs->kept = nk;
    cs->capkept = cap;
  }
  Py_INCREF(obj);
  cs->kept[cs->nkept] = obj;
  return cs->nkept++;
}

static void disarm(ctx_state *cs) {
  Py_CLEAR(cs->serve_dev);
  Py_CLEAR(cs->serve_pairs);
}

static void ctx_free(PyObject *cap) {
  ctx_state *cs = (ctx_state *)PyCapsule_GetPointer(cap, "recom_tvm_host.context");
  if (!cs) return;
  release_request(cs);
  disarm(cs);
  int nfeat = cs->c ? cs->c->prog->nfeat : 0;
  for (int k = 0; cs->key_obj && k < nfeat; k++) Py_XDECREF(cs->key_obj[k]);
  free(cs->key_obj);
  free(cs->key_feat);
  rh_ctx_free(cs->c);
  free(cs->kept);
  free(cs->lent);
  Py_XDECREF(cs->prog);
  free(cs->bufs);
  free(cs->defer);
  free(cs->guard_keys);
  free(cs);
}

static prog_state *get_prog(PyObject *o) {
  return (prog_state *)PyCapsule_GetPointer(o, "recom_tvm_host.program");
}

static ctx_state *get_ctx(PyObject *o) {
  return (ctx_state *)PyCapsule_GetPointer(o, "recom_tvm_host.context");
}

static PyObject *context_new(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *prog;
  if (!PyArg_ParseTuple(args, "O", &prog)) return NULL;
  prog_state *ps = get_prog(prog);
  if (!ps) return NULL;
  ctx_state *cs = (ctx_state *)calloc(1, sizeof(ctx_state));
  if (!cs) return PyErr_NoMemory();
  cs->c = rh_ctx_new(&ps->p);
  cs->cur_feature = -1;
  cs->guard_arg = -1;
  size_t nf = (size_t)(ps->p.nfeat ? ps->p.nfeat : 1);
  cs->key_obj = (PyObject **)calloc(nf, sizeof(PyObject *));
  cs->key_feat = (int32_t *)calloc(nf, sizeof(int32_t));
  if (!cs->c || !cs->key_obj || !cs->key_feat) {
    rh_ctx_free(cs->c);
    free(cs->key_obj);
    free(cs->key_feat);
    free(cs);
    return PyErr_NoMemory();
  }
  cs->prog = prog;
  Py_INCREF(prog);
  PyObject *cap = PyCapsule_New(cs, "recom_tvm_host.context", ctx_free);
  if (!cap) {
    rh_ctx_free(cs->c);
    free(cs->key_obj);
    free(cs->key_feat);
    Py_DECREF(prog);
    free(cs);
  }
  return cap;
}

/* the dtype of a buffer format ('l', '<f', '5s', '3w', 'O', ...); RH_NONE if unsupported */
static int format_dtype(const char *f, Py_ssize_t itemsize, int *raw) {
  *raw = RAW_NONE;
  if (!f) return RH_U8;
  if (*f == '@' || *f == '=' || *f == '<') f++;
  if (*f == '>' || *f == '!') return RH_NONE;
  while (*f >= '0' && *f <= '9') f++;
  if (f[0] && f[1]) return RH_NONE;
  switch (*f) {
    case '?': return RH_BOOL;
    case 'b': return RH_I8;
    case 'B': return RH_U8;
    case 'h': case 'i': case 'l': case 'q':
      return itemsize == 2 ? RH_I16 : itemsize == 4 ? RH_I32 : itemsize == 8 ? RH_I64 : RH_NONE;
    case 'H': case 'I': case 'L': case 'Q':
      return itemsize == 2 ? RH_U16 : itemsize == 4 ? RH_U32 : itemsize == 8 ? RH_U64 : RH_NONE;
    case 'e': return RH_F16;
    case 'f': return RH_F32;
    case 'd': return RH_F64;
    case 's': *raw = RAW_FIXED; return RH_STR;
    case 'w': *raw = RAW_UCS4; return RH_STR;
    case 'O': return RH_STR;
    default: return RH_NONE;
  }
}

static int keep_buffer(ctx_state *cs, Py_buffer *v) {
  if (cs->nbufs == cs->capbufs) {
    int cap = cs->capbufs ? 2 * cs->capbufs : 64;
    Py_buffer *nb = (Py_buffer *)realloc(cs->bufs, sizeof(Py_buffer) * (size_t)cap);
    if (!nb) return -1;
    cs->bufs = nb;
    cs->capbufs = cap;
  }
  cs->bufs[cs->nbufs++] = *v;
  return 0;
}

/* ---------------------------------------------------------------- strings read outside the GIL
 * An object array's str elements are other objects, one UTF-8 pointer each: at E's B = 2,048 that is 328,000
 * strings, 2 ms under the GIL, most of the host stage's serial part (and what kept 8 serving threads at 1.5x).
 * A compact ASCII str (what TF-style string feeds almost always hold) keeps its length and characters, which are
 * its UTF-8, at fixed offsets of the object, and a str never changes: run() reads those elements on the pool
 * outside the GIL, and only the others (non-ASCII, str subclasses, bytes) with it, as before. The offsets are
 * CPython's (PyASCIIObject: length after the object header, the state bits after the hash, the characters after
 * the struct), not the stable ABI's: they are checked at import against PyUnicode_AsUTF8AndSize on strings of
 * each kind, and any difference leaves every element to the GIL path. */
static int str_direct = 0;   /* the fields check passed at import */
static int str_outside = 1;  /* and the knob (config.native_strings_outside_gil) wants it */
static int feeds_outside = 1; /* run() reads a feeds dict in the usual form without the GIL (ingest_unlocked) */
static Py_ssize_t str_len_off, str_state_off, str_data_off;
#define STR_COMPACT_ASCII 0x60u  /* state bits: compact (5) and ascii (6) */

static int str_fields(PyObject *s, const char **p, Py_ssize_t *l) {
  if (Py_TYPE(s) != &PyUnicode_Type) return 0;
  const char *o = (const char *)s;
  if ((*(const uint32_t *)(o + str_state_off) & STR_COMPACT_ASCII) != STR_COMPACT_ASCII) return 0;
  *p = o + str_data_off;
  *l = *(const Py_ssize_t *)(o + str_len_off);
  return 1;
}

static void calibrate_strings(void) {
  const char *texts[3] = {"recom_tvm", "", "a longer ASCII string, read where CPython keeps it"};
  str_len_off = 2 * (Py_ssize_t)sizeof(void *);          /* after ob_refcnt, ob_type */
  str_state_off = str_len_off + 2 * (Py_ssize_t)sizeof(Py_ssize_t);  /* after length, hash */
  str_data_off = -1;
  int ok = 1;
  for (int k = 0; k < 3 && ok; k++) {
    PyObject *s = PyUnicode_FromString(texts[k]);
    Py_ssize_t l;
    const char *u = s ? PyUnicode_AsUTF8AndSize(s, &l) : NULL;
    if (!u) {
      ok = 0;
    } else {
      if (str_data_off < 0) str_data_off = u - (const char *)s;
      const char *p;
      Py_ssize_t pl;
      ok = str_data_off > str_state_off && str_data_off <= 96 && str_fields(s, &p, &pl) && p == u && pl == l &&
           pl == (Py_ssize_t)strlen(texts[k]);
    }
    Py_XDECREF(s);
  }
  PyObject *wide = ok ? PyUnicode_FromString("\xc3\xa9t\xc3\xa9") : NULL;  /* non-ASCII: must not pass */
  if (wide) {
    const char *p;
    Py_ssize_t pl;
    ok = !str_fields(wide, &p, &pl);
    Py_DECREF(wide);
  }
  PyErr_Clear();
  str_direct = ok;
}

typedef struct {
  ctx_state *cs;
  int64_t *chunk_start;  /* per chunk: entry and element range */
  int32_t *chunk_entry;
  int64_t *chunk_slow;
} strings_job;

#define STRINGS_CHUNK 16384

static void strings_task(void *arg, int64_t chunk, int worker) {
  (void)worker;
  strings_job *j = (strings_job *)arg;
  deferred_strings *d = &j->cs->defer[j->chunk_entry[chunk]];
  rh_tensor *t = &j->cs->c->t[d->slot];
  int64_t a = j->chunk_start[chunk], e = a + STRINGS_CHUNK < d->n ? a + STRINGS_CHUNK : d->n, slow = 0;
  const uint8_t **sp = t->sp;
  int64_t *sl = t->sl;
  /* a string of at most 16 bytes is copied into a 16-byte slot of its own while its object is in this core's
   * cache (16 bytes read whatever its length, where they stay within the object's page): the staging buffer's
   * writer then reads them in order instead of chasing the objects a second time */
  uint8_t *slots = (uint8_t *)rh_alloc(RH_ARENA(j->cs->c), (size_t)(e - a) * 16);
  for (int64_t i = a; i < e; i++) {
    const char *p;
    Py_ssize_t l;
    if (i + 32 < e) __builtin_prefetch(d->items[i + 32]);  /* the objects are scattered over the heap */
    if (!(i & 7)) rh_prefetch_ahead(d->items + i);
    if (str_fields(d->items[i], &p, &l)) {
      sl[i] = l;
      if (slots && l <= 16 && ((uintptr_t)p & 4095) <= 4096 - 16) {
        uint8_t *o = slots + 16 * (i - a);
        memcpy(o, p, 16);
        sp[i] = o;
      } else {
        sp[i] = (const uint8_t *)p;
      }
    } else {
      sp[i] = NULL;
      slow++;
    }
  }
  j->chunk_slow[chunk] = slow;
}

static int read_strings(rh_tensor *t, PyObject *const *items, int only_unread);

/* the deferred arrays' elements: compact ASCII str on the pool outside the GIL, the rest with it. A part with an
 * element that is neither str nor bytes joins `*pending` (converted by the reference, as when found at ingest).
 * 0, or -1 with a Python error. */
/* The deferred string elements in three steps, so that run() can read them in the same GIL-free stretch as the
 * rest of the host stage: plan the chunks (GIL held), read them (strings_task, GIL released), then finish with the
 * GIL: the elements that are not compact ASCII str, or the part's conversion by the reference. */
static int plan_strings(ctx_state *cs, strings_job *j, int64_t *nchunks) {
  int64_t n = 0;
  for (int k = 0; k < cs->ndefer; k++) n += (cs->defer[k].n + STRINGS_CHUNK - 1) / STRINGS_CHUNK;
  *j = (strings_job){cs, NULL, NULL, NULL};
  j->chunk_start = (int64_t *)rh_alloc(&cs->c->arena[0], (size_t)(n + 1) * 8);
  j->chunk_entry = (int32_t *)rh_alloc(&cs->c->arena[0], (size_t)(n + 1) * 4);
  j->chunk_slow = (int64_t *)rh_alloc(&cs->c->arena[0], (size_t)(n + 1) * 8);
  if (!j->chunk_start || !j->chunk_entry || !j->chunk_slow) return -1;  /* (needs no GIL: the caller raises) */
  int64_t c = 0;
  for (int k = 0; k < cs->ndefer; k++)
    for (int64_t a = 0; a < cs->defer[k].n; a += STRINGS_CHUNK, c++) {
      j->chunk_start[c] = a;
      j->chunk_entry[c] = k;
    }
  *nchunks = n;
  return 0;
}

/* GIL released: -> whether any element needs the GIL */
static int read_planned(strings_job *j, int64_t nchunks) {
  rh_parallel(strings_task, j, nchunks);
  int64_t slow = 0;
  for (int64_t c = 0; c < nchunks; c++) slow += j->chunk_slow[c];
  return slow != 0;
}

/* GIL held, after read_planned: the slow elements; a part the core cannot read goes onto `pending` */
static int finish_strings(ctx_state *cs, strings_job *j, int64_t nchunks, PyObject **pending) {
  for (int64_t c = 0; c < nchunks; c++) cs->defer[j->chunk_entry[c]].slow += j->chunk_slow[c];
  for (int k = 0; k < cs->ndefer; k++) {
    deferred_strings *d = &cs->defer[k];
    if (!d->slow) continue;
    rh_tensor *t = &cs->c->t[d->slot];
    if (read_strings(t, d->items, 1) == 0) continue;
    t->set = 0;  /* not a form the core reads: the reference converts the part */
    if (!*pending && !(*pending = PyList_New(0))) return -1;
    PyObject *item = Py_BuildValue("(iiO)", d->feature, d->part, d->obj);
    if (!item || PyList_Append(*pending, item) < 0) {
      Py_XDECREF(item);
      return -1;
    }
    Py_DECREF(item);
  }
  cs->ndefer = 0;
  return 0;
}

static int resolve_deferred(ctx_state *cs, PyObject **pending) {
  strings_job j;
  int64_t nchunks, total = 0;
  if (plan_strings(cs, &j, &nchunks) < 0) {
    PyErr_NoMemory();
    return -1;
  }
  for (int k = 0; k < cs->ndefer; k++) total += cs->defer[k].n;
  Py_BEGIN_ALLOW_THREADS
  rh_set_request_work(total);
  read_planned(&j, nchunks);
  Py_END_ALLOW_THREADS
  return finish_strings(cs, &j, nchunks, pending);
}

/* an object array's element pointers and lengths, read later (run(): after the feeds, outside the GIL). Needs no
 * GIL. -> 0, or -1 where memory ran out (no Python error set) */
static int defer_strings(ctx_state *cs, rh_tensor *t, PyObject **items, int feature, int part, PyObject *obj) {
  t->sp = (const uint8_t **)rh_alloc(&cs->c->arena[0], (size_t)t->size * sizeof(void *));
  t->sl = (int64_t *)rh_alloc(&cs->c->arena[0], (size_t)t->size * 8);
  if (!t->sp || !t->sl) return -1;
  if (cs->ndefer == cs->capdefer) {
    int cap = cs->capdefer ? 2 * cs->capdefer : 64;
    deferred_strings *d = (deferred_strings *)realloc(cs->defer, (size_t)cap * sizeof *d);
    if (!d) return -1;
    cs->defer = d;
    cs->capdefer = cap;
  }
  deferred_strings *d = &cs->defer[cs->ndefer++];
  d->slot = (int32_t)(t - cs->c->t);
  d->feature = feature;
  d->part = part;
  d->items = items;
  d->obj = obj;
  d->n = t->size;
  d->slow = 0;
  return 0;
}

static int object_strings(ctx_state *cs, rh_tensor *t, PyObject **items) {
  if (str_direct && str_outside && cs->cur_feature >= 0 && t->size > 0) {  /* run(): read after the feeds, outside the GIL */
    if (defer_strings(cs, t, items, cs->cur_feature, cs->cur_part, cs->cur_obj) < 0) {
      PyErr_NoMemory();
      return -1;
    }
    return 0;
  }
  t->sp = (const uint8_t **)rh_alloc(&cs->c->arena[0], (size_t)t->size * sizeof(void *));
  t->sl = (int64_t *)rh_alloc(&cs->c->arena[0], (size_t)t->size * 8);
  if (!t->sp || !t->sl) {
    PyErr_NoMemory();
    return -1;
  }
  return read_strings(t, items, 0);
}

/* the elements (only those still NULL when only_unread) with the GIL: 0, or 1 for an element that is neither
 * exactly str nor bytes */
static int read_strings(rh_tensor *t, PyObject *const *items, int only_unread) {
  for (int64_t i = 0; i < t->size; i++) {
    if (only_unread && t->sp[i]) continue;
    PyObject *s = items[i];
    Py_ssize_t l;
    const char *p;
    if (PyUnicode_CheckExact(s)) {
      p = PyUnicode_AsUTF8AndSize(s, &l);
      if (!p) {
        PyErr_Clear();
        return 1;
      }
    } else if (PyBytes_CheckExact(s)) {
      char *q;
      if (PyBytes_AsStringAndSize(s, &q, &l) < 0) {
        PyErr_Clear();
        return 1;
      }
      p = q;
    } else {
      return 1;
    }
    t->sp[i] = (const uint8_t *)p;  /* the object's own UTF-8: no copy under the GIL */
    t->sl[i] = l;
  }
  return 0;
}

/* ------------------------------------------------------------------------------- numpy arrays, read directly
 * The buffer protocol costs ~130 ns per array (a Py_buffer, numpy's format string, the release later): on a
 * 1,000-column model's 1,241 feed arrays that was 0.16 ms, two thirds of the host stage at B = 1. The leading
 * fields of numpy's array and dtype objects are part of numpy's C ABI (every compiled extension reads them through
 * PyArray_DATA / NDIM / DIMS / FLAGS / DESCR and descr->type_num), the same in numpy 1.x and 2.x; no numpy header
 * is needed to read them. The first array of each type number is read both ways and compared: any difference
 * turns the direct path off for the process (the buffer protocol stays the reference). */
typedef struct {
  PyObject_HEAD
  char *data;
  int nd;
  Py_ssize_t *dimensions;
  Py_ssize_t *strides;
  PyObject *base;
  PyObject *descr;
  int flags;
} np_array_head;

typedef struct {
  PyObject_HEAD
  PyTypeObject *typeobj;
  char kind, type, byteorder, flags_;
  int type_num;
} np_descr_head;

enum { NP_C_CONTIGUOUS = 0x1, NP_ALIGNED = 0x100, NP_TYPES = 24 };
static int np_direct = 1;                /* 0: a check failed, the buffer protocol only */
static signed char np_checked[NP_TYPES]; /* per type number: 0 not yet, 1 checked equal */

/* numpy type number -> dtype (numeric and object only: fixed-width strings need the item size), RH_NONE otherwise */
static int np_type_dtype(int type_num) {
  switch (type_num) {
    case 0: return RH_BOOL;
    case 1: return RH_I8;
    case 2: return RH_U8;
    case 3: return RH_I16;
    case 4: return RH_U16;
    case 5: return sizeof(int) == 4 ? RH_I32 : RH_NONE;
    case 6: return sizeof(int) == 4 ? RH_U32 : RH_NONE;
    case 7: return sizeof(long) == 8 ? RH_I64 : sizeof(long) == 4 ? RH_I32 : RH_NONE;
    case 8: return sizeof(long) == 8 ? RH_U64 : sizeof(long) == 4 ? RH_U32 : RH_NONE;
    case 9: return RH_I64;
    case 10: return RH_U64;
    case 11: return RH_F32;
    case 12: return RH_F64;
    case 17: return RH_STR; /* object */
    case 23: return RH_F16;
    default: return RH_NONE;
  }
}

/* 1 and the fields of `obj` when it can be read directly (C-contiguous, aligned, native byte order, a type above) */
static int np_fields(PyObject *obj, int *dtype, int *ndim, const Py_ssize_t **shape, void **data) {
  const np_array_head *a = (const np_array_head *)obj;
  const np_descr_head *d = (const np_descr_head *)a->descr;
  if (!d || (a->flags & (NP_C_CONTIGUOUS | NP_ALIGNED)) != (NP_C_CONTIGUOUS | NP_ALIGNED)) return 0;
  if (d->type_num < 0 || d->type_num >= NP_TYPES || a->nd < 0 || a->nd > RH_MAXDIM) return 0;
  if (!(d->byteorder == '=' || d->byteorder == '|')) return 0;
  *dtype = np_type_dtype(d->type_num);
  *ndim = a->nd;
  *shape = a->dimensions;
  *data = a->data;
  return *dtype != RH_NONE;
}

/* an array's type number (np_fields checked its descr and range) */
static int np_type_num(PyObject *obj) {
  return ((const np_descr_head *)((const np_array_head *)obj)->descr)->type_num;
}

/* the first array of its type number: the direct fields must equal the buffer protocol's */
static int np_check(PyObject *obj, int dtype, int ndim, const Py_ssize_t *shape, void *data) {
  int type_num = np_type_num(obj);
  if (np_checked[type_num]) return 1;
  Py_buffer v;
  if (PyObject_GetBuffer(obj, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
    PyErr_Clear();
    np_direct = 0;
    return 0;
  }
  int raw, ok = v.buf == data && v.ndim == ndim && format_dtype(v.format, v.itemsize, &raw) == dtype && !raw;
  for (int d = 0; ok && d < ndim; d++) ok = v.shape[d] == shape[d];
  PyBuffer_Release(&v);
  if (!ok) np_direct = 0;
  else np_checked[type_num] = 1;
  return ok;
}

/* a tensor over an array's own memory, as numpy describes it */
static void set_direct(rh_tensor *t, int dtype, int ndim, const Py_ssize_t *shape, void *data) {
  rh_tensor_clear(t);
  t->dtype = dtype;
  t->ndim = ndim;
  t->size = 1;
  for (int d = 0; d < ndim; d++) {
    t->shape[d] = shape[d];
    t->size *= shape[d];
  }
  t->data = data;
  t->pyobj = -1;
}

/* read `obj` into tensor slot `slot`. want: the dtype the slot must have (-1: any). -> 0 read, 1 the value needs
 * the reference's conversion first (another type, dtype, layout), -1 a Python error */
static int ingest(ctx_state *cs, prog_state *ps, int slot, PyObject *obj, int want) {
  rh_tensor *t = &cs->c->t[slot];
  if (Py_TYPE(obj) != (PyTypeObject *)ps->ndarray) return 1;
  int nd_dtype, nd_ndim;
  const Py_ssize_t *nd_shape;
  void *nd_data;
  if (np_direct && np_fields(obj, &nd_dtype, &nd_ndim, &nd_shape, &nd_data)
      && np_check(obj, nd_dtype, nd_ndim, nd_shape, nd_data)) {
    if (want >= 0 && nd_dtype != want) return 1;
    set_direct(t, nd_dtype, nd_ndim, nd_shape, nd_data);
    if (nd_dtype == RH_STR) {
      int rc = object_strings(cs, t, (PyObject **)nd_data);
      if (rc) return rc;
    }
    if ((t->pyobj = keep_object(cs, obj)) < 0) return -1;
    t->set = 1;
    return 0;
  }
  Py_buffer v;
  if (PyObject_GetBuffer(obj, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
    PyErr_Clear();
    return 1;
  }
  int raw;
  int dtype = format_dtype(v.format, v.itemsize, &raw);
  if (dtype == RH_NONE || (want >= 0 && dtype != want) || v.ndim > RH_MAXDIM) {
    PyBuffer_Release(&v);
    return 1;
  }
  rh_tensor_clear(t);
  t->dtype = dtype;
  t->ndim = v.ndim;
  t->size = 1;
  for (int d = 0; d < v.ndim; d++) {
    t->shape[d] = v.shape[d];
    t->size *= v.shape[d];
  }
  t->data = v.buf;
  t->pyobj = -1;
  if (dtype == RH_STR && raw == RAW_NONE) {  /* object array: each element must be exactly str or bytes */
    int rc = object_strings(cs, t, (PyObject **)v.buf);
    if (rc) {
      PyBuffer_Release(&v);
      return rc;
    }
  } else if (raw) {
    t->raw = raw;
    t->raw_width = (int32_t)(raw == RAW_FIXED ? v.itemsize : v.itemsize / 4);
  }
  if (keep_buffer(cs, &v) < 0) {
    PyBuffer_Release(&v);
    PyErr_NoMemory();
    return -1;
  }
  if ((t->pyobj = keep_object(cs, obj)) < 0) return -1;
  t->set = 1;
  return 0;
}

static const char *SPARSE_PARTS[3] = {"indices", "values", "dense_shape"};
static const char *RAGGED_PARTS[2] = {"values", "row_splits"};

static PyObject *status(ctx_state *cs, int rc) {
  rh_ctx *c = cs->c;
  switch (rc) {
    case RH_OK: return Py_BuildValue("(sL)", "ok", (long long)c->staging_bytes);
    case RH_NEED_OP: {
      const rh_op *op = &c->prog->ops[c->next_op];
      return Py_BuildValue("(sii)", "op", op->node, c->next_op);
    }
    case RH_NOMEM: return PyErr_NoMemory();
    default: return Py_BuildValue("(ss)", "refuse", c->msg);
  }
}

static PyObject *served(ctx_state *cs, rh_device *d, int rc);

/* a shape as a tuple of ints (NULL with a Python error) */
static PyObject *dims_tuple(const int64_t *dims, int n) {
  PyObject *s = PyTuple_New(n);
  for (int d = 0; s && d < n; d++) PyTuple_SetItem(s, d, PyLong_FromLongLong(dims[d]));
  return s;
}

/* the device part an armed context runs after its host stage (NULL: not armed) */
static rh_device *armed(ctx_state *cs) {
  return cs->serve_dev ? (rh_device *)PyCapsule_GetPointer(cs->serve_dev, "recom_tvm_host.device") : NULL;
}

/* GIL released, after rh_run returned rc: the armed device part where the layout fits the staging buffer.
 * -> its status, -1 where it did not run, -2 where writing the staging buffer failed */
static int guard_passes(const ctx_state *cs) {
  const rh_ctx *c = cs->c;
  if (cs->guard_arg < 0) return 1;
  if (cs->guard_arg >= c->prog->nargs || cs->guard_axis >= c->arg_ndim[cs->guard_arg]) return 0;
  int64_t key = c->arg_shape[(size_t)cs->guard_arg * RH_MAXDIM + cs->guard_axis];
  for (int64_t i = 0; i < cs->guard_n; i++)
    if (cs->guard_keys[i] == key) return 1;
  return 0;
}

static int serve_armed(ctx_state *cs, rh_device *d, int rc) {
  rh_ctx *c = cs->c;
  if (rc != RH_OK || !d || c->staging_bytes > cs->serve_cap || !guard_passes(cs)) return -1;
  if (rh_write(c, (uint8_t *)(uintptr_t)cs->serve_host, cs->serve_cap)) return -2;
  int rc2 = rh_device_call(d, c, (uint8_t *)(uintptr_t)cs->serve_host, cs->serve_addr, c->staging_bytes);
  if (!c->clean) rh_ctx_clear(c);  /* (a CUDA call cleared it while the device worked) */
  return rc2;
}

/* the GIL held again: the host stage's status, or the device part's outcome (served()) where it ran */
static PyObject *outcome(ctx_state *cs, rh_device *d, int rc, int drc) {
  if (drc == -2) {
    disarm(cs);
    release_request(cs);
    PyErr_SetString(PyExc_RuntimeError, cs->c->msg);
    return NULL;
  }
  if (drc >= 0) {
    release_request(cs);
    PyObject *r = served(cs, d, drc);
    disarm(cs);
    return r;
  }
  if (rc != RH_NEED_OP) disarm(cs);
  return status(cs, rc);
}

/* what one GIL-free stretch of a request did */
typedef struct {
  rh_device *d;
  strings_job sj;
  int64_t nchunks;
  int rc, drc, slow, nomem;
} stretch_state;

/* GIL released: the deferred string elements, then (unless one needs the GIL) the host stage and the device part */
static void host_stretch(ctx_state *cs, stretch_state *st) {
  st->rc = RH_OK;
  st->drc = -1;
  st->slow = st->nomem = 0;
  st->nchunks = 0;
  if (cs->ndefer && plan_strings(cs, &st->sj, &st->nchunks) < 0) {
    st->nomem = 1;
    return;
  }
  const rh_program *p = cs->c->prog;
  int64_t work = 0;  /* the request's input elements: small ones run on this thread alone (rh_pool.c) */
  for (int f = 0; f < p->nfeat; f++)
    for (int k = 0; k < p->feat_nparts[f]; k++) {
      const rh_tensor *t = &cs->c->t[p->feat_part_slot[3 * f + k]];
      if (t->set) work += t->size;
    }
  rh_set_request_work(work);
  if (cs->ndefer) {
    int64_t t0 = rh_now_ns();
    st->slow = read_planned(&st->sj, st->nchunks);
    cs->c->ns[0] += rh_now_ns() - t0;  /* (part of reading the feeds, as timings() reports it) */
  }
  if (!st->slow) {
    st->rc = rh_run(cs->c);
    st->drc = serve_armed(cs, st->d, st->rc);
  }
}

/* the GIL held again after host_stretch: the elements that needed it, then the outcome */
static PyObject *resume_run(ctx_state *cs);
static PyObject *after_stretch(ctx_state *cs, stretch_state *st) {
  if (st->nomem) {
    cs->ndefer = 0;
    return PyErr_NoMemory();
  }
  if (cs->ndefer) {
    PyObject *pending = NULL;
    if (finish_strings(cs, &st->sj, st->nchunks, &pending) < 0) {
      cs->ndefer = 0;
      Py_XDECREF(pending);
      return NULL;
    }
    if (pending) {  /* a part for the reference's conversion; resume() continues after it */
      PyObject *r = Py_BuildValue("(sO)", "convert", pending);
      Py_DECREF(pending);
      return r;
    }
    if (st->slow) return resume_run(cs);  /* read with the GIL: now the rest, in a second stretch */
  }
  return outcome(cs, st->d, st->rc, st->drc);
}

static PyObject *resume_run(ctx_state *cs) {
  stretch_state st;
  st.d = armed(cs);
  Py_BEGIN_ALLOW_THREADS
  host_stretch(cs, &st);
  Py_END_ALLOW_THREADS
  return after_stretch(cs, &st);
}

/* The feature a feeds dict's k-th key names (-1: none). The dict is read in its own order (PyDict_Next) and a key
 * that is the same object as the last request's k-th key is matched by identity: a client that builds its dicts
 * the same way (keys from one list, one literal per feature) pays neither a hash lookup nor a string compare per
 * feature, which were a third of E's GIL-held ingest. Other keys are looked up by name (the references held keep
 * an address from being reused by another string). */
static int feature_of(ctx_state *cs, prog_state *ps, int k, PyObject *key) {
  if (k < ps->p.nfeat && cs->key_obj[k] == key) return cs->key_feat[k];
  PyObject *idx = PyDict_GetItemWithError(ps->index, key);
  if (!idx) return -1;
  long f = PyLong_AsLong(idx);
  if (f < 0 || f >= ps->p.nfeat) return -1;
  if (k < ps->p.nfeat) {
    PyObject *old = cs->key_obj[k];
    Py_INCREF(key);
    cs->key_obj[k] = key;
    Py_XDECREF(old);
    cs->key_feat[k] = (int32_t)f;
  }
  return (int)f;
}

/* a sparse / ragged feature fed as a tuple of exactly its parts: its items (borrowed) into parts -> 1, else 0.
 * Plain reads: ingest_unlocked calls it without the GIL. */
static int tuple_parts(PyObject *value, int nparts, PyObject **parts) {
  if (!PyTuple_CheckExact(value) || PyTuple_Size(value) != nparts) return 0;
  for (int k = 0; k < nparts; k++) parts[k] = PyTuple_GetItem(value, k);
  return 1;
}

/* one feature's feed tensors into their slots (or onto `pending`, for the reference's conversion). -1: an error */
static int feed_feature(ctx_state *cs, prog_state *ps, int f, PyObject *value, PyObject **pending) {
  const rh_program *p = &ps->p;
  int nparts = p->feat_nparts[f], kind = p->feat_kind[f];
  PyObject *parts[3] = {value, NULL, NULL};
  int split = 1;
  if (kind != 0 && !tuple_parts(value, nparts, parts)) {
    if (PyDict_CheckExact(value)) {
      for (int k = 0; k < nparts && split; k++) {
        parts[k] = PyDict_GetItemString(value, kind == 1 ? SPARSE_PARTS[k] : RAGGED_PARTS[k]);
        if (!parts[k]) split = 0;
      }
    } else {
      split = 0;
    }
  }
  for (int k = 0; k < nparts; k++) {
    int slot = p->feat_part_slot[3 * f + k];
    cs->cur_feature = f;
    cs->cur_part = k;
    cs->cur_obj = parts[k];
    int rc = split ? ingest(cs, ps, slot, parts[k], p->slot_dtype[slot]) : 1;
    cs->cur_feature = -1;
    if (rc < 0) return -1;
    if (rc == 1) {
      if (!*pending && !(*pending = PyList_New(0))) return -1;
      PyObject *item = Py_BuildValue("(iiO)", f, split ? k : -1, split ? parts[k] : value);
      if (!item || PyList_Append(*pending, item) < 0) {
        Py_XDECREF(item);
        return -1;
      }
      Py_DECREF(item);
      if (!split) break;
    }
  }
  return 0;
}

/* One feed part read without the GIL: an exact numpy array the direct path reads (its type number checked against
 * the buffer protocol earlier in the process) of the slot's dtype; object arrays' elements deferred (read in the
 * same GIL-free stretch, as run() does). -> 0, or 1 for anything else (nothing Python-visible was changed). */
static int ingest_part_unlocked(ctx_state *cs, prog_state *ps, int slot, PyObject *obj, int want, int f, int part) {
  int dtype, ndim;
  const Py_ssize_t *shape;
  void *data;
  if (!np_direct || Py_TYPE(obj) != (PyTypeObject *)ps->ndarray || !np_fields(obj, &dtype, &ndim, &shape, &data))
    return 1;
  if (!np_checked[np_type_num(obj)] || (want >= 0 && dtype != want)) return 1;
  rh_tensor *t = &cs->c->t[slot];
  set_direct(t, dtype, ndim, shape, data);
  if (dtype == RH_STR) {
    if (!(str_direct && str_outside) || t->size == 0) return 1;
    if (defer_strings(cs, t, (PyObject **)data, f, part, obj) < 0) return 1;
  }
  if ((t->pyobj = lend_object(cs, obj)) == -1) return 1;
  t->set = 1;
  return 0;
}

/* The feeds dict read with the GIL released, for a client that sends its requests the usual way: each key the same
 * object as the last request's key at its position (a dict built from one list of names, or one literal per
 * feature), each dense feature an exact numpy array and each sparse / ragged one a tuple of them, all of the dtypes
 * the slots take. Reading a dict's entries, a tuple's items and numpy's ABI-stable fields allocates nothing and
 * touches no reference count; the dict (held by run(), one reference) holds every array, as the arrays hold their
 * string elements, so nothing here needs the GIL as long as no other thread modifies the feeds during run() (the
 * contract for every feed read in place). -> 0 read, 1 anything else: run() resets the context and reads the
 * request with the GIL, as before (the knob: config.native_feeds_outside_gil). */
static int ingest_unlocked(ctx_state *cs, prog_state *ps, PyObject *feeds) {
  const rh_program *p = &ps->p;
  PyObject *key, *value;
  Py_ssize_t pos = 0;
  for (int k = 0; PyDict_Next(feeds, &pos, &key, &value); k++) {
    if (k >= p->nfeat || cs->key_obj[k] != key) return 1;
    int f = cs->key_feat[k], nparts = p->feat_nparts[f];
    PyObject *parts[3] = {value, NULL, NULL};
    if (p->feat_kind[f] != 0 && !tuple_parts(value, nparts, parts)) return 1;
    for (int j = 0; j < nparts; j++) {
      int slot = p->feat_part_slot[3 * f + j];
      if (ingest_part_unlocked(cs, ps, slot, parts[j], p->slot_dtype[slot], f, j)) return 1;
    }
  }
  return 0;
}

/* run(ctx, feeds, max_batch, max_elements) -> ("ok", staging bytes) | ("convert", [(feature, part or -1, value)]) | ("op", node, op index)
 *                  | ("refuse", why) */
static PyObject *run(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap, *feeds;
  long long max_batch, max_elements;
  if (!PyArg_ParseTuple(args, "OOLL", &cap, &feeds, &max_batch, &max_elements)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  prog_state *ps = get_prog(cs->prog);
  const rh_program *p = &ps->p;
  int64_t t_ingest = rh_now_ns();  /* "ingest": reading the feeds (the reset included) and their string elements */
  release_request(cs);
  cs->ndefer = 0;
  cs->c->max_batch = max_batch;
  cs->c->max_elements = max_elements;
  if (!PyDict_Check(feeds) || PyDict_Size(feeds) != p->nfeat) {
    rh_ctx_reset(cs->c);
    return Py_BuildValue("(ss)", "refuse", "feeds other than one per feature, by feature name");
  }
  PyObject *pending = NULL, *key, *value;
  Py_ssize_t pos = 0;
  if (feeds_outside && PyDict_CheckExact(feeds) && p->nfeat > 0 && PyDict_Next(feeds, &pos, &key, &value)
      && key == cs->key_obj[0]) {  /* (a dict of fresh key objects goes straight to the reading below) */
    if (cs->unlocked_skip > 0) {
      cs->unlocked_skip--;
    } else {
      if (keep_object(cs, feeds) < 0) return NULL;  /* the dict holds every feed array for the request */
      stretch_state st;
      st.d = armed(cs);
      int miss;
      cs->unlocked_tries++;
      Py_BEGIN_ALLOW_THREADS
      rh_ctx_reset(cs->c);  /* (clearing it, where the last request did not: prepare(), llvm) */
      miss = ingest_unlocked(cs, ps, feeds);
      if (!miss) {
        cs->c->ns[0] += rh_now_ns() - t_ingest;
        host_stretch(cs, &st);
      }
      Py_END_ALLOW_THREADS
      if (!miss) {
        cs->unlocked_hits++;
        cs->unlocked_misses = 0;
        return after_stretch(cs, &st);
      }
      /* another form somewhere: read with the GIL; after k misses in a row skip 2^k - 1 requests (at most 63) */
      cs->unlocked_misses += cs->unlocked_misses < 6;
      cs->unlocked_skip = (1 << cs->unlocked_misses) - 1;
      release_request(cs);
      cs->ndefer = 0;
    }
  }
  rh_ctx_reset(cs->c);
  pos = 0;
  for (int k = 0; PyDict_Next(feeds, &pos, &key, &value); k++) {
    int f = feature_of(cs, ps, k, key);
    if (f < 0) {
      Py_XDECREF(pending);
      if (PyErr_Occurred()) return NULL;
      return Py_BuildValue("(ss)", "refuse", "a feature is not fed");
    }
    if (feed_feature(cs, ps, f, value, &pending) < 0) {
      Py_XDECREF(pending);
      return NULL;
    }
  }
  /* with conversions pending the strings are read now; else in resume_run's GIL-free stretch */
  if (pending && cs->ndefer && resolve_deferred(cs, &pending) < 0) {
    cs->ndefer = 0;
    Py_XDECREF(pending);
    return NULL;
  }
  cs->c->ns[0] += rh_now_ns() - t_ingest;
  if (pending) {
    PyObject *r = Py_BuildValue("(sO)", "convert", pending);
    Py_DECREF(pending);
    return r;
  }
  return resume_run(cs);
}

/* ------------------------------------------------------------------------------------------- keyed-jagged */
/* A request in TorchRec's keyed-jagged layout: lengths [nkeys * batch] (key-major), one values buffer per dtype
 * (strings: bytes + offsets [n + 1]), each key's values after the previous keys' of the same dtype. Every feature
 * becomes the tensors its placeholders take: sparse -> indices (row, position), values, dense_shape [B, longest];
 * ragged -> values, row_splits; dense [B, ...] -> its values (every row holding exactly prod(shape[1:])). */
typedef struct {
  rh_ctx *c;
  const int64_t *feat_of_key, *len64;
  const int32_t *len32;
  int64_t batch;
  int64_t *start;           /* per key: its first value in its dtype's buffer */
  int64_t *total, *widest;  /* per key: its values, its longest row (kjt_count_task); total -1: a negative length */
  const void *vbuf[RH_NDTYPES];
  const uint8_t *sbytes;
  const int64_t *soff;
} kjt_job;

static inline int64_t kjt_len(const kjt_job *j, int64_t i) { return j->len64 ? j->len64[i] : j->len32[i]; }

static int kjt_feature(kjt_job *j, int64_t key) {
  rh_ctx *c = j->c;
  const rh_program *p = c->prog;
  int f = (int)j->feat_of_key[key], kind = p->feat_kind[f];
  const int32_t *ps = &p->feat_part_slot[3 * f];
  int vslot = ps[kind == 1 ? 1 : 0], dtype = p->slot_dtype[vslot];
  int64_t B = j->batch, n = j->total[key], widest = j->widest[key], start = j->start[key];
  rh_tensor *v = &c->t[vslot];
  memset(v, 0, sizeof *v);
  v->pyobj = -1;
  v->set = 1;
  v->dtype = dtype;
  int64_t vshape[RH_MAXDIM];
  int vnd = 1;
  vshape[0] = n;
  if (kind == 0) {  /* dense: [B] + the placeholder's static dims */
    int rank = p->slot_rank[vslot];
    if (rank < 1) return rh_refuse(c, "keyed-jagged: dense feature %d without a static shape", f);
    int64_t per = 1;
    vshape[0] = B;
    for (int d = 1; d < rank; d++) {
      vshape[d] = p->slot_dims[(size_t)vslot * RH_MAXDIM + d];
      if (vshape[d] < 0 && rank == 2) vshape[d] = B ? kjt_len(j, key * B) : 0;  /* [B, T]: the rows' length */
      if (vshape[d] < 0) return rh_refuse(c, "keyed-jagged: dense feature %d with an unknown dim", f);
      per *= vshape[d];
    }
    vnd = rank;
    for (int64_t b = 0; b < B; b++)
      if (kjt_len(j, key * B + b) != per) return rh_refuse(c, "keyed-jagged: dense feature %d, row %lld", f, (long long)b);
  }
  rh_set_shape(v, vnd, vshape);
  if (dtype == RH_STR) {
    v->sp = (const uint8_t **)rh_alloc(RH_ARENA(c), (size_t)(n + 1) * sizeof(void *));
    v->sl = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)(n + 1) * 8);
    if (!v->sp || !v->sl) return RH_NOMEM;
    for (int64_t i = 0; i < n; i++) {
      int64_t a = j->soff[start + i], e = j->soff[start + i + 1];
      v->sp[i] = j->sbytes + a;
      v->sl[i] = e - a;
    }
  } else {
    v->data = (uint8_t *)j->vbuf[dtype] + start * (int64_t)rh_itemsize(dtype);
  }
  if (kind == 1) {
    rh_tensor *ix = &c->t[ps[0]], *ds = &c->t[ps[2]];
    int64_t ishape[2] = {n, 2}, dshape[1] = {2};
    int rc = rh_new_numeric(c, ix, RH_I64, 2, ishape);
    if (!rc) rc = rh_new_numeric(c, ds, RH_I64, 1, dshape);
    if (rc) return rc;
    int64_t *o = (int64_t *)ix->data;
    int64_t *end = (int64_t *)rh_alloc(RH_ARENA(c), (size_t)(B + 1) * 8);  /* the CSR writer's row ends */
    for (int64_t b = 0; b < B; b++) {
      int64_t l = kjt_len(j, key * B + b);
      for (int64_t k = 0; k < l; k++) {
        *o++ = b;
        *o++ = k;
      }
      if (end) end[b + 1] = (o - (int64_t *)ix->data) / 2;
    }
    ((int64_t *)ds->data)[0] = B;
    ((int64_t *)ds->data)[1] = widest;
    ix->rows_ok = ix->rows_sorted = 1;
    if (end) rh_set_row_end(ix, end, B, widest, n);
  } else if (kind == 2) {
    rh_tensor *sp = &c->t[ps[1]];
    int64_t sshape[1] = {B + 1};
    int rc = rh_new_numeric(c, sp, RH_I64, 1, sshape);
    if (rc) return rc;
    int64_t *o = (int64_t *)sp->data, acc = 0;
    o[0] = 0;
    for (int64_t b = 0; b < B; b++) o[b + 1] = (acc += kjt_len(j, key * B + b));
  }
  return RH_OK;
}

static void kjt_task(void *arg, int64_t key, int worker) {
  (void)worker;
  kjt_job *j = (kjt_job *)arg;
  j->c->status[key] = kjt_feature(j, key);
}

/* a key's values and longest row from its lengths (nkeys x batch of them in all: 2 million for a 1,000-feature model
 * at B = 2,048, read here in parallel and outside the GIL) */
static void kjt_count_task(void *arg, int64_t key, int worker) {
  (void)worker;
  kjt_job *j = (kjt_job *)arg;
  int64_t n = 0, widest = 0, neg = 0;
  for (int64_t b = 0, B = j->batch; b < B; b++) {
    int64_t l = kjt_len(j, key * B + b);
    n += l;
    neg |= l < 0;
    if (l > widest) widest = l;
  }
  j->total[key] = neg ? -1 : n;
  j->widest[key] = widest;
}

/* everything run_kjt checks and builds once its buffers are held, outside the GIL: NULL, or why it refuses */
static const char *kjt_prepare(kjt_job *j, int64_t nkeys, const int64_t *vcount, int64_t nbytes, int *rc) {
  rh_ctx *c = j->c;
  const rh_program *p = c->prog;
  *rc = RH_OK;
  if (j->soff)
    for (int64_t i = 0; i <= vcount[RH_STR]; i++)  /* offsets: from 0, non-decreasing, within the bytes */
      if (j->soff[i] < (i ? j->soff[i - 1] : 0) || j->soff[i] > nbytes) return "keyed-jagged: string offsets";
  j->start = (int64_t *)rh_alloc(&c->arena[0], (size_t)(nkeys + 1) * 8);
  j->total = (int64_t *)rh_alloc(&c->arena[0], (size_t)(nkeys + 1) * 8);
  j->widest = (int64_t *)rh_alloc(&c->arena[0], (size_t)(nkeys + 1) * 8);
  uint8_t *seen = (uint8_t *)rh_alloc(&c->arena[0], (size_t)p->nfeat + 1);
  if (!j->start || !j->total || !j->widest || !seen) {
    *rc = RH_NOMEM;
    return NULL;
  }
  memset(seen, 0, (size_t)p->nfeat + 1);
  int64_t used[RH_NDTYPES] = {0}, work = 0;
  for (int64_t k = 0; k < nkeys; k++) {  /* each feature once, with a values buffer of its dtype */
    int64_t f = j->feat_of_key[k];
    if (f < 0 || f >= p->nfeat || seen[f]) return "keyed-jagged: keys";
    seen[f] = 1;
    int vslot = p->feat_part_slot[3 * f + (p->feat_kind[f] == 1 ? 1 : 0)], dt = p->slot_dtype[vslot];
    if (dt <= RH_NONE || dt >= RH_NDTYPES) return "keyed-jagged: dtype";
    if (dt != RH_STR && !j->vbuf[dt] && j->batch) return "keyed-jagged: no values buffer";
  }
  rh_set_request_work(nkeys * j->batch);
  rh_parallel(kjt_count_task, j, nkeys);
  for (int64_t k = 0; k < nkeys; k++) {  /* where each key's values start; every length >= 0, within the buffers */
    int64_t f = j->feat_of_key[k];
    int dt = p->slot_dtype[p->feat_part_slot[3 * f + (p->feat_kind[f] == 1 ? 1 : 0)]];
    if (j->total[k] < 0) return "keyed-jagged: negative length";
    j->start[k] = used[dt];
    used[dt] += j->total[k];
  }
  for (int dt = 1; dt < RH_NDTYPES; dt++) {
    if (used[dt] != vcount[dt] && (used[dt] || vcount[dt])) return "keyed-jagged: lengths do not add up to the values";
    work += used[dt];
  }
  rh_set_request_work(work + nkeys * j->batch);  /* the request's values and lengths: small ones on this thread */
  return NULL;
}

static int buffer_of(ctx_state *cs, PyObject *o, int want, Py_buffer *v) {
  if (PyObject_GetBuffer(o, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
  int raw;
  int dt = format_dtype(v->format, v->itemsize, &raw);
  if (dt != want || raw) {
    PyBuffer_Release(v);
    PyErr_Format(PyExc_TypeError, "keyed-jagged buffer of the wrong dtype (%s)", v->format ? v->format : "B");
    return -1;
  }
  if (keep_buffer(cs, v) < 0) {
    PyBuffer_Release(v);
    PyErr_NoMemory();
    return -1;
  }
  return 0;
}

/* run_kjt(ctx, feat_of_key int64[nkeys], lengths int32|int64, batch, values {dtype code: array},
 *         strings (bytes uint8, offsets int64) or None, max_batch, max_elements) -> like run */
static PyObject *run_kjt(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap, *fok, *lens, *vals, *strs;
  long long batch, max_batch, max_elements;
  if (!PyArg_ParseTuple(args, "OOOLOOLL", &cap, &fok, &lens, &batch, &vals, &strs, &max_batch, &max_elements))
    return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  rh_ctx *c = cs->c;
  const rh_program *p = c->prog;
  int64_t t0 = rh_now_ns();  /* (the reset included, as in run()) */
  release_request(cs);
  rh_ctx_reset(c);
  c->max_batch = max_batch;
  c->max_elements = max_elements;
  kjt_job j;
  memset(&j, 0, sizeof j);
  j.c = c;
  j.batch = batch;
  Py_buffer fv, lv;
  if (buffer_of(cs, fok, RH_I64, &fv) < 0) return NULL;
  int64_t nkeys = fv.len / 8;
  j.feat_of_key = (const int64_t *)fv.buf;
  if (nkeys != p->nfeat || batch < 0) return Py_BuildValue("(ss)", "refuse", "keyed-jagged: keys");
  if (PyObject_GetBuffer(lens, &lv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
  if (keep_buffer(cs, &lv) < 0) {
    PyBuffer_Release(&lv);
    return PyErr_NoMemory();
  }
  int raw, ldt = format_dtype(lv.format, lv.itemsize, &raw);
  if (ldt == RH_I64) j.len64 = (const int64_t *)lv.buf;
  else if (ldt == RH_I32) j.len32 = (const int32_t *)lv.buf;
  else return Py_BuildValue("(ss)", "refuse", "keyed-jagged: lengths must be int32 or int64");
  if ((int64_t)(lv.len / lv.itemsize) != nkeys * batch) return Py_BuildValue("(ss)", "refuse", "keyed-jagged: lengths");
  int64_t vcount[RH_NDTYPES] = {0}, nbytes = 0;
  PyObject *key, *value;
  Py_ssize_t pos = 0;
  while (PyDict_Next(vals, &pos, &key, &value)) {
    int dt = (int)PyLong_AsLong(key);
    if (dt <= RH_NONE || dt >= RH_STR) return Py_BuildValue("(ss)", "refuse", "keyed-jagged: values dtype");
    Py_buffer vb;
    if (buffer_of(cs, value, dt, &vb) < 0) return NULL;
    j.vbuf[dt] = vb.buf;
    vcount[dt] = vb.len / vb.itemsize;
  }
  if (strs != Py_None) {
    Py_buffer bb, ob;
    PyObject *b = PyTuple_GetItem(strs, 0), *o = PyTuple_GetItem(strs, 1);
    if (!b || !o || PyObject_GetBuffer(b, &bb, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (keep_buffer(cs, &bb) < 0) {
      PyBuffer_Release(&bb);
      return PyErr_NoMemory();
    }
    if (buffer_of(cs, o, RH_I64, &ob) < 0) return NULL;
    j.sbytes = (const uint8_t *)bb.buf;
    j.soff = (const int64_t *)ob.buf;
    vcount[RH_STR] = ob.len / 8 - 1;
    nbytes = bb.len;
  }
  int rc, drc = -1;
  const char *refused;
  rh_device *d = armed(cs);
  Py_BEGIN_ALLOW_THREADS  /* the buffers are held (keep_buffer): checks, counts and the features without the GIL */
  refused = kjt_prepare(&j, nkeys, vcount, nbytes, &rc);
  if (!refused && !rc) {
    rh_parallel(kjt_task, &j, nkeys);
    for (int64_t k = 0; k < nkeys && !rc; k++) rc = c->status[k];
    if (!rc) {
      c->ns[0] += rh_now_ns() - t0;
      rc = rh_run(c);
      drc = serve_armed(cs, d, rc);
    }
  }
  Py_END_ALLOW_THREADS
  if (refused) return Py_BuildValue("(ss)", "refuse", refused);
  return outcome(cs, d, rc, drc);
}

/* set(ctx, slot, array, want dtype) -> True when read (False: not a form the core reads) */
static PyObject *set_tensor(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap, *obj;
  int slot, want;
  if (!PyArg_ParseTuple(args, "OiOi", &cap, &slot, &obj, &want)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  if (slot < 0 || slot >= cs->c->prog->nslots) {
    PyErr_SetString(PyExc_IndexError, "slot");
    return NULL;
  }
  cs->cur_feature = -1;  /* a converted feed: its strings are read at once */
  int rc = ingest(cs, get_prog(cs->prog), slot, obj, want);
  if (rc < 0) return NULL;
  rh_tensor *t = &cs->c->t[slot];
  if (rc == 0 && t->raw && rh_finish_raw(cs->c, t)) return PyErr_NoMemory();  /* ops read it in parallel */
  return PyBool_FromLong(rc == 0);
}

/* set_decimal(ctx, slot, int64 array): AsString of integers kept as the integers (the reference's DecimalStrings) */
static PyObject *set_decimal(PyObject *self, PyObject *args) {
  PyObject *r = set_tensor(self, args);
  if (!r || r == Py_False) return r;
  PyObject *cap = PyTuple_GetItem(args, 0);
  int slot = (int)PyLong_AsLong(PyTuple_GetItem(args, 1));
  ctx_state *cs = get_ctx(cap);
  cs->c->t[slot].dtype = RH_DEC;
  cs->c->t[slot].pyobj = -1;
  return r;
}

/* resume(ctx, skip_op) -> like run: after conversions (skip_op False) or after the caller ran a fallback op */
static PyObject *resume(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap;
  int skip;
  if (!PyArg_ParseTuple(args, "Op", &cap, &skip)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  if (skip) rh_op_done(cs->c);
  return resume_run(cs);
}

/* get(ctx, slot) -> the original object | ("num", dtype, shape, memoryview) | ("str", shape, bytes, lengths view)
 *                 | ("dec", shape, memoryview) ; memory views are valid until the next request on this context */
static PyObject *shape_tuple(const rh_tensor *t) { return dims_tuple(t->shape, t->ndim); }

static PyObject *get_tensor(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap;
  int slot;
  if (!PyArg_ParseTuple(args, "Oi", &cap, &slot)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  if (slot < 0 || slot >= cs->c->prog->nslots) {
    PyErr_SetString(PyExc_IndexError, "slot");
    return NULL;
  }
  rh_tensor *t = &cs->c->t[slot];
  if (!t->set) Py_RETURN_NONE;
  PyObject *o = tensor_object(cs, t);
  if (o && ((t->dtype != RH_STR && t->dtype != RH_DEC) || t->raw == RAW_FIXED)) {
    /* numeric or numpy 'S': what the reference's normalized feeds hold; other strings are handed out as bytes */
    Py_INCREF(o);
    return o;
  }
  if (t->raw) {
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = rh_finish_raw(cs->c, t);
    Py_END_ALLOW_THREADS
    if (rc) return PyErr_NoMemory();
  }
  PyObject *shape = shape_tuple(t);
  if (!shape) return NULL;
  if (t->dtype == RH_STR) {
    int64_t total = 0;
    for (int64_t i = 0; i < t->size; i++) total += t->sl[i];
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!b) {
      Py_DECREF(shape);
      return NULL;
    }
    char *o = PyBytes_AsString(b);
    for (int64_t i = 0; i < t->size; i++) {
      memcpy(o, t->sp[i], (size_t)t->sl[i]);
      o += t->sl[i];
    }
    PyObject *lv = PyMemoryView_FromMemory((char *)t->sl, (Py_ssize_t)(t->size * 8), PyBUF_READ);
    PyObject *r = lv ? Py_BuildValue("(sOOO)", "str", shape, b, lv) : NULL;
    Py_DECREF(shape);
    Py_DECREF(b);
    Py_XDECREF(lv);
    return r;
  }
  PyObject *mv = PyMemoryView_FromMemory((char *)t->data, (Py_ssize_t)(t->size * (int64_t)rh_itemsize(t->dtype)),
                                         PyBUF_READ);
  PyObject *r = NULL;
  if (mv) r = t->dtype == RH_DEC ? Py_BuildValue("(sOO)", "dec", shape, mv)
                                 : Py_BuildValue("(siOO)", "num", t->dtype, shape, mv);
  Py_DECREF(shape);
  Py_XDECREF(mv);
  return r;
}

/* write(ctx, address, capacity): the module's arguments into the staging buffer at `address` (GIL released) */
static PyObject *write_args(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap;
  unsigned long long addr;
  long long capacity;
  if (!PyArg_ParseTuple(args, "OKL", &cap, &addr, &capacity)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  int rc;
  Py_BEGIN_ALLOW_THREADS
  rc = rh_write(cs->c, (uint8_t *)(uintptr_t)addr, capacity);
  if (!rc) rh_ctx_clear(cs->c);  /* (arguments() reads the layout, not the tensors) */
  Py_END_ALLOW_THREADS
  release_request(cs);
  if (rc) {
    PyErr_SetString(PyExc_RuntimeError, cs->c->msg);
    return NULL;
  }
  Py_RETURN_NONE;
}

/* arguments(ctx) -> per module input: (byte offset, shape) for tensors, (-1, values) for shapes */
static PyObject *arguments(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap;
  if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  rh_ctx *c = cs->c;
  int n = c->prog->nargs;
  PyObject *out = PyList_New(n);
  for (int i = 0; out && i < n; i++) {
    PyObject *s = dims_tuple(c->arg_shape + (size_t)i * RH_MAXDIM, c->arg_ndim[i]);
    PyObject *item = s ? Py_BuildValue("(LO)", (long long)c->arg_off[i], s) : NULL;
    Py_XDECREF(s);
    if (!item) {
      Py_DECREF(out);
      return NULL;
    }
    PyList_SetItem(out, i, item);
  }
  return out;
}

/* symbols(ctx) -> the bound value of each symbol (None: unbound) */
static PyObject *symbols(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap;
  if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  int n = cs->c->prog->nsym;
  PyObject *out = PyList_New(n);
  for (int i = 0; out && i < n; i++) {
    PyObject *v;
    if (cs->c->sym_src[i] < 0) {
      v = Py_None;
      Py_INCREF(v);
    } else {
      v = PyLong_FromLongLong(cs->c->sym[i]);
    }
    PyList_SetItem(out, i, v);
  }
  return out;
}

static PyObject *finish(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap;
  if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  release_request(cs);
  disarm(cs);
  Py_RETURN_NONE;
}

/* fingerprint64(bytes, lengths int64 buffer[, num_buckets]) -> bytes of uint64: the hash of each string laid end
 * to end (mod num_buckets when given: the division-free modulo StringToHashBucketFast uses) */
static PyObject *fingerprint64(PyObject *self, PyObject *args) {
  (void)self;
  Py_buffer data, lens;
  unsigned long long nb = 0;
  if (!PyArg_ParseTuple(args, "y*y*|K", &data, &lens, &nb)) return NULL;
  rh_u128 m = nb ? rh_fastmod_m(nb) : 0;
  Py_ssize_t n = lens.len / 8;
  PyObject *out = PyBytes_FromStringAndSize(NULL, n * 8);
  if (out) {
    uint64_t *o = (uint64_t *)PyBytes_AsString(out);
    const int64_t *l = (const int64_t *)lens.buf;
    const uint8_t *s = (const uint8_t *)data.buf;
    int64_t pos = 0, total = data.len;
    for (Py_ssize_t i = 0; i < n; i++) {
      if (l[i] < 0 || pos + l[i] > total) {
        Py_DECREF(out);
        out = NULL;
        PyErr_SetString(PyExc_ValueError, "lengths exceed the data");
        break;
      }
      o[i] = rh_fingerprint64(s + pos, (size_t)l[i]);
      if (nb) o[i] = rh_fastmod(o[i], m, nb);
      pos += l[i];
    }
  }
  PyBuffer_Release(&data);
  PyBuffer_Release(&lens);
  return out;
}

/* ------------------------------------------------------------------------------------------- DLPack */
/* A tensor at an address inside the staging buffer (rh.h's DLPack types): TVM-compiled functions want
 * byte_offset 0, so views of one buffer at offsets need their own DLTensor. */
static void dl_delete(dl_managed *m) { free(m); }

static void dl_capsule_free(PyObject *cap) {
  if (PyCapsule_IsValid(cap, "dltensor")) {  /* never consumed */
    dl_managed *m = (dl_managed *)PyCapsule_GetPointer(cap, "dltensor");
    if (m && m->deleter) m->deleter(m);
  }
}

/* dlpack(address, device_type, device_id, dtype code, shape) -> a "dltensor" capsule (not owning the memory) */
static PyObject *dlpack(PyObject *self, PyObject *args) {
  (void)self;
  unsigned long long addr;
  int dev_type, dev_id, dtype;
  PyObject *shape;
  if (!PyArg_ParseTuple(args, "KiiiO", &addr, &dev_type, &dev_id, &dtype, &shape)) return NULL;
  Py_ssize_t nd = PySequence_Size(shape);
  if (nd < 0 || nd > RH_MAXDIM) {
    PyErr_SetString(PyExc_ValueError, "dlpack: shape");
    return NULL;
  }
  dl_managed *m = (dl_managed *)calloc(1, sizeof(dl_managed));
  if (!m) return PyErr_NoMemory();
  for (Py_ssize_t i = 0; i < nd; i++) m->shape[i] = item_i64(shape, i);
  if (dtype <= RH_NONE || dtype >= RH_STR) {
    free(m);
    PyErr_SetString(PyExc_ValueError, "dlpack: dtype");
    return NULL;
  }
  m->t.data = (void *)(uintptr_t)addr;
  m->t.device.device_type = dev_type;
  m->t.device.device_id = dev_id;
  m->t.ndim = (int32_t)nd;
  m->t.dtype.code = RH_DL_CODE[dtype];
  m->t.dtype.bits = (uint8_t)(8 * rh_itemsize(dtype));
  m->t.dtype.lanes = 1;
  m->t.shape = m->shape;
  m->deleter = dl_delete;
  PyObject *cap = PyCapsule_New(m, "dltensor", dl_capsule_free);
  if (!cap) free(m);
  return cap;
}

/* ------------------------------------------------------------------------------------------- device part */
static void device_free(PyObject *cap) {
  rh_device *d = (rh_device *)PyCapsule_GetPointer(cap, "recom_tvm_host.device");
  if (d) rh_device_free(d);
}

/* device_new(api addresses (12 ints, 0: absent), main, ffi.Shape, params (handles), device type, device id,
 *            CUDA context, stream, keeps, outputs) -> a capsule. Takes a reference to every handle. */
static PyObject *device_new(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *api, *params;
  unsigned long long main_fn, shape_fn, cu_ctx, stream;
  int dev_type, dev_id, keeps, nout;
  if (!PyArg_ParseTuple(args, "OKKOiiKKii", &api, &main_fn, &shape_fn, &params, &dev_type, &dev_id, &cu_ctx,
                        &stream, &keeps, &nout))
    return NULL;
  Py_ssize_t napi = PySequence_Size(api), np = PySequence_Size(params);
  if (napi != (Py_ssize_t)(sizeof(rh_api) / sizeof(void *)) || np < 0 || nout < 1 || nout > RH_MAXOUT ||
      !main_fn || !shape_fn) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "device_new: bad arguments");
    return NULL;
  }
  rh_device *d = (rh_device *)calloc(1, sizeof(rh_device));
  if (!d) return PyErr_NoMemory();
  void **fns = (void **)&d->api;
  for (Py_ssize_t i = 0; i < napi; i++) fns[i] = (void *)(uintptr_t)item_i64(api, i);
  if (!d->api.call || !d->api.decref || !d->api.incref || !d->api.from_dlpack || !d->api.set_stream ||
      !d->api.error_move || (dev_type == 2 && (!d->api.ctx_set_current || !d->api.h2d || !d->api.d2h ||
                                               !d->api.sync || !d->api.host_alloc || !d->api.host_free))) {
    free(d);
    PyErr_SetString(PyExc_ValueError, "device_new: an entry point is missing");
    return NULL;
  }
  d->params = (void **)calloc((size_t)(np ? np : 1), sizeof(void *));
  if (!d->params) {
    free(d);
    return PyErr_NoMemory();
  }
  for (Py_ssize_t i = 0; i < np; i++) {
    d->params[i] = (void *)(uintptr_t)item_i64(params, i);
    d->api.incref(d->params[i]);
  }
  d->nparams = (int32_t)np;
  d->main_fn = (void *)(uintptr_t)main_fn;
  d->shape_fn = (void *)(uintptr_t)shape_fn;
  d->api.incref(d->main_fn);
  d->api.incref(d->shape_fn);
  d->dev_type = dev_type;
  d->dev_id = dev_id;
  d->cu_ctx = (void *)(uintptr_t)cu_ctx;
  d->stream = (void *)(uintptr_t)stream;
  d->keeps = keeps;
  d->nout = nout;
  PyObject *cap = PyCapsule_New(d, "recom_tvm_host.device", device_free);
  if (!cap) rh_device_free(d);
  return cap;
}

/* arm(ctx, device, staging address, device staging address, capacity, key pairs or None): the next run() /
 * run_kjt() / resume() that completes the host stage with a layout that fits the staging buffer also writes it and
 * runs the device part before taking the GIL back, and returns served()'s outcome instead of ("ok", bytes). A
 * request that needs more room, Python, or is refused disarms it. */
static ctx_state *arm_from(PyObject *args) {
  PyObject *cap, *dcap, *pairs;
  unsigned long long host, dev;
  long long capacity;
  if (!PyArg_ParseTuple(args, "OOKKLO", &cap, &dcap, &host, &dev, &capacity, &pairs)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs || !PyCapsule_GetPointer(dcap, "recom_tvm_host.device")) return NULL;
  disarm(cs);
  Py_INCREF(dcap);
  Py_INCREF(pairs);
  cs->serve_dev = dcap;
  cs->serve_pairs = pairs;
  cs->serve_host = host;
  cs->serve_addr = dev;
  cs->serve_cap = capacity;
  return cs;
}

static PyObject *arm(PyObject *self, PyObject *args) {
  (void)self;
  if (!arm_from(args)) return NULL;
  Py_RETURN_NONE;
}

/* guard(ctx, argument, axis, keys): the armed device part runs only where the request's argument `argument` has one
 * of `keys` at dim `axis` (the capture keys its VM has captured); argument -1 lifts the guard. */
static PyObject *guard(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap, *keys;
  int arg, axis;
  if (!PyArg_ParseTuple(args, "OiiO", &cap, &arg, &axis, &keys)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  Py_ssize_t n = PySequence_Size(keys);
  if (n < 0) return NULL;
  int64_t *k = (int64_t *)malloc((size_t)(n ? n : 1) * sizeof(int64_t));
  if (!k) return PyErr_NoMemory();
  for (Py_ssize_t i = 0; i < n; i++) {
    k[i] = item_i64(keys, i);
    if (PyErr_Occurred()) {
      free(k);
      return NULL;
    }
  }
  free(cs->guard_keys);
  cs->guard_keys = k;
  cs->guard_n = n;
  cs->guard_arg = arg < 0 ? -1 : arg;
  cs->guard_axis = axis < 0 ? 0 : axis;
  Py_RETURN_NONE;
}

/* serve(ctx, device, staging address, device staging address, capacity, key pairs or None) after run() said "ok":
 * arm() with these, then at once what an armed run does after its host stage (serve_armed: write the staging
 * buffer, the device part), the GIL released. -> as served() */
static PyObject *serve(PyObject *self, PyObject *args) {
  (void)self;
  ctx_state *cs = arm_from(args);
  if (!cs) return NULL;
  rh_device *d = armed(cs);
  int drc;
  Py_BEGIN_ALLOW_THREADS
  drc = serve_armed(cs, d, RH_OK);
  Py_END_ALLOW_THREADS
  if (drc == -1) {  /* the buffer is smaller than the layout: rh_write's own refusal */
    rh_refuse(cs->c, "staging buffer too small");
    drc = -2;
  }
  return outcome(cs, d, RH_OK, drc);
}

/* the outcome of an armed context's device part: ("served", [(bytearray, DLPack code, bits, shape)] per output,
 * pool key) | ("error" | "unsupported" | "cuda", why). The pool key: the (argument, axis) dims the arm's pairs name,
 * or every argument's shape (pairs None). */
static PyObject *served(ctx_state *cs, rh_device *d, int rc) {
  rh_ctx *c = cs->c;
  PyObject *pairs = cs->serve_pairs;
  if (rc) return Py_BuildValue("(ss)", rc == RH_DEV_UNSUPPORTED ? "unsupported" : rc == RH_DEV_CUDA ? "cuda" : "error",
                               d->msg);
  PyObject *outs = PyList_New(d->out_n), *key = NULL;
  for (int k = 0; outs && k < d->out_n; k++) {
    PyObject *data = PyByteArray_FromStringAndSize((const char *)d->out_buf + d->out_off[k],
                                                   (Py_ssize_t)d->out_bytes[k]);
    PyObject *shape = dims_tuple(d->out_shape[k], d->out_ndim[k]);
    PyObject *item = data && shape ? Py_BuildValue("(OiiO)", data, d->out_dtype[k].code, d->out_dtype[k].bits, shape)
                                   : NULL;
    Py_XDECREF(data);
    Py_XDECREF(shape);
    if (!item) {
      Py_CLEAR(outs);
      break;
    }
    PyList_SetItem(outs, k, item);
  }
  if (!outs) return NULL;
  if (pairs != Py_None) {
    Py_ssize_t n = PySequence_Size(pairs);
    key = n >= 0 ? PyTuple_New(n) : NULL;
    for (Py_ssize_t i = 0; key && i < n; i++) {
      PyObject *pr = PySequence_GetItem(pairs, i);
      int64_t arg = pr ? item_i64(pr, 0) : -1, axis = pr ? item_i64(pr, 1) : -1;
      Py_XDECREF(pr);
      int64_t v = arg >= 0 && arg < c->prog->nargs && axis >= 0 && axis < c->arg_ndim[arg]
                      ? c->arg_shape[(size_t)arg * RH_MAXDIM + axis] : -1;
      PyTuple_SetItem(key, i, PyLong_FromLongLong(v));
    }
  } else {
    key = PyTuple_New(c->prog->nargs);
    for (int i = 0; key && i < c->prog->nargs; i++) {
      PyObject *s = dims_tuple(c->arg_shape + (size_t)i * RH_MAXDIM, c->arg_ndim[i]);
      if (!s) Py_CLEAR(key);
      else PyTuple_SetItem(key, i, s);
    }
  }
  if (PyErr_Occurred()) {
    Py_DECREF(outs);
    Py_XDECREF(key);
    return NULL;
  }
  PyObject *r = Py_BuildValue("(sOO)", "served", outs, key);
  Py_DECREF(outs);
  Py_DECREF(key);
  return r;
}

/* timings(ctx) -> ns spent in the last request's steps: ingest, feed checks, sorting, ops, checks + layout, write */
static PyObject *timings(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap;
  if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  const int64_t *ns = cs->c->ns;
  return Py_BuildValue("(LLLLLL)", (long long)ns[0], (long long)ns[1], (long long)ns[2], (long long)ns[3],
                       (long long)ns[4], (long long)ns[5]);
}

/* set_threads(n[, parallel_min[, spin_us]]): threads per request (the caller included); requests of fewer input
 * elements than parallel_min run on their caller alone; idle workers poll spin_us before they sleep */
static PyObject *set_threads(PyObject *self, PyObject *args) {
  (void)self;
  int n;
  long long min_elements = 0, spin_us = 50;
  if (!PyArg_ParseTuple(args, "i|LL", &n, &min_elements, &spin_us)) return NULL;
  rh_set_threads(n);
  rh_set_parallel_min(min_elements);
  rh_set_spin_ns(spin_us * 1000);
  Py_RETURN_NONE;
}

/* strings_outside_gil([flag]) -> whether string elements are now read outside the GIL (flag 0 turns it off; 1 turns
 * it back on where the fields check passed at import; no flag: unchanged) */
static PyObject *strings_outside_gil(PyObject *self, PyObject *args) {
  (void)self;
  int flag = -1;
  if (!PyArg_ParseTuple(args, "|p", &flag)) return NULL;
  if (flag >= 0) str_outside = flag;
  return PyBool_FromLong(str_direct && str_outside);
}

/* task_graph(flag): a request's checks and host ops as one job of dependent tasks (1) or stage by stage (0) */
static PyObject *task_graph(PyObject *self, PyObject *args) {
  (void)self;
  int flag;
  if (!PyArg_ParseTuple(args, "p", &flag)) return NULL;
  rh_set_task_graph(flag);
  Py_RETURN_NONE;
}

/* feeds_outside_gil([flag]) -> whether run() now reads a feeds dict in the usual form without the GIL
 * (ingest_unlocked; flag 0 turns it off) */
static PyObject *feeds_outside_gil(PyObject *self, PyObject *args) {
  (void)self;
  int flag = -1;
  if (!PyArg_ParseTuple(args, "|p", &flag)) return NULL;
  if (flag >= 0) feeds_outside = flag;
  return PyBool_FromLong(feeds_outside);
}

/* unlocked_reads(ctx) -> (requests read without the GIL, requests that was tried on) on this context */
static PyObject *unlocked_reads(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cap;
  if (!PyArg_ParseTuple(args, "O", &cap)) return NULL;
  ctx_state *cs = get_ctx(cap);
  if (!cs) return NULL;
  return Py_BuildValue("(LL)", cs->unlocked_hits, cs->unlocked_tries);
}

/* direct_numpy() -> (on, type numbers checked): whether numpy arrays are read through their fields (see np_fields) */
static PyObject *direct_numpy(PyObject *self, PyObject *args) {
  (void)self;
  (void)args;
  int n = 0;
  for (int i = 0; i < NP_TYPES; i++) n += np_checked[i];
  return Py_BuildValue("(ii)", np_direct, n);
}

static PyMethodDef METHODS[] = {
    {"direct_numpy", direct_numpy, METH_NOARGS, "whether numpy arrays are read directly, type numbers checked"},
    {"program_new", program_new, METH_VARARGS, "compile a request program"},
    {"context_new", context_new, METH_VARARGS, "a per-thread request context"},
    {"run", run, METH_VARARGS, "run a request from its feeds dict"},
    {"run_kjt", run_kjt, METH_VARARGS, "run a request in the keyed-jagged layout"},
    {"set", set_tensor, METH_VARARGS, "set a tensor slot from an array"},
    {"set_decimal", set_decimal, METH_VARARGS, "set a slot to AsString of integers"},
    {"resume", resume, METH_VARARGS, "continue a request"},
    {"get", get_tensor, METH_VARARGS, "a tensor slot, for a fallback op"},
    {"write", write_args, METH_VARARGS, "write the module's arguments into a staging buffer"},
    {"arguments", arguments, METH_VARARGS, "offsets and shapes of the module's arguments"},
    {"symbols", symbols, METH_VARARGS, "bound symbol values"},
    {"finish", finish, METH_VARARGS, "release the request's buffers"},
    {"fingerprint64", fingerprint64, METH_VARARGS, "TF's Fingerprint64 of strings laid end to end"},
    {"dlpack", dlpack, METH_VARARGS, "a DLPack capsule for memory at an address (staging buffer views)"},
    {"device_new", device_new, METH_VARARGS, "a VM slot's device part (rh_device) for serve()"},
    {"serve", serve, METH_VARARGS, "write the staging buffer and run the device part, GIL released"},
    {"arm", arm, METH_VARARGS, "run the device part at the end of the next host stage (as serve)"},
    {"guard", guard, METH_VARARGS, "run the armed device part only for these capture keys (CUDA graphs)"},
    {"timings", timings, METH_VARARGS, "ns per step of the last request"},
    {"set_threads", set_threads, METH_VARARGS, "threads per request"},
    {"strings_outside_gil", strings_outside_gil, METH_VARARGS, "read string elements outside the GIL or not"},
    {"task_graph", task_graph, METH_VARARGS, "run checks and host ops as one job of dependent tasks (1) or stage by stage (0)"},
    {"feeds_outside_gil", feeds_outside_gil, METH_VARARGS, "read feeds dicts in the usual form outside the GIL or not"},
    {"unlocked_reads", unlocked_reads, METH_VARARGS, "requests read without the GIL, requests tried"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "recom_tvm_host", NULL, -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_recom_tvm_host(void) {
  PyObject *m = PyModule_Create(&MODULE);
  calibrate_strings();
  if (m && PyModule_AddIntConstant(m, "STRINGS_OUTSIDE_GIL", str_direct) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  /* run() reads feeds dicts in the usual form without the GIL (ingest_unlocked) */
  if (m && PyModule_AddIntConstant(m, "FEEDS_OUTSIDE_GIL", 1) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  /* this library writes int32 packed inputs (a model recording packed_dtype int32 needs it) */
  if (m && PyModule_AddIntConstant(m, "PACKED_INT32", 1) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  /* serve(): the device part of a request in the host stage's GIL-free call (rh_device.c) */
  if (m && PyModule_AddIntConstant(m, "SERVE", 1) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  /* guard(): armed device parts of models with CUDA graphs, for the keys their VM has captured */
  if (m && PyModule_AddIntConstant(m, "GUARD", 1) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  /* and the device-hash region (a model whose spec.fused lists device_hash columns needs it; 2: with decimal
   * segments, AsString of integers shipped as the integers) */
  if (m && PyModule_AddIntConstant(m, "DEVICE_HASH", 2) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
