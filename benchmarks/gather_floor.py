"""What a random-row gather reaches on this GPU: the bandwidth behind issue 16's "bytes / copy bandwidth" floor.

The fused kernel's floor counts every id's table row at the device-to-device copy bandwidth. A gather of random
32-byte rows (E's 8-wide float32 columns) cannot stream like a copy: each row is one 32-byte sector of its own, and
the small tables (E's 880 bucketized columns have 11 rows) live in L2, not DRAM. This measures, with PyTorch only
(GPU machine; no TVM):
  copy      a 256 MiB device-to-device copy (the floor's bandwidth, as compact_kernels.py measures it)
  gather    out = table[ids] (F.embedding), ids uniform over the table, for row sizes 32 / 64 / 128 bytes and
            tables of 16 rows (L1 / L2), 10,000 rows (L2: E's hashed columns) and 8M rows (DRAM: E's large columns)
  write     the [M, dim] output alone (a fill): the output's share
GB/s counts the rows read plus the output written, as the floor does. Median of --repeat timed calls (CUDA events).

    python3 benchmarks/gather_floor.py [--ids 1048576] [--repeat 20] [--out $OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _time(fn, repeat: int) -> float:
    """Median ms of `repeat` calls, after 3 warm-ups."""
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def main() -> int:
    import torch
    import torch.nn.functional as F

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ids", type=int, default=1 << 20)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--out", default=os.environ.get("OUT"))
    a = p.parse_args()
    dev = torch.device("cuda")
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": torch.cuda.get_device_name(), "ids": a.ids, "rows": []}
    src = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    ms = _time(lambda: dst.copy_(src), a.repeat)
    res["copy_gbs"] = 2 * src.numel() / ms / 1e6
    print(f"{res['device']}: device-to-device copy {res['copy_gbs']:.0f} GB/s (read + write)")
    del src, dst
    print(f"{'row bytes':>9} | {'table rows':>10} | {'gather ms':>9} | {'GB/s':>6} | {'of copy':>7} | output alone GB/s")
    g = torch.Generator(device=dev).manual_seed(0)
    for dim in (8, 16, 32):
        out = torch.empty(a.ids, dim, device=dev)
        w_ms = _time(lambda: out.fill_(1.0), a.repeat)
        for rows in (16, 10_000, 1 << 23):
            table = torch.randn(rows, dim, device=dev)
            ids = torch.randint(0, rows, (a.ids,), device=dev, generator=g)
            ms = _time(lambda: torch.index_select(table, 0, ids, out=out), a.repeat)
            useful = a.ids * (dim * 4 * 2 + 8)  # row read, output written, the id read
            row = {"row_bytes": dim * 4, "table_rows": rows, "gather_ms": ms, "gbs": useful / ms / 1e6,
                   "of_copy": useful / ms / 1e6 / res["copy_gbs"], "write_gbs": a.ids * dim * 4 / w_ms / 1e6}
            res["rows"].append(row)
            print(f"{dim * 4:9d} | {rows:10d} | {ms:9.3f} | {row['gbs']:6.0f} | {row['of_copy']:6.2f}x | "
                  f"{row['write_gbs']:.0f}", flush=True)
            del table, ids
        # F.embedding is the same gather through another entry point: a check that index_select is not the slow one
        table = torch.randn(1 << 23, dim, device=dev)
        ids = torch.randint(0, 1 << 23, (a.ids,), device=dev, generator=g)
        res.setdefault("embedding_ms", {})[dim * 4] = _time(lambda: F.embedding(ids, table), a.repeat)
        del table, ids, out
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "gather_floor.json"), "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
