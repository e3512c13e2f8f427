"""Lookup tables (vocabulary columns) as constants: keys and values recovered at import time.

Where a table's contents come from:
- TF1 freezes (Estimator, `convert_variables_to_constants` with the table initializers kept): a `HashTableV2` node
  initialized by `LookupTableImportV2` / `InitializeTableV2` from constant keys and values, or by
  `InitializeTableFromTextFileV2` from a vocabulary file. The file is resolved inside the model's directory
  (`assets/<name>` first); a path outside it is refused unless `config.allow_unsafe_paths`.
- TF2 (SavedModel, ConcreteFunction): freezing leaves each table as a resource placeholder; the loader exports
  the captured table's contents (`LookupTableExportV2`) while TensorFlow has it loaded. A TF2 frozen .pb on its
  own has lost them: import the SavedModel instead, or write the .pb with `freeze_with_tables` (which puts them
  back as TF1-style `HashTableV2` + `LookupTableImportV2` constants).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from .. import config
from ..errors import ModelFormatError

TABLE_OPS = ("HashTableV2", "HashTable")
IMPORT_OPS = ("LookupTableImportV2", "LookupTableImport", "InitializeTableV2", "InitializeTable")
TEXT_OPS = ("InitializeTableFromTextFileV2", "InitializeTableFromTextFile")
WHOLE_LINE, LINE_NUMBER = -2, -1


@dataclasses.dataclass
class Table:
    """A static hash table: keys (bytes or int64) -> values, from the node `name`."""

    name: str
    keys: np.ndarray
    values: np.ndarray

    @property
    def key_dtype(self) -> str:
        return "string" if self.keys.dtype.kind in "SOU" else str(self.keys.dtype)

    def __post_init__(self) -> None:
        if self.keys.shape != self.values.shape or self.keys.ndim != 1:
            raise ModelFormatError(f"table {self.name!r}: {self.keys.shape} keys but {self.values.shape} values")
        if self.key_dtype == "string":
            self.keys = np.array([k if isinstance(k, bytes) else str(k).encode() for k in self.keys], dtype=object)
        if len(set(self.keys.tolist())) != len(self.keys):
            raise ModelFormatError(f"table {self.name!r} has duplicate keys")


def resolve_tables(graph, model_dir: str | None, exported: dict | None = None, assets: dict | None = None,
                   assets_dir: str | None = None) -> dict[str, Table]:
    """{table node: Table} for every table node of `graph` (TF1 tables and TF2 resource placeholders)."""
    tables: dict[str, Table] = {}
    for name, (keys, values) in (exported or {}).items():
        tables[name] = Table(name, np.asarray(keys), np.asarray(values))
    inits: dict[str, object] = {}
    for node in graph.nodes.values():
        if node.op in IMPORT_OPS + TEXT_OPS and node.inputs:
            inits[node.inputs[0][0]] = node
    for node in graph.nodes.values():
        if node.op not in TABLE_OPS or node.name in tables:
            continue
        init = inits.get(node.name)
        if init is None:
            continue  # reported by the converter if a lookup reads it
        if init.op in IMPORT_OPS:
            keys, values = (_const(graph, init, src) for src, _ in init.inputs[1:3])
            tables[node.name] = Table(node.name, keys, values)
        else:
            tables[node.name] = _from_text_file(graph, node, init, model_dir, assets or {}, assets_dir)
    return tables


_FOLD = {
    "Identity": lambda node, x: x,
    "Cast": lambda node, x: x.astype(node.attr("DstT")),
    "Range": lambda node, a, b, d: np.arange(a.item(), b.item(), d.item()),
    "Size": lambda node, x: np.asarray(x.size, dtype=node.attr("out_type") or "int32"),
    "AddV2": lambda node, a, b: a + b, "Add": lambda node, a, b: a + b, "Sub": lambda node, a, b: a - b,
}


def _const(graph, init, src: str, depth: int = 0) -> np.ndarray:
    """The value of a table initializer's input: a constant, or a small constant expression of one (TF1's
    index_table_from_tensor builds the values as Cast(Range(0, Size(keys))))."""
    node = graph.nodes[src]
    if node.op == "Const":
        return np.asarray(node.attr("value")).reshape(-1) if depth == 0 else np.asarray(node.attr("value"))
    if node.op not in _FOLD or depth > 16:
        raise ModelFormatError(f"{init.op} node {init.name!r}: the table's keys / values come from {node.op} node "
                               f"{node.name!r}, not a constant")
    args = [_const(graph, init, s, depth + 1) for s, _ in node.inputs]
    out = np.asarray(_FOLD[node.op](node, *args))
    return out.reshape(-1) if depth == 0 else out


def resolve_vocab_path(filename: str, model_dir: str | None, what: str, assets: dict | None = None,
                       assets_dir: str | None = None) -> str:
    """Where to read a vocabulary file the graph names: the user's mapping (`assets`: graph path or file name
    -> local file), `assets_dir/<file name>`, the model's directory (`assets/<file name>` first), or refuse."""
    base = os.path.basename(filename)
    for key in (filename, base):
        if assets and key in assets:
            return assets[key]
    candidates = []
    if assets_dir:
        root = os.path.realpath(assets_dir)
        real = os.path.realpath(os.path.join(root, base))
        candidates.append(real)
        if os.path.isfile(real) and os.path.commonpath([real, root]) == root:
            return real
    if model_dir:
        root = os.path.realpath(model_dir)
        for c in (os.path.join(root, "assets", base), os.path.join(root, filename)):
            real = os.path.realpath(c)
            candidates.append(c)
            if os.path.isfile(real) and os.path.commonpath([real, root]) == root:
                return real
    how = ("map it with from_tensorflow(..., assets={%r: <local file>}) or assets_dir=<folder holding %r>"
           % (filename, base))
    if os.path.isfile(filename):
        if config.allow_unsafe_paths:
            return filename
        raise ModelFormatError(f"{what}: vocabulary file {filename!r} lies outside the model's directory "
                               f"({model_dir!r}); refusing to read it: {how} (or set recom_tvm.config."
                               "allow_unsafe_paths / RECOM_TVM_ALLOW_UNSAFE_PATHS=1 to read any path)")
    raise ModelFormatError(f"{what}: vocabulary file {filename!r} not found (looked in {candidates or [filename]}); "
                           f"{how}")


