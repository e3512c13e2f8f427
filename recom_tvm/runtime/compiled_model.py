"""CompiledModel: TF-style feeds in, numpy out, with the TVM runtime only (no compiler, TF or SymEngine)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Mapping

import numpy as np
import tvm
import tvm.runtime.vm  # not imported by `import tvm` in runtime-only mode
import tvm_ffi

from .. import config
from ..errors import FeedError, InvalidArgumentError, ModelFormatError
from . import builtins  # noqa: F401  (registers the packed functions compiled modules call)
from .assertions import assertion_symbols, check_all
from .binding import Binder, inconsistent_sizes
from .capture_gate import CaptureGate, capture_key_index, uses_cuda_graphs
from .feeds import cast_exact, check_ids, flush_denormals, normalize_feeds, sort_rows
from .host_stage import run_host_stage
from . import compact
from .keyed_jagged import KeyedJagged
from .row_broadcast import repeat_one_row_feeds
from .native.device_api import NUMPY_OF_DL, SERVED_DTYPES
from .packer import PACKED, PACKED_SIZES, apply_recipes, hash_strings_count, is_virtual_zeros, pack
from .request_slots import Slot, SlotPool
from .spec import InputSpec

_IDENT = re.compile(r"^[A-Za-z_]\w*$")
_DIM_KIND: dict[str, object] = {}  # dim text -> "sym" | int | "expr" (parsed once)


def _device_for(kind: str, device=None):
    if device is not None:
        return device
    return tvm.cuda(0) if kind == "cuda" else tvm.cpu(0)


class CompiledModel:
    """A built model. `run(feeds)` takes what the TF serving signature takes and returns {output: array}."""

    def __init__(self, executable, spec: InputSpec, params: Mapping[str, np.ndarray], target_kind: str,
                 device=None, host_library: str | None = None) -> None:
        self.executable = executable
        self.spec = spec
        self.target_kind = target_kind
        self._device = device
        # Host params: the importer's (or the loaded file's), kept as given; params the passes derive from
        # them (the fused kernel's flat tables) are built when the model first runs or is exported.
        self._params_host = dict(params)
        self._overrides: dict = {}
        self._params_dev: list | None = None
        self._lock = threading.Lock()
        self._pool = SlotPool()  # one VM, native context and staging buffer per in-flight request
        # the native host stage (runtime/native): the compiled library's path (build / load set it)
        self.host_library = host_library
        self._native = None  # NativeHost, or False where it cannot run this model (native_error says why)
        self.native_error: str | None = None
        self._prepare_ctx = threading.local()
        self.pool_releases = 0  # times the VM's cached buffers were released (see _bound_pool)
        self.serve_error: str | None = None  # why run() left the one native call for this model (_serve_off)
        # the fused kernel's schedules, [[max batch or None, KernelConfig fields], ...] (set by build / load)
        self.kernel_schedules: list | None = None
        missing = [i["ref"] for i in spec.module_inputs if i["source"] == "param" and i["ref"] not in params
                   and i["ref"] not in spec.param_recipes]
        if missing:
            raise ValueError(f"params missing for {missing[:5]}")

    def _source_table_shape(self, name: str) -> tuple:
        """[rows, dim] of an imported table merged into a flat parameter (a loaded compact model keeps only the
        encoded flat table: the recipe records the shapes)."""
        if name in self._params_host:
            return tuple(self._params_host[name].shape)
        for recipe in self.spec.param_recipes.values():
            if name in (recipe.get("shapes") or {}):
                return tuple(int(d) for d in recipe["shapes"][name])
        raise KeyError(f"{name!r}: no shape recorded for this merged table")

    def param_names(self) -> list[str]:
        """The parameters the module reads, in call order."""
        return [i["ref"] for i in self.spec.module_inputs if i["source"] == "param"]

    def set_params(self, params: Mapping) -> None:
        """Replace parameters: numpy arrays, or device tensors (anything with __dlpack__, e.g. torch.cuda)
        used in place. For tables too large to ship (generated on the GPU, or read from a checkpoint there).

        Names are the module's parameters, or the imported tables the passes merged into one (the fused
        kernel's flat tables): setting those rebuilds the merged parameter from them."""
        sources = {t for r in self.spec.param_recipes.values() for t in r.get("concat_flat", [])}
        declared = {i["ref"]: i for i in self.spec.module_inputs if i["source"] == "param"}
        for name, value in params.items():  # check all before changing any
            if name in sources:
                # a merged table's layout (rows, row length: the kernel's meta) is fixed when the model is built
                _check_param(name, value, self._source_table_shape(name), "float32", "table")
            elif name in declared:
                _check_param(name, value, tuple(int(d) for d in declared[name]["shape"]), declared[name]["dtype"],
                             "parameter")
            else:
                raise KeyError(f"{name!r} is not a parameter of this model; it has {self.param_names()[:8]}...")
        for name, value in params.items():
            if name in sources:
                value = _host_array(value)  # a device tensor of an imported table: encoded on the host
                for derived, recipe in self.spec.param_recipes.items():
                    if name not in recipe.get("concat_flat", []):
                        continue
                    if compact.is_compact(recipe) and not all(t in self._params_host for t in recipe["concat_flat"]):
                        # a loaded model carries the encoded tables only: re-encode this one in place
                        flat = self._host_param(derived)
                        if is_virtual_zeros(flat) or not flat.flags.writeable:
                            flat = np.array(flat, dtype=np.float32)  # once; later tables are written in place
                        self._params_host[derived] = compact.write_table(recipe, flat, name, value)
                    else:
                        self._params_host[name] = value
                        self._params_host.pop(derived, None)
                    self._overrides.pop(derived, None)
            else:
                self._overrides[name] = value
        # the VMs' captured CUDA graphs read the old parameters' addresses: new slots (VMs), once the work queued on
        # the old parameters is done (a request in flight meanwhile gives its slot back to the old pool)
        if self._pool.created:
            self.device.sync()
            self._pool = SlotPool()
        self._params_dev = None

    def param_shapes(self) -> dict[str, tuple]:
        """{parameter: shape} of the parameters the module reads (to allocate them on the device)."""
        return {name: tuple(self._host_param(name).shape) for name in self.param_names()}

    def table_layout(self, name: str) -> list[tuple[str, int, int, int]]:
        """(table, offset in floats, rows, padded row length) of the tables merged into parameter `name`, for
        filling it directly on the device."""
        from .packer import flat_table_layout

        recipe = self.spec.param_recipes[name]
        return flat_table_layout(recipe, {t: self._params_host[t].shape for t in recipe["concat_flat"]
                                          if t in self._params_host})

    def table_dtypes(self, name: str) -> dict[str, str]:
        """{table: dtype} of the tables merged into parameter `name` ("float32", or the compact formats of
        recom_tvm.runtime.compact: build(..., table_dtype=...))."""
        return compact.table_dtypes(self.spec.param_recipes[name])

    def memory_usage(self, feeds: Mapping | None = None) -> dict:
        """Device memory this model needs, in bytes: "tables" (the fused kernel's, with "tables_by_dtype"),
        "weights" (every other parameter) and, given a request's `feeds`, "workspace": every tensor that request
        allocates (an upper bound: the VM's pool reuses freed buffers), with its "batch"; "total" adds them."""
        from . import memory

        return memory.usage(self, feeds)

    def check_device_memory(self) -> None:
        """Raise DeviceMemoryError, naming both sizes, if the parameters still to upload do not fit in the
        device's free memory (checked before the first run uploads them, and at `load`)."""
        from . import memory

        memory.check_model(self, lambda name: _on_device(self._overrides.get(name)))

    def _host_param(self, name: str) -> np.ndarray:
        if name not in self._params_host and name in self.spec.param_recipes:
            self._params_host.update(apply_recipes({name: self.spec.param_recipes[name]}, self._params_host))
        return self._params_host[name]

    # ---------------------------------------------------------------------------------------------- setup
    @property
    def device(self):
        return _device_for(self.target_kind, self._device)

    def _device_params(self) -> list:
        params = self._params_dev
        if params is None:
            with self._lock:
                if self._params_dev is None:
                    dev = self.device
                    self.check_device_memory()  # a clear error instead of the device's out-of-memory trace
                    self._params_dev = [self._device_param(name, dev) for name in self.param_names()]
                params = self._params_dev
        return params

    def _new_slot(self) -> Slot:
        gate = self._capture_gate()
        # a VM's creation loads the module onto the device, which a graph capture on another thread forbids
        # (cudaErrorStreamCaptureImplicit: 8 serving threads with CUDA graphs on the H100)
        with gate.shared() if gate else _NO_GATE:
            return Slot(self.executable, self.device, self.native_host(), graphs=bool(gate),
                        n_outputs=len(self.spec.outputs))

    def native_host(self):
        """The native host stage of this model (a NativeHost), or None: config.host_stage is "numpy", the model
        carries no native library, or the library cannot run it (native_error says why)."""
        if config.host_stage != "native" or not self.host_library:
            return None
        if self._native is None:
            with self._lock:
                if self._native is None:
                    try:
                        from .native import NativeHost, load_library

                        self._native = NativeHost(load_library(self.host_library), self.spec)
                    except Exception as err:  # noqa: BLE001 - the numpy reference serves then
                        self._native = False
                        self.native_error = f"{type(err).__name__}: {err}"
                        config.log(f"native host stage off for this model: {self.native_error}")
        return self._native or None

    def _device_param(self, name: str, dev):
        value = self._overrides.get(name)
        if _on_device(value):
            return tvm.runtime.from_dlpack(value)
        arr = value if value is not None else self._host_param(name)
        if is_virtual_zeros(arr):  # a table without values in the graph: zeros unless set_params gave some
            return tvm.runtime.tensor(np.zeros(arr.shape, arr.dtype), dev)
        return tvm.runtime.tensor(np.asarray(arr, order="C"), dev)

    # ------------------------------------------------------------------------------------------------ run
    def prepare(self, feeds) -> list:
        """Validate feeds, run the host stage, and return the module's input arguments (host arrays / shapes).

        Native host stage by default (config.host_stage); the numpy reference where it refuses the request, which
        then raises TF's error. The arrays returned are the caller's (not a reused buffer)."""
        feeds = repeat_one_row_feeds(self.spec, with_defaults(self.spec, feeds))
        native = self.native_host()
        if native is not None:
            args = self.prepare_native(feeds, native)
            if args is not None:
                return args
        return self.prepare_reference(feeds)

    def prepare_native(self, feeds, native=None) -> list | None:
        """prepare() on the native host stage (`native`: a NativeHost, default this model's), or None where it
        refuses the request (the reference then decides: it raises, or computes the rare inputs it does not take)."""
        native = native or self.native_host()
        if native is None:
            return None
        local = self._prepare_ctx
        ctx = getattr(local, "ctx", None)
        if ctx is None or local.native is not native:
            ctx = local.ctx = native.context()
            local.native = native
        held = []

        def destination(nbytes: int) -> tuple[int, int]:
            buf = _reusable(local, max(nbytes, 1))
            held.append(buf)
            return buf.ctypes.data, buf.size

        res = native.request_kjt(ctx, feeds, destination) if isinstance(feeds, KeyedJagged) else \
            native.request(ctx, _as_dict(feeds), destination)
        if res is None:
            return None
        out = []
        for inp, (off, shape) in zip(native.program.module_args, res[0]):
            if off < 0:
                out.append(tvm_ffi.Shape(list(shape)))
            else:
                n = int(np.prod(shape)) if shape else 1
                out.append(np.frombuffer(held[0], inp["dtype"], count=n, offset=off).reshape(shape))
        return out

    def prepare_reference(self, feeds) -> list:
        """prepare() with the numpy reference host stage."""
        if isinstance(feeds, KeyedJagged):
            feeds = feeds.to_feeds(self.spec)
        env = host_env(self.spec, feeds)
        args, bound = self.arguments(env)
        if self.spec.assertions:
            values = {k: v for k, (v, _) in bound.items()}
            for sym in assertion_symbols(self.spec) - values.keys():
                # a size only the assertions read (the feed reaches the module through the host stage)
                tensor, axis, kind = self.spec.feed_symbols[sym]
                arr = env[tensor]
                values[sym] = int(np.asarray(arr).reshape(-1)[axis]) if kind == "value" else int(arr.shape[axis])
            check_all(self.spec.assertions, values)
        return args

    def arguments(self, env: dict) -> tuple[list, dict]:
        """The module's arguments from the host stage's tensors (packing the fused kernel's input), and the
        symbols bound on the way: ({symbol: (value, source)})."""
        bound: dict = {}
        # the module's own inputs first: one of them may be what tells the fused kernel's batch size (a column
        # left beside the kernel reads the only feed carrying it)
        for inp in self.spec.module_inputs:
            if inp["source"] in ("param", "packed"):
                continue
            arr = env[inp["ref"]]
            if inp["kind"] in ("shape", "shape_of"):
                vals = list(arr.shape) if inp["kind"] == "shape_of" else [int(v) for v in np.asarray(arr).reshape(-1)]
                self._bind(inp["shape"], vals, inp["ref"], bound, "value")
            else:
                self._bind(inp["shape"], list(arr.shape), inp["ref"], bound, "shape")
        for sym, (v, src) in pack_fused(self.spec, env, bound).items():
            self._bind([sym], [v], src, bound, "shape")
        args = []
        for inp in self.spec.module_inputs:
            if inp["source"] == "param":
                continue
            arr = env[inp["ref"]]
            if inp["kind"] in ("shape", "shape_of"):
                args.append(tvm_ffi.Shape(list(arr.shape) if inp["kind"] == "shape_of" else
                                          [int(v) for v in np.asarray(arr).reshape(-1)]))
            else:
                # feeds were converted to their placeholders' dtypes; a host-stage output of another dtype
                # than the module declares is converted only when exact (never wrapped); np.ascontiguousarray
                # makes a rank-0 array (a host-stage scalar) rank 1: keep the shape
                arr = np.asarray(arr)
                args.append(np.ascontiguousarray(cast_exact(self.spec.feed_of(inp["ref"]), arr, inp["dtype"]))
                            .reshape(arr.shape))
        return args, bound

    @staticmethod
    def _bind(dims: list[str], vals: list[int], label: str, bound: dict, what: str) -> None:
        if len(dims) != len(vals):
            raise FeedError(f"{label}: expected {len(dims)} {what} entries, got {len(vals)}")
        for d, v in zip(dims, vals):
            kind = _DIM_KIND.get(d)
            if kind is None:
                kind = _DIM_KIND[d] = "sym" if _IDENT.match(d) else int(d) if d.lstrip("-").isdigit() else "expr"
            if kind == "sym":
                if v < 0:  # (shapes are never negative: a fed value the model reads as a size)
                    raise InvalidArgumentError(
                        f"{label}: {what} {v} where the model needs a size (>= 0): the compiled model reads "
                        f"this feed's values as sizes (a num_segments, a dense shape, a bincount size)")
                old = bound.get(d)
                if old is None:
                    bound[d] = (v, label)
                elif old[0] != v:
                    raise InvalidArgumentError(inconsistent_sizes(label, d, v, old[1], old[0]))
            elif kind != "expr" and kind != v:
                raise FeedError(f"{label}: expected {what} {dims}, got {vals}")

    def run(self, feeds) -> dict[str, np.ndarray]:
        """Run one request: feeds keyed by feature (or placeholder) name, or a KeyedJagged request
        (runtime/keyed_jagged.py) -> {output name: numpy array}.

        The request path: the native host stage writes every argument into this request's staging buffer (pinned
        on CUDA), one host->device copy, the module on one VM of the pool, outputs copied back. Threads run
        requests concurrently (config.max_vms VMs); the host stage releases the GIL, and with config.native_serve
        the device part runs in the same GIL-free native call (_serve)."""
        feeds = repeat_one_row_feeds(self.spec, with_defaults(self.spec, feeds))
        gate = self._capture_gate()
        slot = self._pool.acquire(self._new_slot)
        try:
            with gate.shared() if gate else _NO_GATE:  # device work (params, staging buffers): not during a capture
                params = self._device_params()
                descs = args = host_done = None
                native = self.native_host()
                if native is not None and (gate is None or self._guards(native)) and self._serves(native):
                    out = self._serve(slot, native, params, feeds, bool(gate))
                    if isinstance(out, _HostDone):  # a key to capture (or a buffer to grow): the device part below
                        host_done = out.nbytes
                    elif out is not None and out is not _RETRY:
                        return out
                    elif out is None:  # refused: the reference decides, the core is not asked again
                        native = None
                if native is not None:
                    ctx = slot.context(native)
                    if host_done is not None:
                        res = native.complete(ctx, host_done, slot.reserve)
                    else:
                        res = native.request_kjt(ctx, feeds, slot.reserve) if isinstance(feeds, KeyedJagged) else \
                            native.request(ctx, _as_dict(feeds), slot.reserve)
                    if res is not None:
                        descs = res
                if descs is None:
                    host_args = self.prepare_reference(feeds)
            shapes = [s for _, s in descs[0]] if descs is not None else None  # Python tuples: cheap to key on
            key = self._capture_key(shapes if shapes is not None else host_args)
            stream = slot.stream()
            with self._device_section(gate, slot, key), \
                    tvm_ffi.use_raw_stream(self.device, stream.handle) if stream else _NO_GATE:
                if descs is not None:
                    args = slot.arguments(descs[0], native.program.module_args, descs[1], stream)
                else:
                    args = self.upload(host_args)  # TVM's copies on the default stream: the slot's waits for them
                return self._call(slot, args, params, True, stream, shapes)
        finally:
            self._pool.release(slot)

    def _guards(self, native) -> bool:
        """Whether a model with CUDA graphs can take the one-call path: the library guards armed device parts by
        capture key (GUARD), and an argument carries the key (capture_key_index)."""
        return bool(getattr(native.lib, "GUARD", 0)) and self.__dict__.get("_gate_key") is not None

    def _serves(self, native) -> bool:
        """Whether run() takes the one-call path (native_serve): the library has it, every output is a plain
        numpy dtype, and no earlier request found an output it cannot hand back."""
        ok = self.__dict__.get("_serve_ok")
        if ok is None:
            ok = self._serve_ok = bool(getattr(native.lib, "SERVE", 0)) and \
                all(o["dtype"] in SERVED_DTYPES for o in self.spec.outputs)
        return ok and config.native_serve

    def _serve(self, slot: Slot, native, params: list, feeds, graphs: bool = False):
        """run() in one native call: the host stage (lib.run: GIL released once the feeds are read), then on the
        same GIL-free stretch (the context armed) the staging buffer written and copied in, main, the outputs
        copied back, one synchronisation. A request that outgrows the staging buffer or whose symbols Python
        checks takes a second call for its device part (lib.serve). -> the outputs; None where the core refused
        the request (the numpy reference decides); _RETRY where the device part failed or cannot hand an output
        back (the step-by-step path runs the request again and raises the VM's error as it does).

        graphs (a model with CUDA graphs): the armed device part runs only for the batches this slot's VM has
        captured (lib.guard); any other request returns _HostDone after its host stage, and run() finishes it
        step by step, alone on the device where it may capture (_device_section)."""
        try:
            part = slot.device_part(native, params, slot.stream())
        except Exception as err:  # noqa: BLE001 - e.g. a tvm-ffi without an entry point: serve step by step
            return self._serve_off(f"{type(err).__name__}: {err}")
        ctx = slot.context(native)
        if graphs and slot.guarded != slot.captured:
            native.lib.guard(ctx, *self._gate_key, sorted(slot.captured))
            slot.guarded = set(slot.captured)
        index = self._pool_key_index()
        pairs = index if index is not False else None
        if not native.program.general_assertions:  # (else Python checks them between the two halves)
            native.lib.arm(ctx, part, *slot.staging(1), pairs)
        st = native.begin(ctx, feeds if isinstance(feeds, KeyedJagged) else _as_dict(feeds))
        if st is None:
            return None
        if isinstance(st, int) and graphs:  # a key to capture, a buffer to grow, or symbols Python checks
            return _HostDone(st)
        if isinstance(st, int):  # not armed, or the staging buffer must grow first
            st = native.lib.serve(ctx, part, *slot.staging(st), pairs)
        if st[0] != "served":
            return self._serve_off(st[1]) if st[0] == "unsupported" else _RETRY
        self._bound_pool_key(st[2])
        return {o["name"]: np.frombuffer(data, NUMPY_OF_DL[(code, bits)]).reshape(shape)
                for o, (data, code, bits, shape) in zip(self.spec.outputs, st[1])}

    @property
    def one_call(self) -> bool | None:
        """Whether run() serves this model in one native call (config.native_serve); None before its first
        request. When False, `serve_error` says why, if a request found it."""
        return self.__dict__.get("_serve_ok")

    def _serve_off(self, why: str):
        self._serve_ok = False
        self.serve_error = why
        config.log(f"one-call serving off for this model: {why}")
        return _RETRY

    def execute(self, args: list, copy_out: bool = True) -> dict:
        """Run the module on `prepare`'s arguments: host->device copies, the kernels, device->host copies.

        Arguments may already be device tensors (`upload`); copy_out=False returns the outputs as device
        tensors without waiting for them (for timing the device part alone)."""
        gate = self._capture_gate()
        slot = self._pool.acquire(self._new_slot)
        try:
            with gate.shared() if gate else _NO_GATE:
                params = self._device_params()
            with self._device_section(gate, slot, self._capture_key(args)):
                return self._call(slot, self.upload(args), params, copy_out)
        finally:
            self._pool.release(slot)

    # CUDA graphs: a request that may capture runs alone (runtime/capture_gate.py)
    def _capture_gate(self) -> CaptureGate | None:
        gate = self.__dict__.get("_gate")
        if gate is None:
            with self._lock:
                gate = self.__dict__.get("_gate")
                if gate is None:
                    gate = self._gate = CaptureGate() if uses_cuda_graphs(self.executable) else False
                    self._gate_key = capture_key_index(self.spec)
        return gate or None

    def _capture_key(self, shapes: list):
        """The batch of this request (what TVM keys its graphs by), or every argument shape where the batch is
        not an argument dim."""
        if not self.__dict__.get("_gate"):
            return None
        dims = [_dims(a) for a in shapes]
        if self._gate_key is None:
            return tuple(dims)
        i, axis = self._gate_key
        return dims[i][axis]

    @staticmethod
    @contextlib.contextmanager
    def _device_section(gate, slot, key):
        """Alone on the device for the first request of a capture key on this slot's VM, shared otherwise. The
        key counts as captured once that request succeeded (a failed capture is tried again, alone)."""
        if not gate:
            yield
        elif key in slot.captured:
            with gate.shared():
                yield
        else:
            with gate.exclusive():
                yield
            slot.captured.add(key)  # the slot is this thread's until released: no race on its set

    def _call(self, slot: Slot, args: list, params: list, copy_out: bool, stream=None, shapes=None) -> dict:
        """main on the slot's VM; with a stream, the outputs come back on it and the request's storages (`keep`)
        are released only after its synchronisation (backend/keep_storage.py). Without one (the default stream)
        they go back to the pool at once, as TVM's kills would: later work on any stream is queued after this.
        shapes: the arguments' shapes as Python tuples, where the caller has them (the native host stage's)."""
        self._bound_pool(shapes if shapes is not None else [_dims(a) for a in args])
        try:
            outs, keep = slot.call(args, params, len(self.spec.outputs))
            vals = slot.fetch(outs, stream) if copy_out else outs
        except Exception as err:  # noqa: BLE001 - translate the VM's errors into TF's kinds
            if stream is not None:  # what was queued ends before this request's memory can be reused
                stream.synchronize()
            raise _translate(err) from err
        del keep
        return {o["name"]: v for o, v in zip(self.spec.outputs, vals)}

    def _bound_pool(self, shapes: list) -> None:
        """Keep the VM's memory pool bounded: it caches freed buffers per size class and never gives them back,
        so a stream of requests of ever new sizes would grow it until the device is full. After
        config.pool_max_shapes distinct request sizes, the unused cached buffers are released. A request's size is
        the values of the symbols the module's allocations depend on (spec.pool_symbols, recorded at build: a
        fused model's batch), else every argument's shape (which differs in nearly every request)."""
        self._bound_pool_key(self._pool_key(shapes))

    def _bound_pool_key(self, key: tuple) -> None:
        seen = self.__dict__.setdefault("_shapes_seen", set())
        if key in seen:
            return
        with self._lock:  # the allocator frees only cached (unused) buffers: safe beside running requests
            if len(seen) >= config.pool_max_shapes:
                tvm_ffi.get_global_func("vm.builtin.memory_manager.clear")()
                seen.clear()
                self.pool_releases += 1
            seen.add(key)

    def _pool_key(self, shapes: list) -> tuple:
        """The pool's key of a request from its arguments' shapes (tuples; a shape argument: its values)."""
        index = self._pool_key_index()
        if index is not False:
            try:
                return tuple(shapes[i][axis] for i, axis in index)
            except (IndexError, TypeError):
                pass
        return tuple(tuple(s) for s in shapes)

    def _pool_key_index(self):
        """pool_key_index(spec), once: the (argument, axis) pairs a request's pool key reads, or False."""
        index = self.__dict__.get("_pool_index")
        if index is None:
            index = self._pool_index = pool_key_index(self.spec)
        return index

    def upload(self, args: list) -> list:
        """`prepare`'s host arrays -> device tensors (shapes and device tensors pass through)."""
        dev = self.device
        return [a if isinstance(a, (tvm_ffi.Shape, tvm.runtime.Tensor)) else tvm.runtime.tensor(a, dev)
                for a in args]

    __call__ = run

    # --------------------------------------------------------------------------------------------- export
    def export_library(self, path: str, include_params: bool = True) -> None:
        """Write `path` (the shared library), `path.spec.json`, `path.params.npz` and, when the model has the
        native host stage, `path.host.so` (its compiled library: the serving host needs no compiler).

        include_params=False writes only the parameters' shapes (all must then be given with set_params after
        `load`): for shipping a model whose weights are produced where it runs."""
        self.executable.export_library(path)
        host = path + ".host.so"
        if self.host_library and os.path.abspath(self.host_library) != os.path.abspath(host):
            shutil.copyfile(self.host_library, host)  # the native host stage travels with the model
        elif not self.host_library and os.path.exists(host):
            os.unlink(host)  # a stale one from an earlier export
        if self.target_kind == "cuda" and "cuda" in _module_kinds(self.executable):
            from ..cuda_support import has_fatbin

            if not has_fatbin(path):  # the check only holds for modules with device code (a model may have none)
                raise RuntimeError(f"{path} holds no CUDA binary (only source): the CUDA codegen could not compile")
        arrays, virtual = {}, {}

        def put(name: str, arr: np.ndarray) -> None:
            if is_virtual_zeros(arr) or not include_params:
                virtual[name] = [list(arr.shape), str(arr.dtype)]  # no values to write: set_params at load
            else:
                arrays[name] = arr

        for name in self.param_names():
            arr = self._overrides.get(name)
            sources = self.spec.param_recipes.get(name, {}).get("concat_flat")
            if arr is not None and not _on_device(arr):
                put(name, np.asarray(arr))
            elif sources is not None and all(t in self._params_host for t in sources) and \
                    not compact.is_compact(self.spec.param_recipes[name]):
                # the merged table is rebuilt at load from its sources: they stay settable by name there
                for t in sources:
                    put(t, self._params_host[t])
            else:
                put(name, self._host_param(name))
        with open(path + ".spec.json", "w") as f:
            json.dump({"target_kind": self.target_kind, "spec": json.loads(self.spec.to_json()),
                       "virtual_params": virtual, "kernel_schedules": self.kernel_schedules}, f)
        np.savez(path + ".params.npz", **arrays)

    def __repr__(self) -> str:
        return f"CompiledModel(target={self.target_kind}, {self.spec.summary()})"


