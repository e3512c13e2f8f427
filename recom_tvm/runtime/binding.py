"""Binding the symbolic sizes of many inputs at once (a 1000-column model has ~1000 inputs to bind per request).

A source is `{"ref": tensor, "kind": "shape" (its values are the dims) | "tensor" (its shape is), "shape": [dim
text]}`, each dim a symbol, an integer, or an expression (not bound). The plan is compiled once per model; a
request then costs a few list comprehensions and numpy reductions instead of a Python loop per dim.
"""

from __future__ import annotations

import re
from itertools import chain

import numpy as np

from ..errors import FeedError, InvalidArgumentError

_IDENT = re.compile(r"^[A-Za-z_]\w*$")


class Binder:
    def __init__(self, sources: list[dict]) -> None:
        self.sources = sources
        self.refs = [s["ref"] for s in sources]
        self.is_value = [s["kind"] == "shape" for s in sources]
        self.ranks = [len(s["shape"]) for s in sources]
        sym_pos, sym_of, const_pos, const_val = [], [], [], []
        self.symbols: list[str] = []
        index: dict[str, int] = {}
        pos = 0
        for s in sources:
            for d in s["shape"]:
                if _IDENT.match(d):
                    sym_pos.append(pos)
                    sym_of.append(index.setdefault(d, len(index)))
                elif d.lstrip("-").isdigit():
                    const_pos.append(pos)
                    const_val.append(int(d))
                pos += 1
        self.symbols = list(index)
        self.owner = np.repeat(np.arange(len(sources)), self.ranks) if sources else np.zeros(0, np.int64)
        order = np.argsort(np.asarray(sym_of, np.int64), kind="stable")
        self.sym_pos = np.asarray(sym_pos, np.int64)[order]  # dims grouped by symbol
        sym_sorted = np.asarray(sym_of, np.int64)[order]
        self.group_start = np.searchsorted(sym_sorted, np.arange(len(self.symbols)))
        self.const_pos = np.asarray(const_pos, np.int64)
        self.const_val = np.asarray(const_val, np.int64)

    def bind(self, env: dict) -> dict[str, tuple[int, str]]:
        """{symbol: (value, the input it was read from)}; a clear error when inputs disagree on a symbol."""
        dims = [np.asarray(env[r]).reshape(-1).tolist() if v else env[r].shape
                for r, v in zip(self.refs, self.is_value)]
        lens = [len(d) if isinstance(d, (list, tuple)) else 1 for d in dims]
        if lens != self.ranks:
            i = next(i for i, (a, b) in enumerate(zip(lens, self.ranks)) if a != b)
            what = "value" if self.is_value[i] else "shape"
            raise FeedError(f"{self.refs[i]}: expected {self.ranks[i]} {what} entries, got {lens[i]}")
        flat = np.fromiter(chain.from_iterable(dims), dtype=np.int64, count=sum(lens))
        if self.const_pos.size:
            bad = np.nonzero(flat[self.const_pos] != self.const_val)[0]
            if bad.size:
                i = int(self.owner[self.const_pos[bad[0]]])
                raise FeedError(f"{self.refs[i]}: expected {self.sources[i]['shape']}, got {list(dims[i])}")
        if not self.symbols:
            return {}
        vals = flat[self.sym_pos]
        first = vals[self.group_start]
        lo = np.minimum.reduceat(vals, self.group_start)
        hi = np.maximum.reduceat(vals, self.group_start)
        if (lo != hi).any():
            g = int(np.nonzero(lo != hi)[0][0])
            end = self.group_start[g + 1] if g + 1 < len(self.group_start) else vals.size
            k = self.group_start[g] + int(np.nonzero(vals[self.group_start[g]:end] != first[g])[0][0])
            sym = self.symbols[g]
            a = self.refs[int(self.owner[self.sym_pos[self.group_start[g]]])]
            b = self.refs[int(self.owner[self.sym_pos[k]])]
            raise InvalidArgumentError(inconsistent_sizes(b, sym, int(vals[k]), a, int(first[g])))
        first_src = self.owner[self.sym_pos[self.group_start]].tolist()
        return {s: (v, self.refs[i]) for s, v, i in zip(self.symbols, first.tolist(), first_src)}


def inconsistent_sizes(label: str, sym: str, value: int, other: str, other_value: int) -> str:
    """The error of two feeds that give one size symbol different values. Where one is 1, TF may have broadcast it
    (a [1, D] feed times a [B, D] one): the runtime repeats such a feed where its rows reach the broadcast through
    row-wise ops only (runtime/row_broadcast.py); elsewhere the compiled model binds both dims as one size."""
    msg = (f"inconsistent sizes: {label} implies {sym} = {value} but {other} implies {sym} = {other_value} (the "
           f"model combines them, e.g. in a concat)")
    if 1 in (value, other_value):
        msg += ("; if the model broadcasts the size-1 one against the other (an elementwise op, where TF would): "
                "recom_tvm repeats a one-row feed only where nothing but row-wise ops lie between it and the "
                "broadcast, not in this model; repeat it to the other's size")
    return msg
