"""What a plain random-row gather reaches on this GPU: the bandwidth behind issue 16's "bytes / copy bandwidth" floor.

The fused kernel's floor counts every id's table row at the device-to-device copy bandwidth. A gather of random
32-byte rows (E's 8-wide float32 columns) does not stream like a copy: each row is a 32-byte sector of its own. This
measures the simplest gather TVM compiles, out[i, :] = table[ids[i], :] (int32 ids, one thread per 16 bytes of a
row, float4 loads and stores), for rows of 32 / 64 / 128 bytes and tables of 16 rows (L1 / L2), 10,000 rows (L2: E's
hashed columns) and 8M rows (DRAM: E's large columns), next to a store of the output alone and the copy bandwidth:
  python benchmarks/gather_floor.py export --dir .device/backlog/floor/gather      # build host (TVM compiler)
  python3 benchmarks/gather_floor.py run --dir .device/backlog/floor/gather [--out $OUT]   # GPU (TVM runtime)
GB/s counts what the floor counts: rows read + output written (+ the 4-byte ids). Median of time_evaluator's repeats.
(PyTorch's index_select is no reference here: on an H100 it took 0.67 ms for 1M ids whatever the row size or table,
2026-12-07.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DIMS = (8, 16, 32)
TABLE_ROWS = (16, 10_000, 1 << 23)
THREADS = 256


def _gather(dim: int, store_only: bool = False):
    """out[i, :] = table[ids[i], :] (or a constant: the output's stores alone), one thread per float4."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def gather(var_ids: T.handle, var_table: T.handle, var_out: T.handle):
        m = T.int64()
        r = T.int64()
        ids = T.match_buffer(var_ids, (m,), "int32")
        table = T.match_buffer(var_table, (r, dim), "float32")
        out = T.match_buffer(var_out, (m, dim), "float32")
        for i, j in T.grid(m, dim):
            with T.sblock("gather"):
                vi, vj = T.axis.remap("SS", [i, j])
                if store_only:
                    out[vi, vj] = T.float32(1)
                else:
                    out[vi, vj] = table[T.Cast("int64", ids[vi]), vj]

    return gather


def _scheduled(func):
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    i, j = sch.get_loops(sch.get_sblock("gather"))
    j_out, j_vec = sch.split(j, [None, 4])
    fused = sch.fuse(i, j_out)
    bx, tx = sch.split(fused, [None, THREADS])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    sch.vectorize(j_vec)
    return sch.mod["main"]


def export(out_dir: str) -> None:
    from recom_tvm import config
    from recom_tvm.build_module import make_target
    from recom_tvm.schedules.builder import compile_kernels

    config.cuda_arch = config.cuda_arch or "sm_90"
    funcs = {}
    for d in DIMS:
        funcs[f"gather_{d}"] = _scheduled(_gather(d).with_attr("global_symbol", f"gather_{d}"))
        funcs[f"store_{d}"] = _scheduled(_gather(d, True).with_attr("global_symbol", f"store_{d}"))
    lib = compile_kernels(funcs, make_target("cuda"))
    os.makedirs(out_dir, exist_ok=True)
    lib.export_library(os.path.join(out_dir, "gather.so"))
    print(f"{len(funcs)} kernels in {out_dir}/gather.so")


def run(src: str, out: str | None, ids: int) -> None:
    import numpy as np
    import tvm

    from recom_tvm.runtime.measure import _device

    dev = _device("cuda")  # (loads the CUDA runtime module: the runtime bundle registers its loader on demand)
    lib = tvm.runtime.load_module(os.path.join(src, "gather.so"))
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "ids": ids, "rows": []}
    try:
        import torch

        from gpu_common import bandwidths

        res["device"] = torch.cuda.get_device_name()
        # the copy bandwidth compact_kernels.py's floor uses, measured the same way
        res["copy_gbs"] = bandwidths(torch, torch.device("cuda"), torch.cuda.synchronize)["d2d_copy_GBps"]
    except ImportError:
        res["device"], res["copy_gbs"] = str(dev), None
    print(f"{res['device']}: device-to-device copy {res['copy_gbs'] or 0:.0f} GB/s (read + write); {ids} ids")
    print(f"{'row bytes':>9} | {'table rows':>10} | {'gather us':>9} | {'GB/s':>6} | {'of copy':>7} | stores alone GB/s")
    rng = np.random.default_rng(0)
    for d in DIMS:
        o = tvm.runtime.empty((ids, d), "float32", dev)
        st = lib.time_evaluator(f"store_{d}", dev, number=20, repeat=5)
        i0 = tvm.runtime.tensor(np.zeros(ids, np.int32), dev)
        t0 = tvm.runtime.tensor(np.zeros((1, d), np.float32), dev)
        store_us = float(np.median(st(i0, t0, o).results)) * 1e6
        for rows in TABLE_ROWS:
            table_np = rng.standard_normal((rows, d), dtype=np.float32)
            idx_np = rng.integers(0, rows, ids, dtype=np.int32)
            table, idx = tvm.runtime.tensor(table_np, dev), tvm.runtime.tensor(idx_np, dev)
            lib[f"gather_{d}"](idx, table, o)
            ok = bool(np.array_equal(o.numpy()[:4096], table_np[idx_np[:4096]]))
            us = float(np.median(lib.time_evaluator(f"gather_{d}", dev, number=20, repeat=5)(idx, table, o).results)) * 1e6
            useful = ids * (2 * d * 4 + 4)
            row = {"row_bytes": 4 * d, "table_rows": rows, "gather_us": us, "gbs": useful / us / 1e3, "ok": ok,
                   "store_us": store_us, "store_gbs": ids * d * 4 / store_us / 1e3}
            row["of_copy"] = row["gbs"] / res["copy_gbs"] if res["copy_gbs"] else None
            res["rows"].append(row)
            print(f"{4 * d:9d} | {rows:10d} | {us:9.1f} | {row['gbs']:6.0f} | "
                  f"{(row['of_copy'] or 0):6.2f}x | {row['store_gbs']:.0f}{'' if ok else '  WRONG ANSWER'}", flush=True)
            del table, idx
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "gather_floor.json"), "w") as f:
            json.dump(res, f, indent=1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["export", "run"])
    p.add_argument("--dir", default=".device/backlog/floor/gather")
    p.add_argument("--ids", type=int, default=1 << 22)
    p.add_argument("--out", default=os.environ.get("OUT"))
    a = p.parse_args()
    if a.mode == "export":
        export(a.dir)
    else:
        run(a.dir, a.out, a.ids)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
