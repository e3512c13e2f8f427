"""Runners for the fused kernel's tuning candidates: the local device, or GPU nodes behind TVM's RPC tracker.

A candidate must run on a real request (random int64 data would send the kernel's loops anywhere), so both use
MetaSchedule's runners with our own argument allocation: the task's packed request and static layout, read from
the tuning work_dir by the argument shapes the runner reports; tables are sized and filled with random values
(large tables on a remote node are left uninitialised: the kernel's time does not depend on their values). Dense-tail
candidates run on random normal inputs of their static shapes.
"""

from __future__ import annotations

import os

import numpy as np

INPUTS_DIR = "inputs"
RANDOM_FILL_MAX = 1 << 26  # floats of table uploaded with random values; larger ones are allocated only


def save_task_inputs(work_dir: str, tasks) -> str:
    """Write every task's measurement arrays under work_dir/inputs, one file per argument signature."""
    d = os.path.join(work_dir, INPUTS_DIR)
    os.makedirs(d, exist_ok=True)
    for t in tasks:
        path = os.path.join(d, t.signature() + ".npz")
        if not os.path.exists(path):
            np.savez(path, tables=np.array([t.call.table_floats], np.int64), **t.arrays())
    return d


class TaskArguments:
    """f_alloc_argument for MetaSchedule's runners: the task's real arguments on `device` (picklable: workers
    load the arrays from the inputs directory)."""

    def __init__(self, inputs_dir: str) -> None:
        self.inputs_dir = os.path.abspath(inputs_dir)

    def arrays(self, args_info) -> dict:
        from .tasks import signature_of

        packed, _, _, _, out = (a[2] for a in args_info)
        sig = signature_of(int(packed[0]), int(out[0]), int(out[1]), str(args_info[0][1]))
        path = os.path.join(self.inputs_dir, sig + ".npz")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no measurement inputs for a fused kernel with arguments {sig} in "
                                    f"{self.inputs_dir}")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def allocate(self, device, args_info, alloc_repeat: int, tensor, empty) -> list:
        if not _is_fused(args_info):  # a dense layer: any finite values run the same loops
            return [random_arguments(args_info, device, tensor, seed=i) for i in range(alloc_repeat)]
        a = self.arrays(args_info)
        n_tables = int(a["tables"][0])
        out_shape = tuple(int(d) for d in args_info[4][2])
        rng = np.random.default_rng(0)
        repeated = []
        for _ in range(alloc_repeat):
            if n_tables <= RANDOM_FILL_MAX:
                tables = tensor(rng.standard_normal(n_tables).astype(np.float32), device)
            else:
                tables = empty((n_tables,), "float32", device)
            repeated.append([tensor(a["packed"], device), tensor(a["meta"], device), tensor(a["bounds"], device),
                             tables, empty(out_shape, "float32", device)])
        return repeated

    def __call__(self, *args):
        import tvm

        if len(args) == 3:  # LocalRunner: (device, args_info, alloc_repeat)
            device, args_info, alloc_repeat = args
        else:  # RPCRunner: (session, device, args_info, alloc_repeat)
            _, device, args_info, alloc_repeat = args
        return self.allocate(device, args_info, alloc_repeat, tvm.runtime.tensor,
                             lambda shape, dtype, dev: tvm.runtime.empty(shape, dtype, dev))


def _is_fused(args_info) -> bool:
    """The fused kernel's arguments: (packed int64 or int32, meta int64, bounds, tables, out)."""
    return len(args_info) == 5 and str(args_info[0][1]) in ("int64", "int32") and str(args_info[1][1]) == "int64"


def random_arguments(args_info, device, tensor, seed: int = 0) -> list:
    """Standard-normal float arguments (zeros for integers) of the given shapes, on `device`."""
    rng = np.random.default_rng(seed)
    out = []
    for a in args_info:
        shape, dtype = tuple(int(d) for d in a[2]), str(a[1])
        arr = rng.standard_normal(shape).astype(dtype) if dtype.startswith("float") else np.zeros(shape, dtype)
        out.append(tensor(arr, device))
    return out


def evaluator(number: int = 10, repeat: int = 5, min_repeat_ms: int = 20):
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig

    return EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=min_repeat_ms, enable_cpu_cache_flush=False)


def local_runner(work_dir: str, timeout_sec: float = 60.0, **eval_kw):
    """Measure on this machine's device (the target's: cuda(0) or cpu)."""
    from tvm.s_tir.meta_schedule.runner import LocalRunner

    return LocalRunner(timeout_sec=timeout_sec, evaluator_config=evaluator(**eval_kw),
                       f_alloc_argument=TaskArguments(os.path.join(work_dir, INPUTS_DIR)))


def rpc_runner(work_dir: str, tracker: str, key: str, max_workers: int = 1, session_timeout_sec: int = 120,
               **eval_kw):
    """Measure on GPU nodes registered with a TVM RPC tracker (`host:port`) under `key`. The nodes run
    `python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY` with the TVM runtime only; max_workers
    candidates are measured at once (one per node)."""
    from tvm.s_tir.meta_schedule.runner import RPCConfig, RPCRunner

    host, _, port = tracker.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"tracker must be HOST:PORT, got {tracker!r}")
    cfg = RPCConfig(tracker_host=host, tracker_port=int(port), tracker_key=key, session_timeout_sec=session_timeout_sec)
    return RPCRunner(rpc_config=cfg, evaluator_config=evaluator(**eval_kw), max_workers=max_workers,
                     f_alloc_argument=TaskArguments(os.path.join(work_dir, INPUTS_DIR)))