def _dims(a) -> tuple:
    return tuple(a) if isinstance(a, (tvm_ffi.Shape, list, tuple)) else tuple(getattr(a, "shape", ()))


def pool_key_index(spec: InputSpec):
    """[(argument, axis)] where each of spec.pool_symbols is read from the module's (non-param) arguments, or
    False: unknown (an export from before, or a symbol the arguments do not carry, e.g. a count the module
    computes itself)."""
    symbols = getattr(spec, "pool_symbols", None)
    if symbols is None:
        return False
    where: dict[str, tuple[int, int]] = {}
    args = [i for i in spec.module_inputs if i["source"] != "param"]
    for k, inp in enumerate(args):
        for axis, dim in enumerate(inp.get("shape") or []):
            if isinstance(dim, str) and dim not in where:
                where[dim] = (k, axis)
    if any(s not in where for s in symbols):
        return False
    return [where[s] for s in symbols]


def host_env(spec: InputSpec, feeds: Mapping) -> dict:
    """Validated feeds through the host stage: the tensors the module's inputs are taken from."""
    if spec.row_broadcast:  # (run() and prepare() did this already: a no-op then)
        feeds = repeat_one_row_feeds(spec, with_defaults(spec, feeds))
    env = normalize_feeds(spec, feeds)
    for name in spec.sort_rows:
        sort_rows(spec.feature(name), env, spec.sort_with.get(name, ()), spec.feed_of)
    if spec.host_plan:
        env = run_host_stage(spec.host_plan, env)
        for node in spec.host_plan:  # floats made on the host (StringToNumber) enter the kernels as feeds do
            for t in node["outputs"]:
                arr = env.get(t)
                if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
                    env[t] = flush_denormals(arr)
    for check in spec.id_checks:
        check_ids(check, env[check["tensor"]], env[check["where_positive"]] if "where_positive" in check else None)
    return env


