"""Keep every other thread's device work out of a CUDA-graph capture.

TVM's `vm.builtin.cuda_graph.run_or_capture` captures a graph on its own stream in *global* capture mode. While
one thread captures, CUDA refuses "unsafe" calls from every other thread (cudaMalloc, a synchronous copy, a pinned
allocation), and work on the legacy default stream, which synchronises implicitly with the capturing stream,
invalidates the capture (cudaErrorStreamCaptureImplicit). Requests of other threads do exactly that: they grow
their staging buffers, copy inputs and outputs, and allocate from the VM's pool. So a request that may capture
(the first run of a batch size on its VM) runs alone, and all other requests share the device: a readers-writer
lock, writers first. Captures happen once per VM and batch size, so the exclusive path is rare; the shared path
costs one uncontended condition-variable round trip per request.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class CaptureGate:
    """A readers-writer lock: `shared()` for ordinary device work, `exclusive()` for a request that may capture.
    Waiting captures go first (new shared holders wait behind them), so a steady stream of requests cannot starve
    one."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self.exclusive_entries = 0  # how many requests ran alone (tests and benchmarks read it)

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
            self.exclusive_entries += 1
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def uses_cuda_graphs(executable) -> bool:
    """Whether a (loaded or built) VM executable captures CUDA graphs: its code calls run_or_capture."""
    text = None
    for get in (lambda: executable.as_text(), lambda: getattr(executable, "mod", executable)["as_text"]()):
        try:
            text = str(get())
            break
        except Exception:  # noqa: BLE001 - the next accessor (built vs loaded executables differ)
            continue
    return text is not None and "vm.builtin.cuda_graph.run_or_capture" in text


def capture_key_index(spec) -> tuple[int, int] | None:
    """(argument, axis) of the module's non-param arguments that holds the capture key: the batch, the first dim of
    the first output (backend/cuda_graph.batch_symbol). None when no argument carries it (every new argument
    shape then counts as a possible capture)."""
    batch = None
    for out in spec.outputs:
        shape = out.get("shape") or []
        if shape and not str(shape[0]).lstrip("-").isdigit():
            batch = str(shape[0])
            break
    if batch is None:
        return None
    args = [i for i in spec.module_inputs if i["source"] != "param"]
    for kind in ("shape", "shape_of", "tensor"):  # a shape argument names it directly: prefer it
        for i, inp in enumerate(args):
            if inp["kind"] == kind and batch in [str(d) for d in inp["shape"]]:
                return i, [str(d) for d in inp["shape"]].index(batch)
    return None
