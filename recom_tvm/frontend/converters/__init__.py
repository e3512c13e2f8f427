"""Op converters, as tables: TF op type -> function(ctx, node, inputs) -> output value(s).

- `DEVICE`: emit Relax for the op (inputs are any values; materialize with `ctx.device`).
- `KNOWN`: evaluate the op at import time when every input is a `Known` value (constant or symbolic); a rule
  raises `NotFoldable` to fall back to its DEVICE converter.
- `HOST`: the op runs in the host stage (string ops); the rule returns the outputs' dtypes and symbolic shapes.
- `PLACED`: ops whose converter places them itself: lookups in recovered tables (host stage for string keys,
  compiled module for ints), SparseCross (host stage, with its dense_shape as symbolic sizes).

The accepted op list in the docs is generated from these tables (`supported_ops()`).
"""

from __future__ import annotations

from collections.abc import Callable

DEVICE: dict[str, Callable] = {}
KNOWN: dict[str, Callable] = {}
HOST: dict[str, Callable] = {}
PLACED: dict[str, Callable] = {}  # see lookup.py, cross.py


class NotFoldable(Exception):
    """A KNOWN rule cannot evaluate these inputs at import time."""


def _register(table: dict, ops: tuple[str, ...]):
    def deco(fn):
        for op in ops:
            table[op] = fn
        return fn

    return deco


def device(*ops: str):
    return _register(DEVICE, ops)


def known(*ops: str):
    return _register(KNOWN, ops)


def host(*ops: str):
    return _register(HOST, ops)


def placed(*ops: str):
    return _register(PLACED, ops)


def supported_ops() -> dict[str, list[str]]:
    _load()
    from ..functions import CALL_OPS, IF_OPS

    from ..partitioned import OP as PARTITIONED

    return {"compiled": sorted(set(DEVICE) - {PARTITIONED}), "import-time only": sorted(set(KNOWN) - set(DEVICE)),
            "host stage": sorted(HOST),
            "placed by their converter": sorted(PLACED) + ["HashTableV2 (with its initializer)",
                                                           "DynamicPartition + ParallelDynamicStitch / DynamicStitch "
                                                           "(a partitioned embedding lookup: one gather)"],
            "inlined when the graph is read": sorted(IF_OPS + CALL_OPS)}


def _load() -> None:
    from . import (array, control_flow, cross, example, host_ops, lookup, math, nn,  # noqa: F401
                   normalization, partitioned, ragged, random, sparse, sparse_api, strings)  # (registration)


# PlaceholderWithDefault that is not a serving input: its default value flows through.
PASSTHROUGH = ("Identity", "StopGradient", "Snapshot", "PreventGradient", "EnsureShape", "PlaceholderWithDefault")