def pack_fused(spec: InputSpec, env: dict, known: dict | None = None) -> dict:
    """Pack the fused kernel's input into env (PACKED, PACKED_SIZES) when the module has one; -> the symbols
    bound on the way ({symbol: (value, source)}). `known`: symbols already bound by the module's other inputs."""
    if not spec.fused:
        return {}
    binder = spec.__dict__.get("_binder")
    if binder is None:  # inputs the kernel reads packed: their sizes, bound in one vectorized pass
        binder = spec.__dict__["_binder"] = Binder(spec.fused["symbol_sources"])
    bound = binder.bind(env)
    sym = spec.fused["batch_symbol"]
    hit = bound.get(sym) or (known or {}).get(sym)
    if hit is None:
        raise FeedError(f"cannot tell the batch size {sym} from the feeds")
    batch = hit[0]
    env[PACKED] = pack(spec.fused, env, batch)
    # [B], or [B, strings shipped] for a model hashing strings on the device (the hash kernel's grid)
    sizes = [batch, hash_strings_count(spec.fused, env)] if spec.fused.get("device_hash") else [batch]
    env[PACKED_SIZES] = np.array(sizes, dtype=np.int64)
    return bound


def host_arguments(spec: InputSpec, feeds: Mapping) -> dict:
    """host_env with the fused kernel's input packed (what tuning measures on)."""
    env = host_env(spec, feeds)
    pack_fused(spec, env)
    return env


