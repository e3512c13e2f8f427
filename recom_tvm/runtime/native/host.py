"""The native host stage from Python: load the library, run requests on per-thread contexts.

A request: `run` reads the feeds dict (one lookup per feature, one buffer per feed tensor, with the GIL), then
checks, sorts, hashes, binds and lays out the arguments with the GIL released; `write` packs them into the
caller's staging buffer, GIL released. Python steps in only where the request needs it:
- a feed in a form the core does not read in place (a list, another dtype, a SparseTensor-like object) is
  converted by the reference's own `_convert` (so its errors are the reference's), then handed back;
- a host-plan op the core does not implement (or one listed in config.native_fallback_ops) runs its numpy
  implementation from host_stage.HOST_IMPLS on that op's inputs, and the outputs are handed back;
- anything the core refuses (a bad feed, an id out of range, inconsistent sizes, ...) returns None: the caller
  then runs the numpy reference on the same request, which raises TF's error with the feed's name (or computes
  the answer, for the rare valid inputs the core does not take). Errors are therefore the reference's, exactly.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import threading

import numpy as np

from ... import config
from ..assertions import check_all
from ..feeds import _convert, _ragged_parts, _sparse_parts
from ..fingerprint import DecimalStrings
from ..fused_layout import TEXT_DECIMAL, segment_text
from ..host_stage import HOST_IMPLS, _const
from ..keyed_jagged import KeyedJagged
from ..spec import InputSpec
from ..strings import from_buffer
from .program import DTYPE, NUMPY, PARTS, Program, compile_program

_LIBS: dict[str, object] = {}
_DONE = frozenset(("ok", "served", "error", "unsupported", "cuda"))  # run()'s outcomes that end a request
# per loaded library: (threads per request, parallel minimum, strings / feeds outside the GIL, spin, task graph)
_THREADS: dict[int, tuple] = {}


def _set_threads(lib) -> None:
    want = (config.native_threads, config.native_parallel_min, config.native_strings_outside_gil,
            config.native_feeds_outside_gil, config.native_spin_us, config.native_task_graph)
    if _THREADS.get(id(lib)) != want:
        try:
            lib.set_threads(*want[:2], want[4])
        except TypeError:  # a library built before the spin knob, or before the parallel minimum
            try:
                lib.set_threads(*want[:2])
            except TypeError:
                lib.set_threads(want[0])
        if hasattr(lib, "strings_outside_gil"):  # (libraries built before it read strings with the GIL)
            lib.strings_outside_gil(bool(want[2]))
        if hasattr(lib, "feeds_outside_gil"):  # (and feeds dicts with it)
            lib.feeds_outside_gil(bool(want[3]))
        if hasattr(lib, "task_graph"):  # (libraries built before it ran stage by stage)
            lib.task_graph(bool(want[5]))
        _THREADS[id(lib)] = want
_LOCK = threading.Lock()


def load_library(path: str):
    """The `recom_tvm_host` extension module at `path` (built by recom_tvm.native_build), loaded once."""
    with _LOCK:
        mod = _LIBS.get(path)
        if mod is None:
            loader = importlib.machinery.ExtensionFileLoader("recom_tvm_host", path)
            spec = importlib.util.spec_from_file_location("recom_tvm_host", path, loader=loader)
            mod = importlib.util.module_from_spec(spec)
            loader.exec_module(mod)
            _LIBS[path] = mod
        return mod


class NativeHost:
    """One model's native program. Contexts (`context()`) are per thread; everything else is shared."""

    def __init__(self, lib, spec: InputSpec) -> None:
        self.lib = lib
        self.spec = spec
        fallback = frozenset(o.strip() for o in config.native_fallback_ops.split(",") if o.strip())
        self.program: Program = compile_program(spec, np.ndarray, fallback)
        if any(i["source"] == "packed" and i["dtype"] == "int32" for i in self.program.module_args) and \
                not getattr(lib, "PACKED_INT32", 0):
            raise ValueError("the model packs int32 and its native host library predates int32 packing")
        segments = (spec.fused.get("device_hash") or ()) if spec.fused else ()
        decimal = any(segment_text(h) == TEXT_DECIMAL for h in segments)
        if segments and getattr(lib, "DEVICE_HASH", 0) < (2 if decimal else 1):  # 2: with decimal segments
            what = "AsString of integers" if decimal else "strings"
            raise ValueError(f"the model hashes {what} on the device and its native host library predates it")
        self.handle = lib.program_new(*self.program.args)
        self.refusals = 0         # requests the core handed to the numpy reference
        self.last_refusal = ""
        self.op_fallbacks = 0     # host-plan ops run in numpy
        self._parts = [(f, PARTS[f["kind"]]) for f in spec.features]
        self._key_orders: dict[tuple, np.ndarray] = {}  # keyed-jagged key order -> feature index per key

    def context(self):
        return self.lib.context_new(self.handle)

    def timings(self, ctx) -> dict[str, float]:
        """ms spent in the last request's steps on this context."""
        names = ("ingest", "feed checks", "sort", "host ops", "checks+bind+layout", "write")
        return {k: v / 1e6 for k, v in zip(names, self.lib.timings(ctx))}

    # ------------------------------------------------------------------------------------------- requests
    def request(self, ctx, feeds, destination) -> tuple[list, int] | None:
        """Run one request (a feeds dict or a KeyedJagged). destination(nbytes) -> (address, capacity) of the
        staging buffer to write into. -> ([(byte offset, shape)] per module argument (offset -1: a shape argument,
        its values in `shape`), bytes written), or None when the core refused the request (run the reference
        then)."""
        return self.complete(ctx, self.begin(ctx, feeds), destination)

    def request_kjt(self, ctx, kjt, destination) -> tuple[list, int] | None:
        """request() for a KeyedJagged request (runtime/keyed_jagged.py), read in place."""
        return self.complete(ctx, self._start_kjt(ctx, kjt), destination)

    def begin(self, ctx, feeds) -> int | tuple | None:
        """A request's host stage up to its layout -> the staging buffer's bytes, or None when the core refused
        it. The caller then writes it: `lib.write` (request()), or `lib.serve` with the device part. On a context
        armed for it (`lib.arm`), the device part's outcome instead: ("served", outputs, pool key) or (failure,
        why), as lib.serve returns it."""
        try:
            if isinstance(feeds, KeyedJagged):
                return self._start_kjt(ctx, feeds)
            lib = self.lib
            _set_threads(lib)
            return self._drive(ctx, lib.run(ctx, feeds, config.max_batch, config.max_request_elements))
        except BaseException:
            self.lib.finish(ctx)  # (disarms it)
            raise

    def _start_kjt(self, ctx, kjt) -> int | None:
        lib = self.lib
        _set_threads(lib)
        order = self._key_orders.get(kjt.keys)
        if order is None:
            index = {f["name"]: i for i, f in enumerate(self.spec.features)}
            order = np.array([index.get(k, -1) for k in kjt.keys], np.int64)
            if len(self._key_orders) < 64:
                self._key_orders[kjt.keys] = order
        values = {DTYPE[d]: v for d, v in kjt.values.items() if d in DTYPE and d != "string"}
        if len(values) != len(kjt.values):
            return self._refused(ctx, "keyed-jagged values of a dtype the native path does not read")
        st = lib.run_kjt(ctx, order, kjt.lengths, int(kjt.batch), values, kjt.strings, config.max_batch,
                         config.max_request_elements)
        return self._drive(ctx, st)

    def complete(self, ctx, nbytes: int | None, destination) -> tuple[list, int] | None:
        """A request whose host stage `begin` ran (-> nbytes; None: refused) written into destination's buffer,
        as request() returns it."""
        if nbytes is None:
            return None
        address, capacity = destination(nbytes)
        self.lib.write(ctx, address, capacity)
        return self.lib.arguments(ctx), nbytes

    def _drive(self, ctx, st) -> int | tuple | None:
        lib = self.lib
        while st[0] not in _DONE:
            tag = st[0]
            if tag == "convert":
                ok = self._convert(ctx, st[1])
                st = lib.resume(ctx, False) if ok else ("refuse", "a feed the reference's conversion rejects")
            elif tag == "op":
                ok = self._fallback_op(ctx, st[1])
                st = lib.resume(ctx, True) if ok else ("refuse", f"fallback op {st[1]} gave an unreadable result")
            else:
                return self._refused(ctx, st[1])
        if st[0] != "ok":  # an armed context: the device part ran (or failed)
            return st
        if self.program.general_assertions:
            values = lib.symbols(ctx)
            env = {name: v for name, v in zip(self.program.symbols, values) if v is not None}
            try:
                check_all(self.spec.assertions, env)
            except Exception as err:  # noqa: BLE001 - the reference raises it, with its context
                return self._refused(ctx, f"assertion: {err}")
        return st[1]

    def _refused(self, ctx, why: str) -> None:
        self.lib.finish(ctx)
        self.refusals += 1
        self.last_refusal = why
        return None

    def _convert(self, ctx, pending: list) -> bool:
        """Feeds the core does not read in place, through the reference's conversion."""
        slots, placeholders = self.program.slots, self.spec.placeholders
        try:
            for f_index, part, value in pending:
                feature, parts = self._parts[f_index]
                name = feature["name"]
                if part < 0:  # a whole sparse / ragged feature in another form: split it as the reference does
                    split = _sparse_parts(name, value) if feature["kind"] == "sparse" else _ragged_parts(name, value)
                    todo = list(enumerate(split))
                else:
                    todo = [(part, value)]
                for k, val in todo:
                    t = feature["tensors"][parts[k]]
                    label = name if feature["kind"] == "dense" else f"{name}.{parts[k]}"
                    ph = placeholders[t]
                    arr = _convert(label, val, ph["dtype"], ph["shape"])
                    if not self.lib.set(ctx, slots[t], arr, DTYPE[ph["dtype"]]):
                        return False
        except Exception:  # noqa: BLE001 - the reference raises it for the whole request, in its order
            return False
        return True

    def _fallback_op(self, ctx, node_index: int) -> bool:
        """Run one host-plan node with its numpy implementation."""
        node = self.program.plan[node_index]
        slots = self.program.slots
        self.op_fallbacks += 1
        args = []
        for i in node["inputs"]:
            if "tensor" not in i:
                args.append(_const(i))
                continue
            x = self._export(ctx, slots[i["tensor"]])
            if isinstance(x, DecimalStrings) and node["op"] != "StringToHashBucketFast":
                x = np.asarray(x)  # as host_stage.run_host_stage hands it to every other op
            args.append(x)
        try:
            out = HOST_IMPLS[node["op"]](node, *args)
        except Exception:  # noqa: BLE001 - the reference raises it, for the whole request
            return False
        for name, val in zip(node["outputs"], out if isinstance(out, tuple) else (out,)):
            s = slots[name]
            if isinstance(val, DecimalStrings):
                ok = self.lib.set_decimal(ctx, s, np.ascontiguousarray(val.ints, dtype=np.int64), DTYPE["int64"])
            else:
                arr = np.asarray(val)
                if not arr.flags.c_contiguous:  # (np.ascontiguousarray alone would make a scalar rank 1)
                    arr = np.ascontiguousarray(arr).reshape(arr.shape)
                ok = self.lib.set(ctx, s, arr, -1)
            if not ok:
                return False
        return True

    def _export(self, ctx, slot: int):
        """A slot's tensor as the reference holds it: numpy arrays, strings as 'S' (object bytes when one
        ends in NUL), AsString of integers as DecimalStrings."""
        x = self.lib.get(ctx, slot)
        if not isinstance(x, tuple):
            return x
        if x[0] == "num":
            return np.frombuffer(x[3], dtype=NUMPY[x[1]]).reshape(x[2])
        if x[0] == "dec":
            return DecimalStrings(np.frombuffer(x[2], dtype=np.int64).reshape(x[1]))
        _, shape, data, lengths = x
        buf = np.frombuffer(data, np.uint8)
        lens = np.frombuffer(lengths, np.int64)
        arr = from_buffer(buf, lens, shape)
        if arr is None:
            ends = np.cumsum(lens)
            out = np.empty(lens.size, dtype=object)
            out[:] = [data[e - n:e] for e, n in zip(ends.tolist(), lens.tolist())]
            arr = out.reshape(shape)
        return arr
