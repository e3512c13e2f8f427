"""Tuning tasks of a model: its fused embedding kernel at representative batch sizes.

MetaSchedule measures static shapes, so a task is the kernel template with every buffer size fixed by one
measurement request: a synthetic one drawn from the kernel's static layout (recom_tvm.runtime.synthetic), or one
packed from the user's own feeds. The task's key names the kernel (its static layout, width and target), so records
of one model apply to any build of the same model; the batch says which bucket a record tunes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import tvm
from tvm import relax

from ..ops.fused_kernel import KernelConfig, max_bounds, fused_embedding
from ..ops.registry import PREFIX
from ..runtime.fused_layout import META, META_V1, meta_rows
from ..runtime.synthetic import Distribution, fingerprint, synthetic_packed
from ..shapes.symbolic import const_array
from .fused_space import TASK_ATTR

DEFAULT_BATCHES = (32, 256, 2048)
# The task module is the kernel at scalar width: TVM's task scheduler estimates every task's flops and its
# estimator cannot read vector expressions. Candidates are re-instantiated from their knobs (builder.instantiate),
# so the workload's own body is never what runs.
TEMPLATE = KernelConfig(vec=1)


@dataclasses.dataclass
class FusedCall:
    """The fused kernel's static inputs, as the optimized Relax module calls it."""

    meta: np.ndarray
    bounds: np.ndarray
    width: int
    table_floats: int
    packed_dtype: str = "int64"  # the packed input's dtype (FuseColumns' choice)


def find_fused_call(mod: tvm.IRModule) -> FusedCall | None:
    """The recom.fused_embedding call of `main` (None if the module has no fused kernel)."""
    found: list = []

    def visit(e) -> None:
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) and e.op.name == PREFIX + "fused_embedding":
            found.append(e)

    relax.analysis.post_order_visit(mod["main"].body, visit)
    if not found:
        return None
    packed, meta, bounds, tables, _, width = found[0].args
    (n,) = (int(v) for v in tables.ty.shape.values)
    return FusedCall(const_array(meta).astype(np.int64), const_array(bounds).astype(np.float32), int(width.value), n,
                     str(packed.ty.dtype))


def target_tag(target: tvm.target.Target) -> str:
    kind = target.kind.name
    arch = str(target.attrs["arch"]) if kind == "cuda" and "arch" in target.attrs else ""
    return f"{kind}:{arch}" if arch else kind


def kernel_key(call: FusedCall, target: tvm.target.Target) -> str:
    """Identifies one fused kernel (its layout, width, packed dtype and target) across builds and batch sizes."""
    h = hashlib.sha1()
    meta = meta_rows(call.meta)
    # all-float32 tables: the meta as it was before the tdtype field, so earlier tuning databases still apply
    h.update(np.ascontiguousarray(meta[:, :META_V1] if not meta[:, META.index("tdtype")].any() else meta).tobytes())
    h.update(np.float32(call.bounds).tobytes())
    h.update(f"{call.width}|{call.table_floats}|{target_tag(target)}".encode())
    if call.packed_dtype != "int64":  # another workload (and other timings): int64 records stay int64's
        h.update(f"|packed:{call.packed_dtype}".encode())
    return h.hexdigest()[:16]


@dataclasses.dataclass
class FusedTask:
    """One tuning task: the kernel at one batch, with the request it is measured on."""

    name: str
    batch: int
    key: str
    mod: tvm.IRModule  # "main": the template (default schedule) with fixed buffer sizes, TASK_ATTR attached
    call: FusedCall
    packed: np.ndarray
    source: dict  # how `packed` was made: {"synthetic": {seed, dist}} or {"feeds": n}; + fingerprint

    @property
    def shapes(self) -> tuple[int, int, int, int]:
        return (int(self.packed.size), int(self.call.bounds.size), self.call.table_floats, self.batch)

    def arrays(self) -> dict[str, np.ndarray]:
        """The kernel's arguments but the tables (sized, not valued) and the output."""
        return {"packed": self.packed, "meta": self.call.meta, "bounds": self.call.bounds}

    def signature(self) -> str:
        """What a runner sees of the task (its argument shapes), to find the task's inputs."""
        return signature_of(self.packed.size, self.batch, self.call.width, str(self.packed.dtype))


def signature_of(packed_len: int, batch: int, width: int, packed_dtype: str = "int64") -> str:
    return f"P{packed_len}_B{batch}_W{width}" + ("" if packed_dtype == "int64" else f"_{packed_dtype}")


