"""PyTorch baselines of a ModelSpec's embedding stage and dense tail, on the GPU, for the benchmarks.

Both start from preprocessed ids (hashing / bucketizing / identity defaults done on the host by
recom_tvm.models.reference.column_ids, not timed), the way TorchRec / FBGEMM's TBE consume inputs:
- PerColumnLoop: one F.embedding_bag per column, then a concat (the framework op-by-op stand-in for TF-GPU);
- GroupedEmbeddingBag: the tables of one embedding dim concatenated, one F.embedding_bag per dim over all
  bags of those columns (pooling as per-sample weights: 1, 1/n, 1/sqrt(n)), scattered into the output
  (the TBE-like hand-written peer).
`TorchTail` evaluates reference.extract_tail's program (the MLP) with torch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from recom_tvm.models import reference


def _bag_inputs(spec, feeds, batch: int):
    """Per embedding column in DenseFeatures order: (column, ids, offsets[B+1], per-id pooling weights)."""
    out = []
    for c in reference.column_order(spec):
        if c.kind == "numeric":
            out.append((c, None, None, None))
            continue
        ids, rows, _ = reference.column_ids(c, feeds[c.name])
        order = np.argsort(rows, kind="stable")
        ids, rows = ids[order], rows[order]
        counts = np.bincount(rows, minlength=batch)
        offsets = np.zeros(batch + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        n = counts[rows].astype(np.float32)
        w = {"sum": np.ones_like(n), "mean": 1 / n, "sqrtn": 1 / np.sqrt(n)}[c.combiner]
        out.append((c, ids.astype(np.int64), offsets, w.astype(np.float32)))
    return out


class PerColumnLoop:
    """One embedding_bag per column + concat: ~1 kernel per column plus the concat."""

    def __init__(self, spec, tables: dict) -> None:
        self.spec, self.tables = spec, tables

    def host_inputs(self, feeds) -> list:
        batch = len(feeds["dense"]) if "dense" in feeds else None
        batch = batch or next(len(v) if not isinstance(v, tuple) else int(v[2][0]) for v in feeds.values())
        return [(c, ids, off, w, None if ids is not None else np.asarray(feeds[c.name], np.float32))
                for c, ids, off, w in _bag_inputs(self.spec, feeds, batch)]

    @staticmethod
    def upload(host: list, dev) -> list:
        t = lambda a: None if a is None else torch.from_numpy(a).to(dev, non_blocking=False)  # noqa: E731
        return [(c, t(ids), t(off), t(w), t(x)) for c, ids, off, w, x in host]

    def __call__(self, inputs: list) -> torch.Tensor:
        parts = []
        for c, ids, off, w, x in inputs:
            if x is not None:
                parts.append(x.reshape(x.shape[0], -1))
            else:
                parts.append(F.embedding_bag(ids, self.tables[c.name], off, mode="sum", per_sample_weights=w,
                                             include_last_offset=True))
        return torch.cat(parts, dim=1)


class GroupedEmbeddingBag:
    """Tables grouped by dim: one embedding_bag per group, scattered into the [B, width] output."""

    def __init__(self, spec, tables: dict, dev) -> None:
        self.spec, self.dev = spec, dev
        cols = reference.column_order(spec)
        self.width, pos = 0, {}
        for c in cols:
            pos[c.name] = self.width
            self.width += c.dim
        self.groups = {}  # dim -> (columns, table, row bases, output column index)
        for dim in sorted({c.dim for c in cols if c.kind != "numeric"}):
            gcols = [c for c in cols if c.kind != "numeric" and c.dim == dim]
            bases = np.cumsum([0] + [tables[c.name].shape[0] for c in gcols])[:-1]
            table = torch.cat([tables[c.name] for c in gcols], dim=0)
            index = torch.tensor(np.concatenate([np.arange(pos[c.name], pos[c.name] + dim) for c in gcols]),
                                 device=dev)
            self.groups[dim] = (gcols, table, bases, index)
        self.numeric = [(c, pos[c.name]) for c in cols if c.kind == "numeric"]

    def host_inputs(self, feeds, batch: int) -> dict:
        per_col = {c.name: (ids, off, w) for c, ids, off, w in _bag_inputs(self.spec, feeds, batch) if ids is not None}
        host = {}
        for dim, (gcols, _, bases, _) in self.groups.items():
            ids = np.concatenate([per_col[c.name][0] + b for c, b in zip(gcols, bases)])
            w = np.concatenate([per_col[c.name][2] for c in gcols])
            offs, start = [], 0
            for c in gcols:
                o = per_col[c.name][1]
                offs.append(o[:-1] + start)
                start += o[-1]
            offs.append(np.array([start], np.int64))
            host[dim] = (ids, np.concatenate(offs), w)
        host["numeric"] = [np.asarray(feeds[c.name], np.float32) for c, _ in self.numeric]
        host["batch"] = batch
        return host

    def upload(self, host: dict) -> dict:
        t = lambda a: torch.from_numpy(a).to(self.dev)  # noqa: E731
        dev = {k: tuple(t(a) for a in v) for k, v in host.items() if isinstance(k, int)}
        dev["numeric"] = [t(a) for a in host["numeric"]]
        dev["batch"] = host["batch"]
        return dev

    def __call__(self, inputs: dict) -> torch.Tensor:
        batch = inputs["batch"]
        out = torch.empty(batch, self.width, device=self.dev)
        for dim, (gcols, table, _, index) in self.groups.items():
            ids, offs, w = inputs[dim]
            pooled = F.embedding_bag(ids, table, offs, mode="sum", per_sample_weights=w, include_last_offset=True)
            out.index_copy_(1, index, pooled.view(len(gcols), batch, dim).permute(1, 0, 2).reshape(batch, -1))
        for (c, p), x in zip(self.numeric, inputs["numeric"]):
            out[:, p:p + c.dim] = x.reshape(batch, -1)
        return out


class TorchTail:
    """reference.extract_tail's program (the MLP after the embedding stage) with torch, fp32 without TF32."""

    def __init__(self, tail: dict, params: dict, dev) -> None:
        self.tail, self.dev = tail, dev
        # integer scalars (a concat's axis) stay Python ints: reading one back from the GPU would sync (and break
        # CUDA graph capture)
        self.consts = {k: int(v) if np.ndim(v) == 0 and np.asarray(v).dtype.kind in "iu" else
                       torch.tensor(np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else v, device=dev)
                       for k, v in tail["consts"].items()}
        self.params = params

    def __call__(self, start: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        leaves = {"Start": lambda s: start, "Feed": lambda s: dense, "Param": lambda s: self.params[s["param"]],
                  "Const": lambda s: self.consts[s["out"]]}
        return reference.run_tail(self.tail, lambda s: leaves[s["op"]](s), _TORCH_OPS)


_TORCH_OPS = {"Relu": torch.relu, "Sigmoid": torch.sigmoid, "ConcatV2": lambda xs, axis: torch.cat(xs, dim=axis)}