def _check_param(name: str, value, shape: tuple, dtype: str, what: str) -> None:
    """set_params: a value of the parameter's shape, and (numpy) of its kind of numbers, else ValueError."""
    got = tuple(int(d) for d in value.shape) if hasattr(value, "shape") else np.shape(value)
    if got != shape:
        raise ValueError(f"set_params: {what} {name!r} has shape {list(shape)} in this model, got {list(got)}")
    if not _on_device(value):
        have = np.asarray(value).dtype
        if have.kind not in "fiu" or (have.kind == "f") != (np.dtype(dtype).kind == "f"):
            raise ValueError(f"set_params: {what} {name!r} is {dtype} in this model, got {have}")


_NO_GATE = contextlib.nullcontext()
_RETRY = object()  # _serve: run the request again step by step


class _HostDone:
    """_serve of a model with CUDA graphs: the host stage ran (its layout is in the slot's context, `nbytes` of
    staging), the device part is left to the step-by-step path."""

    __slots__ = ("nbytes",)

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def _reusable(local, nbytes: int) -> np.ndarray:
    """This thread's last prepare() buffer where no array handed out of it is alive any more (its reference count
    is back to ours) and it is large enough, else a fresh one (kept for the next request). A fresh buffer of a
    large batch costs its page faults on every request (~0.1 ms at 2 MB); the arrays returned stay the caller's:
    a buffer is reused only once the caller has dropped every view of it."""
    buf = getattr(local, "spare", None)
    # references: local.spare, `buf`, getrefcount's argument
    if buf is None or buf.size < nbytes or sys.getrefcount(buf) > 3:
        # a quarter more than asked: the next request's sizes vary with its ids
        buf = local.spare = np.empty(nbytes + nbytes // 4, np.uint8)
    return buf[:nbytes]


def with_defaults(spec: InputSpec, feeds):
    """The feeds plus the default of each placeholder_with_default feature the request leaves out (TF's
    Session.run takes the default then), for the native host stage, which reads one feed per feature. Feeds keyed
    otherwise (placeholder names) go as given: the reference fills them in (feeds.normalize_feeds)."""
    if not isinstance(feeds, Mapping) or len(feeds) >= len(spec.features):
        return feeds
    defaults = spec.defaults()
    if not defaults or any(spec.feature(k) is None for k in feeds):
        return feeds
    missing = {n: v for n, v in defaults.items() if n not in feeds}
    return {**feeds, **missing} if missing else feeds


def _as_dict(feeds):
    """The feeds as a dict (what the native host stage reads); anything not a Mapping is the reference's error."""
    if type(feeds) is dict or not isinstance(feeds, Mapping):
        return feeds
    return dict(feeds)


def _module_kinds(executable) -> set[str]:
    """The kinds of every module in an executable's import tree ("cuda" where it holds device code)."""
    root = getattr(executable, "mod", executable)
    kinds, stack = set(), [root]
    while stack:
        m = stack.pop()
        kinds.add(getattr(m, "kind", ""))
        stack.extend(getattr(m, "imports", ()) or ())
    return kinds


def _host_array(value) -> np.ndarray:
    """A numpy array of `value`; device tensors (DLPack) are copied to the host."""
    if _on_device(value):
        return tvm.runtime.from_dlpack(value).numpy()
    return np.asarray(value)


def _on_device(value) -> bool:
    """A tensor to use in place (DLPack, not numpy: numpy arrays are copied, and need not be aligned)."""
    return value is not None and hasattr(value, "__dlpack__") and not isinstance(value, np.ndarray)


# what TVM's CUDA runtime and driver wrappers write into their errors (cuda_common.h: "CUDA: ", "CUDA Runtime
# Error: ", "CUDAError: ...", cuModule* failures): a device fault, never an input the model rejects
_DEVICE_FAILURE_MARKS = ("CUDA Runtime Error", "CUDAError", "CUDA: ", "cudaError", "CUDA_ERROR_", "cuModule")


def _device_failure_line(msg: str) -> str:
    lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
    hits = [ln for ln in lines if any(mark in ln for mark in _DEVICE_FAILURE_MARKS)]
    return (hits or lines or [""])[-1]


def _translate(err: Exception) -> Exception:
    from .builtins import ERROR_MARK

    msg = str(err)
    if "out of memory" in msg.lower():
        from ..errors import DeviceMemoryError

        return DeviceMemoryError(f"the device ran out of memory running this request: {msg.strip().splitlines()[-1]}"
                                 " (CompiledModel.memory_usage(feeds) gives what a request needs)")
    if ERROR_MARK in msg:
        return InvalidArgumentError(msg.split(ERROR_MARK, 1)[1].splitlines()[0])
    if any(mark in msg for mark in _DEVICE_FAILURE_MARKS):
        from ..errors import DeviceError

        return DeviceError(f"the device failed running this request: {_device_failure_line(msg)}")
    return InvalidArgumentError(f"the compiled model rejected the inputs: {msg.strip().splitlines()[-1]}")


def load(path: str, device=None) -> CompiledModel:
    """Load an exported model with the TVM runtime only."""
    for suffix in ("", ".spec.json", ".params.npz"):
        if not os.path.exists(path + suffix):
            raise ModelFormatError(f"{path + suffix} is missing (export_library writes three files)")
    try:
        with open(path + ".spec.json") as f:
            meta = json.load(f)
        spec = InputSpec.from_json(json.dumps(meta["spec"]))
        kind = meta["target_kind"]
        virtual = meta.get("virtual_params", {})
        schedules = meta.get("kernel_schedules")
    except (ValueError, KeyError, TypeError) as err:
        raise ModelFormatError(f"{path}.spec.json is corrupt: {err}") from err
    if spec.corun:
        from .corun import require_tensorflow

        require_tensorflow(spec.corun)
    if kind == "cuda":
        _load_cuda_runtime()
    try:
        lib = tvm.runtime.load_module(path)
    except Exception as err:  # noqa: BLE001
        raise ModelFormatError(f"cannot load {path}: {err}") from err
    try:
        with np.load(path + ".params.npz", allow_pickle=False) as data:
            params = {k: data[k] for k in data.files}
    except Exception as err:  # noqa: BLE001
        raise ModelFormatError(f"{path}.params.npz is corrupt: {err}") from err
    for name, (shape, dtype) in virtual.items():
        params[name] = np.broadcast_to(np.zeros((), dtype=dtype), shape)
    host = path + ".host.so"
    model = CompiledModel(lib, spec, params, kind, device, host_library=host if os.path.exists(host) else None)
    model.kernel_schedules = schedules
    model.check_device_memory()
    return model


def _load_cuda_runtime() -> None:
    import ctypes

    if tvm.get_global_func("ffi.Module.load_from_bytes.cuda", allow_missing=True) is not None:
        return
    lib = os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime_cuda.so")
    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
