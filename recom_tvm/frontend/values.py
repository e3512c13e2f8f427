"""What a TF tensor becomes during import.

- `Known`: its value is known on the host at import time, possibly symbolically (shape-like values such as
  `Shape(x)`, `dense_shape`, their slices and products): a numpy array, object dtype when entries are `tirx`
  expressions of the input symbols. Known values cost nothing at run time.
- `Device`: a Relax expression with a full (symbolic) shape: computed by the compiled module.
- `Host`: computed by the host stage before the module runs (string ops, which TVM cannot represent).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
from tvm import relax, tirx

from ..shapes.symbolic import declare_size, is_const_int


@dataclasses.dataclass
class Known:
    value: np.ndarray
    dtype: str

    @property
    def shape(self) -> list:
        return list(self.value.shape)

    @property
    def concrete(self) -> bool:
        if self.value.dtype != object or self.dtype == "string":
            return True
        return all(is_const_int(v) for v in self.value.flat)

    def numpy(self) -> np.ndarray:
        """The concrete value (symbolic entries must have simplified to constants)."""
        if self.value.dtype != object or self.dtype == "string":
            return self.value
        return np.array([int(v) for v in self.value.flat], dtype=self.dtype).reshape(self.value.shape)


@dataclasses.dataclass
class Device:
    expr: relax.Expr
    dtype: str
    shape: list  # PrimExpr per dim


@dataclasses.dataclass
class Host:
    tensor: str
    dtype: str
    shape: list


Value = Known | Device | Host


def host_input(v: Value) -> dict | None:
    """A host-plan op's input in the plan's JSON form: {"tensor"} for a host tensor, {"const", "dtype"} for a
    concrete constant (strings as latin-1 text: JSON holds no bytes); None for anything else (the caller decides)."""
    if isinstance(v, Host):
        return {"tensor": v.tensor}
    if isinstance(v, Known) and v.concrete:
        arr = v.numpy()
        if v.dtype == "string":
            arr = np.array([b.decode("latin-1") if isinstance(b, bytes) else str(b) for b in arr.reshape(-1)],
                           dtype=object).reshape(arr.shape)
        return {"const": arr.tolist(), "dtype": v.dtype}
    return None


def host_attrs(attrs: dict) -> dict:
    """A node's attributes the host plan carries: scalars, strings (bytes as latin-1 text) and lists of numbers."""
    return {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in attrs.items()
            if isinstance(v, (int, float, bool, str, bytes)) or (isinstance(v, list) and all(
                isinstance(e, (int, float, bool)) for e in v))}


class Symbols:
    """Named symbolic dims (int64 tirx vars) with where they come from, for the input spec and the passes."""

    def __init__(self) -> None:
        self.vars: dict[str, tirx.Var] = {}
        self.origin: dict[str, str] = {}

    def get(self, name: str, origin: str) -> tirx.Var:
        """The symbol of this exact name (shared: e.g. one batch symbol B for all features)."""
        if name not in self.vars:
            self.vars[name] = tirx.Var(name, "int64")
            self.origin[name] = origin
            declare_size(self.vars[name])
        return self.vars[name]

    def fresh(self, base: str, origin: str) -> tirx.Var:
        """A new symbol whose name starts with `base` (made a valid identifier and unique)."""
        base = re.sub(r"\W", "_", base).strip("_") or "d"
        if base[0].isdigit():
            base = "d_" + base
        name, i = base, 1
        while name in self.vars:
            i += 1
            name = f"{base}_{i}"
        return self.get(name, origin)