def make_task(call: FusedCall, target: tvm.target.Target, batch: int, packed: np.ndarray, source: dict,
              key: str | None = None) -> FusedTask:
    gpu = target.kind.name == "cuda"
    key = key or kernel_key(call, target)
    shapes = (int(packed.size), int(call.bounds.size), call.table_floats, int(batch))
    if str(packed.dtype) != call.packed_dtype:
        raise ValueError(f"the request is packed as {packed.dtype}, the kernel reads {call.packed_dtype}")
    func = fused_embedding(call.meta, call.width, gpu, ((None, TEMPLATE),), shapes=shapes,
                           packed_dtype=call.packed_dtype)
    info = {"key": key, "batch": int(batch), "width": call.width, "meta": call.meta.tolist(),
            "max_bounds": max(max_bounds(call.meta), 1), "target": target_tag(target),
            "packed_dtype": call.packed_dtype}
    func = func.with_attr(TASK_ATTR, json.dumps(info)).with_attr("global_symbol", "main")
    source = dict(source, fingerprint=fingerprint(packed))
    return FusedTask(f"fused_{key[:8]}_B{batch}", int(batch), key, tvm.IRModule({"main": func}), call, packed,
                     source)


def extract_tasks(mod: tvm.IRModule, target, batches=DEFAULT_BATCHES, feeds=None, seed: int = 0,
                  dist: Distribution = Distribution()) -> list[FusedTask]:
    """The fused kernel of an optimized module at each batch size.

    feeds: a function batch -> TF-style feeds (e.g. `spec.sample`), or a dict {batch: feeds}, to measure on the
    model's own inputs; default: synthetic requests drawn from `dist`.
    """
    from ..build_module import make_target

    target = make_target(target)
    call = find_fused_call(mod)
    if call is None:
        raise ValueError("the module has no fused embedding kernel to tune: run recom_tvm.optimize first "
                         "(its FuseColumns pass makes it)")
    tasks = []
    for batch in sorted({int(b) for b in batches}):
        if batch < 1:
            raise ValueError(f"tuning batch sizes must be >= 1, got {batch}")
        if feeds is None:
            packed = synthetic_packed(call.meta, call.bounds, batch, seed=seed + batch, dist=dist,
                                      packed_dtype=call.packed_dtype)
            source = {"synthetic": {"seed": seed + batch, "dist": dist.to_json()}}
        else:
            f = feeds(batch) if callable(feeds) else feeds[batch]
            packed = pack_feeds(mod, f)
            source = {"feeds": batch}
        tasks.append(make_task(call, target, batch, packed, source))
    return tasks


def pack_feeds(mod: tvm.IRModule, feeds) -> np.ndarray:
    """The fused kernel's packed input for TF-style feeds (the serving host stage, no compiled module)."""
    from ..module_spec import spec_of
    from ..runtime.compiled_model import host_arguments
    from ..runtime.packer import PACKED

    env = host_arguments(spec_of(mod), feeds)
    return env[PACKED]


def fit_buckets(buckets, max_buckets: int) -> tuple:
    """((max batch or None, config), ...) ascending, cut to what one kernel dispatches over: adjacent buckets with
    equal configs merged, then, while more than max_buckets remain, the narrowest bucket (smallest ratio of its
    limit to the previous one) handed to its upper neighbour's config. A database tuned at more batches than that
    (e.g. 1, 8, 32, 64, 128, 256, 512, 2,048) otherwise failed the kernel's bucket check: the fused kernel's build
    raised, and a dense layer silently kept TVM's unscheduled default."""
    def merged(bs):
        out = []
        for limit, cfg in bs:
            if out and out[-1][1] == cfg:
                out[-1] = (limit, cfg)  # the lower bucket's range joins this one
            else:
                out.append((limit, cfg))
        return out

    out = merged(buckets)
    while len(out) > max_buckets:
        lows = [1] + [b for b, _ in out[:-2]]
        i = min(range(len(out) - 1), key=lambda j: out[j][0] / max(lows[j], 1))
        out = merged(out[:i] + out[i + 1:])
    return tuple(out)


def buckets_for(batches) -> list[tuple[int | None, int]]:
    """(max batch of the bucket or None, representative batch): bucket edges at the geometric midpoints."""
    bs = sorted({int(b) for b in batches})
    out = []
    for i, b in enumerate(bs):
        out.append((int(math.sqrt(b * bs[i + 1])) if i + 1 < len(bs) else None, b))
    return out