def _from_text_file(graph, table_node, init, model_dir: str | None, assets: dict, assets_dir: str | None) -> Table:
    what = f"{init.op} node {init.name!r}"
    fname = _const(graph, init, init.inputs[1][0])
    if fname.size != 1:
        raise ModelFormatError(f"{what}: the file name is not a scalar")
    raw = fname[0]
    path = resolve_vocab_path(raw.decode() if isinstance(raw, bytes) else str(raw), model_dir, what, assets,
                              assets_dir)
    key_index, value_index = int(init.attr("key_index")), int(init.attr("value_index"))
    size = int(init.attr("vocab_size", -1))
    delim = init.attr("delimiter", "\t")
    delim = delim.decode() if isinstance(delim, bytes) else delim
    offset = int(init.attr("offset", 0) or 0)
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    if size >= 0:
        if len(lines) < size:
            raise ModelFormatError(f"{what}: {path} has {len(lines)} lines, the table expects vocab_size {size}")
        lines = lines[:size]
    key_dtype = table_node.attr("key_dtype")
    value_dtype = table_node.attr("value_dtype")

    def field(line: bytes, i: int, n: int, dtype: str):
        if i == WHOLE_LINE:
            v = line
        elif i == LINE_NUMBER:
            return n + offset
        else:  # TF splits on any byte of the delimiter (str_util::Split with a character set)
            parts = re.split(b"[" + re.escape(delim.encode()) + b"]", line) if len(delim) > 1 else \
                line.split(delim.encode())
            if i >= len(parts):
                raise ModelFormatError(f"{what}: line {n + 1} of {path} has no field {i}")
            v = parts[i]
        if dtype == "string":
            return v
        try:
            return float(v) if dtype.startswith("float") else int(v)
        except ValueError:
            raise ModelFormatError(f"{what}: field {i} of line {n + 1} of {path} is not a {dtype}: {v!r}") from None

    keys = [field(ln, key_index, n, key_dtype) for n, ln in enumerate(lines)]
    values = [field(ln, value_index, n, value_dtype) for n, ln in enumerate(lines)]
    k = np.array(keys, dtype=object) if key_dtype == "string" else np.array(keys, dtype=key_dtype)
    v = np.array(values, dtype=object) if value_dtype == "string" else np.array(values, dtype=value_dtype)
    return Table(table_node.name, k, v)
